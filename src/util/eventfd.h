/* SPDX-License-Identifier: Apache-2.0 */
/* An eventfd used as a doorbell (internal): one thread rings, the one that
 * sleeps on it clears it before looking at what changed. */
#ifndef NXC_UTIL_EVENTFD_H
#define NXC_UTIL_EVENTFD_H

#include <stdint.h>
#include <unistd.h>

/* Make `efd` readable (a full counter, EAGAIN, means it already is). */
static inline void nxc__eventfd_ring(int efd) {
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;
}

/* Make the non-blocking `efd` unreadable again (EAGAIN: it already was). */
static inline void nxc__eventfd_drain(int efd) {
    uint64_t v;
    ssize_t r = read(efd, &v, sizeof v);
    (void)r;
}

#endif
