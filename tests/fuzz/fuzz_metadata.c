/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzing of the metadata decoder (src/core/metadata.c).
 *
 * Two ways to run it:
 *
 *   - libFuzzer: build with clang -fsanitize=fuzzer,address,undefined
 *     -DNXC_LIBFUZZER. LLVMFuzzerTestOneInput decodes the input; a custom
 *     mutator adds structure-aware mutations (including mutations of the
 *     inner blob behind base64 + zlib) to libFuzzer's own, and starts from a
 *     built-in valid metadata when the corpus is empty.
 *
 *   - Standalone (default): `fuzz_metadata [iterations [seed [corpus-dir]]]`
 *     runs a bounded, deterministic mutation campaign (default 20000
 *     iterations, seed 1) from a few valid texts it builds itself, and prints
 *     a one-line summary. With corpus-dir, the seed texts are also written
 *     there (a starting corpus for libFuzzer).
 *
 * Every input that decodes is re-encoded and decoded again, and the two
 * decodings must agree (the decoder accepts nothing the encoder cannot
 * represent). Every input is also decoded with the descriptor list's short
 * cut off, and both must give the same status, message and metadata. Any crash, sanitizer report,
 * or unexpected status fails.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/metadata.h"
#include "core/metadata_json.h"
#include "core/metadata_wrap.h"
#ifndef NXC_LIBFUZZER
#include "nxt.h" /* the standalone campaign's clock; the libFuzzer build has no harness */
#endif

#define MAX_TEXT (256u * 1024) /* mutated texts are kept below this */
#define MAX_BLOB (1u << 20)    /* inner blobs the mutator inflates */

/* ------------------------------------------------------------------------ */
/* Round-trip property                                                       */
/* ------------------------------------------------------------------------ */

static void die(const char *what, nxc_status_t st) {
    fprintf(stderr, "fuzz_metadata: %s: %s (%s)\n", what, nxc_status_string(st), nxc_last_error());
    abort();
}

/* Do two decodings hold the same metadata? */
static int md_same(const nxc__metadata_t *a, const nxc__metadata_t *b) {
    int same = a->operation_kind == b->operation_kind &&
               !strcmp(a->notification_key, b->notification_key) && a->ndesc == b->ndesc &&
               !strcmp(a->name, b->name) && !strcmp(a->host, b->host) && a->pid == b->pid &&
               a->start_time == b->start_time && a->nsections == b->nsections &&
               !memcmp(a->instance, b->instance, sizeof a->instance) &&
               !memcmp(a->secret, b->secret, sizeof a->secret);
    for (size_t i = 0; same && i < a->ndesc; i++)
        same = a->descs[i].addr == b->descs[i].addr && a->descs[i].size == b->descs[i].size &&
               a->descs[i].device.kind == b->descs[i].device.kind &&
               a->descs[i].device.id == b->descs[i].device.id;
    for (size_t s = 0; same && s < a->nsections; s++) {
        const nxc__md_section_t *x = &a->sections[s], *y = &b->sections[s];
        same = !strcmp(x->name, y->name) && x->conn.len == y->conn.len &&
               (!x->conn.len || !memcmp(x->conn.data, y->conn.data, x->conn.len));
        for (size_t j = 0; same && j < a->ndesc; j++)
            same = x->keys[j].len == y->keys[j].len &&
                   (!x->keys[j].len || !memcmp(x->keys[j].data, y->keys[j].data, x->keys[j].len));
    }
    return same;
}

static void check_roundtrip(const nxc__metadata_t *a) {
    char *text = NULL;
    size_t len = 0;
    nxc_status_t st = nxc__md_encode(a, &text, &len);
    if (st == NXC_ERR_METADATA_TOO_LARGE) return;
    if (st != NXC_OK) die("a decoded metadata does not re-encode", st);
    nxc__metadata_t b;
    st = nxc__md_decode(text, len, &b);
    if (st != NXC_OK) die("a re-encoded metadata does not decode", st);
    if (!md_same(a, &b)) {
        fprintf(stderr, "fuzz_metadata: decode(encode(decode(x))) differs from decode(x)\n");
        abort();
    }
    nxc__md_free(&b);
    free(text);
}

/* The short cuts (metadata_json_canon.c, and the base64 memo holding the
 * previous input's text) must change nothing: the same input decoded by
 * yajl alone, with no memo, gives the same status, the same message and
 * the same metadata. */
static void check_short_cut(const uint8_t *data, size_t size, nxc_status_t st,
                            const nxc__metadata_t *md) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", st == NXC_OK ? "" : nxc_last_error());
    nxc__md_json_canon = nxc__md_b64_memo = false;
    nxc__metadata_t slow;
    nxc_status_t st2 = nxc__md_decode((const char *)data, size, &slow);
    nxc__md_json_canon = nxc__md_b64_memo = true;
    int same = st == st2 && (st != NXC_OK ? !strcmp(msg, nxc_last_error()) : md_same(md, &slow));
    if (st2 == NXC_OK) nxc__md_free(&slow);
    if (!same) {
        fprintf(stderr, "fuzz_metadata: the short cut and yajl disagree: %s (%s) vs %s (%s)\n",
                nxc_status_string(st), msg, nxc_status_string(st2),
                st2 == NXC_OK ? "" : nxc_last_error());
        abort();
    }
}

/* Decode one input; returns the status. */
static nxc_status_t run_one(const uint8_t *data, size_t size) {
    nxc__metadata_t md;
    nxc_status_t st = nxc__md_decode((const char *)data, size, &md);
    check_short_cut(data, size, st, &md);
    if (st == NXC_OK) {
        check_roundtrip(&md);
        nxc__md_free(&md);
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_one(data, size);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers and a byte buffer                            */
/* ------------------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); 0 when n == 0. */
static size_t below(rng_t *r, size_t n) {
    return n ? (size_t)(rnd(r) % n) : 0;
}

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t n) {
    if (n <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
}

static void buf_set(buf_t *b, const void *data, size_t n) {
    buf_reserve(b, n + 1);
    if (n) memcpy(b->p, data, n);
    b->len = n;
}

/* Replace b[at, at + del) by `ins` bytes. */
static void buf_splice(buf_t *b, size_t at, size_t del, const void *ins, size_t n) {
    if (at > b->len) at = b->len;
    if (del > b->len - at) del = b->len - at;
    buf_reserve(b, b->len - del + n + 1);
    memmove(b->p + at + n, b->p + at + del, b->len - at - del);
    if (n) memcpy(b->p + at, ins, n);
    b->len = b->len - del + n;
}

static void buf_free(buf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Seeds                                                                     */
/* ------------------------------------------------------------------------ */

#define NSEEDS 6
static buf_t seeds[NSEEDS];

/* form: 0 version 1, 1 version 1 in legacy hex, 2 version 2 (two parts,
 * which the blob mutations leave to the text mutations) */
static void build_seed(buf_t *out, size_t ndesc, size_t nsec, int kind, int cuda, int form) {
    int hex = form == 1;
    static uint8_t storage[512];
    nxc__metadata_t md;
    memset(&md, 0, sizeof md);
    for (size_t i = 0; i < sizeof storage; i++)
        storage[i] = (uint8_t)(i * 37 + 11);
    md.operation_kind = kind;
    md.version = form == 2 ? 2 : 1;
    snprintf(md.notification_key, sizeof md.notification_key,
             "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f");
    snprintf(md.name, sizeof md.name, "prefill-worker-%zu", ndesc);
    snprintf(md.host, sizeof md.host, "node-17:3f2a9c");
    memcpy(md.instance, storage + 1, NXC__INSTANCE_LEN);
    memcpy(md.secret, storage + 40, NXC__SECRET_LEN);
    md.pid = 4242;
    md.start_time = 987654321;
    md.ndesc = ndesc;
    md.descs = calloc(ndesc, sizeof *md.descs);
    nxc__bytes_t *keys = calloc(ndesc * (nsec ? nsec : 1), sizeof *keys);
    if (!md.descs || !keys) abort();
    for (size_t i = 0; i < ndesc; i++) {
        md.descs[i].addr = 0x7f3a00000000ull + 0x200000ull * i;
        md.descs[i].size = 0x100000ull + i;
        md.descs[i].device =
            cuda ? (nxc_device_t){NXC_DEVICE_CUDA, 1} : (nxc_device_t){NXC_DEVICE_HOST, 0};
    }
    md.nsections = nsec;
    static const char *names[] = {"ucx", "tcp"};
    for (size_t s = 0; s < nsec; s++) {
        snprintf(md.sections[s].name, sizeof md.sections[s].name, "%s", names[s % 2]);
        md.sections[s].conn = (nxc__bytes_t){storage + 100, (uint32_t)(40 + 20 * s)};
        md.sections[s].keys = keys + s * ndesc;
        for (size_t j = 0; j < ndesc; j++)
            md.sections[s].keys[j] = (nxc__bytes_t){storage + j % 64, (uint32_t)((j + s) % 24)};
    }
    char *text = NULL;
    size_t len = 0;
    nxc_status_t st = nxc__md_encode(&md, &text, &len);
    if (st != NXC_OK) die("building a seed", st);
    free(md.descs);
    free(keys);
    if (hex) {
        /* the legacy form: nixl_metadata as hex of the same zlib bytes */
        json_t *root = json_loadb(text, len, 0, NULL);
        const char *s = json_string_value(json_object_get(root, "nixl_metadata"));
        size_t n = strlen(s) - 4;
        uint8_t *z = malloc(n);
        size_t zlen = 0;
        if (!z ||
            sodium_base642bin(z, n, s + 4, n, NULL, &zlen, NULL, sodium_base64_VARIANT_ORIGINAL))
            abort();
        char *h = malloc(zlen * 2 + 1);
        sodium_bin2hex(h, zlen * 2 + 1, z, zlen);
        json_object_set_new(root, "nixl_metadata", json_string(h));
        free(h);
        free(z);
        free(text);
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        if (!text) abort();
        len = strlen(text);
    }
    buf_set(out, text, len);
    free(text);
    nxc_status_t st2 = run_one(out->p, out->len);
    if (st2 != NXC_OK) die("a seed does not decode", st2);
}

static void build_seeds(void) {
    if (seeds[0].p) return;
    if (sodium_init() < 0) abort();
    build_seed(&seeds[0], 1, 1, NXC__MD_KIND_READ, 0, 0);
    build_seed(&seeds[1], 50, 2, NXC__MD_KIND_WRITE, 1, 0);
    build_seed(&seeds[2], 3, 2, NXC__MD_KIND_READ, 0, 1);
    build_seed(&seeds[3], 50, 1, NXC__MD_KIND_READ, 0, 1);
    build_seed(&seeds[4], 1, 1, NXC__MD_KIND_READ, 0, 2);
    build_seed(&seeds[5], 900, 2, NXC__MD_KIND_WRITE, 0, 2); /* a zlib'd op part */
}

/* ------------------------------------------------------------------------ */
/* Inner blob: extract (base64/hex + inflate) and reinsert                   */
/* ------------------------------------------------------------------------ */

static bool inflate_all(const uint8_t *in, size_t n, buf_t *out) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return false;
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    out->len = 0;
    int rc;
    do {
        buf_reserve(out, out->len + 4096);
        zs.next_out = out->p + out->len;
        zs.avail_out = (uInt)(out->cap - out->len);
        rc = inflate(&zs, Z_NO_FLUSH);
        out->len = zs.total_out;
    } while (rc == Z_OK && out->len < MAX_BLOB);
    inflateEnd(&zs);
    return rc == Z_STREAM_END;
}

/* Parse the text; on success *root holds the JSON and `blob` the inflated
 * inner blob, *hex says which encoding nixl_metadata used. */
static bool extract_blob(const buf_t *text, json_t **root_p, buf_t *blob, int *hex) {
    json_t *root = json_loadb((const char *)text->p, text->len, 0, NULL);
    if (!root) return false;
    const json_t *v = json_object_get(root, "nixl_metadata");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    uint8_t *z = s ? malloc(n + 1) : NULL;
    size_t zlen = 0;
    bool ok = false;
    if (z && n >= 4 && !memcmp(s, "b64:", 4)) {
        *hex = 0;
        ok = !sodium_base642bin(z, n + 1, s + 4, n - 4, NULL, &zlen, NULL,
                                sodium_base64_VARIANT_ORIGINAL);
    } else if (z) {
        *hex = 1;
        ok = !sodium_hex2bin(z, n + 1, s, n, NULL, &zlen, NULL);
    }
    ok = ok && inflate_all(z, zlen, blob);
    free(z);
    if (!ok) {
        json_decref(root);
        return false;
    }
    *root_p = root;
    return true;
}

/* Compress `blob`, put it back in `root` (consumed) and dump into `text`. */
static void reinsert_blob(json_t *root, const buf_t *blob, int hex, rng_t *r, buf_t *text) {
    uLongf zlen = compressBound((uLong)blob->len);
    uint8_t *z = malloc(zlen);
    if (!z || compress2(z, &zlen, blob->p, (uLong)blob->len, (int)below(r, 10)) != Z_OK) abort();
    if (below(r, 40) == 0 && zlen) z[below(r, zlen)] ^= (uint8_t)(1u << below(r, 8));
    size_t n =
        hex ? zlen * 2 + 1 : 4 + sodium_base64_ENCODED_LEN(zlen, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    if (!s) abort();
    if (hex) {
        sodium_bin2hex(s, n, z, zlen);
    } else {
        memcpy(s, "b64:", 4);
        sodium_bin2base64(s + 4, n - 4, z, zlen, sodium_base64_VARIANT_ORIGINAL);
    }
    json_object_set_new(root, "nixl_metadata", json_string(s));
    free(s);
    free(z);
    char *t = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!t) abort();
    buf_set(text, t, strlen(t));
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Blob mutations                                                            */
/* ------------------------------------------------------------------------ */

typedef struct field {
    size_t off;
    int width; /* 1, 2 or 4 */
} field_t;

#define MAX_FIELDS 256

static uint32_t rd_le(const uint8_t *p, int w) {
    uint32_t v = 0;
    for (int i = 0; i < w; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void wr_le(uint8_t *p, int w, uint32_t v) {
    for (int i = 0; i < w; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Walk the blob as far as it is consistent and record where its integer
 * fields (lengths, counts, header words) are, so mutations can hit them. */
static size_t locate_fields(const uint8_t *b, size_t len, field_t *f) {
    size_t n = 0;
#define ADD(o, w)                                                                                  \
    do {                                                                                           \
        if (n < MAX_FIELDS && (o) + (w) <= len) f[n++] = (field_t){(o), (w)};                      \
    } while (0)
    ADD(4, 2);  /* version */
    ADD(6, 2);  /* flags */
    ADD(8, 4);  /* total_len */
    ADD(12, 1); /* operation_kind */
    ADD(13, 1); /* reserved */
    ADD(48, 4); /* pid */
    size_t off = 60;
    for (int i = 0; i < 3; i++) { /* name, host, notification_key */
        if (off + 2 > len) return n;
        ADD(off, 2);
        off += 2 + rd_le(b + off, 2);
    }
    if (off + 5 > len) return n;
    ADD(off, 4);
    ADD(off + 4, 1);
    uint32_t ndesc = rd_le(b + off, 4);
    unsigned nsec = b[off + 4];
    off += 5;
    for (unsigned s = 0; s < nsec; s++) {
        if (off + 1 > len) return n;
        ADD(off, 1);
        off += 1 + b[off];
        if (off + 4 > len) return n;
        ADD(off, 4);
        uint32_t c = rd_le(b + off, 4);
        off += 4;
        if (c > len - off) return n;
        off += c;
        for (uint32_t j = 0; j < ndesc; j++) {
            if (off + 2 > len) return n;
            if (j < 8 || j + 1 == ndesc) ADD(off, 2);
            off += 2 + rd_le(b + off, 2);
        }
    }
    return n;
#undef ADD
}

static uint32_t interesting(rng_t *r, int width, uint32_t cur, size_t len) {
    uint32_t max = width == 1 ? 0xff : width == 2 ? 0xffff : 0xffffffffu;
    switch (below(r, 12)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return max;
    case 3: return max - 1;
    case 4: return max / 2 + 1;
    case 5: return cur + 1;
    case 6: return cur - 1;
    case 7: return cur * 2;
    case 8: return (uint32_t)len;
    case 9: return (uint32_t)len + 1;
    case 10: return (uint32_t)below(r, 20);
    default: return (uint32_t)rnd(r);
    }
}

static void mutate_blob(buf_t *b, rng_t *r) {
    field_t f[MAX_FIELDS];
    int rounds = 1 + (int)below(r, 3);
    for (int k = 0; k < rounds; k++) {
        size_t nf = locate_fields(b->p, b->len, f);
        switch (below(r, 9)) {
        case 0:
        case 1:
        case 2: /* an integer field to an interesting value */
            if (nf) {
                field_t x = f[below(r, nf)];
                uint32_t v = interesting(r, x.width, rd_le(b->p + x.off, x.width), b->len);
                wr_le(b->p + x.off, x.width, v);
            }
            break;
        case 3: /* flip a bit */
            if (b->len) b->p[below(r, b->len)] ^= (uint8_t)(1u << below(r, 8));
            break;
        case 4: /* a random byte */
            if (b->len) b->p[below(r, b->len)] = (uint8_t)rnd(r);
            break;
        case 5: /* truncate */ b->len = below(r, b->len + 1); break;
        case 6: { /* insert random bytes */
            uint8_t ins[32];
            size_t n = 1 + below(r, sizeof ins);
            for (size_t i = 0; i < n; i++)
                ins[i] = (uint8_t)rnd(r);
            buf_splice(b, below(r, b->len + 1), 0, ins, n);
            break;
        }
        case 7: /* delete a range */
            buf_splice(b, below(r, b->len + 1), 1 + below(r, 16), NULL, 0);
            break;
        default: { /* duplicate a chunk elsewhere (e.g. a second copy of a section) */
            if (!b->len) break;
            size_t from = below(r, b->len), n = 1 + below(r, b->len - from);
            if (n > 4096) n = 4096;
            uint8_t *chunk = malloc(n);
            if (!chunk) abort();
            memcpy(chunk, b->p + from, n);
            buf_splice(b, below(r, b->len + 1), 0, chunk, n);
            free(chunk);
            break;
        }
        }
    }
    /* mostly keep total_len consistent so the mutation reaches further */
    if (b->len >= 12 && below(r, 8) != 0) wr_le(b->p + 8, 4, (uint32_t)b->len);
}

/* Mutations of the JSON fields the blob is checked against. */
static void mutate_json_fields(json_t *root, rng_t *r) {
    switch (below(r, 16)) {
    case 0:
        json_object_set_new(root, "operation_kind", json_integer((json_int_t)below(r, 4)));
        break;
    case 1: json_object_set_new(root, "notification_key", json_string("other-key")); break;
    case 2: {
        json_t *d = json_object_get(root, "descriptors");
        if (json_array_size(d) > 1) json_array_remove(d, json_array_size(d) - 1);
        break;
    }
    case 3: {
        json_t *d = json_object_get(root, "descriptors");
        json_array_append_new(d, json_pack("{s:s,s:I,s:I}", "device", "cpu", "ptr",
                                           (json_int_t)4096, "size", (json_int_t)1));
        break;
    }
    default: break;
    }
}

/* ------------------------------------------------------------------------ */
/* Text mutations                                                            */
/* ------------------------------------------------------------------------ */

static const char *const numbers[] = {"0",
                                      "-1",
                                      "1",
                                      "2",
                                      "3",
                                      "-0",
                                      "1.5",
                                      "1e308",
                                      "-1e308",
                                      "256",
                                      "65535",
                                      "65536",
                                      "65537",
                                      "4294967295",
                                      "4294967296",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "-9223372036854775808",
                                      "-9223372036854775809",
                                      "18446744073709551615",
                                      "18446744073709551616",
                                      "99999999999999999999999999999999999999"};

static const char *const tokens[] = {"\"",
                                     "\\",
                                     "{",
                                     "}",
                                     "[",
                                     "]",
                                     ":",
                                     ",",
                                     "null",
                                     "true",
                                     "{}",
                                     "[]",
                                     "\"\"",
                                     "b64:",
                                     "\\u0000",
                                     "\\ud800",
                                     "\xc3\xa9",
                                     "\xff",
                                     "=",
                                     "==",
                                     "\n",
                                     " ",
                                     "\"descriptors\":[]",
                                     "\"operation_kind\":3",
                                     "\"nixl_metadata\":\"00\"",
                                     "\"device\":\"tpu\"",
                                     "\"notification_key\":\"\""};

/* Replace a random run of digits by an interesting number. */
static void mutate_number(buf_t *t, rng_t *r) {
    size_t runs = 0;
    for (size_t i = 0; i < t->len; i++)
        if (t->p[i] >= '0' && t->p[i] <= '9' && (i == 0 || t->p[i - 1] < '0' || t->p[i - 1] > '9'))
            runs++;
    if (!runs) return;
    size_t pick = below(r, runs), k = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] >= '0' && t->p[i] <= '9' &&
            (i == 0 || t->p[i - 1] < '0' || t->p[i - 1] > '9')) {
            if (k++ != pick) continue;
            size_t e = i;
            while (e < t->len && t->p[e] >= '0' && t->p[e] <= '9')
                e++;
            size_t start = i > 0 && t->p[i - 1] == '-' ? i - 1 : i;
            const char *num = numbers[below(r, sizeof numbers / sizeof numbers[0])];
            buf_splice(t, start, e - start, num, strlen(num));
            return;
        }
    }
}

/* A structure-aware mutation: the inner blob, or the JSON values. Returns
 * false when the text is not a metadata whose blob can be extracted. */
static bool mutate_structured(buf_t *t, rng_t *r) {
    json_t *root = NULL;
    buf_t blob = {0};
    int hex = 0;
    if (!extract_blob(t, &root, &blob, &hex)) {
        buf_free(&blob);
        return false;
    }
    if (below(r, 6) != 0) mutate_blob(&blob, r);
    if (below(r, 3) == 0) mutate_json_fields(root, r);
    if (below(r, 10) == 0) hex = !hex;
    reinsert_blob(root, &blob, hex, r, t);
    buf_free(&blob);
    return true;
}

static void mutate_text(buf_t *t, rng_t *r, const buf_t *other) {
    switch (below(r, 10)) {
    case 0: /* flip bits */
        for (size_t n = 1 + below(r, 4); n && t->len; n--)
            t->p[below(r, t->len)] ^= (uint8_t)(1u << below(r, 8));
        break;
    case 1: /* a random byte, sometimes NUL */
        if (t->len) t->p[below(r, t->len)] = below(r, 4) ? (uint8_t)rnd(r) : 0;
        break;
    case 2: /* truncate */ t->len = below(r, t->len + 1); break;
    case 3: { /* insert a token */
        const char *tok = tokens[below(r, sizeof tokens / sizeof tokens[0])];
        buf_splice(t, below(r, t->len + 1), 0, tok, strlen(tok));
        break;
    }
    case 4: /* delete a range */
        buf_splice(t, below(r, t->len + 1), 1 + below(r, 64), NULL, 0);
        break;
    case 5: /* splice: our prefix, another text's suffix */
        if (other && other->len) {
            size_t at = below(r, t->len + 1), from = below(r, other->len + 1);
            buf_splice(t, at, t->len - at, other->p + from, other->len - from);
        }
        break;
    case 6:
    case 7: mutate_number(t, r); break;
    default:
        if (!mutate_structured(t, r)) mutate_number(t, r);
        break;
    }
    if (t->len > MAX_TEXT) t->len = MAX_TEXT;
}

/* ------------------------------------------------------------------------ */
/* libFuzzer custom mutator                                                  */
/* ------------------------------------------------------------------------ */

#ifdef NXC_LIBFUZZER
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    rng_t r = {seed * 0x2545f4914f6cdd1dull + 1};
    build_seeds();
    buf_t t = {0};
    buf_set(&t, data, size);
    /* Give an empty or hopeless corpus a valid start now and then. */
    if (below(&r, 64) == 0) {
        const buf_t *s = &seeds[below(&r, NSEEDS)];
        buf_set(&t, s->p, s->len);
    }
    size_t choice = below(&r, 3);
    if (choice == 0 && mutate_structured(&t, &r) && t.len <= max_size) {
        memcpy(data, t.p, t.len);
        size = t.len;
    } else if (choice == 1) {
        mutate_text(&t, &r, &seeds[below(&r, NSEEDS)]);
        if (t.len <= max_size) {
            memcpy(data, t.p, t.len);
            size = t.len;
        } else {
            size = LLVMFuzzerMutate(data, size, max_size);
        }
    } else {
        size = LLVMFuzzerMutate(data, size, max_size);
    }
    buf_free(&t);
    return size;
}
#endif

/* ------------------------------------------------------------------------ */
/* Standalone campaign                                                       */
/* ------------------------------------------------------------------------ */

#ifndef NXC_LIBFUZZER
#define POOL 32

static void write_corpus(const char *dir) {
    for (int i = 0; i < NSEEDS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%d.json", dir, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(seeds[i].p, 1, seeds[i].len, f) != seeds[i].len || fclose(f)) {
            fprintf(stderr, "fuzz_metadata: cannot write %s\n", path);
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    if (iterations < 0) iterations = 0;
    build_seeds();
    if (argc > 3) write_corpus(argv[3]);

    double t0 = nxt_now_s();
    rng_t r = {seed};
    /* a small pool of mutants that decoded, to mutate further */
    buf_t pool[POOL] = {{0}};
    size_t npool = 0;
    long counts[6] = {0}; /* ok, malformed, too large, version, invalid device, other */
    buf_t t = {0};
    for (long it = 0; it < iterations; it++) {
        const buf_t *base =
            npool && below(&r, 4) == 0 ? &pool[below(&r, npool)] : &seeds[below(&r, NSEEDS)];
        buf_set(&t, base->p, base->len);
        for (size_t n = 1 + below(&r, 3); n; n--)
            mutate_text(&t, &r, &seeds[below(&r, NSEEDS)]);
        nxc_status_t st = run_one(t.p, t.len);
        switch (st) {
        case NXC_OK:
            counts[0]++;
            buf_set(&pool[npool < POOL ? npool++ : below(&r, POOL)], t.p, t.len);
            break;
        case NXC_ERR_METADATA_MALFORMED: counts[1]++; break;
        case NXC_ERR_METADATA_TOO_LARGE: counts[2]++; break;
        case NXC_ERR_METADATA_VERSION: counts[3]++; break;
        case NXC_ERR_INVALID_DEVICE: counts[4]++; break;
        default:
            fprintf(stderr, "fuzz_metadata: iteration %ld: unexpected status %s (%s)\n", it,
                    nxc_status_string(st), nxc_last_error());
            counts[5]++;
            break;
        }
    }
    double secs = nxt_now_s() - t0;
    printf("fuzz_metadata: %ld inputs (seed %llu) in %.1f s: ok %ld, malformed %ld, too large %ld, "
           "version %ld, invalid device %ld, other %ld\n",
           iterations, (unsigned long long)seed, secs, counts[0], counts[1], counts[2], counts[3],
           counts[4], counts[5]);
    buf_free(&t);
    for (size_t i = 0; i < POOL; i++)
        buf_free(&pool[i]);
    for (int i = 0; i < NSEEDS; i++)
        buf_free(&seeds[i]);
    return counts[5] ? 1 : 0;
}
#endif
