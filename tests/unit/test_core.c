/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the core's pure pieces: devices, status strings,
 * scatter/gather planning, the registration cache, random bytes, and the
 * iovec and text helpers of util/. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/connector.h"
#include "core/device.h"
#include "core/progress.h"
#include "core/regcache.h"
#include "core/sglist.h"
#include "nxt.h"
#include "util/iov.h"
#include "util/sys.h"
#include "util/text.h"
#include "util/time.h"

static void test_device_parse(void) {
    static const struct {
        const char *text;
        nxc_device_kind_t kind;
        int id;
    } ok[] = {{"cpu", NXC_DEVICE_HOST, 0},          {"host", NXC_DEVICE_HOST, 0},
              {" CPU ", NXC_DEVICE_HOST, 0},        {"cuda", NXC_DEVICE_CUDA, 0},
              {"cuda:0", NXC_DEVICE_CUDA, 0},       {"cuda:7", NXC_DEVICE_CUDA, 7},
              {"gpu:1", NXC_DEVICE_CUDA, 1},        {"GPU", NXC_DEVICE_CUDA, 0},
              {"cuda:1023", NXC_DEVICE_CUDA, 1023}, {"cpu:0", NXC_DEVICE_HOST, 0},
              {" Host:0 ", NXC_DEVICE_HOST, 0},     {"CPU:00", NXC_DEVICE_HOST, 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        nxc_device_t d;
        NXT_PASS(nxc_device_parse(ok[i].text, &d));
        NXT_EQ_INT(d.kind, ok[i].kind);
        NXT_EQ_INT(d.id, ok[i].id);
    }
    static const char *bad[] = {"",        "   ",       "cpu:1",   "cuda:", "cuda:-1", "cuda:1024",
                                "cuda:1x", "gpu:01234", "tpu",     "cudaX", "cpux",    "cuda 1",
                                "xpu:0",   "host:1",    "cuda::1", "cpu:",  "host:x",  "cpu:0:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nxc_device_t d = {NXC_DEVICE_HOST, 5};
        NXT_FAIL(nxc_device_parse(bad[i], &d), NXC_ERR_INVALID_DEVICE);
        NXT_EQ_INT(d.id, 5); /* untouched */
        NXT_CHECK(strstr(nxc_last_error(), "expected") != NULL);
    }
    nxc_device_t d;
    NXT_FAIL(nxc_device_parse(NULL, &d), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_device_parse("cpu", NULL), NXC_ERR_INVALID_PARAM);
}

static void test_device_format(void) {
    char buf[NXC_DEVICE_TEXT_MAX];
    NXT_PASS(nxc_device_format((nxc_device_t){NXC_DEVICE_HOST, 0}, buf, sizeof buf));
    NXT_EQ_STR(buf, "cpu");
    NXT_PASS(nxc_device_format((nxc_device_t){NXC_DEVICE_CUDA, 12}, buf, sizeof buf));
    NXT_EQ_STR(buf, "cuda:12");
    nxc_device_t d;
    NXT_PASS(nxc_device_parse("gpu:3", &d));
    NXT_PASS(nxc_device_format(d, buf, sizeof buf));
    NXT_EQ_STR(buf, "cuda:3"); /* as the reference: gpu:N comes back as cuda:N */
    NXT_FAIL(nxc_device_format((nxc_device_t){NXC_DEVICE_UNSPECIFIED, 0}, buf, sizeof buf),
             NXC_ERR_INVALID_DEVICE);
    NXT_FAIL(nxc_device_format((nxc_device_t){NXC_DEVICE_CUDA, -1}, buf, sizeof buf),
             NXC_ERR_INVALID_DEVICE);
    NXT_FAIL(nxc_device_format((nxc_device_t){NXC_DEVICE_CUDA, 12}, buf, 4), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_device_format((nxc_device_t){NXC_DEVICE_HOST, 0}, NULL, 4), NXC_ERR_INVALID_PARAM);
}

static void test_status_strings(void) {
    for (int s = -60; s <= 1; s++) {
        const char *text = nxc_status_string((nxc_status_t)s);
        NXT_CHECK(text && *text);
    }
    NXT_EQ_STR(nxc_status_string(NXC_OK), "success");
    NXT_EQ_STR(nxc_status_string(NXC_ERR_SIZE_MISMATCH), "size mismatch");
    NXT_EQ_STR(nxc_status_string((nxc_status_t)-999), "unknown status");
    /* every named status has its own text */
    nxc_status_t all[] = {NXC_OK,
                          NXC_INPROGRESS,
                          NXC_ERR_INVALID_PARAM,
                          NXC_ERR_NO_MEMORY,
                          NXC_ERR_INVALID_DEVICE,
                          NXC_ERR_INVALID_DESCRIPTOR,
                          NXC_ERR_EMPTY_LIST,
                          NXC_ERR_MIXED_DEVICES,
                          NXC_ERR_SIZE_MISMATCH,
                          NXC_ERR_WRONG_OPERATION,
                          NXC_ERR_METADATA_MALFORMED,
                          NXC_ERR_METADATA_TOO_LARGE,
                          NXC_ERR_METADATA_VERSION,
                          NXC_ERR_NOT_SUPPORTED,
                          NXC_ERR_NO_TRANSPORT,
                          NXC_ERR_UNREACHABLE,
                          NXC_ERR_PEER_FAILED,
                          NXC_ERR_REFUSED,
                          NXC_ERR_TIMED_OUT,
                          NXC_ERR_CANCELED,
                          NXC_ERR_TRANSPORT,
                          NXC_ERR_INVALID_STATE,
                          NXC_ERR_SYSTEM};
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        NXT_CHECK(strcmp(nxc_status_string(all[i]), "unknown status") != 0);
        for (size_t j = i + 1; j < n; j++)
            NXT_CHECK(strcmp(nxc_status_string(all[i]), nxc_status_string(all[j])) != 0);
    }
    NXT_EQ_STR(nxc_version(), NXC_VERSION_STRING);
}

static void test_status_ranges_and_version(void) {
    NXT_CHECK(!NXC_STATUS_IS_ERR(NXC_OK) && !NXC_STATUS_IS_ERR(NXC_INPROGRESS));
    NXT_CHECK(NXC_STATUS_IS_CALL_ERR(NXC_ERR_SIZE_MISMATCH));
    NXT_CHECK(NXC_STATUS_IS_METADATA_ERR(NXC_ERR_METADATA_VERSION));
    NXT_CHECK(NXC_STATUS_IS_HOST_ERR(NXC_ERR_NO_TRANSPORT));
    nxc_status_t retry[] = {NXC_ERR_UNREACHABLE, NXC_ERR_PEER_FAILED, NXC_ERR_REFUSED,
                            NXC_ERR_TIMED_OUT,   NXC_ERR_CANCELED,    NXC_ERR_TRANSPORT};
    for (size_t i = 0; i < sizeof retry / sizeof retry[0]; i++)
        NXT_CHECK(NXC_STATUS_IS_ERR(retry[i]) && NXC_STATUS_IS_RETRYABLE(retry[i]));
    NXT_CHECK(!NXC_STATUS_IS_RETRYABLE(NXC_ERR_SYSTEM) &&
              !NXC_STATUS_IS_RETRYABLE(NXC_ERR_INVALID_PARAM));

    int v = NXC_VERSION_NUMBER;
    NXT_EQ_INT(nxc_version_number(), v);
    NXT_EQ_INT(v, NXC_VERSION_MAJOR * 10000 + NXC_VERSION_MINOR * 100 + NXC_VERSION_PATCH);
    NXT_EQ_INT(nxc_version_compatible(v), 1);
    NXT_EQ_INT(nxc_version_compatible(v + 1), 0);     /* a newer header */
    NXT_EQ_INT(nxc_version_compatible(v + 10000), 0); /* another major */
    NXT_EQ_INT(nxc_version_compatible(-1), 0);
    if (NXC_VERSION_MAJOR == 0 && NXC_VERSION_MINOR > 0)
        NXT_EQ_INT(nxc_version_compatible(v - 100), 0); /* 0.x: minor must match */
    if (NXC_VERSION_PATCH > 0) NXT_EQ_INT(nxc_version_compatible(v - 1), 1);
}

static void test_descs_check(void) {
    char b[64];
    size_t total = 0;
    nxc_desc_t d[2] = {nxt_desc(b, 32), nxt_desc(b + 32, 32)};
    NXT_PASS(nxc__descs_check("local", d, 2, &total));
    NXT_EQ_INT(total, 64);
    d[1].device = (nxc_device_t){NXC_DEVICE_HOST, 1};
    NXT_FAIL(nxc__descs_check("local", d, 2, &total), NXC_ERR_INVALID_DEVICE);
}

static void check_plan(const uint64_t *l, size_t nl, const uint64_t *r, size_t nr) {
    nxc__seg_t *segs;
    size_t n;
    NXT_PASS(nxc__sg_plan(l, nl, r, nr, &segs, &n));
    NXT_CHECK(n <= nl + nr - 1);
    /* segments tile both lists in order, without gaps or overlaps */
    size_t li = 0, ri = 0;
    uint64_t lo = 0, ro = 0;
    for (size_t i = 0; i < n; i++) {
        NXT_EQ_INT(segs[i].local_idx, li);
        NXT_EQ_INT(segs[i].remote_idx, ri);
        NXT_EQ_INT(segs[i].local_off, lo);
        NXT_EQ_INT(segs[i].remote_off, ro);
        NXT_CHECK(segs[i].len > 0);
        lo += segs[i].len;
        ro += segs[i].len;
        if (lo == l[li]) li++, lo = 0;
        if (ro == r[ri]) ri++, ro = 0;
    }
    NXT_EQ_INT(li, nl);
    NXT_EQ_INT(ri, nr);
    free(segs);
}

static void test_sg_plan(void) {
    uint64_t one[] = {1 << 20}, four[] = {1 << 18, 1 << 18, 1 << 18, 1 << 18};
    check_plan(one, 1, four, 4);
    check_plan(four, 4, one, 1);
    check_plan(four, 4, four, 4);
    /* lists that cut alike give one segment per descriptor, not the bound */
    nxc__seg_t *alike;
    size_t nalike;
    NXT_PASS(nxc__sg_plan(four, 4, four, 4, &alike, &nalike));
    NXT_EQ_INT(nalike, 4);
    free(alike);
    uint64_t a[] = {3, 5, 7, 1}, b[] = {8, 8};
    check_plan(a, 4, b, 2);
    nxc__seg_t *segs;
    size_t n;
    uint64_t c[] = {15};
    NXT_FAIL(nxc__sg_plan(a, 4, c, 1, &segs, &n), NXC_ERR_SIZE_MISMATCH);
    NXT_CHECK(strstr(nxc_last_error(), "16") && strstr(nxc_last_error(), "15"));
    /* randomised: 200 pairs of random segmentations of the same total */
    uint64_t s = 12345;
    for (int round = 0; round < 200; round++) {
        uint64_t x[64], y[64], total = 0;
        size_t nx = 1 + (s = s * 6364136223846793005ull + 1) % 64, ny;
        for (size_t i = 0; i < nx; i++)
            total += x[i] = 1 + ((s = s * 6364136223846793005ull + 1) >> 33) % 1000;
        uint64_t left = total;
        for (ny = 0; left && ny < 63; ny++) {
            uint64_t v = 1 + ((s = s * 6364136223846793005ull + 1) >> 33) % (left);
            y[ny] = v;
            left -= v;
        }
        if (left) y[ny++] = left;
        check_plan(x, nx, y, ny);
    }
}

/* A fake transport registration that counts calls. */
static int regs, deregs;
static nxc_status_t fake_reg(void *ctx, nxc__reg_t *r) {
    regs++;
    if (*(int *)ctx) return NXC_ERR_TRANSPORT;
    r->handle = (void *)r->start;
    r->key = malloc(8);
    r->key_len = 8;
    return NXC_OK;
}
static void fake_dereg(void *ctx, nxc__reg_t *r) {
    deregs++;
    free(r->key);
}
static const nxc__regcache_ops_t fake_ops = {fake_reg, fake_dereg};

static void test_regcache(void) {
    int fail = 0;
    nxc__regcache_t rc;
    nxc__regcache_init(&rc, &fake_ops, &fail, 2);
    char *buf = nxt_alloc(1 << 16);
    nxc__reg_t *a, *b, *c, *d;
    NXT_PASS(nxc__regcache_get(&rc, buf, 1 << 16, &a));
    NXT_EQ_INT(regs, 1);
    NXT_CHECK(a->start <= (uintptr_t)buf && a->end >= (uintptr_t)buf + (1 << 16));
    /* a sub-range of a live registration costs nothing */
    NXT_PASS(nxc__regcache_get(&rc, buf + 100, 1000, &b));
    NXT_CHECK(a == b);
    NXT_EQ_INT(regs, 1);
    nxc__regcache_put(&rc, b);
    nxc__regcache_put(&rc, a);
    NXT_EQ_INT(deregs, 0); /* idle, kept */
    /* reuse after the last put: still no new registration */
    NXT_PASS(nxc__regcache_get(&rc, buf, 1 << 16, &c));
    NXT_CHECK(c == a);
    NXT_EQ_INT(regs, 1);
    NXT_EQ_INT(rc.hits, 2);
    NXT_EQ_INT(rc.misses, 1);
    nxc__regcache_put(&rc, c);
    /* more idle entries than max_idle: the least recently used go */
    char *more = nxt_alloc(4 << 16);
    nxc__reg_t *e[3];
    for (int i = 0; i < 3; i++)
        NXT_PASS(nxc__regcache_get(&rc, more + i * (1 << 16), 100, &e[i]));
    for (int i = 0; i < 3; i++)
        nxc__regcache_put(&rc, e[i]);
    NXT_EQ_INT(rc.idle, 2);
    NXT_EQ_INT(deregs, 2);
    /* a failing registration leaves nothing behind */
    fail = 1;
    NXT_FAIL(nxc__regcache_get(&rc, more + 3 * (1 << 16), 10, &d), NXC_ERR_TRANSPORT);
    free(d = NULL);
    nxc__regcache_fini(&rc);
    NXT_EQ_INT(rc.count, 0);
    free(buf);
    free(more);
}

static void test_regcache_off(void) {
    int fail = 0;
    regs = deregs = 0;
    nxc__regcache_t rc;
    setenv("NXC_REGCACHE", "0", 1);
    nxc__regcache_init(&rc, &fake_ops, &fail, nxc__regcache_env_max_idle());
    char buf[128];
    nxc__reg_t *a;
    NXT_PASS(nxc__regcache_get(&rc, buf, sizeof buf, &a));
    nxc__regcache_put(&rc, a);
    NXT_EQ_INT(deregs, 1);
    nxc__regcache_fini(&rc);
}

/* Random bytes: never the same twice, in two threads, or in a parent and
 * its forked child (which inherit the same per-thread stream state); UUIDs
 * carry version 4 and the RFC 4122 variant. */
static void *random_in_thread(void *out) {
    nxc__random(out, 32);
    return NULL;
}

static void test_random_fork_and_threads(void) {
    uint8_t a[32], b[32], t[32], c[32];
    nxc__random(a, sizeof a);
    nxc__random(b, sizeof b);
    NXT_CHECK(memcmp(a, b, sizeof a) != 0);
    pthread_t th;
    NXT_CHECK(pthread_create(&th, NULL, random_in_thread, t) == 0);
    pthread_join(th, NULL);
    NXT_CHECK(memcmp(t, a, sizeof t) != 0 && memcmp(t, b, sizeof t) != 0);
    int fds[2];
    NXT_CHECK(pipe(fds) == 0);
    /* fork() itself, not nxt_spawn: what a forked child inherits is under test */
    pid_t pid = fork();
    NXT_CHECK(pid >= 0);
    if (pid == 0) {
        uint8_t mine[32];
        nxc__random(mine, sizeof mine);
        _exit(write(fds[1], mine, sizeof mine) == (ssize_t)sizeof mine ? 0 : 1);
    }
    nxc__random(c, sizeof c);
    uint8_t child[32];
    NXT_CHECK(read(fds[0], child, sizeof child) == (ssize_t)sizeof child);
    nxt_wait_pid(pid, 10000);
    close(fds[0]);
    close(fds[1]);
    NXT_CHECK(memcmp(child, c, sizeof c) != 0); /* same stream position in both */
    char u[37];
    nxc__uuid4(u);
    NXT_CHECK(strlen(u) == 36 && u[14] == '4' && strchr("89ab", u[19]) != NULL);
}

/* nxc__iov_slice: every [from, to) of an uneven list gives entries that
 * cover exactly those bytes, in order (split direct copies rely on it). */
static void test_iov_slice(void) {
    static uint8_t bytes[64];
    struct iovec iov[4] = {{bytes, 5}, {bytes + 10, 1}, {bytes + 20, 13}, {bytes + 40, 7}};
    uint8_t *flat[26]; /* where each of the 26 bytes lies */
    for (size_t i = 0, k = 0; i < 4; i++)
        for (size_t j = 0; j < iov[i].iov_len; j++)
            flat[k++] = (uint8_t *)iov[i].iov_base + j;
    for (uint64_t from = 0; from <= 26; from++)
        for (uint64_t to = from; to <= 26; to++) {
            struct iovec out[4];
            size_t n = nxc__iov_slice(iov, 4, from, to, out), k = from;
            for (size_t e = 0; e < n; e++) {
                NXT_CHECK(out[e].iov_len > 0);
                for (size_t j = 0; j < out[e].iov_len; j++)
                    NXT_CHECK((uint8_t *)out[e].iov_base + j == flat[k++]);
            }
            NXT_EQ_INT(k, to);
        }
}

/* nxc__ascii_span stops at the first byte that is NUL or not ASCII, at
 * every position of a word and across words. */
static void test_ascii_span(void) {
    unsigned char s[40];
    memset(s, 'a', sizeof s);
    NXT_EQ_INT(nxc__ascii_span(s, sizeof s), sizeof s);
    NXT_EQ_INT(nxc__ascii_span(s, 0), 0);
    static const unsigned char stops[] = {0x00, 0x80, 0xc3, 0xff};
    for (size_t at = 0; at < sizeof s; at++)
        for (size_t k = 0; k < sizeof stops; k++) {
            s[at] = stops[k];
            NXT_EQ_INT(nxc__ascii_span(s, sizeof s), at);
            NXT_EQ_INT(nxc__ascii_span(s, at), at);
            s[at] = 0x7f; /* the highest ASCII byte passes */
            NXT_EQ_INT(nxc__ascii_span(s, sizeof s), sizeof s);
            s[at] = 'a';
        }
}

/* `check` takes 40 bytes of 'a' (and none), and of the same bytes with
 * one set to any value, at any position, exactly those where `takes`
 * says so (the checks take eight bytes at a time). */
static void every_byte_everywhere(bool (*check)(const unsigned char *, size_t),
                                  bool (*takes)(unsigned)) {
    unsigned char s[40];
    memset(s, 'a', sizeof s);
    NXT_CHECK(check(s, sizeof s));
    NXT_CHECK(check(s, 0));
    for (size_t at = 0; at < sizeof s; at++)
        for (unsigned v = 0; v < 256; v++) {
            /* a fresh buffer per case: with one byte set and set back in
             * place, gcc 12.2 -O2 lost the byte set back (s[0] stayed 0xff) */
            memset(s, 'a', sizeof s);
            s[at] = (unsigned char)v;
            NXT_EQ_INT(check(s, sizeof s), takes(v));
            NXT_CHECK(check(s, at));
        }
}

static bool json_plain_byte(unsigned v) {
    return v >= 0x20 && v <= 0x7e && v != '"' && v != '\\';
}

/* nxc__json_plain refuses every byte that needs an escape, or is not ASCII. */
static void test_json_plain(void) {
    every_byte_everywhere(nxc__json_plain, json_plain_byte);
}

static bool printable_bytes(const unsigned char *s, size_t n) {
    return nxc__printable((const char *)s, n);
}

static bool visible_byte(unsigned v) {
    return v >= 0x21 && v <= 0x7e;
}

/* nxc__printable refuses every byte outside 0x21..0x7e. */
static void test_printable(void) {
    every_byte_everywhere(printable_bytes, visible_byte);
}

/* A thread asleep in nxc__wait_locked() does not make the progress thread
 * step aside (it used to count as a lock waiter for its whole sleep: up to
 * 1000 sched_yield() calls after every busy pass, seconds of a drain's own
 * progress on a loaded host); once a broadcast wakes it, it does until it
 * has the lock back. */
static atomic_bool sleeper_go;

static bool go_given(const void *arg) {
    (void)arg;
    return atomic_load(&sleeper_go);
}

static void *sleeper(void *arg) {
    nxc_connector_t *c = arg;
    nxc__lock(c);
    bool ok = nxc__wait_locked(c, go_given, NULL, nxc__deadline_after_ms(20000));
    nxc__unlock(c);
    return (void *)(intptr_t)ok;
}

static int sleepers_now(nxc_connector_t *c) {
    nxc__lock(c);
    int n = c->sleepers;
    nxc__unlock(c);
    return n;
}

static void test_sleeper_is_no_lock_waiter(void) {
    nxc_connector_t *c = nxt_connector_on("sleepy", "tcp");
    atomic_store(&sleeper_go, false);
    pthread_t t;
    NXT_CHECK(pthread_create(&t, NULL, sleeper, c) == 0);
    for (uint64_t end = nxt_now_ms() + 10000; sleepers_now(c) == 0 && nxt_now_ms() < end;)
        usleep(1000);
    NXT_EQ_INT(sleepers_now(c), 1);
    NXT_CHECK(!nxc__lock_wanted(c)); /* asleep: nothing to step aside for */
    nxc__lock(c);
    atomic_store(&sleeper_go, true);
    nxc__wake_sleepers(c);
    NXT_CHECK(nxc__lock_wanted(c)); /* woken: it wants the lock back */
    nxc__unlock(c);
    void *ok = NULL;
    NXT_CHECK(pthread_join(t, &ok) == 0);
    NXT_CHECK(ok != NULL);
    NXT_CHECK(!nxc__lock_wanted(c)); /* back, and gone */
    nxc_connector_destroy(c);
}

static const nxt_test_t nxt_tests[] = {
    {"device_parse", test_device_parse, 0},
    {"device_format", test_device_format, 0},
    {"status_ranges_and_version", test_status_ranges_and_version, 0},
    {"status_strings", test_status_strings, 0},
    {"descs_check", test_descs_check, 0},
    {"sg_plan", test_sg_plan, 0},
    {"regcache", test_regcache, 0},
    {"regcache_off", test_regcache_off, 0},
    {"random_fork_and_threads", test_random_fork_and_threads, 0},
    {"iov_slice", test_iov_slice, 0},
    {"ascii_span", test_ascii_span, 0},
    {"json_plain", test_json_plain, 0},
    {"printable", test_printable, 0},
    {"sleeper_is_no_lock_waiter", test_sleeper_is_no_lock_waiter, 0},
};
NXT_MAIN(nxt_tests)
