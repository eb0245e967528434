/* SPDX-License-Identifier: Apache-2.0 */
/* Where a segment of an active op's transfer plan (nxc__op_segs()) lies
 * (internal, for transports): the one place that turns a segment's indexes
 * and offsets into addresses on either side. */
#ifndef NXC_TRANSPORT_SEGMENT_H
#define NXC_TRANSPORT_SEGMENT_H

#include <stdint.h>

#include "transport/transport.h"

/* The byte `off` bytes into segment `seg`, in the op's local buffers `bufs`
 * (nxc__op_local()). */
static inline void *nxc__seg_local(const nxc__seg_t *seg, const nxc_desc_t *bufs, uint64_t off) {
    return (uint8_t *)bufs[seg->local_idx].ptr + seg->local_off + off;
}

/* The same byte's address in the peer, whose metadata is `md`. */
static inline uint64_t nxc__seg_remote(const nxc__seg_t *seg, const nxc__metadata_t *md,
                                       uint64_t off) {
    return md->descs[seg->remote_idx].addr + seg->remote_off + off;
}

#endif
