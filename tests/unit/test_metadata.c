/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the metadata codec (src/core/metadata.c, docs/metadata.md). */
#include <jansson.h>
#include <sodium.h>
#include <zlib.h>

#include "core/metadata.h"
#include "core/metadata_json.h"
#include "core/metadata_wrap.h"
#include "mdfixture.h"
#include "mdtool.h"
#include "nxt.h"

/* ------------------------------------------------------------------------ */
/* Encoding (fixtures: harness/mdfixture.c)                                 */
/* ------------------------------------------------------------------------ */

static char *encode(const nxc__metadata_t *md, size_t *len_p) {
    char *text = NULL;
    size_t len = 0;
    NXT_PASS(nxc__md_encode(md, &text, &len));
    NXT_CHECK(text);
    NXT_EQ_INT(len, strlen(text));
    if (len_p) *len_p = len;
    return text;
}

/* `md` encoded in format `version` and decoded comes back the same. */
static void roundtrip_version(const nxc__metadata_t *md, uint16_t version) {
    nxc__metadata_t in = *md;
    in.version = version;
    size_t len;
    char *text = encode(&in, &len);
    nxc__metadata_t out;
    NXT_PASS(nxc__md_decode(text, len, &out));
    NXT_EQ_INT(out.version, version);
    nxt_md_check_same(md, &out);
    /* pointers point into the owned blob (version 2: conn into the peer
     * part, held by out.peer_, test_metadata_v2) */
    NXT_CHECK((out.peer_ != NULL) == (version == 2));
    for (size_t s = 0; s < out.nsections && version == 1; s++) {
        const uint8_t *c = out.sections[s].conn.data;
        NXT_CHECK(c >= out.blob_ && c + out.sections[s].conn.len <= out.blob_ + out.blob_len_);
    }
    nxc__md_free(&out);
    free(text);
}

static void roundtrip(const nxc__metadata_t *md) {
    roundtrip_version(md, 1);
    roundtrip_version(md, 2);
}

static nxc_status_t dec_str(const char *text) {
    return nxt_md_dec(text, strlen(text));
}

/* ------------------------------------------------------------------------ */
/* JSON-level helpers                                                        */
/* ------------------------------------------------------------------------ */

/* A valid encoded text (2 descriptors, 1 section) parsed as JSON. */
static json_t *valid_json(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 1, NXC__MD_KIND_READ);
    char *text = encode(&f.md, NULL);
    json_error_t e;
    json_t *root = json_loads(text, 0, &e);
    NXT_CHECK(root);
    free(text);
    nxt_mdfix_free(&f);
    return root;
}

/* Dump `root` (consumed) and decode it. */
static nxc_status_t dec_json(json_t *root) {
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    NXT_CHECK(text);
    json_decref(root);
    nxc_status_t st = dec_str(text);
    free(text);
    return st;
}

/* Valid JSON with top-level `field` replaced by `v` (NULL: removed). */
static nxc_status_t dec_with(const char *field, json_t *v) {
    json_t *root = valid_json();
    if (v)
        json_object_set_new(root, field, v);
    else
        json_object_del(root, field);
    return dec_json(root);
}

/* Valid JSON with descriptor 1's `field` replaced by `v` (NULL: removed). */
static nxc_status_t dec_desc_with(const char *field, json_t *v) {
    json_t *root = valid_json();
    json_t *d = json_array_get(json_object_get(root, "descriptors"), 1);
    if (v)
        json_object_set_new(d, field, v);
    else
        json_object_del(d, field);
    return dec_json(root);
}

/* ------------------------------------------------------------------------ */
/* Blob-level helpers                                                        */
/* ------------------------------------------------------------------------ */

#define T_KEY "the-key"

/* Header through nsections, with the standard values. */
static void bb_header(nxt_bb_t *b, uint8_t kind, const char *key, uint32_t ndesc, uint8_t nsec) {
    memset(b, 0, sizeof *b);
    nxt_bb_bytes(b, "NXCB", 4);
    nxt_bb_u16(b, 1);
    nxt_bb_u16(b, 0);
    nxt_bb_u32(b, 0); /* total_len: patched by bb_finish */
    nxt_bb_u8(b, kind);
    nxt_bb_u8(b, 0), nxt_bb_u8(b, 0), nxt_bb_u8(b, 0);
    for (int i = 0; i < 32; i++)
        nxt_bb_u8(b, (uint8_t)i); /* instance, secret */
    nxt_bb_u32(b, 42);
    nxt_bb_u64(b, 77);
    nxt_bb_str16(b, "peer");
    nxt_bb_str16(b, "host1");
    nxt_bb_str16(b, key);
    nxt_bb_u32(b, ndesc);
    nxt_bb_u8(b, nsec);
}

static void bb_section(nxt_bb_t *b, const char *name, uint32_t conn_len, uint32_t ndesc) {
    nxt_bb_u8(b, (uint8_t)strlen(name));
    nxt_bb_bytes(b, name, strlen(name));
    nxt_bb_u32(b, conn_len);
    for (uint32_t i = 0; i < conn_len; i++)
        nxt_bb_u8(b, (uint8_t)i);
    for (uint32_t j = 0; j < ndesc; j++) {
        nxt_bb_u16(b, 3);
        nxt_bb_bytes(b, "abc", 3);
    }
}

static void bb_finish(nxt_bb_t *b) {
    uint32_t n = (uint32_t)b->len;
    for (int i = 0; i < 4; i++)
        b->p[8 + i] = (uint8_t)(n >> (8 * i));
}

static uint8_t *zcompress(const void *data, size_t len, size_t *zlen_p) {
    uLongf zlen = compressBound((uLong)len);
    uint8_t *z = malloc(zlen);
    NXT_CHECK(z);
    NXT_EQ_INT(compress2(z, &zlen, data, (uLong)len, 6), Z_OK);
    *zlen_p = zlen;
    return z;
}

static char *b64(const uint8_t *z, size_t zlen) {
    size_t n = sodium_base64_ENCODED_LEN(zlen, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(4 + n);
    NXT_CHECK(s);
    memcpy(s, "b64:", 4);
    sodium_bin2base64(s + 4, n, z, zlen, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

static char *wrap_z(const uint8_t *z, size_t zlen, int kind, const char *key, size_t ndesc) {
    char *nixl = b64(z, zlen);
    char *text = nxt_md_text(nixl, kind, key, ndesc);
    free(nixl);
    return text;
}

static char *wrap_blob(const uint8_t *blob, size_t len, int kind, const char *key, size_t ndesc) {
    size_t zlen;
    uint8_t *z = zcompress(blob, len, &zlen);
    char *text = wrap_z(z, zlen, kind, key, ndesc);
    free(z);
    return text;
}

/* Decode a hand-built blob wrapped in JSON with kind 1, T_KEY, ndesc descs. */
static nxc_status_t dec_blob(const nxt_bb_t *b, size_t ndesc) {
    char *text = wrap_blob(b->p, b->len, 1, T_KEY, ndesc);
    nxc_status_t st = dec_str(text);
    free(text);
    return st;
}

/* The standard valid hand-built blob: 2 descriptors, sections ucx and tcp. */
static void bb_valid(nxt_bb_t *b) {
    bb_header(b, 1, T_KEY, 2, 2);
    bb_section(b, "ucx", 5, 2);
    bb_section(b, "tcp", 0, 2);
    bb_finish(b);
}

/* Extract the compressed bytes of an encoded text's nixl_metadata. */
static uint8_t *nixl_bytes(const char *text, size_t *len_p) {
    json_t *root = json_loads(text, 0, NULL);
    NXT_CHECK(root);
    const char *s = json_string_value(json_object_get(root, "nixl_metadata"));
    NXT_CHECK(s && !strncmp(s, "b64:", 4));
    size_t n = strlen(s + 4);
    uint8_t *z = malloc(n);
    size_t zlen;
    NXT_EQ_INT(sodium_base642bin(z, n, s + 4, n, NULL, &zlen, NULL, sodium_base64_VARIANT_ORIGINAL),
               0);
    json_decref(root);
    *len_p = zlen;
    return z;
}

/* ------------------------------------------------------------------------ */
/* Round trips and shape                                                     */
/* ------------------------------------------------------------------------ */

static void test_roundtrip_one(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 1, 1, NXC__MD_KIND_READ);
    roundtrip(&f.md);
    f.md.operation_kind = NXC__MD_KIND_WRITE;
    roundtrip(&f.md);
    nxt_mdfix_free(&f);
}

static void test_roundtrip_sections(void) {
    for (size_t nsec = 0; nsec <= NXC__MD_MAX_SECTIONS; nsec++) {
        nxt_mdfix_t f;
        nxt_mdfix_init(&f, 3, nsec, NXC__MD_KIND_WRITE);
        roundtrip(&f.md);
        nxt_mdfix_free(&f);
    }
}

static void test_roundtrip_1000_cuda(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 1000, 2, NXC__MD_KIND_READ);
    for (size_t i = 0; i < 1000; i++)
        f.md.descs[i].device = (nxc_device_t){NXC_DEVICE_CUDA, 3};
    f.md.descs[999].addr = (uint64_t)INT64_MAX - 10;
    f.md.descs[999].size = 10;
    roundtrip(&f.md);
    nxt_mdfix_free(&f);
}

/* Descriptors whose JSON is longer than the encoder's size estimate (18-digit
 * numbers, a longer device name): the text's buffer grows while yajl writes
 * it, and the text still decodes to the same descriptors. */
static void test_roundtrip_long_descriptors(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 300, 1, NXC__MD_KIND_WRITE);
    for (size_t i = 0; i < 300; i++) {
        f.md.descs[i].addr = 100000000000000000ull + i * 100000000000000ull;
        f.md.descs[i].size = 900000000000000000ull - i;
        f.md.descs[i].device = (nxc_device_t){NXC_DEVICE_CUDA, 15};
    }
    size_t len;
    char *text = encode(&f.md, &len);
    NXT_CHECK(len > 300 * 70);
    free(text);
    roundtrip(&f.md);
    nxt_mdfix_free(&f);
}

/* The per-thread deflaters are reset between texts: encoding the same op
 * again, after others of either kind (stored and compressed blobs), gives
 * the same text. */
static void test_encode_repeatable(void) {
    nxt_mdfix_t big, small;
    nxt_mdfix_init(&big, 200, 2, NXC__MD_KIND_READ); /* its blob is compressed */
    nxt_mdfix_init(&small, 1, 1, NXC__MD_KIND_READ); /* stored */
    char *big1 = encode(&big.md, NULL), *small1 = encode(&small.md, NULL);
    char *big2 = encode(&big.md, NULL), *small2 = encode(&small.md, NULL);
    NXT_EQ_STR(big2, big1);
    NXT_EQ_STR(small2, small1);
    free(big1);
    free(big2);
    free(small1);
    free(small2);
    nxt_mdfix_free(&big);
    nxt_mdfix_free(&small);
}

static void test_roundtrip_empty_keys(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 5, 2, NXC__MD_KIND_READ);
    for (size_t j = 0; j < 5; j++)
        f.md.sections[0].keys[j] = (nxc__bytes_t){NULL, 0};
    f.md.sections[1].keys = NULL; /* NULL keys: all empty */
    f.md.sections[1].conn = (nxc__bytes_t){NULL, 0};
    roundtrip(&f.md);
    nxt_mdfix_free(&f);
}

static void test_roundtrip_max_lengths(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 4, NXC__MD_MAX_SECTIONS, NXC__MD_KIND_READ);
    nxt_mdfix_longest(&f);
    f.md.sections[2].keys[1].len = UINT16_MAX;
    f.md.sections[2].keys[1].data = f.storage;
    f.md.sections[3].conn = (nxc__bytes_t){f.storage, 64 * 1024};
    roundtrip(&f.md);
    nxt_mdfix_free(&f);
}

static void test_json_shape(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 1, NXC__MD_KIND_WRITE);
    f.md.descs[1].device = (nxc_device_t){NXC_DEVICE_CUDA, 1};
    size_t len;
    char *text = encode(&f.md, &len);
    NXT_CHECK(!strchr(text, ' ') && !strchr(text, '\n')); /* compact */
    const char *head = "{\"descriptors\":[{\"device\":\"cpu\",\"ptr\":";
    NXT_CHECK(!strncmp(text, head, strlen(head)));

    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    NXT_CHECK(json_is_object(root));
    NXT_EQ_INT(json_object_size(root), 4);
    const char *order[] = {"descriptors", "nixl_metadata", "notification_key", "operation_kind"};
    void *it = json_object_iter(root);
    for (int i = 0; i < 4; i++, it = json_object_iter_next(root, it))
        NXT_EQ_STR(json_object_iter_key(it), order[i]);
    NXT_EQ_INT(json_integer_value(json_object_get(root, "operation_kind")), 2);
    NXT_EQ_STR(json_string_value(json_object_get(root, "notification_key")), f.md.notification_key);
    NXT_CHECK(!strncmp(json_string_value(json_object_get(root, "nixl_metadata")), "b64:", 4));
    json_t *d = json_object_get(root, "descriptors");
    NXT_EQ_INT(json_array_size(d), 2);
    const char *dorder[] = {"device", "ptr", "size"};
    it = json_object_iter(json_array_get(d, 1));
    for (int i = 0; i < 3; i++, it = json_object_iter_next(json_array_get(d, 1), it))
        NXT_EQ_STR(json_object_iter_key(it), dorder[i]);
    NXT_EQ_STR(json_string_value(json_object_get(json_array_get(d, 1), "device")), "cuda:1");
    NXT_CHECK(json_integer_value(json_object_get(json_array_get(d, 1), "ptr")) ==
              (json_int_t)f.md.descs[1].addr);
    NXT_CHECK(json_integer_value(json_object_get(json_array_get(d, 1), "size")) ==
              (json_int_t)f.md.descs[1].size);

    /* the blob starts with the magic and version 1 */
    size_t zlen;
    uint8_t *z = nixl_bytes(text, &zlen);
    uint8_t blob[16];
    uLongf blen = sizeof blob;
    int rc = uncompress(blob, &blen, z, zlen);
    NXT_CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
    NXT_CHECK(!memcmp(blob, "NXCB\x01\x00\x00\x00", 8));
    NXT_EQ_INT(blob[12], 2);
    free(z);
    json_decref(root);
    free(text);
    nxt_mdfix_free(&f);
}

static void test_hex_legacy(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 3, 2, NXC__MD_KIND_READ);
    char *text = encode(&f.md, NULL);
    size_t zlen;
    uint8_t *z = nixl_bytes(text, &zlen);
    char *hex = malloc(zlen * 2 + 1);
    sodium_bin2hex(hex, zlen * 2 + 1, z, zlen);
    for (int upper = 0; upper < 2; upper++) {
        if (upper)
            for (char *c = hex; *c; c++)
                if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
        json_t *root = json_loads(text, 0, NULL);
        json_object_set_new(root, "nixl_metadata", json_string(hex));
        char *t2 = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        nxc__metadata_t out;
        NXT_PASS(nxc__md_decode(t2, strlen(t2), &out));
        nxt_md_check_same(&f.md, &out);
        nxc__md_free(&out);
        free(t2);
    }
    free(hex);
    free(z);
    free(text);
    nxt_mdfix_free(&f);
}

static void test_unknown_keys_ignored(void) {
    json_t *root = valid_json();
    json_object_set_new(root, "future_field", json_pack("{s:[i,i]}", "x", 1, 2));
    json_object_set_new(json_array_get(json_object_get(root, "descriptors"), 0), "extra",
                        json_true());
    NXT_PASS(dec_json(root));
}

/* A valid text with `fragment` (one or more "key":value members) put first
 * in the top-level object, decoded; `len` 0 means strlen(fragment). */
static nxc_status_t dec_with_member(const char *fragment, size_t len) {
    json_t *root = valid_json();
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t n = strlen(text), f = len ? len : strlen(fragment);
    char *buf = malloc(n + f + 2);
    buf[0] = '{';
    memcpy(buf + 1, fragment, f);
    buf[1 + f] = ',';
    memcpy(buf + 2 + f, text + 1, n - 1);
    nxc_status_t st = nxt_md_dec(buf, n + f + 1);
    free(buf);
    free(text);
    return st;
}

/* The rules a tree parser used to give and the event parser keeps itself:
 * no key twice in one object at any depth, no \u0000, strict UTF-8,
 * bounded nesting, one value only. */
static void test_json_rules(void) {
    /* duplicates: in an unknown object, in a descriptor, unknown keys too */
    NXT_FAIL(dec_with_member("\"x\":{\"a\":1,\"b\":2,\"a\":3}", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "twice"));
    NXT_FAIL(dec_with_member("\"x\":[{\"a\":1},{\"a\":1,\"a\":1}]", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with_member("\"x\":1,\"x\":2", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with_member("\"descriptors\":[]", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "twice"));
    /* the same key in different objects is fine */
    NXT_PASS(dec_with_member("\"x\":{\"a\":1,\"y\":{\"a\":1}},\"y\":[{\"a\":1},{\"a\":1}]", 0));
    json_t *root = valid_json();
    char *t = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    char *at = strstr(t, "\"size\":");
    NXT_CHECK(at);
    char *dup = malloc(strlen(t) + 16);
    sprintf(dup, "%.*s\"ptr\":8,%s", (int)(at - t), t, at);
    NXT_FAIL(dec_str(dup), NXC_ERR_METADATA_MALFORMED);
    sprintf(dup, "%.*s\"q\":8,\"q\":8,%s", (int)(at - t), t, at);
    NXT_FAIL(dec_str(dup), NXC_ERR_METADATA_MALFORMED);
    free(dup);
    free(t);

    /* \u0000 in a value or a key, even of an unknown field */
    NXT_FAIL(dec_with_member("\"x\":\"a\\u0000b\"", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "u0000"));
    NXT_FAIL(dec_with_member("\"a\\u0000\":1", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with_member("\"x\":\"a\0b\"", 8), NXC_ERR_METADATA_MALFORMED);

    /* UTF-8: overlong, surrogate, above U+10FFFF, stray and cut sequences */
    const char *bad_utf8[] = {"\"x\":\"\xc0\x80\"",     "\"x\":\"\xe0\x80\xaf\"",
                              "\"x\":\"\xed\xa0\x80\"", "\"x\":\"\xf4\x90\x80\x80\"",
                              "\"x\":\"\x80\"",         "\"x\":\"\xe2\x82\"",
                              "\"\xc3\x28\":1",         "\"x\":\"\xf8\x88\x80\x80\x80\""};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++)
        NXT_FAIL(dec_with_member(bad_utf8[i], 0), NXC_ERR_METADATA_MALFORMED);
    NXT_PASS(dec_with_member("\"x\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9\"", 0));

    /* nesting: the top object plus 2047 arrays is the deepest accepted */
    for (int depth = 2047; depth <= 2048; depth++) {
        char *deep = malloc((size_t)depth * 2 + 16);
        size_t n = (size_t)sprintf(deep, "\"x\":");
        memset(deep + n, '[', (size_t)depth);
        memset(deep + n + depth, ']', (size_t)depth);
        deep[n + 2 * (size_t)depth] = '\0';
        nxc_status_t st = dec_with_member(deep, 0);
        if (depth == 2047)
            NXT_PASS(st);
        else
            NXT_FAIL(st, NXC_ERR_METADATA_MALFORMED);
        free(deep);
    }

    /* one value only, no comments, and a top-level value that is not an object */
    NXT_FAIL(dec_str("5"), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not an object"));
    NXT_FAIL(dec_str("\"x\""), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with_member("/* c */\"x\":1", 0), NXC_ERR_METADATA_MALFORMED);
    root = valid_json();
    t = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t n = strlen(t);
    char *two = malloc(n + 8);
    sprintf(two, "%s x", t);
    NXT_FAIL(dec_str(two), NXC_ERR_METADATA_MALFORMED);
    sprintf(two, " \n%s\t ", t); /* surrounding whitespace is fine */
    NXT_PASS(dec_str(two));
    free(two);
    free(t);
}

/* Values of every JSON type under unknown keys, at the top and in a
 * descriptor, are skipped. */
static void test_unknown_values_of_every_type(void) {
    NXT_PASS(dec_with_member("\"a\":null,\"b\":true,\"c\":-1.5e3,\"d\":\"s\",\"e\":[1,[2],{}],"
                             "\"f\":{\"descriptors\":5,\"ptr\":\"x\"},\"g\":-9223372036854775808",
                             0));
    /* a real that overflows is refused (as a too-large integer is); one that
     * rounds to 0 is a value */
    NXT_FAIL(dec_with_member("\"x\":1e400", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with_member("\"x\":-9223372036854775809", 0), NXC_ERR_METADATA_MALFORMED);
    NXT_PASS(dec_with_member("\"x\":1e-400", 0));
}

static void test_section_lookup(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 3, NXC__MD_KIND_READ);
    char *text = encode(&f.md, NULL);
    nxc__metadata_t out;
    NXT_PASS(nxc__md_decode(text, strlen(text), &out));
    const nxc__md_section_t *s = nxc__md_section(&out, "tcp");
    NXT_CHECK(s == &out.sections[1]);
    NXT_EQ_INT(s->conn.len, 11);
    NXT_CHECK(nxc__md_section(&out, "ucx") == &out.sections[0]);
    NXT_CHECK(nxc__md_section(&out, "s2") == &out.sections[2]);
    NXT_CHECK(nxc__md_section(&out, "rdma") == NULL);
    NXT_CHECK(nxc__md_section(&out, "") == NULL);
    NXT_CHECK(nxc__md_section(&out, NULL) == NULL);
    NXT_CHECK(nxc__md_section(NULL, "ucx") == NULL);
    nxc__md_free(&out);
    NXT_CHECK(nxc__md_section(&out, "ucx") == NULL);
    nxc__metadata_t zero = {0};
    nxc__md_free(&zero); /* safe on a zeroed struct */
    nxc__md_free(&zero);
    nxc__md_free(NULL);
    free(text);
    nxt_mdfix_free(&f);
}

static void test_handbuilt_valid(void) {
    nxt_bb_t b;
    bb_valid(&b);
    char *text = wrap_blob(b.p, b.len, 1, T_KEY, 2);
    nxc__metadata_t md;
    NXT_PASS(nxc__md_decode(text, strlen(text), &md));
    NXT_EQ_STR(md.name, "peer");
    NXT_EQ_STR(md.host, "host1");
    NXT_EQ_INT(md.pid, 42);
    NXT_EQ_INT(md.start_time, 77);
    NXT_EQ_INT(md.instance[3], 3);
    NXT_EQ_INT(md.secret[0], 16);
    NXT_EQ_INT(md.nsections, 2);
    NXT_EQ_INT(md.sections[0].conn.len, 5);
    NXT_EQ_INT(md.sections[1].conn.len, 0);
    NXT_EQ_INT(md.sections[1].keys[1].len, 3);
    NXT_CHECK(!memcmp(md.sections[1].keys[1].data, "abc", 3));
    nxc__md_free(&md);
    free(text);
    free(b.p);
}

/* ------------------------------------------------------------------------ */
/* Encoder parameter checks                                                  */
/* ------------------------------------------------------------------------ */

static nxc_status_t enc_status(const nxc__metadata_t *md) {
    char *text = NULL;
    nxc_status_t st = nxc__md_encode(md, &text, NULL);
    free(text);
    return st;
}

static void test_encode_invalid(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 2, NXC__MD_KIND_READ);
    nxc__metadata_t md = f.md, m;
    char *text;
    NXT_FAIL(nxc__md_encode(NULL, &text, NULL), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc__md_encode(&md, NULL, NULL), NXC_ERR_INVALID_PARAM);
    m = md, m.operation_kind = 3;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.ndesc = 0;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.notification_key[0] = '\0';
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.notification_key[1] = ' ';
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, memset(m.notification_key, 'a', sizeof m.notification_key); /* no NUL */
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.name[0] = '\0';
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.host[2] = '\t';
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.nsections = NXC__MD_MAX_SECTIONS + 1;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, snprintf(m.sections[1].name, sizeof m.sections[1].name, "ucx");
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, snprintf(m.sections[1].name, sizeof m.sections[1].name, "UCX");
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.sections[1].name[0] = '\0';
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    m = md, m.sections[1].conn = (nxc__bytes_t){NULL, 3};
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);

    nxc__rdesc_t descs[2];
    memcpy(descs, md.descs, sizeof descs);
    m = md, m.descs = descs;
    descs[1].addr = 0;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    descs[1].addr = 1ull << 63;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    descs[1].addr = 4096, descs[1].size = 0;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    descs[1].size = 4096, descs[1].device = (nxc_device_t){NXC_DEVICE_UNSPECIFIED, 0};
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    descs[1].device = (nxc_device_t){NXC_DEVICE_HOST, 0};
    NXT_PASS(enc_status(&m));

    nxc__bytes_t keys[2] = {{f.storage, UINT16_MAX + 1u}, {NULL, 0}};
    m = md, m.sections[1].keys = keys;
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    keys[0] = (nxc__bytes_t){NULL, 1};
    NXT_FAIL(enc_status(&m), NXC_ERR_INVALID_PARAM);
    keys[0] = (nxc__bytes_t){f.storage, UINT16_MAX};
    NXT_PASS(enc_status(&m));

    /* a blob over NXC_METADATA_MAX */
    uint8_t *big = calloc(1, NXC_METADATA_MAX);
    m = md, m.sections[0].conn = (nxc__bytes_t){big, NXC_METADATA_MAX};
    NXT_FAIL(enc_status(&m), NXC_ERR_METADATA_TOO_LARGE);
    /* a blob under the limit whose text (base64 of incompressible bytes) is over it */
    size_t n = NXC_METADATA_MAX / 10 * 8;
    nxt_fill(big, n, 7);
    m = md, m.sections[0].conn = (nxc__bytes_t){big, (uint32_t)n};
    NXT_FAIL(enc_status(&m), NXC_ERR_METADATA_TOO_LARGE);
    NXT_CHECK(strstr(nxc_last_error(), "text"));
    /* and one just small enough round-trips */
    m.sections[0].conn.len = NXC_METADATA_MAX / 10 * 7;
    roundtrip(&m);
    free(big);
    nxt_mdfix_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Malformed JSON                                                            */
/* ------------------------------------------------------------------------ */

static void test_bad_json(void) {
    NXT_FAIL(dec_str(""), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_str("not json"), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_str("{\"descriptors\":"), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_str("[1,2,3]"), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not an object"));
    NXT_FAIL(dec_str("{}"), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_str("{} {}"), NXC_ERR_METADATA_MALFORMED);
    /* duplicate key */
    json_t *root = valid_json();
    char *t = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t n = strlen(t);
    t = realloc(t, n + 32);
    memcpy(t + n - 1, ",\"operation_kind\":1}", 21);
    NXT_FAIL(dec_str(t), NXC_ERR_METADATA_MALFORMED);
    free(t);
    NXT_FAIL(nxc__md_decode(NULL, 3, &(nxc__metadata_t){0}), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc__md_decode("{}", 2, NULL), NXC_ERR_INVALID_PARAM);
}

static void test_missing_fields(void) {
    const char *fields[] = {"descriptors", "nixl_metadata", "notification_key", "operation_kind"};
    for (int i = 0; i < 4; i++) {
        NXT_FAIL(dec_with(fields[i], NULL), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), fields[i]));
        NXT_CHECK(strstr(nxc_last_error(), "missing"));
    }
    const char *dfields[] = {"device", "ptr", "size"};
    for (int i = 0; i < 3; i++) {
        NXT_FAIL(dec_desc_with(dfields[i], NULL), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), dfields[i]));
        NXT_CHECK(strstr(nxc_last_error(), "descriptor 1"));
    }
}

static void test_wrong_types(void) {
    NXT_FAIL(dec_with("descriptors", json_object()), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "descriptors"));
    NXT_FAIL(dec_with("descriptors", json_string("x")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("descriptors", json_pack("[i]", 1)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("nixl_metadata", json_integer(1)), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "nixl_metadata"));
    NXT_FAIL(dec_with("nixl_metadata", json_null()), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("notification_key", json_integer(5)), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "notification_key"));
    NXT_FAIL(dec_with("operation_kind", json_string("1")), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "operation_kind"));
    NXT_FAIL(dec_with("operation_kind", json_real(1.0)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("operation_kind", json_true()), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("device", json_integer(0)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("ptr", json_string("4096")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("size", json_real(4096.0)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("size", json_null()), NXC_ERR_METADATA_MALFORMED);
}

static void test_bad_descriptors(void) {
    NXT_FAIL(dec_with("descriptors", json_array()), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "empty"));
    NXT_FAIL(dec_desc_with("ptr", json_integer(0)), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "descriptor 1") && strstr(nxc_last_error(), "ptr"));
    NXT_FAIL(dec_desc_with("size", json_integer(0)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("ptr", json_integer(-4096)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("size", json_integer(INT64_MIN)), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_desc_with("device", json_string("tpu:0")), NXC_ERR_INVALID_DEVICE);
    NXT_CHECK(strstr(nxc_last_error(), "descriptor 1"));
    NXT_FAIL(dec_desc_with("device", json_string("cuda:99999")), NXC_ERR_INVALID_DEVICE);
    NXT_FAIL(dec_desc_with("device", json_string("")), NXC_ERR_INVALID_DEVICE);
    /* the first descriptor's empty device too (the device memo is empty
     * then, and once took "" for a match: the descriptor decoded with no
     * device) */
    json_t *first = valid_json();
    json_object_set_new(json_array_get(json_object_get(first, "descriptors"), 0), "device",
                        json_string(""));
    NXT_FAIL(dec_json(first), NXC_ERR_INVALID_DEVICE);
    /* the largest representable values pass the JSON checks (and the blob) */
    json_t *root = valid_json();
    json_t *d = json_array_get(json_object_get(root, "descriptors"), 0);
    json_object_set_new(d, "ptr", json_integer(INT64_MAX));
    json_object_set_new(d, "size", json_integer(INT64_MAX));
    json_object_set_new(d, "device", json_string(" GPU:7 "));
    NXT_PASS(dec_json(root));

    /* numbers out of the integer range, or written as reals */
    const char *huge[] = {"18446744073709551616",
                          "99999999999999999999999999",
                          "1e30",
                          "-18446744073709551615",
                          "4096.5",
                          "9223372036854775808"};
    for (int i = 0; i < 6; i++) {
        root = valid_json();
        d = json_array_get(json_object_get(root, "descriptors"), 0);
        json_object_set_new(d, "ptr", json_integer(1234567));
        char *t = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        char *at = strstr(t, "1234567");
        NXT_CHECK(at);
        char *t2 = malloc(strlen(t) + 64);
        sprintf(t2, "%.*s%s%s", (int)(at - t), t, huge[i], at + 7);
        NXT_FAIL(dec_str(t2), NXC_ERR_METADATA_MALFORMED);
        free(t2);
        free(t);
    }
    /* too many descriptors */
    json_t *arr = json_array();
    for (int i = 0; i < NXC__MD_MAX_DESCS + 1; i++)
        json_array_append_new(arr,
                              json_pack("{s:s,s:i,s:i}", "device", "cpu", "ptr", 1, "size", 1));
    NXT_FAIL(dec_with("descriptors", arr), NXC_ERR_METADATA_MALFORMED);
}

static void test_bad_operation_kind(void) {
    const json_int_t bad[] = {0, 3, -1, 4, 256, INT64_MAX};
    for (int i = 0; i < 6; i++) {
        NXT_FAIL(dec_with("operation_kind", json_integer(bad[i])), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "operation_kind"));
    }
    NXT_FAIL(dec_with("operation_kind", json_integer(3)), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), " 3"));
}

static void test_bad_notification_key(void) {
    char key[NXC_KEY_MAX + 2];
    memset(key, 'k', NXC_KEY_MAX + 1);
    key[NXC_KEY_MAX + 1] = '\0';
    NXT_FAIL(dec_with("notification_key", json_string(key)), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "notification_key"));
    NXT_FAIL(dec_with("notification_key", json_string("")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("notification_key", json_string("a b")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("notification_key", json_string("tab\there")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("notification_key", json_string("caf\xc3\xa9")), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_with("notification_key", json_string("del\x7f")), NXC_ERR_METADATA_MALFORMED);
    /* \u0000 inside a string is refused by the JSON parser */
    NXT_FAIL(dec_str("{\"notification_key\":\"a\\u0000b\"}"), NXC_ERR_METADATA_MALFORMED);
}

/* ------------------------------------------------------------------------ */
/* Malformed nixl_metadata                                                   */
/* ------------------------------------------------------------------------ */

static void test_bad_base64(void) {
    const char *bad[] = {"b64:", "b64:@@@@", "b64:QUJD\n", "b64: QUJD", "b64:QUJDRA",
                         "b64:QQ=", "b64:QR==", "b64:QQ==QQ==", "b64:QUJD====", "b64:QUJ-",
                         "b64:eJzLSM0=", "B64:eJzLSM0=",
                         /* white space inside a length that is a multiple of 4, spare bits
                          * left set before one '=': each would decode with a lenient reader */
                         "b64:QU D", "b64:QUJ\r", "b64:\tQUJ", "b64:QUJ="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = nxt_md_text(bad[i], 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "nixl_metadata"));
        free(text);
    }
    /* '=' or white space in a group before the last, which OpenSSL's decoder
     * of whole groups takes or skips: refused as base64, memo on and off */
    const char *lenient[] = {"b64:QQ=AQUJD", "b64:=QUJQUJD",     "b64:QUJD QUJQUJD",
                             "b64: QUJQUJD", "b64:QUJD    QUJD", "b64:QUJDQUJ=QUJD"};
    for (int memo = 0; memo < 2; memo++) {
        nxc__md_b64_memo = memo;
        for (size_t i = 0; i < sizeof lenient / sizeof lenient[0]; i++) {
            char *text = nxt_md_text(lenient[i], 1, T_KEY, 2);
            NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
            NXT_CHECK(strstr(nxc_last_error(), "invalid base64"));
            free(text);
        }
    }
    nxc__md_b64_memo = true;
}

/* Each blob has one accepted base64 text: a lenient reader would take the
 * text with white space inside (its length still a multiple of 4) or with
 * the spare bits before the padding set, and decode the same valid blob. */
static void test_base64_one_text(void) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    nxt_bb_t b = {0};
    bb_valid(&b);
    bool tried[3] = {false};
    /* zlib's levels and strategies give streams of every length modulo 3 */
    for (int i = 0; i < 10 * (Z_FIXED + 1); i++) {
        z_stream zs = {0};
        NXT_EQ_INT(deflateInit2(&zs, i % 10, Z_DEFLATED, 15, 8, i / 10), Z_OK);
        size_t zlen = deflateBound(&zs, (uLong)b.len);
        uint8_t *z = malloc(zlen);
        NXT_CHECK(z);
        zs.next_in = b.p;
        zs.avail_in = (uInt)b.len;
        zs.next_out = z;
        zs.avail_out = (uInt)zlen;
        NXT_EQ_INT(deflate(&zs, Z_FINISH), Z_STREAM_END);
        zlen = zs.total_out;
        deflateEnd(&zs);
        size_t pads = (3 - zlen % 3) % 3;
        char *nixl = b64(z, zlen);
        size_t n = strlen(nixl);
        char *text = nxt_md_text(nixl, 1, T_KEY, 2);
        NXT_PASS(dec_str(text));
        free(text);
        if (!tried[pads]) {
            tried[pads] = true;
            /* four spaces after the first quartet */
            char *spaced = malloc(n + 5);
            NXT_CHECK(spaced);
            memcpy(spaced, nixl, 8);
            memcpy(spaced + 8, "    ", 4);
            memcpy(spaced + 12, nixl + 8, n - 8 + 1);
            text = nxt_md_text(spaced, 1, T_KEY, 2);
            NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
            NXT_CHECK(strstr(nxc_last_error(), "base64"));
            free(text);
            free(spaced);
        }
        if (pads > 0) { /* the last digit before '=' with a spare bit set */
            char *last = nixl + n - 1 - pads;
            int v = (int)(strchr(digits, *last) - digits);
            *last = digits[v | 1];
            text = nxt_md_text(nixl, 1, T_KEY, 2);
            NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
            NXT_CHECK(strstr(nxc_last_error(), "base64"));
            free(text);
        }
        free(nixl);
        free(z);
    }
    NXT_CHECK(tried[1] && tried[2]); /* both paddings were tried */
    free(b.p);
}

/* ------------------------------------------------------------------------ */
/* The descriptor list's short cut (metadata_json_canon.c)                   */
/* ------------------------------------------------------------------------ */

/* Decode `text` as it is and again with the short cut `*path` off: the
 * same status, message and metadata. */
static void same_without(bool *path, const char *text, size_t len) {
    nxc__metadata_t fast, slow;
    nxc_status_t st = nxc__md_decode(text, len, &fast);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", st == NXC_OK ? "" : nxc_last_error());
    *path = false;
    nxc_status_t st2 = nxc__md_decode(text, len, &slow);
    *path = true;
    NXT_EQ_INT(st2, st);
    if (st != NXC_OK) {
        NXT_EQ_STR(nxc_last_error(), msg);
        return;
    }
    nxt_md_check_same(&slow, &fast);
    nxc__md_free(&fast);
    nxc__md_free(&slow);
}

/* Decode `text` with the short cut and with yajl alone (same_without).
 * Returns whether the short cut read the list. */
static bool same_both_ways(const char *text, size_t len) {
    nxc__rdesc_t *descs = NULL;
    size_t cap = 0, n = 0;
    bool used = nxc__md_json_canon_descs(text, len, &descs, &cap, &n) > 0;
    free(descs);
    same_without(&nxc__md_json_canon, text, len);
    return used;
}

/* Every one-byte change (deleted, replaced, inserted) anywhere in an
 * encoded text decodes the same with and without the short cut; the short
 * cut reads the list of the text as encoded and of the changes that keep
 * its layout (a digit for a digit). */
static void test_short_cut_matches_yajl(void) {
    static const char bytes[] = " \t09185-+.eE\"\\,:{}[]xa\x7f\xc3";
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 3, 1, NXC__MD_KIND_READ);
    f.md.descs[1].device = (nxc_device_t){NXC_DEVICE_CUDA, 1};
    size_t len;
    char *text = encode(&f.md, &len);
    NXT_CHECK(same_both_ways(text, len));
    char *v = malloc(len + 2);
    NXT_CHECK(v);
    int read_by_short_cut = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(v, text, i); /* deleted */
        memcpy(v + i, text + i + 1, len - i - 1);
        read_by_short_cut += same_both_ways(v, len - 1);
        for (size_t b = 0; b < sizeof bytes - 1; b++) {
            memcpy(v, text, len); /* replaced */
            v[i] = bytes[b];
            read_by_short_cut += same_both_ways(v, len);
            memcpy(v, text, i); /* inserted */
            v[i] = bytes[b];
            memcpy(v + i + 1, text + i, len - i);
            read_by_short_cut += same_both_ways(v, len + 1);
        }
    }
    NXT_CHECK(read_by_short_cut > 100);
    free(v);
    free(text);
    nxt_mdfix_free(&f);
}

/* The fields after the list at the short cut's edges: what it reads and
 * what it leaves to yajl decode alike (same_both_ways). */
static void test_short_cut_tail_edges(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 1, 1, NXC__MD_KIND_READ);
    size_t len;
    char *text = encode(&f.md, &len);
    NXT_CHECK(same_both_ways(text, len));
    const char *key = strstr(text, "\"notification_key\":\"") + strlen("\"notification_key\":\"");
    size_t head = (size_t)(key - text);
    static const char *tails[] = {
        "k\",\"operation_kind\":1}",     "k\",\"operation_kind\":2}",
        "k\",\"operation_kind\":3}",     "k\",\"operation_kind\":0}",
        "k\",\"operation_kind\":01}",    "k\",\"operation_kind\":1} ",
        "k\",\"operation_kind\":1}x",    "\",\"operation_kind\":1}",
        "k\\\"\",\"operation_kind\":1}", "k\",\"operation_kind\":1,\"x\":1}",
        "k\",\"operation_kind\":1.0}",
    };
    char *v = malloc(len + 64);
    NXT_CHECK(v);
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        memcpy(v, text, head);
        strcpy(v + head, tails[i]);
        same_both_ways(v, strlen(v));
    }
    free(v);
    free(text);
    nxt_mdfix_free(&f);
}

/* Decode `text` with the base64 memo holding `prior`'s and with the memo
 * off: the same status, message and metadata. */
static void same_with_memo(const char *prior, size_t prior_len, const char *text, size_t len) {
    nxc__metadata_t m;
    if (nxc__md_decode(prior, prior_len, &m) == NXC_OK) nxc__md_free(&m);
    same_without(&nxc__md_b64_memo, text, len);
}

/* Every one-character change (deleted, replaced, inserted) of the base64
 * text decodes the same after the original text (the memo then holds it)
 * as with no memo: a changed group is decoded, padding and white space
 * included, and the groups after an insertion or deletion all differ. */
static void test_base64_memo(void) {
    static const char chars[] = "AQgw/+=a9 \n!*";
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 2, NXC__MD_KIND_READ);
    size_t len;
    char *text = encode(&f.md, &len);
    const char *b64 = strstr(text, "b64:") + 4, *end = strchr(b64, '"');
    char *v = malloc(len + 2);
    NXT_CHECK(v);
    for (size_t i = (size_t)(b64 - text); i < (size_t)(end - text); i++) {
        memcpy(v, text, i); /* deleted */
        memcpy(v + i, text + i + 1, len - i - 1);
        same_with_memo(text, len, v, len - 1);
        for (size_t c = 0; c < sizeof chars - 1; c++) {
            memcpy(v, text, len); /* replaced */
            v[i] = chars[c];
            same_with_memo(text, len, v, len);
            memcpy(v, text, i); /* inserted */
            v[i] = chars[c];
            memcpy(v + i + 1, text + i, len - i);
            same_with_memo(text, len, v, len + 1);
        }
    }
    /* A padded last group is never taken from the memo for a longer
     * text, where padding mid-text is invalid base64. */
    for (int pads = 1; pads <= 2; pads++) {
        char nixl[64] = "b64:QUJDQUJDQUJD", longer[sizeof nixl + 4];
        strcat(nixl, pads == 1 ? "QUI=" : "QQ==");
        snprintf(longer, sizeof longer, "%sQUJD", nixl);
        char *prior = nxt_md_text(nixl, 1, T_KEY, 1), *next = nxt_md_text(longer, 1, T_KEY, 1);
        same_with_memo(prior, strlen(prior), next, strlen(next));
        free(prior);
        free(next);
    }
    /* and a text of other ops after this one, both ways round */
    nxt_mdfix_t g;
    nxt_mdfix_init(&g, 3, 1, NXC__MD_KIND_WRITE);
    size_t glen;
    char *other = encode(&g.md, &glen);
    same_with_memo(text, len, other, glen);
    same_with_memo(other, glen, text, len);
    free(other);
    nxt_mdfix_free(&g);
    free(v);
    free(text);
    nxt_mdfix_free(&f);
}

/* Values at the short cut's edges: it reads what it can vouch for and
 * leaves the rest (and every fault) to yajl. */
static void test_short_cut_edges(void) {
    static const struct {
        const char *list;
        bool short_cut;
    } cases[] = {
        {"{\"device\":\"cpu\",\"ptr\":999999999999999999,\"size\":1}", true},
        {"{\"device\":\"cpu\",\"ptr\":1000000000000000000,\"size\":1}", false},  /* 19 digits */
        {"{\"device\":\"cpu\",\"ptr\":18446744073709551617,\"size\":1}", false}, /* 2^64 + 1 */
        {"{\"device\":\"cpu\",\"ptr\":0,\"size\":1}", false},
        {"{\"device\":\"cpu\",\"ptr\":01,\"size\":1}", false},
        {"{\"device\":\"cpu\",\"ptr\":-1,\"size\":1}", false},
        {"{\"device\":\"cpu\",\"ptr\":1.0,\"size\":1}", false},
        {"{\"device\":\"cp\\u0075\",\"ptr\":1,\"size\":1}", false},
        {"{\"device\":\"cuda:7\",\"ptr\":1,\"size\":1},{\"device\":\"cpu\",\"ptr\":2,\"size\":1}",
         true},
        {"{\"device\":\"tpu\",\"ptr\":1,\"size\":1}", false},
        {"{\"ptr\":1,\"device\":\"cpu\",\"size\":1}", false},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":1,\"x\":1}", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].list);
        /* a blob of as many descriptors as the list has objects */
        size_t ndesc = 0;
        for (const char *c = cases[i].list; (c = strstr(c, "\"device\"")); c++)
            ndesc++;
        nxt_bb_t b = {0};
        bb_header(&b, 1, T_KEY, (uint32_t)(ndesc ? ndesc : 1), 1);
        bb_section(&b, "tcp", 0, (uint32_t)(ndesc ? ndesc : 1));
        bb_finish(&b);
        size_t zlen;
        uint8_t *z = zcompress(b.p, b.len, &zlen);
        char *nixl = b64(z, zlen);
        char *text = malloc(n + strlen(nixl) + 200);
        NXT_CHECK(text);
        int len = sprintf(text,
                          "{\"descriptors\":[%s],\"nixl_metadata\":\"%s\",\"notification_key\":"
                          "\"%s\",\"operation_kind\":1}",
                          cases[i].list, nixl, T_KEY);
        if (same_both_ways(text, (size_t)len) != cases[i].short_cut)
            nxt_failf(__FILE__, __LINE__, "case %zu: the short cut %s read it", i,
                      cases[i].short_cut ? "did not" : "wrongly");
        free(text);
        free(nixl);
        free(z);
        free(b.p);
    }
}

static void test_bad_hex(void) {
    const char *bad[] = {"", "7", "789", "78zz", "78 9c", "0x789c", "789c\n", "g0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = nxt_md_text(bad[i], 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        free(text);
    }
}

static void test_not_zlib(void) {
    /* valid base64 and hex of bytes that are not a zlib stream */
    const char *bad[] = {"b64:QUJDREVGR0g=", "4142434445464748", "b64:H4sIAAAAAAAAAw=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = nxt_md_text(bad[i], 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "zlib"));
        free(text);
    }
    /* zlib of garbage: not nxc metadata */
    const char garbage[] = "this is not an nxc blob at all, just some text";
    char *text = wrap_blob((const uint8_t *)garbage, sizeof garbage, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not nxc metadata"));
    free(text);
    text = wrap_blob((const uint8_t *)"", 0, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    free(text);
    text = wrap_blob((const uint8_t *)"NXC", 3, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    free(text);
}

static void test_zlib_stream_damage(void) {
    nxt_bb_t b;
    bb_valid(&b);
    size_t zlen;
    uint8_t *z = zcompress(b.p, b.len, &zlen);
    uint8_t *z2 = malloc(zlen + 8);
    memcpy(z2, z, zlen);
    /* every truncation of the compressed stream */
    for (size_t n = 0; n < zlen; n++) {
        char *text = wrap_z(z2, n, 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        free(text);
    }
    /* trailing garbage after the stream end */
    memcpy(z2 + zlen, "\0\1\2", 3);
    char *text = wrap_z(z2, zlen + 3, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "trailing"));
    free(text);
    /* the intact stream decodes */
    text = wrap_z(z2, zlen, 1, T_KEY, 2);
    NXT_PASS(dec_str(text));
    free(text);
    /* a damaged checksum */
    z2[zlen - 1] ^= 0x55;
    text = wrap_z(z2, zlen, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    free(text);
    free(z2);
    free(z);
    free(b.p);
}

/* ------------------------------------------------------------------------ */
/* Malformed blob                                                            */
/* ------------------------------------------------------------------------ */

static void test_truncated_blob(void) {
    nxt_bb_t b;
    bb_valid(&b);
    NXT_PASS(dec_blob(&b, 2));
    uint8_t *t = malloc(b.len);
    for (size_t n = 0; n < b.len; n++) {
        /* as is (total_len then disagrees) and with total_len patched to n */
        for (int patch = 0; patch < 2; patch++) {
            memcpy(t, b.p, n);
            if (patch && n >= 12)
                for (int i = 0; i < 4; i++)
                    t[8 + i] = (uint8_t)(n >> (8 * i));
            char *text = wrap_blob(t, n, 1, T_KEY, 2);
            nxc_status_t st = dec_str(text);
            if (st != NXC_ERR_METADATA_MALFORMED)
                nxt_failf(__FILE__, __LINE__, "truncated to %zu (patch %d): %s (%s)", n, patch,
                          nxc_status_string(st), nxc_last_error());
            free(text);
        }
    }
    free(t);
    free(b.p);
}

static void test_trailing_bytes(void) {
    nxt_bb_t b;
    bb_valid(&b);
    nxt_bb_u8(&b, 0);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "trailing"));
    free(b.p);
}

static void test_header_fields(void) {
    nxt_bb_t b;
    bb_valid(&b);
    uint8_t save[16];
    memcpy(save, b.p, 16);

    b.p[0] = 'X';
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not nxc metadata"));
    memcpy(b.p, save, 16);

    /* version 2 comes in two parts (test_metadata_v2), never in one blob */
    b.p[4] = 2;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "two"));
    b.p[4] = 3;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_VERSION);
    b.p[4] = 7;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_VERSION);
    NXT_CHECK(strstr(nxc_last_error(), "version 7 is not supported"));
    NXT_CHECK(strstr(nxc_last_error(), "reads versions 1 to 2"));
    b.p[4] = 0, b.p[5] = 1; /* 256 */
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_VERSION);
    /* a newer version is reported even when the rest is unreadable */
    nxt_bb_t v3 = {0};
    nxt_bb_bytes(&v3, "NXCB\x03\x00", 6);
    NXT_FAIL(dec_blob(&v3, 2), NXC_ERR_METADATA_VERSION);
    free(v3.p);
    b.p[4] = 0, b.p[5] = 0;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    memcpy(b.p, save, 16);

    b.p[6] = 1;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "flags"));
    b.p[6] = 0, b.p[7] = 0x80;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    memcpy(b.p, save, 16);

    b.p[8]++;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "total_len"));
    b.p[8] -= 2;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    memcpy(b.p, save, 16);

    b.p[12] = 2; /* kind mismatch with JSON 1 */
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "operation_kind"));
    b.p[12] = 0;
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    memcpy(b.p, save, 16);

    for (int i = 13; i < 16; i++) {
        b.p[i] = 1;
        NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "reserved"));
        b.p[i] = 0;
    }
    NXT_PASS(dec_blob(&b, 2));
    free(b.p);
}

static void test_kind_mismatch(void) {
    /* an encoded read metadata whose JSON claims write */
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 1, NXC__MD_KIND_READ);
    char *text = encode(&f.md, NULL);
    json_t *root = json_loads(text, 0, NULL);
    json_object_set_new(root, "operation_kind", json_integer(2));
    NXT_FAIL(dec_json(root), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "operation_kind"));
    free(text);
    nxt_mdfix_free(&f);
}

static void test_key_mismatch(void) {
    NXT_FAIL(dec_with("notification_key", json_string("another-key")), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "notification_key"));
    /* a prefix of the key is not the key */
    json_t *root = valid_json();
    char key[NXC_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(root, "notification_key")));
    key[strlen(key) - 1] = '\0';
    json_object_set_new(root, "notification_key", json_string(key));
    NXT_FAIL(dec_json(root), NXC_ERR_METADATA_MALFORMED);
}

static void test_ndesc_mismatch(void) {
    nxt_bb_t b;
    bb_valid(&b); /* ndesc 2 */
    NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "ndesc"));
    NXT_FAIL(dec_blob(&b, 3), NXC_ERR_METADATA_MALFORMED);
    /* and via the encoder: a 1-descriptor blob under 2 JSON descriptors */
    json_t *root = valid_json();
    json_array_remove(json_object_get(root, "descriptors"), 1);
    NXT_FAIL(dec_json(root), NXC_ERR_METADATA_MALFORMED);
    free(b.p);
}

static void test_bad_strings_in_blob(void) {
    nxt_bb_t b = {0};
    /* name: empty, too long, not printable; host: too long */
    const char *names[] = {"", "has space", "ctl\x01"};
    for (int i = 0; i < 3; i++) {
        bb_header(&b, 1, T_KEY, 1, 0);
        size_t at = 60;
        uint8_t *tmp = malloc(b.len);
        memcpy(tmp, b.p, b.len);
        size_t old = b.len;
        b.len = at;
        nxt_bb_str16(&b, names[i]);
        nxt_bb_bytes(&b, tmp + at + 2 + 4, old - (at + 2 + 4)); /* after "peer" */
        bb_finish(&b);
        NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "name"));
        free(tmp);
        free(b.p);
    }
    char longname[NXC_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[NXC_NAME_MAX + 1] = '\0';
    memset(&b, 0, sizeof b);
    nxt_bb_bytes(&b, "NXCB\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00", 16);
    for (int i = 0; i < 44; i++)
        nxt_bb_u8(&b, 0);
    nxt_bb_str16(&b, longname);
    nxt_bb_str16(&b, "host");
    nxt_bb_str16(&b, T_KEY);
    nxt_bb_u32(&b, 1);
    nxt_bb_u8(&b, 0);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "name"));
    free(b.p);
}

static void test_section_lengths(void) {
    /* conn length 0xFFFFFFFF */
    nxt_bb_t b;
    bb_header(&b, 1, T_KEY, 2, 1);
    nxt_bb_u8(&b, 3);
    nxt_bb_bytes(&b, "ucx", 3);
    nxt_bb_u32(&b, 0xFFFFFFFFu);
    nxt_bb_bytes(&b, "0123456789", 10);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "conn length"));
    free(b.p);
    /* conn length just one past the end */
    bb_header(&b, 1, T_KEY, 1, 1);
    nxt_bb_u8(&b, 3);
    nxt_bb_bytes(&b, "ucx", 3);
    nxt_bb_u32(&b, 3);
    nxt_bb_bytes(&b, "ab\0\0", 4); /* conn takes 3, leaving 1 byte for a 2-byte key length */
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
    free(b.p);
    /* key length 0xFFFF */
    bb_header(&b, 1, T_KEY, 2, 1);
    nxt_bb_u8(&b, 3);
    nxt_bb_bytes(&b, "ucx", 3);
    nxt_bb_u32(&b, 0);
    nxt_bb_u16(&b, 0xFFFF);
    nxt_bb_bytes(&b, "xyz\0\0", 5);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "key"));
    free(b.p);
    /* section name length 0 and 200 */
    const uint8_t nlen[] = {0, 16, 200, 255};
    for (int i = 0; i < 4; i++) {
        bb_header(&b, 1, T_KEY, 1, 1);
        nxt_bb_u8(&b, nlen[i]);
        for (int k = 0; k < nlen[i]; k++)
            nxt_bb_u8(&b, 'a');
        nxt_bb_u32(&b, 0);
        nxt_bb_u16(&b, 0);
        bb_finish(&b);
        NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
        free(b.p);
    }
    /* bad characters in a section name */
    const char *bad[] = {"UCX", "u-x", "u x", "ucx\xff"};
    for (int i = 0; i < 4; i++) {
        bb_header(&b, 1, T_KEY, 1, 1);
        bb_section(&b, bad[i], 0, 1);
        bb_finish(&b);
        NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
        free(b.p);
    }
    /* many sections of many keys claimed by a short blob: refused before
     * the key table is allocated */
    bb_header(&b, 1, T_KEY, 60000, 8);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 60000), NXC_ERR_METADATA_MALFORMED);
    free(b.p);
}

static void test_duplicate_and_too_many_sections(void) {
    nxt_bb_t b;
    bb_header(&b, 1, T_KEY, 2, 3);
    bb_section(&b, "ucx", 4, 2);
    bb_section(&b, "tcp", 4, 2);
    bb_section(&b, "ucx", 4, 2);
    bb_finish(&b);
    NXT_FAIL(dec_blob(&b, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "ucx"));
    free(b.p);

    for (int nsec = 9; nsec <= 255; nsec += 246) {
        bb_header(&b, 1, T_KEY, 1, (uint8_t)nsec);
        char name[8];
        for (int s = 0; s < nsec; s++) {
            snprintf(name, sizeof name, "t%d", s);
            bb_section(&b, name, 1, 1);
        }
        bb_finish(&b);
        NXT_FAIL(dec_blob(&b, 1), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "sections"));
        free(b.p);
    }
    /* exactly the maximum is fine */
    bb_header(&b, 1, T_KEY, 1, NXC__MD_MAX_SECTIONS);
    for (int s = 0; s < NXC__MD_MAX_SECTIONS; s++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", s);
        bb_section(&b, name, 1, 1);
    }
    bb_finish(&b);
    NXT_PASS(dec_blob(&b, 1));
    free(b.p);
}

/* ------------------------------------------------------------------------ */
/* Sizes and raw bytes                                                       */
/* ------------------------------------------------------------------------ */

static void test_oversized_input(void) {
    size_t n = (size_t)NXC_METADATA_MAX + 1;
    char *text = malloc(n);
    memset(text, ' ', n);
    text[0] = '{';
    text[n - 1] = '}';
    NXT_FAIL(nxt_md_dec(text, n), NXC_ERR_METADATA_TOO_LARGE);
    /* the same at exactly the limit is parsed (and is merely malformed) */
    text[n - 2] = '}';
    NXT_FAIL(nxt_md_dec(text, n - 1), NXC_ERR_METADATA_MALFORMED);
    free(text);
}

static void test_zlib_bomb(void) {
    /* a blob that inflates past the limit; valid-looking header */
    size_t n = (size_t)NXC_METADATA_MAX + 1;
    uint8_t *big = calloc(1, n);
    memcpy(big, "NXCB\x01\x00\x00\x00", 8);
    size_t zlen;
    uint8_t *z = zcompress(big, n, &zlen);
    NXT_CHECK(zlen < 64 * 1024);
    char *text = wrap_z(z, zlen, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_TOO_LARGE);
    free(text);
    free(z);
    /* much larger */
    size_t n2 = 64u << 20;
    uint8_t *huge = calloc(1, n2);
    z = zcompress(huge, n2, &zlen);
    text = wrap_z(z, zlen, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_TOO_LARGE);
    free(text);
    free(z);
    free(huge);
    /* exactly the limit inflates, and is then judged by the blob parser */
    z = zcompress(big, n - 1, &zlen);
    text = wrap_z(z, zlen, 1, T_KEY, 2);
    NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
    free(text);
    free(z);
    free(big);
}

static void test_nul_bytes(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 1, NXC__MD_KIND_READ);
    size_t len;
    char *text = encode(&f.md, &len);
    char *buf = malloc(len + 16);
    /* a NUL in the middle, in each of a few places */
    const size_t at[] = {1, 10, len / 2, len - 2, len - 1};
    for (int i = 0; i < 5; i++) {
        memcpy(buf, text, len);
        buf[at[i]] = '\0';
        NXT_FAIL(nxt_md_dec(buf, len), NXC_ERR_METADATA_MALFORMED);
    }
    /* trailing NUL counted in len */
    memcpy(buf, text, len + 1);
    NXT_FAIL(nxt_md_dec(buf, len + 1), NXC_ERR_METADATA_MALFORMED);
    /* not NUL-terminated: only len bytes are read */
    memcpy(buf, text, len);
    memset(buf + len, 'x', 16);
    nxc__metadata_t out;
    NXT_PASS(nxc__md_decode(buf, len, &out));
    nxt_md_check_same(&f.md, &out);
    nxc__md_free(&out);
    /* an exact-size heap buffer with no terminator (ASan catches over-reads) */
    char *exact = malloc(len);
    memcpy(exact, text, len);
    NXT_PASS(nxt_md_dec(exact, len));
    NXT_FAIL(nxt_md_dec(exact, len - 1), NXC_ERR_METADATA_MALFORMED);
    free(exact);
    free(buf);
    free(text);
    nxt_mdfix_free(&f);
}

static void test_error_leaves_md_zeroed(void) {
    nxc__metadata_t md;
    memset(&md, 0x5a, sizeof md);
    NXT_FAIL(nxc__md_decode("[]", 2, &md), NXC_ERR_METADATA_MALFORMED);
    nxc__metadata_t zero;
    memset(&zero, 0, sizeof zero);
    NXT_CHECK(!memcmp(&md, &zero, sizeof md));
    nxc__md_free(&md);
}

static const nxt_test_t nxt_tests[] = {
    {"short_cut_tail_edges", test_short_cut_tail_edges, 0},
    {"base64_memo", test_base64_memo, 0},
    {"roundtrip_one", test_roundtrip_one, 0},
    {"roundtrip_sections", test_roundtrip_sections, 0},
    {"roundtrip_1000_cuda", test_roundtrip_1000_cuda, 0},
    {"roundtrip_long_descriptors", test_roundtrip_long_descriptors, 0},
    {"encode_repeatable", test_encode_repeatable, 0},
    {"roundtrip_empty_keys", test_roundtrip_empty_keys, 0},
    {"roundtrip_max_lengths", test_roundtrip_max_lengths, 0},
    {"json_shape", test_json_shape, 0},
    {"hex_legacy", test_hex_legacy, 0},
    {"unknown_keys_ignored", test_unknown_keys_ignored, 0},
    {"unknown_values_of_every_type", test_unknown_values_of_every_type, 0},
    {"json_rules", test_json_rules, 0},
    {"section_lookup", test_section_lookup, 0},
    {"handbuilt_valid", test_handbuilt_valid, 0},
    {"encode_invalid", test_encode_invalid, 0},
    {"bad_json", test_bad_json, 0},
    {"missing_fields", test_missing_fields, 0},
    {"wrong_types", test_wrong_types, 0},
    {"bad_descriptors", test_bad_descriptors, 0},
    {"bad_operation_kind", test_bad_operation_kind, 0},
    {"bad_notification_key", test_bad_notification_key, 0},
    {"bad_base64", test_bad_base64, 0},
    {"short_cut_matches_yajl", test_short_cut_matches_yajl, 0},
    {"short_cut_edges", test_short_cut_edges, 0},
    {"base64_one_text", test_base64_one_text, 0},
    {"bad_hex", test_bad_hex, 0},
    {"not_zlib", test_not_zlib, 0},
    {"zlib_stream_damage", test_zlib_stream_damage, 0},
    {"truncated_blob", test_truncated_blob, 0},
    {"trailing_bytes", test_trailing_bytes, 0},
    {"header_fields", test_header_fields, 0},
    {"kind_mismatch", test_kind_mismatch, 0},
    {"key_mismatch", test_key_mismatch, 0},
    {"ndesc_mismatch", test_ndesc_mismatch, 0},
    {"bad_strings_in_blob", test_bad_strings_in_blob, 0},
    {"section_lengths", test_section_lengths, 0},
    {"duplicate_and_too_many_sections", test_duplicate_and_too_many_sections, 0},
    {"oversized_input", test_oversized_input, 0},
    {"zlib_bomb", test_zlib_bomb, 0},
    {"nul_bytes", test_nul_bytes, 0},
    {"error_leaves_md_zeroed", test_error_leaves_md_zeroed, 0},
};

NXT_MAIN(nxt_tests)
