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
/* The allocated memory that holds all of [addr, addr + len), if any. */
bool nxc__mem_shared_find(nxc_connector_t *c, uintptr_t addr, size_t len, nxc__shared_mem_t *out);
/* Registrations made and reused by this connector's transports (tests). */
void nxc__reg_stats(nxc_connector_t *c, uint64_t *made, uint64_t *reused);

#endif
