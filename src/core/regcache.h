/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registration cache (internal): registering memory with a transport (pinning
 * it for a NIC, packing a remote key) is costly, so registrations are kept
 * by address range and shared. A lookup finds a live entry that covers the
 * whole range and takes a reference; the last put keeps the entry idle for
 * reuse, up to `max_idle` idle entries (least recently used go first).
 *
 * Like every such cache (UCX's rcache included), an idle entry outlives the
 * op that made it: memory freed and mapped again at the same address would
 * be served by the old registration. NXC_REGCACHE=0 turns idle keeping off.
 * Not thread-safe: the connector lock guards it.
 */
#ifndef NXC_CORE_REGCACHE_H
#define NXC_CORE_REGCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

typedef struct nxc__reg {
    struct nxc__reg *prev, *next; /* most recently used first */
    uintptr_t start, end;         /* page-aligned registered range */
    int refs;
    void *handle; /* the transport's registration */
    uint8_t *key; /* packed remote key, owned by the transport */
    size_t key_len;
} nxc__reg_t;

typedef struct nxc__regcache_ops {
    /* Register [start, start+len): fill handle/key/key_len of `reg`. */
    nxc_status_t (*reg)(void *ctx, nxc__reg_t *reg);
    void (*dereg)(void *ctx, nxc__reg_t *reg);
} nxc__regcache_ops_t;

typedef struct nxc__regcache {
    nxc__reg_t *head, *tail; /* most recently used first */
    size_t count, idle, max_idle;
    const nxc__regcache_ops_t *ops;
    void *ctx;
    uint64_t hits, misses; /* statistics, for tests and logs */
} nxc__regcache_t;

void nxc__regcache_init(nxc__regcache_t *rc, const nxc__regcache_ops_t *ops, void *ctx,
                        size_t max_idle);
/* Find or make a registration covering [ptr, ptr+len); takes a reference. */
nxc_status_t nxc__regcache_get(nxc__regcache_t *rc, const void *ptr, size_t len,
                               nxc__reg_t **reg_p);
void nxc__regcache_put(nxc__regcache_t *rc, nxc__reg_t *reg);
/* Deregister everything (entries still referenced are logged and dropped). */
void nxc__regcache_fini(nxc__regcache_t *rc);
/* max_idle from NXC_REGCACHE ("0" off, a number, default 256). */
size_t nxc__regcache_env_max_idle(void);

#endif
