/* SPDX-License-Identifier: Apache-2.0 */
/* Explicit registration inside the core (mem.c). */
#ifndef NXC_CORE_MEM_H
#define NXC_CORE_MEM_H

#include <stdint.h>

#include "nxc/nxc.h"

/* Lock held for each of these. */
/* Connector destroy: drop every registration the user left. */
void nxc__mem_drop_all(nxc_connector_t *c);
/* Registrations made and reused by this connector's transports (tests). */
void nxc__reg_stats(nxc_connector_t *c, uint64_t *made, uint64_t *reused);

#endif
