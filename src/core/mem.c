/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Explicit registration: a thin hold on the transports' registration
 * caches. Each transport that registers memory takes a reference on a
 * cache entry per buffer; ops over that memory then find the entry, and
 * dropping the registration only drops those references, so ops still
 * using the memory keep theirs (deregistration is deferred, never refused).
 */
#include <stdlib.h>
#include <string.h>

#include "core/connector.h"
#include "core/device.h"
#include "core/mem.h"
#include "core/select.h"
#include "util/error.h"
#include "util/list.h"

struct nxc_mem {
    nxc_connector_t *c;
    nxc_mem_t *next; /* in c->mems */
    void *state[NXC__MAX_TRANSPORTS];
};

/* Drop the transports' holds (lock held). */
static void release_holds(nxc_mem_t *mem) {
    nxc_connector_t *c = mem->c;
    for (size_t i = 0; i < c->ntps; i++)
        if (mem->state[i]) c->tps[i]->ops->mem_deregister(c->tps[i], mem->state[i]);
}

static nxc_status_t register_locked(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                                    nxc_mem_t *mem) {
    for (size_t i = 0; i < c->ntps; i++) {
        const nxc__transport_ops_t *ops = c->tps[i]->ops;
        if (!ops->mem_register || !ops->supports_device(c->tps[i], descs[0].device.kind)) continue;
        nxc_status_t st = ops->mem_register(c->tps[i], descs, count, &mem->state[i]);
        if (st != NXC_OK) {
            release_holds(mem);
            return st;
        }
    }
    mem->next = c->mems;
    c->mems = mem;
    return NXC_OK;
}

nxc_status_t nxc_mem_register(nxc_connector_t *c, const nxc_desc_t *descs, size_t count,
                              const nxc_mem_params_t *params, nxc_mem_t **mem_p) {
    if (!c || !mem_p) return nxc__err(NXC_ERR_INVALID_PARAM, "mem_register: NULL argument");
    nxc_status_t st = nxc__check_field_mask("mem params", params ? params->field_mask : 0, 0);
    size_t total;
    if (st == NXC_OK && count > NXC_DESCS_MAX)
        st = nxc__err(NXC_ERR_INVALID_PARAM, "mem_register: %zu descriptors, more than %d", count,
                      NXC_DESCS_MAX);
    if (st == NXC_OK) st = nxc__descs_check("registered", descs, count, &total);
    if (st == NXC_OK) st = nxc__check_device(c, descs[0].device, "registered");
    if (st != NXC_OK) return st;
    nxc_mem_t *mem = calloc(1, sizeof *mem);
    if (!mem) return nxc__err(NXC_ERR_NO_MEMORY, "mem_register: out of memory");
    mem->c = c;
    nxc__lock(c);
    st = register_locked(c, descs, count, mem);
    nxc__unlock(c);
    if (st != NXC_OK) {
        free(mem);
        return st;
    }
    *mem_p = mem;
    return NXC_OK;
}

void nxc_mem_deregister(nxc_mem_t *mem) {
    if (!mem) return;
    nxc_connector_t *c = mem->c;
    nxc__lock(c);
    NXC__LIST_UNLINK(nxc_mem_t, c->mems, mem);
    release_holds(mem);
    nxc__unlock(c);
    free(mem);
}

void nxc__mem_drop_all(nxc_connector_t *c) {
    while (c->mems) {
        nxc_mem_t *mem = c->mems;
        c->mems = mem->next;
        release_holds(mem);
        free(mem);
    }
}

void nxc__reg_stats(nxc_connector_t *c, uint64_t *made, uint64_t *reused) {
    *made = *reused = 0;
    for (size_t i = 0; i < c->ntps; i++) {
        uint64_t tp_made = 0, tp_reused = 0;
        if (c->tps[i]->ops->reg_stats) c->tps[i]->ops->reg_stats(c->tps[i], &tp_made, &tp_reused);
        *made += tp_made;
        *reused += tp_reused;
    }
}
