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

void nxc__err_clear(void) {
    last_error[0] = '\0';
}

const char *nxc_last_error(void) {
    return last_error;
}
