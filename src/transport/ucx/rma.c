/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's RMA path and registrations: memory registered through
 * the registration cache and exposed with packed remote keys; an active op
 * gets/puts every segment with the peer's keys, checked at begin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/segment.h"
#include "transport/ucx/ucx_internal.h"
#include "util/error.h"

static nxc_status_t reg_map(void *ctx, nxc__reg_t *r) {
    ucx_tp_t *t = ctx;
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = (void *)r->start,
                               .length = r->end - r->start};
    ucp_mem_h memh;
    ucs_status_t s = ucp_mem_map(t->ctx, &mp, &memh);
    if (s != UCS_OK) return nxc__ucx_err("ucp_mem_map", s);
    void *packed;
    size_t len;
    s = ucp_rkey_pack(t->ctx, memh, &packed, &len);
    if (s != UCS_OK || len > UINT16_MAX) {
        ucp_mem_unmap(t->ctx, memh);
        return s != UCS_OK ? nxc__ucx_err("ucp_rkey_pack", s)
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

const nxc__regcache_ops_t nxc__ucx_reg_ops = {reg_map, reg_unmap};

static void rma_done_cb(void *req, ucs_status_t status, void *user) {
    nxc_op_t *op = user;
    nxc__op_io_end(op);
    if (status != UCS_OK)
        nxc__ucx_aop_fail(op, NXC_ERR_PEER_FAILED, "transfer with peer %s failed: %s",
                          ((ucx_aop_t *)nxc__op_tp_state(op))->peer->name,
                          ucs_status_string(status));
    ucx_of(nxc__op_tp(op))->dirty = true;
    ucp_request_free(req);
}

/* Count a request returned by a *_nbx call. */
static void track(nxc_op_t *op, ucs_status_ptr_t r, const char *what) {
    if (r == NULL) return;
    if (UCS_PTR_IS_ERR(r)) {
        nxc__ucx_aop_fail(op, NXC_ERR_TRANSPORT, "%s: %s", what,
                          ucs_status_string(UCS_PTR_STATUS(r)));
        return;
    }
    nxc__op_io_begin(op);
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
nxc_status_t nxc__ucx_check_rkeys(const nxc_op_t *op, const nxc__md_section_t *sec,
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

static bool same_key(const nxc__bytes_t *x, const nxc__bytes_t *y) {
    return x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
}

/* May segment b join the run of segment a? Always on the message path,
 * where the passive side checks each range against its buffers; on the RMA
 * path only within one registration on both sides (the same local memory
 * handle, the same packed remote key), so one get or put is valid for
 * both. */
static bool joins(ucx_tp_t *t, const ucx_aop_t *a, const nxc__md_section_t *sec,
                  const nxc__seg_t *x, const nxc__seg_t *y) {
    return !t->use_rma || (a->lregs[x->local_idx]->handle == a->lregs[y->local_idx]->handle &&
                           same_key(&sec->keys[x->remote_idx], &sec->keys[y->remote_idx]));
}

/* Plan the runs (a->runs): 1024 blocks side by side on both sides move as
 * one range, one request or get instead of 1024. */
static bool plan_runs(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    const nxc__md_section_t *sec = nxc__md_section(md, "ucx");
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    a->runs = calloc(nsegs, sizeof *a->runs);
    if (!a->runs) return false;
    for (size_t i = 0, start = 0; i < nsegs; i++) {
        if (i > 0 && nxc__seg_continues(&segs[i - 1], &segs[i], bufs, md) &&
            joins(t, a, sec, &segs[i - 1], &segs[i]))
            a->runs[start] += segs[i].len;
        else
            a->runs[start = i] = segs[i].len;
    }
    return true;
}

/* The peer's keys (checked at begin), unpacked once per run of equal ones. */
static ucs_status_t unpack_rkeys(ucx_aop_t *a, const nxc__metadata_t *md) {
    const nxc__md_section_t *sec = nxc__md_section(md, "ucx");
    a->rkeys = calloc(md->ndesc, sizeof *a->rkeys);
    if (!a->rkeys) return UCS_ERR_NO_MEMORY;
    for (size_t i = 0; i < md->ndesc; i++) {
        if (i > 0 && same_key(&sec->keys[i], &sec->keys[i - 1])) {
            a->rkeys[i] = a->rkeys[i - 1];
        } else {
            ucs_status_t s = unpack_rkey(a->peer->ep, &sec->keys[i], &a->rkeys[i]);
            if (s != UCS_OK) return s;
        }
        a->nrkeys = i + 1;
    }
    return UCS_OK;
}

/* Granted: plan the runs; on the RMA path unpack the peer's keys and post
 * one get/put per run, then a flush that completes once every byte reached
 * its target. */
void nxc__ucx_start_moving(ucx_tp_t *t, nxc_op_t *op) {
    ucx_aop_t *a = nxc__op_tp_state(op);
    if (!plan_runs(t, op)) return nxc__ucx_aop_fail(op, NXC_ERR_NO_MEMORY, "out of memory");
    if (!t->use_rma) return nxc__ucx_start_moving_am(t, op);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    ucs_status_t s = unpack_rkeys(a, md);
    if (s != UCS_OK)
        return nxc__ucx_aop_fail(op, NXC_ERR_TRANSPORT, "ucp_ep_rkey_unpack: %s",
                                 ucs_status_string(s));
    a->stage = S_MOVE;
    nxc__op_progressing(op);
    for (size_t i = 0; i < nsegs && a->error == NXC_OK; i++) {
        if (a->runs[i] == 0) continue; /* moved with the run it is in */
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
            track(op, ucp_get_nbx(a->peer->ep, local, a->runs[i], remote, rkey, &rp),
                  "ucp_get_nbx");
        else
            track(op, ucp_put_nbx(a->peer->ep, local, a->runs[i], remote, rkey, &rp),
                  "ucp_put_nbx");
    }
    ucp_request_param_t fp = {.op_attr_mask =
                                  UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = rma_done_cb,
                              .user_data = op};
    track(op, ucp_ep_flush_nbx(a->peer->ep, &fp), "ucp_ep_flush_nbx");
}

/* --- passive ops ------------------------------------------------------------------------ */

/* Registration cache references for a set of buffers, taken and given
 * back together: an exposed op's (its keys travel in the metadata), or a
 * nxc_mem_register() hold (ops over the memory then find the entries). */
typedef struct held {
    size_t n;
    nxc__reg_t *regs[];
} held_t;

static void release_held(ucx_tp_t *t, held_t *h) {
    for (size_t i = 0; i < h->n; i++)
        nxc__regcache_put(&t->rc, h->regs[i]);
    free(h);
}

/* One reference per buffer of `descs`, all or none. */
static nxc_status_t hold(ucx_tp_t *t, const nxc_desc_t *descs, size_t n, held_t **held_p) {
    held_t *h = calloc(1, sizeof *h + n * sizeof h->regs[0]);
    if (!h) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    for (size_t i = 0; i < n; i++) {
        nxc_status_t st = nxc__regcache_get(&t->rc, descs[i].ptr, descs[i].size, &h->regs[i]);
        if (st != NXC_OK) {
            release_held(t, h);
            return st;
        }
        h->n = i + 1;
    }
    *held_p = h;
    return NXC_OK;
}

nxc_status_t nxc__ucx_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p) {
    ucx_tp_t *t = ucx_of(tp);
    size_t nbufs;
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    sec->keys = calloc(nbufs, sizeof *sec->keys);
    if (!sec->keys) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    held_t *e;
    nxc_status_t st = hold(t, bufs, nbufs, &e);
    if (st != NXC_OK) {
        free(sec->keys);
        sec->keys = NULL;
        return st;
    }
    for (size_t i = 0; i < nbufs; i++)
        sec->keys[i] = (nxc__bytes_t){e->regs[i]->key, (uint32_t)e->regs[i]->key_len};
    snprintf(sec->name, sizeof sec->name, "ucx");
    sec->conn = (nxc__bytes_t){t->conn, (uint32_t)t->conn_len};
    *state_p = e;
    return NXC_OK;
}

nxc_status_t nxc__ucx_mem_register(nxc__tp_t *tp, const nxc_desc_t *descs, size_t n,
                                   void **state_p) {
    held_t *h;
    nxc_status_t st = hold(ucx_of(tp), descs, n, &h);
    if (st == NXC_OK) *state_p = h;
    return st;
}

void nxc__ucx_mem_deregister(nxc__tp_t *tp, void *state) {
    release_held(ucx_of(tp), state);
}

void nxc__ucx_reg_stats(nxc__tp_t *tp, uint64_t *made, uint64_t *reused) {
    *made = ucx_of(tp)->rc.misses;
    *reused = ucx_of(tp)->rc.hits;
}

void nxc__ucx_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    release_held(ucx_of(tp), state);
}
