/* SPDX-License-Identifier: Apache-2.0 */
#include "core/regcache.h"

#include <stdlib.h>
#include <unistd.h>

#include "util/env.h"
#include "util/error.h"
#include "util/list.h"
#include "util/log.h"

void nxc__regcache_init(nxc__regcache_t *rc, const nxc__regcache_ops_t *ops, void *ctx,
                        size_t max_idle) {
    *rc = (nxc__regcache_t){.ops = ops, .ctx = ctx, .max_idle = max_idle};
}

size_t nxc__regcache_env_max_idle(void) {
    return (size_t)nxc__env_int("NXC_REGCACHE", 256, 0, 1 << 20);
}

static void destroy_reg(nxc__regcache_t *rc, nxc__reg_t *reg) {
    NXC__DLIST_UNLINK(rc->head, rc->tail, reg, prev, next);
    rc->ops->dereg(rc->ctx, reg);
    rc->count--;
    free(reg);
}

/* Drop least recently used idle entries beyond max_idle. */
static void trim(nxc__regcache_t *rc) {
    for (nxc__reg_t *reg = rc->tail; reg && rc->idle > rc->max_idle;) {
        nxc__reg_t *prev = reg->prev;
        if (reg->refs == 0) {
            destroy_reg(rc, reg);
            rc->idle--;
        }
        reg = prev;
    }
}

nxc_status_t nxc__regcache_get(nxc__regcache_t *rc, const void *ptr, size_t len,
                               nxc__reg_t **reg_p) {
    uintptr_t start = (uintptr_t)ptr, end = start + len;
    for (nxc__reg_t *reg = rc->head; reg; reg = reg->next) {
        if (reg->start <= start && end <= reg->end) {
            if (reg->refs++ == 0) rc->idle--;
            NXC__DLIST_UNLINK(rc->head, rc->tail, reg, prev, next);
            NXC__DLIST_PUSH(rc->head, rc->tail, reg, prev, next);
            rc->hits++;
            *reg_p = reg;
            return NXC_OK;
        }
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    nxc__reg_t *reg = calloc(1, sizeof *reg);
    if (!reg) return nxc__err(NXC_ERR_NO_MEMORY, "registration: out of memory");
    reg->start = start & ~(page - 1);
    reg->end = (end + page - 1) & ~(page - 1);
    nxc_status_t st = rc->ops->reg(rc->ctx, reg);
    if (st != NXC_OK) {
        free(reg);
        return st;
    }
    reg->refs = 1;
    NXC__DLIST_PUSH(rc->head, rc->tail, reg, prev, next);
    rc->count++;
    rc->misses++;
    *reg_p = reg;
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
