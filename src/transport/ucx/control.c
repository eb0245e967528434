/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's control messages, received: the active-message
 * callbacks queue them in the inbox (or answer at once where they must), and
 * nxc__ucx_process_inbox() handles GRANT_REQ, GRANT_REP and DONE once
 * ucp_worker_progress() returned. Every field a peer wrote is checked first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ucx/ucx_internal.h"
#include "util/list.h"
#include "util/log.h"

nxc_op_t *nxc__ucx_find_aop(ucx_tp_t *t, uint64_t req_id) {
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
    m->from = nxc__ucx_reply_ep(param);
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

/* The peer a well-formed BYE or BYE_ACK came from, or NULL. */
static ucx_peer_t *bye_peer(ucx_tp_t *t, const void *d, size_t len,
                            const ucp_am_recv_param_t *param) {
    msg_bye_t m;
    if (len != sizeof m || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return NULL;
    memcpy(&m, d, sizeof m);
    if (m.magic != MSG_MAGIC) return NULL;
    return nxc__ucx_peer_of_ep(t, nxc__ucx_reply_ep(param), NULL, false);
}

/* BYE: answered here, inside ucp_worker_progress, even while destroying
 * (two connectors destroyed together answer each other). Every message the
 * peer sent before it was received, and queued, before this callback ran:
 * see ucx_wire.h. */
static ucs_status_t am_bye_cb(void *arg, const void *h, size_t hl, void *d, size_t len,
                              const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    if (!bye_peer(t, d, len, param)) return UCS_OK;
    msg_bye_t ack = {.magic = MSG_MAGIC};
    nxc__ucx_ep_send(t, nxc__ucx_reply_ep(param), AM_BYE_ACK, &ack, sizeof ack, NULL, 0, NULL,
                     UCP_AM_SEND_FLAG_REPLY);
    return UCS_OK;
}

/* BYE_ACK: the peer has every message we sent before our BYE. */
static ucs_status_t am_bye_ack_cb(void *arg, const void *h, size_t hl, void *d, size_t len,
                                  const ucp_am_recv_param_t *param) {
    ucx_peer_t *p = bye_peer(arg, d, len, param);
    if (p && p->bye_sent) p->bye_acked = true;
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
    nxc__ucx_ep_send(t, param->reply_ep, AM_GRANT_REP, &rep, sizeof rep, why, strlen(why), NULL, 0);
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
    } else if (!(p = nxc__ucx_peer_of_ep(t, nxc__ucx_reply_ep(param), NULL, false)) ||
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
    ucx_peer_t *peer = nxc__ucx_peer_of_ep(t, from, NULL, false);
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
    if (nxc__ucx_am_send(t, peer, AM_GRANT_REP, &rep, sizeof rep, why, strlen(why), NULL, 0) !=
            NXC_OK &&
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
    nxc_op_t *op = nxc__ucx_find_aop(t, m.req_id);
    ucx_aop_t *a = op ? nxc__op_tp_state(op) : NULL;
    if (!a || nxc__op_terminal(op) || a->stage != S_GRANT) {
        /* The op is gone (cancelled): hand a grant straight back. */
        ucx_peer_t *p = nxc__ucx_find_peer(t, m.instance);
        if (m.status == NXC_OK && p) nxc__ucx_send_done_msg(t, p, m.grant_id, false, NULL);
        return;
    }
    if (memcmp(a->peer->instance, m.instance, NXC__INSTANCE_LEN)) {
        /* The metadata's worker address now belongs to another connector:
         * the one it names is gone, as tcp and shm report it too. */
        if (m.status == NXC_OK) nxc__ucx_send_done_msg(t, a->peer, m.grant_id, false, NULL);
        nxc__ucx_aop_fail(op, NXC_ERR_UNREACHABLE, "could not reach connector %s: %s",
                          nxc__op_peer_md(op)->name,
                          why[0] ? why : "the worker at its address answers as another connector");
    } else if (m.status != NXC_OK) {
        nxc__ucx_aop_fail(op, rep_status(m.status), "peer %s refused the transfer: %s",
                          a->peer->name, why);
    } else {
        a->grant_id = m.grant_id;
        if (a->error == NXC_OK) nxc__ucx_start_moving(t, op);
    }
    nxc__ucx_advance(t, op);
}

static void on_done(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len) {
    msg_done_t m;
    if (len != sizeof m) return;
    memcpy(&m, d, sizeof m);
    ucx_peer_t *p = nxc__ucx_peer_of_ep(t, from, m.instance, true);
    if (m.magic != MSG_MAGIC || !p) return;
    nxc__grant_close(t->base.c, p, m.grant_id, m.complete == 1);
}

int nxc__ucx_process_inbox(ucx_tp_t *t) {
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
            nxc__ucx_on_read_req(t, m->from, m->data, m->len);
        free(m);
        n++;
    }
    return n;
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
ucs_status_t nxc__ucx_set_am_handlers(ucx_tp_t *t) {
    ucp_am_recv_callback_t cbs[] = {[AM_GRANT_REQ] = am_grant_req_cb,
                                    [AM_GRANT_REP] = am_cb_AM_GRANT_REP,
                                    [AM_DONE] = am_cb_AM_DONE,
                                    [AM_DATA] = nxc__ucx_am_data_cb,
                                    [AM_READ_REQ] = am_cb_AM_READ_REQ,
                                    [AM_READ_DATA] = nxc__ucx_am_read_data_cb,
                                    [AM_BYE] = am_bye_cb,
                                    [AM_BYE_ACK] = am_bye_ack_cb};
    ucs_status_t s = UCS_OK;
    for (unsigned id = 0; s == UCS_OK && id <= UINT16_MAX; id++)
        s = set_am_handler(t, id, id >= AM_GRANT_REQ && id <= AM_LAST ? cbs[id] : am_drop_cb);
    return s;
}
