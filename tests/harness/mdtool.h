/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only helpers that take a metadata text apart and put it back, so a
 * test can forge exactly one field (blob version, secret, a descriptor). */
#ifndef NXT_MDTOOL_H
#define NXT_MDTOOL_H

#include <stddef.h>
#include <stdint.h>

/* Apply patch(blob, len, arg) to the inflated blob inside `md` and return a
 * new malloc'd metadata text with the patched blob. */
char *nxt_md_patch_blob(const char *md, void (*patch)(uint8_t *blob, size_t len, void *arg),
                        void *arg);
/* Return a malloc'd copy of `md` with descriptor `i`'s "ptr" += delta and
 * "size" replaced by `size` (0: unchanged), and/or its device text replaced. */
char *nxt_md_patch_desc(const char *md, size_t i, int64_t ptr_delta, uint64_t size,
                        const char *device);
/* Replace the JSON "operation_kind" (the blob keeps its own). */
char *nxt_md_set_kind(const char *md, int kind);

#endif
