#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

nxc_status_t nxc__err(nxc_status_t status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

nxc_status_t nxc__check_field_mask(const char *what, uint64_t mask, uint64_t known) {
    uint64_t unknown = mask & ~known;
    if (!unknown) return NXC_OK;
    return nxc__err(NXC_ERR_INVALID_PARAM,
                    "%s: field_mask bit %d (0x%llx) is not a field this library (nxc %s) knows; "
                    "built against a newer nxc.h?",
                    what, __builtin_ctzll(unknown), (unsigned long long)(unknown & -unknown),
                    nxc_version());
}

void nxc__err_clear(void) {
    last_error[0] = '\0';
}

const char *nxc_last_error(void) {
    return last_error;
}
