/* SPDX-License-Identifier: Apache-2.0 */
/* Device and descriptor-list checks shared by every entry point (internal). */
#ifndef NXC_CORE_DEVICE_H
#define NXC_CORE_DEVICE_H

#include <stdbool.h>

#include "nxc/nxc.h"

bool nxc__device_valid(nxc_device_t device);

/* Check a caller's list: non-empty, no NULL ptr or zero size, one valid
 * device for all. `what` names the list in messages ("local"). Writes the
 * total byte count. */
nxc_status_t nxc__descs_check(const char *what, const nxc_desc_t *descs, size_t count,
                              size_t *total_p);

#endif
