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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ucx/ucx_internal.h"
#include "util/error.h"
#include "util/text.h"
#include "util/time.h"

nxc_status_t nxc__ucx_err(const char *what, ucs_status_t s) {
    return nxc__err(NXC_ERR_TRANSPORT, "ucx: %s: %s", what, ucs_status_string(s));
}

void nxc__ucx_aop_fail(nxc_op_t *op, nxc_status_t st, const char *fmt, ...) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (a->error != NXC_OK) return;
    a->error = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
}

/* Stop waiting for a message-path read's bytes (failure or cancel). */
static void stop_awaiting(nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (a && a->await_bytes) {
        a->await_bytes = 0;
        nxc__op_io_end(op);
    }
}

static void wire_up_cb(void *req, ucs_status_t status, void *user) {
    ucx_peer_t *p = user;
    p->wire = WIRE_DONE; /* or failed: the error callback tells the ops */
    p->t->dirty = true;
    ucp_request_free(req);
    nxc__ucx_peer_unref(p);
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
    nxc_status_t st = nxc__ucx_am_send(t, a->peer, AM_GRANT_REQ, &m, sizeof m, var, vlen, NULL,
                                       UCP_AM_SEND_FLAG_REPLY);
    free(var);
    a->req_sent = st == NXC_OK;
    return st;
}

/* Move an idle active op to its next stage, or finish it. */
void nxc__ucx_advance(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (nxc__op_io_pending(op) || nxc__op_terminal(op)) return;
    if (a->error == NXC_OK && a->stage == S_GRANT && !a->req_sent && a->peer->wire == WIRE_DONE &&
        send_grant_req(t, op) != NXC_OK)
        nxc__ucx_aop_fail(op, NXC_ERR_UNREACHABLE, "%s", nxc_last_error());
    if (a->error != NXC_OK) {
        if (a->grant_id && !a->peer->failed && !a->gave_up_sent) {
            a->gave_up_sent = true; /* free the passive op for another peer */
            nxc__ucx_send_done_msg(t, a->peer, a->grant_id, false, op);
            if (nxc__op_io_pending(op)) return;
        }
        nxc__op_finish(op, a->error, "%s", a->why);
        return;
    }
    if (a->stage == S_MOVE) {
        a->stage = S_NOTIFY;
        nxc__ucx_send_done_msg(t, a->peer, a->grant_id, true, op);
        if (nxc__op_io_pending(op) || a->error != NXC_OK) return nxc__ucx_advance(t, op);
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
    nxc_status_t st = nxc__ucx_get_peer(t, md, sec->conn.data, sec->conn.len, &a->peer);
    if (st != NXC_OK) return st;
    a->peer->refs++;
    if (t->use_rma && (st = nxc__ucx_check_rkeys(op, sec, &info)) != NXC_OK) return st;
    a->req_id = ++t->next_req_id;
    a->op = op;
    if (!index_aop(t, a)) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    a->stage = S_GRANT;
    start_wire_up(t, a->peer);
    if (a->peer->wire != WIRE_DONE) return NXC_OK; /* nxc__ucx_advance() sends it */
    st = send_grant_req(t, op);
    return st == NXC_ERR_PEER_FAILED ? NXC_ERR_UNREACHABLE : st;
}

static void ucx_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_aop_t *a = nxc__op_tp_state(op);
    stop_awaiting(op); /* late bytes are dropped by the receive check */
    nxc__ucx_aop_fail(op, why, "%s",
                      why == NXC_ERR_TIMED_OUT ? "the op's deadline passed" : "cancelled");
    /* A read hands its grant back at once, even with a get still in flight
     * (reading changes nothing): if the get outlasts the drain and the
     * endpoint is cut, the owner must not take that for a dead reader and
     * fail its readable. A write waits until nothing is in flight (its
     * memory must not change after the grant is back). */
    if (nxc__op_kind(op) == NXC_OP_READ && a && a->grant_id && !a->peer->failed &&
        !a->gave_up_sent) {
        a->gave_up_sent = true;
        nxc__ucx_send_done_msg(t, a->peer, a->grant_id, false, op);
    }
    nxc__ucx_advance(t, op);
}

static void ucx_abort_io(nxc__tp_t *tp, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    ucx_tp_t *t = ucx_of(tp);
    stop_awaiting(op);
    if (!a->peer->failed) {
        a->peer->failed = true;
        a->peer->status = UCS_ERR_CANCELED;
        t->dirty = true;
    }
    nxc__ucx_finish_close(t, a->peer);
    nxc__ucx_advance(t, op);
}

static void ucx_release(nxc__tp_t *tp, nxc_op_t *op) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_aop_t *a = nxc__op_tp_state(op);
    for (size_t i = 0; i < a->nrkeys; i++)
        if (i == 0 || a->rkeys[i] != a->rkeys[i - 1]) /* a shared one once */
            ucp_rkey_destroy(a->rkeys[i]);
    free(a->rkeys);
    free(a->runs);
    size_t nbufs;
    nxc__op_local(op, &nbufs);
    for (size_t i = 0; a->lregs && i < nbufs; i++)
        nxc__regcache_put(&t->rc, a->lregs[i]);
    free(a->lregs);
    if (a->peer) nxc__ucx_peer_unref(a->peer);
    if (a->indexed) HASH_DELETE(by_req, t->aops_by_req, a);
    free(a);
    nxc__op_set_tp_state(op, NULL);
}

static void ucx_drop_peer(nxc__tp_t *tp, void *grant_peer) {
    ucx_tp_t *t = ucx_of(tp);
    ucx_peer_t *p = grant_peer;
    if (!p->failed) {
        p->failed = true;
        p->status = UCS_ERR_CANCELED;
    }
    nxc__ucx_finish_close(t, p);
    t->dirty = true;
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
                nxc__ucx_aop_fail(op, NXC_ERR_UNREACHABLE, "could not reach peer %s (%s)", p->name,
                                  ucs_status_string(p->status));
            else
                nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "%s", why);
            stop_awaiting(op);
        }
        nxc__peer_lost(t->base.c, p, why);
        nxc__ucx_finish_close(t, p);
        nxc__ucx_unlist_peer(t, p);
    }
}

static int ucx_progress(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    int n = 0;
    t->last_progress = nxc__now_ns();
    for (int i = 0; i < 1000 && ucp_worker_progress(t->worker); i++)
        n++;
    n += nxc__ucx_process_inbox(t);
    if (t->conn_reqs) {
        nxc__ucx_accept_conn_reqs(t);
        n++;
    }
    if (t->dirty) {
        t->dirty = false;
        process_failures(t);
        for (nxc_op_t *op = nxc__tp_next_op(tp, NULL); op; op = nxc__tp_next_op(tp, op))
            nxc__ucx_advance(t, op);
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

/* ucx.<key> in the connector's options (no environment variable). */
static const nxc__tp_option_t ucx_options[] = {
    {.key = "address", .valid = nxc__ipv4_text, .accepted = "an IPv4 address in dotted form"},
};

const nxc__transport_ops_t nxc__transport_ucx = {
    .name = "ucx",
    .create = nxc__ucx_create,
    .destroy = nxc__ucx_destroy,
    .event_fd = ucx_event_fd,
    .progress = ucx_progress,
    .arm = ucx_arm,
    .next_timer = ucx_next_timer,
    .mem_register = nxc__ucx_mem_register,
    .mem_deregister = nxc__ucx_mem_deregister,
    .reg_stats = nxc__ucx_reg_stats,
    .supports_device = ucx_supports_device,
    .expose = nxc__ucx_expose,
    .unexpose = nxc__ucx_unexpose,
    .drop_peer = ucx_drop_peer,
    .reachable = ucx_reachable,
    .post = ucx_post,
    .cancel = ucx_cancel,
    .abort_io = ucx_abort_io,
    .release = ucx_release,
    .describe = nxc__ucx_describe,
    .options = ucx_options,
    .noptions = sizeof ucx_options / sizeof ucx_options[0],
};
