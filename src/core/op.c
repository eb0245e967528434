/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ops: the four kinds, their state machine, grants (a peer's permission to
 * touch a passive op's memory), deadlines, cancel and release.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/core.h"
#include "core/device.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sys.h"
#include "util/time.h"

static const char *kind_name(nxc_op_kind_t k) {
    switch (k) {
    case NXC_OP_READABLE: return "readable";
    case NXC_OP_WRITABLE: return "writable";
    case NXC_OP_READ: return "read";
    case NXC_OP_WRITE: return "write";
    }
    return "?";
}

/* --- state ------------------------------------------------------------------ */

bool nxc__op_terminal(const nxc_op_t *op) {
    return op->status == NXC_OP_COMPLETE || op->status == NXC_OP_CANCELLED ||
           op->status == NXC_OP_ERRORED;
}
bool nxc__op_passive(const nxc_op_t *op) {
    return op->kind == NXC_OP_READABLE || op->kind == NXC_OP_WRITABLE;
}

void nxc__op_finish(nxc_op_t *op, nxc_status_t result, const char *fmt, ...) {
    if (nxc__op_terminal(op)) return;
    op->result = result;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->message, sizeof op->message, fmt, ap);
    va_end(ap);
    /* A passive op's transports refuse access before anyone can see it end
     * (and hand its buffers back to their owner). */
    for (size_t i = 0; nxc__op_passive(op) && i < op->c->ntps; i++)
        if (op->exposed[i] && op->c->tps[i]->ops->retire)
            op->c->tps[i]->ops->retire(op->c->tps[i], op, op->exposed[i]);
    if (result != NXC_OK && result != NXC_ERR_CANCELED)
        NXC_LOG_I("connector %s: %s op %s ended: %s (%s)", op->c->name, kind_name(op->kind),
                  op->key, nxc_status_string(result), op->message);
    /* Publish the state last: nxc_op_wait() reads it without the lock. */
    __atomic_store_n(&op->status,
                     result == NXC_OK             ? NXC_OP_COMPLETE
                     : result == NXC_ERR_CANCELED ? NXC_OP_CANCELLED
                                                  : NXC_OP_ERRORED,
                     __ATOMIC_RELEASE);
    nxc__cq_push(op);
    if (op->efd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(op->efd, &one, sizeof one);
        (void)r;
    }
    pthread_cond_broadcast(&op->c->cond);
    pthread_mutex_lock(&op->c->done_lock);
    pthread_cond_broadcast(&op->c->done_cond);
    pthread_mutex_unlock(&op->c->done_lock);
}

/* Status writes are atomic: nxc_op_wait() and nxc_op_status()'s callers
 * may read it without the lock (every write happens under it). */
void nxc__op_progressing(nxc_op_t *op) {
    if (op->status == NXC_OP_INITIALIZED)
        __atomic_store_n(&op->status, NXC_OP_IN_PROGRESS, __ATOMIC_RELEASE);
}

/* The count stays a plain int: every caller holds the connector lock, which
 * is also what the core holds when it reads it (reapable()). */
void nxc__op_io_begin(nxc_op_t *op) {
    op->busy++;
}
void nxc__op_io_end(nxc_op_t *op) {
    /* The last unit may be what a drain waits for (all_stopped() at
     * destroy): wake it now rather than at its next timed poll. */
    if (--op->busy == 0) pthread_cond_broadcast(&op->c->cond);
}
bool nxc__op_io_pending(const nxc_op_t *op) {
    return op->busy > 0;
}

void nxc__op_link(nxc_connector_t *c, nxc_op_t *op) {
    op->prev = NULL;
    op->next = c->ops;
    if (c->ops) c->ops->prev = op;
    c->ops = op;
    if (op->deadline < c->deadline_floor) c->deadline_floor = op->deadline;
}

static void unexpose_all(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    for (size_t i = 0; i < c->ntps; i++) {
        if (op->exposed[i]) c->tps[i]->ops->unexpose(c->tps[i], op, op->exposed[i]);
        op->exposed[i] = NULL;
    }
}

/* --- indexes ---------------------------------------------------------------- */

/* Add `op` to the connector's key index; false when out of memory. */
static bool index_passive(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    nxc_op_t *found = NULL;
    HASH_ADD(by_key, c->passive_by_key, key, strlen(op->key), op);
    HASH_FIND(by_key, c->passive_by_key, op->key, strlen(op->key), found);
    op->indexed = found == op; /* uthash leaves it out if its table failed */
    return op->indexed;
}

static void unindex_passive(nxc_op_t *op) {
    if (!op->indexed) return;
    HASH_DELETE(by_key, op->c->passive_by_key, op);
    op->indexed = false;
}

/* Add `g` to the connector's grant index; false when out of memory. */
static bool index_grant(nxc_connector_t *c, nxc__grant_t *g) {
    nxc__grant_t *found = NULL;
    HASH_ADD(by_id, c->grants_by_id, id, sizeof g->id, g);
    HASH_FIND(by_id, c->grants_by_id, &g->id, sizeof g->id, found);
    return found == g;
}

void nxc__op_free_locked(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    if (op->released) c->released_ops--;
    if (op->prev)
        op->prev->next = op->next;
    else if (c->ops == op)
        c->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    unindex_passive(op);
    while (op->grants) {
        nxc__grant_t *g = op->grants;
        op->grants = g->next;
        HASH_DELETE(by_id, c->grants_by_id, g);
        free(g);
    }
    unexpose_all(op);
    if (op->tp && op->tp_op) op->tp->ops->release(op->tp, op);
    if (op->efd >= 0) close(op->efd);
    nxc__cq_withdraw(op);
    nxc__md_free(&op->md);
    free(op->segs);
    free(op->md_text);
    free(op->local);
    free(op);
}

/* A released op nothing touches any more can go. */
static bool reapable(const nxc_op_t *op) {
    return op->released && op->busy == 0 && (nxc__op_terminal(op) || nxc__op_passive(op));
}

void nxc__reap(nxc_connector_t *c) {
    /* a waiter may still look at a released op; and most passes have
     * nothing to reap: no walk over every op then */
    if (c->destroying || c->released_ops == 0) return;
    for (nxc_op_t *op = c->ops, *next; op; op = next) {
        next = op->next;
        if (reapable(op)) nxc__op_free_locked(op);
    }
}

void nxc__op_mark_released(nxc_op_t *op) {
    if (op->released) return;
    op->released = true;
    unindex_passive(op); /* its key is free for a new op, and peers no longer find it */
    op->c->released_ops++;
    nxc__cq_withdraw(op); /* a released op's entry never comes out */
}

/* --- grants (passive side) ---------------------------------------------------- */

static bool no_grants(const void *arg) {
    const nxc_op_t *op = arg;
    return op->grants == NULL;
}
static bool is_terminal(const void *arg) {
    const nxc_op_t *op = arg;
    return nxc__op_terminal(op);
}

static nxc_op_t *find_passive(nxc_connector_t *c, const char *key) {
    nxc_op_t *op = NULL;
    HASH_FIND(by_key, c->passive_by_key, key, strlen(key), op);
    return op;
}

static nxc__grant_t *find_grant(nxc_connector_t *c, void *peer, uint64_t id) {
    nxc__grant_t *g = NULL;
    HASH_FIND(by_id, c->grants_by_id, &id, sizeof id, g);
    return g && g->peer == peer ? g : NULL;
}

bool nxc__passive_known(nxc_connector_t *c, const char *key, const uint8_t *secret) {
    const nxc_op_t *op = find_passive(c, key);
    return op && sodium_memcmp(op->secret, secret, NXC__SECRET_LEN) == 0;
}

static bool range_inside(const nxc_op_t *op, const nxc__range_t *r) {
    for (size_t i = 0; i < op->nlocal; i++) {
        uint64_t s = (uintptr_t)op->local[i].ptr, e = s + op->local[i].size;
        if (r->len && r->addr >= s && r->addr <= e && r->len <= e - r->addr) return true;
    }
    return false;
}

/* Do `ranges` move exactly part `part` of `nparts` of the op, in order? The
 * op's bytes are its buffers in descriptor order; part i of n is
 * [i*per, min((i+1)*per, total)) with per = ceil(total / n), which is how
 * the active side stripes a transfer (a whole transfer is part 0 of 1). So a
 * peer can only ever be granted the whole op, or one stripe of it, and a
 * completion always means every byte of the op moved. NULL: yes. */
static const char *cover_check(const nxc_op_t *op, const nxc__range_t *ranges, size_t nranges,
                               unsigned part, unsigned nparts) {
    if (nparts == 0 || part >= nparts) return "bad stripe index";
    uint64_t per = op->total / nparts + (op->total % nparts != 0);
    uint64_t from = (uint64_t)part * per;
    if (from >= op->total) return "the stripe lies past the op's end";
    uint64_t left = op->total - from < per ? op->total - from : per;
    size_t d = 0;
    uint64_t off = from; /* into descriptor d */
    while (off >= op->local[d].size)
        off -= op->local[d++].size;
    for (size_t i = 0; i < nranges; i++) {
        const nxc__range_t *r = &ranges[i];
        if (left == 0) return "the ranges go past the op's bytes";
        uint64_t room = op->local[d].size - off;
        if (r->addr != (uintptr_t)op->local[d].ptr + off || r->len == 0 || r->len > room ||
            r->len > left)
            return range_inside(op, r) ? "the ranges are not the op's buffers, whole and in order"
                                       : "a range lies outside the op's buffers";
        left -= r->len;
        off += r->len;
        if (off == op->local[d].size && d + 1 < op->nlocal) {
            d++;
            off = 0;
        }
    }
    return left ? "the ranges cover only part of the op (a transfer must move all of it)" : NULL;
}

nxc_status_t nxc__grant_open_part(nxc_connector_t *c, nxc__tp_t *tp, void *peer, const char *key,
                                  const uint8_t *secret, int md_kind, const nxc__range_t *ranges,
                                  size_t nranges, unsigned part, unsigned nparts,
                                  uint64_t *grant_id_p, char *why, size_t why_len) {
    nxc_op_t *op = find_passive(c, key);
    const char *reason = NULL;
    if (!op || sodium_memcmp(op->secret, secret, NXC__SECRET_LEN) != 0)
        reason = "no live operation with this key (released, or never existed)";
    else if (op->revoked || nxc__op_terminal(op))
        reason = op->status == NXC_OP_COMPLETE     ? "operation already complete"
                 : op->result == NXC_ERR_TIMED_OUT ? "operation expired (deadline passed)"
                 : op->status == NXC_OP_ERRORED    ? "operation ended with an error"
                                                   : "operation released or cancelled";
    else if ((md_kind == NXC__MD_KIND_READ) != (op->kind == NXC_OP_READABLE))
        reason = op->kind == NXC_OP_READABLE ? "operation is readable, not writable"
                                             : "operation is writable, not readable";
    else
        reason = cover_check(op, ranges, nranges, part, nparts);
    if (reason) {
        snprintf(why, why_len, "%s", reason);
        NXC_LOG_I("connector %s: refused access to op %.64s: %s", c->name, key, reason);
        return NXC_ERR_REFUSED;
    }
    nxc__grant_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(why, why_len, "out of memory");
        return NXC_ERR_NO_MEMORY;
    }
    g->id = c->next_grant_id++;
    g->tp = tp;
    g->peer = peer;
    g->op = op;
    if (!index_grant(c, g)) {
        free(g);
        snprintf(why, why_len, "out of memory");
        return NXC_ERR_NO_MEMORY;
    }
    g->next = op->grants;
    op->grants = g;
    nxc__op_progressing(op);
    op->used = tp->ops;
    *grant_id_p = g->id;
    return NXC_OK;
}

nxc_status_t nxc__grant_open(nxc_connector_t *c, nxc__tp_t *tp, void *peer, const char *key,
                             const uint8_t *secret, int md_kind, const nxc__range_t *ranges,
                             size_t nranges, uint64_t *grant_id_p, char *why, size_t why_len) {
    return nxc__grant_open_part(c, tp, peer, key, secret, md_kind, ranges, nranges, 0, 1,
                                grant_id_p, why, why_len);
}

nxc_op_t *nxc__grant_op(nxc_connector_t *c, void *peer, uint64_t id, nxc_op_kind_t kind,
                        uint64_t addr, uint64_t len) {
    nxc__grant_t *g = find_grant(c, peer, id);
    if (!g) return NULL;
    nxc_op_t *op = g->op;
    if (op->kind != kind || op->revoked || nxc__op_terminal(op)) return NULL;
    return range_inside(op, &(nxc__range_t){addr, len}) ? op : NULL;
}

/* Unlink the grant matching (peer, id) or, with id 0, the first held by peer. */
static bool take_grant(nxc_op_t *op, void *peer, uint64_t id) {
    for (nxc__grant_t **pg = &op->grants; *pg; pg = &(*pg)->next) {
        nxc__grant_t *g = *pg;
        if (g->peer == peer && (id == 0 || g->id == id)) {
            *pg = g->next;
            HASH_DELETE(by_id, op->c->grants_by_id, g);
            free(g);
            /* The status stays IN_PROGRESS: it never goes back, and a peer
             * that gave up may have moved part of the bytes. */
            pthread_cond_broadcast(&op->c->cond);
            return true;
        }
    }
    return false;
}

bool nxc__grant_close(nxc_connector_t *c, void *peer, uint64_t id, bool complete) {
    nxc__grant_t *g = find_grant(c, peer, id);
    if (!g) return false;
    nxc_op_t *op = g->op;
    take_grant(op, peer, id);
    if (complete) nxc__op_finish(op, NXC_OK, "%s", "");
    return true;
}

bool nxc__grant_move(nxc_connector_t *c, void *peer, uint64_t id, void *to) {
    nxc__grant_t *g = find_grant(c, peer, id);
    if (g) g->peer = to;
    return g != NULL;
}

bool nxc__complete_direct(nxc_connector_t *c, nxc__tp_t *tp, const char *key, const uint8_t *secret,
                          nxc_op_kind_t kind) {
    nxc_op_t *op = find_passive(c, key);
    if (!op || op->kind != kind || op->revoked || nxc__op_terminal(op) ||
        sodium_memcmp(op->secret, secret, NXC__SECRET_LEN) != 0)
        return false;
    op->used = tp->ops;
    nxc__op_finish(op, NXC_OK, "%s", "");
    return true;
}

void nxc__peer_lost(nxc_connector_t *c, void *peer, const char *why) {
    for (nxc_op_t *op = c->ops; op; op = op->next) {
        if (!nxc__op_passive(op)) continue;
        bool held = false;
        while (take_grant(op, peer, 0))
            held = true;
        /* The peer holding access died or was cut off: the owner hears of it
         * now rather than at its deadline (a lost writer may also have
         * written part of the memory). A peer that gives up cleanly (a
         * cancel) hands its grant back first and never gets here. */
        if (held) nxc__op_finish(op, NXC_ERR_PEER_FAILED, "%s", why);
    }
}

void nxc__passive_revoke(nxc_op_t *op, bool may_block) {
    nxc_connector_t *c = op->c;
    op->revoked = true;
    if (op->grants && may_block)
        nxc__wait_locked(c, no_grants, op, nxc__deadline_after_ms(NXC__DRAIN_MS));
    while (op->grants) {
        nxc__grant_t *g = op->grants;
        NXC_LOG_W("connector %s: op %s revoked while a peer still holds access; cutting it off",
                  c->name, op->key);
        g->tp->ops->drop_peer(g->tp, g->peer); /* reports nxc__peer_lost */
        take_grant(op, g->peer, 0);
    }
    unexpose_all(op);
}

/* --- active side -------------------------------------------------------------- */

void nxc__active_stop(nxc_op_t *op, nxc_status_t why) {
    nxc_connector_t *c = op->c;
    if (nxc__op_terminal(op)) return;
    op->tp->ops->cancel(op->tp, op, why);
    if (nxc__wait_locked(c, is_terminal, op, nxc__deadline_after_ms(NXC__DRAIN_MS))) return;
    NXC_LOG_W("connector %s: %s op did not drain in %d ms; aborting its transfers", c->name,
              kind_name(op->kind), NXC__DRAIN_MS);
    op->tp->ops->force(op->tp, op);
    if (nxc__wait_locked(c, is_terminal, op, nxc__deadline_after_ms(NXC__DRAIN_MS))) return;
    NXC_LOG_E("connector %s: %s op still busy after abort", c->name, kind_name(op->kind));
    nxc__op_finish(op, why, "stopped (transport did not confirm the abort)");
}

/* Every active op has ended, and no peer holds access to a passive op nor
 * is a transport still sending from one (ucx answers a message-path read
 * with sends that outlive the grant): destroy cannot free such an op and
 * would leak it. */
static bool all_stopped(const void *arg) {
    const nxc_connector_t *c = arg;
    for (const nxc_op_t *op = c->ops; op; op = op->next)
        if (nxc__op_passive(op) ? op->grants != NULL || op->busy > 0 : !nxc__op_terminal(op))
            return false;
    return true;
}

void nxc__stop_all(nxc_connector_t *c) {
    /* Every op is told at once, so that the stuck ones drain together. */
    for (nxc_op_t *op = c->ops; op; op = op->next) {
        if (nxc__op_terminal(op)) {
            if (nxc__op_passive(op)) op->revoked = true;
        } else if (nxc__op_passive(op)) {
            nxc__op_finish(op, NXC_ERR_CANCELED, "connector destroyed");
            op->revoked = true;
        } else if (op->tp && !op->released) { /* a released one was stopped already */
            op->tp->ops->cancel(op->tp, op, NXC_ERR_CANCELED);
        }
    }
    uint64_t drain = nxc__deadline_after_ms(NXC__DRAIN_MS);
    if (!nxc__wait_locked(c, all_stopped, c, drain)) {
        NXC_LOG_W("connector %s: transfers did not drain in %d ms; aborting them", c->name,
                  NXC__DRAIN_MS);
        for (nxc_op_t *op = c->ops; op; op = op->next)
            if (!nxc__op_passive(op) && !nxc__op_terminal(op) && op->tp)
                op->tp->ops->force(op->tp, op);
        for (nxc_op_t *op = c->ops; op; op = op->next)
            if (nxc__op_passive(op)) nxc__passive_revoke(op, false); /* cuts holders off */
        nxc__wait_locked(c, all_stopped, c, nxc__deadline_after_ms(NXC__DRAIN_MS));
    }
    for (nxc_op_t *op = c->ops; op; op = op->next) {
        if (!nxc__op_passive(op) && !nxc__op_terminal(op)) {
            NXC_LOG_E("connector %s: %s op still busy after abort", c->name, kind_name(op->kind));
            nxc__op_finish(op, NXC_ERR_CANCELED, "stopped (transport did not confirm the abort)");
        }
        if (nxc__op_passive(op)) nxc__passive_revoke(op, false); /* no grant is left */
        nxc__op_mark_released(op);
    }
}

void nxc__check_deadlines(nxc_connector_t *c) {
    uint64_t now = nxc__now_ns();
    if (now < c->deadline_floor) return; /* nothing can be due yet */
    uint64_t next = UINT64_MAX;
    for (nxc_op_t *op = c->ops; op; op = op->next) {
        if (nxc__op_terminal(op)) continue;
        if (op->deadline > now) {
            if (op->deadline < next) next = op->deadline;
            continue;
        }
        if (nxc__op_passive(op)) {
            op->deadline = UINT64_MAX;
            nxc__op_finish(op, NXC_ERR_TIMED_OUT, "no peer completed the op before its deadline");
            nxc__passive_revoke(op, false);
        } else if (op->tp) {
            /* First expiry: stop it; if it has not drained a while later, abort. */
            bool first = op->result != NXC_ERR_TIMED_OUT;
            op->result = NXC_ERR_TIMED_OUT;
            op->deadline = first ? now + (uint64_t)NXC__DRAIN_MS * 1000000u : UINT64_MAX;
            if (first)
                op->tp->ops->cancel(op->tp, op, NXC_ERR_TIMED_OUT);
            else
                op->tp->ops->force(op->tp, op);
        }
        if (!nxc__op_terminal(op) && op->deadline < next) next = op->deadline;
    }
    c->deadline_floor = next;
}

/* --- creation ----------------------------------------------------------------- */

static bool printable_key(const char *s) {
    size_t n = strnlen(s, NXC_KEY_MAX + 1);
    if (n == 0 || n > NXC_KEY_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return false;
    return true;
}

static nxc_status_t check_op_params(nxc_connector_t *c, const nxc_op_params_t *p, bool passive) {
    uint64_t m = p ? p->field_mask : 0;
    nxc_status_t st = nxc__check_field_mask("op params", m, NXC__OP_FIELDS);
    if (st != NXC_OK) return st;
    if (m & NXC_OP_FIELD_CQ) {
        nxc__lock(c);
        bool ours = p->cq && nxc__cq_of(c, p->cq);
        nxc__unlock(c);
        if (!ours)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "op cq is NULL, destroyed, or belongs to another connector");
    }
    if ((m & NXC_OP_FIELD_TIMEOUT) && p->timeout_ms <= 0)
        return nxc__err(NXC_ERR_INVALID_PARAM, "op timeout_ms must be > 0 (got %d)", p->timeout_ms);
    if (m & NXC_OP_FIELD_NOTIFICATION_KEY) {
        if (!passive)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "notification_key is set by the passive side; active ops take it "
                            "from the metadata");
        if (!p->notification_key || !printable_key(p->notification_key))
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "notification_key must be 1..%d bytes, each a visible ASCII "
                            "character (0x21..0x7e: no space or control character)",
                            NXC_KEY_MAX);
    }
    return NXC_OK;
}

static nxc_op_t *op_new(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                        size_t count, size_t total, const nxc_op_params_t *p) {
    nxc_op_t *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->local = malloc(count * sizeof *descs);
    if (!op->local) {
        free(op);
        return NULL;
    }
    memcpy(op->local, descs, count * sizeof *descs);
    op->c = c;
    op->kind = kind;
    op->nlocal = count;
    op->total = total;
    op->efd = -1;
    op->status = NXC_OP_INITIALIZED;
    op->result = NXC_INPROGRESS;
    uint64_t m = p ? p->field_mask : 0;
    op->deadline = (m & NXC_OP_FIELD_TIMEOUT) ? nxc__deadline_after_ms(p->timeout_ms) : UINT64_MAX;
    if (m & NXC_OP_FIELD_USER_DATA) op->user_data = p->user_data;
    if (m & NXC_OP_FIELD_CQ) op->cq = p->cq;
    return op;
}

static bool device_supported(nxc_connector_t *c, nxc_device_kind_t kind) {
    for (size_t i = 0; i < c->ntps; i++)
        if (c->tps[i]->ops->supports_device(c->tps[i], kind)) return true;
    return false;
}

nxc_status_t nxc__check_device(nxc_connector_t *c, nxc_device_t d, const char *what) {
    if (device_supported(c, d.kind)) return NXC_OK;
    char text[NXC_DEVICE_TEXT_MAX];
    nxc_device_format(d, text, sizeof text);
    return nxc__err(NXC_ERR_NOT_SUPPORTED,
                    "%s memory on %s: no transport of this connector (%s) can move it", what, text,
                    c->transports_text);
}

/* Build and encode the metadata of a passive op (lock held). */
static nxc_status_t passive_metadata(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    nxc__metadata_t md = {0};
    nxc__md_section_t *sec = md.sections;
    nxc_status_t st = NXC_OK;
    md.operation_kind = op->kind == NXC_OP_READABLE ? NXC__MD_KIND_READ : NXC__MD_KIND_WRITE;
    strcpy(md.notification_key, op->key);
    md.version = NXC__BLOB_VERSION;
    strcpy(md.name, c->name);
    strcpy(md.host, c->host);
    memcpy(md.instance, c->instance, sizeof md.instance);
    md.pid = c->pid;
    md.start_time = c->start_time;
    memcpy(md.secret, op->secret, sizeof md.secret);
    md.ndesc = op->nlocal;
    md.descs = calloc(op->nlocal, sizeof *md.descs);
    if (!md.descs) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    for (size_t i = 0; i < op->nlocal; i++)
        md.descs[i] =
            (nxc__rdesc_t){(uintptr_t)op->local[i].ptr, op->local[i].size, op->local[i].device};
    for (size_t i = 0; i < c->ntps && st == NXC_OK; i++) {
        nxc__tp_t *tp = c->tps[i];
        if (!tp->ops->supports_device(tp, op->local[0].device.kind)) continue;
        st = tp->ops->expose(tp, op, &md.sections[md.nsections], &op->exposed[i]);
        if (st == NXC_OK) md.nsections++;
    }
    if (st == NXC_OK) st = nxc__md_encode(&md, &op->md_text, &op->md_len);
    for (sec = md.sections; sec < md.sections + md.nsections; sec++)
        free(sec->keys);
    free(md.descs);
    return st;
}

static nxc_status_t create_passive(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                                   size_t count, const nxc_op_params_t *p, nxc_op_t **op_p) {
    size_t total;
    if (!c || !op_p)
        return nxc__err(NXC_ERR_INVALID_PARAM, "create_%s: NULL connector or out-param",
                        kind_name(kind));
    nxc_status_t st = nxc__descs_check("local", descs, count, &total);
    if (st == NXC_OK) st = check_op_params(c, p, true);
    if (st == NXC_OK) st = nxc__check_device(c, descs[0].device, "local");
    if (st != NXC_OK) return st;

    nxc_op_t *op = op_new(c, kind, descs, count, total, p);
    if (!op) return nxc__err(NXC_ERR_NO_MEMORY, "create_%s: out of memory", kind_name(kind));
    nxc__random(op->secret, sizeof op->secret);
    nxc__lock(c);
    if (p && (p->field_mask & NXC_OP_FIELD_NOTIFICATION_KEY)) {
        strcpy(op->key, p->notification_key);
        if (find_passive(c, op->key))
            st = nxc__err(NXC_ERR_INVALID_STATE,
                          "notification_key \"%s\" is already used by a live op of this "
                          "connector",
                          op->key);
    } else {
        nxc__uuid4(op->key);
    }
    nxc__op_link(c, op);
    if (st == NXC_OK) st = passive_metadata(op);
    if (st == NXC_OK && !index_passive(op))
        st = nxc__err(NXC_ERR_NO_MEMORY, "create_%s: out of memory", kind_name(kind));
    if (st != NXC_OK) {
        nxc__op_free_locked(op);
        nxc__unlock(c);
        return st;
    }
    nxc__unlock(c);
    if (op->deadline != UINT64_MAX) nxc__wake(c); /* re-plan its sleep for the deadline */
    *op_p = op;
    return NXC_OK;
}

static nxc_status_t create_guarded(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                                   size_t count, const nxc_op_params_t *p, nxc_op_t **op_p) {
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    nxc_status_t st = create_passive(c, kind, descs, count, p, op_p);
    nxc__err_guard_end(&g, st != NXC_OK);
    return st;
}

nxc_status_t nxc_create_readable(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                                 const nxc_op_params_t *p, nxc_op_t **op_p) {
    return create_guarded(c, NXC_OP_READABLE, descs, count, p, op_p);
}

nxc_status_t nxc_create_writable(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                                 const nxc_op_params_t *p, nxc_op_t **op_p) {
    return create_guarded(c, NXC_OP_WRITABLE, descs, count, p, op_p);
}

/* Everything about an active op that needs no lock: descriptors, metadata,
 * pairing, devices, sizes, the scatter/gather plan. */
static nxc_status_t prepare_active(nxc_connector_t *c, nxc_op_t *op, const char *text, size_t len) {
    nxc_status_t st = nxc__md_decode(text, len ? len : strlen(text), &op->md);
    if (st != NXC_OK) return st;
    const nxc__metadata_t *md = &op->md;
    if (op->kind == NXC_OP_READ && md->operation_kind != NXC__MD_KIND_READ)
        return nxc__err(NXC_ERR_WRONG_OPERATION,
                        "begin_read needs the metadata of a readable op, but this metadata "
                        "is of a writable op (operation_kind %d): use begin_write",
                        md->operation_kind);
    if (op->kind == NXC_OP_WRITE && md->operation_kind != NXC__MD_KIND_WRITE)
        return nxc__err(NXC_ERR_WRONG_OPERATION,
                        "begin_write needs the metadata of a writable op, but this metadata "
                        "is of a readable op (operation_kind %d): use begin_read",
                        md->operation_kind);
    for (size_t i = 1; i < md->ndesc; i++)
        if (md->descs[i].device.kind != md->descs[0].device.kind ||
            md->descs[i].device.id != md->descs[0].device.id)
            return nxc__err(NXC_ERR_MIXED_DEVICES,
                            "remote descriptor %zu is on another device than remote "
                            "descriptor 0",
                            i);
    st = nxc__check_device(c, op->local[0].device, "local");
    if (st == NXC_OK) st = nxc__check_device(c, md->descs[0].device, "remote");
    if (st != NXC_OK) return st;

    uint64_t *ls = malloc(op->nlocal * sizeof *ls), *rs = malloc(md->ndesc * sizeof *rs);
    if (!ls || !rs) st = nxc__err(NXC_ERR_NO_MEMORY, "begin: out of memory");
    for (size_t i = 0; st == NXC_OK && i < op->nlocal; i++)
        ls[i] = op->local[i].size;
    for (size_t i = 0; st == NXC_OK && i < md->ndesc; i++)
        rs[i] = md->descs[i].size;
    if (st == NXC_OK) st = nxc__sg_plan(ls, op->nlocal, rs, md->ndesc, &op->segs, &op->nsegs);
    free(ls);
    free(rs);
    return st;
}

/* Is `tp` eligible in this pass? A transport that calls itself a fallback
 * (ucx without RDMA hardware) comes after the others, unless the user set
 * the order. */
static bool pass_has(const nxc_connector_t *c, const nxc__tp_t *tp, int pass) {
    bool late = tp->fallback && !c->transports_chosen;
    return pass == (late ? 1 : 0);
}

nxc__tp_t *nxc__pick(nxc_connector_t *c, const nxc__metadata_t *md, nxc_device_kind_t kind,
                     const nxc__md_section_t **sec_p, nxc__pick_note_fn note, void *arg, bool all,
                     nxc_status_t *why_p) {
    nxc__tp_t *chosen = NULL;
    nxc_status_t fail = NXC_ERR_NO_TRANSPORT;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->ntps; i++) {
            nxc__tp_t *tp = c->tps[i];
            if (!pass_has(c, tp, pass)) continue;
            const nxc__md_section_t *sec = nxc__md_section(md, tp->ops->name);
            char why[200] = "not offered by the peer";
            bool ok = false;
            if (sec && !tp->ops->supports_device(tp, kind))
                snprintf(why, sizeof why, "cannot move this device's memory");
            else if (sec) {
                nxc_status_t st = tp->ops->reachable(tp, md, sec, why, sizeof why);
                ok = st == NXC_OK;
                if (st == NXC_ERR_UNREACHABLE) fail = st;
            }
            if (ok && !chosen) {
                chosen = tp;
                *sec_p = sec;
            } else if (ok) {
                snprintf(why, sizeof why, "reachable, but %s comes first", chosen->ops->name);
            }
            if (note) note(arg, tp, ok && chosen == tp, why);
            if (chosen && !all) return chosen;
        }
    if (!chosen && why_p) *why_p = fail;
    return chosen;
}

typedef struct reasons {
    char text[512];
    size_t used;
} reasons_t;

static void add_reason(void *arg, const nxc__tp_t *tp, bool chosen, const char *why) {
    reasons_t *r = arg;
    if (chosen || r->used >= sizeof r->text) return;
    r->used += (size_t)snprintf(r->text + r->used, sizeof r->text - r->used, "%s%s: %s",
                                r->used ? "; " : "", tp->ops->name, why);
}

/* The first transport, in this connector's order, that the peer offers and
 * that can reach it. */
static nxc_status_t pick_transport(nxc_connector_t *c, nxc_op_t *op,
                                   const nxc__md_section_t **sec_p) {
    reasons_t r = {"", 0};
    nxc_status_t fail = NXC_ERR_NO_TRANSPORT;
    op->tp = nxc__pick(c, &op->md, op->local[0].device.kind, sec_p, add_reason, &r, false, &fail);
    if (op->tp) {
        NXC_LOG_D("connector %s: %s op to %s uses %s", c->name, kind_name(op->kind), op->md.name,
                  op->tp->ops->name);
        return NXC_OK;
    }
    if (fail == NXC_ERR_UNREACHABLE)
        return nxc__err(fail, "cannot reach peer \"%s\" (%s)", op->md.name, r.text);
    return nxc__err(NXC_ERR_NO_TRANSPORT, "no transport reaches peer \"%s\" (%s)", op->md.name,
                    r.used ? r.text : "this connector has none");
}

static nxc_status_t begin_active(nxc_connector_t *c, nxc_op_kind_t kind, const char *md_text,
                                 size_t md_len, const nxc_desc_t *local, size_t count,
                                 const nxc_op_params_t *p, nxc_op_t **op_p) {
    size_t total;
    if (!c || !op_p || !md_text)
        return nxc__err(NXC_ERR_INVALID_PARAM, "begin_%s: NULL connector, metadata or out-param",
                        kind_name(kind));
    nxc_status_t st = nxc__descs_check("local", local, count, &total);
    if (st == NXC_OK) st = check_op_params(c, p, false);
    if (st != NXC_OK) return st;
    nxc_op_t *op = op_new(c, kind, local, count, total, p);
    if (!op) return nxc__err(NXC_ERR_NO_MEMORY, "begin_%s: out of memory", kind_name(kind));
    st = prepare_active(c, op, md_text, md_len);
    if (st != NXC_OK) {
        op->c = c;
        nxc__md_free(&op->md);
        free(op->segs);
        free(op->local);
        free(op);
        return st;
    }
    snprintf(op->key, sizeof op->key, "%s", op->md.notification_key);

    nxc__lock(c);
    nxc__op_link(c, op);
    const nxc__md_section_t *sec = NULL;
    st = pick_transport(c, op, &sec);
    if (st == NXC_OK) {
        op->used = op->tp->ops;
        st = op->tp->ops->post(op->tp, op, sec);
    }
    if (st != NXC_OK) {
        nxc__op_free_locked(op);
        nxc__unlock(c);
        return st;
    }
    /* A transfer the transport finished inside post (a direct shm read)
     * leaves the loop nothing to do: no wake-up, no thread hand-off. */
    bool ended = nxc__op_terminal(op);
    nxc__unlock(c);
    if (!ended) nxc__wake(c);
    *op_p = op;
    return NXC_OK;
}

static nxc_status_t begin_guarded(nxc_connector_t *c, nxc_op_kind_t kind, const char *md_text,
                                  size_t md_len, const nxc_desc_t *local, size_t count,
                                  const nxc_op_params_t *p, nxc_op_t **op_p) {
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    nxc_status_t st = begin_active(c, kind, md_text, md_len, local, count, p, op_p);
    nxc__err_guard_end(&g, st != NXC_OK);
    return st;
}

nxc_status_t nxc_begin_read(nxc_connector_t *c, const char *metadata, size_t metadata_len,
                            const nxc_desc_t *local, size_t count, const nxc_op_params_t *p,
                            nxc_op_t **op_p) {
    return begin_guarded(c, NXC_OP_READ, metadata, metadata_len, local, count, p, op_p);
}

nxc_status_t nxc_begin_write(nxc_connector_t *c, const nxc_desc_t *local, size_t count,
                             const char *metadata, size_t metadata_len, const nxc_op_params_t *p,
                             nxc_op_t **op_p) {
    return begin_guarded(c, NXC_OP_WRITE, metadata, metadata_len, local, count, p, op_p);
}

/* --- queries ------------------------------------------------------------------ */

nxc_status_t nxc_op_metadata(nxc_op_t *op, const char **text_p, size_t *len_p) {
    if (!op || !text_p) return nxc__err(NXC_ERR_INVALID_PARAM, "op_metadata: NULL argument");
    if (!nxc__op_passive(op))
        return nxc__err(NXC_ERR_INVALID_STATE,
                        "op_metadata: a %s op has no metadata (only readable/writable ops do)",
                        kind_name(op->kind));
    *text_p = op->md_text;
    if (len_p) *len_p = op->md_len;
    return NXC_OK;
}

nxc_op_status_t nxc_op_status(nxc_op_t *op) {
    if (!op) return NXC_OP_UNINITIALIZED;
    nxc_connector_t *c = op->c;
    /* With a progress thread the state is published by release stores
     * (nxc__op_finish, nxc__op_progressing): read it without the lock, so
     * that polling never queues behind a progress pass moving megabytes. */
    if (c->use_thread) return __atomic_load_n(&op->status, __ATOMIC_ACQUIRE);
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    nxc__lock(c);
    if (!c->use_thread) nxc__progress_locked(c);
    nxc_op_status_t s = op->status;
    nxc__unlock(c);
    nxc__err_guard_end(&g, false);
    return s;
}

nxc_status_t nxc_op_result(nxc_op_t *op) {
    if (!op) return nxc__err(NXC_ERR_INVALID_PARAM, "op_result: NULL op");
    nxc__lock(op->c);
    nxc_status_t r = nxc__op_terminal(op) ? op->result : NXC_INPROGRESS;
    nxc__unlock(op->c);
    return r;
}

const char *nxc_op_message(nxc_op_t *op) {
    /* Copied under the lock: the op may be finishing on another thread. */
    static _Thread_local char copy[sizeof op->message];
    if (!op) return "";
    nxc__lock(op->c);
    memcpy(copy, op->message, sizeof copy);
    nxc__unlock(op->c);
    return copy;
}

/* What nxc_op_wait() waits for: the op's end, or the connector's. */
static bool wait_over(const void *arg) {
    const nxc_op_t *op = arg;
    return nxc__op_terminal(op) || op->c->destroying;
}

static bool ended(const void *arg) {
    return nxc__op_terminal_atomic(arg);
}

nxc_status_t nxc_op_wait(nxc_op_t *op, int timeout_ms) {
    if (!op) return nxc__err(NXC_ERR_INVALID_PARAM, "op_wait: NULL op");
    nxc_connector_t *c = op->c;
    /* Counted before anything else: a concurrent nxc_connector_destroy()
     * frees neither the op nor the connector until this call has left. */
    nxc__waiter_enter(c);
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    uint64_t deadline = nxc__deadline_after_ms(timeout_ms);
    if (c->use_thread) nxc__sleep_until_done(c, ended, op, deadline);
    nxc__lock(c);
    if (!c->use_thread) {
        nxc__progress_locked(c);
        nxc__wait_locked(c, wait_over, op, deadline);
    }
    nxc_status_t r = nxc__op_terminal(op) ? op->result : NXC_INPROGRESS;
    char msg[sizeof op->message];
    strcpy(msg, op->message);
    if (r == NXC_INPROGRESS && c->destroying) {
        r = NXC_ERR_CANCELED;
        snprintf(msg, sizeof msg, "connector destroyed while waiting");
    }
    nxc__unlock(c);
    nxc__waiter_leave(c);
    nxc__err_guard_end(&g, false);
    if (r == NXC_INPROGRESS) /* the one success that writes it: see nxc_last_error() */
        nxc__err(r, "op_wait: the op is still in progress after %d ms (not an error; wait again)",
                 timeout_ms);
    else if (r != NXC_OK)
        nxc__err(r, "%s", msg);
    return r;
}

int nxc_op_fd(nxc_op_t *op) {
    if (!op) {
        nxc__err(NXC_ERR_INVALID_PARAM, "op_fd: NULL op");
        return -1;
    }
    nxc__lock(op->c);
    if (op->efd < 0) {
        op->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (op->efd < 0) {
            nxc__err(NXC_ERR_SYSTEM, "op_fd: eventfd: %s", strerror(errno));
        } else if (nxc__op_terminal(op)) {
            uint64_t one = 1;
            ssize_t r = write(op->efd, &one, sizeof one);
            (void)r;
        }
    }
    int fd = op->efd;
    nxc__unlock(op->c);
    return fd;
}

/* Stop a live op (lock held). */
static void stop_locked(nxc_op_t *op, const char *why) {
    if (nxc__op_passive(op)) {
        nxc__op_finish(op, NXC_ERR_CANCELED, "%s", why);
        nxc__passive_revoke(op, true);
    } else {
        nxc__active_stop(op, NXC_ERR_CANCELED); /* the transport words the message */
    }
}

nxc_status_t nxc_op_cancel(nxc_op_t *op) {
    if (!op) return nxc__err(NXC_ERR_INVALID_PARAM, "op_cancel: NULL op");
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    nxc__lock(op->c);
    if (!nxc__op_terminal(op)) stop_locked(op, "cancelled by the application");
    nxc__unlock(op->c);
    nxc__err_guard_end(&g, false);
    return NXC_OK;
}

void nxc_op_release(nxc_op_t *op) {
    if (!op) return;
    nxc_connector_t *c = op->c;
    nxc__err_guard_t g;
    nxc__err_guard_begin(&g);
    nxc__lock(c);
    if (!nxc__op_terminal(op))
        stop_locked(op, "released by the application");
    else if (nxc__op_passive(op))
        nxc__passive_revoke(op, true);
    nxc__op_mark_released(op);
    if (reapable(op) && !c->destroying) nxc__op_free_locked(op); /* else the loop reaps it */
    nxc__unlock(c);
    nxc__err_guard_end(&g, false);
}

nxc_op_kind_t nxc_op_kind(const nxc_op_t *op) {
    return op ? op->kind : (nxc_op_kind_t)0;
}
size_t nxc_op_size(const nxc_op_t *op) {
    return op ? op->total : 0;
}
const char *nxc_op_notification_key(const nxc_op_t *op) {
    return op ? op->key : "";
}
void *nxc_op_user_data(const nxc_op_t *op) {
    return op ? op->user_data : NULL;
}

const char *nxc_op_transport(nxc_op_t *op) {
    if (!op) return NULL;
    nxc__lock(op->c);
    const char *name = op->used ? op->used->name : NULL;
    nxc__unlock(op->c);
    return name;
}
