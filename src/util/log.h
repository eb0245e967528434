/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr, filtered by level (internal). */
#ifndef NXC_UTIL_LOG_H
#define NXC_UTIL_LOG_H

#include "nxc/nxc.h"

/* Process-wide threshold: the most verbose level of any live connector, or
 * NXC_LOG_LEVEL from the environment. */
void nxc__log_raise_level(nxc_log_level_t level);
nxc_log_level_t nxc__log_env_level(void);
/* The threshold in force now. */
nxc_log_level_t nxc__log_level(void);
void nxc__log(nxc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define NXC_LOG_E(...) nxc__log(NXC_LOG_ERROR, __VA_ARGS__)
#define NXC_LOG_W(...) nxc__log(NXC_LOG_WARN, __VA_ARGS__)
#define NXC_LOG_I(...) nxc__log(NXC_LOG_INFO, __VA_ARGS__)
#define NXC_LOG_D(...) nxc__log(NXC_LOG_DEBUG, __VA_ARGS__)

#endif
