/* SPDX-License-Identifier: Apache-2.0 */
/* The ucx transport against damaged metadata and a hostile peer (issue 8).
 *
 * Every case checks that the process survives what a peer sent, that the op
 * concerned ends with a clear error (or begin refuses it), and that the
 * passive side's memory (guard bytes included) is unchanged, its op still
 * usable, and a legitimate transfer completes afterwards.
 *
 *   - a mutated worker address in the metadata (truncations, bit flips, the
 *     version byte, random bytes), seeded and bounded;
 *   - a raw GRANT_REQ, sent with UCX directly, carrying a bad requester
 *     address, with and without a valid key and secret;
 *   - garbage and bit-flipped rkeys on the get/put path;
 *   - metadata whose instance names no live connector: UNREACHABLE, promptly;
 *   - connectors destroyed while endpoint wire-up is still pending, under CPU
 *     load;
 *   - an empty ucx key on the get/put path: begin fails;
 *   - active messages of ids nxc does not use.
 *
 * Forged metadata is built by decoding the real text, replacing one field
 * and encoding it again (nxc__md_encode), so that only that field differs.
 */
#include <poll.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include "core/metadata.h"
#include "nxt.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_wire.h"

#define SIZE (64u << 10) /* the exposed buffer */
#define GUARD 4096u      /* guard bytes each side of it, same allocation */
#define WAIT_MS 10000    /* legitimate transfers */

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static nxc_connector_t *ucx_connector(const char *name) {
    return nxt_connector_on(name, "ucx");
}

/* --- a passive op under attack ------------------------------------------------------ */

typedef struct target {
    bool writable;
    uint8_t *mem;  /* GUARD + SIZE + GUARD */
    uint8_t *buf;  /* mem + GUARD: what the op exposes */
    uint8_t *snap; /* mem as it must stay */
    nxc_op_t *op;
    const char *text;
    nxc__metadata_t md;
} target_t;

static void target_expose(target_t *t, nxc_connector_t *c) {
    nxc_desc_t d = nxt_desc(t->buf, SIZE);
    if (t->writable)
        NXT_PASS(nxc_create_writable(c, &d, 1, NULL, &t->op));
    else
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &t->op));
    NXT_PASS(nxc_op_metadata(t->op, &t->text, NULL));
    nxc__md_free(&t->md);
    NXT_PASS(nxc__md_decode(t->text, strlen(t->text), &t->md));
    NXT_CHECK(nxc__md_section(&t->md, "ucx"));
}

static target_t target_new(nxc_connector_t *c, bool writable, uint64_t seed) {
    target_t t = {.writable = writable};
    t.mem = nxt_alloc(SIZE + 2 * GUARD);
    t.snap = nxt_alloc(SIZE + 2 * GUARD);
    t.buf = t.mem + GUARD;
    nxt_fill(t.mem, SIZE + 2 * GUARD, seed);
    memcpy(t.snap, t.mem, SIZE + 2 * GUARD);
    target_expose(&t, c);
    return t;
}

static void target_free(target_t *t) {
    nxc_op_release(t->op);
    nxc__md_free(&t->md);
    free(t->mem);
    free(t->snap);
}

static void check_memory(const target_t *t, const char *when) {
    size_t total = SIZE + 2 * GUARD;
    if (memcmp(t->mem, t->snap, total) == 0) return;
    size_t i = 0;
    while (i < total && t->mem[i] == t->snap[i])
        i++;
    nxt_failf(__FILE__, __LINE__, "%s: memory changed at offset %lld from the buffer's start", when,
              (long long)i - (long long)GUARD);
}

/* Memory intact and the passive op still waiting for a peer. */
static void check_intact(const target_t *t, const char *when) {
    check_memory(t, when);
    nxc_op_status_t st = nxc_op_status(t->op);
    if (st != NXC_OP_INITIALIZED)
        nxt_failf(__FILE__, __LINE__, "%s: passive op is %d (%s), expected INITIALIZED", when,
                  (int)st, nxc_op_message(t->op));
}

/* A legitimate peer reads the readable (or writes the writable); both ops
 * complete with the right bytes. */
static void legit_transfer(nxc_connector_t *cli, target_t *t, uint64_t seed) {
    uint8_t *local = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(local, SIZE);
    nxc_op_t *a = NULL;
    if (t->writable) {
        nxt_fill(local, SIZE, seed);
        NXT_PASS(nxc_begin_write(cli, &d, 1, t->text, 0, NULL, &a));
    } else {
        NXT_PASS(nxc_begin_read(cli, t->text, 0, &d, 1, NULL, &a));
    }
    nxc_status_t st = nxc_op_wait(a, WAIT_MS);
    if (st != NXC_OK)
        nxt_failf(__FILE__, __LINE__, "legitimate %s -> %s (%s)", t->writable ? "write" : "read",
                  nxc_status_string(st), nxc_op_message(a));
    NXT_PASS(nxc_op_wait(t->op, WAIT_MS));
    NXT_CHECK(memcmp(local, t->buf, SIZE) == 0);
    if (t->writable) memcpy(t->snap + GUARD, local, SIZE);
    check_memory(t, "after the legitimate transfer");
    printf("    legitimate %s: complete\n", t->writable ? "write" : "read");
    nxc_op_release(a);
    free(local);
}

/* --- forging metadata ------------------------------------------------------------------ */

/* What to change in a copy of a decoded metadata. NULL/negative: keep. */
typedef struct forgery {
    const uint8_t *conn; /* the ucx section's worker address */
    long conn_len;
    const uint8_t *key0; /* the ucx key of descriptor 0 */
    long key0_len;
    const uint8_t *instance;
} forgery_t;

static char *forge(const nxc__metadata_t *orig, const forgery_t *f) {
    nxc__metadata_t md = *orig;
    nxc__bytes_t *keys[NXC__MD_MAX_SECTIONS] = {0};
    for (size_t s = 0; s < md.nsections; s++) {
        nxc__md_section_t *sec = &md.sections[s];
        keys[s] = calloc(md.ndesc, sizeof *keys[s]);
        NXT_CHECK(keys[s]);
        memcpy(keys[s], sec->keys, md.ndesc * sizeof *keys[s]);
        sec->keys = keys[s];
        if (strcmp(sec->name, "ucx")) continue;
        if (f->conn_len >= 0) sec->conn = (nxc__bytes_t){f->conn, (uint32_t)f->conn_len};
        if (f->key0_len >= 0) sec->keys[0] = (nxc__bytes_t){f->key0, (uint32_t)f->key0_len};
    }
    if (f->instance) memcpy(md.instance, f->instance, NXC__INSTANCE_LEN);
    char *text = NULL;
    size_t len;
    NXT_PASS(nxc__md_encode(&md, &text, &len));
    for (size_t s = 0; s < md.nsections; s++)
        free(keys[s]);
    return text;
}

static forgery_t no_change(void) {
    return (forgery_t){.conn_len = -1, .key0_len = -1};
}

/* How the ops of a campaign ended, by status. */
typedef struct tally {
    unsigned begin_refused, ended[64], complete;
} tally_t;

static void tally_print(const tally_t *t) {
    printf("    begin refused: %u;", t->begin_refused);
    for (int i = 0; i < 64; i++)
        if (t->ended[i]) printf(" ended %s: %u;", nxc_status_string((nxc_status_t)-i), t->ended[i]);
    printf(" complete: %u\n", t->complete);
}

/* --- 1. a mutated worker address in the metadata --------------------------------------- */

enum { MUT_TRUNCATE, MUT_FLIPS, MUT_VERSION, MUT_RANDOM, MUT_KINDS };

/* Mutate `in` (len bytes) into out (cap bytes); returns the new length. */
static size_t mutate(const uint8_t *in, size_t len, uint8_t *out, size_t cap, int kind,
                     uint64_t *s) {
    switch (kind) {
    case MUT_TRUNCATE: {
        size_t n = (size_t)(rnd(s) % len);
        memcpy(out, in, n);
        return n;
    }
    case MUT_FLIPS: {
        memcpy(out, in, len);
        int flips = 1 + (int)(rnd(s) % 3);
        for (int i = 0; i < flips; i++) {
            size_t bit = (size_t)(rnd(s) % (len * 8));
            out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        return len;
    }
    case MUT_VERSION: /* the low nibble of the first byte is the address version */
        memcpy(out, in, len);
        out[0] = (uint8_t)((out[0] & 0xf0) | (2 + rnd(s) % 14));
        return len;
    default: {
        size_t n = 1 + (size_t)(rnd(s) % (cap < 2 * len ? cap : 2 * len));
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)rnd(s);
        return n;
    }
    }
}

/* Begin one op per forged text (at most 32 at a time), wait for all. */
typedef struct batch {
    nxc_op_t *ops[32];
    uint8_t *bufs[32];
    int n;
} batch_t;

static void batch_drain(batch_t *b, tally_t *t) {
    for (int i = 0; i < b->n; i++) {
        nxc_status_t st = nxc_op_wait(b->ops[i], 8000);
        if (st == NXC_INPROGRESS)
            nxt_failf(__FILE__, __LINE__,
                      "an op with a forged address neither failed nor completed in 8 s "
                      "(it had a 1.5 s deadline)");
        if (st == NXC_OK)
            t->complete++;
        else
            t->ended[-st < 64 ? -st : 63]++;
        nxc_op_release(b->ops[i]);
        free(b->bufs[i]);
    }
    b->n = 0;
}

static void test_mutated_address(void) {
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    target_t t = target_new(owner, false, 0x100);
    const nxc__md_section_t *sec = nxc__md_section(&t.md, "ucx");
    const uint8_t *addr = sec->conn.data;
    size_t alen = sec->conn.len;
    printf("    worker address: %zu bytes, version byte 0x%02x\n", alen, addr[0]);
    uint8_t *m = malloc(4 * alen + 16);
    NXT_CHECK(m);
    uint64_t s = 0x5eed0001;
    tally_t tally = {0};
    batch_t b = {.n = 0};
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 1500};
    enum { N = 320 };
    for (int i = 0; i < N; i++) {
        int kind = i < 16 ? MUT_VERSION : i % MUT_KINDS;
        size_t n = mutate(addr, alen, m, 4 * alen, kind, &s);
        uint8_t inst[NXC__INSTANCE_LEN]; /* a new instance: no cached endpoint */
        nxt_fill(inst, sizeof inst, rnd(&s));
        forgery_t f = no_change();
        f.conn = m;
        f.conn_len = (long)n;
        f.instance = inst;
        char *text = forge(&t.md, &f);
        uint8_t *local = nxt_alloc(SIZE);
        nxc_desc_t d = nxt_desc(local, SIZE);
        nxc_op_t *op = NULL;
        nxc_status_t st = nxc_begin_read(reader, text, 0, &d, 1, &p, &op);
        free(text);
        if (st != NXC_OK) {
            NXT_CHECK(st < 0 && nxc_last_error()[0]);
            tally.begin_refused++;
            free(local);
            continue;
        }
        b.ops[b.n] = op;
        b.bufs[b.n++] = local;
        if (b.n == 32) batch_drain(&b, &tally);
    }
    batch_drain(&b, &tally);
    printf("    %d mutated addresses (truncated, 1-3 bits flipped, version byte, random):\n", N);
    tally_print(&tally);
    NXT_EQ_INT(tally.complete, 0); /* each named a random instance */
    check_intact(&t, "mutated addresses");
    legit_transfer(reader, &t, 0x101);
    free(m);
    target_free(&t);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* --- 2. a raw GRANT_REQ with a bad requester address ------------------------------------ */

/* A hostile peer speaking UCX directly. */
typedef struct raw {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;
    int replies;
    int32_t last_status;
    char last_why[256];
    bool ep_failed;
} raw_t;

static ucs_status_t raw_on_rep(void *arg, const void *h, size_t hl, void *data, size_t len,
                               const ucp_am_recv_param_t *param) {
    raw_t *r = arg;
    nxc__ucx_grant_rep_t rep;
    if (len < sizeof rep) return UCS_OK;
    memcpy(&rep, data, sizeof rep);
    size_t n =
        len - sizeof rep < sizeof r->last_why - 1 ? len - sizeof rep : sizeof r->last_why - 1;
    memcpy(r->last_why, (const uint8_t *)data + sizeof rep, n);
    r->last_why[n] = '\0';
    r->last_status = rep.status;
    r->replies++;
    return UCS_OK;
}

static void raw_ep_err(void *arg, ucp_ep_h ep, ucs_status_t st) {
    ((raw_t *)arg)->ep_failed = true;
}

static void raw_open(raw_t *r, const nxc__md_section_t *sec) {
    memset(r, 0, sizeof *r);
    ucp_config_t *cfg;
    NXT_CHECK(ucp_config_read(NULL, NULL, &cfg) == UCS_OK);
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
    NXT_CHECK(ucp_init(&pp, cfg, &r->ctx) == UCS_OK);
    ucp_config_release(cfg);
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    NXT_CHECK(ucp_worker_create(r->ctx, &wp, &r->worker) == UCS_OK);
    ucp_am_handler_param_t hp = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                      UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = NXC__UCX_AM_GRANT_REP,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = raw_on_rep,
        .arg = r};
    NXT_CHECK(ucp_worker_set_am_recv_handler(r->worker, &hp) == UCS_OK);
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
                          .address = (const ucp_address_t *)sec->conn.data,
                          .err_mode = UCP_ERR_HANDLING_MODE_PEER,
                          .err_handler = {.cb = raw_ep_err, .arg = r}};
    NXT_CHECK(ucp_ep_create(r->worker, &ep, &r->ep) == UCS_OK);
}

static void raw_progress_until(raw_t *r, ucs_status_ptr_t req, int want_replies, int ms) {
    uint64_t until = nxt_now_ms() + (uint64_t)ms;
    while (nxt_now_ms() < until) {
        ucp_worker_progress(r->worker);
        bool sent = !UCS_PTR_IS_PTR(req) || ucp_request_check_status(req) != UCS_INPROGRESS;
        if (sent && r->replies >= want_replies) break;
    }
    if (UCS_PTR_IS_PTR(req)) ucp_request_free(req);
}

static void raw_close(raw_t *r) {
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t q = ucp_ep_close_nbx(r->ep, &rp);
    for (int i = 0;
         UCS_PTR_IS_PTR(q) && i < 100000 && ucp_request_check_status(q) == UCS_INPROGRESS; i++)
        ucp_worker_progress(r->worker);
    if (UCS_PTR_IS_PTR(q)) ucp_request_free(q);
    ucp_worker_destroy(r->worker);
    ucp_cleanup(r->ctx);
}

/* Send a GRANT_REQ with the given key, secret and requester address, from a
 * random requester instance (so the owner has no endpoint cached for it). */
static void raw_grant_req(raw_t *r, const target_t *t, const char *key, const uint8_t *secret,
                          const uint8_t *addr, size_t addr_len, uint64_t seed) {
    const char *name = "hostile";
    nxc__range_t range = {(uintptr_t)t->buf, SIZE};
    nxc__ucx_grant_req_t m = {.magic = NXC__UCX_MAGIC,
                              .md_kind = t->writable ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ,
                              .key_len = (uint16_t)strlen(key),
                              .addr_len = (uint32_t)addr_len,
                              .nranges = 1,
                              .name_len = (uint16_t)strlen(name),
                              .req_id = seed};
    nxt_fill(m.instance, sizeof m.instance, seed);
    memcpy(m.want, t->md.instance, sizeof m.want);
    memcpy(m.secret, secret, sizeof m.secret);
    size_t len = sizeof m + m.key_len + addr_len + m.name_len + sizeof range;
    uint8_t *msg = malloc(len), *w = msg;
    NXT_CHECK(msg);
    memcpy(w, &m, sizeof m), w += sizeof m;
    memcpy(w, key, m.key_len), w += m.key_len;
    memcpy(w, addr, addr_len), w += addr_len;
    memcpy(w, name, m.name_len), w += m.name_len;
    memcpy(w, &range, sizeof range);
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_EAGER | UCP_AM_SEND_FLAG_REPLY};
    int before = r->replies;
    ucs_status_ptr_t q = ucp_am_send_nbx(r->ep, NXC__UCX_AM_GRANT_REQ, NULL, 0, msg, len, &rp);
    NXT_CHECK(!UCS_PTR_IS_ERR(q));
    raw_progress_until(r, q, before + 1, 2000);
    free(msg);
}

static void test_raw_grant_req(void) {
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    target_t t = target_new(owner, false, 0x200);
    const nxc__md_section_t *sec = nxc__md_section(&t.md, "ucx");
    raw_t r;
    raw_open(&r, sec);
    /* bad requester addresses: a version UCX asserts on, truncated, random */
    uint8_t bad_version[512], truncated[512], random_bytes[512];
    size_t alen = sec->conn.len < sizeof bad_version ? sec->conn.len : sizeof bad_version;
    memcpy(bad_version, sec->conn.data, alen);
    bad_version[0] = (uint8_t)((bad_version[0] & 0xf0) | 0x0f);
    memcpy(truncated, sec->conn.data, alen);
    nxt_fill(random_bytes, sizeof random_bytes, 0x201);
    struct {
        const char *what;
        const uint8_t *addr;
        size_t len;
    } addrs[] = {{"address version 15", bad_version, alen},
                 {"address cut in half", truncated, alen / 2},
                 {"address of 3 bytes", truncated, 3},
                 {"empty address", truncated, 0},
                 {"200 random bytes", random_bytes, 200}};
    uint8_t bad_secret[NXC__SECRET_LEN];
    memcpy(bad_secret, t.md.secret, sizeof bad_secret);
    bad_secret[0] ^= 1;
    uint64_t seed = 0x210;
    for (int auth = 0; auth < 3; auth++) {
        const char *key = auth == 1 ? "no-such-key" : t.md.notification_key;
        const uint8_t *secret = auth == 2 ? t.md.secret : bad_secret;
        const char *who = auth == 0   ? "wrong secret"
                          : auth == 1 ? "unknown key"
                                      : "valid key and secret";
        for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
            int before = r.replies;
            raw_grant_req(&r, &t, key, secret, addrs[i].addr, addrs[i].len, seed++);
            bool answered = r.replies > before;
            printf("    GRANT_REQ, %s, %s: %s%s%s%s\n", who, addrs[i].what,
                   answered ? "refused: " : "no answer",
                   answered ? nxc_status_string((nxc_status_t)r.last_status) : "",
                   answered ? ", " : "", answered ? r.last_why : "");
            NXT_CHECK(!answered || r.last_status != NXC_OK);
            /* a stranger gets a refusal on the endpoint its request came on */
            if (auth < 2 && !answered)
                nxt_failf(__FILE__, __LINE__, "%s, %s: no refusal within 2 s", who, addrs[i].what);
            check_intact(&t, addrs[i].what);
        }
    }
    NXT_CHECK(!r.ep_failed);
    raw_close(&r);
    legit_transfer(reader, &t, 0x2ff);
    target_free(&t);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* --- 3. garbage rkeys on the get/put path ------------------------------------------------ */

static void test_garbage_rkeys(void) {
    setenv("NXC_UCX_DATA", "rma", 1);
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(owner, wr, 0x300 + (uint64_t)wr);
        uint8_t key[512];
        const nxc__bytes_t k0 = nxc__md_section(&t.md, "ucx")->keys[0];
        NXT_CHECK(k0.len > 9 && k0.len < 128);
        printf("    %s: packed rkey of %u bytes\n", wr ? "writable" : "readable", k0.len);
        uint8_t orig[128];
        memcpy(orig, k0.data, k0.len);
        uint64_t s = 0x5eed0300 + (uint64_t)wr;
        tally_t tally = {0};
        uint8_t *local = nxt_alloc(SIZE);
        nxc_desc_t d = nxt_desc(local, SIZE);
        enum { N = 220 };
        for (int i = 0; i < N; i++) {
            size_t n;
            if (i == 0) { /* every md bit set */
                memcpy(key, orig, k0.len);
                memset(key, 0xff, 8);
                n = k0.len;
            } else if (i < 8) { /* another memory type */
                memcpy(key, orig, k0.len);
                key[8] = (uint8_t)(i == 1 ? 0xff : i * 31);
                n = k0.len;
            } else if (i < 12) { /* bytes after the key */
                memcpy(key, orig, k0.len);
                memset(key + k0.len, 0xa5, 64);
                n = k0.len + (size_t)(i - 7) * 16;
            } else {
                int kind = i % 3 == 0 ? MUT_TRUNCATE : i % 3 == 1 ? MUT_FLIPS : MUT_RANDOM;
                n = mutate(orig, k0.len, key, sizeof key, kind, &s);
                if (n == 0) n = 1; /* the empty key has its own test */
            }
            forgery_t f = no_change();
            f.key0 = key;
            f.key0_len = (long)n;
            char *text = forge(&t.md, &f);
            nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 3000};
            nxc_op_t *op = NULL;
            nxc_status_t st = wr ? nxc_begin_write(reader, &d, 1, text, 0, &p, &op)
                                 : nxc_begin_read(reader, text, 0, &d, 1, &p, &op);
            free(text);
            if (st != NXC_OK) {
                NXT_CHECK(st < 0 && nxc_last_error()[0]);
                tally.begin_refused++;
                continue;
            }
            st = nxc_op_wait(op, 8000);
            if (st == NXC_INPROGRESS)
                nxt_failf(__FILE__, __LINE__, "rkey mutation %d: op did not end in 8 s", i);
            nxc_op_release(op);
            if (st != NXC_OK) {
                tally.ended[-st < 64 ? -st : 63]++;
                continue;
            }
            /* harmless mutation: the transfer happened; expose afresh */
            tally.complete++;
            if (wr) memcpy(t.snap + GUARD, local, SIZE);
            NXT_CHECK(memcmp(local, t.buf, SIZE) == 0);
            NXT_PASS(nxc_op_wait(t.op, WAIT_MS));
            nxc_op_release(t.op);
            target_expose(&t, owner);
            memcpy(orig, nxc__md_section(&t.md, "ucx")->keys[0].data, k0.len);
        }
        printf("    %d mutated rkeys (md map, memory type, trailing bytes, truncated, "
               "bits flipped, random):\n",
               N);
        tally_print(&tally);
        check_intact(&t, "mutated rkeys");
        legit_transfer(reader, &t, 0x3ff);
        free(local);
        target_free(&t);
    }
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* --- 4. metadata naming a connector that is not there ---------------------------------- */

static void test_unknown_instance(void) {
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(owner, wr, 0x400 + (uint64_t)wr);
        for (int rep = 0; rep < 3; rep++) {
            uint8_t inst[NXC__INSTANCE_LEN];
            nxt_fill(inst, sizeof inst, 0x410 + (uint64_t)rep);
            forgery_t f = no_change();
            f.instance = inst;
            char *text = forge(&t.md, &f);
            uint8_t *local = nxt_alloc(SIZE);
            nxc_desc_t d = nxt_desc(local, SIZE);
            nxc_op_t *op = NULL;
            uint64_t t0 = nxt_now_ms();
            nxc_status_t st = wr ? nxc_begin_write(reader, &d, 1, text, 0, NULL, &op)
                                 : nxc_begin_read(reader, text, 0, &d, 1, NULL, &op);
            if (st == NXC_OK) st = nxc_op_wait(op, 1000);
            uint64_t ms = nxt_now_ms() - t0;
            printf("    %s with another instance in the metadata: %s (%s) after %llu ms\n",
                   wr ? "write" : "read", nxc_status_string(st),
                   op ? nxc_op_message(op) : nxc_last_error(), (unsigned long long)ms);
            if (st == NXC_INPROGRESS)
                nxt_failf(__FILE__, __LINE__, "the op did not end within 1 s (no deadline set)");
            NXT_EQ_INT(st, NXC_ERR_UNREACHABLE);
            nxc_op_release(op);
            free(local);
            free(text);
            check_intact(&t, "unknown instance");
        }
        legit_transfer(reader, &t, 0x4ff);
        target_free(&t);
    }
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* --- 5. destroy while endpoint wire-up is pending ----------------------------------------- */

static pid_t hogs[2];

/* A peer that only burns CPU until it is killed. */
static void hog(int fd, void *arg) {
    (void)fd;
    (void)arg;
    for (volatile unsigned long x = 0;; x++) {
    }
}

static void hogs_start(void) {
    for (int i = 0; i < 2; i++) {
        nxt_chan_t ch;
        nxt_chan_init(&ch);
        hogs[i] = nxt_spawn(&ch, hog, NULL);
        close(nxt_chan_parent(&ch));
    }
}

static void hogs_stop(void) {
    for (int i = 0; i < 2; i++)
        nxt_kill(hogs[i], 10000);
}

enum { READER_ROUNDS = 40, OWNER_ROUNDS = 24 };

/* Phase 1: one owner serves while readers come and go. Phase 2: each round
 * a new owner is destroyed as soon as a reader's request was granted, or a
 * few ms after the reader began: mid wire-up. */
static void churn_owner(int fd, void *arg) {
    static char buf[4096];
    nxc_connector_t *c = ucx_connector("long-lived-owner");
    nxc_op_t *op = nxt_offer(c, fd, NXC_OP_READABLE, buf, sizeof buf);
    free(nxt_recv(fd, NULL, 300000)); /* the readers are done */
    nxc_op_release(op);
    /* still serving: a fresh readable is read */
    op = nxt_offer(c, fd, NXC_OP_READABLE, buf, sizeof buf);
    NXT_PASS(nxc_op_wait(op, 30000));
    nxc_op_release(op);
    nxc_connector_destroy(c);
    for (int i = 0; i < OWNER_ROUNDS; i++) {
        c = ucx_connector("short-lived-owner");
        op = nxt_offer(c, fd, NXC_OP_READABLE, buf, sizeof buf);
        free(nxt_recv(fd, NULL, 60000)); /* the reader has begun */
        /* destroyed as soon as the reader's request was granted, or after a
         * few ms: wire-up with the reader may still be under way */
        uint64_t until = nxt_now_ms() + (uint64_t)(i % 3) * 5;
        while (nxc_op_status(op) == NXC_OP_INITIALIZED && nxt_now_ms() < until)
            usleep(100);
        nxc_op_release(op);
        nxc_connector_destroy(c);
        nxt_send_str(fd, "destroyed");
    }
}

static void test_destroy_during_wireup(void) {
    hogs_start();
    pid_t pid;
    int fd = nxt_spawn_peer(churn_owner, NULL, &pid);
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    uint64_t t0 = nxt_now_ms();
    char *md = nxt_recv(fd, NULL, 60000);
    tally_t tally = {0};
    for (int i = 0; i < READER_ROUNDS; i++) {
        nxc_connector_t *r = ucx_connector("churn-reader");
        nxc_op_t *op = NULL;
        nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 2000};
        NXT_PASS(nxc_begin_read(r, md, 0, &d, 1, &p, &op));
        /* most readers go away at once, mid wire-up */
        if (i % 4 == 3) {
            nxc_status_t st = nxc_op_wait(op, 15000);
            NXT_CHECK(st != NXC_INPROGRESS);
            st == NXC_OK ? tally.complete++ : tally.ended[-st < 64 ? -st : 63]++;
            nxc_op_release(op);
        }
        nxc_connector_destroy(r);
    }
    free(md);
    printf("    %d readers destroyed, %d of them right after begin_read; the others' reads:\n",
           READER_ROUNDS, READER_ROUNDS - READER_ROUNDS / 4);
    tally_print(&tally);
    nxt_send_str(fd, "done");
    md = nxt_recv(fd, NULL, 60000);
    nxc_connector_t *r = ucx_connector("last-reader");
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(r, md, 0, &d, 1, NULL, &op));
    NXT_PASS(nxc_op_wait(op, 30000));
    nxc_op_release(op);
    free(md);
    printf("    the owner survived them all and still serves a reader\n");
    for (int i = 0; i < OWNER_ROUNDS; i++) {
        md = nxt_recv(fd, NULL, 60000);
        nxc_connector_t *r2 = ucx_connector("reader");
        nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 2000};
        NXT_PASS(nxc_begin_read(r2, md, 0, &d, 1, &p, &op));
        nxt_send_str(fd, "begun");
        nxc_status_t st = nxc_op_wait(op, 15000);
        NXT_CHECK(st != NXC_INPROGRESS); /* complete, or the owner went first */
        nxc_op_release(op);
        nxc_connector_destroy(r2);
        free(md);
        free(nxt_recv(fd, NULL, 60000));
    }
    nxc_connector_destroy(r);
    nxt_join(pid, 60000);
    hogs_stop();
    printf("    %d owners destroyed as soon as a read was granted or a few ms after it began: "
           "no abort (%llu ms in all, under CPU load)\n",
           OWNER_ROUNDS, (unsigned long long)(nxt_now_ms() - t0));
}

/* --- 6. an empty ucx key on the get/put path ---------------------------------------------- */

static void test_empty_key(void) {
    setenv("NXC_UCX_DATA", "rma", 1);
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    for (int wr = 0; wr < 2; wr++) {
        target_t t = target_new(owner, wr, 0x600 + (uint64_t)wr);
        forgery_t f = no_change();
        f.key0 = (const uint8_t *)"";
        f.key0_len = 0;
        char *text = forge(&t.md, &f);
        uint8_t *local = nxt_alloc(SIZE);
        nxc_desc_t d = nxt_desc(local, SIZE);
        nxc_op_t *op = NULL;
        nxc_status_t st = wr ? nxc_begin_write(reader, &d, 1, text, 0, NULL, &op)
                             : nxc_begin_read(reader, text, 0, &d, 1, NULL, &op);
        if (st == NXC_OK) {
            nxc_status_t end = nxc_op_wait(op, WAIT_MS);
            nxt_failf(__FILE__, __LINE__,
                      "begin accepted an empty ucx key; the op then ended %s (%s)",
                      nxc_status_string(end), nxc_op_message(op));
        }
        printf("    %s with an empty ucx key: begin -> %s (%s)\n", wr ? "write" : "read",
               nxc_status_string(st), nxc_last_error());
        NXT_EQ_INT(st, NXC_ERR_METADATA_MALFORMED);
        free(text);
        free(local);
        check_intact(&t, "empty key");
        legit_transfer(reader, &t, 0x6ff);
        target_free(&t);
    }
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* --- 7. active messages of ids nxc does not use --------------------------------------- */

static void test_unknown_am_ids(void) {
    nxc_connector_t *owner = ucx_connector("owner");
    nxc_connector_t *reader = ucx_connector("reader");
    target_t t = target_new(owner, false, 0x700);
    raw_t r;
    raw_open(&r, nxc__md_section(&t.md, "ucx"));
    /* 7 and 8 are BYE and BYE_ACK, here malformed (64 bytes): ignored */
    unsigned ids[] = {0, 7, 8, 9, 100, 4096, 32768, 65534, 65535};
    uint8_t junk[64];
    nxt_fill(junk, sizeof junk, 0x701);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                  .flags = UCP_AM_SEND_FLAG_EAGER};
        ucs_status_ptr_t q = ucp_am_send_nbx(r.ep, ids[i], NULL, 0, junk, sizeof junk, &rp);
        NXT_CHECK(!UCS_PTR_IS_ERR(q));
        raw_progress_until(&r, q, 0, 300);
        printf("    active message id %u sent to the owner\n", ids[i]);
        check_intact(&t, "unknown active message id");
    }
    NXT_CHECK(!r.ep_failed);
    raw_close(&r);
    legit_transfer(reader, &t, 0x7ff);
    target_free(&t);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

static const nxt_test_t nxt_tests[] = {
    {"mutated_worker_address", test_mutated_address, 120},
    {"raw_grant_req_bad_address", test_raw_grant_req, 60},
    {"garbage_rkeys", test_garbage_rkeys, 180},
    {"unknown_instance_unreachable", test_unknown_instance, 60},
    {"destroy_during_wireup", test_destroy_during_wireup, 240},
    {"empty_key_fails_at_begin", test_empty_key, 60},
    {"unknown_am_ids", test_unknown_am_ids, 60},
};
NXT_MAIN(nxt_tests)
