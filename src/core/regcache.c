/* SPDX-License-Identifier: Apache-2.0 */
#include "core/regcache.h"

#include <stdlib.h>
#include <unistd.h>

#include "util/env.h"
#include "util/error.h"
#include "util/log.h"

void nxc__regcache_init(nxc__regcache_t *rc, const nxc__regcache_ops_t *ops, void *ctx,
                        size_t max_idle) {
    *rc = (nxc__regcache_t){.ops = ops, .ctx = ctx, .max_idle = max_idle};
}

size_t nxc__regcache_env_max_idle(void) {
    return (size_t)nxc__env_int("NXC_REGCACHE", 256, 0, 1 << 20);
}

static void unlink_reg(nxc__regcache_t *rc, nxc__reg_t *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        rc->head = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void push_front(nxc__regcache_t *rc, nxc__reg_t *r) {
    r->prev = NULL;
    r->next = rc->head;
    if (rc->head) rc->head->prev = r;
    rc->head = r;
}

static void destroy_reg(nxc__regcache_t *rc, nxc__reg_t *r) {
    unlink_reg(rc, r);
    rc->ops->dereg(rc->ctx, r);
    rc->count--;
    free(r);
}

/* Drop least recently used idle entries beyond max_idle. */
static void trim(nxc__regcache_t *rc) {
    nxc__reg_t *tail = rc->head;
    while (tail && tail->next)
        tail = tail->next;
    for (nxc__reg_t *r = tail; r && rc->idle > rc->max_idle;) {
        nxc__reg_t *prev = r->prev;
        if (r->refs == 0) {
            destroy_reg(rc, r);
            rc->idle--;
        }
        r = prev;
    }
}

nxc_status_t nxc__regcache_get(nxc__regcache_t *rc, const void *ptr, size_t len,
                               nxc__reg_t **reg_p) {
    uintptr_t start = (uintptr_t)ptr, end = start + len;
    for (nxc__reg_t *r = rc->head; r; r = r->next) {
        if (r->start <= start && end <= r->end) {
            if (r->refs++ == 0) rc->idle--;
            unlink_reg(rc, r);
            push_front(rc, r);
            rc->hits++;
            *reg_p = r;
            return NXC_OK;
        }
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    nxc__reg_t *r = calloc(1, sizeof *r);
    if (!r) return nxc__err(NXC_ERR_NO_MEMORY, "registration: out of memory");
    r->start = start & ~(page - 1);
    r->end = (end + page - 1) & ~(page - 1);
    nxc_status_t st = rc->ops->reg(rc->ctx, r);
    if (st != NXC_OK) {
        free(r);
        return st;
    }
    r->refs = 1;
    push_front(rc, r);
    rc->count++;
    rc->misses++;
    *reg_p = r;
    return NXC_OK;
}

void nxc__regcache_put(nxc__regcache_t *rc, nxc__reg_t *reg) {
    if (!reg) return;
    if (--reg->refs > 0) return;
    rc->idle++;
    trim(rc);
}

void nxc__regcache_fini(nxc__regcache_t *rc) {
    while (rc->head) {
        if (rc->head->refs)
            NXC_LOG_W("registration %#lx..%#lx still referenced at shutdown",
                      (unsigned long)rc->head->start, (unsigned long)rc->head->end);
        destroy_reg(rc, rc->head);
    }
    rc->idle = 0;
}
