/* SPDX-License-Identifier: Apache-2.0 */
/* Every bad input the API can receive: each gets its own status and a
 * message naming the problem, nothing moves, nothing crashes. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mdtool.h"
#include "nxt.h"

static char src[4096], dst[4096];

/* A connector with a readable and a writable over `src`, and their texts. */
typedef struct fixture {
    nxc_connector_t *c;
    nxc_op_t *readable, *writable;
    const char *rmd, *wmd;
} fixture_t;

static fixture_t setup(void) {
    fixture_t f = {0};
    f.c = nxt_connector("errors", 1);
    nxt_fill(src, sizeof src, 3);
    nxc_desc_t d = nxt_desc(src, sizeof src);
    NXT_PASS(nxc_create_readable(f.c, &d, 1, NULL, &f.readable));
    NXT_PASS(nxc_create_writable(f.c, &d, 1, NULL, &f.writable));
    NXT_PASS(nxc_op_metadata(f.readable, &f.rmd, NULL));
    NXT_PASS(nxc_op_metadata(f.writable, &f.wmd, NULL));
    return f;
}

static void teardown(fixture_t *f) {
    nxc_op_release(f->readable);
    nxc_op_release(f->writable);
    nxc_connector_destroy(f->c);
    NXT_EQ_INT(nxt_verify(src, sizeof src, 3), SIZE_MAX); /* never touched */
}

/* The message of the last error must mention `what`. */
static void says(const char *what) {
    if (!strstr(nxc_last_error(), what))
        nxt_failf(__FILE__, __LINE__, "last error \"%s\" does not mention \"%s\"", nxc_last_error(),
                  what);
}

static void test_descriptors(void) {
    fixture_t f = setup();
    nxc_op_t *op = (nxc_op_t *)0x1;
    nxc_desc_t d[3] = {nxt_desc(dst, 16), nxt_desc(NULL, 16), nxt_desc(dst, 0)};
    NXT_FAIL(nxc_create_readable(f.c, &d[1], 1, NULL, &op), NXC_ERR_INVALID_DESCRIPTOR);
    says("ptr is NULL");
    NXT_FAIL(nxc_create_writable(f.c, d, 3, NULL, &op), NXC_ERR_INVALID_DESCRIPTOR);
    says("descriptor 1");
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, &d[2], 1, NULL, &op), NXC_ERR_INVALID_DESCRIPTOR);
    says("size is 0");
    NXT_FAIL(nxc_create_readable(f.c, d, 0, NULL, &op), NXC_ERR_EMPTY_LIST);
    NXT_FAIL(nxc_begin_write(f.c, d, 0, f.wmd, 0, NULL, &op), NXC_ERR_EMPTY_LIST);
    NXT_FAIL(nxc_create_readable(f.c, NULL, 2, NULL, &op), NXC_ERR_INVALID_PARAM);
    nxc_desc_t mixed[2] = {nxt_desc(dst, 16), nxt_desc(dst + 16, 16)};
    mixed[1].device = (nxc_device_t){NXC_DEVICE_CUDA, 0};
    NXT_FAIL(nxc_create_readable(f.c, mixed, 2, NULL, &op), NXC_ERR_MIXED_DEVICES);
    says("descriptor 1");
    nxc_desc_t bad = nxt_desc(dst, 16);
    bad.device.kind = (nxc_device_kind_t)9;
    NXT_FAIL(nxc_create_readable(f.c, &bad, 1, NULL, &op), NXC_ERR_INVALID_DEVICE);
    nxc_desc_t wrap = nxt_desc((void *)(UINTPTR_MAX - 8), 64);
    NXT_FAIL(nxc_create_readable(f.c, &wrap, 1, NULL, &op), NXC_ERR_INVALID_DESCRIPTOR);
    NXT_CHECK(op == (nxc_op_t *)0x1); /* out-params untouched on error */
    teardown(&f);
}

/* One documented limit on every transport, refused at the call: a list of
 * more than NXC_DESCS_MAX descriptors (here 200,000 over one buffer). */
static void test_too_many_descriptors(void) {
    fixture_t f = setup();
    size_t n = 200000;
    char *mem = nxt_alloc(n);
    nxc_desc_t *d = calloc(n, sizeof *d);
    NXT_CHECK(d);
    for (size_t i = 0; i < n; i++)
        d[i] = nxt_desc(mem + i, 1);
    nxc_op_t *op = (nxc_op_t *)0x1;
    NXT_FAIL(nxc_create_readable(f.c, d, NXC_DESCS_MAX + 1, NULL, &op), NXC_ERR_INVALID_PARAM);
    says("NXC_DESCS_MAX");
    NXT_FAIL(nxc_create_writable(f.c, d, n, NULL, &op), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, d, n, NULL, &op), NXC_ERR_INVALID_PARAM);
    says("NXC_DESCS_MAX");
    NXT_FAIL(nxc_begin_write(f.c, d, NXC_DESCS_MAX + 1, f.wmd, 0, NULL, &op),
             NXC_ERR_INVALID_PARAM);
    NXT_CHECK(op == (nxc_op_t *)0x1);
    free(d);
    free(mem);
    teardown(&f);
}

static void test_null_arguments(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    NXT_FAIL(nxc_create_readable(NULL, &d, 1, NULL, &op), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, NULL, NULL), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_begin_read(f.c, NULL, 0, &d, 1, NULL, &op), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_begin_write(f.c, &d, 1, f.wmd, 0, NULL, NULL), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_op_wait(NULL, 0), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_op_cancel(NULL), NXC_ERR_INVALID_PARAM);
    NXT_EQ_INT(nxc_op_fd(NULL), -1);
    NXT_EQ_INT(nxc_op_status(NULL), NXC_OP_UNINITIALIZED);
    nxc_op_release(NULL);
    nxc_connector_destroy(NULL);
    const char *text;
    NXT_FAIL(nxc_op_metadata(f.readable, NULL, NULL), NXC_ERR_INVALID_PARAM);
    (void)text;
    teardown(&f);
}

static void test_params(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 0};
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    says("timeout_ms");
    p = (nxc_op_params_t){.field_mask = NXC_OP_FIELD_NOTIFICATION_KEY, .notification_key = ""};
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    p.notification_key = "has space";
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    p.notification_key = "ok-key";
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    says("passive side");

    /* a field_mask bit this library does not know (a newer program's field) */
    p = (nxc_op_params_t){.field_mask = NXC_OP_FIELD_TIMEOUT | (1u << 9), .timeout_ms = 100};
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    says("field_mask bit 9 (0x200)");
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    says("op params: field_mask bit 9");
    p = (nxc_op_params_t){.field_mask = 1ull << 63};
    NXT_FAIL(nxc_create_writable(f.c, &d, 1, &p, &op), NXC_ERR_INVALID_PARAM);
    says("bit 63");
    p = (nxc_op_params_t){.field_mask = NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_NOTIFICATION_KEY |
                                        NXC_OP_FIELD_USER_DATA,
                          .timeout_ms = 60000,
                          .notification_key = "all-fields",
                          .user_data = &p};
    NXT_PASS(nxc_create_readable(f.c, &d, 1, &p, &op));
    NXT_CHECK(nxc_op_user_data(op) == &p);
    nxc_op_release(op);

    nxc_connector_t *c2 = (nxc_connector_t *)0x1;
    nxc_connector_params_t unknown = {.field_mask = NXC_CONNECTOR_FIELD_NAME | (1u << 8),
                                      .name = "x"};
    NXT_FAIL(nxc_connector_create(&unknown, &c2), NXC_ERR_INVALID_PARAM);
    says("connector params: field_mask bit 8 (0x100)");
    for (int v = -1; v <= 3; v += 4) { /* -1 and 3: no such format */
        unknown = (nxc_connector_params_t){.field_mask = NXC_CONNECTOR_FIELD_METADATA_VERSION,
                                           .metadata_version = v};
        NXT_FAIL(nxc_connector_create(&unknown, &c2), NXC_ERR_INVALID_PARAM);
        says("metadata_version");
    }
    /* the name rule says what it is: a space is printable, but refused */
    unknown = (nxc_connector_params_t){.field_mask = NXC_CONNECTOR_FIELD_NAME, .name = "a b"};
    NXT_FAIL(nxc_connector_create(&unknown, &c2), NXC_ERR_INVALID_PARAM);
    says("no space");
    nxc_connector_params_t cp = {.field_mask = NXC_CONNECTOR_FIELD_TRANSPORTS,
                                 .transports = "carrier-pigeon"};
    NXT_FAIL(nxc_connector_create(&cp, &c2), NXC_ERR_INVALID_PARAM);
    says("carrier-pigeon");
    cp = (nxc_connector_params_t){.field_mask = NXC_CONNECTOR_FIELD_NAME, .name = ""};
    NXT_FAIL(nxc_connector_create(&cp, &c2), NXC_ERR_INVALID_PARAM);
    cp = (nxc_connector_params_t){.field_mask = NXC_CONNECTOR_FIELD_LOG_LEVEL, .log_level = 17};
    NXT_FAIL(nxc_connector_create(&cp, &c2), NXC_ERR_INVALID_PARAM);
    cp = (nxc_connector_params_t){.field_mask = NXC_CONNECTOR_FIELD_TCP_ADDRESS,
                                  .tcp_address = NULL};
    NXT_FAIL(nxc_connector_create(&cp, &c2), NXC_ERR_INVALID_PARAM);
    says("tcp_address");
    NXT_CHECK(c2 == (nxc_connector_t *)0x1);
    /* the environment is not a parameter: a bad value is warned about and
     * the default used (test_env checks the warning) */
    setenv("NXC_TRANSPORTS", "nope", 1);
    NXT_PASS(nxc_connector_create(NULL, &c2));
    nxc_connector_destroy(c2);
    unsetenv("NXC_TRANSPORTS");
    /* metadata of an active op */
    NXT_PASS(nxc_begin_read(f.c, f.rmd, 0, &d, 1, NULL, &op));
    const char *text;
    NXT_FAIL(nxc_op_metadata(op, &text, NULL), NXC_ERR_INVALID_STATE);
    NXT_PASS(nxc_op_wait(op, 30000));
    nxc_op_release(op);
    teardown(&f);
}

static void test_wrong_pairing(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    NXT_FAIL(nxc_begin_read(f.c, f.wmd, 0, &d, 1, NULL, &op), NXC_ERR_WRONG_OPERATION);
    says("begin_write");
    NXT_FAIL(nxc_begin_write(f.c, &d, 1, f.rmd, 0, NULL, &op), NXC_ERR_WRONG_OPERATION);
    says("begin_read");
    /* JSON says writable but the blob says readable: refused as malformed. */
    char *forged = nxt_md_set_kind(f.rmd, 2);
    NXT_FAIL(nxc_begin_write(f.c, &d, 1, forged, 0, NULL, &op), NXC_ERR_METADATA_MALFORMED);
    free(forged);
    teardown(&f);
}

static void test_size_mismatch(void) {
    fixture_t f = setup();
    nxc_desc_t small = nxt_desc(dst, 100),
               two[2] = {nxt_desc(dst, 2048), nxt_desc(dst + 2048, 2047)};
    nxc_op_t *op;
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, &small, 1, NULL, &op), NXC_ERR_SIZE_MISMATCH);
    says("4096");
    NXT_FAIL(nxc_begin_write(f.c, two, 2, f.wmd, 0, NULL, &op), NXC_ERR_SIZE_MISMATCH);
    says("4095");
    teardown(&f);
}

/* The secret's offset: in version 1's blob, or version 2's op part. */
static size_t secret_at(const uint8_t *blob) {
    return memcmp(blob, "NXCO", 4) ? 32 : 16;
}

static void set_version(uint8_t *blob, size_t len, void *arg) {
    blob[4] = 7;
    blob[5] = 0;
}

static void flip_secret(uint8_t *blob, size_t len, void *arg) {
    blob[secret_at(blob)] ^= 0x5a;
}

static void test_bad_metadata(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    NXT_FAIL(nxc_begin_read(f.c, "not json", 0, &d, 1, NULL, &op), NXC_ERR_METADATA_MALFORMED);
    size_t len = strlen(f.rmd);
    for (size_t cut = 0; cut < len; cut += len / 37 + 1)
        NXT_FAIL(nxc_begin_read(f.c, f.rmd, cut ? cut : 1, &d, 1, NULL, &op),
                 NXC_ERR_METADATA_MALFORMED);
    char *huge = malloc(NXC_METADATA_MAX + 2);
    memset(huge, ' ', NXC_METADATA_MAX + 1);
    huge[NXC_METADATA_MAX + 1] = '\0';
    NXT_FAIL(nxc_begin_read(f.c, huge, 0, &d, 1, NULL, &op), NXC_ERR_METADATA_TOO_LARGE);
    free(huge);
    char *v7 = nxt_md_patch_blob(f.rmd, set_version, NULL);
    NXT_FAIL(nxc_begin_read(f.c, v7, 0, &d, 1, NULL, &op), NXC_ERR_METADATA_VERSION);
    says("version 7");
    free(v7);
    teardown(&f);
}

/* A forged secret, or ranges outside the op's buffers: the peer refuses and
 * no byte moves. */
static void test_forged_access(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    char *forged = nxt_md_patch_blob(f.wmd, flip_secret, NULL);
    nxt_fill(dst, sizeof dst, 99);
    NXT_PASS(nxc_begin_write(f.c, &d, 1, forged, 0, NULL, &op));
    NXT_EQ_INT(nxc_op_wait(op, 30000), NXC_ERR_REFUSED);
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_ERRORED);
    NXT_CHECK(strstr(nxc_op_message(op), "refused") != NULL);
    nxc_op_release(op);
    free(forged);
    /* a descriptor moved 64 bytes past the buffer: out of bounds */
    char *oob = nxt_md_patch_desc(f.wmd, 0, 64, 0, NULL);
    NXT_PASS(nxc_begin_write(f.c, &d, 1, oob, 0, NULL, &op));
    NXT_EQ_INT(nxc_op_wait(op, 30000), NXC_ERR_REFUSED);
    NXT_CHECK(strstr(nxc_op_message(op), "outside") != NULL);
    nxc_op_release(op);
    free(oob);
    NXT_EQ_INT(nxc_op_status(f.writable), NXC_OP_INITIALIZED); /* still usable */
    teardown(&f);
}

static void test_gpu_not_supported(void) {
    fixture_t f = setup();
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    d.device = (nxc_device_t){NXC_DEVICE_CUDA, 1};
    nxc_op_t *op;
    NXT_FAIL(nxc_create_readable(f.c, &d, 1, NULL, &op), NXC_ERR_NOT_SUPPORTED);
    says("cuda:1");
    NXT_FAIL(nxc_begin_read(f.c, f.rmd, 0, &d, 1, NULL, &op), NXC_ERR_NOT_SUPPORTED);
    /* remote memory on a GPU */
    char *gpu = nxt_md_patch_desc(f.rmd, 0, 0, 0, "cuda:0");
    nxc_desc_t h = nxt_desc(dst, sizeof dst);
    NXT_FAIL(nxc_begin_read(f.c, gpu, 0, &h, 1, NULL, &op), NXC_ERR_NOT_SUPPORTED);
    says("remote");
    free(gpu);
    teardown(&f);
}

/* The peer's connector is gone before we begin: UNREACHABLE, promptly, on
 * every transport (shm knows it before trying and fails the begin; tcp and
 * ucx find it connecting and end the op), for reads and writes, whether the
 * peer process exited or lives on without its connector. */
static void gone_peer(int fd, void *arg) {
    nxc_connector_t *c = nxt_connector("short-lived", 1);
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    nxc_op_t *r, *w;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &r));
    NXT_PASS(nxc_create_writable(c, &d, 1, NULL, &w));
    const char *md;
    NXT_PASS(nxc_op_metadata(r, &md, NULL));
    nxt_send_str(fd, md);
    NXT_PASS(nxc_op_metadata(w, &md, NULL));
    nxt_send_str(fd, md);
    nxc_op_release(r);
    nxc_op_release(w);
    nxc_connector_destroy(c);
    if (arg) { /* live on, without a connector */
        nxt_send_str(fd, "destroyed");
        free(nxt_recv(fd, NULL, 60000));
    }
}

static void expect_unreachable(nxc_connector_t *c, const char *md, bool read) {
    nxc_desc_t d = nxt_desc(dst, sizeof dst);
    nxc_op_t *op;
    nxc_status_t st = read ? nxc_begin_read(c, md, 0, &d, 1, NULL, &op)
                           : nxc_begin_write(c, &d, 1, md, 0, NULL, &op);
    char why[512];
    snprintf(why, sizeof why, "%s", nxc_last_error());
    if (st == NXC_OK) {
        st = nxc_op_wait(op, 10000);
        NXT_EQ_INT(nxc_op_status(op), NXC_OP_ERRORED);
        snprintf(why, sizeof why, "%s", nxc_op_message(op));
        nxc_op_release(op);
    }
    printf("  %s over %s: %s (%s)\n", read ? "read" : "write", nxc_connector_transports(c),
           nxc_status_string(st), why);
    NXT_EQ_INT(st, NXC_ERR_UNREACHABLE);
    NXT_CHECK(why[0]);
}

static void unreachable_case(bool process_lives) {
    pid_t pid;
    int fd = nxt_spawn_peer(gone_peer, process_lives ? (void *)1 : NULL, &pid);
    char *rmd = nxt_recv(fd, NULL, 30000), *wmd = nxt_recv(fd, NULL, 30000);
    /* Begin only once the connector is gone: before its destroy the ops
     * may still be there (a read begun then was granted and completed,
     * 1 run in 40 under load). */
    if (process_lives)
        free(nxt_recv(fd, NULL, 30000)); /* "destroyed" */
    else
        nxt_join(pid, 30000);
    nxc_connector_t *c = nxt_connector("caller", 1);
    expect_unreachable(c, rmd, true);
    expect_unreachable(c, wmd, false);
    nxc_connector_destroy(c);
    if (process_lives) {
        nxt_send_str(fd, "bye");
        nxt_join(pid, 30000);
    }
    free(rmd);
    free(wmd);
}

static void test_unreachable(void) {
    unreachable_case(false);
}

static void test_unreachable_connector_gone(void) {
    unreachable_case(true);
}

/* nxc_last_error()'s rule (nxc.h): only a failing call writes it; calls that
 * succeed, even those whose inner steps fail (a bad NXC_TRANSPORTS, a
 * transport stepping aside), leave it alone; nxc_op_wait() returning an
 * op's error is a failing call. */
static void test_last_error_rule(void) {
    nxc_device_t dev;
    NXT_FAIL(nxc_device_parse("tpu:9", &dev), NXC_ERR_INVALID_DEVICE);
    char first[512];
    snprintf(first, sizeof first, "%s", nxc_last_error());
    NXT_CHECK(strstr(first, "tpu:9"));
    setenv("NXC_TRANSPORTS", "pigeon", 1); /* warned about and ignored */
    nxc_connector_t *c = nxt_connector("last-error", 1);
    unsetenv("NXC_TRANSPORTS");
    NXT_EQ_STR(nxc_last_error(), first);
    nxt_fill(src, sizeof src, 5);
    nxc_desc_t s = nxt_desc(src, sizeof src), d = nxt_desc(dst, sizeof dst);
    nxc_op_t *readable, *read;
    NXT_PASS(nxc_create_readable(c, &s, 1, NULL, &readable));
    const char *md;
    NXT_PASS(nxc_op_metadata(readable, &md, NULL));
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 30000));
    NXT_PASS(nxc_op_wait(readable, 30000));
    NXT_EQ_INT(nxc_op_status(read), NXC_OP_COMPLETE);
    NXT_PASS(nxc_op_cancel(read));
    const char *text = nxc_last_error();
    nxc_op_release(read);
    NXT_EQ_STR(nxc_last_error(), first);
    NXT_CHECK(nxc_last_error() == text); /* the same buffer */
    /* the next failure replaces it; an op's error through wait is one */
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &read));
    NXT_EQ_STR(nxc_last_error(), first);
    NXT_EQ_INT(nxc_op_wait(read, 30000), NXC_ERR_REFUSED);
    NXT_CHECK(strstr(nxc_last_error(), "already complete"));
    nxc_op_release(read);
    nxc_op_release(readable);
    nxc_connector_destroy(c);
    NXT_CHECK(strstr(nxc_last_error(), "already complete"));
}

/* A released op's metadata used afterwards: refused, memory untouched. */
static void test_released_metadata(void) {
    nxc_connector_t *c = nxt_connector("owner", 1);
    char *buf = nxt_alloc(1 << 16);
    nxt_fill(buf, 1 << 16, 11);
    nxc_desc_t d = nxt_desc(buf, 1 << 16);
    nxc_op_t *w, *op;
    NXT_PASS(nxc_create_writable(c, &d, 1, NULL, &w));
    const char *text;
    NXT_PASS(nxc_op_metadata(w, &text, NULL));
    char *md = strdup(text);
    nxc_op_release(w);
    char *other = nxt_alloc(1 << 16);
    nxc_desc_t o = nxt_desc(other, 1 << 16);
    NXT_PASS(nxc_begin_write(c, &o, 1, md, 0, NULL, &op));
    NXT_EQ_INT(nxc_op_wait(op, 30000), NXC_ERR_REFUSED);
    NXT_CHECK(strstr(nxc_op_message(op), "no live operation") != NULL);
    nxc_op_release(op);
    NXT_EQ_INT(nxt_verify(buf, 1 << 16, 11), SIZE_MAX);
    nxc_connector_destroy(c);
    free(md);
    free(buf);
    free(other);
}

/* A connector's metadata_version: version 2 texts (two parts) from one
 * connector are read by a connector writing version 1, and the reverse,
 * over the transport under test; the bytes arrive. */
static nxc_connector_t *connector_writing(int version) {
    return nxt_connector_with((nxc_connector_params_t){
        .field_mask = NXC_CONNECTOR_FIELD_METADATA_VERSION, .metadata_version = version});
}

static void read_once(nxc_connector_t *owner, nxc_connector_t *reader, int version) {
    static char from[8192], to[8192];
    nxt_fill(from, sizeof from, (uint32_t)version);
    memset(to, 0, sizeof to);
    nxc_desc_t s = nxt_desc(from, sizeof from), d = nxt_desc(to, sizeof to);
    nxc_op_t *readable, *op;
    const char *md;
    NXT_PASS(nxc_create_readable(owner, &s, 1, NULL, &readable));
    NXT_PASS(nxc_op_metadata(readable, &md, NULL));
    const char *nixl = strstr(md, "\"nixl_metadata\":\"");
    NXT_CHECK(nixl);
    nixl += strlen("\"nixl_metadata\":\"");
    bool two = memchr(nixl, '.', strcspn(nixl, "\"")) != NULL;
    NXT_EQ_INT(two, version == 2);
    NXT_PASS(nxc_begin_read(reader, md, 0, &d, 1, NULL, &op));
    NXT_EQ_INT(nxc_op_wait(op, 30000), NXC_OK);
    NXT_EQ_INT(nxc_op_wait(readable, 30000), NXC_OK);
    nxc_op_release(op);
    nxc_op_release(readable);
    NXT_EQ_INT(nxt_verify(to, sizeof to, (uint32_t)version), SIZE_MAX);
}

/* Three ops: the second and third reader take the peer part it kept. */
static void read_across(nxc_connector_t *owner, nxc_connector_t *reader, int version) {
    for (int i = 0; i < 3; i++)
        read_once(owner, reader, version);
}

static void test_metadata_versions(void) {
    nxc_connector_t *v1 = connector_writing(1), *v2 = connector_writing(2);
    read_across(v2, v1, 2);
    read_across(v1, v2, 1);
    read_across(v2, v2, 2);
    nxc_connector_destroy(v1);
    nxc_connector_destroy(v2);
}

static const nxt_test_t nxt_tests[] = {
    {"bad_descriptors", test_descriptors, 0},
    {"too_many_descriptors", test_too_many_descriptors, 0},
    {"null_arguments", test_null_arguments, 0},
    {"bad_params", test_params, 0},
    {"wrong_pairing", test_wrong_pairing, 0},
    {"size_mismatch", test_size_mismatch, 0},
    {"bad_metadata", test_bad_metadata, 0},
    {"forged_access_refused", test_forged_access, 0},
    {"gpu_not_supported", test_gpu_not_supported, 0},
    {"unreachable_peer", test_unreachable, 0},
    {"unreachable_connector_gone", test_unreachable_connector_gone, 0},
    {"released_metadata_refused", test_released_metadata, 0},
    {"last_error_rule", test_last_error_rule, 0},
    {"metadata_versions", test_metadata_versions, 0},
};
NXT_MAIN(nxt_tests)
