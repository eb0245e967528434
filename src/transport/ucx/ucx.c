/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The UCX transport: UCP RMA (get/put) with packed remote keys, one context
 * and worker per connector, endpoints cached per peer connector.
 *
 * Protocol, per active op (all control messages are UCP active messages):
 *
 *   active                                    passive
 *   GRANT_REQ {want, key, secret,  ─────────▶ want is me? key and secret of
 *              ranges, addr}                  a live op? addr well formed?
 *                                             (else refused on the endpoint
 *                                             the request came on); then
 *                                             core checks op, kind, bounds
 *             ◀─ GRANT_REP {status, grant}
 *   get/put per segment, then ep flush
 *   DONE {grant, complete} ─────────────────▶ op COMPLETE (or grant dropped)
 *
 * Nothing a peer wrote reaches UCX unchecked: worker addresses and rkeys are
 * walked first (ucx_check.c), and a grant request is screened in that order
 * before nxc connects back to the address inside it. Message layouts are in
 * ucx_wire.h.
 *
 * The grant round trip is what makes revocation real: UCX's software RMA
 * emulation (used over tcp and shared memory) writes wherever a peer says,
 * and the registration cache keeps memory mapped after an op ends, so the
 * passive side must check each transfer before its bytes move.
 *
 * Peer death: endpoints use UCP_ERR_HANDLING_MODE_PEER; the error callback
 * ends every op that depends on the peer, on both sides. Note that UCX 1.13
 * refuses its shared-memory transports in that mode, so same-host traffic
 * runs over tcp loopback here (the shm transport is nxc's own answer).
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>
#include <ucs/config/global_opts.h>

#include "core/regcache.h"
#include "transport/segment.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_check.h"
#include "transport/ucx/ucx_wire.h"
#include "util/env.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/list.h"
#include "util/log.h"
#include "util/text.h"
#include "util/time.h"

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
    AM_LAST = NXC__UCX_AM_LAST
};
#define MSG_MAGIC NXC__UCX_MAGIC
typedef nxc__ucx_grant_req_t msg_grant_req_t;
typedef nxc__ucx_grant_rep_t msg_grant_rep_t;
typedef nxc__ucx_done_t msg_done_t;
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
    bool failed;     /* the error callback fired, or we cut it off */
    bool handled;    /* ops were told */
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
    ucp_rkey_h *rkeys;
    size_t nrkeys;
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

static ucx_tp_t *ucx_of(nxc__tp_t *tp) {
    return (ucx_tp_t *)tp;
}

static nxc_status_t ucs_err(const char *what, ucs_status_t s) {
    return nxc__err(NXC_ERR_TRANSPORT, "ucx: %s: %s", what, ucs_status_string(s));
}

/* --- failures -------------------------------------------------------------- */

static void aop_fail(nxc_op_t *op, nxc_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void aop_fail(nxc_op_t *op, nxc_status_t st, const char *fmt, ...) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (a->error != NXC_OK) return;
    a->error = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
}

/* --- registration cache callbacks ------------------------------------------------ */

static nxc_status_t reg_map(void *ctx, nxc__reg_t *r) {
    ucx_tp_t *t = ctx;
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = (void *)r->start,
                               .length = r->end - r->start};
    ucp_mem_h memh;
    ucs_status_t s = ucp_mem_map(t->ctx, &mp, &memh);
    if (s != UCS_OK) return ucs_err("ucp_mem_map", s);
    void *packed;
    size_t len;
    s = ucp_rkey_pack(t->ctx, memh, &packed, &len);
    if (s != UCS_OK || len > UINT16_MAX) {
        ucp_mem_unmap(t->ctx, memh);
        return s != UCS_OK ? ucs_err("ucp_rkey_pack", s)
                           : nxc__err(NXC_ERR_TRANSPORT, "ucx: packed rkey of %zu bytes", len);
    }
    r->key = malloc(len);
    if (!r->key) {
        ucp_rkey_buffer_release(packed);
        ucp_mem_unmap(t->ctx, memh);
        return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    }
    memcpy(r->key, packed, len);
    r->key_len = len;
    ucp_rkey_buffer_release(packed);
    r->handle = memh;
    return NXC_OK;
}

static void reg_unmap(void *ctx, nxc__reg_t *r) {
    ucx_tp_t *t = ctx;
    ucp_mem_unmap(t->ctx, r->handle);
    free(r->key);
}

static const nxc__regcache_ops_t reg_ops = {reg_map, reg_unmap};

/* --- peers ------------------------------------------------------------------------ */

/* Start a forced close: the endpoint is marked closed at once, so UCX drops
 * whatever the peer still had in flight to us (UCX 1.13 aborts the process
 * when it answers a software put on an endpoint that failed but is not
 * closed). Completion is reaped by finish_close(). */
static void begin_close(ucx_peer_t *p) {
    if (!p->ep) return;
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t r = ucp_ep_close_nbx(p->ep, &rp);
    p->ep = NULL;
    p->close_req = UCS_PTR_IS_PTR(r) ? r : NULL;
}

/* Wait for a forced close to finish (it completes locally, so the loop is
 * short; bounded anyway). Never called from inside a UCX callback. */
static void finish_close(ucx_tp_t *t, ucx_peer_t *p) {
    begin_close(p);
    if (!p->close_req) return;
    for (int i = 0; i < 100000 && ucp_request_check_status(p->close_req) == UCS_INPROGRESS; i++)
        ucp_worker_progress(t->worker);
    ucp_request_free(p->close_req);
    p->close_req = NULL;
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status) {
    ucx_peer_t *p = arg;
    if (p->failed) return;
    p->failed = true;
    p->status = status;
    p->t->dirty = true;
    begin_close(p);
    NXC_LOG_I("ucx: connection to peer %s failed: %s", p->name, ucs_status_string(status));
}

static void peer_unref(ucx_peer_t *p) {
    if (--p->refs == 0) free(p);
}

static ucx_peer_t *find_peer(ucx_tp_t *t, const uint8_t *instance) {
    for (ucx_peer_t *p = t->peers; p; p = p->next)
        if (!p->failed && p->bound && !memcmp(p->instance, instance, NXC__INSTANCE_LEN)) return p;
    return NULL;
}

/* The peer whose endpoint a message came on (the sender set
 * UCP_AM_SEND_FLAG_REPLY), and that names itself `instance` (NULL: any).
 * With `unhandled`, also one whose endpoint failed in the same progress pass
 * but whose failure was not handled yet (it still holds its grants): a peer
 * that completed its op and destroyed its connector at once sends the DONE
 * and then fails; the DONE must win, or the owner's op ends PEER_FAILED
 * although every byte landed. */
static ucx_peer_t *peer_of_ep(ucx_tp_t *t, ucp_ep_h ep, const uint8_t *instance, bool unhandled) {
    if (!ep) return NULL;
    for (ucx_peer_t *p = t->peers; p; p = p->next)
        if (p->id == ep && (!p->failed || (unhandled && !p->handled)))
            return !instance || (p->bound && !memcmp(p->instance, instance, NXC__INSTANCE_LEN))
                       ? p
                       : NULL;
    return NULL;
}

static ucp_ep_h reply_ep(const ucp_am_recv_param_t *param) {
    return (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ? param->reply_ep : NULL;
}

/* Connect to the listener named in the peer's connection info `conn`
 * (checked by the caller). Endpoints are made through UCX's connection
 * manager, never from a worker address: UCX 1.13 then wraps every transport
 * endpoint of the pair in its wire-up proxy until connection establishment
 * is over (tcp lanes become point-to-point lanes), so the side that answers
 * never has a wire-up reply queued on a bare tcp endpoint. Made from a
 * worker address, the answering side queues its reply ("REP") on a tcp
 * endpoint that is still connecting (ucp_wireup_process_request: its lanes
 * connect to the peer's interface without a proxy), and when that endpoint
 * is purged, because the peer died or the worker goes, UCX asserts "got REP
 * message" (ucp_request_send_state_ff) and aborts the process. */
static nxc_status_t connect_peer(ucx_tp_t *t, ucx_peer_t *p, const uint8_t *conn, size_t len) {
    char why[160];
    uint32_t ip;
    uint16_t port;
    if (!nxc__ucx_conn_check(conn, len, NULL, &ip, &port, why, sizeof why))
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "ucx: peer %s: malformed connection info: %s",
                        p->name, why);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    memcpy(&sa.sin_addr, &ip, sizeof ip);
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
                          .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
                          .sockaddr = {.addr = (const struct sockaddr *)&sa, .addrlen = sizeof sa},
                          .err_mode = UCP_ERR_HANDLING_MODE_PEER,
                          .err_handler = {.cb = ep_error_cb, .arg = p}};
    ucs_status_t s = ucp_ep_create(t->worker, &ep, &p->ep);
    if (s != UCS_OK)
        return nxc__err(NXC_ERR_UNREACHABLE, "ucx: cannot connect to peer %s: %s", p->name,
                        ucs_status_string(s));
    p->id = p->ep;
    return NXC_OK;
}

static void list_peer(ucx_tp_t *t, ucx_peer_t *p) {
    p->refs = 1;
    p->next = t->peers;
    t->peers = p;
}

static nxc_status_t get_peer(ucx_tp_t *t, const uint8_t *instance, const char *name,
                             const void *conn, size_t conn_len, ucx_peer_t **peer_p) {
    ucx_peer_t *p = find_peer(t, instance);
    if (p) {
        *peer_p = p;
        return NXC_OK;
    }
    p = calloc(1, sizeof *p);
    if (!p) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    p->t = t;
    p->bound = true;
    memcpy(p->instance, instance, NXC__INSTANCE_LEN);
    snprintf(p->name, sizeof p->name, "%s", name);
    nxc_status_t st = connect_peer(t, p, conn, conn_len);
    if (st != NXC_OK) {
        free(p);
        return st;
    }
    list_peer(t, p);
    *peer_p = p;
    return NXC_OK;
}

/* At most this many accepted endpoints wait for their first grant request;
 * more connection requests are rejected. */
#define MAX_UNBOUND 1024

/* Our listener got a connection request (inside ucp_worker_progress):
 * queued, accepted by accept_conn_reqs() once progress returned. */
static void conn_req_cb(ucp_conn_request_h req, void *arg) {
    ucx_tp_t *t = arg;
    conn_req_t *q = t->closing || t->accepted >= MAX_UNBOUND ? NULL : malloc(sizeof *q);
    if (!q) {
        ucp_listener_reject(t->listener, req);
        return;
    }
    q->req = req;
    q->next = t->conn_reqs;
    t->conn_reqs = q;
}

/* Accept the queued connection requests: an endpoint each, a peer that
 * knows nothing about itself until a grant request on it names its
 * connector (on_grant_req()). */
static void accept_conn_reqs(ucx_tp_t *t) {
    while (t->conn_reqs) {
        conn_req_t *q = t->conn_reqs;
        t->conn_reqs = q->next;
        ucx_peer_t *p = t->closing ? NULL : calloc(1, sizeof *p);
        if (!p) {
            ucp_listener_reject(t->listener, q->req);
            free(q);
            continue;
        }
        p->t = t;
        snprintf(p->name, sizeof p->name, "(accepted)");
        ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                                            UCP_EP_PARAM_FIELD_ERR_HANDLER |
                                            UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
                              .conn_request = q->req,
                              .err_mode = UCP_ERR_HANDLING_MODE_PEER,
                              .err_handler = {.cb = ep_error_cb, .arg = p}};
        free(q);
        ucs_status_t s = ucp_ep_create(t->worker, &ep, &p->ep);
        if (s != UCS_OK) {
            NXC_LOG_I("ucx: connector %s could not accept a connection: %s",
                      nxc__connector_name(t->base.c), ucs_status_string(s));
            free(p);
            continue;
        }
        p->id = p->ep;
        t->accepted++;
        list_peer(t, p);
    }
}

/* Forget `p`, which is on the list (its callers walk t->peers). */
static void unlist_peer(ucx_tp_t *t, ucx_peer_t *p) {
    NXC__LIST_UNLINK(ucx_peer_t, t->peers, p);
    if (!p->bound) t->accepted--;
    peer_unref(p);
}

/* --- sending ------------------------------------------------------------------------ */

static void send_done_cb(void *req, ucs_status_t status, void *user) {
    send_ctx_t *sc = user;
    if (sc->op) {
        nxc__op_io_end(sc->op);
        if (status != UCS_OK && nxc__op_tp_state(sc->op))
            aop_fail(sc->op, NXC_ERR_PEER_FAILED, "sending to the peer failed: %s",
                     ucs_status_string(status));
    }
    sc->t->dirty = true;
    free(sc);
    ucp_request_free(req);
}

/* Send an active message on `ep` (copied, so the caller's bytes may go);
 * `op` (may be NULL) counts it as in flight. */
static ucs_status_t ep_send(ucx_tp_t *t, ucp_ep_h ep, unsigned id, const void *a, size_t alen,
                            const void *b, size_t blen, nxc_op_t *op, uint32_t flags) {
    send_ctx_t *sc = malloc(sizeof *sc + alen + blen);
    if (!sc) return UCS_ERR_NO_MEMORY;
    sc->t = t;
    sc->op = op;
    sc->len = alen + blen;
    memcpy(sc->buf, a, alen);
    if (blen) memcpy(sc->buf + alen, b, blen);
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_EAGER | flags,
                              .cb.send = send_done_cb,
                              .user_data = sc};
    ucs_status_ptr_t r = ucp_am_send_nbx(ep, id, NULL, 0, sc->buf, sc->len, &rp);
    if (r == NULL || UCS_PTR_IS_ERR(r)) {
        free(sc);
        return UCS_PTR_STATUS(r);
    }
    if (op) nxc__op_io_begin(op);
    return UCS_OK;
}

/* Send an active message to a peer; `op` (may be NULL) counts it. */
static nxc_status_t am_send(ucx_tp_t *t, ucx_peer_t *p, unsigned id, const void *a, size_t alen,
                            const void *b, size_t blen, nxc_op_t *op, uint32_t flags) {
    if (p->failed || !p->ep)
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: peer %s is disconnected", p->name);
    ucs_status_t s = ep_send(t, p->ep, id, a, alen, b, blen, op, flags);
    if (s == UCS_ERR_NO_MEMORY) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    if (s != UCS_OK)
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: send to peer %s: %s", p->name,
                        ucs_status_string(s));
    return NXC_OK;
}

static void send_done_msg(ucx_tp_t *t, ucx_peer_t *p, uint64_t grant_id, bool complete,
                          nxc_op_t *op) {
    msg_done_t m = {.magic = MSG_MAGIC, .complete = complete, .grant_id = grant_id};
    memcpy(m.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    if (am_send(t, p, AM_DONE, &m, sizeof m, NULL, 0, op, UCP_AM_SEND_FLAG_REPLY) != NXC_OK && op)
        aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
}

static void data_sent_cb(void *req, ucs_status_t status, void *user) {
    data_ctx_t *dc = user;
    nxc__op_io_end(dc->op);
    if (status != UCS_OK && nxc__op_tp_state(dc->op))
        aop_fail(dc->op, NXC_ERR_PEER_FAILED, "sending data to the peer failed: %s",
                 ucs_status_string(status));
    dc->t->dirty = true;
    free(dc);
    ucp_request_free(req);
}

/* Send `len` bytes at `data` with header `hdr` (copied); the send counts in
 * as in flight on `op` until UCX no longer reads `data`. */
static nxc_status_t send_data(ucx_tp_t *t, ucx_peer_t *p, unsigned id, const void *hdr,
                              size_t hdr_len, const void *data, size_t len, nxc_op_t *op) {
    if (p->failed || !p->ep)
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: peer %s is disconnected", p->name);
    data_ctx_t *dc = malloc(sizeof *dc);
    if (!dc) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    dc->t = t;
    dc->op = op;
    memcpy(&dc->hdr, hdr, hdr_len);
    ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                              UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_AM_SEND_FLAG_EAGER | UCP_AM_SEND_FLAG_REPLY,
                              .cb.send = data_sent_cb,
                              .user_data = dc};
    ucs_status_ptr_t r = ucp_am_send_nbx(p->ep, id, &dc->hdr, hdr_len, data, len, &rp);
    if (r == NULL) {
        free(dc);
        return NXC_OK;
    }
    if (UCS_PTR_IS_ERR(r)) {
        free(dc);
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: send to peer %s: %s", p->name,
                        ucs_status_string(UCS_PTR_STATUS(r)));
    }
    nxc__op_io_begin(op);
    return NXC_OK;
}

/* --- active ops ------------------------------------------------------------------------ */

static void rma_done_cb(void *req, ucs_status_t status, void *user) {
    nxc_op_t *op = user;
    nxc__op_io_end(op);
    if (status != UCS_OK)
        aop_fail(op, NXC_ERR_PEER_FAILED, "transfer with peer %s failed: %s",
                 ((ucx_aop_t *)nxc__op_tp_state(op))->peer->name, ucs_status_string(status));
    ucx_of(nxc__op_tp(op))->dirty = true;
    ucp_request_free(req);
}

/* Count a request returned by a *_nbx call. */
static void track(nxc_op_t *op, ucs_status_ptr_t r, const char *what) {
    if (r == NULL) return;
    if (UCS_PTR_IS_ERR(r)) {
        aop_fail(op, NXC_ERR_TRANSPORT, "%s: %s", what, ucs_status_string(UCS_PTR_STATUS(r)));
        return;
    }
    nxc__op_io_begin(op);
}

/* Granted, message path. A write sends each segment in chunks; a read asks
 * for each segment and waits for its bytes. The passive side checks every
 * message against the grant before touching memory. */
static void start_moving_am(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    const nxc_connector_t *c = t->base.c;
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    a->stage = S_MOVE;
    nxc__op_progressing(op);
    if (nxc__op_kind(op) == NXC_OP_READ) {
        a->await_bytes = nxc__op_total(op);
        nxc__op_io_begin(op); /* released when the last byte arrived, or on failure */
    }
    for (size_t i = 0; i < nsegs && a->error == NXC_OK; i++) {
        const nxc__seg_t *sg = &segs[i];
        uint64_t remote = nxc__seg_remote(sg, nxc__op_peer_md(op), 0);
        char *local = nxc__seg_local(sg, bufs, 0);
        msg_range_t h = {.magic = MSG_MAGIC,
                         .seg = (uint32_t)i,
                         .grant_id = a->grant_id,
                         .req_id = a->req_id,
                         .addr = remote,
                         .len = sg->len};
        memcpy(h.instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
        if (nxc__op_kind(op) == NXC_OP_READ) {
            if (am_send(t, a->peer, AM_READ_REQ, &h, sizeof h, NULL, 0, NULL,
                        UCP_AM_SEND_FLAG_REPLY) != NXC_OK)
                aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
            continue;
        }
        for (uint64_t off = 0; off < sg->len && a->error == NXC_OK; off += CHUNK) {
            h.addr = remote + off;
            h.len = sg->len - off < CHUNK ? sg->len - off : CHUNK;
            if (send_data(t, a->peer, AM_DATA, &h, sizeof h, local + off, h.len, op) != NXC_OK)
                aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
        }
    }
}

/* Stop waiting for a message-path read's bytes (failure or cancel). */
static void stop_awaiting(nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (a && a->await_bytes) {
        a->await_bytes = 0;
        nxc__op_io_end(op);
    }
}

/* The get/put path's rkeys come from the metadata. Whatever can be checked
 * is checked at begin, against the worker address in the peer's connection
 * info (ucx_check.c): length and structure, memory type, md map, entry
 * sizes. A damaged key then fails the call rather than the op later, and
 * never reaches ucp_ep_rkey_unpack(), which reads as many entries as its md
 * map names, indexes tables with its memory type and attaches the shared
 * memory segments it names. (Sending the keys in GRANT_REP instead would keep
 * damaged metadata away from them, but not a hostile passive peer: the check
 * is the defence either way, so the keys stay where NIXL has them.) */
static nxc_status_t check_rkeys(const nxc_op_t *op, const nxc__md_section_t *sec,
                                const nxc__ucx_addr_info_t *info) {
    char why[160];
    for (size_t i = 0; i < nxc__op_peer_md(op)->ndesc; i++) {
        const nxc__bytes_t *key = &sec->keys[i];
        unsigned mem_type = nxc__op_peer_md(op)->descs[i].device.kind == NXC_DEVICE_CUDA
                                ? UCS_MEMORY_TYPE_CUDA
                                : UCS_MEMORY_TYPE_HOST;
        if (key->len == 0)
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "ucx: descriptor %zu has no ucx key (the get/put path needs one)", i);
        if (!nxc__ucx_rkey_check(key->data, key->len, info, mem_type, why, sizeof why))
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "ucx: descriptor %zu: malformed ucx key: %s", i, why);
    }
    return NXC_OK;
}

/* Unpack a checked key from a zero-padded copy (see connect_peer()). */
static ucs_status_t unpack_rkey(ucp_ep_h ep, const nxc__bytes_t *key, ucp_rkey_h *rkey_p) {
    uint8_t *copy = calloc(1, (size_t)key->len + NXC__UCX_PAD);
    if (!copy) return UCS_ERR_NO_MEMORY;
    memcpy(copy, key->data, key->len);
    ucs_status_t s = ucp_ep_rkey_unpack(ep, copy, rkey_p);
    free(copy);
    return s;
}

/* Granted, RMA path: unpack the peer's keys (checked at begin) and post one
 * get/put per segment, then a flush that completes once every byte reached
 * its target. */
static void start_moving(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (!t->use_rma) return start_moving_am(t, op);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    const nxc__md_section_t *sec = nxc__md_section(md, "ucx");
    a->rkeys = calloc(md->ndesc, sizeof *a->rkeys);
    if (!a->rkeys) return aop_fail(op, NXC_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < md->ndesc; i++) {
        ucs_status_t s = unpack_rkey(a->peer->ep, &sec->keys[i], &a->rkeys[i]);
        if (s != UCS_OK)
            return aop_fail(op, NXC_ERR_TRANSPORT, "ucp_ep_rkey_unpack: %s", ucs_status_string(s));
        a->nrkeys = i + 1;
    }
    a->stage = S_MOVE;
    nxc__op_progressing(op);
    for (size_t i = 0; i < nsegs && a->error == NXC_OK; i++) {
        const nxc__seg_t *sg = &segs[i];
        ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                                                  UCP_OP_ATTR_FIELD_USER_DATA |
                                                  UCP_OP_ATTR_FIELD_MEMH,
                                  .cb.send = rma_done_cb,
                                  .user_data = op,
                                  .memh = a->lregs[sg->local_idx]->handle};
        char *local = nxc__seg_local(sg, bufs, 0);
        uint64_t remote = nxc__seg_remote(sg, md, 0);
        ucp_rkey_h rkey = a->rkeys[sg->remote_idx];
        if (nxc__op_kind(op) == NXC_OP_READ)
            track(op, ucp_get_nbx(a->peer->ep, local, sg->len, remote, rkey, &rp), "ucp_get_nbx");
        else
            track(op, ucp_put_nbx(a->peer->ep, local, sg->len, remote, rkey, &rp), "ucp_put_nbx");
    }
    ucp_request_param_t fp = {.op_attr_mask =
                                  UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = rma_done_cb,
                              .user_data = op};
    track(op, ucp_ep_flush_nbx(a->peer->ep, &fp), "ucp_ep_flush_nbx");
}

static void wire_up_cb(void *req, ucs_status_t status, void *user) {
    ucx_peer_t *p = user;
    p->wire = WIRE_DONE; /* or failed: the error callback tells the ops */
    p->t->dirty = true;
    ucp_request_free(req);
    peer_unref(p);
}

/* On first contact a GRANT_REQ waits until our new endpoint is connected
 * (a flush of it completes), so that a peer we cannot reach fails the op as
 * UNREACHABLE before anything was asked of it. Once per peer. */
static void start_wire_up(ucx_tp_t *t, ucx_peer_t *p) {
    if (p->wire != WIRE_UNKNOWN || p->failed || !p->ep) return;
    ucp_request_param_t rp = {.op_attr_mask =
                                  UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = wire_up_cb,
                              .user_data = p};
    ucs_status_ptr_t r = ucp_ep_flush_nbx(p->ep, &rp);
    p->wire = UCS_PTR_IS_PTR(r) ? WIRE_PENDING : WIRE_DONE;
    if (UCS_PTR_IS_PTR(r)) p->refs++;
}

/* GRANT_REQ: fixed part, then key, our name, the ranges. */
static nxc_status_t send_grant_req(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    const nxc_connector_t *c = t->base.c;
    size_t klen = strlen(nxc__op_key(op)), nlen = strlen(nxc__connector_name(c));
    size_t vlen = klen + nlen + md->ndesc * sizeof(nxc__range_t);
    uint8_t *var = malloc(vlen);
    if (!var) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    uint8_t *w = var;
    memcpy(w, nxc__op_key(op), klen), w += klen;
    memcpy(w, nxc__connector_name(c), nlen), w += nlen;
    for (size_t i = 0; i < md->ndesc; i++, w += sizeof(nxc__range_t))
        memcpy(w, &(nxc__range_t){md->descs[i].addr, md->descs[i].size}, sizeof(nxc__range_t));
    msg_grant_req_t m = {.magic = MSG_MAGIC,
                         .md_kind = (uint8_t)md->operation_kind,
                         .key_len = (uint16_t)klen,
                         .addr_len = 0,
                         .nranges = (uint32_t)md->ndesc,
                         .name_len = (uint16_t)nlen,
                         .req_id = a->req_id};
    memcpy(m.instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
    memcpy(m.want, md->instance, NXC__INSTANCE_LEN);
    memcpy(m.secret, md->secret, NXC__SECRET_LEN);
    /* Not counted as in flight: it carries no user memory, so a cancel need
     * not wait for a peer that never reads it. */
    nxc_status_t st =
        am_send(t, a->peer, AM_GRANT_REQ, &m, sizeof m, var, vlen, NULL, UCP_AM_SEND_FLAG_REPLY);
    free(var);
    a->req_sent = st == NXC_OK;
    return st;
}

/* Move an idle active op to its next stage, or finish it. */
static void advance(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (nxc__op_io_pending(op) || nxc__op_terminal(op)) return;
    if (a->error == NXC_OK && a->stage == S_GRANT && !a->req_sent && a->peer->wire == WIRE_DONE &&
        send_grant_req(t, op) != NXC_OK)
        aop_fail(op, NXC_ERR_UNREACHABLE, "%s", nxc_last_error());
    if (a->error != NXC_OK) {
        if (a->grant_id && !a->peer->failed && !a->gave_up_sent) {
            a->gave_up_sent = true; /* free the passive op for another peer */
            send_done_msg(t, a->peer, a->grant_id, false, op);
            if (nxc__op_io_pending(op)) return;
        }
        nxc__op_finish(op, a->error, "%s", a->why);
        return;
    }
    if (a->stage == S_MOVE) {
        a->stage = S_NOTIFY;
        send_done_msg(t, a->peer, a->grant_id, true, op);
        if (nxc__op_io_pending(op) || a->error != NXC_OK) return advance(t, op);
    }
    if (a->stage == S_NOTIFY) nxc__op_finish(op, NXC_OK, "%s", "");
}

/* Add `a` to the request-id index; false when out of memory. */
static bool index_aop(ucx_tp_t *t, ucx_aop_t *a) {
    ucx_aop_t *found = NULL;
    HASH_ADD(by_req, t->aops_by_req, req_id, sizeof a->req_id, a);
    HASH_FIND(by_req, t->aops_by_req, &a->req_id, sizeof a->req_id, found);
    a->indexed = found == a; /* uthash leaves it out if its table failed */
    return a->indexed;
}

static nxc_status_t ucx_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec) {
    ucx_tp_t *t = ucx_of(tp);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    /* Checked even when an endpoint to this peer is cached: the same text
     * must get the same answer. */
    char why[160];
    nxc__ucx_addr_info_t info;
    if (!nxc__ucx_conn_check(sec->conn.data, sec->conn.len, &info, NULL, NULL, why, sizeof why))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "ucx: the peer's connection info is malformed: %s", why);
    ucx_aop_t *a = calloc(1, sizeof *a);
    if (!a) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    nxc__op_set_tp_state(op, a);
    size_t nbufs;
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    a->lregs = calloc(nbufs, sizeof *a->lregs);
    if (!a->lregs) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    for (size_t i = 0; t->use_rma && i < nbufs; i++) {
        nxc_status_t st = nxc__regcache_get(&t->rc, bufs[i].ptr, bufs[i].size, &a->lregs[i]);
        if (st != NXC_OK) return st;
    }
    nxc_status_t st = get_peer(t, md->instance, md->name, sec->conn.data, sec->conn.len, &a->peer);
    if (st != NXC_OK) return st;
    a->peer->refs++;
    if (t->use_rma && (st = check_rkeys(op, sec, &info)) != NXC_OK) return st;
    a->req_id = ++t->next_req_id;
    a->op = op;
    if (!index_aop(t, a)) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    a->stage = S_GRANT;
    start_wire_up(t, a->peer);
    if (a->peer->wire != WIRE_DONE) return NXC_OK; /* advance() sends it */
    st = send_grant_req(t, op);
    return st == NXC_ERR_PEER_FAILED ? NXC_ERR_UNREACHABLE : st;
}

static void ucx_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_aop_t *a = nxc__op_tp_state(op);
    stop_awaiting(op); /* late bytes are dropped by the receive check */
    aop_fail(op, why, "%s", why == NXC_ERR_TIMED_OUT ? "the op's deadline passed" : "cancelled");
    /* A read hands its grant back at once, even with a get still in flight
     * (reading changes nothing): if the get outlasts the drain and the
     * endpoint is cut, the owner must not take that for a dead reader and
     * fail its readable. A write waits until nothing is in flight (its
     * memory must not change after the grant is back). */
    if (nxc__op_kind(op) == NXC_OP_READ && a && a->grant_id && !a->peer->failed &&
        !a->gave_up_sent) {
        a->gave_up_sent = true;
        send_done_msg(t, a->peer, a->grant_id, false, op);
    }
    advance(t, op);
}

static void ucx_force(nxc__tp_t *tp, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    ucx_tp_t *t = ucx_of(tp);
    stop_awaiting(op);
    if (!a->peer->failed) {
        a->peer->failed = true;
        a->peer->status = UCS_ERR_CANCELED;
        t->dirty = true;
    }
    finish_close(t, a->peer);
    advance(t, op);
}

static void ucx_release(nxc__tp_t *tp, nxc_op_t *op) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_aop_t *a = nxc__op_tp_state(op);
    for (size_t i = 0; i < a->nrkeys; i++)
        ucp_rkey_destroy(a->rkeys[i]);
    free(a->rkeys);
    size_t nbufs;
    nxc__op_local(op, &nbufs);
    for (size_t i = 0; a->lregs && i < nbufs; i++)
        nxc__regcache_put(&t->rc, a->lregs[i]);
    free(a->lregs);
    if (a->peer) peer_unref(a->peer);
    if (a->indexed) HASH_DELETE(by_req, t->aops_by_req, a);
    free(a);
    nxc__op_set_tp_state(op, NULL);
}

/* --- passive ops ------------------------------------------------------------------------ */

typedef struct exposed {
    size_t n;
    nxc__reg_t *regs[];
} exposed_t;

static nxc_status_t ucx_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec,
                               void **state_p) {
    ucx_tp_t *t = ucx_of(tp);
    size_t nbufs;
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    exposed_t *e = calloc(1, sizeof *e + nbufs * sizeof(nxc__reg_t *));
    sec->keys = calloc(nbufs, sizeof *sec->keys);
    if (!e || !sec->keys) {
        free(e);
        free(sec->keys);
        sec->keys = NULL;
        return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    }
    for (size_t i = 0; i < nbufs; i++) {
        nxc_status_t st = nxc__regcache_get(&t->rc, bufs[i].ptr, bufs[i].size, &e->regs[i]);
        if (st != NXC_OK) {
            for (size_t j = 0; j < e->n; j++)
                nxc__regcache_put(&t->rc, e->regs[j]);
            free(e);
            free(sec->keys);
            sec->keys = NULL;
            return st;
        }
        e->n = i + 1;
        sec->keys[i] = (nxc__bytes_t){e->regs[i]->key, (uint32_t)e->regs[i]->key_len};
    }
    snprintf(sec->name, sizeof sec->name, "ucx");
    sec->conn = (nxc__bytes_t){t->conn, (uint32_t)t->conn_len};
    *state_p = e;
    return NXC_OK;
}

/* nxc_mem_register(): one cache reference per buffer, held until
 * mem_deregister (ops over the memory then find the entries). */
typedef struct pinned {
    size_t n;
    nxc__reg_t *regs[];
} pinned_t;

static nxc_status_t ucx_mem_register(nxc__tp_t *tp, const nxc_desc_t *descs, size_t n,
                                     void **state_p) {
    ucx_tp_t *t = ucx_of(tp);
    pinned_t *p = calloc(1, sizeof *p + n * sizeof p->regs[0]);
    if (!p) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    for (size_t i = 0; i < n; i++) {
        nxc_status_t st = nxc__regcache_get(&t->rc, descs[i].ptr, descs[i].size, &p->regs[i]);
        if (st != NXC_OK) {
            for (size_t j = 0; j < p->n; j++)
                nxc__regcache_put(&t->rc, p->regs[j]);
            free(p);
            return st;
        }
        p->n = i + 1;
    }
    *state_p = p;
    return NXC_OK;
}

static void ucx_mem_deregister(nxc__tp_t *tp, void *state) {
    pinned_t *p = state;
    for (size_t i = 0; i < p->n; i++)
        nxc__regcache_put(&ucx_of(tp)->rc, p->regs[i]);
    free(p);
}

static void ucx_reg_stats(nxc__tp_t *tp, uint64_t *made, uint64_t *reused) {
    *made = ucx_of(tp)->rc.misses;
    *reused = ucx_of(tp)->rc.hits;
}

static void ucx_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    exposed_t *e = state;
    for (size_t i = 0; i < e->n; i++)
        nxc__regcache_put(&ucx_of(tp)->rc, e->regs[i]);
    free(e);
}

static void ucx_drop_peer(nxc__tp_t *tp, void *grant_peer) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_peer_t *p = grant_peer;
    if (!p->failed) {
        p->failed = true;
        p->status = UCS_ERR_CANCELED;
    }
    finish_close(t, p);
    t->dirty = true;
}

/* --- received messages ----------------------------------------------------------------- */

static nxc_op_t *find_aop(ucx_tp_t *t, uint64_t req_id) {
    ucx_aop_t *a = NULL;
    HASH_FIND(by_req, t->aops_by_req, &req_id, sizeof req_id, a);
    return a ? a->op : NULL;
}

/* Queue a received message; it is handled after ucp_worker_progress returns,
 * where sending and connecting are safe. */
static ucs_status_t enqueue(ucx_tp_t *t, unsigned id, const void *data, size_t length,
                            const ucp_am_recv_param_t *param) {
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) return UCS_OK; /* never sent: drop */
    if (length > (8u << 20)) return UCS_OK;
    inbox_msg_t *m = malloc(sizeof *m + length);
    if (!m) return UCS_OK;
    m->from = reply_ep(param);
    m->id = id;
    m->len = length;
    memcpy(m->data, data, length);
    NXC__QUEUE_APPEND(t->inbox, t->inbox_tail, m);
    return UCS_OK;
}

/* UCX does not pass the message id to the callback: one handler per id. */
#define AM_HANDLER(ID)                                                                             \
    static ucs_status_t am_cb_##ID(void *arg, const void *h, size_t hl, void *d, size_t l,         \
                                   const ucp_am_recv_param_t *p) {                                 \
        return enqueue(arg, ID, d, l, p);                                                          \
    }
AM_HANDLER(AM_GRANT_REP)
AM_HANDLER(AM_DONE)
AM_HANDLER(AM_READ_REQ)

/* Bytes for a writable (message path): land them only inside a live grant.
 * Runs inside ucp_worker_progress (connector lock held) to avoid a copy. */
static ucs_status_t am_data_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                               const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    msg_range_t h;
    if (hlen != sizeof h || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return UCS_OK;
    memcpy(&h, hdr, sizeof h);
    ucx_peer_t *p = peer_of_ep(t, reply_ep(param), h.instance, false);
    nxc_op_t *op = h.magic == MSG_MAGIC && h.len == len && p
                       ? nxc__grant_op(t->base.c, p, h.grant_id, NXC_OP_WRITABLE, h.addr, h.len)
                       : NULL;
    if (op)
        memcpy((void *)(uintptr_t)h.addr, data, len);
    else
        NXC_LOG_D("ucx: dropped %zu bytes outside any live grant", len);
    return UCS_OK;
}

/* Bytes of a readable (message path) for one of our read ops. */
static ucs_status_t am_read_data_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                                    const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    msg_read_data_t h;
    if (hlen != sizeof h || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return UCS_OK;
    memcpy(&h, hdr, sizeof h);
    nxc_op_t *op = h.magic == MSG_MAGIC ? find_aop(t, h.req_id) : NULL;
    ucx_aop_t *a = op ? nxc__op_tp_state(op) : NULL;
    if (!a || t->use_rma || a->stage != S_MOVE || a->error != NXC_OK || !a->await_bytes)
        return UCS_OK; /* late or cancelled: drop */
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    if (h.seg >= nsegs || h.off > segs[h.seg].len || len > segs[h.seg].len - h.off ||
        len > a->await_bytes)
        return UCS_OK; /* bogus: drop */
    const nxc__seg_t *sg = &segs[h.seg];
    memcpy(nxc__seg_local(sg, bufs, h.off), data, len);
    a->await_bytes -= len;
    if (a->await_bytes == 0) {
        nxc__op_io_end(op);
        t->dirty = true;
    }
    return UCS_OK;
}

/* A GRANT_REQ taken apart: lengths checked against the bytes present,
 * nothing interpreted yet. addr (always empty from nxc: see ucx_wire.h) and
 * ranges point into the message. */
typedef struct grant_req {
    msg_grant_req_t m;
    char key[NXC_KEY_MAX + 1], name[NXC_NAME_MAX + 1];
    const uint8_t *addr, *ranges;
} grant_req_t;

static bool parse_grant_req(const uint8_t *d, size_t len, grant_req_t *q) {
    const msg_grant_req_t *m = &q->m;
    if (len < sizeof *m) return false;
    memcpy(&q->m, d, sizeof *m);
    size_t need = (size_t)m->key_len + m->addr_len + m->name_len;
    if (m->magic != MSG_MAGIC || m->key_len == 0 || m->key_len > NXC_KEY_MAX ||
        m->name_len > NXC_NAME_MAX || m->nranges > MAX_RANGES ||
        len - sizeof *m != need + (size_t)m->nranges * sizeof(nxc__range_t))
        return false;
    const uint8_t *p = d + sizeof *m;
    if (memchr(p, 0, m->key_len)) return false; /* a key is text */
    memcpy(q->key, p, m->key_len), q->key[m->key_len] = '\0', p += m->key_len;
    q->addr = p, p += m->addr_len;
    memcpy(q->name, p, m->name_len), q->name[m->name_len] = '\0', p += m->name_len;
    q->ranges = p;
    return true;
}

/* Is there a live passive op with this key and secret? A pre-check, so that
 * a stranger's request goes no further; nxc__grant_open() still decides. */
static bool authentic(ucx_tp_t *t, const char *key, const uint8_t *secret) {
    return nxc__passive_known(t->base.c, key, secret);
}

/* Refuse a grant request on the endpoint it came on (the requester sends
 * with UCP_AM_SEND_FLAG_REPLY), so that answering uses nothing it wrote. */
static void refuse_on_reply_ep(ucx_tp_t *t, const ucp_am_recv_param_t *param, uint64_t req_id,
                               nxc_status_t st, const char *why) {
    NXC_LOG_I("ucx: connector %s refused a grant request: %s", nxc__connector_name(t->base.c), why);
    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || !param->reply_ep) return;
    msg_grant_rep_t rep = {.magic = MSG_MAGIC, .status = st, .req_id = req_id};
    memcpy(rep.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    ep_send(t, param->reply_ep, AM_GRANT_REP, &rep, sizeof rep, why, strlen(why), NULL, 0);
}

/* A grant request is screened where it arrives, before anything in it is
 * used: the connector it wants, then its key and secret, then the endpoint
 * it came on, which must be one of ours (made through our listener, or by
 * us) that is not bound to another connector, and it must carry no address
 * (nxc never connects to an address a request names). A refusal goes back
 * on the endpoint the request came on; only a request that passes is
 * queued, to be answered on that endpoint. Runs inside ucp_worker_progress
 * (connector lock held). */
static ucs_status_t am_grant_req_cb(void *arg, const void *h, size_t hl, void *d, size_t len,
                                    const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    const nxc_connector_t *c = t->base.c;
    grant_req_t q;
    if (t->closing || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return UCS_OK;
    if (!parse_grant_req(d, len, &q)) {
        NXC_LOG_W("ucx: dropped a malformed grant request (%zu bytes)", len);
        return UCS_OK;
    }
    char why[NXC_NAME_MAX + 160];
    ucx_peer_t *p = NULL;
    if (memcmp(q.m.want, nxc__connector_instance(c), NXC__INSTANCE_LEN)) {
        snprintf(why, sizeof why,
                 "the worker at its address belongs to another connector (%s); the one the "
                 "metadata names is gone",
                 nxc__connector_name(c));
        refuse_on_reply_ep(t, param, q.m.req_id, NXC_ERR_UNREACHABLE, why);
    } else if (!authentic(t, q.key, q.m.secret)) {
        refuse_on_reply_ep(t, param, q.m.req_id, NXC_ERR_REFUSED,
                           "no live operation with this key (released, or never existed)");
    } else if (q.m.addr_len != 0) {
        refuse_on_reply_ep(t, param, q.m.req_id, NXC_ERR_TRANSPORT,
                           "the request names an address (nxc answers on the endpoint a "
                           "request came on)");
    } else if (!(p = peer_of_ep(t, reply_ep(param), NULL, false)) ||
               (p->bound && memcmp(p->instance, q.m.instance, NXC__INSTANCE_LEN))) {
        snprintf(why, sizeof why, "the request came on %s",
                 p ? "an endpoint of another connector"
                   : "no endpoint of this connector's (connect through its listener)");
        refuse_on_reply_ep(t, param, q.m.req_id, NXC_ERR_TRANSPORT, why);
    } else {
        return enqueue(t, AM_GRANT_REQ, d, len, param);
    }
    return UCS_OK;
}

/* A screened grant request: the first one on an endpoint our listener
 * accepted names the connector at its other end; let the core decide,
 * answer on that endpoint. */
static void on_grant_req(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len) {
    grant_req_t q;
    if (!parse_grant_req(d, len, &q)) return;
    ucx_peer_t *peer = peer_of_ep(t, from, NULL, false);
    if (!peer || (peer->bound && memcmp(peer->instance, q.m.instance, NXC__INSTANCE_LEN)))
        return; /* failed meanwhile, or bound by an earlier request in the inbox */
    if (!peer->bound) {
        peer->bound = true;
        t->accepted--;
        memcpy(peer->instance, q.m.instance, NXC__INSTANCE_LEN);
        snprintf(peer->name, sizeof peer->name, "%s", q.name);
    }
    nxc__range_t *ranges = malloc((q.m.nranges ? q.m.nranges : 1) * sizeof *ranges);
    if (!ranges) return;
    memcpy(ranges, q.ranges, q.m.nranges * sizeof *ranges);
    msg_grant_rep_t rep = {.magic = MSG_MAGIC, .req_id = q.m.req_id};
    memcpy(rep.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    char why[160] = "";
    rep.status = nxc__grant_open(t->base.c, &t->base, peer, q.key, q.m.secret, q.m.md_kind, ranges,
                                 q.m.nranges, &rep.grant_id, why, sizeof why);
    free(ranges);
    if (am_send(t, peer, AM_GRANT_REP, &rep, sizeof rep, why, strlen(why), NULL, 0) != NXC_OK &&
        rep.status == NXC_OK)
        nxc__grant_close(t->base.c, peer, rep.grant_id, false);
}

static nxc_status_t rep_status(int32_t s) {
    return s == NXC_ERR_REFUSED || s == NXC_ERR_UNREACHABLE ? (nxc_status_t)s : NXC_ERR_TRANSPORT;
}

static void on_grant_rep(ucx_tp_t *t, const uint8_t *d, size_t len) {
    msg_grant_rep_t m;
    if (len < sizeof m || len - sizeof m > 512) return;
    memcpy(&m, d, sizeof m);
    if (m.magic != MSG_MAGIC) return;
    char why[513];
    memcpy(why, d + sizeof m, len - sizeof m);
    why[len - sizeof m] = '\0';
    nxc_op_t *op = find_aop(t, m.req_id);
    ucx_aop_t *a = op ? nxc__op_tp_state(op) : NULL;
    if (!a || nxc__op_terminal(op) || a->stage != S_GRANT) {
        /* The op is gone (cancelled): hand a grant straight back. */
        ucx_peer_t *p = find_peer(t, m.instance);
        if (m.status == NXC_OK && p) send_done_msg(t, p, m.grant_id, false, NULL);
        return;
    }
    if (memcmp(a->peer->instance, m.instance, NXC__INSTANCE_LEN)) {
        /* The metadata's worker address now belongs to another connector:
         * the one it names is gone, as tcp and shm report it too. */
        if (m.status == NXC_OK) send_done_msg(t, a->peer, m.grant_id, false, NULL);
        aop_fail(op, NXC_ERR_UNREACHABLE, "could not reach connector %s: %s",
                 nxc__op_peer_md(op)->name,
                 why[0] ? why : "the worker at its address answers as another connector");
    } else if (m.status != NXC_OK) {
        aop_fail(op, rep_status(m.status), "peer %s refused the transfer: %s", a->peer->name, why);
    } else {
        a->grant_id = m.grant_id;
        if (a->error == NXC_OK) start_moving(t, op);
    }
    advance(t, op);
}

static void on_done(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len) {
    msg_done_t m;
    if (len != sizeof m) return;
    memcpy(&m, d, sizeof m);
    ucx_peer_t *p = peer_of_ep(t, from, m.instance, true);
    if (m.magic != MSG_MAGIC || !p) return;
    nxc__grant_close(t->base.c, p, m.grant_id, m.complete == 1);
}

/* A reader asks for a range of a readable (message path): check it against
 * its grant, then send the bytes in chunks. */
static void on_read_req(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len) {
    msg_range_t h;
    if (len != sizeof h) return;
    memcpy(&h, d, sizeof h);
    ucx_peer_t *p = peer_of_ep(t, from, h.instance, false);
    nxc_op_t *op = h.magic == MSG_MAGIC && p
                       ? nxc__grant_op(t->base.c, p, h.grant_id, NXC_OP_READABLE, h.addr, h.len)
                       : NULL;
    if (!op) {
        NXC_LOG_D("ucx: refused a read outside any live grant");
        return;
    }
    for (uint64_t off = 0; off < h.len; off += CHUNK) {
        msg_read_data_t r = {.magic = MSG_MAGIC, .seg = h.seg, .req_id = h.req_id, .off = off};
        uint64_t n = h.len - off < CHUNK ? h.len - off : CHUNK;
        if (send_data(t, p, AM_READ_DATA, &r, sizeof r, (const char *)(uintptr_t)h.addr + off, n,
                      op) != NXC_OK)
            break; /* the peer is gone; its failure ends the op */
    }
}

static int process_inbox(ucx_tp_t *t) {
    int n = 0;
    while (t->inbox) {
        inbox_msg_t *m;
        NXC__QUEUE_POP(t->inbox, t->inbox_tail, m);
        if (m->id == AM_GRANT_REQ)
            on_grant_req(t, m->from, m->data, m->len);
        else if (m->id == AM_GRANT_REP)
            on_grant_rep(t, m->data, m->len);
        else if (m->id == AM_DONE)
            on_done(t, m->from, m->data, m->len);
        else if (m->id == AM_READ_REQ)
            on_read_req(t, m->from, m->data, m->len);
        free(m);
        n++;
    }
    return n;
}

/* Tell the ops of every newly failed peer, close its endpoint, forget it. */
static void process_failures(ucx_tp_t *t) {
    for (ucx_peer_t *p = t->peers, *next; p; p = next) {
        next = p->next;
        if (!p->failed || p->handled) continue;
        p->handled = true;
        char why[NXC_NAME_MAX + 96];
        snprintf(why, sizeof why, "peer %s disconnected (%s)", p->name,
                 ucs_status_string(p->status));
        for (nxc_op_t *op = nxc__tp_next_op(&t->base, NULL); op;
             op = nxc__tp_next_op(&t->base, op)) {
            ucx_aop_t *a = nxc__op_tp_state(op);
            if (a->peer != p) continue;
            /* as on tcp and shm: a peer lost before it could be asked is
             * unreachable; once our request went out on a connected
             * endpoint, it may have granted and begun: it failed */
            if (a->stage == S_GRANT && !a->req_sent)
                aop_fail(op, NXC_ERR_UNREACHABLE, "could not reach peer %s (%s)", p->name,
                         ucs_status_string(p->status));
            else
                aop_fail(op, NXC_ERR_PEER_FAILED, "%s", why);
            stop_awaiting(op);
        }
        nxc__peer_lost(t->base.c, p, why);
        finish_close(t, p);
        unlist_peer(t, p);
    }
}

static int ucx_progress(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    int n = 0;
    t->last_progress = nxc__now_ns();
    for (int i = 0; i < 1000 && ucp_worker_progress(t->worker); i++)
        n++;
    n += process_inbox(t);
    if (t->conn_reqs) {
        accept_conn_reqs(t);
        n++;
    }
    if (t->dirty) {
        t->dirty = false;
        process_failures(t);
        for (nxc_op_t *op = nxc__tp_next_op(tp, NULL); op; op = nxc__tp_next_op(tp, op))
            advance(t, op);
        n++;
    }
    return n;
}

/* With peers, progress at least once per keepalive interval (see
 * last_progress). */
static uint64_t ucx_next_timer(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    return t->peers ? t->last_progress + KEEPALIVE_NS : UINT64_MAX;
}

static bool ucx_arm(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    if (t->inbox || t->dirty || t->conn_reqs) return false;
    return ucp_worker_arm(t->worker) != UCS_ERR_BUSY;
}

static int ucx_event_fd(nxc__tp_t *tp) {
    return ucx_of(tp)->efd;
}

static bool ucx_supports_device(nxc__tp_t *tp, nxc_device_kind_t kind) {
    return kind == NXC_DEVICE_HOST || (kind == NXC_DEVICE_CUDA && ucx_of(tp)->cuda);
}

static nxc_status_t ucx_reachable(nxc__tp_t *tp, const nxc__metadata_t *md,
                                  const nxc__md_section_t *sec, char *why, size_t len) {
    if (sec->conn.len == 0) {
        snprintf(why, len, "the peer's ucx section has no connection info");
        return NXC_ERR_NO_TRANSPORT;
    }
    return NXC_OK;
}

/* --- lifecycle ------------------------------------------------------------------------- */

/* Does UCX have a transport here that does RMA in hardware (InfiniBand or
 * RoCE rc/dc)? Without one, UCX emulates get/put with messages that its
 * target-side handlers answer, and UCX 1.13 aborts the process when such a
 * handler answers a peer that just died; nxc's own message path has no such
 * handler. NXC_UCX_DATA=rma|am overrides. */
static bool want_rma(ucx_tp_t *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return false;
    ucp_context_print_info(t->ctx, f);
    fclose(f);
    bool hw = buf && (strstr(buf, "-- rc_") || strstr(buf, "-- dc_") || strstr(buf, "-- gga"));
    /* "resource N : md M dev D flags -- tcp/eth0" lines name what UCX uses */
    size_t used = 0;
    for (char *p = buf; p && (p = strstr(p, "flags -- ")); p++) {
        p += strlen("flags -- ");
        size_t n = strcspn(p, " \n");
        if (used + n + 3 < sizeof t->resources)
            used += (size_t)snprintf(t->resources + used, sizeof t->resources - used, "%s%.*s",
                                     used ? ", " : "", (int)n, p);
    }
    free(buf);
    static const nxc__env_choice_t modes[] = {{"auto", -1}, {"rma", 1}, {"am", 0}};
    int mode = nxc__env_enum("NXC_UCX_DATA", -1, modes, sizeof modes / sizeof modes[0]);
    return mode < 0 ? hw : mode == 1;
}

static void ucx_describe(nxc__tp_t *tp, char *buf, size_t len) {
    ucx_tp_t *t = ucx_of(tp);
    unsigned maj, min, rel;
    ucp_get_version(&maj, &min, &rel);
    snprintf(buf, len, "UCX %u.%u.%u; data path %s; resources: %s", maj, min, rel,
             t->use_rma ? "get/put (RMA hardware)"
                        : "active messages (no RMA hardware: UCX would only emulate get/put, "
                          "so tcp and shm go first)",
             t->resources[0] ? t->resources : "none");
}

static void set_default(ucp_config_t *cfg, const char *key, const char *value) {
    char env[64];
    snprintf(env, sizeof env, "UCX_%s", key);
    if (!getenv(env)) ucp_config_modify(cfg, key, value);
}

/* Progress until `r` (a request, or the status of one that needs none)
 * completes or `until` passes, then release it. True if it completed. */
static bool settle(ucx_tp_t *t, ucs_status_ptr_t r, uint64_t until) {
    if (!UCS_PTR_IS_PTR(r)) return true;
    while (ucp_request_check_status(r) == UCS_INPROGRESS && nxc__now_ns() < until)
        ucp_worker_progress(t->worker);
    bool done = ucp_request_check_status(r) != UCS_INPROGRESS;
    ucp_request_free(r);
    return done;
}

/* Progress until UCX has had nothing to do for `quiet` ns, or until. */
static void progress_until_quiet(ucx_tp_t *t, uint64_t quiet, uint64_t until) {
    uint64_t now = nxc__now_ns(), idle_since = now;
    while (now < until && now - idle_since < quiet) {
        if (ucp_worker_progress(t->worker)) idle_since = nxc__now_ns();
        now = nxc__now_ns();
    }
}

/* Flush every healthy endpoint of ours, together, until `until`. A flush
 * completes once the endpoint's wire-up is over and what we sent reached
 * the peer (a DONE sent just before the application destroys the connector
 * must not be lost). A peer whose flush does not complete in time counts as
 * failed from here on: its endpoint is then closed forced. */
static void flush_peers(ucx_tp_t *t, uint64_t until) {
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (p->failed || !p->ep) continue;
        ucp_request_param_t rp = {0};
        ucs_status_ptr_t r = ucp_ep_flush_nbx(p->ep, &rp);
        p->flush_req = UCS_PTR_IS_PTR(r) ? r : NULL;
    }
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (p->flush_req && !settle(t, p->flush_req, until)) p->failed = true;
        p->flush_req = NULL;
    }
}

/* Close every endpoint, together: a healthy peer's in flush mode, so that
 * what is still queued on it (a wire-up reply included) goes out first, a
 * failed peer's forced (see begin_close()). Wait for them until `until`. */
static void close_peers(ucx_tp_t *t, uint64_t until) {
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (!p->ep) continue;
        ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                  .flags = p->failed ? UCP_EP_CLOSE_FLAG_FORCE : 0};
        ucs_status_ptr_t r = ucp_ep_close_nbx(p->ep, &rp);
        p->ep = NULL;
        p->close_req = UCS_PTR_IS_PTR(r) ? r : NULL;
    }
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        settle(t, p->close_req, until);
        p->close_req = NULL;
    }
    while (t->peers)
        unlist_peer(t, t->peers);
}

/* Let UCX finish what is under way before the worker goes, each step
 * bounded: progress until quiet, our endpoints flushed (what we sent, a
 * DONE included, reached the peer), the worker flushed, our endpoints closed
 * (see close_peers()) and their close requests waited for, then progress
 * until UCX has been quiet a moment. Meanwhile our listener rejects new
 * connections (see ucx_destroy()). A peer that stays silent (stopped) costs
 * the 1 s bounds. */
static void quiesce(ucx_tp_t *t) {
    progress_until_quiet(t, 20000000ull, nxc__now_ns() + 500000000ull);
    uint64_t until = nxc__now_ns() + 1000000000ull;
    flush_peers(t, until);
    ucp_request_param_t rp = {0};
    settle(t, ucp_worker_flush_nbx(t->worker, &rp), until);
    close_peers(t, nxc__now_ns() + 1000000000ull);
    progress_until_quiet(t, 20000000ull, nxc__now_ns() + 500000000ull);
}

static void ucx_destroy(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    t->closing = true; /* conn_req_cb() rejects from here on */
    while (t->conn_reqs) {
        conn_req_t *q = t->conn_reqs;
        t->conn_reqs = q->next;
        ucp_listener_reject(t->listener, q->req);
        free(q);
    }
    if (t->worker) {
        quiesce(t);
        /* The listener goes last, right before the worker: UCX 1.13 leaves
         * the connections it accepted but whose request has not arrived yet
         * pointing at a destroyed listener, and calls it when the request
         * arrives (uct_tcp_sockcm_ep_server_invoke_conn_req_cb: a use after
         * free). Until the listener goes, such a request is rejected; the
         * worker's destruction closes what is left. */
        if (t->listener) ucp_listener_destroy(t->listener);
        /* Messages that arrived meanwhile are dropped with the inbox below:
         * answering them now would only create peers. */
        nxc__regcache_fini(&t->rc);
        if (t->addr) ucp_worker_release_address(t->worker, t->addr);
        ucp_worker_destroy(t->worker);
    }
    while (t->inbox) {
        inbox_msg_t *m;
        NXC__QUEUE_POP(t->inbox, t->inbox_tail, m);
        free(m);
    }
    if (t->ctx) ucp_cleanup(t->ctx);
    free(t->conn);
    free(t);
}

static ucs_status_t am_drop_cb(void *arg, const void *h, size_t hl, void *d, size_t l,
                               const ucp_am_recv_param_t *p) {
    return UCS_OK;
}

static ucs_status_t set_am_handler(ucx_tp_t *t, unsigned id, ucp_am_recv_callback_t cb) {
    ucp_am_handler_param_t hp = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                      UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = id,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = cb,
        .arg = t};
    return ucp_worker_set_am_recv_handler(t->worker, &hp);
}

/* nxc's handlers, and a dropping one at every other id of the 16-bit space.
 * UCX 1.13 grows its handler table without initialising the new entries
 * other than the one being set (ucp_worker_set_am_handler_common), then
 * dispatches an incoming message through whatever an entry holds: an active
 * message of an id nxc never set, which anyone who can reach the worker may
 * send, crashed the process (SIGSEGV in ucp_am_handler). Setting every id
 * costs about 1.5 ms and 1.6 MiB per worker. */
static ucs_status_t set_am_handlers(ucx_tp_t *t) {
    ucp_am_recv_callback_t cbs[] = {
        [AM_GRANT_REQ] = am_grant_req_cb,  [AM_GRANT_REP] = am_cb_AM_GRANT_REP,
        [AM_DONE] = am_cb_AM_DONE,         [AM_DATA] = am_data_cb,
        [AM_READ_REQ] = am_cb_AM_READ_REQ, [AM_READ_DATA] = am_read_data_cb};
    ucs_status_t s = UCS_OK;
    for (unsigned id = 0; s == UCS_OK && id <= UINT16_MAX; id++)
        s = set_am_handler(t, id, id >= AM_GRANT_REQ && id <= AM_LAST ? cbs[id] : am_drop_cb);
    return s;
}

/* The IPv4 address peers reach our listener at: the connector's tcp address
 * when it names one, else the first up interface that is not loopback (as
 * the tcp transport lists them), else loopback. Network order. */
static uint32_t listen_ip(const char *bind_addr) {
    struct in_addr a = {.s_addr = htonl(INADDR_LOOPBACK)};
    if (strcmp(bind_addr, "0.0.0.0") != 0) {
        inet_pton(AF_INET, bind_addr, &a);
        return a.s_addr;
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) return a.s_addr;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
            !(i->ifa_flags & IFF_LOOPBACK)) {
            a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            break;
        }
    freeifaddrs(ifs);
    return a.s_addr;
}

/* ucx.<key> in the connector's options (no environment variable). */
static const nxc__tp_option_t ucx_options[] = {
    {.key = "address", .valid = nxc__ipv4_text, .accepted = "an IPv4 address in dotted form"},
};

/* ucx.address, else the tcp listener's address (tcp.address, the
 * tcp_address shorthand or NXC_TCP_ADDRESS), which ucx always followed. */
static const char *listen_address(const nxc_connector_t *c) {
    const char *addr = nxc__option_text(c, "ucx", "address");
    if (!addr) addr = nxc__option_text(c, "tcp", "address");
    return addr ? addr : "0.0.0.0";
}

/* Open the listener peers connect to (any port, on listen_address()) and
 * build the connection info the metadata carries: our worker address, then
 * the listener's address (ucx_check.h). */
static ucs_status_t listen_and_describe(ucx_tp_t *t, const char *bind_addr) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) return UCS_ERR_INVALID_ADDR;
    ucp_listener_params_t lp = {
        .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa, .addrlen = sizeof sa},
        .conn_handler = {.cb = conn_req_cb, .arg = t}};
    ucs_status_t s = ucp_listener_create(t->worker, &lp, &t->listener);
    if (s != UCS_OK) return s;
    ucp_listener_attr_t la = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    s = ucp_listener_query(t->listener, &la);
    if (s != UCS_OK) return s;
    uint16_t port = ntohs(((const struct sockaddr_in *)&la.sockaddr)->sin_port);
    uint32_t ip = listen_ip(bind_addr);
    t->conn_len = t->addr_len + NXC__UCX_LISTEN_LEN;
    t->conn = malloc(t->conn_len);
    if (!t->conn) return UCS_ERR_NO_MEMORY;
    uint8_t *l = t->conn + t->addr_len;
    memcpy(t->conn, t->addr, t->addr_len);
    memcpy(l, "NXUL", 4);
    l[4] = (uint8_t)port, l[5] = (uint8_t)(port >> 8), l[6] = l[7] = 0;
    memcpy(l + 8, &ip, 4);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ip, text, sizeof text);
    NXC_LOG_D("ucx: listening on %s:%u, advertised as %s:%u", bind_addr, port, text, port);
    return UCS_OK;
}

/* The address and rkey checks mirror UCX 1.13's formats: say so once when
 * another release runs, whose peers' addresses they may refuse. */
static void warn_version_once(void) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    unsigned maj, min, rel;
    ucp_get_version(&maj, &min, &rel);
    if ((maj != 1 || min != 13) && !atomic_flag_test_and_set(&said))
        NXC_LOG_W("ucx: running UCX %u.%u.%u; nxc checks worker addresses and remote keys "
                  "against UCX 1.13's formats and may refuse some of this release's",
                  maj, min, rel);
}

/* UCX logs on its own (to stderr, "UCX  ERROR ..."), with its own threshold
 * (UCX_LOG_LEVEL, read when libucs loads). Unless the user set that, follow
 * nxc's: failures UCX reports to nxc come back as op results and nxc's own
 * messages, so at NXC_LOG_LEVEL=error UCX keeps only its fatal lines. Set
 * before UCX reads its configuration, and again for each connector, since
 * the process-wide nxc level only rises. */
static void follow_log_level(void) {
    if (getenv("UCX_LOG_LEVEL")) return;
    static const char *const ucx_level[] = {[NXC_LOG_ERROR] = "fatal",
                                            [NXC_LOG_WARN] = "warn",
                                            [NXC_LOG_INFO] = "diag",
                                            [NXC_LOG_DEBUG] = "info"};
    ucs_global_opts_set_value("LOG_LEVEL", ucx_level[nxc__log_level()]);
}

static nxc_status_t ucx_create(nxc_connector_t *c, nxc__tp_t **tp_p) {
    ucx_tp_t *t = calloc(1, sizeof *t);
    if (!t) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    t->efd = -1;
    follow_log_level();
    ucp_config_t *cfg;
    ucs_status_t s = ucp_config_read(NULL, NULL, &cfg);
    if (s != UCS_OK) {
        free(t);
        return ucs_err("ucp_config_read", s);
    }
    /* Notice a dead peer in seconds, not UCX's default 20 s. */
    set_default(cfg, "KEEPALIVE_INTERVAL", "1s"); /* = KEEPALIVE_NS */
    /* Not a default: in unified mode UCX leaves lengths out of the addresses
     * it packs and reads them from its own transports, so nxc could not
     * check a peer's address (ucx_check.c) before UCX reads it. */
    ucp_config_modify(cfg, "UNIFIED_MODE", "n");
    /* Endpoints come from the listener (see connect_peer()): connect only
     * over the device the connection was made on, so that UCX needs no
     * wire-up message exchange after the connection manager's. */
    set_default(cfg, "CM_USE_ALL_DEVICES", "n");
    warn_version_once();
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
                       .features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
                       .name = nxc__connector_name(c)};
    s = ucp_init(&pp, cfg, &t->ctx);
    ucp_config_release(cfg);
    if (s != UCS_OK) {
        free(t);
        return ucs_err("ucp_init", s);
    }
    ucp_context_attr_t ca = {.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES};
    if (ucp_context_query(t->ctx, &ca) == UCS_OK)
        t->cuda = (ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;

    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SERIALIZED};
    nxc_status_t st = NXC_OK;
    s = ucp_worker_create(t->ctx, &wp, &t->worker);
    if (s == UCS_OK) s = ucp_worker_get_efd(t->worker, &t->efd);
    if (s == UCS_OK) {
        ucp_worker_attr_t wa = {.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS};
        s = ucp_worker_query(t->worker, &wa);
        t->addr = wa.address;
        t->addr_len = wa.address_length;
    }
    if (s == UCS_OK) s = set_am_handlers(t);
    if (s == UCS_OK) s = listen_and_describe(t, listen_address(c));
    if (s != UCS_OK) st = ucs_err("worker setup", s);
    if (st == NXC_OK && t->conn_len > UINT32_MAX)
        st = nxc__err(NXC_ERR_TRANSPORT, "ucx: worker address too long");
    if (st != NXC_OK) {
        ucx_destroy(&t->base);
        return st;
    }
    nxc__regcache_init(&t->rc, &reg_ops, t, nxc__regcache_env_max_idle());
    t->use_rma = want_rma(t);
    t->base.fallback = !t->use_rma;
    NXC_LOG_D("ucx: worker address %zu bytes, cuda %s, data path %s", t->addr_len,
              t->cuda ? "yes" : "no", t->use_rma ? "rma (get/put)" : "active messages");
    *tp_p = &t->base;
    return NXC_OK;
}

const nxc__transport_ops_t nxc__transport_ucx = {
    .name = "ucx",
    .create = ucx_create,
    .destroy = ucx_destroy,
    .event_fd = ucx_event_fd,
    .progress = ucx_progress,
    .arm = ucx_arm,
    .next_timer = ucx_next_timer,
    .mem_register = ucx_mem_register,
    .mem_deregister = ucx_mem_deregister,
    .reg_stats = ucx_reg_stats,
    .supports_device = ucx_supports_device,
    .expose = ucx_expose,
    .unexpose = ucx_unexpose,
    .drop_peer = ucx_drop_peer,
    .reachable = ucx_reachable,
    .post = ucx_post,
    .cancel = ucx_cancel,
    .force = ucx_force,
    .release = ucx_release,
    .describe = ucx_describe,
    .options = ucx_options,
    .noptions = sizeof ucx_options / sizeof ucx_options[0],
};
