/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench: bandwidth and latency of nxc between two processes.
 *
 *   nxc-bench --self [options]                  both roles, forked on this host
 *   nxc-bench --target [--listen ADDR:PORT]     serve one initiator, then exit
 *   nxc-bench --initiator HOST:PORT [options]   drive a sweep against a target
 *
 * The target is the passive side: it owns one buffer per point and, for each
 * op, creates a readable (for --op read) or writable (--op write) over
 * `batch` blocks of it and hands the metadata text to the initiator. The
 * initiator is the active side: it begins reads or writes with that metadata
 * and times them. The two meet through a rendezvous socket (TCP) that
 * carries length-prefixed messages; nxc moves the bytes.
 *
 * A passive op completes once, so every op needs fresh metadata. The
 * initiator asks for it a round at a time (up to --round ops): the target
 * creates the round's ops and sends all their metadata before the initiator
 * starts its clock, so the rendezvous stays out of the timed section. Within
 * a round the initiator keeps --concurrency ops in flight.
 *
 *   latency       begin call -> op seen complete on the initiator (op fd)
 *   notification  begin call on the initiator -> passive op seen complete on
 *                 the target (op fd), on the initiator's clock (the offset
 *                 between the two clocks is measured by ping-pong over the
 *                 rendezvous socket at each point)
 *   bandwidth     bytes of the timed ops / sum over rounds of (first begin ->
 *                 last completion)
 *
 * Only the public header is used. Every wait is bounded: ops carry
 * deadlines, socket reads and writes have deadlines, and a point stops
 * issuing ops after --point-time seconds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nxc/nxc.h"

#define PROTO_VERSION 1
#define MSG_MAGIC 0x4e584342u /* "NXCB" */
#define MSG_MAX (512ull << 20)
#define MAX_LIST 64
#define POLL_SLICE_MS 100

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

enum role { ROLE_NONE, ROLE_SELF, ROLE_TARGET, ROLE_INITIATOR };
enum opkind { OP_READ = 0, OP_WRITE = 1 };
enum fmt { FMT_NONE, FMT_JSON, FMT_CSV };

typedef struct cfg {
    enum role role;
    const char *listen; /* target: ADDR:PORT (default 127.0.0.1:18515) */
    const char *connect;
    int ops[2];
    int nops;
    uint64_t blocks[MAX_LIST];
    int nblocks;
    uint64_t batches[MAX_LIST];
    int nbatches;
    long iters, warmup, min_iters;
    uint64_t max_bytes; /* timed bytes per point */
    double point_time;  /* seconds of timed ops per point */
    int concurrency;
    const char *transport;
    bool check, prereg, quiet;
    enum fmt fmt;
    const char *out_path;
    int progress; /* -1 auto (stderr is a tty) */
    int op_timeout_ms;
    int idle_timeout_s; /* target: longest wait for the initiator's next message */
    int timeout_s;      /* whole run, 0 = none */
    uint64_t max_mem;   /* buffer bytes per process and point */
    int round_max;
    uint64_t seed;
} cfg_t;

static cfg_t cfg = {
    .ops = {OP_READ},
    .nops = 1,
    .iters = 1000,
    .warmup = 10,
    .min_iters = 5,
    .max_bytes = 1ull << 30,
    .point_time = 10.0,
    .concurrency = 1,
    .prereg = true,
    .progress = -1,
    .idle_timeout_s = 120,
    .max_mem = 2ull << 30,
    .round_max = 256,
    .seed = 0x6e7863u,
};

static const char *prog = "nxc-bench";
static const char *role_name = "nxc-bench";

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", role_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s --self [options]\n"
            "       %s --target [--listen ADDR:PORT] [--transport NAME]\n"
            "       %s --initiator HOST:PORT [options]\n"
            "       %s --list-transports | --version\n"
            "\n"
            "Measures nxc between a target (passive: readables/writables over one\n"
            "buffer) and an initiator (active: reads/writes). Options:\n"
            "  --op read|write|read,write   direction (default read)\n"
            "  --block-sizes LIST           e.g. 4K..256M (powers of two), 4K..256M*4,\n"
            "                               or 4K,64K,1M (default 4K..64M)\n"
            "  --batch LIST                 descriptors per op, e.g. 1..1024 (default 1)\n"
            "  --iters N                    timed ops per point (default 1000)\n"
            "  --warmup N                   untimed ops first (default 10)\n"
            "  --max-bytes SIZE             bound on timed bytes per point: large ops run\n"
            "                               fewer iterations (default 1G)\n"
            "  --min-iters N                floor for that reduction (default 5)\n"
            "  --point-time SEC             stop issuing ops after SEC s of a point (10)\n"
            "  --concurrency N              ops in flight (default 1)\n"
            "  --transport NAME             connector transports, e.g. ucx (default: all)\n"
            "  --check                      verify every byte moved (slower)\n"
            "  --json | --csv               machine-readable rows (to stdout, or -o FILE);\n"
            "                               the table then goes to stderr if both would\n"
            "                               share stdout\n"
            "  -o, --output FILE            where the machine-readable rows go\n"
            "  --progress | --no-progress   progress on stderr (default: if a tty)\n"
            "  -q, --quiet                  no table\n"
            "  --op-timeout MS              deadline of each op (default 10 s + 20 ms/MB)\n"
            "  --timeout SEC                bound on the whole run (default none)\n"
            "  --idle-timeout SEC           target: longest silence from the initiator (120)\n"
            "  --max-mem SIZE               buffer bytes per process and point (default 2G)\n"
            "  --round N                    ops whose metadata is fetched at once (256, max 1024)\n"
            "  --no-prereg                  do not keep each buffer registered for the\n"
            "                               whole point (measures cold registration)\n"
            "  --seed N                     data pattern seed for --check\n"
            "\n"
            "Table columns, one row per point (op, block size, batch):\n"
            "  transport   what moved the bytes (nxc_op_transport of the first op)\n"
            "  GB/s        bytes of the timed ops / time with ops in flight\n"
            "  lat p50/p99 begin call -> op seen complete on the initiator, in us\n"
            "  ntf p50     notification time, in us: begin call on the initiator ->\n"
            "              the target's passive op seen complete, on the initiator's\n"
            "              clock (the two clocks are one when both run on one kernel,\n"
            "              else their offset is estimated by ping-pong at each point)\n"
            "The --json/--csv rows add min/mean latency, notify p99 and\n"
            "notify_lag_p50_us: the target's completion minus the initiator's, per\n"
            "op. It is often negative: both sides learn of the end independently, and\n"
            "the target's op may be seen complete before the initiator's own wait\n"
            "returns; across hosts the clock offset adds up to half a round trip of\n"
            "error either way.\n"
            "\n"
            "Exit status: 0; 1 when a point failed, --check found a difference, or no\n"
            "point could be measured (all skipped, e.g. over --max-mem); 2 for a bad\n"
            "command line; 3 when --timeout ran out.\n",
            prog, prog, prog, prog);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ms_left(uint64_t deadline) {
    uint64_t n = now_ns();
    if (n >= deadline) return 0;
    uint64_t ms = (deadline - n + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) die("out of memory");
    return p;
}

/* "4K", "64KiB", "1M", "2G", "512" -> bytes (binary multiples). */
static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1ull << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ull << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ull << 30;
        end++;
        break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return false;
    if (v > UINT64_MAX / mul) return false;
    *out = v * mul;
    return true;
}

static bool parse_count(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

/* LIST: items separated by commas; an item is VALUE or A..B (A, 2A, 4A, ...
 * up to B) or A..B*F (factor F). */
static int parse_list(const char *text, bool sizes, uint64_t *vals, int max, const char *what) {
    char *dup = strdup(text);
    if (!dup) die("out of memory");
    int n = 0;
    char *save = NULL;
    for (char *item = strtok_r(dup, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *dots = strstr(item, "..");
        uint64_t a, b, f = 2;
        bool ok;
        if (dots) {
            *dots = 0;
            char *hi = dots + 2, *star = strchr(hi, '*');
            if (star) {
                *star = 0;
                if (!parse_count(star + 1, &f) || f < 2) {
                    fprintf(stderr, "%s: bad factor in %s\n", prog, what);
                    exit(2);
                }
            }
            ok = (sizes ? parse_size(item, &a) && parse_size(hi, &b)
                        : parse_count(item, &a) && parse_count(hi, &b)) &&
                 a > 0 && a <= b;
        } else {
            ok = (sizes ? parse_size(item, &a) : parse_count(item, &a)) && a > 0;
            b = a;
        }
        if (!ok) {
            fprintf(stderr, "%s: bad %s '%s'\n", prog, what, text);
            exit(2);
        }
        for (uint64_t v = a; v <= b; v = (v > b / f) ? b + 1 : v * f) {
            if (n == max) {
                fprintf(stderr, "%s: too many %s (max %d)\n", prog, what, max);
                exit(2);
            }
            vals[n++] = v;
            if (v == b) break;
        }
    }
    free(dup);
    if (n == 0) {
        fprintf(stderr, "%s: empty %s\n", prog, what);
        exit(2);
    }
    return n;
}

/* 4096 -> "4K"; exact binary multiples get a suffix. */
static const char *fmt_size(uint64_t v, char *buf, size_t len) {
    if (v >= (1ull << 30) && v % (1ull << 30) == 0)
        snprintf(buf, len, "%" PRIu64 "G", v >> 30);
    else if (v >= (1ull << 20) && v % (1ull << 20) == 0)
        snprintf(buf, len, "%" PRIu64 "M", v >> 20);
    else if (v >= (1ull << 10) && v % (1ull << 10) == 0)
        snprintf(buf, len, "%" PRIu64 "K", v >> 10);
    else
        snprintf(buf, len, "%" PRIu64, v);
    return buf;
}

/* Pattern for --check: 8-byte words that depend on the op index and the
 * word's offset within the op, so stale, shifted or missing data fails. */
static inline uint64_t pat_word(uint64_t seed, uint64_t k, uint64_t w) {
    uint64_t x = seed ^ ((k + 1) * 0x9e3779b97f4a7c15ull) ^ (w * 0xbf58476d1ce4e5b9ull);
    x ^= x >> 31;
    return x | 1;
}

/* The op's bytes are `batch` blocks of `block` at base + j * stride. */
static void pat_fill(uint8_t *base, uint64_t block, uint64_t batch, uint64_t k) {
    uint64_t off = 0;
    for (uint64_t j = 0; j < batch; j++) {
        uint8_t *p = base + j * block;
        for (uint64_t i = 0; i < block; i++, off++) {
            if ((off & 7) == 0 && i + 8 <= block) {
                uint64_t w = pat_word(cfg.seed, k, off >> 3);
                memcpy(p + i, &w, 8);
                i += 7;
                off += 7;
            } else {
                p[i] = (uint8_t)(pat_word(cfg.seed, k, off >> 3) >> (8 * (off & 7)));
            }
        }
    }
}

/* Number of bytes that differ from the pattern of op k. */
static uint64_t pat_check(const uint8_t *base, uint64_t block, uint64_t batch, uint64_t k) {
    uint64_t off = 0, bad = 0;
    for (uint64_t j = 0; j < batch; j++) {
        const uint8_t *p = base + j * block;
        for (uint64_t i = 0; i < block; i++, off++) {
            uint64_t w = pat_word(cfg.seed, k, off >> 3);
            if ((off & 7) == 0 && i + 8 <= block) {
                uint64_t got;
                memcpy(&got, p + i, 8);
                if (got != w)
                    for (int b = 0; b < 8; b++)
                        bad += ((got ^ w) >> (8 * b) & 0xff) != 0;
                i += 7;
                off += 7;
            } else {
                bad += p[i] != (uint8_t)(w >> (8 * (off & 7)));
            }
        }
    }
    return bad;
}

/* Page-aligned, pre-faulted buffer. */
static uint8_t *buf_alloc(uint64_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap %" PRIu64 " bytes: %s", len, strerror(errno));
    memset(p, 0x5a, len);
    return p;
}

/* The kernel's boot id: processes that share it share CLOCK_MONOTONIC. */
static void boot_id(char *out, size_t len) {
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    out[0] = 0;
    if (!f) return;
    if (!fgets(out, (int)len, f)) out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static void nxc_die(nxc_status_t st, const char *what) {
    die("%s: %s: %s", what, nxc_status_string(st), nxc_last_error());
}

static nxc_connector_t *connector_make(const char *name, const char *transport) {
    nxc_connector_params_t p = {0};
    char nm[64];
    snprintf(nm, sizeof nm, "%s-%ld", name, (long)getpid());
    p.field_mask = NXC_CONNECTOR_FIELD_NAME;
    p.name = nm;
    if (transport && *transport) {
        p.field_mask |= NXC_CONNECTOR_FIELD_TRANSPORTS;
        p.transports = transport;
    }
    nxc_connector_t *c;
    nxc_status_t st = nxc_connector_create(&p, &c);
    if (st != NXC_OK) nxc_die(st, "connector");
    return c;
}

/* ------------------------------------------------------------------------ */
/* Rendezvous messages: {magic, type, len} + payload, every I/O bounded      */
/* ------------------------------------------------------------------------ */

enum msg_type {
    M_HELLO = 1, /* I->T: proto, transport */
    M_HELLO_OK,  /* T->I: proto, transports, connector name */
    M_PING,      /* I->T: t0 */
    M_PONG,      /* T->I: t0, t_target */
    M_POINT,     /* I->T: kind, block, batch, slots, check, seed, passive timeout, prereg */
    M_POINT_OK,  /* T->I */
    M_ROUND,     /* I->T: first op index, count */
    M_MDS,       /* T->I: count, metadata texts */
    M_ROUND_END, /* I->T: ops begun */
    M_ROUND_RES, /* T->I: count, mismatched bytes, errors, error text, completion times */
    M_POINT_END, /* I->T */
    M_POINT_END_OK /* T->I */,
    M_BYE,  /* I->T */
    M_ERROR /* either way: text */
};

typedef struct msg_hdr {
    uint32_t magic;
    uint32_t type;
    uint64_t len;
} msg_hdr_t;

typedef struct buf {
    uint8_t *p;
    size_t len, cap, pos; /* pos: read cursor */
    bool bad;             /* a read ran past the end */
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) die("out of memory");
    b->p = p;
    b->cap = cap;
}
static void put_bytes(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void put_u64(buf_t *b, uint64_t v) {
    put_bytes(b, &v, 8);
}
static void put_str(buf_t *b, const char *s, size_t n) {
    put_u64(b, n);
    put_bytes(b, s, n);
}
static uint64_t get_u64(buf_t *b) {
    uint64_t v = 0;
    if (b->len - b->pos < 8) {
        b->bad = true;
        return 0;
    }
    memcpy(&v, b->p + b->pos, 8);
    b->pos += 8;
    return v;
}
/* Points into the buffer; not NUL-terminated. */
static const char *get_str(buf_t *b, size_t *n) {
    uint64_t len = get_u64(b);
    if (b->bad || len > b->len - b->pos) {
        b->bad = true;
        *n = 0;
        return "";
    }
    const char *s = (const char *)b->p + b->pos;
    b->pos += len;
    *n = len;
    return s;
}
static void buf_clear(buf_t *b) {
    b->len = b->pos = 0, b->bad = false;
}
static void buf_free(buf_t *b) {
    free(b->p);
    *b = (buf_t){0};
}

/* Move all `len` bytes before `deadline`; false with errno on failure
 * (ETIMEDOUT when the deadline passed, EPIPE when the peer closed). */
static bool io_full(int fd, void *p, size_t len, bool out, uint64_t deadline) {
    uint8_t *c = p;
    while (len) {
        ssize_t r =
            out ? send(fd, c, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, c, len, MSG_DONTWAIT);
        if (r > 0) {
            c += r;
            len -= (size_t)r;
            continue;
        }
        if (r == 0) {
            errno = EPIPE;
            return false;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        int left = ms_left(deadline);
        if (left == 0) {
            errno = ETIMEDOUT;
            return false;
        }
        struct pollfd pfd = {fd, out ? POLLOUT : POLLIN, 0};
        if (poll(&pfd, 1, left) < 0 && errno != EINTR) return false;
    }
    return true;
}

static const char *io_why(void) {
    return errno == ETIMEDOUT ? "peer did not answer in time (hung or too slow)"
           : errno == EPIPE   ? "peer closed the connection"
                              : strerror(errno);
}

static void msg_send(int fd, uint32_t type, const buf_t *b, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    msg_hdr_t h = {MSG_MAGIC, type, b ? b->len : 0};
    if (!io_full(fd, &h, sizeof h, true, deadline) ||
        (b && b->len && !io_full(fd, b->p, b->len, true, deadline)))
        die("rendezvous: send: %s", io_why());
}

/* Receive one message into b; an M_ERROR from the peer ends the run. */
static uint32_t msg_recv(int fd, buf_t *b, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    msg_hdr_t h;
    if (!io_full(fd, &h, sizeof h, false, deadline)) die("rendezvous: receive: %s", io_why());
    if (h.magic != MSG_MAGIC || h.len > MSG_MAX)
        die("rendezvous: bad message from peer (not nxc-bench, or another version)");
    buf_clear(b);
    buf_reserve(b, h.len);
    if (h.len && !io_full(fd, b->p, h.len, false, deadline))
        die("rendezvous: receive: %s", io_why());
    b->len = h.len;
    if (h.type == M_ERROR) {
        size_t n;
        const char *s = get_str(b, &n);
        die("peer failed: %.*s", (int)n, s);
    }
    return h.type;
}

static void msg_expect(int fd, buf_t *b, uint32_t type, int timeout_ms) {
    uint32_t t = msg_recv(fd, b, timeout_ms);
    if (t != type) die("rendezvous: expected message %u, got %u", type, t);
}

/* ------------------------------------------------------------------------ */
/* Sockets                                                                   */
/* ------------------------------------------------------------------------ */

static void split_hostport(const char *text, char *host, size_t hlen, char *port, size_t plen,
                           const char *defhost) {
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(host, hlen, "%s", text);
        snprintf(port, plen, "18515");
        return;
    }
    size_t n = (size_t)(colon - text);
    if (n == 0)
        snprintf(host, hlen, "%s", defhost);
    else
        snprintf(host, hlen, "%.*s", (int)n, text);
    snprintf(port, plen, "%s", colon + 1);
}

static int sock_listen(const char *addr) {
    char host[256], port[32];
    split_hostport(addr, host, sizeof host, port, sizeof port, "127.0.0.1");
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) die("listen %s: %s", addr, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1))
        die("listen %s: %s", addr, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

static void sock_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int sock_accept(int lfd, int timeout_s) {
    struct pollfd pfd = {lfd, POLLIN, 0};
    int r;
    do
        r = poll(&pfd, 1, timeout_s * 1000);
    while (r < 0 && errno == EINTR);
    if (r == 0) die("no initiator connected within %d s", timeout_s);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) die("accept: %s", strerror(errno));
    sock_tune(fd);
    return fd;
}

/* Connect, retrying for up to timeout_s (the target may still be starting). */
static int sock_connect(const char *addr, int timeout_s) {
    char host[256], port[32];
    split_hostport(addr, host, sizeof host, port, sizeof port, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) die("connect %s: %s", addr, gai_strerror(rc));
    uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull;
    for (;;) {
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
            freeaddrinfo(res);
            sock_tune(fd);
            return fd;
        }
        int e = errno;
        close(fd);
        if (ms_left(deadline) == 0) die("connect %s: %s", addr, strerror(e));
        usleep(100000);
    }
}

/* ------------------------------------------------------------------------ */
/* Target (passive side)                                                     */
/* ------------------------------------------------------------------------ */

typedef struct tpoint {
    int kind;
    uint64_t block, batch, slots, opbytes, seed;
    bool check, active;
    int passive_timeout_ms;
    uint8_t *buf;
    uint64_t buflen;
    nxc_op_t *anchor; /* keeps the buffer's registration for the point */
} tpoint_t;

static void send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_error(int fd, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    buf_t b = {0};
    put_str(&b, text, strlen(text));
    uint64_t deadline = now_ns() + 2000000000ull;
    msg_hdr_t h = {MSG_MAGIC, M_ERROR, b.len};
    if (io_full(fd, &h, sizeof h, true, deadline)) io_full(fd, b.p, b.len, true, deadline);
    buf_free(&b);
    fprintf(stderr, "nxc-bench %s\n", text); /* text starts with "target: " */
    exit(1);
}

static nxc_op_t *anchor_make(nxc_connector_t *c, uint8_t *buf, uint64_t len) {
    nxc_desc_t d = {buf, len, {NXC_DEVICE_HOST, 0}};
    nxc_op_t *op;
    nxc_status_t st = nxc_create_readable(c, &d, 1, NULL, &op);
    if (st != NXC_OK) nxc_die(st, "register buffer (anchor readable)");
    return op;
}

static void target_point(int fd, nxc_connector_t *c, tpoint_t *tp, buf_t *in) {
    tp->kind = (int)get_u64(in);
    tp->block = get_u64(in);
    tp->batch = get_u64(in);
    tp->slots = get_u64(in);
    tp->check = get_u64(in) != 0;
    tp->seed = get_u64(in);
    tp->passive_timeout_ms = (int)get_u64(in);
    bool prereg = get_u64(in) != 0;
    if (in->bad || tp->block == 0 || tp->batch == 0 || tp->slots == 0 ||
        tp->block > UINT64_MAX / tp->batch)
        send_error(fd, "target: malformed POINT message");
    cfg.seed = tp->seed;
    tp->opbytes = tp->block * tp->batch;
    if (tp->opbytes > cfg.max_mem / tp->slots)
        send_error(fd, "target: point needs %" PRIu64 " bytes, over its --max-mem", tp->opbytes);
    tp->buflen = tp->opbytes * tp->slots;
    tp->buf = buf_alloc(tp->buflen);
    tp->anchor = prereg ? anchor_make(c, tp->buf, tp->buflen) : NULL;
    tp->active = true;
    msg_send(fd, M_POINT_OK, NULL, 10000);
}

static void target_point_end(tpoint_t *tp) {
    nxc_op_release(tp->anchor);
    if (tp->buf) munmap(tp->buf, tp->buflen);
    *tp = (tpoint_t){0};
}

/* One round: create n passive ops, send their metadata, record when each
 * completes, then report. */
static void target_round(int fd, nxc_connector_t *c, tpoint_t *tp, buf_t *in, buf_t *out) {
    uint64_t first = get_u64(in), n = get_u64(in);
    if (in->bad || !tp->active || n == 0 || n > 1u << 20)
        send_error(fd, "target: malformed ROUND message");
    nxc_op_t **ops = xcalloc(n, sizeof *ops);
    uint64_t *t_done = xcalloc(n, sizeof *t_done);
    nxc_desc_t *descs = xcalloc(tp->batch, sizeof *descs);
    /* The ops' ends come through one completion queue (user_data: the op's
     * index in the round), watched beside the socket. */
    nxc_cq_t *cq = NULL;
    nxc_status_t st = nxc_cq_create(c, NULL, &cq);
    if (st != NXC_OK) send_error(fd, "target: cq_create: %s", nxc_last_error());
    nxc_op_params_t prm = {.field_mask =
                               NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_CQ | NXC_OP_FIELD_USER_DATA,
                           .timeout_ms = tp->passive_timeout_ms,
                           .cq = cq};
    buf_clear(out);
    put_u64(out, n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = first + i;
        uint64_t slot = (tp->check ? i : k) % tp->slots;
        uint8_t *base = tp->buf + slot * tp->opbytes;
        if (tp->check && tp->kind == OP_READ) pat_fill(base, tp->block, tp->batch, k);
        for (uint64_t j = 0; j < tp->batch; j++)
            descs[j] = (nxc_desc_t){base + j * tp->block, tp->block, {NXC_DEVICE_HOST, 0}};
        prm.user_data = (void *)(uintptr_t)i;
        st = tp->kind == OP_READ ? nxc_create_readable(c, descs, (size_t)tp->batch, &prm, &ops[i])
                                 : nxc_create_writable(c, descs, (size_t)tp->batch, &prm, &ops[i]);
        if (st != NXC_OK)
            send_error(fd, "target: create %s: %s: %s",
                       tp->kind == OP_READ ? "readable" : "writable", nxc_status_string(st),
                       nxc_last_error());
        const char *md;
        size_t mdlen;
        st = nxc_op_metadata(ops[i], &md, &mdlen);
        if (st != NXC_OK)
            send_error(fd, "target: metadata: %s: %s", nxc_status_string(st), nxc_last_error());
        put_str(out, md, mdlen);
    }
    msg_send(fd, M_MDS, out, 30000);

    uint64_t pending = n, used = n, mismatched = 0, errors = 0;
    char errtext[512] = "";
    bool ended = false;
    nxc_cq_entry_t ends[256];
    /* Until ROUND_END: the passive deadline bounds the ops; after it, the
     * notifications of ops the initiator saw complete get 5 s. */
    uint64_t deadline = now_ns() + ((uint64_t)tp->passive_timeout_ms + 10000) * 1000000ull;
    while (pending > 0 || !ended) {
        int left = ms_left(deadline);
        if (left == 0) {
            for (uint64_t i = 0; i < n; i++)
                if (ops[i]) {
                    if (i < used) {
                        errors++;
                        if (!*errtext)
                            snprintf(errtext, sizeof errtext,
                                     "op %" PRIu64 ": no notification before the deadline",
                                     first + i);
                    }
                    nxc_op_release(ops[i]);
                    ops[i] = NULL;
                }
            pending = 0;
            if (!ended) send_error(fd, "target: initiator silent past the round's deadline");
            break;
        }
        struct pollfd pfd[2] = {{nxc_cq_fd(cq), POLLIN, 0}, {fd, POLLIN, 0}};
        int r = poll(pfd, ended ? 1 : 2, left < POLL_SLICE_MS ? left : POLL_SLICE_MS);
        if (r < 0 && errno != EINTR) send_error(fd, "target: poll: %s", strerror(errno));
        uint64_t t = now_ns();
        /* the ops first, so that their times are not delayed by the socket */
        for (int got; (got = nxc_cq_poll(cq, ends, 256)) > 0;) {
            for (int e = 0; e < got; e++) {
                uint64_t i = (uintptr_t)ends[e].user_data;
                if (ends[e].result == NXC_OK) {
                    t_done[i] = t;
                    if (tp->check && tp->kind == OP_WRITE) {
                        uint64_t slot = i % tp->slots;
                        mismatched += pat_check(tp->buf + slot * tp->opbytes, tp->block, tp->batch,
                                                first + i);
                    }
                } else {
                    errors++;
                    if (!*errtext)
                        snprintf(errtext, sizeof errtext, "op %" PRIu64 ": %s: %s", first + i,
                                 nxc_status_string(ends[e].result), nxc_op_message(ops[i]));
                }
                nxc_op_release(ops[i]);
                ops[i] = NULL;
                pending--;
            }
        }
        if (r > 0 && !ended && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            uint32_t type = msg_recv(fd, in, 10000);
            if (type != M_ROUND_END) send_error(fd, "target: expected ROUND_END");
            used = get_u64(in);
            if (in->bad || used > n) send_error(fd, "target: malformed ROUND_END");
            for (uint64_t i = used; i < n; i++)
                if (ops[i]) {
                    nxc_op_release(ops[i]);
                    ops[i] = NULL;
                    pending--;
                }
            ended = true;
            /* the initiator saw its ops complete: notifications are due now */
            uint64_t d2 = now_ns() + 5000000000ull;
            if (d2 < deadline) deadline = d2;
        }
    }
    nxc_cq_destroy(cq);
    buf_clear(out);
    put_u64(out, n);
    put_u64(out, mismatched);
    put_u64(out, errors);
    put_str(out, errtext, strlen(errtext));
    for (uint64_t i = 0; i < n; i++)
        put_u64(out, t_done[i]);
    msg_send(fd, M_ROUND_RES, out, 10000);
    free(ops);
    free(t_done);
    free(descs);
}

static int target_serve(int fd) {
    buf_t in = {0}, out = {0};
    int idle_ms = cfg.idle_timeout_s * 1000;
    msg_expect(fd, &in, M_HELLO, idle_ms);
    uint64_t proto = get_u64(&in);
    size_t tlen;
    const char *tr = get_str(&in, &tlen);
    if (in.bad || proto != PROTO_VERSION)
        send_error(fd, "target: protocol %" PRIu64 " not supported (this is %d)", proto,
                   PROTO_VERSION);
    char transport[256];
    snprintf(transport, sizeof transport, "%.*s", (int)tlen, tr);
    if (cfg.transport) snprintf(transport, sizeof transport, "%s", cfg.transport);
    nxc_connector_params_t p = {0};
    char nm[64];
    snprintf(nm, sizeof nm, "nxc-bench-target-%ld", (long)getpid());
    p.field_mask = NXC_CONNECTOR_FIELD_NAME;
    p.name = nm;
    if (*transport) {
        p.field_mask |= NXC_CONNECTOR_FIELD_TRANSPORTS;
        p.transports = transport;
    }
    nxc_connector_t *c;
    nxc_status_t st = nxc_connector_create(&p, &c);
    if (st != NXC_OK)
        send_error(fd, "target: connector (transports '%s'): %s: %s", transport,
                   nxc_status_string(st), nxc_last_error());
    buf_clear(&out);
    put_u64(&out, PROTO_VERSION);
    const char *tl = nxc_connector_transports(c);
    put_str(&out, tl, strlen(tl));
    char bid[64];
    boot_id(bid, sizeof bid);
    put_str(&out, bid, strlen(bid));
    msg_send(fd, M_HELLO_OK, &out, 10000);

    tpoint_t tp = {0};
    for (;;) {
        uint32_t type = msg_recv(fd, &in, idle_ms);
        if (type == M_PING) {
            uint64_t t0 = get_u64(&in);
            buf_clear(&out);
            put_u64(&out, t0);
            put_u64(&out, now_ns());
            msg_send(fd, M_PONG, &out, 10000);
        } else if (type == M_POINT) {
            if (tp.active) target_point_end(&tp);
            target_point(fd, c, &tp, &in);
        } else if (type == M_ROUND) {
            target_round(fd, c, &tp, &in, &out);
        } else if (type == M_POINT_END) {
            target_point_end(&tp);
            msg_send(fd, M_POINT_END_OK, NULL, 10000);
        } else if (type == M_BYE) {
            break;
        } else {
            send_error(fd, "target: unexpected message %u", type);
        }
    }
    target_point_end(&tp);
    nxc_connector_destroy(c);
    buf_free(&in);
    buf_free(&out);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Initiator (active side)                                                   */
/* ------------------------------------------------------------------------ */

typedef struct row {
    int kind;
    uint64_t block, batch, opbytes;
    long iters, warmup;
    int concurrency;
    double gbps, seconds;
    double lat_p50, lat_p99, lat_min, lat_mean;
    double ntf_p50, ntf_p99, lag_p50;
    uint64_t mismatched;
    const char *transport;
    bool cut_short; /* --point-time stopped it early */
} row_t;

typedef struct ipoint {
    int kind;
    uint64_t block, batch, opbytes;
    int conc;
    uint8_t *buf; /* conc slots of opbytes */
    uint64_t buflen;
    nxc_op_t *anchor;
    int op_timeout_ms;
    int64_t offset; /* target clock - initiator clock, ns */
    /* per timed op */
    double *lat, *ntf, *lag;
    long nlat, nntf;
    uint64_t mismatched, timed_ns, timed_ops;
    const char *transport;
} ipoint_t;

typedef struct inflight {
    nxc_op_t *op;
    int slot;      /* local buffer slot */
    uint64_t k, i; /* op index in the point, index in the round */
    uint64_t t0;
} inflight_t;

static bool progress_on, shared_clock;
static FILE *table_out, *rows_out;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
    if (!progress_on) return;
    va_list ap;
    va_start(ap, fmt);
    bool tty = isatty(2);
    if (tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    if (!tty) fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}
static void progress_clear(void) {
    if (progress_on && isatty(2)) fputs("\r\033[K", stderr);
}

/* Clock offset between target and initiator, from the ping with the
 * shortest round trip. */
static int64_t measure_offset(int fd, buf_t *b) {
    uint64_t best_rtt = UINT64_MAX;
    int64_t best = 0;
    for (int i = 0; i < 8; i++) {
        buf_clear(b);
        uint64_t t0 = now_ns();
        put_u64(b, t0);
        msg_send(fd, M_PING, b, 10000);
        msg_expect(fd, b, M_PONG, 10000);
        uint64_t t2 = now_ns();
        uint64_t e0 = get_u64(b), t1 = get_u64(b);
        if (b->bad || e0 != t0) die("rendezvous: bad PONG");
        if (t2 - t0 < best_rtt) {
            best_rtt = t2 - t0;
            best = (int64_t)(t1 - (t0 + (t2 - t0) / 2));
        }
    }
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(double *v, long n, double q) { /* v sorted */
    if (n <= 0) return -1;
    long r = (long)(q * (double)n + 0.999999);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

/* Run ops [first, first+n) of the point. Returns the number begun. */
static uint64_t run_round(int fd, nxc_connector_t *c, ipoint_t *ip, uint64_t first, uint64_t n,
                          bool timed, uint64_t stop_at, buf_t *b) {
    buf_clear(b);
    put_u64(b, first);
    put_u64(b, n);
    msg_send(fd, M_ROUND, b, 10000);
    /* Creating n ops can take a while with large batches. */
    msg_expect(fd, b, M_MDS, 60000 + (int)(n * ip->batch / 100));
    uint64_t got = get_u64(b);
    if (b->bad || got != n) die("rendezvous: bad metadata message");
    const char **md = xcalloc(n, sizeof *md);
    size_t *mdlen = xcalloc(n, sizeof *mdlen);
    for (uint64_t i = 0; i < n; i++)
        md[i] = get_str(b, &mdlen[i]);
    if (b->bad) die("rendezvous: truncated metadata message");

    nxc_desc_t *descs = xcalloc(ip->batch, sizeof *descs);
    /* In-flight ops by buffer slot: each op's user_data is its slot, and
     * their ends come through one completion queue, as in a server. */
    inflight_t *fl = xcalloc((size_t)ip->conc, sizeof *fl);
    nxc_cq_entry_t *ends = xcalloc((size_t)ip->conc, sizeof *ends);
    uint64_t *t_begin = xcalloc(n, sizeof *t_begin), *t_end = xcalloc(n, sizeof *t_end);
    nxc_cq_t *cq = NULL;
    nxc_status_t cst = nxc_cq_create(c, NULL, &cq);
    if (cst != NXC_OK) nxc_die(cst, "cq_create");
    nxc_op_params_t prm = {.field_mask =
                               NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_CQ | NXC_OP_FIELD_USER_DATA,
                           .timeout_ms = ip->op_timeout_ms,
                           .cq = cq};
    uint64_t next = 0, done = 0, use = n;
    int nfl = 0, nfree = ip->conc;
    int *free_slots = xcalloc((size_t)ip->conc, sizeof *free_slots);
    for (int i = 0; i < ip->conc; i++)
        free_slots[i] = ip->conc - 1 - i;
    uint64_t span0 = 0, span1 = 0;
    /* Ops are issued until stop_at; the last ones end by their deadline. */
    uint64_t round_deadline = (stop_at > now_ns() ? stop_at : now_ns()) +
                              (2ull * (uint64_t)ip->op_timeout_ms + 5000) * 1000000ull;
    while (done < use) {
        while (nfl < ip->conc && next < use) {
            if (next > 0 && now_ns() >= stop_at) {
                use = next; /* --point-time reached: stop issuing */
                break;
            }
            int s = free_slots[--nfree];
            uint8_t *base = ip->buf + (uint64_t)s * ip->opbytes;
            uint64_t k = first + next;
            if (cfg.check && ip->kind == OP_WRITE) pat_fill(base, ip->block, ip->batch, k);
            for (uint64_t j = 0; j < ip->batch; j++)
                descs[j] = (nxc_desc_t){base + j * ip->block, ip->block, {NXC_DEVICE_HOST, 0}};
            nxc_op_t *op;
            prm.user_data = (void *)(intptr_t)s;
            uint64_t t0 = now_ns();
            nxc_status_t st =
                ip->kind == OP_READ
                    ? nxc_begin_read(c, md[next], mdlen[next], descs, (size_t)ip->batch, &prm, &op)
                    : nxc_begin_write(c, descs, (size_t)ip->batch, md[next], mdlen[next], &prm,
                                      &op);
            if (st != NXC_OK) nxc_die(st, ip->kind == OP_READ ? "begin_read" : "begin_write");
            if (next == 0) span0 = t0;
            t_begin[next] = t0;
            fl[s] = (inflight_t){op, s, k, next, t0};
            nfl++;
            next++;
        }
        if (done >= use) break;
        int left = ms_left(round_deadline);
        if (left == 0) die("round did not finish before its deadline (peer hung?)");
        int r = nxc_cq_wait(cq, ends, ip->conc, left < POLL_SLICE_MS ? left : POLL_SLICE_MS);
        if (r < 0) nxc_die((nxc_status_t)r, "cq_wait");
        uint64_t t = now_ns();
        for (int e = 0; e < r; e++) {
            inflight_t *f = &fl[(intptr_t)ends[e].user_data];
            if (ends[e].result != NXC_OK)
                die("op %" PRIu64 " (%s, %" PRIu64 " bytes): %s: %s", f->k,
                    ip->kind == OP_READ ? "read" : "write", ip->opbytes,
                    nxc_status_string(ends[e].result), nxc_op_message(f->op));
            if (!ip->transport) ip->transport = nxc_op_transport(f->op);
            t_end[f->i] = t;
            if (t > span1) span1 = t;
            if (cfg.check && ip->kind == OP_READ)
                ip->mismatched += pat_check(ip->buf + (uint64_t)f->slot * ip->opbytes, ip->block,
                                            ip->batch, f->k);
            nxc_op_release(f->op);
            f->op = NULL;
            done++;
            nfl--;
            free_slots[nfree++] = f->slot;
        }
    }
    nxc_cq_destroy(cq);
    buf_clear(b);
    put_u64(b, use);
    msg_send(fd, M_ROUND_END, b, 10000);
    msg_expect(fd, b, M_ROUND_RES, 30000);
    uint64_t rn = get_u64(b), mism = get_u64(b), errs = get_u64(b);
    size_t elen;
    const char *etext = get_str(b, &elen);
    if (b->bad || rn != n) die("rendezvous: bad round result");
    if (errs) die("target: %" PRIu64 " passive op(s) failed, first: %.*s", errs, (int)elen, etext);
    ip->mismatched += mism;
    if (timed) {
        for (uint64_t i = 0; i < use; i++) {
            uint64_t td = get_u64(b);
            ip->lat[ip->nlat++] = (double)(t_end[i] - t_begin[i]) / 1e3;
            if (td) {
                double tl = (double)((int64_t)td - ip->offset);
                ip->ntf[ip->nntf] = (tl - (double)t_begin[i]) / 1e3;
                ip->lag[ip->nntf++] = (tl - (double)t_end[i]) / 1e3;
            }
        }
        ip->timed_ns += span1 - span0;
        ip->timed_ops += use;
    }
    free(md);
    free(mdlen);
    free(descs);
    free(fl);
    free(ends);
    free(t_begin);
    free(t_end);
    free(free_slots);
    return use;
}

static void print_header(const char *transports, const char *target_transports) {
    if (!table_out) return;
    fprintf(table_out,
            "# nxc-bench %s, transports %s (target: %s), concurrency %d, %s clock%s%s\n"
            "%-5s %-9s %8s %6s %9s %6s %8s %10s %10s %10s\n",
            nxc_version(), transports, target_transports, cfg.concurrency,
            shared_clock ? "shared" : "ping-synchronised", cfg.check ? ", --check" : "",
            cfg.prereg ? "" : ", --no-prereg", "op", "transport", "block", "batch", "bytes/op",
            "iters", "GB/s", "lat p50", "lat p99", "ntf p50");
    fprintf(table_out, "%-5s %-9s %8s %6s %9s %6s %8s %10s %10s %10s\n", "", "", "", "", "", "", "",
            "us", "us", "us");
    fflush(table_out);
}

static void print_row(const row_t *r, bool *csv_header) {
    char b1[32], b2[32];
    const char *kind = r->kind == OP_READ ? "read" : "write";
    if (table_out) {
        progress_clear();
        fprintf(table_out, "%-5s %-9s %8s %6" PRIu64 " %9s %6ld %8.3f %10.1f %10.1f %10.1f%s\n",
                kind, r->transport ? r->transport : "-", fmt_size(r->block, b1, sizeof b1),
                r->batch, fmt_size(r->opbytes, b2, sizeof b2), r->iters, r->gbps, r->lat_p50,
                r->lat_p99, r->ntf_p50,
                r->mismatched ? "  DATA MISMATCH" : (r->cut_short ? "  (time-bounded)" : ""));
        fflush(table_out);
    }
    if (!rows_out) return;
    const char *tr = r->transport ? r->transport : "";
    if (cfg.fmt == FMT_JSON) {
        fprintf(rows_out,
                "{\"tool\":\"nxc-bench\",\"version\":\"%s\",\"transport\":\"%s\",\"op\":\"%s\","
                "\"block\":%" PRIu64 ",\"batch\":%" PRIu64 ",\"bytes_per_op\":%" PRIu64
                ",\"iters\":%ld,\"warmup\":%ld,\"concurrency\":%d,\"check\":%s,"
                "\"gbps\":%.4f,\"seconds\":%.6f,\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,"
                "\"lat_min_us\":%.2f,\"lat_mean_us\":%.2f,\"notify_p50_us\":%.2f,"
                "\"notify_p99_us\":%.2f,\"notify_lag_p50_us\":%.2f,\"mismatched_bytes\":%" PRIu64
                ",\"time_bounded\":%s}\n",
                nxc_version(), tr, kind, r->block, r->batch, r->opbytes, r->iters, r->warmup,
                r->concurrency, cfg.check ? "true" : "false", r->gbps, r->seconds, r->lat_p50,
                r->lat_p99, r->lat_min, r->lat_mean, r->ntf_p50, r->ntf_p99, r->lag_p50,
                r->mismatched, r->cut_short ? "true" : "false");
    } else if (cfg.fmt == FMT_CSV) {
        if (!*csv_header) {
            fprintf(rows_out, "tool,version,transport,op,block,batch,bytes_per_op,iters,warmup,"
                              "concurrency,check,gbps,seconds,lat_p50_us,lat_p99_us,lat_min_us,"
                              "lat_mean_us,notify_p50_us,notify_p99_us,notify_lag_p50_us,"
                              "mismatched_bytes,time_bounded\n");
            *csv_header = true;
        }
        fprintf(rows_out,
                "nxc-bench,%s,%s,%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64
                ",%ld,%ld,%d,%d,%.4f,%.6f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%" PRIu64 ",%d\n",
                nxc_version(), tr, kind, r->block, r->batch, r->opbytes, r->iters, r->warmup,
                r->concurrency, cfg.check, r->gbps, r->seconds, r->lat_p50, r->lat_p99, r->lat_min,
                r->lat_mean, r->ntf_p50, r->ntf_p99, r->lag_p50, r->mismatched, r->cut_short);
    }
    fflush(rows_out);
}

/* Run one point; false if it was skipped. */
static bool run_point(int fd, nxc_connector_t *c, int kind, uint64_t block, uint64_t batch,
                      row_t *row, buf_t *b, const char *label) {
    char b1[32], b2[32], b3[32];
    if (block > UINT64_MAX / batch) return false;
    uint64_t opbytes = block * batch;
    /* iterations: bounded by --max-bytes, floored by --min-iters */
    long iters = cfg.iters;
    if ((uint64_t)iters > cfg.max_bytes / opbytes) {
        long lim = (long)(cfg.max_bytes / opbytes);
        iters = lim < cfg.min_iters ? cfg.min_iters : lim;
        if (iters > cfg.iters) iters = cfg.iters;
    }
    long warmup = cfg.warmup;
    if (warmup > 0 && warmup > iters / 5) warmup = iters / 5 > 0 ? iters / 5 : 1;
    int conc = cfg.concurrency;
    uint64_t round = (uint64_t)cfg.round_max;
    uint64_t slots;
    if (cfg.check) {
        /* every op of a round has its own target memory */
        uint64_t memlim = cfg.max_mem / opbytes;
        if (round > memlim) round = memlim;
        if ((uint64_t)conc > round) conc = (int)round;
        slots = round;
    } else {
        slots = (uint64_t)conc;
    }
    if (conc < 1 || opbytes > cfg.max_mem / (uint64_t)conc || opbytes > cfg.max_mem / slots) {
        progress_clear();
        uint64_t bufs = conc < 1 ? 1 : (uint64_t)conc > slots ? (uint64_t)conc : slots;
        fprintf(stderr,
                "%s: skipping %s %s x%" PRIu64 ": needs %" PRIu64 " buffer(s) of %s, more than "
                "--max-mem %s\n",
                prog, kind == OP_READ ? "read" : "write", fmt_size(block, b1, sizeof b1), batch,
                bufs, fmt_size(opbytes, b2, sizeof b2), fmt_size(cfg.max_mem, b3, sizeof b3));
        return false;
    }
    /* Metadata is roughly 100 bytes per descriptor: keep a round's under
     * 64 MB. */
    uint64_t mdlim = (64ull << 20) / (batch * 128 + 1024);
    if (round > mdlim) round = mdlim > 0 ? mdlim : 1;
    if ((uint64_t)conc > round) conc = (int)round;

    ipoint_t ip = {.kind = kind, .block = block, .batch = batch, .opbytes = opbytes, .conc = conc};
    ip.op_timeout_ms = cfg.op_timeout_ms;
    if (ip.op_timeout_ms <= 0) {
        uint64_t ms = 10000 + opbytes / 50000; /* 10 s + 20 ms per MB */
        ip.op_timeout_ms = ms > 3600000 ? 3600000 : (int)ms;
    }
    /* A round issues ops for at most --point-time s, and its last ops end by
     * their own deadline: passive ops need not live longer than that. */
    uint64_t passive_ms =
        (uint64_t)(cfg.point_time * 1000) + 2ull * (uint64_t)ip.op_timeout_ms + 30000;
    if (passive_ms > INT_MAX) passive_ms = INT_MAX;

    ip.offset = shared_clock ? 0 : measure_offset(fd, b);
    buf_clear(b);
    put_u64(b, (uint64_t)kind);
    put_u64(b, block);
    put_u64(b, batch);
    put_u64(b, slots);
    put_u64(b, cfg.check);
    put_u64(b, cfg.seed);
    put_u64(b, passive_ms);
    put_u64(b, cfg.prereg);
    msg_send(fd, M_POINT, b, 10000);
    msg_expect(fd, b, M_POINT_OK, 120000);

    ip.buflen = opbytes * (uint64_t)conc;
    ip.buf = buf_alloc(ip.buflen);
    ip.anchor = cfg.prereg ? anchor_make(c, ip.buf, ip.buflen) : NULL;
    ip.lat = xcalloc((size_t)iters, sizeof(double));
    ip.ntf = xcalloc((size_t)iters, sizeof(double));
    ip.lag = xcalloc((size_t)iters, sizeof(double));

    /* warm-up, then timed rounds */
    uint64_t warm_stop = now_ns() + (uint64_t)(cfg.point_time * 1e9);
    for (uint64_t k = 0; k < (uint64_t)warmup;) {
        uint64_t n = (uint64_t)warmup - k < round ? (uint64_t)warmup - k : round;
        uint64_t used = run_round(fd, c, &ip, k, n, false, warm_stop, b);
        k += used;
        if (used < n) break;
    }
    uint64_t stop_at = now_ns() + (uint64_t)(cfg.point_time * 1e9);
    bool cut = false;
    for (uint64_t k = (uint64_t)warmup; k < (uint64_t)(warmup + iters);) {
        uint64_t want = (uint64_t)(warmup + iters) - k;
        uint64_t n = want < round ? want : round;
        uint64_t used = run_round(fd, c, &ip, k, n, true, stop_at, b);
        k += used;
        progress("%s: %" PRIu64 "/%ld ops", label, k - (uint64_t)warmup, iters);
        if (used < n || (now_ns() >= stop_at && k < (uint64_t)(warmup + iters))) {
            cut = true;
            break;
        }
    }
    msg_send(fd, M_POINT_END, NULL, 10000);
    msg_expect(fd, b, M_POINT_END_OK, 30000);

    qsort(ip.lat, (size_t)ip.nlat, sizeof(double), cmp_double);
    qsort(ip.ntf, (size_t)ip.nntf, sizeof(double), cmp_double);
    qsort(ip.lag, (size_t)ip.nntf, sizeof(double), cmp_double);
    double sum = 0;
    for (long i = 0; i < ip.nlat; i++)
        sum += ip.lat[i];
    *row = (row_t){.kind = kind,
                   .block = block,
                   .batch = batch,
                   .opbytes = opbytes,
                   .iters = (long)ip.timed_ops,
                   .warmup = warmup,
                   .concurrency = conc,
                   .seconds = (double)ip.timed_ns / 1e9,
                   .gbps = ip.timed_ns ? (double)(ip.timed_ops * opbytes) / (double)ip.timed_ns : 0,
                   .lat_p50 = pct(ip.lat, ip.nlat, 0.50),
                   .lat_p99 = pct(ip.lat, ip.nlat, 0.99),
                   .lat_min = ip.nlat ? ip.lat[0] : -1,
                   .lat_mean = ip.nlat ? sum / (double)ip.nlat : -1,
                   .ntf_p50 = pct(ip.ntf, ip.nntf, 0.50),
                   .ntf_p99 = pct(ip.ntf, ip.nntf, 0.99),
                   .lag_p50 = pct(ip.lag, ip.nntf, 0.50),
                   .mismatched = ip.mismatched,
                   .transport = ip.transport,
                   .cut_short = cut};
    nxc_op_release(ip.anchor);
    munmap(ip.buf, ip.buflen);
    free(ip.lat);
    free(ip.ntf);
    free(ip.lag);
    return true;
}

static int initiator_run(int fd) {
    buf_t b = {0};
    put_u64(&b, PROTO_VERSION);
    const char *tr = cfg.transport ? cfg.transport : "";
    put_str(&b, tr, strlen(tr));
    msg_send(fd, M_HELLO, &b, 10000);
    msg_expect(fd, &b, M_HELLO_OK, 60000);
    (void)get_u64(&b);
    size_t tlen;
    const char *ttr = get_str(&b, &tlen);
    char target_transports[256], bid[64];
    snprintf(target_transports, sizeof target_transports, "%.*s", (int)tlen, ttr);
    size_t blen;
    const char *tbid = get_str(&b, &blen);
    boot_id(bid, sizeof bid);
    /* Same kernel: one CLOCK_MONOTONIC, no offset to estimate. */
    shared_clock = !b.bad && *bid && strlen(bid) == blen && !memcmp(bid, tbid, blen);

    nxc_connector_t *c = connector_make("nxc-bench-initiator", cfg.transport);
    print_header(nxc_connector_transports(c), target_transports);

    int total = cfg.nops * cfg.nblocks * cfg.nbatches, npt = 0;
    bool csv_header = false;
    uint64_t mismatched = 0;
    int measured = 0;
    for (int o = 0; o < cfg.nops; o++)
        for (int bi = 0; bi < cfg.nbatches; bi++)
            for (int si = 0; si < cfg.nblocks; si++) {
                char label[96], b1[32];
                npt++;
                snprintf(label, sizeof label, "[%d/%d] %s %s x%" PRIu64, npt, total,
                         cfg.ops[o] == OP_READ ? "read" : "write",
                         fmt_size(cfg.blocks[si], b1, sizeof b1), cfg.batches[bi]);
                progress("%s", label);
                row_t row;
                if (!run_point(fd, c, cfg.ops[o], cfg.blocks[si], cfg.batches[bi], &row, &b, label))
                    continue;
                mismatched += row.mismatched;
                measured++;
                print_row(&row, &csv_header);
            }
    progress_clear();
    msg_send(fd, M_BYE, NULL, 10000);
    nxc_connector_destroy(c);
    buf_free(&b);
    if (mismatched) {
        fprintf(stderr, "%s: --check: %" PRIu64 " bytes differed from what was sent\n", prog,
                mismatched);
        return 1;
    }
    if (measured == 0) {
        fprintf(stderr, "%s: nothing was measured: all %d point(s) were skipped\n", prog, total);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static void on_alarm(int sig) {
    static const char msg[] = "nxc-bench: --timeout reached, giving up\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    (void)sig;
    _exit(3);
}

static const char *missing(const char *opt) {
    fprintf(stderr, "%s: %s needs a value\n", prog, opt);
    exit(2);
}

static long need_long(const char *opt, const char *v, long lo, long hi) {
    uint64_t x;
    if (!v || !parse_count(v, &x) || x < (uint64_t)lo || x > (uint64_t)hi) {
        fprintf(stderr, "%s: %s needs a number in %ld..%ld\n", prog, opt, lo, hi);
        exit(2);
    }
    return (long)x;
}

static uint64_t need_size(const char *opt, const char *v) {
    uint64_t x;
    if (!v || !parse_size(v, &x) || x == 0) {
        fprintf(stderr, "%s: %s needs a size such as 64K or 1G\n", prog, opt);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    const char *blocks = "4K..64M", *batches = "1";
    bool list_transports = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *eq = NULL;
        char opt[64];
        /* --opt=value */
        if (a[0] == '-' && a[1] == '-' && (eq = strchr(a, '=')) && (size_t)(eq - a) < sizeof opt) {
            snprintf(opt, sizeof opt, "%.*s", (int)(eq - a), a);
            a = opt;
            v = eq + 1;
        }
#define TAKE() (eq ? v : v ? (i++, v) : missing(a))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("nxc-bench %s (library %s)\n", NXC_VERSION_STRING, nxc_version());
            return 0;
        } else if (!strcmp(a, "--list-transports")) {
            list_transports = true;
        } else if (!strcmp(a, "--self")) {
            cfg.role = ROLE_SELF;
        } else if (!strcmp(a, "--target")) {
            cfg.role = ROLE_TARGET;
        } else if (!strcmp(a, "--listen")) {
            cfg.listen = TAKE();
        } else if (!strcmp(a, "--initiator")) {
            cfg.role = ROLE_INITIATOR;
            cfg.connect = TAKE();
        } else if (!strcmp(a, "--op")) {
            const char *s = TAKE();
            if (!strcmp(s, "read"))
                cfg.nops = 1, cfg.ops[0] = OP_READ;
            else if (!strcmp(s, "write"))
                cfg.nops = 1, cfg.ops[0] = OP_WRITE;
            else if (!strcmp(s, "read,write") || !strcmp(s, "both"))
                cfg.nops = 2, cfg.ops[0] = OP_READ, cfg.ops[1] = OP_WRITE;
            else if (!strcmp(s, "write,read"))
                cfg.nops = 2, cfg.ops[0] = OP_WRITE, cfg.ops[1] = OP_READ;
            else {
                fprintf(stderr, "%s: --op takes read, write or read,write\n", prog);
                return 2;
            }
        } else if (!strcmp(a, "--block-sizes") || !strcmp(a, "--block-size") || !strcmp(a, "-s")) {
            blocks = TAKE();
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            batches = TAKE();
        } else if (!strcmp(a, "--iters") || !strcmp(a, "-n")) {
            cfg.iters = need_long(a, TAKE(), 1, 100000000);
        } else if (!strcmp(a, "--warmup") || !strcmp(a, "-w")) {
            cfg.warmup = need_long(a, TAKE(), 0, 1000000);
        } else if (!strcmp(a, "--min-iters")) {
            cfg.min_iters = need_long(a, TAKE(), 1, 1000000);
        } else if (!strcmp(a, "--max-bytes")) {
            cfg.max_bytes = need_size(a, TAKE());
        } else if (!strcmp(a, "--point-time")) {
            cfg.point_time = (double)need_long(a, TAKE(), 1, 86400);
        } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-c")) {
            cfg.concurrency = (int)need_long(a, TAKE(), 1, 1024);
        } else if (!strcmp(a, "--transport") || !strcmp(a, "-t")) {
            cfg.transport = TAKE();
            if (!*cfg.transport) {
                fprintf(stderr, "%s: --transport needs a name\n", prog);
                return 2;
            }
        } else if (!strcmp(a, "--check")) {
            cfg.check = true;
        } else if (!strcmp(a, "--json")) {
            cfg.fmt = FMT_JSON;
        } else if (!strcmp(a, "--csv")) {
            cfg.fmt = FMT_CSV;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            cfg.out_path = TAKE();
        } else if (!strcmp(a, "--progress")) {
            cfg.progress = 1;
        } else if (!strcmp(a, "--no-progress")) {
            cfg.progress = 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            cfg.quiet = true;
        } else if (!strcmp(a, "--op-timeout")) {
            cfg.op_timeout_ms = (int)need_long(a, TAKE(), 1, INT_MAX);
        } else if (!strcmp(a, "--timeout")) {
            cfg.timeout_s = (int)need_long(a, TAKE(), 1, 1000000);
        } else if (!strcmp(a, "--idle-timeout")) {
            cfg.idle_timeout_s = (int)need_long(a, TAKE(), 1, 1000000);
        } else if (!strcmp(a, "--max-mem")) {
            cfg.max_mem = need_size(a, TAKE());
        } else if (!strcmp(a, "--round")) {
            cfg.round_max = (int)need_long(a, TAKE(), 1, 1024); /* an fd per passive op */
        } else if (!strcmp(a, "--no-prereg")) {
            cfg.prereg = false;
        } else if (!strcmp(a, "--seed")) {
            cfg.seed = (uint64_t)need_long(a, TAKE(), 0, LONG_MAX);
        } else {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, argv[i]);
            return 2;
        }
#undef TAKE
    }
    cfg.nblocks = parse_list(blocks, true, cfg.blocks, MAX_LIST, "--block-sizes");
    cfg.nbatches = parse_list(batches, false, cfg.batches, MAX_LIST, "--batch");
    for (int i = 0; i < cfg.nbatches; i++)
        if (cfg.batches[i] > 65536) {
            fprintf(stderr, "%s: --batch is at most 65536\n", prog);
            return 2;
        }

    if (list_transports) {
        nxc_connector_t *c = connector_make("nxc-bench-probe", cfg.transport);
        printf("%s\n", nxc_connector_transports(c));
        nxc_connector_destroy(c);
        return 0;
    }
    if (cfg.role == ROLE_NONE) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (cfg.timeout_s) {
        signal(SIGALRM, on_alarm);
        alarm((unsigned)cfg.timeout_s);
    }

    if (cfg.role == ROLE_TARGET) {
        role_name = "nxc-bench target";
        const char *addr = cfg.listen ? cfg.listen : "127.0.0.1:18515";
        int lfd = sock_listen(addr);
        fprintf(stderr, "%s: listening on %s\n", role_name, addr);
        int fd = sock_accept(lfd, cfg.idle_timeout_s);
        close(lfd);
        int rc = target_serve(fd);
        close(fd);
        return rc;
    }

    /* Initiator (and --self): outputs. */
    if (cfg.fmt != FMT_NONE) {
        if (cfg.out_path) {
            rows_out = fopen(cfg.out_path, "w");
            if (!rows_out) die("%s: %s", cfg.out_path, strerror(errno));
            table_out = stdout;
        } else {
            rows_out = stdout;
            table_out = stderr;
        }
    } else {
        table_out = stdout;
    }
    if (cfg.quiet) table_out = NULL;
    progress_on = cfg.progress == 1 || (cfg.progress < 0 && isatty(2));

    pid_t child = -1;
    int fd;
    if (cfg.role == ROLE_SELF) {
        int lfd = sock_listen(cfg.listen ? cfg.listen : "127.0.0.1:0");
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(lfd, (struct sockaddr *)&ss, &sl)) die("getsockname: %s", strerror(errno));
        fflush(NULL);
        pid_t parent = getpid();
        child = fork();
        if (child < 0) die("fork: %s", strerror(errno));
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            role_name = "nxc-bench target";
            int tfd = sock_accept(lfd, 60);
            close(lfd);
            int rc = target_serve(tfd);
            close(tfd);
            exit(rc); /* stdio was flushed before fork; lets LeakSanitizer check the target */
        }
        role_name = "nxc-bench initiator";
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl))
            die("connect to the forked target: %s", strerror(errno));
        sock_tune(fd);
        close(lfd);
    } else {
        role_name = "nxc-bench initiator";
        fd = sock_connect(cfg.connect, 30);
    }
    int rc = initiator_run(fd);
    close(fd);
    if (child > 0) {
        /* the target exits after BYE; give it 10 s */
        int status = 0;
        uint64_t deadline = now_ns() + 10000000000ull;
        pid_t w;
        while ((w = waitpid(child, &status, WNOHANG)) == 0 && ms_left(deadline) > 0)
            usleep(10000);
        if (w == 0) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            fprintf(stderr, "%s: target did not exit; killed it\n", prog);
            rc = rc ? rc : 1;
        } else if (w > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            fprintf(stderr, "%s: target exited with status %d\n", prog,
                    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            rc = rc ? rc : 1;
        }
    }
    if (rows_out && rows_out != stdout) fclose(rows_out);
    return rc;
}
