/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's message data path, for when UCX would only emulate
 * RMA: a write sends each segment in DATA chunks, a read asks with READ_REQ
 * and the passive side answers with READ_DATA. Each message is checked
 * against its grant before any byte of the op's memory is touched.
 */
#include <stdlib.h>
#include <string.h>

#include "transport/segment.h"
#include "transport/ucx/ucx_internal.h"
#include "util/error.h"
#include "util/log.h"

static void data_sent_cb(void *req, ucs_status_t status, void *user) {
    data_ctx_t *dc = user;
    nxc__ucx_send_ended(dc->t, dc->op, status, "sending data");
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

/* Granted, message path. A write sends each run of segments in chunks; a
 * read asks for each run and waits for its bytes. The passive side checks every
 * message against the grant before touching memory. */
void nxc__ucx_start_moving_am(ucx_tp_t *t, nxc_op_t *op) {
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
        uint64_t run = a->runs[i]; /* segments that continue this one move with it */
        if (run == 0) continue;
        const nxc__seg_t *sg = &segs[i];
        uint64_t remote = nxc__seg_remote(sg, nxc__op_peer_md(op), 0);
        char *local = nxc__seg_local(sg, bufs, 0);
        msg_range_t h = {.magic = MSG_MAGIC,
                         .seg = (uint32_t)i,
                         .grant_id = a->grant_id,
                         .req_id = a->req_id,
                         .addr = remote,
                         .len = run};
        memcpy(h.instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
        if (nxc__op_kind(op) == NXC_OP_READ) {
            if (nxc__ucx_am_send(t, a->peer, AM_READ_REQ, &h, sizeof h, NULL, 0, NULL,
                                 UCP_AM_SEND_FLAG_REPLY) != NXC_OK)
                nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
            continue;
        }
        for (uint64_t off = 0; off < run && a->error == NXC_OK; off += CHUNK) {
            h.addr = remote + off;
            h.len = run - off < CHUNK ? run - off : CHUNK;
            if (send_data(t, a->peer, AM_DATA, &h, sizeof h, local + off, h.len, op) != NXC_OK)
                nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "%s", nxc_last_error());
        }
    }
}

/* Bytes for a writable (message path): land them only inside a live grant.
 * Runs inside ucp_worker_progress (connector lock held) to avoid a copy. */
ucs_status_t nxc__ucx_am_data_cb(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
                                 const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    msg_range_t h;
    if (hlen != sizeof h || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return UCS_OK;
    memcpy(&h, hdr, sizeof h);
    ucx_peer_t *p = nxc__ucx_peer_of_ep(t, nxc__ucx_reply_ep(param), h.instance, false);
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
ucs_status_t nxc__ucx_am_read_data_cb(void *arg, const void *hdr, size_t hlen, void *data,
                                      size_t len, const ucp_am_recv_param_t *param) {
    ucx_tp_t *t = arg;
    msg_read_data_t h;
    if (hlen != sizeof h || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) return UCS_OK;
    memcpy(&h, hdr, sizeof h);
    nxc_op_t *op = h.magic == MSG_MAGIC ? nxc__ucx_find_aop(t, h.req_id) : NULL;
    ucx_aop_t *a = op ? nxc__op_tp_state(op) : NULL;
    if (!a || t->use_rma || a->stage != S_MOVE || a->error != NXC_OK || !a->await_bytes)
        return UCS_OK; /* late or cancelled: drop */
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    /* h.seg starts a run: its bytes are contiguous here for runs[h.seg] */
    if (h.seg >= nsegs || h.off > a->runs[h.seg] || len > a->runs[h.seg] - h.off ||
        len > a->await_bytes)
        return UCS_OK; /* bogus: drop */
    memcpy(nxc__seg_local(&segs[h.seg], bufs, h.off), data, len);
    a->await_bytes -= len;
    if (a->await_bytes == 0) {
        nxc__op_io_end(op);
        t->dirty = true;
    }
    return UCS_OK;
}

/* A reader asks for a range of a readable (message path): check it against
 * its grant, then send the bytes in chunks. */
void nxc__ucx_on_read_req(ucx_tp_t *t, ucp_ep_h from, const uint8_t *d, size_t len) {
    msg_range_t h;
    if (len != sizeof h) return;
    memcpy(&h, d, sizeof h);
    ucx_peer_t *p = nxc__ucx_peer_of_ep(t, from, h.instance, false);
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
