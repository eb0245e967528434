/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ops inside the core: the struct, and the calls of the op state machine
 * that the rest of the core uses (op_state.c: an op's own state; op.c: its
 * lifecycle on the connector). Transports do not include this
 * header: what they may use is in transport/transport.h.
 */
#ifndef NXC_CORE_OP_H
#define NXC_CORE_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/connector.h"
#include "core/metadata.h"
#include "core/sglist.h"
#include "nxc/nxc.h"
#include "transport/transport.h"
#include "util/hash.h"

#define NXC__OP_FIELDS                                                                             \
    (NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_NOTIFICATION_KEY | NXC_OP_FIELD_USER_DATA |               \
     NXC_OP_FIELD_CQ)
/* How long cancel/release let in-flight transfers drain before cutting the
 * connection that carries them. */
#define NXC__DRAIN_MS 2000

struct nxc_op {
    nxc_connector_t *c;
    nxc_op_t *prev, *next; /* in c->ops */
    nxc_op_kind_t kind;
    nxc_op_status_t status;
    nxc_status_t result; /* NXC_INPROGRESS until terminal */
    char message[256];
    char key[NXC_KEY_MAX + 1];
    /* In c->passive_by_key while the op is passive and not released (keys
     * are unique among those); `indexed` says whether it is. */
    UT_hash_handle by_key;
    bool indexed;
    uint8_t secret[NXC__SECRET_LEN];
    nxc_desc_t *local;
    size_t nlocal;
    size_t total;
    void *user_data;
    uint64_t deadline;           /* monotonic ns; UINT64_MAX: none */
    int efd;                     /* eventfd made on demand by nxc_op_fd(); -1 before */
    nxc_cq_t *cq;                /* gets an entry when the op ends; NULL: none */
    nxc_op_t *cq_prev, *cq_next; /* in cq's entries while queued */
    bool cq_queued;
    bool released;                    /* the user released the handle; freed once idle */
    const nxc__transport_ops_t *used; /* the transport that moved the bytes */
    int busy;                         /* transport work in flight on the op */

    /* passive */
    char *md_text;
    size_t md_len;
    bool revoked; /* no new grants */
    nxc__grant_t *grants;
    size_t range_hint;                  /* the buffer the last checked range began in (grant.c) */
    void *exposed[NXC__MAX_TRANSPORTS]; /* per transport expose() state */

    /* active */
    nxc__tp_t *tp;
    void *tp_op;         /* the transport's per-op state */
    nxc__metadata_t *md; /* the peer's metadata, decoded (NULL until then) */
    nxc__seg_t *segs;
    size_t nsegs;
};

/* The peer's metadata (744 bytes) is kept out of the op so that an op is a
 * small request for glibc's malloc (under 1008 bytes): one of 1,008 or
 * more takes the large-request path, which first consolidates the fast
 * bins, and did so at every create and begin. */
_Static_assert(sizeof(struct nxc_op) <= 1000, "nxc_op_t is a large request for malloc");

/* Free an active op's decoded peer metadata. */
static inline void nxc__op_peer_md_free(nxc_op_t *op) {
    nxc__md_free(op->md);
    free(op->md);
    op->md = NULL;
}

/* nxc__op_terminal() without the connector lock (the state is published
 * last). */
static inline bool nxc__op_terminal_atomic(const nxc_op_t *op) {
    nxc_op_status_t status = __atomic_load_n(&op->status, __ATOMIC_ACQUIRE);
    return status == NXC_OP_COMPLETE || status == NXC_OP_CANCELLED || status == NXC_OP_ERRORED;
}

/* "readable", "writable", "read" or "write", for messages. */
const char *nxc__op_kind_name(nxc_op_kind_t kind);
/* Put a new op in the connector's list (and its deadline in the floor). */
void nxc__op_link(nxc_connector_t *c, nxc_op_t *op);
/* Take a linked op out of the list and free it with all it holds. */
void nxc__op_free_locked(nxc_op_t *op);
/* Is a peer moving bytes of the passive op without a grant (a transport's
 * direct_busy())? */
bool nxc__op_direct_busy(const nxc_op_t *op);
/* Tell each transport that exposed the passive op to forget it. */
void nxc__op_unexpose_all(nxc_op_t *op);
/* Connector destroy: stop every op (cancel the active ones, revoke the
 * passive ones) at once, wait for them against one drain deadline, abort
 * the stragglers and wait once more, then mark every op released. Its time
 * does not grow with the number of stuck ops. */
void nxc__stop_all(nxc_connector_t *c);
/* Cancel an active op and wait for it to drain (bounded). */
void nxc__active_stop(nxc_op_t *op, nxc_status_t why);
void nxc__check_deadlines(nxc_connector_t *c);
/* Free released ops that are idle. */
void nxc__reap(nxc_connector_t *c);
/* The loop's work on the ops after each pass (c->after_pass): deadlines,
 * then reaping. */
void nxc__ops_after_pass(nxc_connector_t *c);
/* The user let go of op (release, or connector destroy). */
void nxc__op_mark_released(nxc_op_t *op);

#endif
