/* SPDX-License-Identifier: Apache-2.0 */
/* The tcp transport against a hostile peer. Each test exposes a readable or
 * writable over a buffer with a known pattern (surrounded by guard bytes in
 * the same allocation), takes its metadata apart (nxc__md_decode: port,
 * instance, key, secret, addresses) and then talks to the listener over a raw
 * socket from this process, sending crafted frames of the stream protocol
 * (src/transport/stream/wire.h). Every bad request must be refused (a REFUSED
 * frame, and/or the connection closed by the server within a bound), the
 * memory must stay byte-identical, the passive op must stay usable, and the
 * listener must go on serving: a legitimate read or write from a second
 * tcp-only connector completes with the right bytes afterwards.
 *
 * Two more tests go beyond refusals: a peer that holds the secret sends DONE
 * before it has read a granted read's payload (the memory must not be read
 * after nxc_op_release()), and an active read whose metadata names a
 * connector that is gone while another now owns its port (the read must fail,
 * not reconnect for ever).
 *
 * Each case prints one line per attempt saying what the server did.
 * NXC_TCP_TIMEOUT_MS (how long a half-sent frame may stall) is 500 unless
 * set; the half-open test sets its own so that a legitimate transfer fits
 * well inside it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metadata.h"
#include "nxt.h"
#include "transport/stream/wire.h"

#define SIZE (64u << 10) /* the exposed buffer */
#define GUARD 4096u      /* guard bytes each side of it, same allocation */
#define CLOSE_MS 3000    /* a refused or broken connection must be closed by then */
#define WAIT_MS 10000    /* legitimate transfers */
#define DEFAULT_TIMEOUT_MS 500
#define HOSTILE_NAME "hostile"

/* The server's stall timeout for this test: the environment's, else 500. */
static int stall_timeout_ms(void) {
    const char *e = getenv("NXC_TCP_TIMEOUT_MS");
    if (!e || !*e) {
        setenv("NXC_TCP_TIMEOUT_MS", "500", 1);
        return DEFAULT_TIMEOUT_MS;
    }
    return atoi(e);
}

/* --- the two connectors ------------------------------------------------------------- */

static nxc_connector_t *tcp_connector(const char *name) {
    nxc_connector_params_t p = {0};
    p.field_mask = NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |
                   NXC_CONNECTOR_FIELD_TCP_ADDRESS | NXC_CONNECTOR_FIELD_PROGRESS_THREAD;
    p.name = name;
    p.transports = "tcp";
    p.tcp_address = "127.0.0.1";
    p.progress_thread = 1;
    nxc_connector_t *c = NULL;
    NXT_PASS(nxc_connector_create(&p, &c));
    NXT_EQ_STR(nxc_connector_transports(c), "tcp");
    return c;
}

typedef struct world {
    nxc_connector_t *srv; /* exposes the buffers */
    nxc_connector_t *cli; /* the legitimate peer */
    int timeout_ms;
} world_t;

static world_t world_new(void) {
    world_t w;
    w.timeout_ms = stall_timeout_ms();
    w.srv = tcp_connector("victim");
    w.cli = tcp_connector("legit");
    return w;
}

static void world_free(world_t *w) {
    nxc_connector_destroy(w->cli);
    nxc_connector_destroy(w->srv);
}

/* --- a passive op under attack ------------------------------------------------------ */

typedef struct target {
    bool writable;
    size_t size;
    uint8_t *mem;  /* GUARD + size + GUARD */
    uint8_t *buf;  /* mem + GUARD: what the op exposes */
    uint8_t *snap; /* copy of mem as it must stay */
    nxc_op_t *op;
    const char *text;
    nxc__metadata_t md;
    struct sockaddr_in sa;
} target_t;

/* Parse "<ip>[,<ip>...]:<port>" (the tcp section's connection info). */
static void parse_conn(const nxc__md_section_t *sec, struct sockaddr_in *sa) {
    char text[512];
    NXT_CHECK(sec->conn.len > 0 && sec->conn.len < sizeof text);
    memcpy(text, sec->conn.data, sec->conn.len);
    text[sec->conn.len] = '\0';
    char *colon = strrchr(text, ':');
    NXT_CHECK(colon);
    *colon = '\0';
    int port = atoi(colon + 1);
    NXT_CHECK(port > 0 && port < 65536);
    char *comma = strchr(text, ',');
    if (comma) *comma = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    NXT_EQ_INT(inet_pton(AF_INET, text, &sa->sin_addr), 1);
    NXT_EQ_STR(text, "127.0.0.1"); /* the connector was bound there */
}

static void target_snapshot(target_t *t) {
    memcpy(t->snap, t->mem, t->size + 2 * GUARD);
}

static void target_expose(target_t *t, nxc_connector_t *c, const char *key) {
    nxc_desc_t d = nxt_desc(t->buf, t->size);
    nxc_op_params_t p = {0};
    if (key) {
        p.field_mask = NXC_OP_FIELD_NOTIFICATION_KEY;
        p.notification_key = key;
    }
    if (t->writable)
        NXT_PASS(nxc_create_writable(c, &d, 1, &p, &t->op));
    else
        NXT_PASS(nxc_create_readable(c, &d, 1, &p, &t->op));
    NXT_PASS(nxc_op_metadata(t->op, &t->text, NULL));
    nxc__md_free(&t->md);
    NXT_PASS(nxc__md_decode(t->text, strlen(t->text), &t->md));
    NXT_EQ_INT(t->md.operation_kind, t->writable ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ);
    NXT_EQ_INT(t->md.ndesc, 1);
    NXT_EQ_INT(t->md.descs[0].addr, (uintptr_t)t->buf);
    NXT_EQ_INT(t->md.descs[0].size, t->size);
    const nxc__md_section_t *sec = nxc__md_section(&t->md, "tcp");
    NXT_CHECK(sec);
    parse_conn(sec, &t->sa);
}

static target_t target_new(nxc_connector_t *c, bool writable, size_t size, uint64_t seed,
                           const char *key) {
    target_t t = {.writable = writable, .size = size};
    t.mem = nxt_alloc(size + 2 * GUARD);
    t.snap = nxt_alloc(size + 2 * GUARD);
    t.buf = t.mem + GUARD;
    nxt_fill(t.mem, size + 2 * GUARD, seed);
    target_snapshot(&t);
    target_expose(&t, c, key);
    return t;
}

static void target_free(target_t *t) {
    nxc_op_release(t->op);
    t->op = NULL;
    nxc__md_free(&t->md);
    free(t->mem);
    free(t->snap);
}

/* Memory byte-identical to the snapshot, guards included. */
static void check_memory(const target_t *t, const char *when) {
    size_t total = t->size + 2 * GUARD;
    if (memcmp(t->mem, t->snap, total) == 0) return;
    size_t i = 0;
    while (i < total && t->mem[i] == t->snap[i])
        i++;
    nxt_failf(__FILE__, __LINE__, "%s: memory changed at offset %lld from the buffer's start", when,
              (long long)i - (long long)GUARD);
}

/* Memory intact and the op still waiting for a peer. */
static void check_intact(const target_t *t, const char *when) {
    check_memory(t, when);
    nxc_op_status_t st = nxc_op_status(t->op);
    if (st != NXC_OP_INITIALIZED)
        nxt_failf(__FILE__, __LINE__, "%s: passive op is %d (%s), expected INITIALIZED", when,
                  (int)st, nxc_op_message(t->op));
}

/* A legitimate peer reads the readable (or writes the writable) through the
 * second connector; both ops complete and the bytes are right. */
static void legit_transfer(world_t *w, target_t *t, uint64_t seed) {
    uint8_t *local = nxt_alloc(t->size);
    nxc_desc_t d = nxt_desc(local, t->size);
    nxc_op_t *a = NULL;
    uint64_t t0 = nxt_now_ms();
    if (t->writable) {
        nxt_fill(local, t->size, seed);
        NXT_PASS(nxc_begin_write(w->cli, &d, 1, t->text, 0, NULL, &a));
    } else {
        NXT_PASS(nxc_begin_read(w->cli, t->text, 0, &d, 1, NULL, &a));
    }
    nxc_status_t st = nxc_op_wait(a, WAIT_MS);
    if (st != NXC_OK)
        nxt_failf(__FILE__, __LINE__, "legitimate %s -> %s (%s)", t->writable ? "write" : "read",
                  nxc_status_string(st), nxc_op_message(a));
    NXT_EQ_STR(nxc_op_transport(a), "tcp");
    st = nxc_op_wait(t->op, WAIT_MS);
    if (st != NXC_OK)
        nxt_failf(__FILE__, __LINE__, "passive op after the legitimate transfer -> %s (%s)",
                  nxc_status_string(st), nxc_op_message(t->op));
    NXT_EQ_INT(nxc_op_status(t->op), NXC_OP_COMPLETE);
    NXT_CHECK(memcmp(local, t->buf, t->size) == 0);
    if (t->writable) memcpy(t->snap + GUARD, local, t->size);
    check_memory(t, "after the legitimate transfer");
    printf("    legitimate %s of %zu bytes: complete in %llu ms\n", t->writable ? "write" : "read",
           t->size, (unsigned long long)(nxt_now_ms() - t0));
    nxc_op_release(a);
    free(local);
}

/* --- the hostile client ------------------------------------------------------------- */

static int hc_connect(const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) nxt_failf(__FILE__, __LINE__, "socket: %s", strerror(errno));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa))
        nxt_failf(__FILE__, __LINE__, "connect: %s", strerror(errno));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int hc_open(const target_t *t) {
    return hc_connect(&t->sa);
}

/* Send everything within timeout_ms; false if the server closed or stalled. */
static bool send_all(int fd, const void *buf, size_t len, int timeout_ms) {
    const uint8_t *p = buf;
    uint64_t deadline = nxt_now_ms() + (uint64_t)timeout_ms;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
        uint64_t now = nxt_now_ms();
        if (now >= deadline) return false;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)(deadline - now));
    }
    return true;
}

/* Receive exactly len bytes within timeout_ms; false on EOF, error or timeout. */
static bool recv_exact(int fd, void *buf, size_t len, int timeout_ms) {
    uint8_t *p = buf;
    uint64_t deadline = nxt_now_ms() + (uint64_t)timeout_ms;
    while (len) {
        ssize_t r = recv(fd, p, len, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
            continue;
        }
        if (r == 0) return false;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        uint64_t now = nxt_now_ms();
        if (now >= deadline) return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)(deadline - now));
    }
    return true;
}

/* Frame = header + body parts. Returns the bytes written into out. */
static size_t frame(uint8_t *out, uint8_t type, uint64_t xfer, const void *body, size_t len) {
    nxc__wire_hdr_t h = {
        .magic = NXC__WIRE_MAGIC, .type = type, .body_len = (uint32_t)len, .xfer = xfer};
    memcpy(out, &h, sizeof h);
    if (len) memcpy(out + sizeof h, body, len);
    return sizeof h + len;
}

static const uint8_t hostile_instance[NXC__INSTANCE_LEN] = "hostile-instanc";

/* A HELLO frame; version and want as given. */
static size_t hello_frame(uint8_t *out, const uint8_t *want, uint16_t version) {
    uint8_t body[sizeof(nxc__wire_hello_t) + sizeof HOSTILE_NAME];
    nxc__wire_hello_t h = {.version = version, .name_len = (uint16_t)strlen(HOSTILE_NAME)};
    memcpy(h.instance, hostile_instance, sizeof h.instance);
    memcpy(h.want, want, sizeof h.want);
    memcpy(body, &h, sizeof h);
    memcpy(body + sizeof h, HOSTILE_NAME, h.name_len);
    return frame(out, NXC__WIRE_HELLO, 0, body, sizeof h + h.name_len);
}

/* Say HELLO properly and check the HELLO_OK. */
static void hc_hello(int fd, const target_t *t) {
    uint8_t f[256];
    size_t n = hello_frame(f, t->md.instance, NXC__WIRE_VERSION);
    NXT_CHECK(send_all(fd, f, n, CLOSE_MS));
    nxc__wire_hdr_t h;
    nxc__wire_hello_ok_t ok;
    NXT_CHECK(recv_exact(fd, &h, sizeof h, CLOSE_MS));
    NXT_EQ_INT(h.magic, NXC__WIRE_MAGIC);
    NXT_EQ_INT(h.type, NXC__WIRE_HELLO_OK);
    NXT_EQ_INT(h.body_len, sizeof ok);
    NXT_CHECK(recv_exact(fd, &ok, sizeof ok, CLOSE_MS));
    NXT_CHECK(memcmp(ok.instance, t->md.instance, sizeof ok.instance) == 0);
}

static int hc_open_hello(const target_t *t) {
    int fd = hc_open(t);
    hc_hello(fd, t);
    return fd;
}

/* A REQ frame (malloc'd) with the given fields. */
typedef struct req {
    uint8_t md_kind;
    const char *key;
    const uint8_t *secret;
    const nxc__wire_range_t *ranges;
    uint32_t n;
} req_t;

/* REQ for stripe `stripe` of `nstripes` of transfer `xfer`. */
static uint8_t *req_frame_part(const req_t *r, uint64_t xfer, unsigned stripe, unsigned nstripes,
                               size_t *len_p) {
    size_t key_len = strlen(r->key);
    nxc__wire_req_t q = {.md_kind = r->md_kind,
                         .inline_data = 1,
                         .stripe = (uint8_t)stripe,
                         .nstripes = (uint8_t)nstripes,
                         .key_len = (uint16_t)key_len,
                         .nranges = r->n};
    memcpy(q.secret, r->secret, sizeof q.secret);
    size_t body = sizeof q + key_len + r->n * sizeof(nxc__wire_range_t);
    uint8_t *b = malloc(body);
    uint8_t *out = malloc(sizeof(nxc__wire_hdr_t) + body);
    NXT_CHECK(b && out);
    memcpy(b, &q, sizeof q);
    memcpy(b + sizeof q, r->key, key_len);
    memcpy(b + sizeof q + key_len, r->ranges, r->n * sizeof(nxc__wire_range_t));
    *len_p = frame(out, NXC__WIRE_REQ, xfer, b, body);
    free(b);
    return out;
}

static uint8_t *req_frame(const req_t *r, uint64_t xfer, size_t *len_p) {
    return req_frame_part(r, xfer, 0, 1, len_p);
}

/* The request a legitimate peer would send for the whole target. */
static req_t good_req(const target_t *t, nxc__wire_range_t *whole) {
    *whole = (nxc__wire_range_t){(uintptr_t)t->buf, t->size};
    return (req_t){t->writable ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ, t->md.notification_key,
                   t->md.secret, whole, 1};
}

/* What the server said and did, read until it closed or timeout_ms passed. */
typedef struct outcome {
    bool closed, reset; /* EOF, or the server reset the connection */
    uint64_t ms;        /* until closed */
    size_t total;       /* bytes received */
    bool hello_ok, refused, granted, acked, junk;
    int32_t status;
    char reason[256];
    size_t payload; /* bytes after a GRANTED frame */
} outcome_t;

static outcome_t drain(int fd, int timeout_ms) {
    outcome_t o = {0};
    size_t cap = 1u << 20, have = 0;
    uint8_t *acc = malloc(cap);
    NXT_CHECK(acc);
    uint64_t t0 = nxt_now_ms(), deadline = t0 + (uint64_t)timeout_ms;
    for (;;) {
        uint8_t tmp[65536];
        ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r > 0) {
            size_t keep = have + (size_t)r <= cap ? (size_t)r : cap - have;
            memcpy(acc + have, tmp, keep);
            have += keep;
            o.total += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            o.closed = true;
            o.reset = r < 0;
            o.ms = nxt_now_ms() - t0;
            break;
        }
        uint64_t now = nxt_now_ms();
        if (now >= deadline) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)(deadline - now));
    }
    /* Take the frames apart. */
    size_t off = 0;
    while (off + sizeof(nxc__wire_hdr_t) <= have) {
        nxc__wire_hdr_t h;
        memcpy(&h, acc + off, sizeof h);
        if (h.magic != NXC__WIRE_MAGIC || h.body_len > have - off - sizeof h) {
            o.junk = true;
            break;
        }
        const uint8_t *body = acc + off + sizeof h;
        off += sizeof h + h.body_len;
        if (h.type == NXC__WIRE_HELLO_OK) {
            o.hello_ok = true;
        } else if (h.type == NXC__WIRE_REFUSED && h.body_len >= sizeof(nxc__wire_refused_t)) {
            nxc__wire_refused_t rf;
            memcpy(&rf, body, sizeof rf);
            o.refused = true;
            o.status = rf.status;
            size_t n = h.body_len - sizeof rf;
            if (n >= sizeof o.reason) n = sizeof o.reason - 1;
            memcpy(o.reason, body + sizeof rf, n);
            o.reason[n] = '\0';
        } else if (h.type == NXC__WIRE_GRANTED) {
            o.granted = true;
            o.payload = o.total - off;
            break;
        } else if (h.type == NXC__WIRE_ACK) {
            o.acked = true;
        } else {
            o.junk = true;
            break;
        }
    }
    if (off < have && !o.granted) o.junk = true;
    free(acc);
    return o;
}

/* One line saying what the server did. */
static void say(const char *what, const outcome_t *o) {
    char how[64];
    if (o->closed)
        snprintf(how, sizeof how, "%s after %llu ms", o->reset ? "reset" : "closed",
                 (unsigned long long)o->ms);
    else
        snprintf(how, sizeof how, "still open after %d ms", CLOSE_MS);
    if (o->refused)
        printf("    %s: refused (%s): \"%s\"; connection %s\n", what,
               nxc_status_string((nxc_status_t)o->status), o->reason, how);
    else
        printf("    %s: no reply%s; connection %s\n", what,
               o->granted ? " (GRANTED!)"
               : o->acked ? " (ACK!)"
                          : "",
               how);
}

/* The request got a REFUSED frame and the connection was closed; nothing of
 * the memory came back. */
static void expect_refused(const char *what, const outcome_t *o, const char *reason) {
    say(what, o);
    if (!o->refused || !o->closed || o->granted || o->acked || o->junk)
        nxt_failf(__FILE__, __LINE__, "%s: expected a REFUSED frame and a close", what);
    NXT_EQ_INT(o->status, NXC_ERR_REFUSED);
    if (reason && !strstr(o->reason, reason))
        nxt_failf(__FILE__, __LINE__, "%s: reason \"%s\" does not mention \"%s\"", what, o->reason,
                  reason);
}

/* The connection was closed without granting anything (REFUSED optional). */
static void expect_closed(const char *what, const outcome_t *o) {
    say(what, o);
    if (!o->closed || o->granted || o->acked || o->hello_ok)
        nxt_failf(__FILE__, __LINE__, "%s: expected the server to close without a grant", what);
}

/* Say HELLO, send `req` (+ `payload` bytes of 0xEE for writes), expect a
 * refusal mentioning `reason`. */
static void attack_req(const target_t *t, const char *what, const req_t *r, size_t payload,
                       const char *reason) {
    int fd = hc_open_hello(t);
    size_t n;
    uint8_t *f = req_frame(r, 7, &n);
    uint8_t *msg = malloc(n + payload);
    NXT_CHECK(msg);
    memcpy(msg, f, n);
    memset(msg + n, 0xEE, payload);
    send_all(fd, msg, n + payload, CLOSE_MS); /* may fail once the server closes */
    outcome_t o = drain(fd, CLOSE_MS);
    expect_refused(what, &o, reason);
    close(fd);
    free(f);
    free(msg);
}

/* Send raw bytes (after a HELLO if `hello`), expect a close without a grant. */
static void attack_raw(const target_t *t, const char *what, bool hello, const void *bytes,
                       size_t len) {
    int fd = hello ? hc_open_hello(t) : hc_open(t);
    send_all(fd, bytes, len, CLOSE_MS);
    outcome_t o = drain(fd, CLOSE_MS);
    expect_closed(what, &o);
    close(fd);
}

/* --- 1. wrong secret ------------------------------------------------------------------- */

static void test_wrong_secret(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(w.srv, wr, SIZE, 0x100 + wr, NULL);
        nxc__wire_range_t whole;
        req_t r = good_req(&t, &whole);
        for (int bit = 0; bit < 128; bit += 61) {
            uint8_t bad[NXC__SECRET_LEN];
            memcpy(bad, t.md.secret, sizeof bad);
            bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            r.secret = bad;
            char what[96];
            snprintf(what, sizeof what, "%s, secret bit %d flipped",
                     wr ? "write a writable" : "read a readable", bit);
            attack_req(&t, what, &r, wr ? SIZE : 0, "no live operation");
            check_intact(&t, what);
        }
        /* the right secret under another key */
        r = good_req(&t, &whole);
        r.key = "no-such-key";
        attack_req(&t, wr ? "write, unknown key" : "read, unknown key", &r, wr ? SIZE : 0,
                   "no live operation");
        check_intact(&t, "unknown key");
        legit_transfer(&w, &t, 0x200 + wr);
        target_free(&t);
    }
    world_free(&w);
}

/* --- 2. a released op ------------------------------------------------------------------ */

static void test_released_key(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        /* op A over its own buffer: take its metadata, release it */
        target_t a = target_new(w.srv, wr, SIZE, 0x300 + wr, "op-a");
        nxc__wire_range_t whole;
        req_t r = good_req(&a, &whole);
        char key[NXC_KEY_MAX + 1];
        uint8_t secret[NXC__SECRET_LEN];
        snprintf(key, sizeof key, "%s", a.md.notification_key);
        memcpy(secret, a.md.secret, sizeof secret);
        r.key = key;
        r.secret = secret;
        nxc_op_release(a.op);
        a.op = NULL;
        attack_req(&a,
                   wr ? "write with a released op's key+secret"
                      : "read with a released op's key+secret",
                   &r, wr ? SIZE : 0, "no live operation");
        check_memory(&a, "released op");

        /* the key reused by a new op B over the same buffer: A's secret must
         * not open it */
        target_t b = a;
        b.op = NULL;
        memset(&b.md, 0, sizeof b.md);
        target_expose(&b, w.srv, "op-a");
        NXT_CHECK(memcmp(b.md.secret, secret, sizeof secret) != 0);
        attack_req(&b, "old secret against a new op with the same key", &r, wr ? SIZE : 0,
                   "no live operation");
        check_intact(&b, "key reused");
        legit_transfer(&w, &b, 0x400 + wr);
        nxc__md_free(&a.md);
        target_free(&b);
    }
    world_free(&w);
}

/* --- 3. ranges outside the buffer ------------------------------------------------------ */

static void test_out_of_bounds(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(w.srv, wr, SIZE, 0x500 + wr, NULL);
        uint64_t b = (uintptr_t)t.buf, e = b + SIZE;
        struct {
            const char *what;
            nxc__wire_range_t r[2];
            uint32_t n;
        } cases[] = {
            {"starts before the buffer", {{b - 16, 32}}, 1},
            {"the guard before it", {{b - GUARD, GUARD}}, 1},
            {"extends past its end", {{e - 16, 32}}, 1},
            {"starts at its end", {{e, 1}}, 1},
            {"len 0", {{b, 0}}, 1},
            {"addr+len wraps around", {{b + 16, UINT64_MAX - 15}}, 1},
            {"addr near 2^64", {{UINT64_MAX - 15, 32}}, 1},
            {"huge len", {{b, 1ull << 62}}, 1},
            {"len 2^64-1", {{b, UINT64_MAX}}, 1},
            {"addr 0", {{0, 16}}, 1},
            {"good range then a bad one", {{b, 16}, {e, 16}}, 2},
            {"good range then len 0", {{b, SIZE}, {b, 0}}, 2},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            req_t r = {wr ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ, t.md.notification_key,
                       t.md.secret, cases[i].r, cases[i].n};
            uint64_t want = 0;
            for (uint32_t k = 0; k < cases[i].n; k++)
                want += cases[i].r[k].len;
            size_t payload = wr ? (want < 2 * GUARD ? (size_t)want : 2 * GUARD) : 0;
            char what[96];
            snprintf(what, sizeof what, "%s: %s", wr ? "write" : "read", cases[i].what);
            attack_req(&t, what, &r, payload, NULL);
            check_intact(&t, what);
        }
        legit_transfer(&w, &t, 0x600 + wr);
        target_free(&t);
    }
    world_free(&w);
}

/* --- 3b. ranges across buffers --------------------------------------------------------------
 * The op is three 4 KiB buffers: two side by side, then one after a 4 KiB
 * gap. A range may run from one buffer into the next only where the next
 * starts at the byte the first ends; never across the gap. */

#define QB 4096u

static void expose_with_gap(target_t *t, nxc_connector_t *c) {
    nxc_op_release(t->op);
    nxc_desc_t d[3] = {nxt_desc(t->buf, QB), nxt_desc(t->buf + QB, QB),
                       nxt_desc(t->buf + 3 * QB, QB)};
    if (t->writable)
        NXT_PASS(nxc_create_writable(c, d, 3, NULL, &t->op));
    else
        NXT_PASS(nxc_create_readable(c, d, 3, NULL, &t->op));
    NXT_PASS(nxc_op_metadata(t->op, &t->text, NULL));
    nxc__md_free(&t->md);
    NXT_PASS(nxc__md_decode(t->text, strlen(t->text), &t->md));
}

/* A real transfer into one local buffer: the reader merges the two side by
 * side into one range, and the owner must grant it. */
static void legit_transfer_with_gap(world_t *w, target_t *t, uint64_t seed) {
    uint8_t *local = nxt_alloc(3 * QB);
    nxc_desc_t d = nxt_desc(local, 3 * QB);
    nxc_op_t *a = NULL;
    if (t->writable) {
        nxt_fill(local, 3 * QB, seed);
        NXT_PASS(nxc_begin_write(w->cli, &d, 1, t->text, 0, NULL, &a));
    } else {
        NXT_PASS(nxc_begin_read(w->cli, t->text, 0, &d, 1, NULL, &a));
    }
    NXT_PASS(nxc_op_wait(a, WAIT_MS));
    NXT_EQ_STR(nxc_op_transport(a), "tcp");
    NXT_PASS(nxc_op_wait(t->op, WAIT_MS));
    NXT_CHECK(memcmp(local, t->buf, 2 * QB) == 0);
    NXT_CHECK(memcmp(local + 2 * QB, t->buf + 3 * QB, QB) == 0);
    if (t->writable) {
        memcpy(t->snap + GUARD, local, 2 * QB);
        memcpy(t->snap + GUARD + 3 * QB, local + 2 * QB, QB);
    }
    check_memory(t, "after the transfer across buffers"); /* the gap untouched */
    nxc_op_release(a);
    free(local);
}

static void test_ranges_across_buffers(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(w.srv, wr, SIZE, 0x680 + wr, NULL);
        expose_with_gap(&t, w.srv);
        uint64_t b = (uintptr_t)t.buf;
        struct {
            const char *what;
            nxc__wire_range_t r[2];
            uint32_t n;
        } cases[] = {
            {"one range over all three, gap included", {{b, 4 * QB}}, 1},
            {"the pair, then a range from the gap", {{b, 2 * QB}, {b + 2 * QB, 2 * QB}}, 2},
            {"the pair run on into the gap", {{b, 3 * QB}}, 1},
            {"the pair, then the last run past its end", {{b, 2 * QB}, {b + 3 * QB, 2 * QB}}, 2},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            req_t r = {wr ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ, t.md.notification_key,
                       t.md.secret, cases[i].r, cases[i].n};
            char what[96];
            snprintf(what, sizeof what, "%s: %s", wr ? "write" : "read", cases[i].what);
            attack_req(&t, what, &r, wr ? 2 * GUARD : 0, NULL);
            check_intact(&t, what);
        }
        legit_transfer_with_gap(&w, &t, 0x690 + wr);
        target_free(&t);
    }
    world_free(&w);
}

/* --- 4. reading a writable, 5. writing a readable ------------------------------------------- */

static void test_read_writable(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, true, SIZE, 0x700, NULL);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    r.md_kind = NXC__MD_KIND_READ;
    attack_req(&t, "READ request against a writable", &r, 0, "writable, not readable");
    check_intact(&t, "read a writable");
    legit_transfer(&w, &t, 0x701);
    target_free(&t);
    world_free(&w);
}

static void test_write_readable(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, false, SIZE, 0x800, NULL);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    r.md_kind = NXC__MD_KIND_WRITE;
    attack_req(&t, "WRITE request + payload against a readable", &r, SIZE,
               "readable, not writable");
    check_intact(&t, "write a readable");
    legit_transfer(&w, &t, 0x801);
    target_free(&t);
    world_free(&w);
}

/* --- 6. garbage ------------------------------------------------------------------------------ */

static void test_garbage(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, true, SIZE, 0x900, NULL);
    uint8_t junk[4096];
    nxt_fill(junk, sizeof junk, 0x901);
    uint32_t magic;
    memcpy(&magic, junk, sizeof magic);
    NXT_CHECK(magic != NXC__WIRE_MAGIC);
    attack_raw(&t, "4 KiB of random bytes first", false, junk, sizeof junk);
    attack_raw(&t, "4 KiB of random bytes after HELLO", true, junk, sizeof junk);
    check_intact(&t, "garbage");

    /* Frames with a good magic and random type, length and body, after a
     * proper HELLO: all at once, then every connection must be closed
     * (bodies shorter than their length stall and time out). */
    enum { N = 48 };
    int fds[N];
    uint64_t s = 0x902;
    for (int i = 0; i < N; i++) {
        uint8_t rnd[16];
        nxt_fill(rnd, sizeof rnd, s++);
        uint8_t type = (uint8_t)(rnd[0] % 10);
        uint32_t body_len = (uint32_t)((rnd[1] | rnd[2] << 8) % 1200);
        uint32_t sent = body_len > 0 ? (uint32_t)((rnd[3] | rnd[4] << 8) % (body_len + 1)) : 0;
        uint8_t f[sizeof(nxc__wire_hdr_t) + 1200];
        nxt_fill(f + sizeof(nxc__wire_hdr_t), 1200, s++);
        nxc__wire_hdr_t h = {.magic = NXC__WIRE_MAGIC, .type = type, .body_len = body_len};
        memcpy(&h.xfer, rnd + 8, sizeof h.xfer);
        memcpy(f, &h, sizeof h);
        fds[i] = hc_open_hello(&t);
        send_all(fds[i], f, sizeof h + sent, CLOSE_MS);
    }
    unsigned closed = 0;
    for (int i = 0; i < N; i++) {
        outcome_t o = drain(fds[i], CLOSE_MS + w.timeout_ms);
        if (!o.closed || o.granted || o.acked)
            nxt_failf(__FILE__, __LINE__, "random frame %d: not closed, or granted", i);
        closed++;
        close(fds[i]);
    }
    printf("    %d random frames after HELLO: all %u connections closed, nothing granted\n", N,
           closed);
    check_intact(&t, "random frames");
    legit_transfer(&w, &t, 0x9ff);
    target_free(&t);
    world_free(&w);
}

/* --- 7. half-sent frames ------------------------------------------------------------------- */

/* Is the connection still open (no EOF, no reset, nothing to read)? */
static bool still_open(int fd) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) == 0) return true;
    uint8_t b;
    ssize_t r = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_half_open(void) {
    /* Long enough that the legitimate transfer surely fits inside it. */
    setenv("NXC_TCP_TIMEOUT_MS", "1000", 1);
    world_t w = world_new();
    NXT_EQ_INT(w.timeout_ms, 1000);
    target_t t = target_new(w.srv, false, SIZE, 0xa00, NULL);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    size_t qn;
    uint8_t *q = req_frame(&r, 1, &qn);
    uint8_t hello[256];
    hello_frame(hello, t.md.instance, NXC__WIRE_VERSION);

    enum { SILENT, HELLO_HDR, REQ_HDR, REQ_BODY, NCASE };
    const char *names[NCASE] = {"connected, nothing sent", "10 bytes of a HELLO header",
                                "HELLO, then 10 bytes of a REQ header",
                                "HELLO, then a REQ header and half its body"};
    int fds[NCASE];
    uint64_t sent_at[NCASE];
    for (int i = 0; i < NCASE; i++) {
        fds[i] = i >= REQ_HDR ? hc_open_hello(&t) : hc_open(&t);
        if (i == HELLO_HDR) NXT_CHECK(send_all(fds[i], hello, 10, CLOSE_MS));
        if (i == REQ_HDR) NXT_CHECK(send_all(fds[i], q, 10, CLOSE_MS));
        if (i == REQ_BODY)
            NXT_CHECK(send_all(
                fds[i], q, sizeof(nxc__wire_hdr_t) + (qn - sizeof(nxc__wire_hdr_t)) / 2, CLOSE_MS));
        sent_at[i] = nxt_now_ms();
    }

    /* Another peer is served normally meanwhile. */
    legit_transfer(&w, &t, 0);
    uint64_t after = nxt_now_ms();
    for (int i = 0; i < NCASE; i++)
        if (after - sent_at[i] < (uint64_t)w.timeout_ms - 100 && !still_open(fds[i]))
            nxt_failf(__FILE__, __LINE__, "%s: closed before the timeout", names[i]);
    printf("    legitimate read done %llu ms after the half-sent frames; all %d still open\n",
           (unsigned long long)(after - sent_at[NCASE - 1]), NCASE);

    for (int i = 0; i < NCASE; i++) {
        outcome_t o = drain(fds[i], w.timeout_ms + CLOSE_MS);
        uint64_t since = nxt_now_ms() - sent_at[i];
        expect_closed(names[i], &o);
        if (since + 20 < (uint64_t)w.timeout_ms)
            nxt_failf(__FILE__, __LINE__, "%s: closed after %llu ms, before the %d ms timeout",
                      names[i], (unsigned long long)since, w.timeout_ms);
        printf("      (%llu ms after its last byte; timeout %d ms)\n", (unsigned long long)since,
               w.timeout_ms);
        close(fds[i]);
    }
    free(q);
    target_free(&t);
    world_free(&w);
}

/* A byte now and then does not keep a handshake or a frame open: both must
 * finish within the timeout from their start (regression: a 1-byte drip
 * every 400 ms kept a pre-HELLO connection open for good). */
static void test_slow_drip(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, false, SIZE, 0xd00, NULL);
    uint8_t hello[256];
    size_t hn = hello_frame(hello, t.md.instance, NXC__WIRE_VERSION);
    int fd = hc_open(&t);
    uint64_t t0 = nxt_now_ms(), bound = (uint64_t)w.timeout_ms * 4 + CLOSE_MS;
    size_t sent = 0;
    while (still_open(fd) && sent < hn && nxt_now_ms() - t0 < bound) {
        if (send(fd, hello + sent, 1, MSG_NOSIGNAL) == 1) sent++;
        usleep((useconds_t)w.timeout_ms * 1000 / 3);
    }
    uint64_t took = nxt_now_ms() - t0;
    printf("    dripping a HELLO a byte at a time: closed after %llu ms and %zu bytes "
           "(timeout %d ms)\n",
           (unsigned long long)took, sent, w.timeout_ms);
    NXT_CHECK(!still_open(fd));
    NXT_CHECK(took < (uint64_t)w.timeout_ms * 2 + 500);
    close(fd);
    check_intact(&t, "after the drip");
    legit_transfer(&w, &t, 0);
    target_free(&t);
    world_free(&w);
}

/* --- 8. protocol violations ------------------------------------------------------------------ */

static void test_protocol(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, true, SIZE, 0xb00, NULL);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    uint8_t f[4096];
    size_t n;

    /* before HELLO */
    uint8_t *q = req_frame(&r, 1, &n);
    uint8_t *msg = malloc(n + SIZE);
    NXT_CHECK(msg);
    memcpy(msg, q, n);
    memset(msg + n, 0xEE, SIZE);
    attack_raw(&t, "REQ (+payload) before HELLO", false, msg, n + SIZE);
    free(msg);

    uint8_t other[NXC__INSTANCE_LEN];
    memcpy(other, t.md.instance, sizeof other);
    other[0] ^= 1;
    n = hello_frame(f, other, NXC__WIRE_VERSION);
    attack_raw(&t, "HELLO wanting another connector", false, f, n);
    n = hello_frame(f, t.md.instance, NXC__WIRE_VERSION + 1);
    attack_raw(&t, "HELLO with version 2", false, f, n);
    n = hello_frame(f, t.md.instance, 0);
    attack_raw(&t, "HELLO with version 0", false, f, n);
    n = hello_frame(f, t.md.instance, NXC__WIRE_VERSION);
    ((nxc__wire_hdr_t *)f)->body_len = 0xFFFFFFFFu;
    attack_raw(&t, "HELLO with body_len 0xFFFFFFFF", false, f, n);
    n = hello_frame(f, t.md.instance, NXC__WIRE_VERSION);
    ((nxc__wire_hello_t *)(f + sizeof(nxc__wire_hdr_t)))->name_len = 200;
    attack_raw(&t, "HELLO whose name_len disagrees with body_len", false, f, n);
    n = hello_frame(f, t.md.instance, NXC__WIRE_VERSION);
    ((nxc__wire_hdr_t *)f)->magic ^= 0x100;
    attack_raw(&t, "HELLO with a bad magic", false, f, n);
    n = frame(f, NXC__WIRE_HELLO, 0, NULL, 0);
    attack_raw(&t, "HELLO with an empty body", false, f, n);

    /* after a proper HELLO */
    n = hello_frame(f, t.md.instance, NXC__WIRE_VERSION);
    attack_raw(&t, "a second HELLO", true, f, n);
    n = frame(f, NXC__WIRE_REQ, 1, NULL, 0);
    ((nxc__wire_hdr_t *)f)->body_len = 0xFFFFFFFFu;
    attack_raw(&t, "REQ header with body_len 0xFFFFFFFF", true, f, n);
    ((nxc__wire_hdr_t *)f)->body_len = (uint32_t)NXC__WIRE_MAX_BODY + 1;
    attack_raw(&t, "REQ header with body_len NXC__WIRE_MAX_BODY+1", true, f, n);
    nxc__wire_done_t d = {.grant = 1, .complete = 1};
    n = frame(f, NXC__WIRE_DONE, 1, &d, sizeof d);
    attack_raw(&t, "DONE for a grant never given", true, f, n);
    nxc__wire_grant_t g = {.grant = 1};
    n = frame(f, NXC__WIRE_GRANTED, 1, &g, sizeof g);
    attack_raw(&t, "a GRANTED frame sent to the passive side", true, f, n);
    n = frame(f, 99, 1, NULL, 0);
    attack_raw(&t, "unknown frame type 99", true, f, n);

    /* malformed REQ bodies: each field in turn */
    struct {
        const char *what;
        size_t off; /* into nxc__wire_req_t */
        uint8_t val;
    } bad[] = {
        {"REQ with md_kind 0", offsetof(nxc__wire_req_t, md_kind), 0},
        {"REQ with md_kind 3", offsetof(nxc__wire_req_t, md_kind), 3},
        {"REQ with inline_data 0 (tcp)", offsetof(nxc__wire_req_t, inline_data), 0},
        {"REQ with nstripes 0", offsetof(nxc__wire_req_t, nstripes), 0},
        {"REQ with nstripes 17", offsetof(nxc__wire_req_t, nstripes), 17},
        {"REQ with stripe >= nstripes", offsetof(nxc__wire_req_t, stripe), 1},
        {"REQ with key_len 0", offsetof(nxc__wire_req_t, key_len), 0},
        {"REQ with nranges 0", offsetof(nxc__wire_req_t, nranges), 0},
        {"REQ with nranges 2 (body for 1)", offsetof(nxc__wire_req_t, nranges), 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *fr = req_frame(&r, 1, &n);
        uint8_t *body = fr + sizeof(nxc__wire_hdr_t);
        if (bad[i].off == offsetof(nxc__wire_req_t, key_len)) {
            uint16_t z = 0;
            memcpy(body + bad[i].off, &z, sizeof z);
        } else if (bad[i].off == offsetof(nxc__wire_req_t, nranges)) {
            uint32_t v = bad[i].val;
            memcpy(body + bad[i].off, &v, sizeof v);
        } else {
            body[bad[i].off] = bad[i].val;
        }
        msg = malloc(n + SIZE);
        NXT_CHECK(msg);
        memcpy(msg, fr, n);
        memset(msg + n, 0xEE, SIZE);
        attack_raw(&t, bad[i].what, true, msg, n + SIZE);
        free(msg);
        free(fr);
        check_intact(&t, bad[i].what);
    }
    /* a NUL inside the key */
    char nul_key[NXC_KEY_MAX + 1];
    snprintf(nul_key, sizeof nul_key, "%s", t.md.notification_key);
    req_t rn = r;
    rn.key = nul_key;
    uint8_t *fr = req_frame(&rn, 1, &n);
    fr[sizeof(nxc__wire_hdr_t) + sizeof(nxc__wire_req_t) + 3] = '\0';
    attack_raw(&t, "REQ with a NUL inside the key", true, fr, n);
    free(fr);
    /* a key of NXC_KEY_MAX+1 bytes */
    char long_key[NXC_KEY_MAX + 2];
    memset(long_key, 'k', NXC_KEY_MAX + 1);
    long_key[NXC_KEY_MAX + 1] = '\0';
    rn.key = long_key;
    fr = req_frame(&rn, 1, &n);
    attack_raw(&t, "REQ with a 65-byte key", true, fr, n);
    free(fr);

    check_intact(&t, "protocol violations");
    legit_transfer(&w, &t, 0xb01);
    free(q);
    target_free(&t);
    world_free(&w);
}

/* --- 9. a write whose payload stops halfway ---------------------------------------------- */

static void test_write_stalls(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, true, SIZE, 0xc00, NULL);
    /* be granted the whole op (nothing less is granted); send half of its
     * bytes; go silent */
    const size_t off = 0, len = SIZE, half = len / 2;
    nxc__wire_range_t range = {(uintptr_t)t.buf + off, len};
    req_t r = {NXC__MD_KIND_WRITE, t.md.notification_key, t.md.secret, &range, 1};
    size_t n;
    uint8_t *q = req_frame(&r, 3, &n);
    uint8_t *msg = malloc(n + NXC_KEY_MAX + len);
    NXT_CHECK(msg);
    memcpy(msg, q, n);
    nxt_fill(msg + n, half, 0xc01);
    int fd = hc_open_hello(&t);
    NXT_CHECK(send_all(fd, msg, n + half, CLOSE_MS));
    uint64_t sent = nxt_now_ms();
    /* the grant is open: in progress, never complete */
    uint64_t until = sent + (uint64_t)w.timeout_ms / 2;
    while (nxt_now_ms() < until) {
        nxc_op_status_t st = nxc_op_status(t.op);
        NXT_CHECK(st == NXC_OP_INITIALIZED || st == NXC_OP_IN_PROGRESS);
        usleep(10000);
    }
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_IN_PROGRESS);
    outcome_t o = drain(fd, w.timeout_ms + CLOSE_MS);
    uint64_t since = nxt_now_ms() - sent;
    expect_closed("WRITE granted, payload stops halfway, then silence", &o);
    NXT_CHECK(since + 20 >= (uint64_t)w.timeout_ms);
    close(fd);
    /* peer lost while holding a grant: the op is ERRORED (stream.c reports
     * the closed connection through nxc__peer_lost) */
    nxc_status_t st = nxc_op_wait(t.op, CLOSE_MS);
    NXT_EQ_INT(st, NXC_ERR_PEER_FAILED);
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_ERRORED);
    printf("    passive op: ERRORED, %s (\"%s\")\n", nxc_status_string(st), nxc_op_message(t.op));
    /* the bytes that arrived landed inside the granted range, nothing else */
    NXT_CHECK(memcmp(t.buf + off, msg + n, half) == 0);
    memcpy(t.snap + GUARD + off, msg + n, half);
    check_memory(&t, "after the stalled write");
    printf("    the %zu bytes that arrived are in the granted range; guards and the rest intact\n",
           half);
    /* the broken op refuses a legitimate writer */
    uint8_t *local = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(local, SIZE);
    nxc_op_t *a;
    NXT_PASS(nxc_begin_write(w.cli, &d, 1, t.text, 0, NULL, &a));
    NXT_EQ_INT(nxc_op_wait(a, WAIT_MS), NXC_ERR_REFUSED);
    printf("    legitimate write to the errored op: refused (%s)\n", nxc_op_message(a));
    nxc_op_release(a);
    free(local);
    check_memory(&t, "write to the errored op");

    /* The same, but the peer hangs up instead of going silent. */
    nxc_op_release(t.op);
    target_expose(&t, w.srv, NULL);
    range.addr = (uintptr_t)t.buf + off;
    r = (req_t){NXC__MD_KIND_WRITE, t.md.notification_key, t.md.secret, &range, 1};
    free(q);
    q = req_frame(&r, 3, &n);
    memcpy(msg, q, n);
    nxt_fill(msg + n, half, 0xc02);
    fd = hc_open_hello(&t);
    NXT_CHECK(send_all(fd, msg, n + half, CLOSE_MS));
    usleep(100000);
    close(fd);
    st = nxc_op_wait(t.op, CLOSE_MS);
    NXT_EQ_INT(st, NXC_ERR_PEER_FAILED);
    printf("    payload stops halfway, peer hangs up: op ERRORED (%s)\n", nxc_op_message(t.op));
    NXT_CHECK(memcmp(t.buf + off, msg + n, half) == 0);
    memcpy(t.snap + GUARD + off, msg + n, half);
    check_memory(&t, "after the cut write");

    /* Bytes past the granted ranges never land: they are read as the next
     * frame header (bad magic) and the connection closes. The grant was for
     * the op's buffer; its bytes complete the op (the peer holds the secret). */
    nxc_op_release(t.op);
    target_expose(&t, w.srv, NULL);
    const size_t extra = 4096;
    range = (nxc__wire_range_t){(uintptr_t)t.buf, SIZE};
    r = (req_t){NXC__MD_KIND_WRITE, t.md.notification_key, t.md.secret, &range, 1};
    free(q);
    q = req_frame(&r, 4, &n);
    free(msg);
    msg = malloc(n + SIZE + extra);
    NXT_CHECK(msg);
    memcpy(msg, q, n);
    nxt_fill(msg + n, SIZE + extra, 0xc03);
    fd = hc_open_hello(&t);
    send_all(fd, msg, n + SIZE + extra, CLOSE_MS);
    o = drain(fd, CLOSE_MS);
    close(fd);
    say("WRITE of the whole op followed by 4 KiB more", &o);
    NXT_CHECK(o.closed && !o.refused);
    /* the op completed when the granted bytes landed; the ACK queued for it
     * may be dropped when the junk after it closes the connection */
    NXT_EQ_INT(nxc_op_wait(t.op, CLOSE_MS), NXC_OK);
    NXT_CHECK(memcmp(t.buf, msg + n, SIZE) == 0);
    memcpy(t.snap + GUARD, msg + n, SIZE);
    check_memory(&t, "after the overrun");
    printf("    the granted bytes landed (op COMPLETE, ACK %s), the 4 KiB after them did not; "
           "guards intact\n",
           o.acked ? "received" : "lost in the close");

    /* and the listener still serves */
    nxc_op_release(t.op);
    target_expose(&t, w.srv, NULL);
    legit_transfer(&w, &t, 0xc04);
    free(q);
    free(msg);
    target_free(&t);
    world_free(&w);
}

/* --- 10. many idle connections ----------------------------------------------------------- */

static void test_many_idle(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, false, SIZE, 0xd00, NULL);
    enum { N = 200 };
    int fds[N];
    uint64_t t0 = nxt_now_ms();
    /* Half of them say HELLO and then idle; the other half stay silent.
     * The greeted ones first: each greets at once (a burst of connects can
     * overflow the listen backlog, and a connection not greeted within the
     * timeout is closed). */
    for (int i = N / 2; i < N; i++) {
        fds[i] = hc_open(&t);
        hc_hello(fds[i], &t);
    }
    for (int i = 0; i < N / 2; i++)
        fds[i] = hc_open(&t);
    printf("    %d connections open (%d silent, %d after HELLO) in %llu ms\n", N, N / 2, N / 2,
           (unsigned long long)(nxt_now_ms() - t0));
    legit_transfer(&w, &t, 0);
    unsigned open_silent = 0, open_hello = 0;
    for (int i = 0; i < N; i++)
        *(i < N / 2 ? &open_silent : &open_hello) += still_open(fds[i]);
    printf("    during it: %u silent and %u greeted connections still open\n", open_silent,
           open_hello);
    NXT_EQ_INT(open_hello, N / 2);

    /* past the timeout the silent ones are closed, and the server still
     * serves */
    usleep((useconds_t)(w.timeout_ms + 500) * 1000);
    open_silent = open_hello = 0;
    for (int i = 0; i < N; i++)
        *(i < N / 2 ? &open_silent : &open_hello) += still_open(fds[i]);
    printf("    %d ms later: %u silent and %u greeted connections still open\n", w.timeout_ms + 500,
           open_silent, open_hello);
    NXT_EQ_INT(open_silent, 0);
    nxc_op_release(t.op);
    target_expose(&t, w.srv, NULL);
    legit_transfer(&w, &t, 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    target_free(&t);
    world_free(&w);
}

/* --- 11. DONE before the payload was sent ------------------------------------------------ */

/* A peer holding the secret asks to read a large readable, reads only the
 * GRANTED frame, then sends DONE (complete, or gave up) while most of the
 * payload is still queued in the server. The application sees the op end (or
 * go back to waiting), releases it and reuses the buffer. Release promises
 * that peers can no longer reach the memory; every payload byte the peer
 * receives afterwards must therefore be one read before the release. */
static void done_early(bool complete) {
    world_t w = world_new();
    const size_t big = 32u << 20;
    target_t t = target_new(w.srv, false, big, 0xe00 + complete, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rcv = 64 << 10; /* keep the kernel from buffering the whole payload */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    NXT_CHECK(connect(fd, (struct sockaddr *)&t.sa, sizeof t.sa) == 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    hc_hello(fd, &t);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    size_t n;
    uint8_t *q = req_frame(&r, 9, &n);
    NXT_CHECK(send_all(fd, q, n, CLOSE_MS));
    free(q);
    nxc__wire_hdr_t h;
    nxc__wire_grant_t g;
    NXT_CHECK(recv_exact(fd, &h, sizeof h, CLOSE_MS));
    NXT_EQ_INT(h.type, NXC__WIRE_GRANTED);
    NXT_CHECK(recv_exact(fd, &g, sizeof g, CLOSE_MS));
    usleep(200000); /* let the server fill the socket buffers */
    nxc__wire_done_t d = {.grant = g.grant, .complete = complete};
    uint8_t f[64];
    n = frame(f, NXC__WIRE_DONE, 9, &d, sizeof d);
    NXT_CHECK(send_all(fd, f, n, CLOSE_MS));
    if (complete) {
        nxc_status_t st = nxc_op_wait(t.op, CLOSE_MS);
        printf("    DONE{complete=1} before the payload was read: passive op -> %s\n",
               nxc_status_string(st));
    } else {
        uint64_t until = nxt_now_ms() + CLOSE_MS;
        while (nxc_op_status(t.op) == NXC_OP_IN_PROGRESS && nxt_now_ms() < until)
            usleep(5000);
        printf("    DONE{complete=0} before the payload was read: passive op status %d\n",
               (int)nxc_op_status(t.op));
    }
    nxc_op_release(t.op);
    t.op = NULL;
    memset(t.buf, 0x5A, big); /* the memory's next life */
    size_t got = 0, leaked = 0, first_leak = SIZE_MAX;
    uint8_t *chunk = malloc(1u << 20);
    NXT_CHECK(chunk);
    uint64_t idle_until = nxt_now_ms() + 1000;
    while (got < big && nxt_now_ms() < idle_until) {
        ssize_t k = recv(fd, chunk, 1u << 20, MSG_DONTWAIT);
        if (k > 0) {
            for (ssize_t i = 0; i < k && got + (size_t)i < big; i++)
                if (chunk[i] != t.snap[GUARD + got + (size_t)i]) {
                    if (first_leak == SIZE_MAX) first_leak = got + (size_t)i;
                    leaked++;
                }
            got += (size_t)k;
            idle_until = nxt_now_ms() + 1000;
            continue;
        }
        if (k == 0 || (errno != EAGAIN && errno != EINTR)) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 100);
    }
    free(chunk);
    close(fd);
    printf("    after nxc_op_release: peer received %zu payload bytes of %zu, %zu of them "
           "read from the buffer after the release (first at offset %zu)\n",
           got, big, leaked, leaked ? first_leak : 0);
    if (leaked)
        nxt_failf(__FILE__, __LINE__,
                  "the peer kept reading the buffer after nxc_op_release() returned "
                  "(%zu bytes; the DONE frame closed the grant while the GRANTED payload was "
                  "still queued)",
                  leaked);
    target_free(&t);
    world_free(&w);
}

static void test_done_early_complete(void) {
    done_early(true);
}
static void test_done_early_gave_up(void) {
    done_early(false);
}

/* --- 12. the active side meets the wrong connector ---------------------------------------- */

/* The other side of "HELLO wanting another connector": a peer holds metadata
 * of a connector that is gone, and its port now belongs to another connector
 * (fixed ports, restarts). That connector closes the connection after the
 * HELLO; the read must then fail (unreachable), within a bound, rather than
 * reconnect for ever. */
static void test_stale_metadata(void) {
    stall_timeout_ms();
    nxc_connector_params_t p = {0};
    p.field_mask = NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |
                   NXC_CONNECTOR_FIELD_TCP_ADDRESS | NXC_CONNECTOR_FIELD_TCP_PORT;
    p.name = "first";
    p.transports = "tcp";
    p.tcp_address = "127.0.0.1";
    nxc_connector_t *first = NULL;
    NXT_PASS(nxc_connector_create(&p, &first));
    target_t t = target_new(first, false, SIZE, 0xf00, NULL);
    char *md = strdup(t.text);
    NXT_CHECK(md);
    nxc_op_release(t.op);
    t.op = NULL;
    nxc_connector_destroy(first);
    p.name = "second";
    p.tcp_port = ntohs(t.sa.sin_port);
    nxc_connector_t *second = NULL;
    NXT_PASS(nxc_connector_create(&p, &second));
    nxc_connector_t *cli = tcp_connector("legit");

    uint8_t *local = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(local, SIZE);
    nxc_op_t *a;
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    uint64_t t0 = nxt_now_ms();
    NXT_PASS(nxc_begin_read(cli, md, 0, &d, 1, NULL, &a));
    nxc_status_t st = nxc_op_wait(a, CLOSE_MS + 2000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("    read with a dead connector's metadata, its port taken by another: %s (%s) "
           "after %llu ms, %.2f s of CPU\n",
           nxc_status_string(st), nxc_op_message(a), (unsigned long long)(nxt_now_ms() - t0), cpu);
    if (st == NXC_INPROGRESS)
        nxt_failf(__FILE__, __LINE__,
                  "the read neither failed nor completed in %d ms: the active side reconnects "
                  "for ever when the peer closes before HELLO_OK",
                  CLOSE_MS + 2000);
    /* unreachable is the natural status; a refusal would do */
    NXT_CHECK(st == NXC_ERR_UNREACHABLE || st == NXC_ERR_REFUSED || st == NXC_ERR_PEER_FAILED);
    NXT_EQ_INT(nxt_verify(t.mem, SIZE + 2 * GUARD, 0xf00), SIZE_MAX);
    nxc_op_release(a);
    free(local);
    free(md);
    nxc_connector_destroy(cli);
    nxc_connector_destroy(second);
    target_free(&t);
}

/* --- 10. less than the whole op ---------------------------------------------------------- */

/* A transfer is granted the whole op (or one stripe of it: exactly its part)
 * and nothing else, so a completion always means every byte moved. */
static void test_partial_cover(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(w.srv, wr, SIZE, 0x900 + wr, NULL);
        uint64_t b = (uintptr_t)t.buf, h = SIZE / 2;
        struct {
            const char *what;
            nxc__wire_range_t r[2];
            uint32_t n;
            unsigned stripe, nstripes;
        } cases[] = {
            {"the first half only", {{b, h}}, 1, 0, 1},
            {"the second half only", {{b + h, h}}, 1, 0, 1},
            {"all but the last byte", {{b, SIZE - 1}}, 1, 0, 1},
            {"both halves, swapped", {{b + h, h}, {b, h}}, 2, 0, 1},
            {"the first half twice", {{b, h}, {b, h}}, 2, 0, 1},
            {"stripe 0 of 2 asking for everything", {{b, SIZE}}, 1, 0, 2},
            {"stripe 1 of 2 asking for the first half", {{b, h}}, 1, 1, 2},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            req_t r = {wr ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ, t.md.notification_key,
                       t.md.secret, cases[i].r, cases[i].n};
            char what[96];
            snprintf(what, sizeof what, "%s: %s", wr ? "write" : "read", cases[i].what);
            int fd = hc_open_hello(&t);
            size_t n;
            uint8_t *f = req_frame_part(&r, 11, cases[i].stripe, cases[i].nstripes, &n);
            send_all(fd, f, n, CLOSE_MS);
            outcome_t o = drain(fd, CLOSE_MS);
            expect_refused(what, &o, NULL);
            close(fd);
            free(f);
            NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_INITIALIZED);
            check_intact(&t, what);
        }
        legit_transfer(&w, &t, 0xa00 + wr);
        target_free(&t);
    }
    world_free(&w);
}

/* --- 11. a striped writer that dies between its stripes --------------------------------- */

static void test_striped_writer_dies(void) {
    world_t w = world_new();
    target_t t = target_new(w.srv, true, SIZE, 0xb80, NULL);
    uint64_t b = (uintptr_t)t.buf, h = SIZE / 2;
    nxc__wire_range_t first = {b, h};
    req_t r = {NXC__MD_KIND_WRITE, t.md.notification_key, t.md.secret, &first, 1};
    size_t n;
    uint8_t *q = req_frame_part(&r, 21, 0, 2, &n);
    uint8_t *msg = malloc(n + h);
    NXT_CHECK(msg);
    memcpy(msg, q, n);
    nxt_fill(msg + n, h, 0xb81);
    int a = hc_open_hello(&t), c2 = hc_open_hello(&t);
    NXT_CHECK(send_all(a, msg, n + h, CLOSE_MS));
    nxc__wire_hdr_t hdr;
    nxc__wire_grant_t g;
    NXT_CHECK(recv_exact(a, &hdr, sizeof hdr, CLOSE_MS));
    NXT_EQ_INT(hdr.type, NXC__WIRE_ACK);
    NXT_CHECK(recv_exact(a, &g, sizeof g, CLOSE_MS));
    printf("    stripe 0 of 2 landed (ACK); passive op status %d\n", (int)nxc_op_status(t.op));
    /* half written: in progress, never back to INITIALIZED, never complete */
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_IN_PROGRESS);
    /* the same stripe again, on the other connection: refused */
    int fd = c2;
    NXT_CHECK(send_all(fd, q, n, CLOSE_MS));
    outcome_t o = drain(fd, CLOSE_MS);
    expect_refused("stripe 0 of the same transfer again", &o, "stripe");
    close(c2);
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_IN_PROGRESS);
    /* the writer dies before its second stripe */
    close(a);
    nxc_status_t st = nxc_op_wait(t.op, CLOSE_MS);
    printf("    writer gone between stripes: passive op -> %s (\"%s\")\n", nxc_status_string(st),
           nxc_op_message(t.op));
    NXT_EQ_INT(st, NXC_ERR_PEER_FAILED);
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_ERRORED);
    /* what landed is the first half, where it was granted */
    NXT_CHECK(memcmp(t.buf, msg + n, h) == 0);
    memcpy(t.snap + GUARD, msg + n, h);
    check_memory(&t, "after the half-done striped write");
    free(q);
    free(msg);
    target_free(&t);
    world_free(&w);
}

/* --- 12. a reader that cancels mid-payload ----------------------------------------------- */

/* CANCEL while the bytes are still being sent: the server stops sending,
 * closes, and the op stays usable (a reader gave up; nothing failed). A
 * CANCEL on a connection without a grant just closes it. */
static void test_cancel_mid_payload(void) {
    world_t w = world_new();
    const size_t big = 32u << 20;
    target_t t = target_new(w.srv, false, big, 0xd80, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rcv = 64 << 10; /* keep the kernel from buffering the whole payload */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    NXT_CHECK(connect(fd, (struct sockaddr *)&t.sa, sizeof t.sa) == 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    hc_hello(fd, &t);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    size_t n;
    uint8_t *q = req_frame(&r, 31, &n);
    NXT_CHECK(send_all(fd, q, n, CLOSE_MS));
    free(q);
    nxc__wire_hdr_t h;
    nxc__wire_grant_t g;
    NXT_CHECK(recv_exact(fd, &h, sizeof h, CLOSE_MS));
    NXT_EQ_INT(h.type, NXC__WIRE_GRANTED);
    NXT_CHECK(recv_exact(fd, &g, sizeof g, CLOSE_MS));
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_IN_PROGRESS);
    uint8_t f[64];
    n = frame(f, NXC__WIRE_CANCEL, 31, &g, sizeof g);
    NXT_CHECK(send_all(fd, f, n, CLOSE_MS));
    outcome_t o = drain(fd, CLOSE_MS);
    close(fd);
    printf("    CANCEL mid-payload: connection %s after %llu ms, %zu bytes of %zu received; "
           "op status %d\n",
           o.closed ? "closed" : "open", (unsigned long long)o.ms, o.total, big,
           (int)nxc_op_status(t.op));
    NXT_CHECK(o.closed && o.total < big);
    NXT_EQ_INT(nxc_op_status(t.op), NXC_OP_IN_PROGRESS); /* not ended, never back */
    check_memory(&t, "after the cancel");
    /* a CANCEL on a connection that holds no grant: closed, nothing else */
    fd = hc_open_hello(&t);
    nxc__wire_grant_t other = {.grant = 987654321};
    n = frame(f, NXC__WIRE_CANCEL, 32, &other, sizeof other);
    send_all(fd, f, n, CLOSE_MS);
    o = drain(fd, CLOSE_MS);
    close(fd);
    NXT_CHECK(o.closed);
    /* the op was given back each time: a real reader completes it */
    legit_transfer(&w, &t, 0xd81);
    target_free(&t);
    world_free(&w);
}

/* --- frames in one segment ------------------------------------------------------------- */

/* Receive one frame of `type` whose body is `len` bytes into `body`. */
static void expect_frame(int fd, uint8_t type, void *body, size_t len) {
    nxc__wire_hdr_t h;
    NXT_CHECK(recv_exact(fd, &h, sizeof h, CLOSE_MS));
    NXT_EQ_INT(h.magic, NXC__WIRE_MAGIC);
    NXT_EQ_INT(h.type, type);
    NXT_EQ_INT(h.body_len, len);
    NXT_CHECK(recv_exact(fd, body, len, CLOSE_MS));
}

/* A peer's HELLO, REQ and (for a write) payload sent in one send(), so that
 * the server takes in several frames, and the start or all of a payload,
 * with one receive: each is still taken whole and in order (the server
 * receives through a buffer of 8 KiB; 1000 bytes fit in it with the frames,
 * 64 KiB do not). */
static void one_segment(world_t *w, bool writable, size_t size) {
    target_t t = target_new(w->srv, writable, size, 0x5e9 + size, NULL);
    nxc__wire_range_t whole;
    req_t r = good_req(&t, &whole);
    size_t rn, hn;
    uint8_t hello[256], *req = req_frame(&r, 9, &rn);
    hn = hello_frame(hello, t.md.instance, NXC__WIRE_VERSION);
    size_t payload = writable ? size : 0;
    uint8_t *seg = malloc(hn + rn + payload), *bytes = nxt_alloc(size);
    NXT_CHECK(seg);
    nxt_fill(bytes, size, 0xfeed + size);
    memcpy(seg, hello, hn);
    memcpy(seg + hn, req, rn);
    if (writable) memcpy(seg + hn + rn, bytes, size);
    int fd = hc_open(&t);
    NXT_CHECK(send_all(fd, seg, hn + rn + payload, CLOSE_MS));
    nxc__wire_hello_ok_t ok;
    nxc__wire_grant_t grant;
    expect_frame(fd, NXC__WIRE_HELLO_OK, &ok, sizeof ok);
    expect_frame(fd, writable ? NXC__WIRE_ACK : NXC__WIRE_GRANTED, &grant, sizeof grant);
    if (writable) {
        NXT_PASS(nxc_op_wait(t.op, WAIT_MS));
        NXT_CHECK(memcmp(t.buf, bytes, size) == 0);
        memcpy(t.snap + GUARD, bytes, size);
    } else {
        NXT_CHECK(recv_exact(fd, bytes, size, CLOSE_MS));
        NXT_CHECK(memcmp(bytes, t.buf, size) == 0);
    }
    check_memory(&t, "after the transfer in one segment");
    printf("    HELLO, REQ%s in one segment, %zu bytes: %s\n", writable ? " and payload" : "", size,
           writable ? "written" : "read");
    close(fd);
    free(seg);
    free(req);
    free(bytes);
    target_free(&t);
}

static void test_one_segment(void) {
    world_t w = world_new();
    for (int wr = 0; wr < 2; wr++) {
        one_segment(&w, wr, 1000);
        one_segment(&w, wr, SIZE);
    }
    world_free(&w);
}

static const nxt_test_t nxt_tests[] = {
    {"wrong_secret", test_wrong_secret, 60},
    {"released_key", test_released_key, 60},
    {"out_of_bounds", test_out_of_bounds, 90},
    {"ranges_across_buffers", test_ranges_across_buffers, 90},
    {"read_a_writable", test_read_writable, 60},
    {"write_a_readable", test_write_readable, 60},
    {"garbage", test_garbage, 90},
    {"half_open", test_half_open, 60},
    {"slow_drip", test_slow_drip, 60},
    {"protocol_violations", test_protocol, 90},
    {"write_stalls", test_write_stalls, 60},
    {"many_idle_connections", test_many_idle, 90},
    {"done_before_payload_complete", test_done_early_complete, 60},
    {"done_before_payload_gave_up", test_done_early_gave_up, 60},
    {"stale_metadata_other_connector", test_stale_metadata, 60},
    {"partial_cover", test_partial_cover, 90},
    {"striped_writer_dies", test_striped_writer_dies, 60},
    {"cancel_mid_payload", test_cancel_mid_payload, 60},
    {"frames_in_one_segment", test_one_segment, 60},
};
NXT_MAIN(nxt_tests)
