/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Making ops: the checks of their parameters, a passive op with its
 * metadata (nxc_create_readable/writable), an active op posted on the
 * transport selected for its peer (nxc_begin_read/write). Apart from op.c,
 * which has the state machine and the calls on an op that exists, so that
 * neither file grows past what one can read at a sitting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cq.h"
#include "core/device.h"
#include "core/grant.h"
#include "core/op.h"
#include "core/progress.h"
#include "core/select.h"
#include "util/error.h"
#include "util/sys.h"
#include "util/text.h"
#include "util/time.h"

/* Descriptor lists up to this long are planned from sizes on the stack. */
#define PLAN_FEW 16

static nxc_status_t check_op_params(nxc_connector_t *c, const nxc_op_params_t *params,
                                    bool passive) {
    uint64_t mask = params ? params->field_mask : 0;
    nxc_status_t st = nxc__check_field_mask("op params", mask, NXC__OP_FIELDS);
    if (st != NXC_OK) return st;
    if (mask & NXC_OP_FIELD_CQ) {
        nxc__lock(c);
        bool ours = params->cq && nxc__cq_of(c, params->cq);
        nxc__unlock(c);
        if (!ours)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "op cq is NULL, destroyed, or belongs to another connector");
    }
    if ((mask & NXC_OP_FIELD_TIMEOUT) && params->timeout_ms <= 0)
        return nxc__err(NXC_ERR_INVALID_PARAM, "op timeout_ms must be > 0 (got %d)",
                        params->timeout_ms);
    if (mask & NXC_OP_FIELD_NOTIFICATION_KEY) {
        if (!passive)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "notification_key is set by the passive side; active ops take it "
                            "from the metadata");
        if (!params->notification_key ||
            !nxc__printable_text(params->notification_key, NXC_KEY_MAX))
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "notification_key must be 1..%d bytes, each a visible ASCII "
                            "character (0x21..0x7e: no space or control character)",
                            NXC_KEY_MAX);
    }
    return NXC_OK;
}

static nxc_op_t *op_new(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                        size_t count, size_t total, const nxc_op_params_t *params) {
    nxc_op_t *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->local = malloc(count * sizeof *descs);
    if (!op->local) {
        free(op);
        return NULL;
    }
    memcpy(op->local, descs, count * sizeof *descs);
    op->c = c;
    op->kind = kind;
    op->nlocal = count;
    op->total = total;
    op->efd = -1;
    op->status = NXC_OP_INITIALIZED;
    op->result = NXC_INPROGRESS;
    uint64_t mask = params ? params->field_mask : 0;
    op->deadline =
        (mask & NXC_OP_FIELD_TIMEOUT) ? nxc__deadline_after_ms(params->timeout_ms) : UINT64_MAX;
    if (mask & NXC_OP_FIELD_USER_DATA) op->user_data = params->user_data;
    if (mask & NXC_OP_FIELD_CQ) op->cq = params->cq;
    return op;
}

/* Build and encode the metadata of a passive op (lock held). */
static nxc_status_t passive_metadata(nxc_op_t *op) {
    nxc_connector_t *c = op->c;
    nxc__metadata_t md = {0};
    nxc__md_section_t *sec = md.sections;
    nxc_status_t st = NXC_OK;
    md.operation_kind = op->kind == NXC_OP_READABLE ? NXC__MD_KIND_READ : NXC__MD_KIND_WRITE;
    strcpy(md.notification_key, op->key);
    md.version = c->md_version;
    strcpy(md.name, c->name);
    strcpy(md.host, c->host);
    memcpy(md.instance, c->instance, sizeof md.instance);
    md.pid = c->pid;
    md.start_time = c->start_time;
    memcpy(md.secret, op->secret, sizeof md.secret);
    md.ndesc = op->nlocal;
    md.descs = calloc(op->nlocal, sizeof *md.descs);
    if (!md.descs) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    for (size_t i = 0; i < op->nlocal; i++)
        md.descs[i] =
            (nxc__rdesc_t){(uintptr_t)op->local[i].ptr, op->local[i].size, op->local[i].device};
    for (size_t i = 0; i < c->ntps && st == NXC_OK; i++) {
        nxc__tp_t *tp = c->tps[i];
        if (!tp->ops->supports_device(tp, op->local[0].device.kind)) continue;
        st = tp->ops->expose(tp, op, &md.sections[md.nsections], &op->exposed[i]);
        if (st == NXC_OK) md.nsections++;
    }
    if (st == NXC_OK) st = nxc__md_encode(&md, &op->md_text, &op->md_len);
    for (sec = md.sections; sec < md.sections + md.nsections; sec++)
        free(sec->keys);
    free(md.descs);
    return st;
}

static nxc_status_t create_passive(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                                   size_t count, const nxc_op_params_t *params, nxc_op_t **op_p) {
    size_t total;
    if (!c || !op_p)
        return nxc__err(NXC_ERR_INVALID_PARAM, "create_%s: NULL connector or out-param",
                        nxc__op_kind_name(kind));
    nxc_status_t st = nxc__descs_check("local", descs, count, &total);
    if (st == NXC_OK) st = check_op_params(c, params, true);
    if (st == NXC_OK) st = nxc__check_device(c, descs[0].device, "local");
    if (st != NXC_OK) return st;

    nxc_op_t *op = op_new(c, kind, descs, count, total, params);
    if (!op)
        return nxc__err(NXC_ERR_NO_MEMORY, "create_%s: out of memory", nxc__op_kind_name(kind));
    nxc__random(op->secret, sizeof op->secret);
    nxc__lock(c);
    if (params && (params->field_mask & NXC_OP_FIELD_NOTIFICATION_KEY)) {
        strcpy(op->key, params->notification_key);
        if (nxc__passive_find(c, op->key))
            st = nxc__err(NXC_ERR_INVALID_STATE,
                          "notification_key \"%s\" is already used by a live op of this "
                          "connector",
                          op->key);
    } else {
        nxc__uuid4(op->key);
    }
    nxc__op_link(c, op);
    if (st == NXC_OK) st = passive_metadata(op);
    if (st == NXC_OK && !nxc__passive_index(op))
        st = nxc__err(NXC_ERR_NO_MEMORY, "create_%s: out of memory", nxc__op_kind_name(kind));
    if (st != NXC_OK) {
        nxc__op_free_locked(op);
        nxc__unlock(c);
        return st;
    }
    /* A deadline before the timer the loop armed makes it re-plan its
     * sleep; a later one is taken up when that timer fires (the pass it
     * wakes re-arms for the earliest deadline), so a server creating ops
     * of one timeout does not wake its progress thread for each. */
    bool replan = op->deadline < c->timer_set && nxc__loop_wake_wanted(c);
    nxc__unlock(c);
    if (replan) nxc__wake(c);
    *op_p = op;
    return NXC_OK;
}

static nxc_status_t create_guarded(nxc_connector_t *c, nxc_op_kind_t kind, const nxc_desc_t *descs,
                                   size_t count, const nxc_op_params_t *params, nxc_op_t **op_p) {
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc_status_t st = create_passive(c, kind, descs, count, params, op_p);
    nxc__err_guard_end(&guard, st != NXC_OK);
    return st;
}

nxc_status_t nxc_create_readable(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                                 const nxc_op_params_t *params, nxc_op_t **op_p) {
    return create_guarded(c, NXC_OP_READABLE, descs, count, params, op_p);
}

nxc_status_t nxc_create_writable(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                                 const nxc_op_params_t *params, nxc_op_t **op_p) {
    return create_guarded(c, NXC_OP_WRITABLE, descs, count, params, op_p);
}

/* Everything about an active op that needs no lock: descriptors, metadata,
 * pairing, devices, sizes, the scatter/gather plan. */
static nxc_status_t prepare_active(nxc_connector_t *c, nxc_op_t *op, const char *text, size_t len) {
    op->md = malloc(sizeof *op->md);
    if (!op->md) return nxc__err(NXC_ERR_NO_MEMORY, "begin: out of memory");
    nxc_status_t st = nxc__md_decode(text, len ? len : strlen(text), op->md);
    if (st != NXC_OK) return st;
    const nxc__metadata_t *md = op->md;
    if (op->kind == NXC_OP_READ && md->operation_kind != NXC__MD_KIND_READ)
        return nxc__err(NXC_ERR_WRONG_OPERATION,
                        "begin_read needs the metadata of a readable op, but this metadata "
                        "is of a writable op (operation_kind %d): use begin_write",
                        md->operation_kind);
    if (op->kind == NXC_OP_WRITE && md->operation_kind != NXC__MD_KIND_WRITE)
        return nxc__err(NXC_ERR_WRONG_OPERATION,
                        "begin_write needs the metadata of a writable op, but this metadata "
                        "is of a readable op (operation_kind %d): use begin_read",
                        md->operation_kind);
    for (size_t i = 1; i < md->ndesc; i++)
        if (md->descs[i].device.kind != md->descs[0].device.kind ||
            md->descs[i].device.id != md->descs[0].device.id)
            return nxc__err(NXC_ERR_MIXED_DEVICES,
                            "remote descriptor %zu is on another device than remote "
                            "descriptor 0",
                            i);
    st = nxc__check_device(c, op->local[0].device, "local");
    if (st == NXC_OK) st = nxc__check_device(c, md->descs[0].device, "remote");
    if (st != NXC_OK) return st;

    /* the sizes side by side, as the plan takes them; on the stack for the
     * few descriptors most ops have */
    uint64_t ls_few[PLAN_FEW], rs_few[PLAN_FEW];
    uint64_t *ls = op->nlocal <= PLAN_FEW ? ls_few : malloc(op->nlocal * sizeof *ls);
    uint64_t *rs = md->ndesc <= PLAN_FEW ? rs_few : malloc(md->ndesc * sizeof *rs);
    if (!ls || !rs) st = nxc__err(NXC_ERR_NO_MEMORY, "begin: out of memory");
    for (size_t i = 0; st == NXC_OK && i < op->nlocal; i++)
        ls[i] = op->local[i].size;
    for (size_t i = 0; st == NXC_OK && i < md->ndesc; i++)
        rs[i] = md->descs[i].size;
    if (st == NXC_OK) st = nxc__sg_plan(ls, op->nlocal, rs, md->ndesc, &op->segs, &op->nsegs);
    if (ls != ls_few) free(ls);
    if (rs != rs_few) free(rs);
    return st;
}

/* Must the loop be woken for the op just posted (lock held)? Not for a
 * transfer the transport finished inside post (a direct shm read): no
 * wake-up, no thread hand-off. Nor for one whose transport sent its
 * request and now waits on its fds: the reply wakes the loop. */
static bool post_needs_wake(nxc_connector_t *c, nxc_op_t *op) {
    return !nxc__op_terminal(op) && nxc__loop_needs_wake(c, op->tp);
}

static nxc_status_t begin_active(nxc_connector_t *c, nxc_op_kind_t kind, const char *md_text,
                                 size_t md_len, const nxc_desc_t *local, size_t count,
                                 const nxc_op_params_t *params, nxc_op_t **op_p) {
    size_t total;
    if (!c || !op_p || !md_text)
        return nxc__err(NXC_ERR_INVALID_PARAM, "begin_%s: NULL connector, metadata or out-param",
                        nxc__op_kind_name(kind));
    nxc_status_t st = nxc__descs_check("local", local, count, &total);
    if (st == NXC_OK) st = check_op_params(c, params, false);
    if (st != NXC_OK) return st;
    nxc_op_t *op = op_new(c, kind, local, count, total, params);
    if (!op) return nxc__err(NXC_ERR_NO_MEMORY, "begin_%s: out of memory", nxc__op_kind_name(kind));
    st = prepare_active(c, op, md_text, md_len);
    if (st != NXC_OK) {
        op->c = c;
        nxc__op_peer_md_free(op);
        free(op->segs);
        free(op->local);
        free(op);
        return st;
    }
    nxc__str_copy(op->key, sizeof op->key, op->md->notification_key);

    nxc__lock(c);
    nxc__op_link(c, op);
    const nxc__md_section_t *sec = NULL;
    st = nxc__select_op_transport(c, op, &sec);
    if (st == NXC_OK) {
        op->used = op->tp->ops;
        st = op->tp->ops->post(op->tp, op, sec);
    }
    if (st != NXC_OK) {
        nxc__op_free_locked(op);
        nxc__unlock(c);
        return st;
    }
    bool wake = post_needs_wake(c, op);
    nxc__unlock(c);
    if (wake) nxc__wake(c);
    *op_p = op;
    return NXC_OK;
}

static nxc_status_t begin_guarded(nxc_connector_t *c, nxc_op_kind_t kind, const char *md_text,
                                  size_t md_len, const nxc_desc_t *local, size_t count,
                                  const nxc_op_params_t *params, nxc_op_t **op_p) {
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc_status_t st = begin_active(c, kind, md_text, md_len, local, count, params, op_p);
    nxc__err_guard_end(&guard, st != NXC_OK);
    return st;
}

nxc_status_t nxc_begin_read(nxc_connector_t *c, const char *metadata, size_t metadata_len,
                            const nxc_desc_t *local, size_t count, const nxc_op_params_t *params,
                            nxc_op_t **op_p) {
    return begin_guarded(c, NXC_OP_READ, metadata, metadata_len, local, count, params, op_p);
}

nxc_status_t nxc_begin_write(nxc_connector_t *c, const nxc_desc_t *local, size_t count,
                             const char *metadata, size_t metadata_len,
                             const nxc_op_params_t *params, nxc_op_t **op_p) {
    return begin_guarded(c, NXC_OP_WRITE, metadata, metadata_len, local, count, params, op_p);
}
