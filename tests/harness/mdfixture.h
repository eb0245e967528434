/* SPDX-License-Identifier: Apache-2.0 */
/* Test-only metadata values of known content for the codec's unit tests
 * (test_metadata, test_metadata_v2), and the checks they share. */
#ifndef NXT_MDFIXTURE_H
#define NXT_MDFIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "core/metadata.h"

#define NXT_MDFIX_STORAGE (64 * 1024 + 1) /* bytes of storage */

/* A metadata value plus the storage its pointers point into. */
typedef struct nxt_mdfix {
    nxc__metadata_t md;
    uint8_t *storage;
    nxc__bytes_t *keys;
} nxt_mdfix_t;

/* ndesc descriptors, nsec sections ("ucx", "tcp", "s2".."s7"); key j of
 * section s is (j + s) % 7 bytes (so some are empty); conn of section s is
 * 10 + s bytes, at storage + s. */
void nxt_mdfix_init(nxt_mdfix_t *f, size_t ndesc, size_t nsec, int kind);
void nxt_mdfix_free(nxt_mdfix_t *f);
/* The longest name, host, notification key and (section 7's, of a fixture
 * of 8 sections) section name the format allows. */
void nxt_mdfix_longest(nxt_mdfix_t *f);

/* Everything the format carries must come back equal: b against a. */
void nxt_md_check_same(const nxc__metadata_t *a, const nxc__metadata_t *b);

/* Decode `len` bytes of `text` and return the status; frees on success; on
 * failure checks that the output was left zeroed, holding nothing, and that
 * a "metadata: " message was set. */
nxc_status_t nxt_md_dec(const char *text, size_t len);

/* A little-endian byte builder for hand-built blobs and parts: each call
 * appends (the buffer grows; free b->p). */
typedef struct nxt_bb {
    uint8_t *p;
    size_t len, cap;
} nxt_bb_t;
void nxt_bb_bytes(nxt_bb_t *b, const void *data, size_t n);
void nxt_bb_u8(nxt_bb_t *b, uint8_t v);
void nxt_bb_u16(nxt_bb_t *b, uint16_t v);
void nxt_bb_u32(nxt_bb_t *b, uint32_t v);
void nxt_bb_u64(nxt_bb_t *b, uint64_t v);
void nxt_bb_str16(nxt_bb_t *b, const char *s); /* u16 length, then the bytes */
void nxt_bb_str8(nxt_bb_t *b, const char *s);  /* u8 length, then the bytes */

#endif
