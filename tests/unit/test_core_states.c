/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core's state machine, step by step, over the fake transport
 * (tests/harness/fake_transport.h): grants and their checks, deadlines,
 * cancel and drain ordering, revocation and destroy ordering. Both sides
 * live in this process with their progress threads off; each case moves
 * one side at a time and checks the states and the order of the calls the
 * core made. No socket and no sleep: time passes with nxc__clock_skip(),
 * so a 2 s drain costs nothing.
 */
#include "core/connector.h"
#include "core/op.h"
#include "fake_transport.h"
#include "nxt.h"
#include "transport/transport.h"
#include "util/time.h"

#define MS UINT64_C(1000000) /* ns */
#define DRAIN_NS ((uint64_t)NXC__DRAIN_MS * MS)

static nxc_op_params_t with_timeout(int ms) {
    return (nxc_op_params_t){.field_mask = ms ? NXC_OP_FIELD_TIMEOUT : 0, .timeout_ms = ms};
}

static nxc_op_t *passive(nxc_connector_t *c, nxc_op_kind_t kind, void *buf, size_t len,
                         int timeout_ms) {
    nxc_desc_t d = nxt_desc(buf, len);
    nxc_op_params_t params = with_timeout(timeout_ms);
    nxc_op_t *op = NULL;
    if (kind == NXC_OP_READABLE)
        NXT_PASS(nxc_create_readable(c, &d, 1, &params, &op));
    else
        NXT_PASS(nxc_create_writable(c, &d, 1, &params, &op));
    return op;
}

/* The active op that matches `peer_op` (a read of a readable, a write of a
 * writable), moving `len` bytes at `buf`. */
static nxc_op_t *active(nxc_connector_t *c, nxc_op_t *peer_op, void *buf, size_t len,
                        int timeout_ms) {
    const char *md;
    NXT_PASS(nxc_op_metadata(peer_op, &md, NULL));
    nxc_desc_t d = nxt_desc(buf, len);
    nxc_op_params_t params = with_timeout(timeout_ms);
    nxc_op_t *op = NULL;
    if (nxc_op_kind(peer_op) == NXC_OP_READABLE)
        NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, &params, &op));
    else
        NXT_PASS(nxc_begin_write(c, &d, 1, md, 0, &params, &op));
    return op;
}

/* What most cases start from: an owner ("own") with a readable or
 * writable of 512 bytes, and an initiator ("rdr"). A field set to NULL is
 * gone (released, destroyed); scene_end() ends the rest. */
typedef struct scene {
    nxc_connector_t *own, *rdr;
    fake_t *fown, *frdr;
    char src[512], dst[512]; /* the owner's memory is src for a read, dst for a write */
    nxc_op_t *own_op, *rd;
} scene_t;

static void scene_start(scene_t *s, nxc_op_kind_t kind, int timeout_ms) {
    memset(s, 0, sizeof *s);
    s->own = fake_connector("own");
    s->rdr = fake_connector("rdr");
    s->fown = fake_of(s->own);
    s->frdr = fake_of(s->rdr);
    nxt_fill(s->src, sizeof s->src, 3);
    char *mine = kind == NXC_OP_READABLE ? s->src : s->dst;
    s->own_op = passive(s->own, kind, mine, sizeof s->src, timeout_ms);
}

static void scene_end(scene_t *s) {
    nxc_op_release(s->rd);
    nxc_op_release(s->own_op);
    nxc_connector_destroy(s->rdr);
    nxc_connector_destroy(s->own);
    /* No passive op ever became visible as ended before its transport heard. */
    NXT_CHECK(!strstr(fake_log(), "retire_late"));
}

/* The state as it stands: read, not nxc_op_status(), which would drive a
 * pass (the progress thread is off) and so take a step of its own. */
#define NXT_STATE(op, want) NXT_EQ_INT(__atomic_load_n(&(op)->status, __ATOMIC_ACQUIRE), want)
#define NXT_RESULT(op, want) NXT_EQ_INT(nxc_op_result(op), want)
#define NXT_LOG(...) fake_expect_log(__FILE__, __LINE__, __VA_ARGS__, NULL)

/* `op` has ended with `result` (and the state that goes with it). */
#define NXT_ENDED(op, result)                                                                      \
    do {                                                                                           \
        NXT_STATE(op, (result) == NXC_OK             ? NXC_OP_COMPLETE                             \
                      : (result) == NXC_ERR_CANCELED ? NXC_OP_CANCELLED                            \
                                                     : NXC_OP_ERRORED);                            \
        NXT_RESULT(op, result);                                                                    \
    } while (0)

/* The initiator's op on the scene's passive op, with its own timeout. */
static void scene_begin(scene_t *s, int timeout_ms) {
    char *mine = nxc_op_kind(s->own_op) == NXC_OP_READABLE ? s->dst : s->src;
    s->rd = active(s->rdr, s->own_op, mine, sizeof s->dst, timeout_ms);
}

/* The reader holds a grant on the owner's op and has not moved a byte (it
 * stalls). */
static void scene_hold_grant(scene_t *s) {
    scene_begin(s, 0);
    fake_stall(s->frdr, true);
    fake_pass(1, s->own, s->rdr, NULL); /* REQ -> GRANT -> held */
    NXT_STATE(s->own_op, NXC_OP_IN_PROGRESS);
    NXT_STATE(s->rd, NXC_OP_IN_PROGRESS);
}

/* --- whole transfers, one step at a time -------------------------------------- */

static void test_read_step_by_step(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_begin(&s, 0);
    NXT_STATE(s.rd, NXC_OP_INITIALIZED);
    NXT_STATE(s.own_op, NXC_OP_INITIALIZED);

    fake_pass(1, s.own, NULL); /* the owner grants */
    NXT_STATE(s.own_op, NXC_OP_IN_PROGRESS);
    NXT_STATE(s.rd, NXC_OP_INITIALIZED); /* the reader has not heard yet */
    fake_pass(1, s.rdr, NULL);           /* copies, ends, tells the owner */
    NXT_ENDED(s.rd, NXC_OK);
    NXT_CHECK(nxt_verify(s.dst, sizeof s.dst, 3) == SIZE_MAX);
    NXT_STATE(s.own_op, NXC_OP_IN_PROGRESS); /* DONE still in its inbox */
    fake_pass(1, s.own, NULL);
    NXT_ENDED(s.own_op, NXC_OK);
    NXT_EQ_STR(nxc_op_transport(s.own_op), "fake");
    NXT_LOG("own.expose", "rdr.post", "own.grant", "rdr.granted", "rdr.copied", "own.retire",
            "own.done");
    scene_end(&s);
    NXT_LOG("own.done", "rdr.release", "own.unexpose", "rdr.destroy", "own.destroy");
}

static void test_write_step_by_step(void) {
    scene_t s;
    scene_start(&s, NXC_OP_WRITABLE, 0);
    scene_begin(&s, 0);
    fake_pass(1, s.own, s.rdr, NULL);
    NXT_ENDED(s.rd, NXC_OK);
    NXT_STATE(s.own_op, NXC_OP_IN_PROGRESS);
    fake_pass(1, s.own, NULL);
    NXT_ENDED(s.own_op, NXC_OK);
    NXT_CHECK(nxt_verify(s.dst, sizeof s.dst, 3) == SIZE_MAX);
    scene_end(&s);
}

/* --- the grant checks, called as a transport calls them -------------------------- */

typedef struct grant_try {
    nxc_connector_t *c;
    const char *key;
    const uint8_t *secret;
    char why[200];
} grant_try_t;

static nxc_status_t try_grant(grant_try_t *t, void *peer, int md_kind, const nxc__range_t *ranges,
                              size_t n, unsigned part, unsigned nparts, uint64_t *id) {
    nxc__lock(t->c);
    nxc_status_t st = nxc__grant_open_part(t->c, t->c->tps[0], peer, t->key, t->secret, md_kind,
                                           ranges, n, part, nparts, id, t->why, sizeof t->why);
    nxc__unlock(t->c);
    return st;
}

#define REFUSED_FOR(st, t, text)                                                                   \
    do {                                                                                           \
        NXT_EQ_INT(st, NXC_ERR_REFUSED);                                                           \
        if (!strstr((t).why, text))                                                                \
            nxt_failf(__FILE__, __LINE__, "refused for \"%s\", expected \"%s\"", (t).why, text);   \
    } while (0)

static void test_grant_checks(void) {
    nxc_connector_t *c = fake_connector("own");
    static char pool[3 * 1024];
    char *a = pool, *b = pool + 1024, *far = pool + 2048 + 512; /* a, b adjacent; far apart */
    nxc_desc_t d[3] = {nxt_desc(a, 1024), nxt_desc(b, 1024), nxt_desc(far, 512)};
    nxc_op_t *op = NULL;
    NXT_PASS(nxc_create_readable(c, d, 3, NULL, &op));
    grant_try_t t = {c, nxc_op_notification_key(op), op->secret, ""};
    uint8_t wrong[NXC__SECRET_LEN];
    memcpy(wrong, op->secret, sizeof wrong);
    wrong[5] ^= 1;
    int peer1, peer2;
    uint64_t id = 0, id2 = 0;
    const uint64_t A = (uintptr_t)a, B = (uintptr_t)b, F = (uintptr_t)far;
    nxc__range_t whole[3] = {{A, 1024}, {B, 1024}, {F, 512}};
    nxc__range_t merged[2] = {{A, 2048}, {F, 512}};       /* adjacent a+b as one range */
    nxc__range_t over_gap[2] = {{A, 2048}, {F - 1, 513}}; /* starts in the gap */
    nxc__range_t short_[2] = {{A, 2048}, {F, 511}};
    nxc__range_t shuffled[3] = {{B, 1024}, {A, 1024}, {F, 512}};

    grant_try_t bad = t;
    bad.secret = wrong;
    REFUSED_FOR(try_grant(&bad, &peer1, NXC__MD_KIND_READ, whole, 3, 0, 1, &id), bad,
                "no live operation");
    bad = t;
    bad.key = "no-such-key";
    REFUSED_FOR(try_grant(&bad, &peer1, NXC__MD_KIND_READ, whole, 3, 0, 1, &id), bad,
                "no live operation");
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_WRITE, whole, 3, 0, 1, &id), t,
                "readable, not writable");
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, over_gap, 2, 0, 1, &id), t,
                "outside the op's buffers");
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, short_, 2, 0, 1, &id), t, "only part");
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, shuffled, 3, 0, 1, &id), t,
                "whole and in order");
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, whole, 3, 2, 2, &id), t,
                "bad stripe index");
    NXT_STATE(op, NXC_OP_INITIALIZED); /* refusals change nothing */

    /* Half of 2560 bytes is 1280: a's 1024 and b's first 256, then the rest. */
    nxc__range_t half0[2] = {{A, 1024}, {B, 256}}, half1[2] = {{B + 256, 768}, {F, 512}};
    NXT_PASS(try_grant(&t, &peer1, NXC__MD_KIND_READ, half0, 2, 0, 2, &id));
    NXT_PASS(try_grant(&t, &peer2, NXC__MD_KIND_READ, half1, 2, 1, 2, &id2));
    NXT_STATE(op, NXC_OP_IN_PROGRESS);

    nxc__lock(c);
    /* A grant is found only by its holder, and only for ranges inside the op. */
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, A, 16) == op);
    NXT_CHECK(nxc__grant_op(c, &peer2, id, NXC_OP_READABLE, A, 16) == NULL);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_WRITABLE, A, 16) == NULL);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, F + 500, 16) == NULL);
    /* a range may run from a into b, which starts where a ends, in either
     * order of checking; never across the gap to far, nor past far's end */
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, F, 512) == op);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, A + 1000, 1048) == op);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, A, 2048) == op);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, A, 2049) == NULL);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, B + 1000, 48) == NULL);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, F + 256, 257) == NULL);
    NXT_CHECK(nxc__grant_op(c, &peer1, id, NXC_OP_READABLE, A, 0) == NULL);
    NXT_CHECK(!nxc__grant_close(c, &peer2, id, true)); /* not its grant: ignored */
    NXT_CHECK(nxc__grant_move(c, &peer1, id, &peer2)); /* stripe 0 handed to peer2 */
    NXT_CHECK(!nxc__grant_close(c, &peer1, id, true));
    NXT_CHECK(nxc__grant_close(c, &peer2, id, false)); /* gave up: the op goes on */
    NXT_EQ_INT(op->status, NXC_OP_IN_PROGRESS);
    NXT_CHECK(nxc__grant_close(c, &peer2, id2, true));
    NXT_EQ_INT(op->status, NXC_OP_COMPLETE);
    nxc__unlock(c);
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, merged, 2, 0, 1, &id), t,
                "already complete");
    nxc_op_release(op);

    /* Adjacent buffers as one range: granted; and a released op is gone. */
    NXT_PASS(nxc_create_readable(c, d, 3, NULL, &op));
    t.key = nxc_op_notification_key(op);
    t.secret = op->secret;
    NXT_PASS(try_grant(&t, &peer1, NXC__MD_KIND_READ, merged, 2, 0, 1, &id));
    nxc__lock(c);
    NXT_CHECK(nxc__grant_close(c, &peer1, id, true));
    nxc__unlock(c);
    char key[NXC_KEY_MAX + 1];
    uint8_t secret[NXC__SECRET_LEN];
    strcpy(key, t.key);
    memcpy(secret, t.secret, sizeof secret);
    nxc_op_release(op);
    t.key = key;
    t.secret = secret;
    REFUSED_FOR(try_grant(&t, &peer1, NXC__MD_KIND_READ, merged, 2, 0, 1, &id), t,
                "no live operation");
    NXT_CHECK(!strstr(fake_log(), "drop_peer")); /* every grant was closed cleanly */
    nxc_connector_destroy(c);
}

static void test_peer_lost_fails_what_it_held(void) {
    nxc_connector_t *c = fake_connector("own");
    char buf1[64], buf2[64];
    nxc_op_t *held = passive(c, NXC_OP_READABLE, buf1, sizeof buf1, 0);
    nxc_op_t *other = passive(c, NXC_OP_WRITABLE, buf2, sizeof buf2, 0);
    grant_try_t t = {c, nxc_op_notification_key(held), held->secret, ""};
    int peer, bystander;
    uint64_t id;
    nxc__range_t r = {(uintptr_t)buf1, sizeof buf1};
    NXT_PASS(try_grant(&t, &peer, NXC__MD_KIND_READ, &r, 1, 0, 1, &id));
    nxc__lock(c);
    nxc__peer_lost(c, &bystander, "not a holder");
    NXT_EQ_INT(held->status, NXC_OP_IN_PROGRESS);
    nxc__peer_lost(c, &peer, "gone");
    nxc__unlock(c);
    NXT_STATE(held, NXC_OP_ERRORED);
    NXT_RESULT(held, NXC_ERR_PEER_FAILED);
    NXT_EQ_STR(nxc_op_message(held), "gone");
    NXT_STATE(other, NXC_OP_INITIALIZED);
    nxc_op_release(held);
    nxc_op_release(other);
    nxc_connector_destroy(c);
}

/* --- deadlines -------------------------------------------------------------------- */

/* Clock skips leave a second of slack for the real time a case takes. */
static void test_passive_deadline(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 60000);
    nxc__clock_skip(59000 * MS);
    fake_pass(1, s.own, NULL);
    NXT_STATE(s.own_op, NXC_OP_INITIALIZED);
    int due_ms = nxc_connector_timeout(s.own); /* the loop would sleep that long */
    if (due_ms <= 0 || due_ms > 1000) nxt_failf(__FILE__, __LINE__, "due in %d ms", due_ms);
    nxc__clock_skip(1001 * MS);
    fake_pass(1, s.own, NULL);
    NXT_ENDED(s.own_op, NXC_ERR_TIMED_OUT);
    NXT_LOG("own.retire");

    scene_begin(&s, 0); /* too late */
    fake_pass(1, s.own, s.rdr, NULL);
    NXT_ENDED(s.rd, NXC_ERR_REFUSED);
    NXT_CHECK(strstr(nxc_op_message(s.rd), "expired"));
    scene_end(&s);
}

/* An active op past its deadline is stopped (cancel); when it has not
 * drained NXC__DRAIN_MS later, its transfers are aborted. */
static void test_active_deadline_cancels_then_aborts(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    fake_hold(s.fown, true); /* the owner never answers */
    scene_begin(&s, 1000);
    nxc__clock_skip(1000 * MS);
    fake_pass(1, s.rdr, NULL);
    NXT_LOG("rdr.post", "rdr.cancel");
    NXT_STATE(s.rd, NXC_OP_INITIALIZED); /* its request is still out */
    nxc__clock_skip(DRAIN_NS - 500 * MS);
    fake_pass(1, s.rdr, NULL);
    NXT_CHECK(!strstr(fake_log(), "abort_io"));
    nxc__clock_skip(500 * MS);
    fake_pass(1, s.rdr, NULL);
    NXT_LOG("rdr.cancel", "rdr.abort_io");
    NXT_ENDED(s.rd, NXC_ERR_TIMED_OUT);

    /* The owner then takes the request and the cut in that order: it grants,
     * and loses the holder. */
    fake_hold(s.fown, false);
    fake_pass(1, s.own, NULL);
    NXT_LOG("own.grant", "own.cut");
    NXT_ENDED(s.own_op, NXC_ERR_PEER_FAILED);
    scene_end(&s);
}

/* --- cancel and drain ---------------------------------------------------------------- */

static void test_cancel_returns_the_grant(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_stall(s.frdr, false);
    NXT_PASS(nxc_op_cancel(s.rd)); /* granted: hands the grant back at once */
    NXT_ENDED(s.rd, NXC_ERR_CANCELED);
    fake_pass(1, s.own, NULL);
    NXT_LOG("rdr.cancel", "rdr.give_back", "own.returned");
    NXT_STATE(s.own_op, NXC_OP_IN_PROGRESS); /* not failed: the reader gave up cleanly */
    NXT_CHECK(!strstr(fake_log(), "drop_peer"));

    nxc_op_release(s.rd); /* the same metadata, again: the owner still serves it */
    scene_begin(&s, 0);
    fake_pass(2, s.own, s.rdr, NULL);
    NXT_ENDED(s.rd, NXC_OK);
    NXT_ENDED(s.own_op, NXC_OK);
    NXT_CHECK(nxt_verify(s.dst, sizeof s.dst, 3) == SIZE_MAX);
    scene_end(&s);
}

/* A cancel whose transfer does not stop: the drain bound, then abort_io,
 * which cuts the owner's connection (the owner sees a lost peer). */
static void test_cancel_stuck_then_abort(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_idle_skip(s.frdr, 100 * MS);
    NXT_PASS(nxc_op_cancel(s.rd));
    NXT_ENDED(s.rd, NXC_ERR_CANCELED);
    NXT_LOG("rdr.cancel", "rdr.abort_io");
    fake_pass(1, s.own, NULL);
    NXT_LOG("rdr.abort_io", "own.cut");
    NXT_ENDED(s.own_op, NXC_ERR_PEER_FAILED);
    scene_end(&s);
}

/* A transport that confirms neither the cancel nor the abort: the op ends
 * anyway (its caller gets an answer), but a released op is freed only once
 * nothing is in flight, since the transport may still touch its buffers. */
static void test_unconfirmed_abort_keeps_op_until_io_ends(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_deaf(s.frdr, true);
    fake_idle_skip(s.frdr, 100 * MS);
    NXT_PASS(nxc_op_cancel(s.rd));
    NXT_ENDED(s.rd, NXC_ERR_CANCELED);
    NXT_CHECK(strstr(nxc_op_message(s.rd), "did not confirm the abort"));
    NXT_LOG("rdr.cancel", "rdr.abort_ignored");
    nxc_op_release(s.rd);
    s.rd = NULL;
    fake_pass(3, s.rdr, NULL);
    NXT_CHECK(!strstr(fake_log(), "rdr.release")); /* still in flight: kept */

    fake_idle_skip(s.frdr, 0);
    fake_stall(s.frdr, false); /* the transfer stops at last */
    fake_pass(1, s.rdr, NULL);
    NXT_LOG("rdr.abort_ignored", "rdr.give_back", "rdr.release");
    fake_pass(1, s.own, NULL);
    NXT_LOG("own.returned");
    NXT_STATE(s.own_op, NXC_OP_IN_PROGRESS);
    scene_end(&s);
}

/* --- revocation and destroy ------------------------------------------------------------ */

/* The owner releases memory a reader still holds: it waits for the drain
 * bound, then cuts the holder off before its transport forgets the op. */
static void test_release_cuts_a_stuck_holder(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_idle_skip(s.fown, 100 * MS);
    uint64_t before = nxc__now_ns();
    nxc_op_release(s.own_op);
    s.own_op = NULL;
    NXT_CHECK(nxc__now_ns() - before >= DRAIN_NS); /* it waited the whole bound */
    NXT_LOG("own.retire", "own.drop_peer", "own.unexpose");
    fake_pass(1, s.rdr, NULL);
    NXT_ENDED(s.rd, NXC_ERR_PEER_FAILED);
    scene_end(&s);
}

/* A holder that returns its grant within the bound is not cut off. */
static void test_release_waits_for_a_holder(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_stall(s.frdr, false);
    NXT_PASS(nxc_op_cancel(s.rd)); /* DONE(returned) is in the owner's inbox */
    nxc_op_release(s.own_op);      /* its drain takes it */
    s.own_op = NULL;
    NXT_LOG("rdr.give_back", "own.retire", "own.returned", "own.unexpose");
    NXT_CHECK(!strstr(fake_log(), "drop_peer"));
    scene_end(&s);
}

/* Access without a grant (shm's direct writes) holds a release back like a
 * grant does: until it ends, or for the drain bound. */
static void test_release_waits_for_direct_access(void) {
    scene_t s;
    scene_start(&s, NXC_OP_WRITABLE, 0);
    fake_direct(s.fown, 3);
    uint64_t before = nxc__now_ns();
    nxc_op_release(s.own_op);
    s.own_op = NULL;
    NXT_LOG("own.retire", "own.direct_end", "own.unexpose");
    NXT_CHECK(nxc__now_ns() - before < DRAIN_NS); /* ended within the bound */

    nxc_op_t *op = passive(s.own, NXC_OP_WRITABLE, s.dst, sizeof s.dst, 0);
    fake_log_clear();
    fake_direct(s.fown, -1); /* never ends */
    fake_idle_skip(s.fown, 100 * MS);
    before = nxc__now_ns();
    nxc_op_release(op);
    NXT_CHECK(nxc__now_ns() - before >= DRAIN_NS);
    NXT_LOG("own.retire", "own.unexpose"); /* after the bound, with a warning */
    fake_direct(s.fown, 0);
    scene_end(&s);
}

/* Destroying the initiator: its ops are cancelled, drained up to the bound,
 * aborted, released; only then does the transport go. */
static void test_destroy_initiator_order(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    scene_hold_grant(&s);
    fake_idle_skip(s.frdr, 100 * MS);
    nxc_connector_destroy(s.rdr);
    s.rdr = NULL;
    s.rd = NULL;
    NXT_LOG("rdr.cancel", "rdr.abort_io", "rdr.release", "rdr.destroy");
    fake_pass(1, s.own, NULL);
    NXT_LOG("rdr.destroy", "own.cut");
    NXT_ENDED(s.own_op, NXC_ERR_PEER_FAILED);
    scene_end(&s);
}

/* Destroying the owner: its ops end CANCELLED first (nothing new is
 * granted), holders get the drain bound, then are cut off, and the ops'
 * exposure goes before the transport. */
static void test_destroy_owner_order(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    char other[64];
    passive(s.own, NXC_OP_WRITABLE, other, sizeof other, 0); /* left for destroy to release */
    scene_hold_grant(&s);
    fake_idle_skip(s.fown, 100 * MS);
    nxc_connector_destroy(s.own);
    s.own = NULL;
    s.own_op = NULL;
    NXT_LOG("own.retire", "own.drop_peer", "own.unexpose", "own.destroy");
    fake_pass(1, s.rdr, NULL);
    NXT_ENDED(s.rd, NXC_ERR_PEER_FAILED);
    scene_end(&s);
}

/* A wait with a timeout ends on nxc's clock: nothing happens, and the wait
 * times out without sleeping. */
static void test_wait_times_out_on_the_clock(void) {
    scene_t s;
    scene_start(&s, NXC_OP_READABLE, 0);
    fake_hold(s.fown, true);
    scene_begin(&s, 0);
    fake_idle_skip(s.frdr, 50 * MS);
    uint64_t before = nxc__now_ns();
    NXT_FAIL(nxc_op_wait(s.rd, 1000), NXC_INPROGRESS);
    NXT_CHECK(nxc__now_ns() - before >= 1000 * MS);
    NXT_STATE(s.rd, NXC_OP_INITIALIZED);
    fake_idle_skip(s.frdr, 0);
    fake_hold(s.fown, false);
    fake_pass(2, s.own, s.rdr, NULL);
    NXT_PASS(nxc_op_wait(s.rd, 0));
    scene_end(&s);
}

static const nxt_test_t nxt_tests[] = {
    {"read_step_by_step", test_read_step_by_step, 0},
    {"write_step_by_step", test_write_step_by_step, 0},
    {"grant_checks", test_grant_checks, 0},
    {"peer_lost_fails_what_it_held", test_peer_lost_fails_what_it_held, 0},
    {"passive_deadline", test_passive_deadline, 0},
    {"active_deadline_cancels_then_aborts", test_active_deadline_cancels_then_aborts, 0},
    {"cancel_returns_the_grant", test_cancel_returns_the_grant, 0},
    {"cancel_stuck_then_abort", test_cancel_stuck_then_abort, 0},
    {"unconfirmed_abort_keeps_op_until_io_ends", test_unconfirmed_abort_keeps_op_until_io_ends, 0},
    {"release_cuts_a_stuck_holder", test_release_cuts_a_stuck_holder, 0},
    {"release_waits_for_a_holder", test_release_waits_for_a_holder, 0},
    {"release_waits_for_direct_access", test_release_waits_for_direct_access, 0},
    {"destroy_initiator_order", test_destroy_initiator_order, 0},
    {"destroy_owner_order", test_destroy_owner_order, 0},
    {"wait_times_out_on_the_clock", test_wait_times_out_on_the_clock, 0},
};
NXT_MAIN(nxt_tests)
