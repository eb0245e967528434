/* SPDX-License-Identifier: Apache-2.0 */
#include "core/sglist.h"

#include <stdlib.h>

#include "util/error.h"

/* Cut both lists at every boundary of either; writes the segments to
 * `segs` unless it is NULL. Returns how many there are. */
static size_t plan_walk(const uint64_t *local_sizes, size_t nlocal, const uint64_t *remote_sizes,
                        size_t nremote, nxc__seg_t *segs) {
    size_t n = 0, li = 0, ri = 0;
    uint64_t loff = 0, roff = 0;
    while (li < nlocal && ri < nremote) {
        uint64_t lleft = local_sizes[li] - loff, rleft = remote_sizes[ri] - roff;
        uint64_t len = lleft < rleft ? lleft : rleft;
        if (len) {
            if (segs) segs[n] = (nxc__seg_t){(uint32_t)li, (uint32_t)ri, loff, roff, len};
            n++;
        }
        loff += len;
        roff += len;
        if (loff == local_sizes[li]) li++, loff = 0;
        if (roff == remote_sizes[ri]) ri++, roff = 0;
    }
    return n;
}

nxc_status_t nxc__sg_plan(const uint64_t *local_sizes, size_t nlocal, const uint64_t *remote_sizes,
                          size_t nremote, nxc__seg_t **segs_p, size_t *nsegs_p) {
    uint64_t lt = 0, rt = 0;
    for (size_t i = 0; i < nlocal; i++)
        lt += local_sizes[i];
    for (size_t i = 0; i < nremote; i++)
        rt += remote_sizes[i];
    if (lt != rt)
        return nxc__err(NXC_ERR_SIZE_MISMATCH,
                        "local descriptors total %llu bytes but the remote ones %llu",
                        (unsigned long long)lt, (unsigned long long)rt);
    if (!nlocal || !nremote) return nxc__err(NXC_ERR_EMPTY_LIST, "empty descriptor list");

    /* Two walks, the first only counting: the bound nlocal + nremote - 1
     * is twice the need when the two lists cut alike (1024 blocks read
     * into 1024 blocks), and for large lists that spare half was the
     * biggest allocation an op made. */
    size_t n = plan_walk(local_sizes, nlocal, remote_sizes, nremote, NULL);
    nxc__seg_t *segs = malloc(n * sizeof *segs); /* the second walk writes every one */
    if (!segs) return nxc__err(NXC_ERR_NO_MEMORY, "scatter/gather plan: out of memory");
    plan_walk(local_sizes, nlocal, remote_sizes, nremote, segs);
    *segs_p = segs;
    *nsegs_p = n;
    return NXC_OK;
}
