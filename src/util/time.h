/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Monotonic time helpers (internal). Every deadline and timer in nxc is on
 * one clock, nxc__now_ns(): CLOCK_MONOTONIC plus a skew that is 0 in every
 * program. Only the core's unit tests move it (nxc__clock_skip()), so that
 * deadlines and drains can pass in a test without it sleeping; the places
 * that hand a time to the kernel (a timerfd, a condition variable) convert
 * with nxc__clock_kernel() so that they agree with it.
 */
#ifndef NXC_UTIL_TIME_H
#define NXC_UTIL_TIME_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Nanoseconds added to CLOCK_MONOTONIC (util/time.c); 0 unless a test skipped. */
extern _Atomic uint64_t nxc__clock_skew_ns;

static inline uint64_t nxc__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
           atomic_load_explicit(&nxc__clock_skew_ns, memory_order_relaxed);
}

/* Tests only: let `ns` pass on nxc's clock at once, for every connector of
 * the process. Time never goes back. */
void nxc__clock_skip(uint64_t ns);

/* `at` (on nxc's clock) as the CLOCK_MONOTONIC time the kernel takes in
 * timerfd_settime(TFD_TIMER_ABSTIME) and pthread_cond_timedwait() (the
 * connector's condition variables run on CLOCK_MONOTONIC). */
static inline struct timespec nxc__clock_kernel(uint64_t at) {
    uint64_t skew = atomic_load_explicit(&nxc__clock_skew_ns, memory_order_relaxed);
    uint64_t mono = at > skew ? at - skew : 1; /* not 0: to a timerfd that disarms */
    return (struct timespec){.tv_sec = (time_t)(mono / 1000000000u),
                             .tv_nsec = (long)(mono % 1000000000u)};
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
