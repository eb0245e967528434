/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Transport selection: which of a connector's transports moves a transfer
 * (the first, in the connector's order, that the peer offers and that
 * reaches it), and whether any can move a device's memory at all.
 */
#include <stdio.h>

#include "core/op.h"
#include "core/select.h"
#include "util/error.h"
#include "util/log.h"

static bool device_supported(nxc_connector_t *c, nxc_device_kind_t kind) {
    for (size_t i = 0; i < c->ntps; i++)
        if (c->tps[i]->ops->supports_device(c->tps[i], kind)) return true;
    return false;
}

nxc_status_t nxc__check_device(nxc_connector_t *c, nxc_device_t device, const char *what) {
    if (device_supported(c, device.kind)) return NXC_OK;
    char text[NXC_DEVICE_TEXT_MAX];
    nxc_device_format(device, text, sizeof text);
    return nxc__err(NXC_ERR_NOT_SUPPORTED,
                    "%s memory on %s: no transport of this connector (%s) can move it", what, text,
                    c->transports_text);
}

/* Is `tp` eligible in this pass? A transport that calls itself a fallback
 * (ucx without RDMA hardware) comes after the others, unless the user set
 * the order. */
static bool pass_has(const nxc_connector_t *c, const nxc__tp_t *tp, int pass) {
    bool late = tp->fallback && !c->transports_chosen;
    return pass == (late ? 1 : 0);
}

nxc__tp_t *nxc__select_transport(nxc_connector_t *c, const nxc__metadata_t *md,
                                 nxc_device_kind_t kind, const nxc__md_section_t **sec_p,
                                 nxc__select_note_fn note, void *arg, bool all,
                                 nxc_status_t *why_p) {
    nxc__tp_t *chosen = NULL;
    nxc_status_t fail = NXC_ERR_NO_TRANSPORT;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->ntps; i++) {
            nxc__tp_t *tp = c->tps[i];
            if (!pass_has(c, tp, pass)) continue;
            const nxc__md_section_t *sec = nxc__md_section(md, tp->ops->name);
            char why[200] = "not offered by the peer";
            bool ok = false;
            if (sec && !tp->ops->supports_device(tp, kind))
                snprintf(why, sizeof why, "cannot move this device's memory");
            else if (sec) {
                nxc_status_t st = tp->ops->reachable(tp, md, sec, why, sizeof why);
                ok = st == NXC_OK;
                if (st == NXC_ERR_UNREACHABLE) fail = st;
            }
            if (ok && !chosen) {
                chosen = tp;
                *sec_p = sec;
            } else if (ok) {
                snprintf(why, sizeof why, "reachable, but %s comes first", chosen->ops->name);
            }
            if (note) note(arg, tp, ok && chosen == tp, why);
            if (chosen && !all) return chosen;
        }
    if (!chosen && why_p) *why_p = fail;
    return chosen;
}

typedef struct reasons {
    char text[512];
    size_t used;
} reasons_t;

static void add_reason(void *arg, const nxc__tp_t *tp, bool chosen, const char *why) {
    reasons_t *reasons = arg;
    if (chosen || reasons->used >= sizeof reasons->text) return;
    reasons->used +=
        (size_t)snprintf(reasons->text + reasons->used, sizeof reasons->text - reasons->used,
                         "%s%s: %s", reasons->used ? "; " : "", tp->ops->name, why);
}

/* The first transport, in this connector's order, that the peer offers and
 * that can reach it. */
nxc_status_t nxc__select_op_transport(nxc_connector_t *c, nxc_op_t *op,
                                      const nxc__md_section_t **sec_p) {
    reasons_t reasons = {"", 0};
    nxc_status_t fail = NXC_ERR_NO_TRANSPORT;
    op->tp = nxc__select_transport(c, op->md, op->local[0].device.kind, sec_p, add_reason, &reasons,
                                   false, &fail);
    if (op->tp) {
        NXC_LOG_D("connector %s: %s op to %s uses %s", c->name, nxc__op_kind_name(op->kind),
                  op->md->name, op->tp->ops->name);
        return NXC_OK;
    }
    if (fail == NXC_ERR_UNREACHABLE)
        return nxc__err(fail, "cannot reach peer \"%s\" (%s)", op->md->name, reasons.text);
    return nxc__err(NXC_ERR_NO_TRANSPORT, "no transport reaches peer \"%s\" (%s)", op->md->name,
                    reasons.used ? reasons.text : "this connector has none");
}
