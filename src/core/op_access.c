/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The accessors through which transports read ops and the connector
 * (declared in transport/transport.h). They are out of line so that the
 * layout of struct nxc_op and struct nxc_connector stays a core matter;
 * transports fetch arrays once per loop, so the call costs nothing
 * measurable beside the bytes they move.
 */
#include "core/core.h"

nxc_op_kind_t nxc__op_kind(const nxc_op_t *op) {
    return op->kind;
}
const char *nxc__op_key(const nxc_op_t *op) {
    return op->key;
}
const uint8_t *nxc__op_secret(const nxc_op_t *op) {
    return op->secret;
}
const nxc_desc_t *nxc__op_local(const nxc_op_t *op, size_t *n_p) {
    *n_p = op->nlocal;
    return op->local;
}
uint64_t nxc__op_total(const nxc_op_t *op) {
    return op->total;
}
const nxc__metadata_t *nxc__op_peer_md(const nxc_op_t *op) {
    return &op->md;
}
const nxc__seg_t *nxc__op_segs(const nxc_op_t *op, size_t *n_p) {
    *n_p = op->nsegs;
    return op->segs;
}
nxc__tp_t *nxc__op_tp(const nxc_op_t *op) {
    return op->tp;
}
void *nxc__op_tp_state(const nxc_op_t *op) {
    return op->tp_op;
}
void nxc__op_set_tp_state(nxc_op_t *op, void *state) {
    op->tp_op = state;
}

nxc_op_t *nxc__tp_next_op(nxc__tp_t *tp, nxc_op_t *prev) {
    nxc_op_t *op = prev ? prev->next : tp->c->ops;
    while (op && !(op->tp == tp && op->tp_op))
        op = op->next;
    return op;
}

const char *nxc__connector_name(const nxc_connector_t *c) {
    return c->name;
}
const uint8_t *nxc__connector_instance(const nxc_connector_t *c) {
    return c->instance;
}
const char *nxc__connector_host(const nxc_connector_t *c) {
    return c->host;
}
