/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's own structures and the calls its files make to each
 * other (internal to src/transport/ucx/). Message layouts: ucx_wire.h.
 *
 *   ucx.c        the ops table; active ops (grant request, stages, cancel);
 *                progress and peer failures
 *   peer.c       peers and endpoints; sending active messages
 *   control.c    received control messages: GRANT_REQ, GRANT_REP, DONE
 *   msg.c        the message data path (DATA, READ_REQ, READ_DATA)
 *   rma.c        the RMA (get/put) path; registrations and exposing memory
 *   lifecycle.c  create, describe, destroy
 */
#ifndef NXC_TRANSPORT_UCX_INTERNAL_H
#define NXC_TRANSPORT_UCX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ucp/api/ucp.h>

#include "core/regcache.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_check.h"
#include "transport/ucx/ucx_wire.h"
#include "util/hash.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the UCX control messages are defined little-endian; add byte swapping for this host"
#endif

/* Short local names for the wire definitions. */
enum {
    AM_GRANT_REQ = NXC__UCX_AM_GRANT_REQ,
    AM_GRANT_REP = NXC__UCX_AM_GRANT_REP,
    AM_DONE = NXC__UCX_AM_DONE,
    AM_DATA = NXC__UCX_AM_DATA,
    AM_READ_REQ = NXC__UCX_AM_READ_REQ,
    AM_READ_DATA = NXC__UCX_AM_READ_DATA,
    AM_BYE = NXC__UCX_AM_BYE,
    AM_BYE_ACK = NXC__UCX_AM_BYE_ACK,
    AM_LAST = NXC__UCX_AM_LAST
};
#define MSG_MAGIC NXC__UCX_MAGIC
typedef nxc__ucx_grant_req_t msg_grant_req_t;
typedef nxc__ucx_grant_rep_t msg_grant_rep_t;
typedef nxc__ucx_done_t msg_done_t;
typedef nxc__ucx_bye_t msg_bye_t;
typedef nxc__ucx_range_t msg_range_t;
typedef nxc__ucx_read_data_t msg_read_data_t;
/* Largest message of the message path (bigger segments are split). */
#define CHUNK (1u << 20)
#define MAX_RANGES NXC__MD_MAX_DESCS
/* UCX_KEEPALIVE_INTERVAL as nxc sets it (unless the user did). */
#define KEEPALIVE_NS 1000000000ull

typedef struct ucx_tp ucx_tp_t;

typedef struct ucx_peer {
    struct ucx_peer *next;
    ucx_tp_t *t;
    uint8_t instance[NXC__INSTANCE_LEN];
    char name[NXC_NAME_MAX + 1];
    ucp_ep_h ep;
    ucp_ep_h id;     /* the endpoint it was made with: what messages are matched
                        against (kept after a close, never used to send) */
    bool bound;      /* instance and name known: ours, or the requester's on an
                        endpoint our listener accepted (see on_grant_req()) */
    void *close_req; /* a close in progress */
    void *flush_req; /* at destroy: its flush */
    bool bye_sent;   /* at destroy: BYE sent, its answer awaited */
    bool bye_acked;  /* the answer came */
    bool failed;     /* the error callback fired, or we cut it off */
    bool handled;    /* ops were told */
    /* Its process, when an op's metadata named one on this host (pid 0:
     * unknown): destroy waits longer for a live one (see quiesce()). */
    uint32_t pid;
    uint64_t start_time;
    ucs_status_t status;
    int refs; /* 1 while listed, +1 per active op and pending flush */
    enum { WIRE_UNKNOWN, WIRE_PENDING, WIRE_DONE } wire; /* see start_wire_up() */
} ucx_peer_t;

/* A received active message, processed after ucp_worker_progress returns. */
typedef struct inbox_msg {
    struct inbox_msg *next;
    ucp_ep_h from; /* the endpoint it came on (the sender asked for replies) */
    unsigned id;
    size_t len;
    uint8_t data[];
} inbox_msg_t;

/* A connection request our listener received, accepted after progress. */
typedef struct conn_req {
    struct conn_req *next;
    ucp_conn_request_h req;
} conn_req_t;

struct ucx_tp {
    nxc__tp_t base;
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_address_t *addr;
    size_t addr_len;
    ucp_listener_h listener;
    conn_req_t *conn_reqs;
    unsigned accepted; /* peers made from our listener's requests, not yet bound */
    uint8_t *conn;     /* the metadata's connection info (ucx_check.h) */
    size_t conn_len;
    int efd;
    bool cuda;
    ucx_peer_t *peers;
    nxc__regcache_t rc;
    inbox_msg_t *inbox, *inbox_tail;
    bool dirty;   /* a request completed or a peer failed: re-check ops */
    bool closing; /* destroying: messages are dropped, not answered */
    /* Last progress() call: UCX runs its keepalive (peer-failure detection)
     * only inside worker progress, which an armed, idle worker never gets. */
    uint64_t last_progress;
    uint64_t next_req_id;
    /* Active ops by request id: replies name it, and a walk of every op
     * per message made thousands of ops in flight quadratic. */
    struct ucx_aop *aops_by_req;
    /* Move bytes with get/put (true: UCX has a hardware RMA transport here)
     * or with active messages (false: UCX would only emulate RMA). */
    bool use_rma;
    char resources[256]; /* UCX's transports/devices, for nxc-info */
};

enum stage { S_GRANT, S_MOVE, S_NOTIFY };

typedef struct ucx_aop {
    ucx_peer_t *peer;
    nxc_op_t *op;
    uint64_t req_id;
    UT_hash_handle by_req; /* in t->aops_by_req once req_id is set */
    bool indexed;
    uint64_t grant_id; /* 0 until granted */
    enum stage stage;
    ucp_rkey_h *rkeys; /* per remote descriptor; neighbours with one key share one */
    size_t nrkeys;
    /* Per segment: the bytes of the run it starts (it and the segments that
     * continue it, which move as one range), 0 for a segment inside a run. */
    uint64_t *runs;
    nxc__reg_t **lregs;
    nxc_status_t error; /* first failure or the stop reason; NXC_OK: none */
    char why[200];
    bool gave_up_sent;
    bool req_sent;        /* GRANT_REQ sent (it waits for the endpoint's wire-up) */
    uint64_t await_bytes; /* message-path read: bytes still to arrive */
} ucx_aop_t;

/* A send of ours in flight: the bytes must live until completion. */
typedef struct send_ctx {
    ucx_tp_t *t;
    nxc_op_t *op; /* counts the send as in flight on it; NULL for replies */
    size_t len;
    uint8_t buf[];
} send_ctx_t;

/* A data send of the message path: the header lives here, the payload is
 * the user's memory (UCX copies it before completing). */
typedef struct data_ctx {
    ucx_tp_t *t;
    nxc_op_t *op;
    union {
        msg_range_t range;
        msg_read_data_t read;
    } hdr;
} data_ctx_t;

static inline ucx_tp_t *ucx_of(nxc__tp_t *tp) {
    return (ucx_tp_t *)tp;
}

/* --- ucx.c --------------------------------------------------------------------------- */
nxc_status_t nxc__ucx_err(const char *what, ucs_status_t s);
void nxc__ucx_aop_fail(nxc_op_t *op, nxc_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Move an idle active op to its next stage, or finish it. */
void nxc__ucx_advance(ucx_tp_t *t, nxc_op_t *op);

/* --- peer.c -------------------------------------------------------------------------- */
/* Wait for a forced close to finish (it completes locally, so the loop is
 * short; bounded anyway). Never called from inside a UCX callback. */
void nxc__ucx_finish_close(ucx_tp_t *t, ucx_peer_t *p);
void nxc__ucx_peer_unref(ucx_peer_t *p);
ucx_peer_t *nxc__ucx_find_peer(ucx_tp_t *t, const uint8_t *instance);
ucx_peer_t *nxc__ucx_peer_of_ep(ucx_tp_t *t, ucp_ep_h ep, const uint8_t *instance, bool unhandled);
ucp_ep_h nxc__ucx_reply_ep(const ucp_am_recv_param_t *param);
/* The peer that `md` (an op's metadata) names, connected through `conn`
 * when not known yet. */
nxc_status_t nxc__ucx_get_peer(ucx_tp_t *t, const nxc__metadata_t *md, const void *conn,
                               size_t conn_len, ucx_peer_t **peer_p);
/* Our listener got a connection request (inside ucp_worker_progress):
 * queued, accepted by nxc__ucx_accept_conn_reqs() once progress returned. */
void nxc__ucx_conn_req_cb(ucp_conn_request_h req, void *arg);
void nxc__ucx_accept_conn_reqs(ucx_tp_t *t);
/* Forget `p`, which is on the list (its callers walk t->peers). */
void nxc__ucx_unlist_peer(ucx_tp_t *t, ucx_peer_t *p);
/* A send of ours completed: it no longer counts on `op` (NULL: a reply). */
void nxc__ucx_send_ended(ucx_tp_t *t, nxc_op_t *op, ucs_status_t status, const char *what);
/* Send an active message on `ep` (copied, so the caller's bytes may go);
 * `op` (may be NULL) counts it as in flight. */
ucs_status_t nxc__ucx_ep_send(ucx_tp_t *t, ucp_ep_h ep, unsigned id, const void *a, size_t alen,
                              const void *b, size_t blen, nxc_op_t *op, uint32_t flags);
/* Send an active message to a peer; `op` (may be NULL) counts it. */
nxc_status_t nxc__ucx_am_send(ucx_tp_t *t, ucx_peer_t *p, unsigned id, const void *a, size_t alen,
                              const void *b, size_t blen, nxc_op_t *op, uint32_t flags);
void nxc__ucx_send_done_msg(ucx_tp_t *t, ucx_peer_t *p, uint64_t grant_id, bool complete,
                            nxc_op_t *op);

/* --- control.c ----------------------------------------------------------------------- */
nxc_op_t *nxc__ucx_find_aop(ucx_tp_t *t, uint64_t req_id);
int nxc__ucx_process_inbox(ucx_tp_t *t);
ucs_status_t nxc__ucx_set_am_handlers(ucx_tp_t *t);

/* --- msg.c --------------------------------------------------------------------------- */
void nxc__ucx_start_moving_am(ucx_tp_t *t, nxc_op_t *op);
/* Bytes for a writable (message path): land them only inside a live grant.
 * Runs inside ucp_worker_progress (connector lock held) to avoid a copy. */
ucs_status_t nxc__ucx_am_data_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                                 const ucp_am_recv_param_t *param);
/* Bytes of a readable (message path) for one of our read ops. */
ucs_status_t nxc__ucx_am_read_data_cb(void *arg, const void *hdr, size_t hlen, void *data,
                                      size_t len, const ucp_am_recv_param_t *param);
/* A reader asks for a range of a readable (message path): check it against
 * its grant, then send the bytes in chunks. */
void nxc__ucx_on_read_req(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len);

/* --- rma.c --------------------------------------------------------------------------- */
extern const nxc__regcache_ops_t nxc__ucx_reg_ops;
nxc_status_t nxc__ucx_check_rkeys(const nxc_op_t *op, const nxc__md_section_t *sec,
                                  const nxc__ucx_addr_info_t *info);
void nxc__ucx_start_moving(ucx_tp_t *t, nxc_op_t *op);
nxc_status_t nxc__ucx_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p);
nxc_status_t nxc__ucx_mem_register(nxc__tp_t *tp, const nxc_desc_t *descs, size_t n,
                                   void **state_p);
void nxc__ucx_mem_deregister(nxc__tp_t *tp, void *state);
void nxc__ucx_reg_stats(nxc__tp_t *tp, uint64_t *made, uint64_t *reused);
void nxc__ucx_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state);

/* --- lifecycle.c --------------------------------------------------------------------- */
void nxc__ucx_describe(nxc__tp_t *tp, char *buf, size_t len);
void nxc__ucx_destroy(nxc__tp_t *tp);
nxc_status_t nxc__ucx_create(nxc_connector_t *c, nxc__tp_t **tp_p);

#endif
