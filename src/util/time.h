/* SPDX-License-Identifier: Apache-2.0 */
/* Monotonic time helpers (internal). */
#ifndef NXC_UTIL_TIME_H
#define NXC_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t nxc__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Deadline `ms` from now; UINT64_MAX for ms < 0 (no limit). */
static inline uint64_t nxc__deadline_after_ms(int ms) {
    return ms < 0 ? UINT64_MAX : nxc__now_ns() + (uint64_t)ms * 1000000u;
}

/* Milliseconds left until `deadline`, rounded up, clamped to [0, cap]. */
static inline int nxc__ms_until(uint64_t deadline, int cap) {
    if (deadline == UINT64_MAX) return cap;
    uint64_t now = nxc__now_ns();
    if (now >= deadline) return 0;
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    return ms > (uint64_t)cap ? cap : (int)ms;
}

#endif
