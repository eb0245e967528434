/* SPDX-License-Identifier: Apache-2.0 */
/* Explicit registration inside the core (mem.c). */
#ifndef NXC_CORE_MEM_H
#define NXC_CORE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

/* Lock held for each of these. */
/* Connector destroy: drop every registration the user left. */
void nxc__mem_drop_all(nxc_connector_t *c);
/* Memory nxc_mem_alloc() made: a memfd, by number and inode (a peer
 * checks that the fd it opens is this file), mapped at base. */
typedef struct nxc__shared_mem {
    int fd;
    uint64_t ino;
    uintptr_t base;
    size_t len;
} nxc__shared_mem_t;
/* Does [addr, addr + len) lie within [base, base + size)? (No sum that
 * could wrap: addr and len may come from a peer.) */
static inline bool nxc__span_within(uint64_t addr, uint64_t len, uint64_t base, uint64_t size) {
    return addr >= base && len <= size && addr - base <= size - len;
}
/* The allocated memory that holds all of [addr, addr + len), if any. */
bool nxc__mem_shared_find(nxc_connector_t *c, uintptr_t addr, size_t len, nxc__shared_mem_t *out);
/* Registrations made and reused by this connector's transports (tests). */
void nxc__reg_stats(nxc_connector_t *c, uint64_t *made, uint64_t *reused);

#endif
