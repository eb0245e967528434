/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An op's own state: what it is, how it ends (nxc__op_finish, the one place
 * a status turns terminal), how it starts to move, what a transport has in
 * flight on it, and the accessors through which transports read it. The
 * bottom of the op modules: grant.c and op.c call it, it calls neither.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/cq.h"
#include "core/op.h"
#include "util/eventfd.h"
#include "util/log.h"
#include "util/text.h"

const char *nxc__op_kind_name(nxc_op_kind_t kind) {
    switch (kind) {
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
    if (strcmp(fmt, "%s") == 0) { /* most ends, and every success ("%s", "") */
        const char *text = va_arg(ap, const char *);
        nxc__str_copy(op->message, sizeof op->message, text ? text : "(null)");
    } else {
        vsnprintf(op->message, sizeof op->message, fmt, ap);
    }
    va_end(ap);
    /* A passive op's transports refuse access before anyone can see it end
     * (and hand its buffers back to their owner). */
    for (size_t i = 0; nxc__op_passive(op) && i < op->c->ntps; i++)
        if (op->exposed[i] && op->c->tps[i]->ops->retire)
            op->c->tps[i]->ops->retire(op->c->tps[i], op, op->exposed[i]);
    if (result != NXC_OK && result != NXC_ERR_CANCELED)
        NXC_LOG_I("connector %s: %s op %s ended: %s (%s)", op->c->name, nxc__op_kind_name(op->kind),
                  op->key, nxc_status_string(result), op->message);
    /* Publish the state last: nxc_op_wait() reads it without the lock. */
    __atomic_store_n(&op->status,
                     result == NXC_OK             ? NXC_OP_COMPLETE
                     : result == NXC_ERR_CANCELED ? NXC_OP_CANCELLED
                                                  : NXC_OP_ERRORED,
                     __ATOMIC_RELEASE);
    nxc__cq_push(op);
    if (op->efd >= 0) nxc__eventfd_ring(op->efd);
    nxc__wake_sleepers(op->c);
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
    if (--op->busy == 0) nxc__wake_sleepers(op->c);
}
bool nxc__op_io_pending(const nxc_op_t *op) {
    return op->busy > 0;
}

bool nxc__op_direct_busy(const nxc_op_t *op) {
    const nxc_connector_t *c = op->c;
    for (size_t i = 0; i < c->ntps; i++)
        if (op->exposed[i] && c->tps[i]->ops->direct_busy &&
            c->tps[i]->ops->direct_busy(c->tps[i], (nxc_op_t *)op, op->exposed[i]))
            return true;
    return false;
}

void nxc__op_unexpose_all(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    for (size_t i = 0; i < c->ntps; i++) {
        if (op->exposed[i]) c->tps[i]->ops->unexpose(c->tps[i], op, op->exposed[i]);
        op->exposed[i] = NULL;
    }
}

/* --- what transports read (transport/transport.h) ---------------------------- */

/* Out of line so that the layout of struct nxc_op stays a core matter;
 * transports fetch arrays once per loop, so the call costs nothing
 * measurable beside the bytes they move. */
nxc_op_kind_t nxc__op_kind(const nxc_op_t *op) {
    return op->kind;
}
const char *nxc__op_key(const nxc_op_t *op) {
    return op->key;
}
const uint8_t *nxc__op_secret(const nxc_op_t *op) {
    return op->secret;
}
const nxc_desc_t *nxc__op_local(const nxc_op_t *op, size_t *n_p) {
    *n_p = op->nlocal;
    return op->local;
}
uint64_t nxc__op_total(const nxc_op_t *op) {
    return op->total;
}
const nxc__metadata_t *nxc__op_peer_md(const nxc_op_t *op) {
    return op->md;
}
const nxc__seg_t *nxc__op_segs(const nxc_op_t *op, size_t *n_p) {
    *n_p = op->nsegs;
    return op->segs;
}
nxc__tp_t *nxc__op_tp(const nxc_op_t *op) {
    return op->tp;
}
void *nxc__op_tp_state(const nxc_op_t *op) {
    return op->tp_op;
}
void nxc__op_set_tp_state(nxc_op_t *op, void *state) {
    op->tp_op = state;
}

nxc_op_t *nxc__tp_next_op(nxc__tp_t *tp, nxc_op_t *prev) {
    nxc_op_t *op = prev ? prev->next : tp->c->ops;
    while (op && !(op->tp == tp && op->tp_op))
        op = op->next;
    return op;
}
