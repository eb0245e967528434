/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ops: their lifecycle (linking, deadlines, stopping, release and reaping)
 * and the public calls on an op that exists. An op's own state (finishing,
 * progressing, in-flight accounting) is in op_state.c, below grants
 * (grant.c), which this file uses; making ops is in op_create.c, transport
 * selection in select.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/cq.h"
#include "core/grant.h"
#include "core/op.h"
#include "core/progress.h"
#include "util/error.h"
#include "util/eventfd.h"
#include "util/list.h"
#include "util/log.h"
#include "util/time.h"

/* --- state ------------------------------------------------------------------ */

void nxc__op_link(nxc_connector_t *c, nxc_op_t *op) {
    NXC__DLIST_PUSH(c->ops, c->ops_tail, op, prev, next);
    if (op->deadline < c->deadline_floor) c->deadline_floor = op->deadline;
}

void nxc__op_free_locked(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    if (op->released) c->released_ops--;
    NXC__DLIST_UNLINK(c->ops, c->ops_tail, op, prev, next);
    nxc__passive_unindex(op);
    nxc__grants_free(op);
    nxc__op_unexpose_all(op);
    if (op->tp && op->tp_op) op->tp->ops->release(op->tp, op);
    if (op->efd >= 0) close(op->efd);
    nxc__cq_withdraw(op);
    nxc__op_peer_md_free(op);
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
    nxc__passive_unindex(op); /* its key is free for a new op, and peers no longer find it */
    op->c->released_ops++;
    nxc__cq_withdraw(op); /* a released op's entry never comes out */
}

static bool is_terminal(const void *arg) {
    const nxc_op_t *op = arg;
    return nxc__op_terminal(op);
}

/* --- active side -------------------------------------------------------------- */

/* The transport did not confirm an abort: end the op without it. */
static void give_up(nxc_op_t *op, nxc_status_t why) {
    NXC_LOG_E("connector %s: %s op still busy after abort", op->c->name,
              nxc__op_kind_name(op->kind));
    nxc__op_finish(op, why, "stopped (transport did not confirm the abort)");
}

void nxc__active_stop(nxc_op_t *op, nxc_status_t why) {
    nxc_connector_t *c = op->c;
    if (nxc__op_terminal(op)) return;
    op->tp->ops->cancel(op->tp, op, why);
    if (nxc__wait_locked(c, is_terminal, op, nxc__deadline_after_ms(NXC__DRAIN_MS))) return;
    NXC_LOG_W("connector %s: %s op did not drain in %d ms; aborting its transfers", c->name,
              nxc__op_kind_name(op->kind), NXC__DRAIN_MS);
    op->tp->ops->abort_io(op->tp, op);
    if (nxc__wait_locked(c, is_terminal, op, nxc__deadline_after_ms(NXC__DRAIN_MS))) return;
    give_up(op, why);
}

/* Every active op has ended, and no peer holds access to a passive op nor
 * is a transport still sending from one (ucx answers a message-path read
 * with sends that outlive the grant): destroy cannot free such an op and
 * would leak it. */
static bool all_stopped(const void *arg) {
    const nxc_connector_t *c = arg;
    for (const nxc_op_t *op = c->ops; op; op = op->next)
        if (nxc__op_passive(op) ? op->grants != NULL || op->busy > 0 || nxc__op_direct_busy(op)
                                : !nxc__op_terminal(op))
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
                op->tp->ops->abort_io(op->tp, op);
        for (nxc_op_t *op = c->ops; op; op = op->next)
            if (nxc__op_passive(op)) nxc__passive_revoke(op, false); /* cuts holders off */
        nxc__wait_locked(c, all_stopped, c, nxc__deadline_after_ms(NXC__DRAIN_MS));
    }
    for (nxc_op_t *op = c->ops; op; op = op->next) {
        if (!nxc__op_passive(op) && !nxc__op_terminal(op)) {
            give_up(op, NXC_ERR_CANCELED);
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
                op->tp->ops->abort_io(op->tp, op);
        }
        if (!nxc__op_terminal(op) && op->deadline < next) next = op->deadline;
    }
    c->deadline_floor = next;
}

void nxc__ops_after_pass(nxc_connector_t *c) {
    nxc__check_deadlines(c);
    nxc__reap(c);
}

/* --- queries ------------------------------------------------------------------ */

nxc_status_t nxc_op_metadata(nxc_op_t *op, const char **text_p, size_t *len_p) {
    if (!op || !text_p) return nxc__err(NXC_ERR_INVALID_PARAM, "op_metadata: NULL argument");
    if (!nxc__op_passive(op))
        return nxc__err(NXC_ERR_INVALID_STATE,
                        "op_metadata: a %s op has no metadata (only readable/writable ops do)",
                        nxc__op_kind_name(op->kind));
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
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc__lock(c);
    if (!c->use_thread) nxc__progress_in_call(c);
    nxc_op_status_t status = op->status;
    nxc__unlock(c);
    nxc__err_guard_end(&guard, false);
    return status;
}

nxc_status_t nxc_op_result(nxc_op_t *op) {
    if (!op) return nxc__err(NXC_ERR_INVALID_PARAM, "op_result: NULL op");
    nxc__lock(op->c);
    nxc_status_t result = nxc__op_terminal(op) ? op->result : NXC_INPROGRESS;
    nxc__unlock(op->c);
    return result;
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
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    uint64_t deadline = nxc__deadline_after_ms(timeout_ms);
    if (c->use_thread) nxc__sleep_until_done(c, ended, op, deadline);
    nxc__lock(c);
    if (!c->use_thread) {
        nxc__progress_locked(c);
        nxc__wait_locked(c, wait_over, op, deadline);
    }
    nxc_status_t result = nxc__op_terminal(op) ? op->result : NXC_INPROGRESS;
    char msg[sizeof op->message];
    strcpy(msg, op->message);
    if (result == NXC_INPROGRESS && c->destroying) {
        result = NXC_ERR_CANCELED;
        snprintf(msg, sizeof msg, "connector destroyed while waiting");
    }
    nxc__unlock(c);
    nxc__waiter_leave(c);
    nxc__err_guard_end(&guard, false);
    if (result == NXC_INPROGRESS) /* the one success that writes it: see nxc_last_error() */
        nxc__err(result,
                 "op_wait: the op is still in progress after %d ms (not an error; wait again)",
                 timeout_ms);
    else if (result != NXC_OK)
        nxc__err(result, "%s", msg);
    return result;
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
            nxc__eventfd_ring(op->efd);
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
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc__lock(op->c);
    if (!nxc__op_terminal(op)) stop_locked(op, "cancelled by the application");
    nxc__unlock(op->c);
    nxc__err_guard_end(&guard, false);
    return NXC_OK;
}

void nxc_op_release(nxc_op_t *op) {
    if (!op) return;
    nxc_connector_t *c = op->c;
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc__lock(c);
    if (!nxc__op_terminal(op))
        stop_locked(op, "released by the application");
    else if (nxc__op_passive(op))
        nxc__passive_revoke(op, true);
    nxc__op_mark_released(op);
    if (reapable(op) && !c->destroying) nxc__op_free_locked(op); /* else the loop reaps it */
    nxc__unlock(c);
    nxc__err_guard_end(&guard, false);
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
