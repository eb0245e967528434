#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static atomic_int log_level = -1; /* -1: not yet read from the environment */

nxc_log_level_t nxc__log_env_level(void) {
    const char *v = getenv("NXC_LOG_LEVEL");
    if (!v) return NXC_LOG_WARN;
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(v, names[i])) return (nxc_log_level_t)i;
    return NXC_LOG_WARN;
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
