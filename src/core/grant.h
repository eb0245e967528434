/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Grants inside the core (grant.c): the struct, the key index through
 * which peers find passive ops, and revocation. What transports call
 * (nxc__grant_open() and the rest) is declared in transport/transport.h.
 */
#ifndef NXC_CORE_GRANT_H
#define NXC_CORE_GRANT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/connector.h"
#include "nxc/nxc.h"
#include "transport/transport.h"
#include "util/hash.h"

/* A peer's permission to move bytes of one passive op (passive side). */
typedef struct nxc__grant {
    struct nxc__grant *next; /* in op->grants */
    uint64_t id;
    nxc__tp_t *tp;
    void *peer; /* the transport's handle of the peer, compared by identity */
    nxc_op_t *op;
    UT_hash_handle by_id; /* in c->grants_by_id */
} nxc__grant_t;

/* The live, unreleased passive op keyed `key`; NULL when there is none. */
nxc_op_t *nxc__passive_find(nxc_connector_t *c, const char *key);
/* Add `op` to the connector's key index; false when out of memory. */
bool nxc__passive_index(nxc_op_t *op);
/* Take `op` out of the key index (if it is in it). */
void nxc__passive_unindex(nxc_op_t *op);
/* The op is being freed: drop its grants and their index entries. */
void nxc__grants_free(nxc_op_t *op);
/* Revoke a passive op's access: no new grants; drain or drop existing ones
 * (may_block: wait up to NXC__DRAIN_MS first). */
void nxc__passive_revoke(nxc_op_t *op, bool may_block);

#endif
