/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nixl_metadata string of the metadata text and the blob inside it:
 * "b64:" + base64(zlib(blob)) (legacy: bare hex), docs/metadata.md §4.
 * Decoding is bounded: the zlib stream may inflate to NXC_METADATA_MAX bytes
 * at most, and must be one complete stream with nothing after it.
 */
#include "core/metadata_wrap.h"

#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util/error.h"
#include "util/sys.h"

#define B64_PREFIX "b64:"
#define B64_PREFIX_LEN 4
/* Blobs up to this size (an op of a few descriptors) are stored in zlib's
 * uncompressed blocks: any deflate level costs about 11 us for a few hundred
 * bytes (hash tables reset per stream), the bulk of creating an op, to save
 * about 200 bytes of text. Larger blobs (many descriptors) compress well. */
#define ZLIB_STORE_MAX 2048
#define ZLIB_LEVEL Z_BEST_SPEED

/* `groups` whole 4-character groups of standard base64, no padding, into
 * 3 bytes each. OpenSSL's decoder takes four characters a step through a
 * table: 1.4 ns a character here, against 7.6 for nettle's (nxc's base64
 * before), which calls a function per character. It is lenient: it skips
 * white space and other non-alphabet bytes at either end (the text then
 * decodes to fewer bytes, refused below) and takes '=' inside a group
 * (refused before). */
static bool base64_groups(const char *b, size_t groups, uint8_t *bin) {
    if (groups == 0) return true;
    if (groups > INT_MAX / 4 || memchr(b, '=', 4 * groups)) return false;
    return EVP_DecodeBlock(bin, (const unsigned char *)b, (int)(4 * groups)) == (int)(3 * groups);
}

/* The last group, which may hold padding, strictly: "xxxx", "xxx=" or
 * "xx==" and nothing else ('=' before a letter, "x==="), with the bits the
 * padding drops all zero, so that a byte string has one text. Decoded as
 * the other groups, each '=' read as 'A' (zero bits): then the byte the
 * spare bits went to must be zero. */
static bool base64_last(const char *b, uint8_t *bin, size_t *got) {
    size_t pads = b[3] == '=' ? (b[2] == '=' ? 2 : 1) : 0;
    const char group[4] = {b[0], b[1], pads == 2 ? 'A' : b[2], pads ? 'A' : b[3]};
    uint8_t out[3];
    if (!base64_groups(group, 1, out) || (pads && out[3 - pads] != 0)) return false;
    memcpy(bin, out, 3 - pads);
    *got = 3 - pads;
    return true;
}

/* Standard base64 of `bn` characters (a multiple of 4) into `bin`,
 * strictly, so that every byte string has exactly one accepted text
 * (test_metadata base64_one_text). */
static bool base64_strict(const char *b, size_t bn, uint8_t *bin, size_t *bin_len) {
    *bin_len = 0;
    if (bn == 0) return true;
    size_t last = bn / 4 - 1, got;
    if (!base64_groups(b, last, bin) || !base64_last(b + 4 * last, bin + 3 * last, &got))
        return false;
    *bin_len = 3 * last + got;
    return true;
}

/* The last base64 text this thread decoded, and its bytes. The texts of
 * one owner's ops are mostly the same bytes (its identity and transport
 * addresses; the op's secret, key and record differ): a 4-character group
 * equal to the memo's at the same place, other than the last, decodes to
 * the memo's 3 bytes, so only the runs that differ are decoded, and a
 * text decodes, or is refused, exactly as a whole decode would. */
#define B64_MEMO_MAX 4096
typedef struct b64_memo {
    size_t n; /* 0: empty */
    char text[B64_MEMO_MAX];
    uint8_t bin[B64_MEMO_MAX / 4 * 3];
} b64_memo_t;
static _Thread_local b64_memo_t b64_memo;
bool nxc__md_b64_memo = true;

/* Group g (of a text of more than g + 1 groups) is the memo's group g,
 * and that was not the memo's last (the only one that may hold padding). */
static bool memo_group(const b64_memo_t *m, const char *b, size_t g) {
    return 4 * (g + 1) < m->n && !memcmp(b + 4 * g, m->text + 4 * g, 4);
}

/* The first group from g on, before `last`, that is not memo_group():
 * eight characters a step while they match. */
static size_t memo_run_end(const b64_memo_t *m, const char *b, size_t g, size_t last) {
    size_t vouched = m->n / 4 > 0 ? m->n / 4 - 1 : 0; /* the memo's groups but its last */
    size_t end = 4 * (last < vouched ? last : vouched), i = 4 * g;
    while (i + 8 <= end && !memcmp(b + i, m->text + i, 8))
        i += 8;
    while (i < end && !memcmp(b + i, m->text + i, 4))
        i += 4;
    return i / 4 > g ? i / 4 : g;
}

/* Text `b` of `bn` characters (a multiple of 4, at most B64_MEMO_MAX)
 * decoded into `bin`: each run of groups equal to the memo's copied from
 * it, each run that differs decoded; then the memo is this text. */
static bool base64_memo(const char *b, size_t bn, uint8_t *bin, size_t *bin_len) {
    b64_memo_t *m = &b64_memo;
    size_t last = bn / 4 - 1, got = 0;
    bool ok = true;
    for (size_t g = 0; ok && g < last;) {
        size_t same = memo_run_end(m, b, g, last);
        memcpy(bin + 3 * g, m->bin + 3 * g, 3 * (same - g));
        size_t end = same;
        while (end < last && !memo_group(m, b, end))
            end++;
        ok = base64_groups(b + 4 * same, end - same, bin + 3 * same);
        g = end;
    }
    if (!ok || !base64_last(b + 4 * last, bin + 3 * last, &got)) {
        m->n = 0;
        return false;
    }
    *bin_len = 3 * last + got;
    memcpy(m->text, b, bn);
    memcpy(m->bin, bin, *bin_len);
    m->n = bn;
    return true;
}

/* One inflater and two deflaters (stored, compressing) per thread, reset
 * for each text. Setting one up allocates its state (about 7 KiB to
 * inflate, five blocks of 25 KiB to deflate) and ending it frees that:
 * once per begin, that was a tenth of decoding a one-descriptor text from
 * cold caches, and once per create a fifth of creating one. A thread's
 * streams are ended when the thread exits (the key's destructor). */
enum { DEFLATE_STORED, DEFLATE_FAST, DEFLATERS };
typedef struct zlib_streams {
    z_stream inflater, deflater[DEFLATERS];
    bool inflating, deflating[DEFLATERS]; /* set up */
} zlib_streams_t;

static pthread_key_t zlib_key;
static pthread_once_t zlib_once = PTHREAD_ONCE_INIT;
static bool zlib_keyed;

static void zlib_streams_free(void *p) {
    zlib_streams_t *z = p;
    if (z->inflating) inflateEnd(&z->inflater);
    for (int i = 0; i < DEFLATERS; i++)
        if (z->deflating[i]) deflateEnd(&z->deflater[i]);
    free(z);
}

static void zlib_key_create(void) {
    zlib_keyed = pthread_key_create(&zlib_key, zlib_streams_free) == 0;
}

/* This thread's streams (NULL: out of memory, or no thread key). */
static zlib_streams_t *thread_zlib(void) {
    pthread_once(&zlib_once, zlib_key_create);
    return zlib_keyed ? nxc__thread_value(zlib_key, sizeof(zlib_streams_t)) : NULL;
}

/* The thread's inflater, ready for a new stream (NULL: out of memory, or
 * no thread key; the caller reports it as out of memory). */
static z_stream *thread_inflater(void) {
    zlib_streams_t *z = thread_zlib();
    if (!z) return NULL;
    if (z->inflating) return inflateReset(&z->inflater) == Z_OK ? &z->inflater : NULL;
    if (inflateInit(&z->inflater) != Z_OK) return NULL;
    z->inflating = true;
    return &z->inflater;
}

/* The thread's deflater for `level` (Z_NO_COMPRESSION or ZLIB_LEVEL), ready
 * for a new stream. A 4 KiB window and small hash keep the stream standard
 * zlib, readable by any inflater; compress2()'s defaults would set up a
 * 32 KiB window and 64 KiB of hash state for a blob of a few hundred
 * bytes. The stored deflater never looks at its hash, which deflateReset()
 * clears at every create: the smallest one (memLevel 1, 512 bytes against
 * 4 KiB) gives the same stream in 570 ns against 670-770 for a 400-byte
 * blob. NULL: as thread_inflater(). */
static z_stream *thread_deflater(int level) {
    zlib_streams_t *z = thread_zlib();
    if (!z) return NULL;
    bool stored = level == Z_NO_COMPRESSION;
    int i = stored ? DEFLATE_STORED : DEFLATE_FAST;
    z_stream *zs = &z->deflater[i];
    if (z->deflating[i]) return deflateReset(zs) == Z_OK ? zs : NULL;
    if (deflateInit2(zs, level, Z_DEFLATED, 12, stored ? 1 : 4, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    z->deflating[i] = true;
    return zs;
}

/* zlib(blob) into malloc'd *z_p. */
static nxc_status_t deflate_blob(const uint8_t *blob, size_t blob_len, uint8_t **z_p,
                                 size_t *zlen_p) {
    z_stream *zs = thread_deflater(blob_len <= ZLIB_STORE_MAX ? Z_NO_COMPRESSION : ZLIB_LEVEL);
    if (!zs)
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory for a zlib deflater");
    uLong zlen = deflateBound(zs, (uLong)blob_len);
    uint8_t *z = malloc(zlen);
    if (!z) return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    zs->next_in = (Bytef *)blob;
    zs->avail_in = (uInt)blob_len;
    zs->next_out = z;
    zs->avail_out = (uInt)zlen;
    int rc = deflate(zs, Z_FINISH);
    if (rc != Z_STREAM_END) {
        free(z);
        return nxc__err(NXC_ERR_SYSTEM, "metadata encode: zlib deflate failed (%d)", rc);
    }
    *z_p = z;
    *zlen_p = zs->total_out;
    return NXC_OK;
}

/* "b64:" + base64 of `len` bytes, malloc'd and NUL-terminated. */
static nxc_status_t b64_text(const uint8_t *bytes, size_t len, char **out_p) {
    size_t b64_len = (len + 2) / 3 * 4;
    char *out = len <= INT_MAX / 2 ? malloc(B64_PREFIX_LEN + b64_len + 1) : NULL;
    if (!out) return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    memcpy(out, B64_PREFIX, B64_PREFIX_LEN);
    /* with its '=' padding, and a NUL */
    EVP_EncodeBlock((unsigned char *)out + B64_PREFIX_LEN, bytes, (int)len);
    *out_p = out;
    return NXC_OK;
}

nxc_status_t nxc__md_pack(const uint8_t *blob, size_t blob_len, char **out_p) {
    uint8_t *z = NULL;
    size_t zlen = 0;
    nxc_status_t st = deflate_blob(blob, blob_len, &z, &zlen);
    if (st == NXC_OK) st = b64_text(z, zlen, out_p);
    free(z);
    return st;
}

nxc_status_t nxc__md_pack_part(const uint8_t *part, size_t len, char **out_p) {
    if (len <= ZLIB_STORE_MAX) return b64_text(part, len, out_p);
    return nxc__md_pack(part, len, out_p);
}

nxc_status_t nxc__md_unbase64(const char *b, size_t bn, bool memo, const char *what, uint8_t **out,
                              size_t *out_len) {
    if (bn % 4)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s: base64 length %zu is not a multiple of 4", what, bn);
    uint8_t *bin = malloc(bn / 4 * 3 + 1);
    if (!bin) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    size_t bin_len = 0;
    memo = memo && nxc__md_b64_memo && bn > 0 && bn <= B64_MEMO_MAX;
    if (!(memo ? base64_memo(b, bn, bin, &bin_len) : base64_strict(b, bn, bin, &bin_len))) {
        free(bin);
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: %s: invalid base64", what);
    }
    *out = bin;
    *out_len = bin_len;
    return NXC_OK;
}

/* Legacy hex (docs/metadata.md §4.1): even length, 0-9 a-f A-F only. */
static nxc_status_t unhex(const char *s, size_t n, uint8_t **out, size_t *out_len) {
    if (n % 2)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: \"nixl_metadata\": neither \"b64:\" base64 nor hex (odd "
                        "length %zu)",
                        n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "metadata: \"nixl_metadata\": neither \"b64:\" base64 nor hex "
                            "(byte %zu is not a hex digit)",
                            i);
    }
    uint8_t *bin = malloc(n / 2 + 1);
    if (!bin) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    if (sodium_hex2bin(bin, n / 2 + 1, s, n, NULL, out_len, NULL) != 0) {
        free(bin);
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: \"nixl_metadata\": invalid hex");
    }
    *out = bin;
    return NXC_OK;
}

nxc_status_t nxc__md_unwrap(const char *s, size_t n, uint8_t **out, size_t *out_len) {
    if (n >= B64_PREFIX_LEN && !memcmp(s, B64_PREFIX, B64_PREFIX_LEN))
        return nxc__md_unbase64(s + B64_PREFIX_LEN, n - B64_PREFIX_LEN, true,
                                "\"nixl_metadata\" after \"b64:\"", out, out_len);
    return unhex(s, n, out, out_len);
}

nxc_status_t nxc__md_unpack_part(const char *b, size_t bn, const char *what, uint8_t **out_p,
                                 size_t *len_p) {
    uint8_t *bin = NULL;
    size_t len = 0;
    nxc_status_t st = nxc__md_unbase64(b, bn, false, what, &bin, &len);
    if (st || (len > 0 && bin[0] == 'N')) { /* no zlib stream starts with 'N' */
        *out_p = bin;
        *len_p = len;
        return st;
    }
    st = nxc__md_inflate(bin, len, out_p, len_p);
    free(bin);
    return st;
}

/* Inflate one complete zlib stream with nothing after it, producing at most
 * NXC_METADATA_MAX bytes. */
nxc_status_t nxc__md_inflate(const uint8_t *in, size_t in_len, uint8_t **out_p, size_t *out_len_p) {
    const size_t limit = (size_t)NXC_METADATA_MAX + 1; /* one more to detect "too large" */
    size_t cap = in_len < limit / 4 ? in_len * 4 : limit;
    if (cap < 256) cap = 256;
    uint8_t *out = malloc(cap);
    if (!out) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");

    z_stream *zs = thread_inflater();
    if (!zs) {
        free(out);
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory for a zlib inflater");
    }
    zs->next_in = (Bytef *)in; /* zlib does not write through next_in */
    zs->avail_in = (uInt)in_len;
    nxc_status_t st = NXC_OK;
    for (;;) {
        zs->next_out = out + zs->total_out;
        zs->avail_out = (uInt)(cap - zs->total_out);
        /* Z_FINISH: a stream that ends within the call is not copied into
         * zlib's sliding window (cold memory, once the reused inflater has
         * one). Output room that runs out still gives Z_BUF_ERROR, and the
         * next call goes on as with Z_NO_FLUSH. */
        int rc = inflate(zs, Z_FINISH);
        if (rc == Z_STREAM_END) break;
        if (rc == Z_OK || rc == Z_BUF_ERROR) {
            if (zs->avail_out == 0) {
                if (cap >= limit) {
                    st = nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                                  "metadata: \"nixl_metadata\" inflates to more than %u bytes",
                                  (unsigned)NXC_METADATA_MAX);
                    break;
                }
                size_t ncap = cap * 2 < limit ? cap * 2 : limit;
                uint8_t *nout = realloc(out, ncap);
                if (!nout) {
                    st = nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
                    break;
                }
                out = nout;
                cap = ncap;
                continue;
            }
            if (zs->avail_in == 0 || rc == Z_BUF_ERROR) {
                st = nxc__err(NXC_ERR_METADATA_MALFORMED,
                              "metadata: \"nixl_metadata\": zlib stream is truncated");
                break;
            }
            continue;
        }
        if (rc == Z_MEM_ERROR)
            st = nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory inflating");
        else
            st = nxc__err(NXC_ERR_METADATA_MALFORMED,
                          "metadata: \"nixl_metadata\" is not a valid zlib stream (%s)",
                          zs->msg ? zs->msg : (rc == Z_NEED_DICT ? "needs a dictionary" : "error"));
        break;
    }
    if (st == NXC_OK && zs->avail_in != 0)
        st = nxc__err(NXC_ERR_METADATA_MALFORMED,
                      "metadata: \"nixl_metadata\": %u trailing bytes after the zlib stream",
                      (unsigned)zs->avail_in);
    if (st == NXC_OK && zs->total_out > NXC_METADATA_MAX)
        st = nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                      "metadata: \"nixl_metadata\" inflates to more than %u bytes",
                      (unsigned)NXC_METADATA_MAX);
    size_t out_len = zs->total_out;
    if (st) {
        free(out);
        return st;
    }
    *out_p = out;
    *out_len_p = out_len;
    return NXC_OK;
}
