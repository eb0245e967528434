/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON layer of the metadata text (docs/metadata.md §3), internal to the
 * metadata codec: the descriptors, notification_key and operation_kind, and
 * the nixl_metadata string that carries the blob (metadata.c handles that).
 */
#ifndef NXC_CORE_METADATA_JSON_H
#define NXC_CORE_METADATA_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * freed by nxc__md_free) and points *nixl_p at the nixl_metadata string's
 * bytes (not NUL-terminated): in `text` itself where they stand there as
 * they are, else in a copy *nixl_copy_p (malloc'd, caller frees; NULL
 * when there is none). Errors:
 * NXC_ERR_METADATA_MALFORMED, NXC_ERR_INVALID_DEVICE, NXC_ERR_NO_MEMORY.
 */
nxc_status_t nxc__md_json_decode(const char *text, size_t len, nxc__metadata_t *m,
                                 const char **nixl_p, size_t *nixl_len_p, char **nixl_copy_p);

/*
 * The keys nxc does not know, of all the objects of one text, so that a key
 * twice in one object is refused at any depth (metadata_json_keys.c). An
 * empty set is NULL. nxc__md_keyset_add returns 1 when `key` is new to the
 * object numbered `serial`, 0 when that object had it, -1 when out of
 * memory.
 */
typedef struct nxc__md_keyset nxc__md_keyset_t;
int nxc__md_keyset_add(nxc__md_keyset_t **set, uint32_t serial, const unsigned char *key, size_t n);
void nxc__md_keyset_free(nxc__md_keyset_t **set);

/* Room in *descs (room for *cap, malloc'd or NULL) for descriptor `i`,
 * doubling, or straight to i + 1 when that is more (a reservation): both
 * decoding paths grow the list with it. false: out of memory (the list
 * stays valid, with its old room). */
bool nxc__md_descs_room(nxc__rdesc_t **descs, size_t *cap, size_t i);

/*
 * The short cut for the encoder's own layout (metadata_json_canon.c): if
 * `text` opens with NXC__MD_JSON_CANON_OPEN and then descriptors written
 * exactly as nxc__md_json_encode writes valid ones, stores them in *descs
 * (malloc'd or grown; *cap is its room in descriptors, as the yajl path
 * keeps it), sets *n_p to their count and returns the offset of the ']'
 * that closes the list. Returns 0 for anything else: the short cut never
 * refuses a text, and yajl then parses all of it. Tests set
 * nxc__md_json_canon to false to compare both paths.
 */
#define NXC__MD_JSON_CANON_OPEN "{\"descriptors\":["
extern bool nxc__md_json_canon;
size_t nxc__md_json_canon_descs(const char *text, size_t len, nxc__rdesc_t **descs, size_t *cap,
                                size_t *n_p);

/* The rest of the text from that ']' on, in the encoder's layout:
 *
 *   ],"nixl_metadata":"...","notification_key":"...","operation_kind":K}
 *
 * and nothing after it, both strings of printable ASCII with no escape
 * (the key 1..NXC_KEY_MAX bytes) and K 1 or 2. Fills *tail (pointing into
 * `text`) and returns true; false for anything else (yajl then parses). */
typedef struct nxc__md_canon_tail {
    const char *nixl, *key;
    size_t nixl_len, key_len;
    int kind;
} nxc__md_canon_tail_t;
bool nxc__md_json_canon_tail(const char *text, size_t len, nxc__md_canon_tail_t *tail);

#endif
