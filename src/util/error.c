/* SPDX-License-Identifier: Apache-2.0 */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local nxc__err_guard_t *guards; /* innermost first */

/* Every guard from `guard` outwards that saved nothing yet keeps `text` to
 * put back (the nearest saved one already holds an older text, and so do
 * those outside it). */
static void save_for(nxc__err_guard_t *guard, const char *text) {
    for (; guard && !guard->saved; guard = guard->prev) {
        memcpy(guard->text, text, sizeof guard->text);
        guard->saved = true;
    }
}

nxc_status_t nxc__err(nxc_status_t status, const char *fmt, ...) {
    save_for(guards, last_error);
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

void nxc__err_guard_begin(nxc__err_guard_t *guard) {
    guard->saved = false;
    guard->prev = guards;
    guards = guard;
}

void nxc__err_guard_end(nxc__err_guard_t *guard, bool failed) {
    guards = guard->prev;
    if (!guard->saved) return;
    if (failed) {
        /* an outer guard must still be able to restore what it saw */
        save_for(guards, guard->text);
    } else {
        memcpy(last_error, guard->text, sizeof last_error);
    }
}

const char *nxc_last_error(void) {
    return last_error;
}
