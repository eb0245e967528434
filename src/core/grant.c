/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Grants: a peer's permission to touch a passive op's memory, and every
 * check behind it. This is the security core: whatever a peer may read or
 * write, it was allowed here (nxc__grant_open(), nxc__complete_direct()),
 * and access ends here (nxc__grant_close(), nxc__peer_lost(),
 * nxc__passive_revoke()). The indexes through which a peer's request finds
 * its op by key and its grant by id live here too.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/grant.h"
#include "core/op.h"
#include "core/progress.h"
#include "util/log.h"
#include "util/time.h"

/* --- indexes ---------------------------------------------------------------- */

bool nxc__passive_index(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    nxc_op_t *found = NULL;
    HASH_ADD(by_key, c->passive_by_key, key, strlen(op->key), op);
    HASH_FIND(by_key, c->passive_by_key, op->key, strlen(op->key), found);
    op->indexed = found == op; /* uthash leaves it out if its table failed */
    return op->indexed;
}

nxc_op_t *nxc__passive_find(nxc_connector_t *c, const char *key) {
    nxc_op_t *op = NULL;
    HASH_FIND(by_key, c->passive_by_key, key, strlen(key), op);
    return op;
}

void nxc__passive_unindex(nxc_op_t *op) {
    if (!op->indexed) return;
    HASH_DELETE(by_key, op->c->passive_by_key, op);
    op->indexed = false;
}

/* Add `grant` to the connector's grant index; false when out of memory. */
static bool index_grant(nxc_connector_t *c, nxc__grant_t *grant) {
    nxc__grant_t *found = NULL;
    HASH_ADD(by_id, c->grants_by_id, id, sizeof grant->id, grant);
    HASH_FIND(by_id, c->grants_by_id, &grant->id, sizeof grant->id, found);
    return found == grant;
}

void nxc__grants_free(nxc_op_t *op) {
    while (op->grants) {
        nxc__grant_t *grant = op->grants;
        op->grants = grant->next;
        HASH_DELETE(by_id, op->c->grants_by_id, grant);
        free(grant);
    }
}

/* --- grants (passive side) ---------------------------------------------------- */

/* Nobody may still touch the passive op's memory: no grant, and no
 * grant-free access in flight. */
static bool untouched(const void *arg) {
    const nxc_op_t *op = arg;
    return op->grants == NULL && !nxc__op_direct_busy(op);
}

static nxc__grant_t *find_grant(nxc_connector_t *c, void *peer, uint64_t id) {
    nxc__grant_t *grant = NULL;
    HASH_FIND(by_id, c->grants_by_id, &id, sizeof id, grant);
    return grant && grant->peer == peer ? grant : NULL;
}

bool nxc__passive_known(nxc_connector_t *c, const char *key, const uint8_t *secret) {
    const nxc_op_t *op = nxc__passive_find(c, key);
    return op && sodium_memcmp(op->secret, secret, NXC__SECRET_LEN) == 0;
}

/* Does [addr, addr + len) lie in the op's buffers from buffer `i` on,
 * running on into the next buffer only where it starts at the byte the
 * last one ends (as cover_check() allows a range to)? */
static bool range_from(const nxc_op_t *op, size_t i, uint64_t addr, uint64_t len) {
    for (; i < op->nlocal; i++) {
        uint64_t start = (uintptr_t)op->local[i].ptr, end = start + op->local[i].size;
        if (addr < start || addr >= end) return false;
        if (len <= end - addr) return true;
        len -= end - addr;
        addr = end;
    }
    return false;
}

/* Is `range` (not empty) within the op's buffers? Ranges come in buffer
 * order, so the search starts at the buffer where the last one began: a
 * transfer of n buffers costs O(n), not O(n^2). */
static bool range_inside(nxc_op_t *op, const nxc__range_t *range) {
    size_t n = op->nlocal;
    if (range->len == 0 || n == 0) return false;
    for (size_t k = 0, i = op->range_hint % n; k < n; k++, i = i + 1 == n ? 0 : i + 1)
        if (range_from(op, i, range->addr, range->len)) {
            op->range_hint = i;
            return true;
        }
    return false;
}

/* Do `ranges` move exactly part `part` of `nparts` of the op, in order? The
 * op's bytes are its buffers in descriptor order; part i of n is
 * [i*per, min((i+1)*per, total)) with per = ceil(total / n), which is how
 * the active side stripes a transfer (a whole transfer is part 0 of 1). So a
 * peer can only ever be granted the whole op, or one stripe of it, and a
 * completion always means every byte of the op moved. A range may run on
 * from one buffer into the next only where the next starts at the byte the
 * first ends (the active side merges such neighbours: one range per run of
 * a buffer pool, not one per block). NULL: yes. */
static const char *cover_check(nxc_op_t *op, const nxc__range_t *ranges, size_t nranges,
                               unsigned part, unsigned nparts) {
    if (nparts == 0 || part >= nparts) return "bad stripe index";
    uint64_t per = op->total / nparts + (op->total % nparts != 0);
    uint64_t from = (uint64_t)part * per;
    if (from >= op->total) return "the stripe lies past the op's end";
    uint64_t left = op->total - from < per ? op->total - from : per;
    size_t desc = 0;
    uint64_t off = from; /* into descriptor `desc` */
    while (off >= op->local[desc].size)
        off -= op->local[desc++].size;
    for (size_t i = 0; i < nranges; i++) {
        const nxc__range_t *range = &ranges[i];
        if (left == 0) return "the ranges go past the op's bytes";
        if (range->len == 0 || range->len > left)
            return range_inside(op, range)
                       ? "the ranges are not the op's buffers, whole and in order"
                       : "a range lies outside the op's buffers";
        uint64_t addr = range->addr, len = range->len;
        while (len) { /* through the buffers it covers, each starting where the last ended */
            uint64_t room = op->local[desc].size - off;
            uint64_t take = len < room ? len : room;
            if (addr != (uintptr_t)op->local[desc].ptr + off)
                return range_inside(op, range)
                           ? "the ranges are not the op's buffers, whole and in order"
                           : "a range lies outside the op's buffers";
            addr += take;
            len -= take;
            left -= take;
            off += take;
            if (off == op->local[desc].size && desc + 1 < op->nlocal) {
                desc++;
                off = 0;
            } else if (len)
                return "a range lies outside the op's buffers";
        }
    }
    return left ? "the ranges cover only part of the op (a transfer must move all of it)" : NULL;
}

nxc_status_t nxc__grant_open_part(nxc_connector_t *c, nxc__tp_t *tp, void *peer, const char *key,
                                  const uint8_t *secret, int md_kind, const nxc__range_t *ranges,
                                  size_t nranges, unsigned part, unsigned nparts,
                                  uint64_t *grant_id_p, char *why, size_t why_len) {
    nxc_op_t *op = nxc__passive_find(c, key);
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
    nxc__grant_t *grant = calloc(1, sizeof *grant);
    if (!grant) {
        snprintf(why, why_len, "out of memory");
        return NXC_ERR_NO_MEMORY;
    }
    grant->id = c->next_grant_id++;
    grant->tp = tp;
    grant->peer = peer;
    grant->op = op;
    if (!index_grant(c, grant)) {
        free(grant);
        snprintf(why, why_len, "out of memory");
        return NXC_ERR_NO_MEMORY;
    }
    grant->next = op->grants;
    op->grants = grant;
    nxc__op_progressing(op);
    op->used = tp->ops;
    *grant_id_p = grant->id;
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
    nxc__grant_t *grant = find_grant(c, peer, id);
    if (!grant) return NULL;
    nxc_op_t *op = grant->op;
    if (op->kind != kind || op->revoked || nxc__op_terminal(op)) return NULL;
    return range_inside(op, &(nxc__range_t){addr, len}) ? op : NULL;
}

/* Unlink the grant matching (peer, id) or, with id 0, the first held by peer. */
static bool take_grant(nxc_op_t *op, void *peer, uint64_t id) {
    for (nxc__grant_t **link = &op->grants; *link; link = &(*link)->next) {
        nxc__grant_t *grant = *link;
        if (grant->peer == peer && (id == 0 || grant->id == id)) {
            *link = grant->next;
            HASH_DELETE(by_id, op->c->grants_by_id, grant);
            free(grant);
            /* The status stays IN_PROGRESS: it never goes back, and a peer
             * that gave up may have moved part of the bytes. */
            nxc__wake_sleepers(op->c);
            return true;
        }
    }
    return false;
}

bool nxc__grant_close(nxc_connector_t *c, void *peer, uint64_t id, bool complete) {
    nxc__grant_t *grant = find_grant(c, peer, id);
    if (!grant) return false;
    nxc_op_t *op = grant->op;
    take_grant(op, peer, id);
    if (complete) nxc__op_finish(op, NXC_OK, "%s", "");
    return true;
}

bool nxc__grant_move(nxc_connector_t *c, void *peer, uint64_t id, void *to) {
    nxc__grant_t *grant = find_grant(c, peer, id);
    if (grant) grant->peer = to;
    return grant != NULL;
}

bool nxc__complete_direct(nxc_connector_t *c, nxc__tp_t *tp, const char *key, const uint8_t *secret,
                          nxc_op_kind_t kind) {
    nxc_op_t *op = nxc__passive_find(c, key);
    if (op && sodium_memcmp(op->secret, secret, NXC__SECRET_LEN) != 0) op = NULL;
    return nxc__complete_direct_op(c, tp, op, kind);
}

bool nxc__complete_direct_op(nxc_connector_t *c, nxc__tp_t *tp, nxc_op_t *op, nxc_op_kind_t kind) {
    if (!op || op->kind != kind || op->revoked || nxc__op_terminal(op)) {
        /* A drain may be waiting for this peer's direct access to end
         * (nxc__op_finish() wakes it when the op completes instead). */
        nxc__wake_sleepers(c);
        return false;
    }
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
    if (!untouched(op) && may_block)
        nxc__wait_locked(c, untouched, op, nxc__deadline_after_ms(NXC__DRAIN_MS));
    if (nxc__op_direct_busy(op)) /* no connection to cut: docs/transports.md */
        NXC_LOG_W("connector %s: op %s revoked while a peer still writes it without a grant "
                  "(after %d ms); its memory may still change",
                  c->name, op->key, NXC__DRAIN_MS);
    while (op->grants) {
        /* Copied first: a transport may report nxc__peer_lost() from inside
         * drop_peer(), which frees this peer's grants. */
        nxc__tp_t *tp = op->grants->tp;
        void *peer = op->grants->peer;
        NXC_LOG_W("connector %s: op %s revoked while a peer still holds access; cutting it off",
                  c->name, op->key);
        tp->ops->drop_peer(tp, peer);
        take_grant(op, peer, 0); /* if it has not been reported yet */
    }
    nxc__op_unexpose_all(op);
}
