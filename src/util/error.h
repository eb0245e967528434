/* SPDX-License-Identifier: Apache-2.0 */
/* Per-thread last-error message and status helpers (internal). */
#ifndef NXC_UTIL_ERROR_H
#define NXC_UTIL_ERROR_H

#include <stdbool.h>

#include "nxc/nxc.h"

/* Record `status` with a printf-style message as this thread's last error
 * and return `status`, so failures read: return nxc__err(NXC_ERR_X, "...");
 */
nxc_status_t nxc__err(nxc_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* NXC_ERR_INVALID_PARAM naming the lowest bit of `mask` outside `known`, or
 * NXC_OK when there is none. `what` names the struct ("op params"). */
nxc_status_t nxc__check_field_mask(const char *what, uint64_t mask, uint64_t known);

/* The rule of nxc_last_error() (nxc.h): only a failing public call changes
 * it. Internal steps of a call that succeeds may still fail (a transport
 * that cannot start, a check that sends a transfer elsewhere) and call
 * nxc__err(); a public call that runs such steps brackets them with a
 * guard, which puts the previous message back unless the call failed.
 * Guards nest; the text is saved only when something would overwrite it. */
typedef struct nxc__err_guard {
    struct nxc__err_guard *prev;
    bool saved;
    char text[512];
} nxc__err_guard_t;
void nxc__err_guard_begin(nxc__err_guard_t *guard);
/* `failed`: the public call reports a failure (its message stays). */
void nxc__err_guard_end(nxc__err_guard_t *guard, bool failed);

#endif
