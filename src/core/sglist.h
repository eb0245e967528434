/* SPDX-License-Identifier: Apache-2.0 */
/* Scatter/gather planning (internal): pair two lists of buffers with equal
 * total size but any segmentation into contiguous segments. */
#ifndef NXC_CORE_SGLIST_H
#define NXC_CORE_SGLIST_H

#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

typedef struct nxc__seg {
    uint32_t local_idx, remote_idx;
    uint64_t local_off, remote_off;
    uint64_t len;
} nxc__seg_t;

/* Walk both lists in order, cutting at every boundary of either. The result
 * has at most nlocal + nremote - 1 segments (malloc'd, caller frees). The
 * totals must be equal (checked: NXC_ERR_SIZE_MISMATCH). */
nxc_status_t nxc__sg_plan(const uint64_t *local_sizes, size_t nlocal, const uint64_t *remote_sizes,
                          size_t nremote, nxc__seg_t **segs_p, size_t *nsegs_p);

#endif
