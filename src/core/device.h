/* SPDX-License-Identifier: Apache-2.0 */
/* Device and descriptor-list checks shared by every entry point (internal). */
#ifndef NXC_CORE_DEVICE_H
#define NXC_CORE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "nxc/nxc.h"

bool nxc__device_valid(nxc_device_t device);

/* Check a caller's list: non-empty, no NULL ptr or zero size, one valid
 * device for all. `what` names the list in messages ("local"). Writes the
 * total byte count. */
nxc_status_t nxc__descs_check(const char *what, const nxc_desc_t *descs, size_t count,
                              size_t *total_p);

/* The last device text parsed and what it gave: the descriptors of one
 * metadata text nearly always name one device, parsed once then. Zeroed:
 * empty. */
typedef struct nxc__device_memo {
    char text[NXC_DEVICE_TEXT_MAX];
    size_t len; /* 0: none yet */
    nxc_device_t device;
} nxc__device_memo_t;

/* nxc_device_parse() of the `n` bytes at `s` (not NUL-terminated, n < 64),
 * through `memo`: a text equal to the last one parsed is not parsed again. */
nxc_status_t nxc__device_parse_memo(nxc__device_memo_t *memo, const char *s, size_t n,
                                    nxc_device_t *device_p);

#endif
