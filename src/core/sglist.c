/* SPDX-License-Identifier: Apache-2.0 */
#include "core/sglist.h"

#include <stdlib.h>

#include "util/error.h"

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

    nxc__seg_t *segs = calloc(nlocal + nremote - 1, sizeof *segs);
    if (!segs) return nxc__err(NXC_ERR_NO_MEMORY, "scatter/gather plan: out of memory");
    size_t n = 0, li = 0, ri = 0;
    uint64_t loff = 0, roff = 0;
    while (li < nlocal && ri < nremote) {
        uint64_t lleft = local_sizes[li] - loff, rleft = remote_sizes[ri] - roff;
        uint64_t len = lleft < rleft ? lleft : rleft;
        if (len) {
            segs[n++] = (nxc__seg_t){(uint32_t)li, (uint32_t)ri, loff, roff, len};
        }
        loff += len;
        roff += len;
        if (loff == local_sizes[li]) li++, loff = 0;
        if (roff == remote_sizes[ri]) ri++, roff = 0;
    }
    *segs_p = segs;
    *nsegs_p = n;
    return NXC_OK;
}
