/* SPDX-License-Identifier: Apache-2.0 */
/* The nixl_metadata string <-> the blob (internal to the metadata codec). */
#ifndef NXC_CORE_METADATA_WRAP_H
#define NXC_CORE_METADATA_WRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

/* "b64:" + base64(zlib(blob)) as a malloc'd NUL-terminated string.
 * Errors: NXC_ERR_NO_MEMORY, NXC_ERR_SYSTEM (zlib). */
nxc_status_t nxc__md_pack(const uint8_t *blob, size_t blob_len, char **out_p);

/* Version 2's part: "b64:" + base64 of the part itself (up to 2 KiB) or of
 * its zlib stream (longer, where compressing pays). Errors: as
 * nxc__md_pack. */
nxc_status_t nxc__md_pack_part(const uint8_t *part, size_t len, char **out_p);
/* The bytes of a part from its `bn` base64 characters (no prefix): a part
 * starts with 'N' (its magic), which no zlib stream does; anything else is
 * inflated. Errors: as nxc__md_unbase64 and nxc__md_inflate. */
nxc_status_t nxc__md_unpack_part(const char *b, size_t bn, const char *what, uint8_t **out_p,
                                 size_t *len_p);

/* The `n` bytes of a nixl_metadata string ("b64:" base64, or legacy hex)
 * as malloc'd bytes (caller frees). Errors: NXC_ERR_METADATA_MALFORMED,
 * NXC_ERR_NO_MEMORY. */
nxc_status_t nxc__md_unwrap(const char *s, size_t n, uint8_t **out, size_t *out_len);
/* `bn` characters of standard base64 (no prefix, '=' padded, strictly:
 * docs/metadata.md §4.1) as malloc'd bytes (caller frees). `memo`: reuse
 * the groups this thread decoded last (not for texts that would only push
 * a more useful one out). `what` names the text in the message of
 * NXC_ERR_METADATA_MALFORMED; also NXC_ERR_NO_MEMORY. */
nxc_status_t nxc__md_unbase64(const char *b, size_t bn, bool memo, const char *what, uint8_t **out,
                              size_t *out_len);
/* Whether nxc__md_unbase64 reuses what the thread decoded last (the same
 * result either way; tests turn it off to compare). */
extern bool nxc__md_b64_memo;

/* Inflate one complete zlib stream with nothing after it into at most
 * NXC_METADATA_MAX malloc'd bytes. Errors: NXC_ERR_METADATA_MALFORMED,
 * NXC_ERR_METADATA_TOO_LARGE, NXC_ERR_NO_MEMORY, NXC_ERR_SYSTEM. */
nxc_status_t nxc__md_inflate(const uint8_t *in, size_t in_len, uint8_t **out_p, size_t *out_len_p);

#endif
