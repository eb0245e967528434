/* SPDX-License-Identifier: Apache-2.0 */
/* The skew of nxc's clock (see util/time.h). */
#include "util/time.h"

_Atomic uint64_t nxc__clock_skew_ns;

void nxc__clock_skip(uint64_t ns) {
    atomic_fetch_add_explicit(&nxc__clock_skew_ns, ns, memory_order_relaxed);
}
