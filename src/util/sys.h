/* SPDX-License-Identifier: Apache-2.0 */
/* Host and process identity, random bytes (internal). */
#ifndef NXC_UTIL_SYS_H
#define NXC_UTIL_SYS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "<hostname>/<boot id>": equal for two processes only when they share a
 * kernel instance. Always NUL-terminated. */
void nxc__host_identity(char *buf, size_t len);
/* Start time of this process in clock ticks since boot (/proc/self/stat
 * field 22); with the pid it names a process even after pid reuse. */
uint64_t nxc__process_start_time(void);
/* The same for process `pid` (0: this one); 0 when it does not exist. */
uint64_t nxc__process_start_time_of(int pid);
/* Is process `pid` running, with an address space (not exiting, not a
 * zombie, not a kernel thread)? */
bool nxc__process_alive(int pid);
/* Is process `pid`, started at `start_time` (see above), alive and free to
 * run: not stopped by a signal (SIGSTOP, a frozen job) nor by a tracer?
 * False when the pid now names another process. */
bool nxc__process_can_run(int pid, uint64_t start_time);
/* Cryptographically random bytes (a per-thread ChaCha20 stream keyed from
 * the kernel; safe across fork). */
void nxc__random(void *buf, size_t len);
/* A random UUID4 in its 36-character text form. */
void nxc__uuid4(char out[37]);
/* This thread's value of `key` (created by the caller, with the destructor
 * that frees it), or a new zeroed one of `size` bytes set as its value.
 * NULL when out of memory: the caller then keeps nothing for the thread. */
void *nxc__thread_value(pthread_key_t key, size_t size);

#endif
