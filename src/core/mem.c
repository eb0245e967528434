/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Explicit registration: a thin hold on the transports' registration
 * caches. Each transport that registers memory takes a reference on a
 * cache entry per buffer; ops over that memory then find the entry, and
 * dropping the registration only drops those references, so ops still
 * using the memory keep theirs (deregistration is deferred, never refused).
 *
 * Allocated memory (nxc_mem_alloc) is registered the same way and is, in
 * addition, a sealed memfd mapped MAP_SHARED: the shm transport names it in
 * an op's access record, and a peer on this host maps it once and copies
 * with memcpy instead of a process_vm_readv/writev per op.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    nxc__shared_mem_t shared; /* fd -1: registered, not allocated */
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

static nxc_mem_t *mem_new(nxc_connector_t *c) {
    nxc_mem_t *mem = calloc(1, sizeof *mem);
    if (!mem) return NULL;
    mem->c = c;
    mem->shared.fd = -1;
    return mem;
}

/* Unmap and close what nxc_mem_alloc() made (nothing for a registration). */
static void mem_free(nxc_mem_t *mem) {
    if (mem->shared.fd >= 0) {
        munmap((void *)mem->shared.base, mem->shared.len);
        close(mem->shared.fd);
    }
    free(mem);
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
    nxc_mem_t *mem = mem_new(c);
    if (!mem) return nxc__err(NXC_ERR_NO_MEMORY, "mem_register: out of memory");
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

/* A sealed memfd of `len` bytes (whole pages) mapped into mem->shared. */
static nxc_status_t shared_map(nxc_mem_t *mem, size_t len) {
    nxc__shared_mem_t *sh = &mem->shared;
    struct stat st;
    int fd = memfd_create("nxc-mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return nxc__err(NXC_ERR_NO_MEMORY, "mem_alloc: memfd_create: %s", strerror(errno));
    /* Sealed against shrinking: a peer's mapping can never fault. */
    if (ftruncate(fd, (off_t)len) || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) ||
        fstat(fd, &st)) {
        nxc_status_t e =
            nxc__err(NXC_ERR_NO_MEMORY, "mem_alloc: %zu bytes: %s", len, strerror(errno));
        close(fd);
        return e;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        nxc_status_t e =
            nxc__err(NXC_ERR_NO_MEMORY, "mem_alloc: mmap of %zu bytes: %s", len, strerror(errno));
        close(fd);
        return e;
    }
    *sh =
        (nxc__shared_mem_t){.fd = fd, .ino = (uint64_t)st.st_ino, .base = (uintptr_t)p, .len = len};
    return NXC_OK;
}

nxc_status_t nxc_mem_alloc(nxc_connector_t *c, size_t size, const nxc_mem_params_t *params,
                           void **ptr_p, nxc_mem_t **mem_p) {
    if (!c || !ptr_p || !mem_p) return nxc__err(NXC_ERR_INVALID_PARAM, "mem_alloc: NULL argument");
    nxc_status_t st = nxc__check_field_mask("mem params", params ? params->field_mask : 0, 0);
    if (st != NXC_OK) return st;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size == 0 || size > (SIZE_MAX >> 2))
        return nxc__err(NXC_ERR_INVALID_PARAM, "mem_alloc: size %zu (must be 1 to %zu)", size,
                        SIZE_MAX >> 2);
    size_t len = (size + page - 1) / page * page;
    nxc_mem_t *mem = mem_new(c);
    if (!mem) return nxc__err(NXC_ERR_NO_MEMORY, "mem_alloc: out of memory");
    st = shared_map(mem, len);
    if (st == NXC_OK) {
        nxc_desc_t d = {(void *)mem->shared.base, len, {NXC_DEVICE_HOST, 0}};
        nxc__lock(c);
        st = register_locked(c, &d, 1, mem);
        nxc__unlock(c);
    }
    if (st != NXC_OK) {
        mem_free(mem);
        return st;
    }
    *ptr_p = (void *)mem->shared.base;
    *mem_p = mem;
    return NXC_OK;
}

void nxc_mem_deregister(nxc_mem_t *mem) {
    if (!mem) return;
    nxc_connector_t *c = mem->c;
    if (!c) { /* allocated memory its connector's destroy left mapped */
        mem_free(mem);
        return;
    }
    nxc__lock(c);
    NXC__LIST_UNLINK(nxc_mem_t, c->mems, mem);
    release_holds(mem);
    nxc__unlock(c);
    mem_free(mem);
}

void nxc__mem_drop_all(nxc_connector_t *c) {
    while (c->mems) {
        nxc_mem_t *mem = c->mems;
        c->mems = mem->next;
        release_holds(mem);
        if (mem->shared.fd < 0) {
            free(mem);
            continue;
        }
        /* The application may still use the memory: it stays mapped, with
         * its handle, until nxc_mem_deregister(). */
        memset(mem->state, 0, sizeof mem->state);
        mem->c = NULL;
        mem->next = NULL;
    }
}

bool nxc__mem_shared_find(nxc_connector_t *c, uintptr_t addr, size_t len, nxc__shared_mem_t *out) {
    for (nxc_mem_t *mem = c->mems; mem; mem = mem->next) {
        const nxc__shared_mem_t *sh = &mem->shared;
        if (sh->fd >= 0 && nxc__span_within(addr, len, sh->base, sh->len)) {
            *out = *sh;
            return true;
        }
    }
    return false;
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
