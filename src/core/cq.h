/* SPDX-License-Identifier: Apache-2.0 */
/* Completion queues inside the core (cq.c). */
#ifndef NXC_CORE_CQ_H
#define NXC_CORE_CQ_H

#include <stdatomic.h>
#include <stdbool.h>

#include "nxc/nxc.h"

/* A completion queue: the ended ops whose entries were not taken yet. */
struct nxc_cq {
    nxc_connector_t *c;
    nxc_cq_t *next;        /* in c->cqs */
    nxc_op_t *head, *tail; /* queued ops, oldest first (op->cq_prev/cq_next) */
    atomic_size_t count;   /* queued ops; read without the lock by waiters */
    int efd;               /* eventfd: readable while count > 0, and perhaps after */
    bool rung;             /* efd is readable (lock held) */
};

/* Lock held for each of these. */
/* The op ended: queue its entry (nothing if it has no queue or is released). */
void nxc__cq_push(nxc_op_t *op);
/* The op is being released or freed: withdraw its entry if queued. */
void nxc__cq_withdraw(nxc_op_t *op);
/* Is `cq` a live queue of `c`? */
bool nxc__cq_of(nxc_connector_t *c, const nxc_cq_t *cq);
/* Connector destroy: detach and free every queue. */
void nxc__cq_destroy_all(nxc_connector_t *c);

#endif
