/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading and writing the binary blobs of the metadata (docs/metadata.md
 * §5 and §6.1), internal to the metadata codec: little-endian integers, and
 * a reader that checks every length against the bytes left before using
 * it. Version 1's blob (metadata.c) and version 2's two parts
 * (metadata_v2.c) share them.
 */
#ifndef NXC_CORE_METADATA_BLOB_H
#define NXC_CORE_METADATA_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/metadata.h"

static inline uint16_t nxc__get_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t nxc__get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t nxc__get_le64(const uint8_t *p) {
    return (uint64_t)nxc__get_le32(p) | ((uint64_t)nxc__get_le32(p + 4) << 32);
}

static inline uint8_t *nxc__put_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static inline uint8_t *nxc__put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static inline uint8_t *nxc__put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static inline uint8_t *nxc__put_bytes(uint8_t *p, const void *data, size_t n) {
    if (n) memcpy(p, data, n);
    return p + n;
}

/* A str16: u16 length `n`, then the bytes of `s`. */
static inline uint8_t *nxc__put_str16(uint8_t *p, const char *s, size_t n) {
    return nxc__put_bytes(nxc__put_le16(p, (uint16_t)n), s, n);
}

/* A section's name (str8, `name_len` bytes) and conn (bytes32). */
static inline uint8_t *nxc__put_section(uint8_t *p, const nxc__md_section_t *sec, size_t name_len) {
    *p++ = (uint8_t)name_len;
    p = nxc__put_bytes(p, sec->name, name_len);
    p = nxc__put_le32(p, sec->conn.len);
    return nxc__put_bytes(p, sec->conn.data, sec->conn.len);
}

/* A blob being read: `off` bytes of `len` used. `what` names the blob in
 * messages ("blob", "peer part", "op part"). */
typedef struct nxc__reader {
    const uint8_t *p;
    size_t len;
    size_t off;
    const char *what;
} nxc__reader_t;

static inline size_t nxc__rd_left(const nxc__reader_t *r) {
    return r->len - r->off;
}

/* The format version at offset 4, once `magic` is at 0: newer than this
 * library reads is NXC_ERR_METADATA_VERSION (checked first: a newer
 * version may change everything after it). */
nxc_status_t nxc__rd_version(nxc__reader_t *r, const char *magic, unsigned *version);
/* NXC_ERR_METADATA_MALFORMED unless `n` bytes are left for `field`. */
nxc_status_t nxc__rd_need(const nxc__reader_t *r, size_t n, const char *field);
/* A str16 text field: 1..max printable ASCII bytes, copied NUL-terminated
 * into dst (max + 1 bytes). */
nxc_status_t nxc__rd_text16(nxc__reader_t *r, const char *field, size_t max, char *dst);
/* One length-prefixed span of section `name`: its conn (key == SIZE_MAX, a
 * u32 length) or its key number `key` (a u16 length), then the bytes. */
nxc_status_t nxc__rd_span(nxc__reader_t *r, const char *name, size_t key, nxc__bytes_t *out);
/* Section s's name (str8, 1..15 bytes of [a-z0-9_]) into secs[s].name,
 * unlike the names of secs[0..s). */
nxc_status_t nxc__rd_section_name(nxc__reader_t *r, size_t s, nxc__md_section_t *secs);
/* The notification key (str16), which must be the JSON's. */
nxc_status_t nxc__md_check_key(const nxc__metadata_t *m, nxc__reader_t *r);
/* The descriptor count (u32), which must be the JSON's. */
nxc_status_t nxc__md_ndesc(const nxc__metadata_t *m, nxc__reader_t *r);
/* m->keys_ for `nsec` sections of m->ndesc keys, once the bytes left can
 * hold them: `conn_min` bytes a section besides its keys, 2 a key. */
nxc_status_t nxc__md_keys_table(nxc__metadata_t *m, nxc__reader_t *r, size_t nsec, size_t conn_min);
/* Whether `n` bytes at `s` are a transport name: 1..15 of [a-z0-9_]. */
bool nxc__transport_name_ok(const char *s, size_t n);
/* libsodium started (once per process). */
nxc_status_t nxc__md_lib_init(void);

/* The lengths of an encodable metadata's texts (set by nxc__md_check). */
typedef struct nxc__md_lens {
    size_t name, host, key;
    size_t section_name[NXC__MD_MAX_SECTIONS];
    uint64_t conns; /* sum over sections of 1 + name + 4 + conn */
    uint64_t keys;  /* sum over sections and descriptors of 2 + key */
} nxc__md_lens_t;

/* Everything the encoder cannot represent (docs/metadata.md §5.3):
 * NXC_ERR_INVALID_PARAM naming it; the lengths on success. */
nxc_status_t nxc__md_check(const nxc__metadata_t *md, nxc__md_lens_t *lens);

/* Version 2 (metadata_v2.c): the nixl_metadata string of `md`
 * ("b64:" peer "." op, malloc'd, NUL-terminated), and the decoding of one
 * (`s`, `n` bytes after "b64:") into `m`, whose JSON fields are set. */
nxc_status_t nxc__md_v2_pack(const nxc__metadata_t *md, const nxc__md_lens_t *lens, char **out_p,
                             size_t *len_p);
nxc_status_t nxc__md_v2_decode(const char *s, size_t n, nxc__metadata_t *m);
/* Drop m's hold on its peer part (nxc__md_free). */
void nxc__md_v2_release(nxc__metadata_t *m);

#endif
