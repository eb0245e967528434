/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON layer of the metadata text (docs/metadata.md §3), internal to the
 * metadata codec: the descriptors, notification_key and operation_kind, and
 * the nixl_metadata string that carries the blob (metadata.c handles that).
 */
#ifndef NXC_CORE_METADATA_JSON_H
#define NXC_CORE_METADATA_JSON_H

#include <stddef.h>

#include "core/metadata.h"

/*
 * The text of `md` (its JSON fields) around `nixl`, the nixl_metadata
 * string of `nixl_len` bytes: malloc'd and NUL-terminated, written compact
 * in the order docs/metadata.md §3.3 fixes. Errors: NXC_ERR_NO_MEMORY,
 * NXC_ERR_INVALID_PARAM (a device that has no text form),
 * NXC_ERR_METADATA_TOO_LARGE (the text would exceed NXC_METADATA_MAX).
 */
nxc_status_t nxc__md_json_encode(const nxc__metadata_t *md, const char *nixl, size_t nixl_len,
                                 char **text_p, size_t *len_p);

/*
 * Parse `len` bytes of `text` as the JSON layer: on success fills `m`'s
 * operation_kind, notification_key, ndesc and descs (m->descs malloc'd,
 * freed by nxc__md_free) and returns the nixl_metadata string in *nixl_p
 * (malloc'd, caller frees; not NUL-terminated). Errors:
 * NXC_ERR_METADATA_MALFORMED, NXC_ERR_INVALID_DEVICE, NXC_ERR_NO_MEMORY.
 */
nxc_status_t nxc__md_json_decode(const char *text, size_t len, nxc__metadata_t *m, char **nixl_p,
                                 size_t *nixl_len_p);

#endif
