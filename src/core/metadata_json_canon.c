/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A short cut past yajl for the descriptor list as nxc's own encoder writes
 * it. Decoding a text of 1024 descriptors took 240 us, nine tenths of it in
 * yajl's lexer and nxc's callbacks, and a read or write of 1024 small
 * blocks pays that at every begin.
 *
 * This is not a second JSON grammar. It reads only the exact bytes
 * nxc__md_json_encode writes for a list of valid descriptors:
 *
 *   {"descriptors":[{"device":"cpu","ptr":4096,"size":4096},...]
 *
 * no white space, keys in that order, the device a string of printable
 * ASCII with no escape that nxc_device_parse accepts, ptr and size
 * integers of 1 to 18 digits with no leading zero (so above 0, and their
 * sum cannot overflow). Such bytes mean the same to any JSON parser, and
 * yajl would have produced these very descriptors. The fields after the
 * list are read the same way (nxc__md_json_canon_tail), or else given to
 * yajl with the list cut out. Anything else, a single space included,
 * makes the short cut read nothing, and the whole text goes through yajl,
 * which alone decides what is malformed and says why.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/metadata_json.h"
#include "util/text.h"

bool nxc__md_json_canon = true;

/* Fewer bytes than a canonical descriptor of host memory with an address
 * of 12 digits and a size of 4 ({"device":"cpu","ptr":...,"size":4096},
 * 51 bytes with its comma): the text's length over this is a little more
 * than the descriptors it holds. */
#define CANON_DESC_BYTES 48

typedef struct cursor {
    const char *at, *end;
} cursor_t;

/* Step over the literal `lit` (a string constant) if it comes next. */
#define LITERAL(c, lit) literal(c, lit, sizeof lit - 1)
static bool literal(cursor_t *c, const char *lit, size_t n) {
    if ((size_t)(c->end - c->at) < n || memcmp(c->at, lit, n) != 0) return false;
    c->at += n;
    return true;
}

/* An integer of 1..18 digits with no leading zero. */
static bool positive(cursor_t *c, uint64_t *v_p) {
    const char *p = c->at;
    if (p == c->end || *p < '1' || *p > '9') return false;
    uint64_t v = 0;
    for (; p < c->end && *p >= '0' && *p <= '9'; p++) {
        if (p - c->at == 18) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    c->at = p;
    *v_p = v;
    return true;
}

/* A string of printable ASCII other than '"' and '\' (no escape: its bytes
 * are its value); *s_p and *n_p are those bytes. */
static bool plain_string(cursor_t *c, const char **s_p, size_t *n_p) {
    if (!LITERAL(c, "\"")) return false;
    const char *close = memchr(c->at, '"', (size_t)(c->end - c->at));
    if (!close || !nxc__json_plain((const unsigned char *)c->at, (size_t)(close - c->at)))
        return false;
    *s_p = c->at;
    *n_p = (size_t)(close - c->at);
    c->at = close + 1;
    return true;
}

/* Such a string that names a device. */
static bool device(cursor_t *c, nxc__device_memo_t *memo, nxc_device_t *dev) {
    const char *s;
    size_t n;
    return plain_string(c, &s, &n) && n > 0 && n <= NXC_DEVICE_TEXT_MAX &&
           nxc__device_parse_memo(memo, s, n, dev) == NXC_OK;
}

/* {"device":"...","ptr":N,"size":N} */
static bool descriptor(cursor_t *c, nxc__device_memo_t *memo, nxc__rdesc_t *d) {
    return LITERAL(c, "{\"device\":") && device(c, memo, &d->device) && LITERAL(c, ",\"ptr\":") &&
           positive(c, &d->addr) && LITERAL(c, ",\"size\":") && positive(c, &d->size) &&
           LITERAL(c, "}");
}

bool nxc__md_descs_room(nxc__rdesc_t **descs, size_t *cap, size_t i) {
    while (i >= *cap) {
        size_t want = *cap ? *cap * 2 : 4;
        if (want <= i) want = i + 1;
        nxc__rdesc_t *d = realloc(*descs, want * sizeof *d);
        if (!d) return false;
        *descs = d;
        *cap = want;
    }
    return true;
}

size_t nxc__md_json_canon_descs(const char *text, size_t len, nxc__rdesc_t **descs, size_t *cap,
                                size_t *n_p) {
    cursor_t c = {text, text + len};
    nxc__device_memo_t memo = {.len = 0};
    if (!nxc__md_json_canon || !LITERAL(&c, NXC__MD_JSON_CANON_OPEN)) return 0;
    /* Room for as many descriptors as the text likely holds: a canonical
     * one of host memory takes about 50 bytes. Growing from 4 by doubling
     * took nine reallocations for 1024, each freeing the last. */
    if (!nxc__md_descs_room(descs, cap, (size_t)(c.end - c.at) / CANON_DESC_BYTES)) return 0;
    size_t n = 0;
    do {
        if (n == NXC__MD_MAX_DESCS || !nxc__md_descs_room(descs, cap, n) ||
            !descriptor(&c, &memo, &(*descs)[n]))
            return 0;
        n++;
    } while (LITERAL(&c, ","));
    if (c.at == c.end || *c.at != ']') return 0;
    *n_p = n;
    return (size_t)(c.at - text);
}

bool nxc__md_json_canon_tail(const char *text, size_t len, nxc__md_canon_tail_t *tail) {
    cursor_t c = {text, text + len};
    uint64_t kind;
    bool ok = nxc__md_json_canon && LITERAL(&c, "],\"nixl_metadata\":") &&
              plain_string(&c, &tail->nixl, &tail->nixl_len) &&
              LITERAL(&c, ",\"notification_key\":") &&
              plain_string(&c, &tail->key, &tail->key_len) && LITERAL(&c, ",\"operation_kind\":") &&
              positive(&c, &kind) && LITERAL(&c, "}") && c.at == c.end;
    if (!ok || tail->key_len < 1 || tail->key_len > NXC_KEY_MAX || (kind != 1 && kind != 2))
        return false;
    tail->kind = (int)kind;
    return true;
}
