/* SPDX-License-Identifier: Apache-2.0 */
/* Completion queues inside the core (cq.c). */
#ifndef NXC_CORE_CQ_H
#define NXC_CORE_CQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nxc/nxc.h"

/* A completion queue: the ended ops whose entries were not taken yet.
 * Its own lock guards the list, `rung` and the ops' cq_queued, cq_prev and
 * cq_next: with the progress thread on, taking entries does not wait for
 * the connector lock, which a progress pass holds (a server polling its
 * queue blocked behind every pass, and the pass paid a futex wake-up per
 * entry taken). Taken after the connector lock when both are. */
struct nxc_cq {
    nxc_connector_t *c;
    nxc_cq_t *next;        /* in c->cqs (connector lock) */
    pthread_mutex_t mu;    /* the queue's own lock */
    nxc_op_t *head, *tail; /* queued ops, oldest first (op->cq_prev/cq_next) */
    atomic_size_t count;   /* queued ops; read without a lock by waiters */
    int efd;               /* eventfd: readable while count > 0, and perhaps after */
    bool rung;             /* efd is readable */
};

/* Connector lock held for each of these. */
/* The op ended: queue its entry (nothing if it has no queue or is released). */
void nxc__cq_push(nxc_op_t *op);
/* The op is being released or freed: withdraw its entry if queued. */
void nxc__cq_withdraw(nxc_op_t *op);
/* Is `cq` a live queue of `c`? */
bool nxc__cq_of(nxc_connector_t *c, const nxc_cq_t *cq);
/* Connector destroy: detach and free every queue. */
void nxc__cq_destroy_all(nxc_connector_t *c);

#endif
