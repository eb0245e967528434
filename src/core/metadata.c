/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metadata codec: the JSON text a passive op hands out and the versioned
 * binary blob inside it. The format is specified in docs/metadata.md.
 *
 * Decoding treats its input as hostile. The text is bounded by
 * NXC_METADATA_MAX before parsing, the inflated blob by NXC_METADATA_MAX while
 * inflating, every length in the blob is checked against the bytes left
 * before it is used, and the only allocation sized by a count from the input
 * (the keys table) happens after that count was checked against the bytes
 * actually present.
 */
#include "core/metadata.h"

#include "core/metadata_json.h"
#include "core/metadata_wrap.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/text.h"

#define HEADER_LEN 60 /* fixed part of the blob, up to and including start_time */

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* sodium_init() once: each call takes libsodium's global lock, a cost on
 * every encode and decode when it was called each time. */
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status;

static void init_sodium(void) {
    sodium_status = sodium_init();
}

static nxc_status_t lib_init(void) {
    pthread_once(&sodium_once, init_sodium);
    if (sodium_status < 0)
        return nxc__err(NXC_ERR_SYSTEM, "metadata: libsodium failed to initialize");
    return NXC_OK;
}

static bool transport_name_ok(const char *s, size_t n) {
    if (n < 1 || n > NXC__TRANSPORT_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

static uint16_t get_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_le64(const uint8_t *p) {
    return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

static uint8_t *put_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static uint8_t *put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const void *data, size_t n) {
    if (n) memcpy(p, data, n);
    return p + n;
}

/* ------------------------------------------------------------------------ */
/* Encoder                                                                   */
/* ------------------------------------------------------------------------ */

/* Check a NUL-terminated text stored in a char[max + 1] field: 1..max
 * printable ASCII bytes. */
static nxc_status_t check_text_field(const char *what, const char *s, size_t max, size_t *len_p) {
    const char *nul = memchr(s, '\0', max + 1);
    size_t n = nul ? (size_t)(nul - s) : max + 1;
    if (n == 0) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: %s is empty", what);
    if (n > max)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: %s is longer than %zu bytes or not NUL-terminated", what,
                        max);
    if (!nxc__printable(s, n))
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: %s holds a byte that is not printable ASCII", what);
    *len_p = n;
    return NXC_OK;
}

/* Validate what the encoder cannot represent and compute the blob length. */
static nxc_status_t encode_check(const nxc__metadata_t *md, size_t *name_len, size_t *host_len,
                                 size_t *key_len, size_t *blob_len_p) {
    nxc_status_t st;
    if (md->operation_kind != NXC__MD_KIND_READ && md->operation_kind != NXC__MD_KIND_WRITE)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: operation_kind is %d; expected 1 (read) or 2 (write)",
                        md->operation_kind);
    if ((st = check_text_field("notification_key", md->notification_key, NXC_KEY_MAX, key_len)))
        return st;
    if ((st = check_text_field("name", md->name, NXC_NAME_MAX, name_len))) return st;
    if ((st = check_text_field("host", md->host, NXC__HOST_MAX, host_len))) return st;
    if (md->ndesc == 0 || md->ndesc > NXC__MD_MAX_DESCS)
        return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: %zu descriptors; expected 1..%d",
                        md->ndesc, NXC__MD_MAX_DESCS);
    if (!md->descs) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: descs is NULL");
    for (size_t i = 0; i < md->ndesc; i++) {
        const nxc__rdesc_t *d = &md->descs[i];
        if (d->addr == 0 || d->addr > (uint64_t)INT64_MAX)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: descriptor %zu: ptr %llu is not in 1..2^63-1", i,
                            (unsigned long long)d->addr);
        if (d->size == 0 || d->size > (uint64_t)INT64_MAX)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: descriptor %zu: size %llu is not in 1..2^63-1", i,
                            (unsigned long long)d->size);
        if (d->addr + d->size < d->addr)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: descriptor %zu: ptr + size overflows", i);
    }
    if (md->nsections > NXC__MD_MAX_SECTIONS)
        return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: %zu sections; at most %d",
                        md->nsections, NXC__MD_MAX_SECTIONS);

    uint64_t total = HEADER_LEN + 2 + *name_len + 2 + *host_len + 2 + *key_len + 4 + 1;
    for (size_t s = 0; s < md->nsections; s++) {
        const nxc__md_section_t *sec = &md->sections[s];
        const char *nul = memchr(sec->name, '\0', NXC__TRANSPORT_NAME_MAX + 1);
        size_t n = nul ? (size_t)(nul - sec->name) : NXC__TRANSPORT_NAME_MAX + 1;
        if (!transport_name_ok(sec->name, n))
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: section %zu: name must be 1..%d bytes of [a-z0-9_]",
                            s, NXC__TRANSPORT_NAME_MAX);
        for (size_t t = 0; t < s; t++)
            if (!strcmp(md->sections[t].name, sec->name))
                return nxc__err(NXC_ERR_INVALID_PARAM,
                                "metadata encode: sections %zu and %zu are both named \"%s\"", t, s,
                                sec->name);
        if (sec->conn.len && !sec->conn.data)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: section \"%s\": conn is NULL with length %u",
                            sec->name, (unsigned)sec->conn.len);
        total += 1 + n + 4 + (uint64_t)sec->conn.len;
        for (size_t j = 0; j < md->ndesc; j++) {
            const nxc__bytes_t *k = sec->keys ? &sec->keys[j] : NULL;
            uint32_t klen = k ? k->len : 0;
            if (klen > UINT16_MAX)
                return nxc__err(NXC_ERR_INVALID_PARAM,
                                "metadata encode: section \"%s\": key %zu is %u bytes; at most "
                                "%u",
                                sec->name, j, (unsigned)klen, (unsigned)UINT16_MAX);
            if (klen && !k->data)
                return nxc__err(NXC_ERR_INVALID_PARAM,
                                "metadata encode: section \"%s\": key %zu is NULL with length %u",
                                sec->name, j, (unsigned)klen);
            total += 2 + (uint64_t)klen;
        }
    }
    if (total > NXC_METADATA_MAX)
        return nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                        "metadata encode: the blob would be %llu bytes; at most %u",
                        (unsigned long long)total, (unsigned)NXC_METADATA_MAX);
    *blob_len_p = (size_t)total;
    return NXC_OK;
}

static void write_blob(const nxc__metadata_t *md, uint8_t *b, size_t blob_len, size_t name_len,
                       size_t host_len, size_t key_len) {
    uint8_t *p = b;
    p = put_bytes(p, NXC__BLOB_MAGIC, 4);
    p = put_le16(p, NXC__BLOB_VERSION);
    p = put_le16(p, 0); /* flags */
    p = put_le32(p, (uint32_t)blob_len);
    *p++ = (uint8_t)md->operation_kind;
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;
    p = put_bytes(p, md->instance, NXC__INSTANCE_LEN);
    p = put_bytes(p, md->secret, NXC__SECRET_LEN);
    p = put_le32(p, md->pid);
    p = put_le64(p, md->start_time);
    p = put_le16(p, (uint16_t)name_len);
    p = put_bytes(p, md->name, name_len);
    p = put_le16(p, (uint16_t)host_len);
    p = put_bytes(p, md->host, host_len);
    p = put_le16(p, (uint16_t)key_len);
    p = put_bytes(p, md->notification_key, key_len);
    p = put_le32(p, (uint32_t)md->ndesc);
    *p++ = (uint8_t)md->nsections;
    for (size_t s = 0; s < md->nsections; s++) {
        const nxc__md_section_t *sec = &md->sections[s];
        size_t n = strlen(sec->name);
        *p++ = (uint8_t)n;
        p = put_bytes(p, sec->name, n);
        p = put_le32(p, sec->conn.len);
        p = put_bytes(p, sec->conn.data, sec->conn.len);
        for (size_t j = 0; j < md->ndesc; j++) {
            uint32_t klen = sec->keys ? sec->keys[j].len : 0;
            p = put_le16(p, (uint16_t)klen);
            if (klen) p = put_bytes(p, sec->keys[j].data, klen);
        }
    }
}

nxc_status_t nxc__md_encode(const nxc__metadata_t *md, char **text_p, size_t *len_p) {
    if (!md || !text_p) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: NULL argument");
    nxc_status_t st = lib_init();
    if (st) return st;

    size_t name_len = 0, host_len = 0, key_len = 0, blob_len = 0;
    if ((st = encode_check(md, &name_len, &host_len, &key_len, &blob_len))) return st;

    uint8_t *blob = malloc(blob_len);
    if (!blob) return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    write_blob(md, blob, blob_len, name_len, host_len, key_len);
    char *nixl = NULL;
    st = nxc__md_pack(blob, blob_len, &nixl);
    free(blob);
    if (st) return st;

    st = nxc__md_json_encode(md, nixl, strlen(nixl), text_p, len_p);
    free(nixl);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Decoder: blob level                                                       */
/* ------------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t len;
    size_t off;
} reader_t;

static size_t rd_left(const reader_t *r) {
    return r->len - r->off;
}

static nxc_status_t rd_short(const reader_t *r, const char *what, size_t need) {
    return nxc__err(NXC_ERR_METADATA_MALFORMED,
                    "metadata: blob truncated: %s needs %zu bytes at offset %zu, %zu left", what,
                    need, r->off, rd_left(r));
}

static nxc_status_t rd_need(const reader_t *r, size_t n, const char *what) {
    return rd_left(r) < n ? rd_short(r, what, n) : NXC_OK;
}

/* A str16 text field: 1..max printable ASCII bytes, copied NUL-terminated. */
static nxc_status_t rd_text16(reader_t *r, const char *what, size_t max, char *dst) {
    nxc_status_t st = rd_need(r, 2, what);
    if (st) return st;
    size_t n = get_le16(r->p + r->off);
    r->off += 2;
    if (n < 1 || n > max)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob %s length is %zu; expected 1..%zu", what, n, max);
    if ((st = rd_need(r, n, what))) return st;
    if (!nxc__printable((const char *)r->p + r->off, n))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob %s holds a byte that is not printable ASCII", what);
    memcpy(dst, r->p + r->off, n);
    dst[n] = '\0';
    r->off += n;
    return NXC_OK;
}

/* The fixed header: magic, version, flags, total length, kind, identity. */
static nxc_status_t decode_header(nxc__metadata_t *m, reader_t *r) {
    const uint8_t *p = r->p;
    nxc_status_t st;
    if (r->len < 4 || memcmp(p, NXC__BLOB_MAGIC, 4))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: not nxc metadata (the blob does not start with \"%s\")",
                        NXC__BLOB_MAGIC);
    r->off = 4;
    if ((st = rd_need(r, 2, "version"))) return st;
    unsigned version = get_le16(p + 4);
    if (version > NXC__BLOB_VERSION)
        return nxc__err(NXC_ERR_METADATA_VERSION,
                        "metadata: metadata format version %u is not supported (this library "
                        "reads version %d)",
                        version, NXC__BLOB_VERSION);
    if (version == 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: blob version 0 is invalid");
    m->version = (uint16_t)version;
    r->off = 6;
    if ((st = rd_need(r, HEADER_LEN - 6, "header"))) return st;
    unsigned flags = get_le16(p + 6);
    if (flags != 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob flags are 0x%04x; version 1 requires 0", flags);
    uint32_t total = get_le32(p + 8);
    if (total != r->len)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob total_len is %u but %zu bytes were inflated",
                        (unsigned)total, r->len);
    if (p[12] != (unsigned)m->operation_kind)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob operation_kind %u differs from the JSON operation_kind "
                        "%d",
                        (unsigned)p[12], m->operation_kind);
    if (p[13] || p[14] || p[15])
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: blob reserved bytes are not zero");
    memcpy(m->instance, p + 16, NXC__INSTANCE_LEN);
    memcpy(m->secret, p + 32, NXC__SECRET_LEN);
    m->pid = get_le32(p + 48);
    m->start_time = get_le64(p + 52);
    r->off = HEADER_LEN;
    return NXC_OK;
}

/* name, host and the notification key (which must be the JSON's). */
static nxc_status_t decode_texts(nxc__metadata_t *m, reader_t *r) {
    nxc_status_t st;
    if ((st = rd_text16(r, "name", NXC_NAME_MAX, m->name))) return st;
    if ((st = rd_text16(r, "host", NXC__HOST_MAX, m->host))) return st;
    char key[NXC_KEY_MAX + 1];
    if ((st = rd_text16(r, "notification_key", NXC_KEY_MAX, key))) return st;
    if (strcmp(key, m->notification_key))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob notification_key \"%s\" differs from the JSON "
                        "notification_key \"%s\"",
                        key, m->notification_key);
    return NXC_OK;
}

/* One length-prefixed span of section `name`: its conn (key == SIZE_MAX,
 * a u32 length) or its key number `key` (a u16 length), then the bytes. */
static nxc_status_t rd_span(reader_t *r, const char *name, size_t key, nxc__bytes_t *out) {
    bool conn = key == SIZE_MAX;
    size_t width = conn ? 4 : 2;
    nxc_status_t st = rd_need(r, width, conn ? "section conn length" : "key length");
    if (st) return st;
    uint32_t len = conn ? get_le32(r->p + r->off) : get_le16(r->p + r->off);
    r->off += width;
    if (rd_left(r) < len) {
        char what[32] = "conn";
        if (!conn) snprintf(what, sizeof what, "key %zu", key);
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob section \"%s\": %s length %u exceeds the %zu bytes left",
                        name, what, (unsigned)len, rd_left(r));
    }
    *out = (nxc__bytes_t){r->p + r->off, len};
    r->off += len;
    return NXC_OK;
}

/* Section s: its name (unique), conn and one key per descriptor. */
static nxc_status_t decode_section(nxc__metadata_t *m, reader_t *r, size_t s) {
    const uint8_t *p = r->p;
    nxc__md_section_t *sec = &m->sections[s];
    nxc_status_t st;
    if ((st = rd_need(r, 1, "section name length"))) return st;
    size_t n = p[r->off++];
    if ((st = rd_need(r, n, "section name"))) return st;
    if (!transport_name_ok((const char *)p + r->off, n))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob section %zu: name must be 1..%d bytes of [a-z0-9_]", s,
                        NXC__TRANSPORT_NAME_MAX);
    memcpy(sec->name, p + r->off, n);
    sec->name[n] = '\0';
    r->off += n;
    for (size_t t = 0; t < s; t++)
        if (!strcmp(m->sections[t].name, sec->name))
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "metadata: blob sections %zu and %zu are both named \"%s\"", t, s,
                            sec->name);
    if ((st = rd_span(r, sec->name, SIZE_MAX, &sec->conn))) return st;
    sec->keys = m->keys_ + s * m->ndesc;
    for (size_t j = 0; j < m->ndesc; j++)
        if ((st = rd_span(r, sec->name, j, &sec->keys[j]))) return st;
    m->nsections = s + 1;
    return NXC_OK;
}

/* The descriptor and section counts, then every section. */
static nxc_status_t decode_sections(nxc__metadata_t *m, reader_t *r) {
    const uint8_t *p = r->p;
    nxc_status_t st;
    if ((st = rd_need(r, 5, "ndesc and nsections"))) return st;
    uint32_t ndesc = get_le32(p + r->off);
    if (ndesc != m->ndesc)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob ndesc is %u but the JSON has %zu descriptors",
                        (unsigned)ndesc, m->ndesc);
    size_t nsec = p[r->off + 4];
    r->off += 5;
    if (nsec > NXC__MD_MAX_SECTIONS)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: blob has %zu sections; at most %d",
                        nsec, NXC__MD_MAX_SECTIONS);
    if (nsec) {
        /* Each section takes at least 6 bytes (name length, one name byte,
         * conn length) plus 2 per key: check before allocating the keys. */
        uint64_t min = (uint64_t)nsec * (6 + 2 * (uint64_t)ndesc);
        if (rd_left(r) < min)
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "metadata: blob truncated: %zu sections of %u keys need at least "
                            "%llu bytes, %zu left",
                            nsec, (unsigned)ndesc, (unsigned long long)min, rd_left(r));
        m->keys_ = calloc(nsec * ndesc, sizeof *m->keys_);
        if (!m->keys_) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    }
    for (size_t s = 0; s < nsec; s++)
        if ((st = decode_section(m, r, s))) return st;
    return NXC_OK;
}

static nxc_status_t decode_blob(nxc__metadata_t *m) {
    reader_t r = {m->blob_, m->blob_len_, 0};
    nxc_status_t st;
    if ((st = decode_header(m, &r)) || (st = decode_texts(m, &r)) || (st = decode_sections(m, &r)))
        return st;
    if (r.off != r.len)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob has %zu trailing bytes after the last section",
                        r.len - r.off);
    return NXC_OK;
}

/* ------------------------------------------------------------------------ */
/* Decoder: entry point                                                      */
/* ------------------------------------------------------------------------ */

/* The JSON fields, then the blob inside nixl_metadata. */
static nxc_status_t decode_text(const char *text, size_t len, nxc__metadata_t *m) {
    char *nixl = NULL;
    size_t nixl_len = 0;
    uint8_t *z = NULL;
    size_t zlen = 0;
    nxc_status_t st = nxc__md_json_decode(text, len, m, &nixl, &nixl_len);
    if (st) return st;
    st = nxc__md_unwrap(nixl, nixl_len, &z, &zlen);
    free(nixl);
    if (st) return st;
    st = nxc__md_inflate(z, zlen, &m->blob_, &m->blob_len_);
    free(z);
    return st;
}

nxc_status_t nxc__md_decode(const char *text, size_t len, nxc__metadata_t *md) {
    if (!md) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata: NULL argument");
    memset(md, 0, sizeof *md);
    if (!text) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata: NULL text");
    if (len > NXC_METADATA_MAX)
        return nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                        "metadata: the text is %zu bytes; at most %u are accepted", len,
                        (unsigned)NXC_METADATA_MAX);
    nxc_status_t st = lib_init();
    if (st) return st;

    if ((st = decode_text(text, len, md)) || (st = decode_blob(md)))
        nxc__md_free(md); /* and zeroed, as on entry */
    return st;
}

void nxc__md_free(nxc__metadata_t *md) {
    if (!md) return;
    free(md->descs);
    free(md->blob_);
    free(md->keys_);
    memset(md, 0, sizeof *md);
}

const nxc__md_section_t *nxc__md_section(const nxc__metadata_t *md, const char *name) {
    if (!md || !name) return NULL;
    for (size_t i = 0; i < md->nsections && i < NXC__MD_MAX_SECTIONS; i++)
        if (!strcmp(md->sections[i].name, name)) return &md->sections[i];
    return NULL;
}
