/* Per-thread last-error message and status helpers (internal). */
#ifndef NXC_UTIL_ERROR_H
#define NXC_UTIL_ERROR_H

#include "nxc/nxc.h"

/* Record `status` with a printf-style message as this thread's last error
 * and return `status`, so failures read: return nxc__err(NXC_ERR_X, "...");
 */
nxc_status_t nxc__err(nxc_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* NXC_ERR_INVALID_PARAM naming the lowest bit of `mask` outside `known`, or
 * NXC_OK when there is none. `what` names the struct ("op params"). */
nxc_status_t nxc__check_field_mask(const char *what, uint64_t mask, uint64_t known);

/* Clear this thread's last error (called at the start of public calls that
 * succeed, so nxc_last_error() never describes an older call). */
void nxc__err_clear(void);

#endif
