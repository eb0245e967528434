/* SPDX-License-Identifier: Apache-2.0 */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local nxc__err_guard_t *guards; /* innermost first */

nxc_status_t nxc__err(nxc_status_t status, const char *fmt, ...) {
    for (nxc__err_guard_t *g = guards; g && !g->saved; g = g->prev) {
        memcpy(g->text, last_error, sizeof g->text);
        g->saved = true;
    }
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

void nxc__err_guard_begin(nxc__err_guard_t *g) {
    g->saved = false;
    g->prev = guards;
    guards = g;
}

void nxc__err_guard_end(nxc__err_guard_t *g, bool failed) {
    guards = g->prev;
    if (!g->saved) return;
    if (failed) {
        /* an outer guard must still be able to restore what it saw */
        for (nxc__err_guard_t *o = guards; o && !o->saved; o = o->prev) {
            memcpy(o->text, g->text, sizeof o->text);
            o->saved = true;
        }
    } else {
        memcpy(last_error, g->text, sizeof last_error);
    }
}

const char *nxc_last_error(void) {
    return last_error;
}
