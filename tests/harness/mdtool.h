/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only helpers that take a metadata text apart and put it back, so a
 * test can forge exactly one field (blob version, secret, a descriptor). */
#ifndef NXT_MDTOOL_H
#define NXT_MDTOOL_H

#include <stddef.h>
#include <stdint.h>

/* Standard base64 with '=' padding of `len` bytes (libsodium's, not
 * libnxc's), malloc'd and NUL-terminated. */
char *nxt_b64(const void *bytes, size_t len);
/* The bytes of `n` characters of such base64 (malloc'd; checked valid). */
uint8_t *nxt_unb64(const char *b64, size_t n, size_t *len);
/* Apply patch(blob, len, arg) to the inflated blob inside `md` (version 1)
 * or to its op part (version 2: the bytes start "NXCO"; the peer part is
 * left as it was) and return a new malloc'd metadata text with the patched
 * bytes. */
char *nxt_md_patch_blob(const char *md, void (*patch)(uint8_t *blob, size_t len, void *arg),
                        void *arg);
/* Return a malloc'd copy of `md` with descriptor `i`'s "ptr" += delta and
 * "size" replaced by `size` (0: unchanged), and/or its device text replaced. */
char *nxt_md_patch_desc(const char *md, size_t i, int64_t ptr_delta, uint64_t size,
                        const char *device);
/* Replace the JSON "operation_kind" (the blob keeps its own). */
char *nxt_md_set_kind(const char *md, int kind);

/* A JSON text with `ndesc` cpu descriptors (ptr 4096 (i + 1), size 4096)
 * and the given fields, malloc'd: for texts built by hand. */
char *nxt_md_text(const char *nixl, int kind, const char *key, size_t ndesc);

#endif
