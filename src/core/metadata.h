/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metadata codec (internal). The text a passive op hands out (version 1;
 * version 2's nixl_metadata has two parts, docs/metadata.md 6.1):
 *
 *   {"descriptors":[{"device":"cpu","ptr":140234,"size":4096}, ...],
 *    "nixl_metadata":"b64:<base64(zlib(blob))>",
 *    "notification_key":"<key>","operation_kind":1}
 *
 * and the blob inside it (nxc's own versioned little-endian format). The
 * format is specified in docs/metadata.md. Decoding treats its input as
 * hostile: every length is checked, totals are bounded by NXC_METADATA_MAX,
 * and nothing is allocated in proportion to a length before that length has
 * been checked against the bytes actually present.
 */
#ifndef NXC_CORE_METADATA_H
#define NXC_CORE_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

struct nxc__md_peer;

#define NXC__BLOB_MAGIC "NXCB"
#define NXC__BLOB_VERSION 2             /* the highest version read and written */
#define NXC__MD_MAX_DESCS NXC_DESCS_MAX /* descriptors in one metadata */
#define NXC__MD_MAX_SECTIONS 8          /* transports offered in one metadata */
#define NXC__TRANSPORT_NAME_MAX 15
#define NXC__HOST_MAX 127
#define NXC__SECRET_LEN 16
#define NXC__INSTANCE_LEN 16

/* operation_kind values of the JSON (the reference's OperationKind). */
#define NXC__MD_KIND_READ 1  /* from a readable: the peer must READ */
#define NXC__MD_KIND_WRITE 2 /* from a writable: the peer must WRITE */

typedef struct nxc__bytes {
    const uint8_t *data;
    uint32_t len;
} nxc__bytes_t;

/* One remote descriptor as the JSON states it. */
typedef struct nxc__rdesc {
    uint64_t addr;
    uint64_t size;
    nxc_device_t device;
} nxc__rdesc_t;

/* What one transport offers: its connection info and one access key per
 * descriptor (a key may be empty when the transport needs none). */
typedef struct nxc__md_section {
    char name[NXC__TRANSPORT_NAME_MAX + 1];
    nxc__bytes_t conn;
    nxc__bytes_t *keys; /* ndesc entries */
} nxc__md_section_t;

typedef struct nxc__metadata {
    /* JSON level */
    int operation_kind; /* NXC__MD_KIND_READ or NXC__MD_KIND_WRITE */
    char notification_key[NXC_KEY_MAX + 1];
    size_t ndesc;
    nxc__rdesc_t *descs;
    /* blob level */
    uint16_t version;
    char name[NXC_NAME_MAX + 1];         /* the passive connector's name */
    char host[NXC__HOST_MAX + 1];        /* its host identity */
    uint8_t instance[NXC__INSTANCE_LEN]; /* its connector's random id */
    uint32_t pid;                        /* its process */
    uint64_t start_time;                 /* its process start time (clock ticks) */
    uint8_t secret[NXC__SECRET_LEN];     /* the op's access secret */
    size_t nsections;
    nxc__md_section_t sections[NXC__MD_MAX_SECTIONS];
    /* decode only: owned storage the pointers above point into */
    uint8_t *blob_; /* version 1's blob, version 2's op part */
    size_t blob_len_;
    nxc__bytes_t *keys_;
    struct nxc__md_peer *peer_; /* version 2: the peer part, shared (metadata_v2.c) */
} nxc__metadata_t;

/*
 * Encode `md` into a malloc'd NUL-terminated JSON text (caller frees), in
 * format version `md->version`: 1 (or 0) one blob, 2 a peer part and an op
 * part (docs/metadata.md §6.1). Fields `blob_*`, `keys_`, `peer_` are ignored;
 * a section whose `keys` is NULL has all keys empty. ptr and size must lie
 * in 1..2^63-1 (JSON integers are signed 64-bit). Errors: NXC_ERR_NO_MEMORY,
 * NXC_ERR_INVALID_PARAM (a field out of range, e.g. too many descriptors),
 * NXC_ERR_METADATA_TOO_LARGE, NXC_ERR_SYSTEM (libsodium failed to start).
 */
nxc_status_t nxc__md_encode(const nxc__metadata_t *md, char **text_p, size_t *len_p);

/*
 * Decode `len` bytes of `text` (not necessarily NUL-terminated) into `md`.
 * On success the caller owns `md` and frees it with nxc__md_free(); on error
 * `md` is zeroed (freeing it is harmless). Errors (each with a message via nxc__err):
 * NXC_ERR_METADATA_TOO_LARGE, NXC_ERR_METADATA_MALFORMED,
 * NXC_ERR_METADATA_VERSION, NXC_ERR_INVALID_DEVICE, NXC_ERR_NO_MEMORY.
 * Accepts, for nixl_metadata, version 1's "b64:"-prefixed base64 and
 * (legacy) bare lowercase/uppercase hex, and version 2's two parts
 * (metadata_v2.c; md->peer_ then holds the shared peer part, which
 * nxc__md_free drops). A decoded metadata points into itself through its
 * allocations only: it may be moved (copied by value) until it is freed.
 */
nxc_status_t nxc__md_decode(const char *text, size_t len, nxc__metadata_t *md);

void nxc__md_free(nxc__metadata_t *md);

/* The section named `name`, or NULL. */
const nxc__md_section_t *nxc__md_section(const nxc__metadata_t *md, const char *name);

#endif
