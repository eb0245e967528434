/* SPDX-License-Identifier: Apache-2.0 */
/* Where a segment of an active op's transfer plan (nxc__op_segs()) lies
 * (internal, for transports): the one place that turns a segment's indexes
 * and offsets into addresses on either side. */
#ifndef NXC_TRANSPORT_SEGMENT_H
#define NXC_TRANSPORT_SEGMENT_H

#include <stdbool.h>
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

/* Does segment `b` continue segment `a` on both sides: does it start, here
 * and in the peer, at the byte after a's last? Such neighbours (a buffer
 * pool's blocks, in order) can move as one range. */
static inline bool nxc__seg_continues(const nxc__seg_t *a, const nxc__seg_t *b,
                                      const nxc_desc_t *bufs, const nxc__metadata_t *md) {
    return nxc__seg_local(a, bufs, a->len) == nxc__seg_local(b, bufs, 0) &&
           nxc__seg_remote(a, md, a->len) == nxc__seg_remote(b, md, 0);
}

#endif
