/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of metadata format version 2 (src/core/metadata_v2.c,
 * docs/metadata.md §6.1): nixl_metadata = "b64:" base64(peer part) "."
 * base64(op part), each part raw (first byte 'N') or a zlib stream.
 *
 *   - round trips of several shapes, and the form of the text;
 *   - texts built by hand from the spec's tables (raw and zlib parts), and
 *     the encoder's parts compared byte for byte with the spec's layout;
 *   - every malformed input §6.1 lists, with its status;
 *   - the reader's per-thread peer cache and the writer's memo, which must
 *     never change a result;
 *   - version 1 and version 2 of one metadata decode to the same fields.
 */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <zlib.h>

#include "core/metadata.h"
#include "mdfixture.h"
#include "mdtool.h"
#include "nxt.h"

/* ------------------------------------------------------------------------ */
/* Encoding and decoding (fixtures: harness/mdfixture.c)                    */
/* ------------------------------------------------------------------------ */

/* `md` encoded in format `version`. */
static char *encode_v(const nxc__metadata_t *md, uint16_t version, size_t *len_p) {
    nxc__metadata_t in = *md;
    in.version = version;
    char *text = NULL;
    size_t len = 0;
    NXT_PASS(nxc__md_encode(&in, &text, &len));
    NXT_CHECK(text);
    NXT_EQ_INT(len, strlen(text));
    if (len_p) *len_p = len;
    return text;
}

/* Decode `text`, which must succeed and give back `want`'s fields in format
 * `version`; the caller frees `out`. */
static void decode_as(const char *text, const nxc__metadata_t *want, uint16_t version,
                      nxc__metadata_t *out) {
    NXT_PASS(nxc__md_decode(text, strlen(text), out));
    NXT_EQ_INT(out->version, version);
    NXT_CHECK((out->peer_ != NULL) == (version == 2));
    nxt_md_check_same(want, out);
}

static nxc_status_t dec_str(const char *text) {
    return nxt_md_dec(text, strlen(text));
}

/* ------------------------------------------------------------------------ */
/* Texts: base64, zlib, JSON                                                 */
/* ------------------------------------------------------------------------ */

static uint8_t *zcompress(const void *data, size_t len, int level, size_t *zlen_p) {
    uLongf zlen = compressBound((uLong)len);
    uint8_t *z = malloc(zlen);
    NXT_CHECK(z);
    NXT_EQ_INT(compress2(z, &zlen, data, (uLong)len, level), Z_OK);
    *zlen_p = zlen;
    return z;
}

/* "b64:" p64 "." o64, malloc'd. */
static char *join_nixl(const char *p64, const char *o64) {
    size_t n = 4 + strlen(p64) + 1 + strlen(o64) + 1;
    char *s = malloc(n);
    NXT_CHECK(s);
    snprintf(s, n, "b64:%s.%s", p64, o64);
    return s;
}

/* The nixl_metadata string of a JSON text (malloc'd). */
static char *nixl_of(const char *text) {
    json_t *root = json_loads(text, 0, NULL);
    NXT_CHECK(root);
    const char *s = json_string_value(json_object_get(root, "nixl_metadata"));
    NXT_CHECK(s);
    char *copy = strdup(s);
    NXT_CHECK(copy);
    json_decref(root);
    return copy;
}

/* `text` with its nixl_metadata replaced by `nixl` (malloc'd). */
static char *with_nixl(const char *text, const char *nixl) {
    json_t *root = json_loads(text, 0, NULL);
    NXT_CHECK(root);
    json_object_set_new(root, "nixl_metadata", json_string(nixl));
    char *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    NXT_CHECK(out);
    json_decref(root);
    return out;
}

static size_t count_char(const char *s, char c) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* The base64 texts of an encoded version 2 text's peer and op parts. */
static void split_parts(const char *text, char **p64, char **o64) {
    char *nixl = nixl_of(text);
    NXT_CHECK(!strncmp(nixl, "b64:", 4));
    char *dot = strchr(nixl, '.');
    NXT_CHECK(dot);
    *dot = '\0';
    *p64 = strdup(nixl + 4);
    *o64 = strdup(dot + 1);
    NXT_CHECK(*p64 && *o64);
    free(nixl);
}

/* The bytes of a part's base64 text: inflated when its first byte is not
 * 'N' (*zipped then set), as §6.1 says a reader does. */
static uint8_t *part_bytes(const char *b64, size_t *len_p, bool *zipped) {
    size_t n;
    uint8_t *raw = nxt_unb64(b64, strlen(b64), &n);
    *zipped = n > 0 && raw[0] != 'N';
    if (!*zipped) {
        *len_p = n;
        return raw;
    }
    NXT_EQ_INT(raw[0] & 0x0f, 8); /* a zlib header: deflate */
    uLongf out_len = NXC_METADATA_MAX;
    uint8_t *out = malloc(out_len);
    NXT_CHECK(out);
    NXT_EQ_INT(uncompress(out, &out_len, raw, (uLong)n), Z_OK);
    free(raw);
    *len_p = out_len;
    return out;
}

/* ------------------------------------------------------------------------ */
/* A byte builder for hand-built parts (docs/metadata.md §6.1's tables)      */
/* ------------------------------------------------------------------------ */

static void bb_copy(nxt_bb_t *dst, const nxt_bb_t *src) {
    memset(dst, 0, sizeof *dst);
    nxt_bb_bytes(dst, src->p, src->len);
}
static void bb_free(nxt_bb_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
/* total_len (offset 8 in both parts) := the part's length. */
static void part_finish(nxt_bb_t *b) {
    for (int i = 0; i < 4; i++)
        b->p[8 + i] = (uint8_t)(b->len >> (8 * i));
}

#define T_KEY "the-key"
#define T_PID 0x01020304u
#define T_START 0x1122334455667788ull

static uint8_t instance_byte(int i) {
    return (uint8_t)(0xa0 + i);
}
static uint8_t secret_byte(int i) {
    return (uint8_t)(0x30 + 3 * i);
}
/* Byte i of the conn of hand-built section s. */
static uint8_t conn_byte(size_t s, size_t i) {
    return (uint8_t)(0xc0 + 16 * s + i);
}
/* Key j of hand-built section s: key_len bytes of key_byte (some empty). */
static size_t key_len(size_t s, size_t j) {
    return (s + 2 * j) % 5;
}
static uint8_t key_byte(size_t s, size_t j, size_t k) {
    return (uint8_t)(0x40 + 32 * s + 8 * j + k);
}

/* The peer part's fields from offset 0 through nsections. */
static void peer_head(nxt_bb_t *b, const uint8_t *instance, uint32_t pid, uint64_t start,
                      const char *name, const char *host, uint8_t nsec) {
    memset(b, 0, sizeof *b);
    nxt_bb_bytes(b, "NXCB", 4);
    nxt_bb_u16(b, 2);              /* version */
    nxt_bb_u16(b, 0);              /* flags */
    nxt_bb_u32(b, 0);              /* total_len: part_finish() */
    nxt_bb_u32(b, 0);              /* reserved */
    nxt_bb_bytes(b, instance, 16); /* offset 16 */
    nxt_bb_u32(b, pid);            /* offset 32 */
    nxt_bb_u64(b, start);          /* offset 36 */
    nxt_bb_str16(b, name);         /* offset 44 */
    nxt_bb_str16(b, host);
    nxt_bb_u8(b, nsec);
}

static void peer_begin(nxt_bb_t *b, const char *name, const char *host, uint8_t nsec) {
    uint8_t instance[16];
    for (int i = 0; i < 16; i++)
        instance[i] = instance_byte(i);
    peer_head(b, instance, T_PID, T_START, name, host, nsec);
}

/* Section s of the peer part: str8 name, bytes32 conn of conn_byte(s, i). */
static void peer_section(nxt_bb_t *b, const char *name, size_t s, uint32_t conn_len) {
    nxt_bb_str8(b, name);
    nxt_bb_u32(b, conn_len);
    for (uint32_t i = 0; i < conn_len; i++)
        nxt_bb_u8(b, conn_byte(s, i));
}

/* The standard hand-built peer part: "peer" on "host1", sections "ucx" (a
 * 5-byte conn) and "tcp" (an empty conn). */
static void peer_valid(nxt_bb_t *b) {
    peer_begin(b, "peer", "host1", 2);
    peer_section(b, "ucx", 0, 5);
    peer_section(b, "tcp", 1, 0);
    part_finish(b);
}

/* The op part's fields from offset 0 through nsections. */
static void op_head(nxt_bb_t *b, uint8_t kind, const uint8_t *secret, uint32_t ndesc,
                    uint8_t nsec) {
    memset(b, 0, sizeof *b);
    nxt_bb_bytes(b, "NXCO", 4);
    nxt_bb_u16(b, 2);             /* version */
    nxt_bb_u16(b, 0);             /* flags */
    nxt_bb_u32(b, 0);             /* total_len: part_finish() */
    nxt_bb_u8(b, kind);           /* offset 12 */
    nxt_bb_bytes(b, "\0\0\0", 3); /* reserved */
    nxt_bb_bytes(b, secret, 16);  /* offset 16 */
    nxt_bb_u32(b, ndesc);         /* offset 32 */
    nxt_bb_u8(b, nsec);           /* offset 36 */
}

static void op_begin(nxt_bb_t *b, uint8_t kind, uint32_t ndesc, uint8_t nsec) {
    uint8_t secret[16];
    for (int i = 0; i < 16; i++)
        secret[i] = secret_byte(i);
    op_head(b, kind, secret, ndesc, nsec);
}

/* The ndesc keys (bytes16 each) of section s. */
static void op_keys(nxt_bb_t *b, size_t s, size_t ndesc) {
    for (size_t j = 0; j < ndesc; j++) {
        nxt_bb_u16(b, (uint16_t)key_len(s, j));
        for (size_t k = 0; k < key_len(s, j); k++)
            nxt_bb_u8(b, key_byte(s, j, k));
    }
}

/* The standard hand-built op part: kind 1 (READ), 2 descriptors, keys for
 * the peer's 2 sections. */
static void op_valid(nxt_bb_t *b) {
    op_begin(b, 1, 2, 2);
    op_keys(b, 0, 2);
    op_keys(b, 1, 2);
    part_finish(b);
}

/* A part's base64: its bytes (zlevel < 0) or their zlib stream. */
static char *part_b64(const nxt_bb_t *b, int zlevel) {
    if (zlevel < 0) return nxt_b64(b->p, b->len);
    size_t zlen;
    uint8_t *z = zcompress(b->p, b->len, zlevel, &zlen);
    char *s = nxt_b64(z, zlen);
    free(z);
    return s;
}

/* The JSON text of two parts' base64 texts. */
static char *text_of_b64(const char *p64, const char *o64, int kind, size_t ndesc) {
    char *nixl = join_nixl(p64, o64);
    char *text = nxt_md_text(nixl, kind, T_KEY, ndesc);
    free(nixl);
    return text;
}

/* The JSON text of two hand-built parts, each raw or zlib (level >= 0). */
static char *text_of(const nxt_bb_t *peer, int pz, const nxt_bb_t *op, int oz, int kind,
                     size_t ndesc) {
    char *p64 = part_b64(peer, pz), *o64 = part_b64(op, oz);
    char *text = text_of_b64(p64, o64, kind, ndesc);
    free(p64);
    free(o64);
    return text;
}

static nxc_status_t dec_b64(const char *p64, const char *o64, size_t ndesc) {
    char *text = text_of_b64(p64, o64, 1, ndesc);
    nxc_status_t st = dec_str(text);
    free(text);
    return st;
}

/* `peer` and `op`, hand-built, both raw and both zlib streams, decode with
 * status `want` (an error: the message holding `needle`, unless NULL). */
static void expect_parts(const nxt_bb_t *peer, const nxt_bb_t *op, int kind, size_t ndesc,
                         nxc_status_t want, const char *needle, int line) {
    for (int z = -1; z <= 6; z += 7) {
        char *text = text_of(peer, z, op, z, kind, ndesc);
        nxc_status_t st = dec_str(text);
        if (st != want || (needle && !strstr(nxc_last_error(), needle)))
            nxt_failf(__FILE__, line, "%s parts: %s (%s), expected %s with \"%s\"",
                      z < 0 ? "raw" : "zlib", nxc_status_string(st), nxc_last_error(),
                      nxc_status_string(want), needle ? needle : "");
        free(text);
    }
}
#define BAD_K(peer, op, kind, ndesc, want, needle)                                                 \
    expect_parts(peer, op, kind, ndesc, want, needle, __LINE__)
#define BAD(peer, op, want, needle) BAD_K(peer, op, 1, 2, want, needle)
#define GOOD_K(peer, op, kind, ndesc) BAD_K(peer, op, kind, ndesc, NXC_OK, NULL)
#define GOOD(peer, op) GOOD_K(peer, op, 1, 2)

/* The hand-built parts above, as the spec says they decode. */
static void check_handbuilt(const nxc__metadata_t *md) {
    NXT_EQ_INT(md->version, 2);
    NXT_CHECK(md->peer_ != NULL);
    NXT_EQ_INT(md->operation_kind, NXC__MD_KIND_READ);
    NXT_EQ_STR(md->notification_key, T_KEY);
    NXT_EQ_INT(md->ndesc, 2);
    for (size_t i = 0; i < 2; i++) {
        NXT_CHECK(md->descs[i].addr == 4096 * (i + 1));
        NXT_CHECK(md->descs[i].size == 4096);
        NXT_EQ_INT(md->descs[i].device.kind, NXC_DEVICE_HOST);
    }
    NXT_EQ_STR(md->name, "peer");
    NXT_EQ_STR(md->host, "host1");
    for (int i = 0; i < 16; i++) {
        NXT_EQ_INT(md->instance[i], instance_byte(i));
        NXT_EQ_INT(md->secret[i], secret_byte(i));
    }
    NXT_EQ_INT(md->pid, T_PID);
    NXT_CHECK(md->start_time == T_START);
    NXT_EQ_INT(md->nsections, 2);
    NXT_EQ_STR(md->sections[0].name, "ucx");
    NXT_EQ_STR(md->sections[1].name, "tcp");
    NXT_EQ_INT(md->sections[0].conn.len, 5);
    NXT_EQ_INT(md->sections[1].conn.len, 0);
    for (size_t i = 0; i < 5; i++)
        NXT_EQ_INT(md->sections[0].conn.data[i], conn_byte(0, i));
    for (size_t s = 0; s < 2; s++)
        for (size_t j = 0; j < 2; j++) {
            NXT_EQ_INT(md->sections[s].keys[j].len, key_len(s, j));
            for (size_t k = 0; k < key_len(s, j); k++)
                NXT_EQ_INT(md->sections[s].keys[j].data[k], key_byte(s, j, k));
        }
}

/* ------------------------------------------------------------------------ */
/* 1. Round trips and the form of the text                                   */
/* ------------------------------------------------------------------------ */

/* `md` in version 2 decodes to its fields; its nixl_metadata has exactly
 * one '.', version 1's none, and the JSON around it is version 1's. Sets
 * whether the peer and the op part were written as zlib streams. */
static void roundtrip_v2(const nxc__metadata_t *md, bool *peer_zipped, bool *op_zipped) {
    char *t2 = encode_v(md, 2, NULL), *t1 = encode_v(md, 1, NULL);
    nxc__metadata_t out;
    decode_as(t2, md, 2, &out);
    nxc__md_free(&out);

    char *n2 = nixl_of(t2), *n1 = nixl_of(t1);
    NXT_CHECK(!strncmp(n2, "b64:", 4) && !strncmp(n1, "b64:", 4));
    NXT_EQ_INT(count_char(n2, '.'), 1);
    NXT_EQ_INT(count_char(n1, '.'), 0);
    json_t *j2 = json_loads(t2, 0, NULL), *j1 = json_loads(t1, 0, NULL);
    NXT_CHECK(j1 && j2);
    json_object_del(j1, "nixl_metadata");
    json_object_del(j2, "nixl_metadata");
    NXT_CHECK(json_equal(j1, j2));
    json_decref(j1);
    json_decref(j2);

    /* each part is its bytes or their zlib stream, and says version 2 */
    char *p64, *o64;
    split_parts(t2, &p64, &o64);
    size_t pn, on;
    uint8_t *p = part_bytes(p64, &pn, peer_zipped), *o = part_bytes(o64, &on, op_zipped);
    NXT_CHECK(pn >= 12 && !memcmp(p, "NXCB\x02\x00\x00\x00", 8));
    NXT_CHECK(on >= 12 && !memcmp(o, "NXCO\x02\x00\x00\x00", 8));
    NXT_EQ_INT(p[8] | p[9] << 8 | p[10] << 16 | (uint32_t)p[11] << 24, pn);
    NXT_EQ_INT(o[8] | o[9] << 8 | o[10] << 16 | (uint32_t)o[11] << 24, on);
    free(p);
    free(o);
    free(p64);
    free(o64);
    free(n1);
    free(n2);
    free(t1);
    free(t2);
}

static void test_roundtrip_shapes(void) {
    struct {
        size_t ndesc, nsec;
        int kind;
    } shapes[] = {{1, 1, NXC__MD_KIND_READ},
                  {1, 1, NXC__MD_KIND_WRITE},
                  {3, 0, NXC__MD_KIND_READ},
                  {3, NXC__MD_MAX_SECTIONS, NXC__MD_KIND_WRITE}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        nxt_mdfix_t f;
        nxt_mdfix_init(&f, shapes[i].ndesc, shapes[i].nsec, shapes[i].kind);
        bool pz, oz;
        roundtrip_v2(&f.md, &pz, &oz);
        NXT_CHECK(!pz && !oz); /* small parts are written as their bytes */
        nxt_mdfix_free(&f);
    }
}

/* 1000 descriptors: the op part is far above 2 KiB and is written as a zlib
 * stream; the peer part stays raw. */
static void test_roundtrip_1000_descs_zlib_op(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 1000, 2, NXC__MD_KIND_READ);
    for (size_t i = 0; i < 1000; i++)
        f.md.descs[i].device = (nxc_device_t){NXC_DEVICE_CUDA, (int)(i % 4)};
    f.md.descs[999].addr = (uint64_t)INT64_MAX - 10;
    f.md.descs[999].size = 10;
    bool pz, oz;
    roundtrip_v2(&f.md, &pz, &oz);
    NXT_CHECK(!pz);
    NXT_CHECK(oz);
    nxt_mdfix_free(&f);
}

/* A peer part above 2 KiB is a zlib stream; one whose text is above the
 * cache's 64 KiB is decoded every time (and each metadata holds its own). */
static void test_roundtrip_big_peer(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 2, NXC__MD_KIND_WRITE);
    f.md.sections[1].conn = (nxc__bytes_t){f.storage, 3000};
    bool pz, oz;
    roundtrip_v2(&f.md, &pz, &oz);
    NXT_CHECK(pz && !oz);

    f.md.sections[1].conn = (nxc__bytes_t){f.storage, 64 * 1024}; /* incompressible */
    char *text = encode_v(&f.md, 2, NULL);
    char *p64, *o64;
    split_parts(text, &p64, &o64);
    NXT_CHECK(strlen(p64) > 64 * 1024);
    nxc__metadata_t a, b;
    decode_as(text, &f.md, 2, &a);
    decode_as(text, &f.md, 2, &b);
    nxc__md_free(&a);
    nxt_md_check_same(&f.md, &b);
    nxc__md_free(&b);
    free(p64);
    free(o64);
    free(text);
    nxt_mdfix_free(&f);
}

/* ------------------------------------------------------------------------ */
/* 2. Texts built by hand from the spec                                      */
/* ------------------------------------------------------------------------ */

/* The standard hand-built parts, each raw or a zlib stream of any level
 * (§4.2: readers accept any level), decode to the spec's fields. */
static void test_handbuilt_valid(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    const int forms[] = {-1, 0, 1, 6, 9}; /* raw, zlib levels */
    for (size_t i = 0; i < 5; i++)
        for (size_t k = 0; k < 5; k++) {
            char *text = text_of(&peer, forms[i], &op, forms[k], 1, 2);
            nxc__metadata_t md;
            NXT_PASS(nxc__md_decode(text, strlen(text), &md));
            check_handbuilt(&md);
            nxc__md_free(&md);
            free(text);
        }
    bb_free(&peer);
    bb_free(&op);
}

/* Limits: no sections (and an op part with no keys); 8 sections with the
 * longest names and texts. */
static void test_handbuilt_limits(void) {
    nxt_bb_t peer, op;
    peer_begin(&peer, "p", "h", 0);
    part_finish(&peer);
    op_begin(&op, 2, 1, 0);
    part_finish(&op);
    char *text = text_of(&peer, -1, &op, -1, 2, 1);
    nxc__metadata_t md;
    NXT_PASS(nxc__md_decode(text, strlen(text), &md));
    NXT_EQ_INT(md.nsections, 0);
    NXT_EQ_INT(md.operation_kind, 2);
    NXT_EQ_STR(md.name, "p");
    nxc__md_free(&md);
    free(text);
    bb_free(&peer);
    bb_free(&op);

    char name[NXC_NAME_MAX + 1], host[NXC__HOST_MAX + 1];
    memset(name, '~', NXC_NAME_MAX);
    name[NXC_NAME_MAX] = '\0';
    memset(host, '!', NXC__HOST_MAX);
    host[NXC__HOST_MAX] = '\0';
    peer_begin(&peer, name, host, NXC__MD_MAX_SECTIONS);
    char sec[NXC__MD_MAX_SECTIONS][NXC__TRANSPORT_NAME_MAX + 1];
    for (size_t s = 0; s < NXC__MD_MAX_SECTIONS; s++) {
        memset(sec[s], 'a' + (int)s, NXC__TRANSPORT_NAME_MAX);
        sec[s][NXC__TRANSPORT_NAME_MAX] = '\0';
        peer_section(&peer, sec[s], s, (uint32_t)s);
    }
    part_finish(&peer);
    op_begin(&op, 1, 2, NXC__MD_MAX_SECTIONS);
    for (size_t s = 0; s < NXC__MD_MAX_SECTIONS; s++)
        op_keys(&op, s, 2);
    part_finish(&op);
    text = text_of(&peer, -1, &op, 6, 1, 2);
    NXT_PASS(nxc__md_decode(text, strlen(text), &md));
    NXT_EQ_STR(md.name, name);
    NXT_EQ_STR(md.host, host);
    NXT_EQ_INT(md.nsections, NXC__MD_MAX_SECTIONS);
    for (size_t s = 0; s < NXC__MD_MAX_SECTIONS; s++) {
        NXT_EQ_STR(md.sections[s].name, sec[s]);
        NXT_EQ_INT(md.sections[s].conn.len, s);
        for (size_t i = 0; i < s; i++)
            NXT_EQ_INT(md.sections[s].conn.data[i], conn_byte(s, i));
        for (size_t j = 0; j < 2; j++) {
            NXT_EQ_INT(md.sections[s].keys[j].len, key_len(s, j));
            for (size_t k = 0; k < key_len(s, j); k++)
                NXT_EQ_INT(md.sections[s].keys[j].data[k], key_byte(s, j, k));
        }
    }
    nxc__md_free(&md);
    free(text);
    bb_free(&peer);
    bb_free(&op);
}

/* The parts §6.1's tables give for `md`. */
static void spec_peer(const nxc__metadata_t *md, nxt_bb_t *b) {
    peer_head(b, md->instance, md->pid, md->start_time, md->name, md->host, (uint8_t)md->nsections);
    for (size_t s = 0; s < md->nsections; s++) {
        nxt_bb_str8(b, md->sections[s].name);
        nxt_bb_u32(b, md->sections[s].conn.len);
        nxt_bb_bytes(b, md->sections[s].conn.data, md->sections[s].conn.len);
    }
    part_finish(b);
}

static void spec_op(const nxc__metadata_t *md, nxt_bb_t *b) {
    op_head(b, (uint8_t)md->operation_kind, md->secret, (uint32_t)md->ndesc,
            (uint8_t)md->nsections);
    for (size_t s = 0; s < md->nsections; s++)
        for (size_t j = 0; j < md->ndesc; j++) {
            nxc__bytes_t k = md->sections[s].keys ? md->sections[s].keys[j] : (nxc__bytes_t){0};
            nxt_bb_u16(b, (uint16_t)k.len);
            nxt_bb_bytes(b, k.data, k.len);
        }
    part_finish(b);
}

/* The encoder writes exactly the bytes of §6.1's tables (once inflated). */
static void test_encoder_layout(void) {
    const size_t ndescs[] = {2, 1000};
    for (int i = 0; i < 2; i++) {
        nxt_mdfix_t f;
        nxt_mdfix_init(&f, ndescs[i], 3, NXC__MD_KIND_WRITE);
        f.md.sections[2].keys = NULL; /* every key empty */
        char *text = encode_v(&f.md, 2, NULL), *p64, *o64;
        split_parts(text, &p64, &o64);
        size_t pn, on;
        bool pz, oz;
        uint8_t *p = part_bytes(p64, &pn, &pz), *o = part_bytes(o64, &on, &oz);
        nxt_bb_t want_p, want_o;
        spec_peer(&f.md, &want_p);
        spec_op(&f.md, &want_o);
        NXT_EQ_INT(pn, want_p.len);
        NXT_CHECK(!memcmp(p, want_p.p, pn));
        NXT_EQ_INT(on, want_o.len);
        NXT_CHECK(!memcmp(o, want_o.p, on));
        NXT_CHECK(oz == (i == 1));
        /* and the spec's parts, sent raw, decode to the metadata */
        char *wp = part_b64(&want_p, -1), *wo = part_b64(&want_o, -1);
        char *nixl = join_nixl(wp, wo);
        char *text2 = with_nixl(text, nixl);
        nxc__metadata_t out;
        decode_as(text2, &f.md, 2, &out);
        nxc__md_free(&out);
        free(text2);
        free(nixl);
        free(wp);
        free(wo);
        bb_free(&want_p);
        bb_free(&want_o);
        free(p);
        free(o);
        free(p64);
        free(o64);
        free(text);
        nxt_mdfix_free(&f);
    }
}

/* ------------------------------------------------------------------------ */
/* 3. Malformed input                                                        */
/* ------------------------------------------------------------------------ */

/* The string around the parts: one '.', both parts present, base64. */
static void test_bad_framing(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    char *p64 = part_b64(&peer, -1), *o64 = part_b64(&op, -1);
    NXT_PASS(dec_b64(p64, o64, 2));

    /* a second '.' */
    char buf[1024];
    const char *fmts[] = {"b64:%s.%s.%s", "b64:%s..%s%s", "b64:%s.%s%s.", "b64:%s.%s.%s."};
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, fmts[i], p64, o64, i == 0 ? o64 : "");
        char *text = nxt_md_text(buf, 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        free(text);
    }
    /* an empty part, or both */
    NXT_FAIL(dec_b64("", o64, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_b64(p64, "", 2), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_b64("", "", 2), NXC_ERR_METADATA_MALFORMED);
    /* no "b64:" prefix (read as hex, which has no '.'), or a wrong one */
    const char *prefix[] = {"", "B64:", "b64", "b64:b64:"};
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%s%s.%s", prefix[i], p64, o64);
        char *text = nxt_md_text(buf, 1, T_KEY, 2);
        NXT_FAIL(dec_str(text), NXC_ERR_METADATA_MALFORMED);
        free(text);
    }
    /* bad base64 in either part (§4.1's strict rules) */
    const char *bad64[] = {"@@@@",   "QQ=",      "QR==",     "QUJ-", "QUJ_",   "QU D",      " QUJ",
                           "QUJD\n", "QUJD====", "QQ==QQ==", "QUJ=", "TlhDQg", "TlhD\tQg=="};
    for (size_t i = 0; i < sizeof bad64 / sizeof bad64[0]; i++) {
        NXT_FAIL(dec_b64(bad64[i], o64, 2), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "base64"));
        NXT_FAIL(dec_b64(p64, bad64[i], 2), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "base64"));
    }
    /* a valid part's text damaged in its middle */
    char *p2 = strdup(p64), *o2 = strdup(o64);
    p2[8] = '*';
    o2[8] = '-';
    NXT_FAIL(dec_b64(p2, o64, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_FAIL(dec_b64(p64, o2, 2), NXC_ERR_METADATA_MALFORMED);
    free(p2);
    free(o2);
    NXT_PASS(dec_b64(p64, o64, 2));
    free(p64);
    free(o64);
    bb_free(&peer);
    bb_free(&op);
}

/* A part whose first byte is not 'N' must be one complete zlib stream
 * (§4.2) of a part. */
static void test_bad_zlib_part(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    char *p64 = part_b64(&peer, -1), *o64 = part_b64(&op, -1);
    /* neither 'N' nor zlib: "ABCDEFGH", a lowercase 'n', gzip's magic */
    nxt_bb_t junk = {0};
    nxt_bb_bytes(&junk, "ABCDEFGH", 8);
    char *j64 = part_b64(&junk, -1);
    nxt_bb_t lower;
    bb_copy(&lower, &peer);
    lower.p[0] = 'n';
    char *l64 = part_b64(&lower, -1);
    const char *gzip64 = "H4sIAAAAAAAAAw==";
    const char *bad[] = {j64, l64, gzip64};
    for (int i = 0; i < 3; i++) {
        NXT_FAIL(dec_b64(bad[i], o64, 2), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "zlib"));
        NXT_FAIL(dec_b64(p64, bad[i], 2), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "zlib"));
    }
    /* a zlib stream with a byte after it, cut short, or with a bad checksum */
    const nxt_bb_t *parts[] = {&peer, &op};
    for (int which = 0; which < 2; which++) {
        size_t zlen;
        uint8_t *z = zcompress(parts[which]->p, parts[which]->len, 6, &zlen);
        nxt_bb_t zb = {0};
        nxt_bb_bytes(&zb, z, zlen);
        nxt_bb_u8(&zb, 0);
        const size_t lens[] = {zlen + 1, zlen - 1, 2, 1};
        for (int k = 0; k < 5; k++) {
            char *z64;
            if (k < 4) {
                z64 = nxt_b64(zb.p, lens[k]);
            } else {
                zb.p[zlen - 1] ^= 0x55;
                z64 = nxt_b64(zb.p, zlen);
            }
            NXT_FAIL(which == 0 ? dec_b64(z64, o64, 2) : dec_b64(p64, z64, 2),
                     NXC_ERR_METADATA_MALFORMED);
            free(z64);
        }
        bb_free(&zb);
        free(z);
    }
    /* a zlib stream of bytes that are not a part */
    nxt_bb_t garbage = {0};
    nxt_bb_bytes(&garbage, "this is not a part of nxc metadata", 34);
    char *g64 = part_b64(&garbage, 6);
    NXT_FAIL(dec_b64(g64, o64, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not nxc metadata"));
    NXT_FAIL(dec_b64(p64, g64, 2), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "not nxc metadata"));
    free(g64);
    bb_free(&garbage);
    free(j64);
    free(l64);
    bb_free(&junk);
    bb_free(&lower);
    free(p64);
    free(o64);
    bb_free(&peer);
    bb_free(&op);
}

/* A zlib part inflating past NXC_METADATA_MAX is too large, in either part;
 * one of exactly the limit is inflated, then judged as a part. */
static void test_part_too_large(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    char *p64 = part_b64(&peer, -1), *o64 = part_b64(&op, -1);
    size_t n = (size_t)NXC_METADATA_MAX + 1;
    uint8_t *big = calloc(1, n);
    NXT_CHECK(big);
    const char *magic[] = {"NXCB\x02\x00", "NXCO\x02\x00"};
    for (int which = 0; which < 2; which++) {
        memcpy(big, magic[which], 6);
        for (int over = 1; over >= 0; over--) {
            size_t zlen;
            uint8_t *z = zcompress(big, n - 1 + (size_t)over, 9, &zlen);
            NXT_CHECK(zlen < 64 * 1024);
            char *z64 = nxt_b64(z, zlen);
            nxc_status_t st = which == 0 ? dec_b64(z64, o64, 2) : dec_b64(p64, z64, 2);
            NXT_EQ_INT(st, over ? NXC_ERR_METADATA_TOO_LARGE : NXC_ERR_METADATA_MALFORMED);
            if (!over) NXT_CHECK(strstr(nxc_last_error(), "total_len"));
            free(z64);
            free(z);
        }
    }
    free(big);
    free(p64);
    free(o64);
    bb_free(&peer);
    bb_free(&op);
}

/* The peer part's fixed header: magic, version, flags, total_len, reserved. */
static void test_bad_peer_header(void) {
    nxt_bb_t peer, op, b;
    peer_valid(&peer);
    op_valid(&op);
    bb_copy(&b, &peer);
    GOOD(&peer, &op);

    b.p[3] = 'O'; /* the op part's magic */
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "not nxc metadata");
    b.p[3] = 'B', b.p[1] = 'Y';
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "not nxc metadata");
    b.p[1] = 'X';

    const struct {
        uint16_t version;
        nxc_status_t want;
    } versions[] = {{0, NXC_ERR_METADATA_MALFORMED},    {1, NXC_ERR_METADATA_MALFORMED},
                    {3, NXC_ERR_METADATA_VERSION},      {7, NXC_ERR_METADATA_VERSION},
                    {0x0100, NXC_ERR_METADATA_VERSION}, {0xffff, NXC_ERR_METADATA_VERSION}};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        b.p[4] = (uint8_t)versions[i].version, b.p[5] = (uint8_t)(versions[i].version >> 8);
        BAD(&b, &op, versions[i].want, "version");
        if (versions[i].want == NXC_ERR_METADATA_VERSION)
            NXT_CHECK(strstr(nxc_last_error(), "reads versions 1 to 2"));
    }
    b.p[4] = 3, b.p[5] = 0;
    BAD(&b, &op, NXC_ERR_METADATA_VERSION, "version 3 is not supported");
    b.p[4] = 2;
    /* a newer version is told even when nothing follows it; a shorter
     * part is only damaged */
    nxt_bb_t v = {0};
    nxt_bb_bytes(&v, "NXCB\x03\x00", 6);
    BAD(&v, &op, NXC_ERR_METADATA_VERSION, NULL);
    v.p[4] = 2;
    BAD(&v, &op, NXC_ERR_METADATA_MALFORMED, NULL);
    v.len = 5;
    BAD(&v, &op, NXC_ERR_METADATA_MALFORMED, NULL);
    v.len = 4;
    BAD(&v, &op, NXC_ERR_METADATA_MALFORMED, NULL);
    bb_free(&v);

    b.p[6] = 1;
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "flags");
    b.p[6] = 0, b.p[7] = 0x80;
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "flags");
    b.p[7] = 0;

    for (int d = -1; d <= 1; d += 2) {
        b.p[8] = (uint8_t)(peer.p[8] + d);
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "total_len");
    }
    b.p[8] = peer.p[8], b.p[11] = 1;
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "total_len");
    b.p[11] = 0;

    for (int i = 12; i < 16; i++) {
        b.p[i] = 1;
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "reserved");
        b.p[i] = 0;
    }
    NXT_CHECK(!memcmp(b.p, peer.p, peer.len));
    GOOD(&b, &op);
    bb_free(&b);
    bb_free(&peer);
    bb_free(&op);
}

/* A peer part with the standard sections but the given name and host. */
static void peer_named(nxt_bb_t *b, const char *name, const char *host) {
    peer_begin(b, name, host, 2);
    peer_section(b, "ucx", 0, 5);
    peer_section(b, "tcp", 1, 0);
    part_finish(b);
}

/* The peer part's name, host, sections and end. */
static void test_bad_peer_fields(void) {
    nxt_bb_t op, b;
    op_valid(&op);
    char longname[NXC_NAME_MAX + 2], longhost[NXC__HOST_MAX + 2];
    memset(longname, 'n', NXC_NAME_MAX + 1);
    longname[NXC_NAME_MAX + 1] = '\0';
    memset(longhost, 'h', NXC__HOST_MAX + 1);
    longhost[NXC__HOST_MAX + 1] = '\0';
    const char *bad_text[] = {"", "has space", "ctl\x01", "del\x7f", "hi\x80", longname};
    for (size_t i = 0; i < sizeof bad_text / sizeof bad_text[0]; i++) {
        peer_named(&b, bad_text[i], "host1");
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "name");
        bb_free(&b);
        if (bad_text[i] == longname) continue;
        peer_named(&b, "peer", bad_text[i]);
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "host");
        bb_free(&b);
    }
    peer_named(&b, "peer", longhost);
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "host");
    bb_free(&b);
    longhost[NXC__HOST_MAX] = '\0'; /* the longest host and name pass */
    longname[NXC_NAME_MAX] = '\0';
    peer_named(&b, longname, longhost);
    GOOD(&b, &op);
    bb_free(&b);

    /* more than 8 sections (the op part agreeing) */
    const int too_many[] = {9, 255};
    for (int i = 0; i < 2; i++) {
        peer_begin(&b, "peer", "host1", (uint8_t)too_many[i]);
        nxt_bb_t o;
        op_begin(&o, 1, 2, (uint8_t)too_many[i]);
        for (int s = 0; s < too_many[i]; s++) {
            char name[16];
            snprintf(name, sizeof name, "t%d", s);
            peer_section(&b, name, 0, 1);
            op_keys(&o, 0, 2);
        }
        part_finish(&b);
        part_finish(&o);
        BAD(&b, &o, NXC_ERR_METADATA_MALFORMED, "sections");
        bb_free(&b);
        bb_free(&o);
    }

    /* a section name repeated */
    peer_begin(&b, "peer", "host1", 3);
    peer_section(&b, "ucx", 0, 1);
    peer_section(&b, "tcp", 1, 1);
    peer_section(&b, "ucx", 2, 1);
    part_finish(&b);
    nxt_bb_t op3;
    op_begin(&op3, 1, 2, 3);
    for (size_t s = 0; s < 3; s++)
        op_keys(&op3, s, 2);
    part_finish(&op3);
    BAD(&b, &op3, NXC_ERR_METADATA_MALFORMED, "ucx");
    bb_free(&b);
    bb_free(&op3);

    /* a section name that is not 1..15 bytes of [a-z0-9_] */
    const char *bad_sec[] = {"", "UCX", "u-x", "u x", "ucx\xff", "tcp.", "abcdefghijklmnop"};
    for (size_t i = 0; i < sizeof bad_sec / sizeof bad_sec[0]; i++) {
        peer_begin(&b, "peer", "host1", 2);
        peer_section(&b, "ucx", 0, 5);
        peer_section(&b, bad_sec[i], 1, 0);
        part_finish(&b);
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "name");
        bb_free(&b);
    }

    /* a conn length beyond the end: far, and by one */
    const uint32_t conn_claim[] = {0xffffffffu, 0x80000000u, 6};
    for (int i = 0; i < 3; i++) {
        peer_begin(&b, "peer", "host1", 2);
        peer_section(&b, "tcp", 1, 0);
        nxt_bb_str8(&b, "ucx");
        nxt_bb_u32(&b, conn_claim[i]);
        nxt_bb_bytes(&b, "\1\2\3\4\5", 5);
        part_finish(&b);
        BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "conn");
        bb_free(&b);
    }

    /* trailing bytes */
    peer_valid(&b);
    nxt_bb_u8(&b, 0);
    part_finish(&b);
    BAD(&b, &op, NXC_ERR_METADATA_MALFORMED, "trailing");
    bb_free(&b);
    bb_free(&op);
}

/* Every proper prefix of a part, its total_len as it was or patched to the
 * prefix's length, is malformed. */
static void truncations(const nxt_bb_t *peer, const nxt_bb_t *op, bool cut_peer) {
    const nxt_bb_t *whole = cut_peer ? peer : op;
    for (size_t n = 0; n < whole->len; n++)
        for (int patch = 0; patch < 2; patch++) {
            nxt_bb_t t = {0};
            nxt_bb_bytes(&t, whole->p, n);
            if (patch && n >= 12) part_finish(&t);
            char *text = cut_peer ? text_of(&t, -1, op, -1, 1, 2) : text_of(peer, -1, &t, -1, 1, 2);
            nxc_status_t st = dec_str(text);
            if (st != NXC_ERR_METADATA_MALFORMED)
                nxt_failf(__FILE__, __LINE__, "%s part cut to %zu (patch %d): %s (%s)",
                          cut_peer ? "peer" : "op", n, patch, nxc_status_string(st),
                          nxc_last_error());
            free(text);
            bb_free(&t);
        }
}

static void test_truncated_parts(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    truncations(&peer, &op, true);
    truncations(&peer, &op, false);
    bb_free(&peer);
    bb_free(&op);
}

/* The op part's fixed header: magic, version, flags, total_len,
 * operation_kind, reserved. */
static void test_bad_op_header(void) {
    nxt_bb_t peer, op, b;
    peer_valid(&peer);
    op_valid(&op);
    bb_copy(&b, &op);

    b.p[3] = 'B'; /* the peer part's magic */
    BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "not nxc metadata");
    b.p[3] = 'O', b.p[2] = 'Z';
    BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "not nxc metadata");
    b.p[2] = 'C';

    const struct {
        uint16_t version;
        nxc_status_t want;
    } versions[] = {{0, NXC_ERR_METADATA_MALFORMED},
                    {1, NXC_ERR_METADATA_MALFORMED},
                    {3, NXC_ERR_METADATA_VERSION},
                    {0xffff, NXC_ERR_METADATA_VERSION}};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        b.p[4] = (uint8_t)versions[i].version, b.p[5] = (uint8_t)(versions[i].version >> 8);
        BAD(&peer, &b, versions[i].want, "version");
    }
    b.p[4] = 2, b.p[5] = 0;
    nxt_bb_t v = {0};
    nxt_bb_bytes(&v, "NXCO\x03\x00", 6);
    BAD(&peer, &v, NXC_ERR_METADATA_VERSION, "version 3 is not supported");
    bb_free(&v);

    b.p[6] = 4;
    BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "flags");
    b.p[6] = 0, b.p[7] = 1;
    BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "flags");
    b.p[7] = 0;

    for (int d = -1; d <= 1; d += 2) {
        b.p[8] = (uint8_t)(op.p[8] + d);
        BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "total_len");
    }
    b.p[8] = op.p[8];

    /* operation_kind differs from the JSON's (1) */
    const uint8_t kinds[] = {0, 2, 3, 255};
    for (int i = 0; i < 4; i++) {
        b.p[12] = kinds[i];
        BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "operation_kind");
    }
    b.p[12] = 2; /* a WRITE op part under a JSON that says WRITE passes */
    part_finish(&b);
    GOOD_K(&peer, &b, 2, 2);
    BAD_K(&peer, &op, 2, 2, NXC_ERR_METADATA_MALFORMED, "operation_kind");
    b.p[12] = 1;

    for (int i = 13; i < 16; i++) {
        b.p[i] = 1;
        BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "reserved");
        b.p[i] = 0;
    }
    NXT_CHECK(!memcmp(b.p, op.p, op.len));
    GOOD(&peer, &b);
    bb_free(&b);
    bb_free(&peer);
    bb_free(&op);
}

/* §6.1 lists the op part's checks in the order magic, version, flags,
 * total_len, operation_kind, reserved (as §5.2 step 3 does for version 1):
 * an op part with both a wrong kind and nonzero reserved bytes should be
 * refused for its kind, as a version 1 blob with both faults is. */
static void test_op_check_order(void) {
    nxt_bb_t peer, op;
    peer_valid(&peer);
    op_valid(&op);
    op.p[12] = 2;
    op.p[13] = 1;
    BAD(&peer, &op, NXC_ERR_METADATA_MALFORMED, "operation_kind");
    bb_free(&peer);
    bb_free(&op);
}

/* The op part's ndesc, nsections, keys, key table and end. */
static void test_bad_op_fields(void) {
    nxt_bb_t peer, op, b;
    peer_valid(&peer);
    op_valid(&op);

    /* ndesc differs from the JSON's descriptor count */
    BAD_K(&peer, &op, 1, 1, NXC_ERR_METADATA_MALFORMED, "ndesc");
    BAD_K(&peer, &op, 1, 3, NXC_ERR_METADATA_MALFORMED, "ndesc");

    /* nsections differs from the peer part's (2) */
    const uint8_t nsecs[] = {0, 1, 3, 8, 9, 255};
    for (int i = 0; i < 6; i++) {
        op_begin(&b, 1, 2, nsecs[i]);
        for (size_t s = 0; s < nsecs[i]; s++)
            op_keys(&b, s % 2, 2);
        part_finish(&b);
        BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "sections");
        bb_free(&b);
    }

    /* a key length beyond the end: far, and by one */
    const uint16_t claim[] = {0xffff, 4};
    for (int i = 0; i < 2; i++) {
        op_begin(&b, 1, 2, 2);
        op_keys(&b, 0, 2);
        nxt_bb_u16(&b, 1);
        nxt_bb_u8(&b, 'k');
        nxt_bb_u16(&b, claim[i]);
        nxt_bb_bytes(&b, "xyz", 3);
        part_finish(&b);
        BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "key");
        bb_free(&b);
    }

    /* trailing bytes */
    bb_copy(&b, &op);
    nxt_bb_bytes(&b, "\0\0", 2);
    part_finish(&b);
    BAD(&peer, &b, NXC_ERR_METADATA_MALFORMED, "trailing");
    bb_free(&b);
    bb_free(&peer);
    bb_free(&op);
}

/* Before the key table (nsections × ndesc entries) is allocated, at least
 * nsections × 2 × ndesc bytes must be left: 60000 JSON descriptors under a
 * tiny op part are refused by that check; exactly enough (every key empty)
 * passes, one byte less fails. */
static void test_op_key_table_check(void) {
    nxt_bb_t peer, op;
    peer_begin(&peer, "peer", "host1", 1);
    peer_section(&peer, "ucx", 0, 3);
    part_finish(&peer);
    char *p64 = part_b64(&peer, -1);

    const size_t big = 60000;
    op_begin(&op, 1, (uint32_t)big, 1);
    op_keys(&op, 0, 4);
    part_finish(&op);
    char *o64 = part_b64(&op, -1);
    NXT_FAIL(dec_b64(p64, o64, big), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "at least"));
    free(o64);
    bb_free(&op);

    const size_t n = 20000;
    op_begin(&op, 1, (uint32_t)n, 1);
    for (size_t j = 0; j < n; j++)
        nxt_bb_u16(&op, 0);
    part_finish(&op);
    o64 = part_b64(&op, 6);
    NXT_PASS(dec_b64(p64, o64, n));
    free(o64);
    op.len -= 1; /* the last key's length cut in half */
    part_finish(&op);
    o64 = part_b64(&op, 6);
    NXT_FAIL(dec_b64(p64, o64, n), NXC_ERR_METADATA_MALFORMED);
    NXT_CHECK(strstr(nxc_last_error(), "at least"));
    free(o64);
    bb_free(&op);
    free(p64);
    bb_free(&peer);
}

/* ------------------------------------------------------------------------ */
/* 4. The reader's peer cache and the writer's memo                          */
/* ------------------------------------------------------------------------ */

#define NPEERS 6 /* more than the cache's 4 slots */

/* NPEERS fixtures of different peers: names differ, and conn bytes. */
static void peers_init(nxt_mdfix_t *f, char **texts) {
    for (int i = 0; i < NPEERS; i++) {
        nxt_mdfix_init(&f[i], 2, 2, NXC__MD_KIND_READ);
        snprintf(f[i].md.name, sizeof f[i].md.name, "peer-%d", i);
        f[i].storage[0] = (uint8_t)i; /* conn byte 0 of section 0 */
        f[i].storage[1] = (uint8_t)(0x80 + i);
        texts[i] = encode_v(&f[i].md, 2, NULL);
    }
}

static void peers_free(nxt_mdfix_t *f, char **texts) {
    for (int i = 0; i < NPEERS; i++) {
        free(texts[i]);
        nxt_mdfix_free(&f[i]);
    }
}

/* (a) Decoding 6 peers in turn evicts the first from the cache while a
 * metadata still uses it: that metadata stays whole (ASan would see a
 * use-after-free), and so do all the others. */
static void test_cache_eviction_keeps_held(void) {
    nxt_mdfix_t f[NPEERS];
    char *texts[NPEERS];
    peers_init(f, texts);
    nxc__metadata_t out[NPEERS];
    for (int i = 0; i < NPEERS; i++)
        decode_as(texts[i], &f[i].md, 2, &out[i]);
    for (int round = 0; round < 3; round++) /* churn the cache more */
        for (int i = NPEERS - 1; i >= 0; i--) {
            nxc__metadata_t tmp;
            decode_as(texts[i], &f[i].md, 2, &tmp);
            nxc__md_free(&tmp);
        }
    NXT_EQ_STR(out[0].name, "peer-0");
    NXT_EQ_INT(out[0].sections[0].conn.data[0], 0);
    NXT_EQ_INT(out[0].sections[0].conn.data[1], 0x80);
    for (int i = 0; i < NPEERS; i++) {
        nxt_md_check_same(&f[i].md, &out[i]);
        nxc__md_free(&out[i]);
    }
    peers_free(f, texts);
}

/* The same peer text decoded twice in a row is taken from the cache: both
 * metadata share one decoded peer part (this library's cache, §6.1
 * "Decoding once"), and each still frees on its own. */
static void test_cache_shares_peer(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 2, NXC__MD_KIND_READ);
    char *text = encode_v(&f.md, 2, NULL);
    nxc__metadata_t a, b;
    decode_as(text, &f.md, 2, &a);
    decode_as(text, &f.md, 2, &b);
    NXT_CHECK(a.peer_ == b.peer_);
    NXT_CHECK(a.sections[0].conn.data == b.sections[0].conn.data);
    nxc__md_free(&a);
    nxt_md_check_same(&f.md, &b);
    nxc__md_free(&b);
    free(text);
    nxt_mdfix_free(&f);
}

/* (b) Two peer parts one byte apart (a conn byte) are different keys: each
 * text decodes to its own value, however they alternate. */
static void test_cache_one_byte_apart(void) {
    nxt_mdfix_t fa, fb;
    nxt_mdfix_init(&fa, 2, 2, NXC__MD_KIND_READ);
    nxt_mdfix_init(&fb, 2, 2, NXC__MD_KIND_READ);
    fb.storage[3] ^= 0x01; /* conn byte 3 of section 0 */
    char *ta = encode_v(&fa.md, 2, NULL), *tb = encode_v(&fb.md, 2, NULL);
    char *pa, *oa, *pb, *ob;
    split_parts(ta, &pa, &oa);
    split_parts(tb, &pb, &ob);
    NXT_EQ_INT(strlen(pa), strlen(pb));
    NXT_CHECK(strcmp(pa, pb) != 0);
    NXT_EQ_STR(oa, ob);
    /* hand-built peer parts that differ in their last byte only (a conn
     * byte of the last section) */
    nxt_bb_t peer, peer2, op;
    peer_begin(&peer, "peer", "host1", 2);
    peer_section(&peer, "tcp", 1, 0);
    peer_section(&peer, "ucx", 0, 5);
    part_finish(&peer);
    bb_copy(&peer2, &peer);
    peer2.p[peer2.len - 1] ^= 0xff;
    op_valid(&op);
    char *th = text_of(&peer, -1, &op, -1, 1, 2), *th2 = text_of(&peer2, -1, &op, -1, 1, 2);
    for (int i = 0; i < 40; i++) {
        nxc__metadata_t out;
        bool b = i % 3 == 1;
        decode_as(b ? tb : ta, b ? &fb.md : &fa.md, 2, &out);
        NXT_EQ_INT(out.sections[0].conn.data[3], (b ? fb : fa).storage[3]);
        nxc__md_free(&out);
        bool h2 = i % 2;
        NXT_PASS(nxc__md_decode(h2 ? th2 : th, strlen(h2 ? th2 : th), &out));
        const nxc__md_section_t *ucx = nxc__md_section(&out, "ucx");
        NXT_CHECK(ucx && ucx->conn.len == 5);
        NXT_EQ_INT(ucx->conn.data[4], (uint8_t)(conn_byte(0, 4) ^ (h2 ? 0xff : 0)));
        NXT_EQ_STR(out.sections[0].name, "tcp");
        nxc__md_free(&out);
    }
    free(th);
    free(th2);
    bb_free(&peer);
    bb_free(&peer2);
    bb_free(&op);
    free(pa);
    free(oa);
    free(pb);
    free(ob);
    free(ta);
    free(tb);
    nxt_mdfix_free(&fa);
    nxt_mdfix_free(&fb);
}

typedef struct thread_job {
    const char *texts[NPEERS];
    nxc__metadata_t out[2];
    nxc_status_t st[2 + NPEERS];
    nxc__metadata_t *to_free;
} thread_job_t;

/* Decode texts[0] twice (kept), then every peer (freed), so the thread's
 * cache is full when it exits; free `to_free` if set. */
static void *decode_on_thread(void *arg) {
    thread_job_t *job = arg;
    for (int k = 0; k < 2; k++)
        job->st[k] = nxc__md_decode(job->texts[0], strlen(job->texts[0]), &job->out[k]);
    for (int i = 0; i < NPEERS; i++) {
        nxc__metadata_t tmp;
        job->st[2 + i] = nxc__md_decode(job->texts[i], strlen(job->texts[i]), &tmp);
        nxc__md_free(&tmp);
    }
    if (job->to_free) nxc__md_free(job->to_free);
    return NULL;
}

/* (c) Metadata decoded on a thread that then exits (its cache freed by the
 * thread key's destructor) stay whole on the main thread until freed; and
 * a metadata decoded on the main thread may be freed on another while the
 * main thread's cache still holds its peer part. */
static void test_cache_thread_exit(void) {
    nxt_mdfix_t f[NPEERS];
    char *texts[NPEERS];
    peers_init(f, texts);
    nxc__metadata_t mine;
    decode_as(texts[0], &f[0].md, 2, &mine);

    thread_job_t job;
    memset(&job, 0, sizeof job);
    for (int i = 0; i < NPEERS; i++)
        job.texts[i] = texts[i];
    job.to_free = &mine;
    pthread_t th;
    NXT_EQ_INT(pthread_create(&th, NULL, decode_on_thread, &job), 0);
    NXT_EQ_INT(pthread_join(th, NULL), 0);
    for (int k = 0; k < 2 + NPEERS; k++)
        NXT_PASS(job.st[k]);
    NXT_CHECK(mine.peer_ == NULL && mine.blob_ == NULL); /* freed there */

    NXT_CHECK(job.out[0].peer_ == job.out[1].peer_); /* shared on that thread */
    nxt_md_check_same(&f[0].md, &job.out[0]);
    nxc__md_free(&job.out[0]);
    nxt_md_check_same(&f[0].md, &job.out[1]);
    NXT_EQ_INT(job.out[1].sections[0].conn.data[0], 0);
    NXT_EQ_STR(job.out[1].name, "peer-0");
    nxc__md_free(&job.out[1]);

    /* the main thread's cache (whose peer part the thread released once) */
    nxc__metadata_t again;
    decode_as(texts[0], &f[0].md, 2, &again);
    nxc__md_free(&again);
    peers_free(f, texts);
}

/* (d) A malformed op part after a valid, cached peer part fails, leaves
 * nothing held, and the next valid text with that peer part decodes. */
static void test_cache_bad_op_then_good(void) {
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 2, 2, NXC__MD_KIND_READ);
    char *text = encode_v(&f.md, 2, NULL), *p64, *o64;
    split_parts(text, &p64, &o64);
    size_t on;
    bool oz;
    uint8_t *o = part_bytes(o64, &on, &oz);
    NXT_CHECK(!oz);

    /* bad op parts: version 3, flags, trailing byte, kind, key beyond end */
    char *bad[5];
    nxc_status_t want[5] = {NXC_ERR_METADATA_VERSION, NXC_ERR_METADATA_MALFORMED,
                            NXC_ERR_METADATA_MALFORMED, NXC_ERR_METADATA_MALFORMED,
                            NXC_ERR_METADATA_MALFORMED};
    for (int i = 0; i < 5; i++) {
        nxt_bb_t b = {0};
        nxt_bb_bytes(&b, o, on);
        if (i == 0) b.p[4] = 3;
        if (i == 1) b.p[6] = 1;
        if (i == 2) nxt_bb_u8(&b, 0), part_finish(&b);
        if (i == 3) b.p[12] = 2;
        if (i == 4) b.p[on - 1 - f.md.sections[1].keys[1].len] = 0xff; /* last key's length */
        char *b64 = part_b64(&b, i % 2 ? 6 : -1);
        char *nixl = join_nixl(p64, b64);
        bad[i] = with_nixl(text, nixl);
        free(nixl);
        free(b64);
        bb_free(&b);
    }
    /* a JSON that no longer agrees with the op part: one descriptor less */
    json_t *root = json_loads(text, 0, NULL);
    json_array_remove(json_object_get(root, "descriptors"), 1);
    char *fewer = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);

    nxc__metadata_t held;
    decode_as(text, &f.md, 2, &held); /* the peer part is now cached */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5; i++) {
            NXT_FAIL(dec_str(bad[i]), want[i]);
            nxc__metadata_t out;
            decode_as(text, &f.md, 2, &out);
            NXT_CHECK(out.peer_ == held.peer_);
            nxc__md_free(&out);
        }
        NXT_FAIL(dec_str(fewer), NXC_ERR_METADATA_MALFORMED);
        NXT_CHECK(strstr(nxc_last_error(), "ndesc"));
    }
    nxc__md_free(&held);
    /* and when the failing text is the first to bring the peer part */
    char p2[] = "peer-2";
    memcpy(f.md.name, p2, sizeof p2);
    char *text2 = encode_v(&f.md, 2, NULL), *p64b, *o64b;
    split_parts(text2, &p64b, &o64b);
    char *nixl = join_nixl(p64b, "TlhDTwMA"); /* "NXCO\x03\x00" */
    char *bad2 = with_nixl(text2, nixl);
    NXT_FAIL(dec_str(bad2), NXC_ERR_METADATA_VERSION);
    nxc__metadata_t out;
    decode_as(text2, &f.md, 2, &out);
    nxc__md_free(&out);
    free(bad2);
    free(nixl);
    free(p64b);
    free(o64b);
    free(text2);

    for (int i = 0; i < 5; i++)
        free(bad[i]);
    free(fewer);
    free(o);
    free(p64);
    free(o64);
    free(text);
    nxt_mdfix_free(&f);
}

/* One change to a peer part's field (undone by calling it with undo set). */
typedef void (*mutate_fn)(nxt_mdfix_t *f, bool undo);
static void mut_conn_in_place(nxt_mdfix_t *f, bool undo) {
    (void)undo;
    f->storage[2] ^= 0x5a; /* same pointer, same length, other bytes */
}
static void mut_conn_len(nxt_mdfix_t *f, bool undo) {
    f->md.sections[1].conn.len += undo ? -1u : 1u;
}
static void mut_name(nxt_mdfix_t *f, bool undo) {
    f->md.name[0] = undo ? 'w' : 'W';
}
static void mut_host(nxt_mdfix_t *f, bool undo) {
    f->md.host[0] = undo ? 'h' : 'H';
}
static void mut_pid(nxt_mdfix_t *f, bool undo) {
    f->md.pid += undo ? -1u : 1u;
}
static void mut_start(nxt_mdfix_t *f, bool undo) {
    f->md.start_time ^= 1ull << 40;
}
static void mut_instance(nxt_mdfix_t *f, bool undo) {
    f->md.instance[15] ^= 0x01;
}
static void mut_section_name(nxt_mdfix_t *f, bool undo) {
    f->md.sections[1].name[0] = undo ? 't' : 'x';
}
static void mut_nsections(nxt_mdfix_t *f, bool undo) {
    f->md.nsections = undo ? 2 : 1;
}

/* (e) The writer's memo of the peer part it wrote last: encoding metadata
 * whose peer parts differ, in turn on one thread, gives texts that each
 * decode to their own values; encoding the first again gives its text. */
static void test_writer_memo(void) {
    const mutate_fn muts[] = {mut_conn_in_place, mut_conn_len,     mut_name,
                              mut_host,          mut_pid,          mut_start,
                              mut_instance,      mut_section_name, mut_nsections};
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 3, 2, NXC__MD_KIND_WRITE);
    nxt_mdfix_t orig;
    nxt_mdfix_init(&orig, 3, 2, NXC__MD_KIND_WRITE); /* the same values, for comparing */
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        char *ta = encode_v(&f.md, 2, NULL);
        muts[i](&f, false);
        char *tb = encode_v(&f.md, 2, NULL);
        NXT_CHECK(strcmp(ta, tb) != 0);
        nxc__metadata_t out;
        decode_as(tb, &f.md, 2, &out); /* its own values, not the memo's */
        nxc__md_free(&out);
        muts[i](&f, true);
        NXT_CHECK(!memcmp(f.storage, orig.storage, NXT_MDFIX_STORAGE));
        decode_as(ta, &orig.md, 2, &out);
        nxc__md_free(&out);
        char *ta2 = encode_v(&f.md, 2, NULL);
        NXT_EQ_STR(ta2, ta);
        /* a version 1 text in between leaves the memo alone */
        char *t1 = encode_v(&f.md, 1, NULL);
        muts[i](&f, false);
        char *tb2 = encode_v(&f.md, 2, NULL);
        NXT_EQ_STR(tb2, tb);
        muts[i](&f, true);
        free(t1);
        free(tb2);
        free(ta2);
        free(ta);
        free(tb);
    }
    nxt_mdfix_free(&orig);
    nxt_mdfix_free(&f);
}

/* ------------------------------------------------------------------------ */
/* 5. Version 1 and version 2 of one metadata                                */
/* ------------------------------------------------------------------------ */

static void same_in_both(const nxc__metadata_t *md) {
    char *t1 = encode_v(md, 1, NULL), *t2 = encode_v(md, 2, NULL);
    nxc__metadata_t o1, o2;
    decode_as(t1, md, 1, &o1);
    decode_as(t2, md, 2, &o2);
    nxt_md_check_same(&o1, &o2);
    nxt_md_check_same(&o2, &o1);
    nxc__md_free(&o1);
    nxc__md_free(&o2);
    free(t1);
    free(t2);
}

static void test_v1_v2_same(void) {
    const size_t shapes[][2] = {{1, 1}, {3, 0}, {3, NXC__MD_MAX_SECTIONS}, {1000, 2}};
    for (size_t i = 0; i < 4; i++)
        for (int kind = NXC__MD_KIND_READ; kind <= NXC__MD_KIND_WRITE; kind++) {
            nxt_mdfix_t f;
            nxt_mdfix_init(&f, shapes[i][0], shapes[i][1], kind);
            for (size_t j = 0; j < f.md.ndesc; j += 3)
                f.md.descs[j].device = (nxc_device_t){NXC_DEVICE_CUDA, (int)(j % 8)};
            same_in_both(&f.md);
            nxt_mdfix_free(&f);
        }
    /* empty keys and conns; the longest texts, names and key */
    nxt_mdfix_t f;
    nxt_mdfix_init(&f, 4, NXC__MD_MAX_SECTIONS, NXC__MD_KIND_READ);
    f.md.sections[1].keys = NULL;
    f.md.sections[2].conn = (nxc__bytes_t){NULL, 0};
    nxt_mdfix_longest(&f);
    f.md.sections[3].keys[1] = (nxc__bytes_t){f.storage, UINT16_MAX};
    f.md.sections[4].conn = (nxc__bytes_t){f.storage, 64 * 1024};
    same_in_both(&f.md);
    nxt_mdfix_free(&f);
}

static const nxt_test_t nxt_tests[] = {
    {"roundtrip_shapes", test_roundtrip_shapes, 0},
    {"roundtrip_1000_descs_zlib_op", test_roundtrip_1000_descs_zlib_op, 0},
    {"roundtrip_big_peer", test_roundtrip_big_peer, 0},
    {"handbuilt_valid", test_handbuilt_valid, 0},
    {"handbuilt_limits", test_handbuilt_limits, 0},
    {"encoder_layout", test_encoder_layout, 0},
    {"bad_framing", test_bad_framing, 0},
    {"bad_zlib_part", test_bad_zlib_part, 0},
    {"part_too_large", test_part_too_large, 0},
    {"bad_peer_header", test_bad_peer_header, 0},
    {"bad_peer_fields", test_bad_peer_fields, 0},
    {"truncated_parts", test_truncated_parts, 0},
    {"bad_op_header", test_bad_op_header, 0},
    {"op_check_order", test_op_check_order, 0},
    {"bad_op_fields", test_bad_op_fields, 0},
    {"op_key_table_check", test_op_key_table_check, 0},
    {"cache_eviction_keeps_held", test_cache_eviction_keeps_held, 0},
    {"cache_shares_peer", test_cache_shares_peer, 0},
    {"cache_one_byte_apart", test_cache_one_byte_apart, 0},
    {"cache_thread_exit", test_cache_thread_exit, 0},
    {"cache_bad_op_then_good", test_cache_bad_op_then_good, 0},
    {"writer_memo", test_writer_memo, 0},
    {"v1_v2_same", test_v1_v2_same, 0},
};

NXT_MAIN(nxt_tests)
