/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Completion queues: one entry per ended op, kept in the op itself (a
 * doubly linked list through op->cq_prev/cq_next), so a queue never fills
 * and never allocates. The queue's eventfd is readable while the list is
 * non-empty: written when an entry arrives to an fd not yet readable. It
 * is drained only when a poll or wait finds the list empty, not as the
 * last entry is taken: a consumer that keeps up (an op ending inside
 * begin, taken at once) then costs no system call on either side of the
 * queue, where it cost a write and a read per op.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/connector.h"
#include "core/cq.h"
#include "core/op.h"
#include "core/progress.h"
#include "util/error.h"
#include "util/eventfd.h"
#include "util/list.h"
#include "util/time.h"

static void unlink_entry(nxc_cq_t *cq, nxc_op_t *op) {
    NXC__DLIST_UNLINK(cq->head, cq->tail, op, cq_prev, cq_next);
    op->cq_queued = false;
    atomic_fetch_sub(&cq->count, 1);
}

void nxc__cq_push(nxc_op_t *op) {
    nxc_cq_t *cq = op->cq;
    if (!cq || op->released || op->cq_queued) return;
    NXC__DLIST_APPEND(cq->head, cq->tail, op, cq_prev, cq_next);
    op->cq_queued = true;
    atomic_fetch_add(&cq->count, 1);
    if (!cq->rung) nxc__eventfd_ring(cq->efd);
    cq->rung = true;
}

void nxc__cq_withdraw(nxc_op_t *op) {
    if (op->cq_queued) unlink_entry(op->cq, op);
}

bool nxc__cq_of(nxc_connector_t *c, const nxc_cq_t *cq) {
    for (nxc_cq_t *queue = c->cqs; queue; queue = queue->next)
        if (queue == cq) return true;
    return false;
}

/* Detach every op from `cq` (lock held): queued entries are dropped and
 * ops still running will deliver none. */
static void detach_ops(nxc_cq_t *cq) {
    for (nxc_op_t *op = cq->c->ops; op; op = op->next) {
        if (op->cq != cq) continue;
        nxc__cq_withdraw(op);
        op->cq = NULL;
    }
}

static void cq_free(nxc_cq_t *cq) {
    if (cq->efd >= 0) close(cq->efd);
    free(cq);
}

void nxc__cq_destroy_all(nxc_connector_t *c) {
    while (c->cqs) {
        nxc_cq_t *cq = c->cqs;
        c->cqs = cq->next;
        detach_ops(cq);
        cq_free(cq);
    }
}

nxc_status_t nxc_cq_create(nxc_connector_t *c, const nxc_cq_params_t *params, nxc_cq_t **cq_p) {
    if (!c || !cq_p)
        return nxc__err(NXC_ERR_INVALID_PARAM, "cq_create: NULL connector or out-param");
    nxc_status_t st = nxc__check_field_mask("cq params", params ? params->field_mask : 0, 0);
    if (st != NXC_OK) return st;
    nxc_cq_t *cq = calloc(1, sizeof *cq);
    if (!cq) return nxc__err(NXC_ERR_NO_MEMORY, "cq_create: out of memory");
    cq->c = c;
    atomic_init(&cq->count, 0);
    cq->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (cq->efd < 0) {
        st = nxc__err(NXC_ERR_SYSTEM, "cq_create: eventfd: %s", strerror(errno));
        free(cq);
        return st;
    }
    nxc__lock(c);
    cq->next = c->cqs;
    c->cqs = cq;
    nxc__unlock(c);
    *cq_p = cq;
    return NXC_OK;
}

void nxc_cq_destroy(nxc_cq_t *cq) {
    if (!cq) return;
    nxc_connector_t *c = cq->c;
    nxc__lock(c);
    NXC__LIST_UNLINK(nxc_cq_t, c->cqs, cq);
    detach_ops(cq);
    nxc__unlock(c);
    cq_free(cq);
}

/* Take up to max entries (lock held). Finding none makes the fd
 * unreadable until the next entry. */
static int take(nxc_cq_t *cq, nxc_cq_entry_t *entries, int max) {
    int n = 0;
    while (n < max && cq->head) {
        nxc_op_t *op = cq->head;
        entries[n++] = (nxc_cq_entry_t){
            .op = op, .user_data = op->user_data, .result = op->result, .kind = op->kind};
        unlink_entry(cq, op);
    }
    if (n == 0 && cq->rung) {
        nxc__eventfd_drain(cq->efd);
        cq->rung = false;
    }
    return n;
}

/* The error of a poll or wait with no queue, no entries or no room. */
static int bad_args(const char *call) {
    return nxc__err(NXC_ERR_INVALID_PARAM, "%s: NULL queue or entries, or max <= 0", call);
}

int nxc_cq_poll(nxc_cq_t *cq, nxc_cq_entry_t *entries, int max) {
    if (!cq || !entries || max <= 0) return bad_args("cq_poll");
    nxc_connector_t *c = cq->c;
    nxc__err_guard_t guard; /* progress may note errors that are not this call's */
    nxc__err_guard_begin(&guard);
    nxc__lock(c);
    if (!c->use_thread) nxc__progress_in_call(c);
    int n = take(cq, entries, max);
    nxc__unlock(c);
    nxc__err_guard_end(&guard, false);
    return n;
}

/* Entries wait, or the connector is going (for nxc__wait_locked()). */
static bool has_entries(const void *arg) {
    const nxc_cq_t *cq = arg;
    return atomic_load(&cq->count) > 0 || cq->c->destroying;
}

int nxc_cq_wait(nxc_cq_t *cq, nxc_cq_entry_t *entries, int max, int timeout_ms) {
    if (!cq || !entries || max <= 0) return bad_args("cq_wait");
    nxc_connector_t *c = cq->c;
    nxc__err_guard_t guard; /* progress may note errors that are not this call's */
    nxc__err_guard_begin(&guard);
    /* As in nxc_op_wait(): destroy frees nothing while we are inside. */
    nxc__waiter_enter(c);
    uint64_t deadline = nxc__deadline_after_ms(timeout_ms);
    int n = 0;
    bool destroyed = false;
    for (;;) {
        if (c->use_thread) nxc__sleep_until_done(c, has_entries, cq, deadline);
        nxc__lock(c);
        if (!c->use_thread) nxc__wait_locked(c, has_entries, cq, deadline);
        n = take(cq, entries, max);
        destroyed = c->destroying;
        nxc__unlock(c);
        /* another waiter may have taken what woke us: wait on */
        if (n > 0 || destroyed || nxc__now_ns() >= deadline) break;
    }
    nxc__waiter_leave(c);
    nxc__err_guard_end(&guard, false);
    if (n == 0 && destroyed)
        return nxc__err(NXC_ERR_CANCELED, "cq_wait: connector destroyed while waiting");
    return n;
}

int nxc_cq_fd(nxc_cq_t *cq) {
    if (!cq) return nxc__err(NXC_ERR_INVALID_PARAM, "cq_fd: NULL queue");
    return cq->efd;
}
