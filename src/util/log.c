/* SPDX-License-Identifier: Apache-2.0 */
#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/env.h"

static atomic_int log_level = -1; /* -1: not yet read from the environment */
static atomic_int env_level = -1; /* NXC_LOG_LEVEL, read once */

nxc_log_level_t nxc__log_env_level(void) {
    int v = atomic_load(&env_level);
    if (v >= 0) return (nxc_log_level_t)v;
    /* Provisional while parsing, so that the parser's own warning about a
     * bad NXC_LOG_LEVEL is filtered at the default level, not recursively. */
    atomic_store(&env_level, (int)NXC_LOG_WARN);
    static const nxc__env_choice_t names[] = {{"error", NXC_LOG_ERROR},
                                              {"warn", NXC_LOG_WARN},
                                              {"info", NXC_LOG_INFO},
                                              {"debug", NXC_LOG_DEBUG}};
    v = nxc__env_enum("NXC_LOG_LEVEL", NXC_LOG_WARN, names, sizeof names / sizeof names[0]);
    atomic_store(&env_level, v);
    return (nxc_log_level_t)v;
}

nxc_log_level_t nxc__log_level(void) {
    int cur = atomic_load(&log_level);
    return cur < 0 ? nxc__log_env_level() : (nxc_log_level_t)cur;
}

void nxc__log_raise_level(nxc_log_level_t level) {
    int cur = atomic_load(&log_level);
    if (cur < 0) cur = (int)nxc__log_env_level();
    atomic_store(&log_level, (int)level > cur ? (int)level : cur);
}

void nxc__log(nxc_log_level_t level, const char *fmt, ...) {
    int cur = atomic_load(&log_level);
    if (cur < 0) {
        cur = (int)nxc__log_env_level();
        atomic_store(&log_level, cur);
    }
    if ((int)level > cur) return;
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[1024];
    int n = snprintf(line, sizeof line, "[nxc %d %s] ", (int)getpid(), tags[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
