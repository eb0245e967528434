/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's peers: one endpoint per peer connector, made when an
 * op first names it (nxc__ucx_get_peer()) or when our listener accepts its
 * connection; closing, failure, and sending active messages on them.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ucx/ucx_internal.h"
#include "util/error.h"
#include "util/list.h"
#include "util/log.h"

/* Start a forced close: the endpoint is marked closed at once, so UCX drops
 * whatever the peer still had in flight to us (UCX 1.13 aborts the process
 * when it answers a software put on an endpoint that failed but is not
 * closed). Completion is reaped by nxc__ucx_finish_close(). */
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
void nxc__ucx_finish_close(ucx_tp_t *t, ucx_peer_t *p) {
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

void nxc__ucx_peer_unref(ucx_peer_t *p) {
    if (--p->refs == 0) free(p);
}

ucx_peer_t *nxc__ucx_find_peer(ucx_tp_t *t, const uint8_t *instance) {
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
ucx_peer_t *nxc__ucx_peer_of_ep(ucx_tp_t *t, ucp_ep_h ep, const uint8_t *instance, bool unhandled) {
    if (!ep) return NULL;
    for (ucx_peer_t *p = t->peers; p; p = p->next)
        if (p->id == ep && (!p->failed || (unhandled && !p->handled)))
            return !instance || (p->bound && !memcmp(p->instance, instance, NXC__INSTANCE_LEN))
                       ? p
                       : NULL;
    return NULL;
}

ucp_ep_h nxc__ucx_reply_ep(const ucp_am_recv_param_t *param) {
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

/* Note the process of `p` from `md` when it runs on this host. */
static void note_process(ucx_tp_t *t, ucx_peer_t *p, const nxc__metadata_t *md) {
    if (p->pid || strcmp(md->host, nxc__connector_host(t->base.c)) != 0) return;
    p->pid = md->pid;
    p->start_time = md->start_time;
}

nxc_status_t nxc__ucx_get_peer(ucx_tp_t *t, const nxc__metadata_t *md, const void *conn,
                               size_t conn_len, ucx_peer_t **peer_p) {
    ucx_peer_t *p = nxc__ucx_find_peer(t, md->instance);
    if (!p) {
        if (!(p = calloc(1, sizeof *p))) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
        p->t = t;
        p->bound = true;
        memcpy(p->instance, md->instance, NXC__INSTANCE_LEN);
        snprintf(p->name, sizeof p->name, "%s", md->name);
        nxc_status_t st = connect_peer(t, p, conn, conn_len);
        if (st != NXC_OK) {
            free(p);
            return st;
        }
        list_peer(t, p);
    }
    note_process(t, p, md);
    *peer_p = p;
    return NXC_OK;
}

/* At most this many accepted endpoints wait for their first grant request;
 * more connection requests are rejected. */
#define MAX_UNBOUND 1024

/* Our listener got a connection request (inside ucp_worker_progress):
 * queued, accepted by nxc__ucx_accept_conn_reqs() once progress returned. */
void nxc__ucx_conn_req_cb(ucp_conn_request_h req, void *arg) {
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
void nxc__ucx_accept_conn_reqs(ucx_tp_t *t) {
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
void nxc__ucx_unlist_peer(ucx_tp_t *t, ucx_peer_t *p) {
    NXC__LIST_UNLINK(ucx_peer_t, t->peers, p);
    if (!p->bound) t->accepted--;
    nxc__ucx_peer_unref(p);
}

/* --- sending ------------------------------------------------------------------------ */

/* A send of ours completed (`what` it was, for the message): it no longer
 * counts as in flight on `op` (NULL: a reply), which fails if it failed. */
void nxc__ucx_send_ended(ucx_tp_t *t, nxc_op_t *op, ucs_status_t status, const char *what) {
    if (op) {
        nxc__op_io_end(op);
        if (status != UCS_OK && nxc__op_tp_state(op))
            nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "%s to the peer failed: %s", what,
                              ucs_status_string(status));
    }
    t->dirty = true;
}

static void send_done_cb(void *req, ucs_status_t status, void *user) {
    send_ctx_t *sc = user;
    nxc__ucx_send_ended(sc->t, sc->op, status, "sending");
    free(sc);
    ucp_request_free(req);
}

/* Send an active message on `ep` (copied, so the caller's bytes may go);
 * `op` (may be NULL) counts it as in flight. */
ucs_status_t nxc__ucx_ep_send(ucx_tp_t *t, ucp_ep_h ep, unsigned id, const void *a, size_t alen,
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
nxc_status_t nxc__ucx_am_send(ucx_tp_t *t, ucx_peer_t *p, unsigned id, const void *a, size_t alen,
                              const void *b, size_t blen, nxc_op_t *op, uint32_t flags) {
    if (p->failed || !p->ep)
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: peer %s is disconnected", p->name);
    ucs_status_t s = nxc__ucx_ep_send(t, p->ep, id, a, alen, b, blen, op, flags);
    if (s == UCS_ERR_NO_MEMORY) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    if (s != UCS_OK)
        return nxc__err(NXC_ERR_PEER_FAILED, "ucx: send to peer %s: %s", p->name,
                        ucs_status_string(s));
    return NXC_OK;
}

void nxc__ucx_send_done_msg(ucx_tp_t *t, ucx_peer_t *p, uint64_t grant_id, bool complete,
                            nxc_op_t *op) {
    msg_done_t m = {.magic = MSG_MAGIC, .complete = complete, .grant_id = grant_id};
    memcpy(m.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    if (nxc__ucx_am_send(t, p, AM_DONE, &m, sizeof m, NULL, 0, op, UCP_AM_SEND_FLAG_REPLY) !=
            NXC_OK &&
        op)
        nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
}
