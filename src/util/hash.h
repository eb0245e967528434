/* SPDX-License-Identifier: Apache-2.0 */
/* uthash (Debian's uthash-dev) for nxc's indexes, set up so that it never
 * ends the process: with HASH_NONFATAL_OOM a failed allocation of a new
 * table leaves the element out (callers check with HASH_FIND) instead of
 * calling exit(). Include this, never <uthash.h> directly. */
#ifndef NXC_UTIL_HASH_H
#define NXC_UTIL_HASH_H

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#endif
