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

#include "core/metadata_blob.h"
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

nxc_status_t nxc__md_lib_init(void) {
    pthread_once(&sodium_once, init_sodium);
    if (sodium_status < 0)
        return nxc__err(NXC_ERR_SYSTEM, "metadata: libsodium failed to initialize");
    return NXC_OK;
}

bool nxc__transport_name_ok(const char *s, size_t n) {
    if (n < 1 || n > NXC__TRANSPORT_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
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

static nxc_status_t check_descs(const nxc__metadata_t *md) {
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
    return NXC_OK;
}

/* Section s: a valid, unique name, its conn and its keys; their lengths
 * added to `lens`. */
static nxc_status_t check_section(const nxc__metadata_t *md, size_t s, nxc__md_lens_t *lens) {
    const nxc__md_section_t *sec = &md->sections[s];
    const char *nul = memchr(sec->name, '\0', NXC__TRANSPORT_NAME_MAX + 1);
    size_t n = nul ? (size_t)(nul - sec->name) : NXC__TRANSPORT_NAME_MAX + 1;
    if (!nxc__transport_name_ok(sec->name, n))
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: section %zu: name must be 1..%d bytes of [a-z0-9_]", s,
                        NXC__TRANSPORT_NAME_MAX);
    for (size_t t = 0; t < s; t++)
        if (!strcmp(md->sections[t].name, sec->name))
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: sections %zu and %zu are both named \"%s\"", t, s,
                            sec->name);
    if (sec->conn.len && !sec->conn.data)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: section \"%s\": conn is NULL with length %u", sec->name,
                        (unsigned)sec->conn.len);
    lens->section_name[s] = n;
    lens->conns += 1 + n + 4 + (uint64_t)sec->conn.len;
    for (size_t j = 0; j < md->ndesc; j++) {
        const nxc__bytes_t *k = sec->keys ? &sec->keys[j] : NULL;
        uint32_t klen = k ? k->len : 0;
        if (klen > UINT16_MAX)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: section \"%s\": key %zu is %u bytes; at most %u",
                            sec->name, j, (unsigned)klen, (unsigned)UINT16_MAX);
        if (klen && !k->data)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: section \"%s\": key %zu is NULL with length %u",
                            sec->name, j, (unsigned)klen);
        lens->keys += 2 + (uint64_t)klen;
    }
    return NXC_OK;
}

nxc_status_t nxc__md_check(const nxc__metadata_t *md, nxc__md_lens_t *lens) {
    nxc_status_t st;
    memset(lens, 0, sizeof *lens);
    if (md->operation_kind != NXC__MD_KIND_READ && md->operation_kind != NXC__MD_KIND_WRITE)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: operation_kind is %d; expected 1 (read) or 2 (write)",
                        md->operation_kind);
    if ((st =
             check_text_field("notification_key", md->notification_key, NXC_KEY_MAX, &lens->key)) ||
        (st = check_text_field("name", md->name, NXC_NAME_MAX, &lens->name)) ||
        (st = check_text_field("host", md->host, NXC__HOST_MAX, &lens->host)) ||
        (st = check_descs(md)))
        return st;
    if (md->nsections > NXC__MD_MAX_SECTIONS)
        return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: %zu sections; at most %d",
                        md->nsections, NXC__MD_MAX_SECTIONS);
    for (size_t s = 0; s < md->nsections; s++)
        if ((st = check_section(md, s, lens))) return st;
    return NXC_OK;
}

static void write_blob(const nxc__metadata_t *md, const nxc__md_lens_t *lens, uint8_t *b,
                       size_t blob_len) {
    uint8_t *p = b;
    p = nxc__put_bytes(p, NXC__BLOB_MAGIC, 4);
    p = nxc__put_le16(p, 1);
    p = nxc__put_le16(p, 0); /* flags */
    p = nxc__put_le32(p, (uint32_t)blob_len);
    *p++ = (uint8_t)md->operation_kind;
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;
    p = nxc__put_bytes(p, md->instance, NXC__INSTANCE_LEN);
    p = nxc__put_bytes(p, md->secret, NXC__SECRET_LEN);
    p = nxc__put_le32(p, md->pid);
    p = nxc__put_le64(p, md->start_time);
    p = nxc__put_str16(p, md->name, lens->name);
    p = nxc__put_str16(p, md->host, lens->host);
    p = nxc__put_str16(p, md->notification_key, lens->key);
    p = nxc__put_le32(p, (uint32_t)md->ndesc);
    *p++ = (uint8_t)md->nsections;
    for (size_t s = 0; s < md->nsections; s++) {
        const nxc__md_section_t *sec = &md->sections[s];
        p = nxc__put_section(p, sec, lens->section_name[s]);
        for (size_t j = 0; j < md->ndesc; j++) {
            uint32_t klen = sec->keys ? sec->keys[j].len : 0;
            p = nxc__put_le16(p, (uint16_t)klen);
            if (klen) p = nxc__put_bytes(p, sec->keys[j].data, klen);
        }
    }
}

/* The version 1 nixl_metadata string: "b64:" base64(zlib(blob)). */
static nxc_status_t pack_v1(const nxc__metadata_t *md, const nxc__md_lens_t *lens, char **nixl_p,
                            size_t *len_p) {
    uint64_t total = HEADER_LEN + 2 + lens->name + 2 + lens->host + 2 + lens->key + 4 + 1 +
                     lens->conns + lens->keys;
    if (total > NXC_METADATA_MAX)
        return nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                        "metadata encode: the blob would be %llu bytes; at most %u",
                        (unsigned long long)total, (unsigned)NXC_METADATA_MAX);
    uint8_t *blob = malloc(total);
    if (!blob) return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    write_blob(md, lens, blob, (size_t)total);
    nxc_status_t st = nxc__md_pack(blob, (size_t)total, nixl_p);
    free(blob);
    if (st == NXC_OK) *len_p = strlen(*nixl_p);
    return st;
}

nxc_status_t nxc__md_encode(const nxc__metadata_t *md, char **text_p, size_t *len_p) {
    if (!md || !text_p) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata encode: NULL argument");
    nxc_status_t st = nxc__md_lib_init();
    if (st) return st;
    if (md->version != 0 && md->version != 1 && md->version != 2)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "metadata encode: version %u; this library writes 1 and 2",
                        (unsigned)md->version);
    nxc__md_lens_t lens;
    if ((st = nxc__md_check(md, &lens))) return st;
    char *nixl = NULL;
    size_t nixl_len = 0;
    st = md->version == 2 ? nxc__md_v2_pack(md, &lens, &nixl, &nixl_len)
                          : pack_v1(md, &lens, &nixl, &nixl_len);
    if (st) return st;
    st = nxc__md_json_encode(md, nixl, nixl_len, text_p, len_p);
    free(nixl);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Decoder: blob level                                                       */
/* ------------------------------------------------------------------------ */

nxc_status_t nxc__rd_need(const nxc__reader_t *r, size_t n, const char *field) {
    if (nxc__rd_left(r) >= n) return NXC_OK;
    return nxc__err(NXC_ERR_METADATA_MALFORMED,
                    "metadata: %s truncated: %s needs %zu bytes at offset %zu, %zu left", r->what,
                    field, n, r->off, nxc__rd_left(r));
}

nxc_status_t nxc__rd_text16(nxc__reader_t *r, const char *field, size_t max, char *dst) {
    nxc_status_t st = nxc__rd_need(r, 2, field);
    if (st) return st;
    size_t n = nxc__get_le16(r->p + r->off);
    r->off += 2;
    if (n < 1 || n > max)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s %s length is %zu; expected 1..%zu", r->what, field, n, max);
    if ((st = nxc__rd_need(r, n, field))) return st;
    if (!nxc__printable((const char *)r->p + r->off, n))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s %s holds a byte that is not printable ASCII", r->what, field);
    memcpy(dst, r->p + r->off, n);
    dst[n] = '\0';
    r->off += n;
    return NXC_OK;
}

nxc_status_t nxc__rd_span(nxc__reader_t *r, const char *name, size_t key, nxc__bytes_t *out) {
    bool conn = key == SIZE_MAX;
    size_t width = conn ? 4 : 2;
    nxc_status_t st = nxc__rd_need(r, width, conn ? "section conn length" : "key length");
    if (st) return st;
    uint32_t len = conn ? nxc__get_le32(r->p + r->off) : nxc__get_le16(r->p + r->off);
    r->off += width;
    if (nxc__rd_left(r) < len) {
        char what[32] = "conn";
        if (!conn) snprintf(what, sizeof what, "key %zu", key);
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s section \"%s\": %s length %u exceeds the %zu bytes left",
                        r->what, name, what, (unsigned)len, nxc__rd_left(r));
    }
    *out = (nxc__bytes_t){r->p + r->off, len};
    r->off += len;
    return NXC_OK;
}

nxc_status_t nxc__rd_section_name(nxc__reader_t *r, size_t s, nxc__md_section_t *secs) {
    nxc__md_section_t *sec = &secs[s];
    nxc_status_t st;
    if ((st = nxc__rd_need(r, 1, "section name length"))) return st;
    size_t n = r->p[r->off++];
    if ((st = nxc__rd_need(r, n, "section name"))) return st;
    if (!nxc__transport_name_ok((const char *)r->p + r->off, n))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s section %zu: name must be 1..%d bytes of [a-z0-9_]", r->what,
                        s, NXC__TRANSPORT_NAME_MAX);
    memcpy(sec->name, r->p + r->off, n);
    sec->name[n] = '\0';
    r->off += n;
    for (size_t t = 0; t < s; t++)
        if (!strcmp(secs[t].name, sec->name))
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "metadata: %s sections %zu and %zu are both named \"%s\"", r->what, t,
                            s, sec->name);
    return NXC_OK;
}

nxc_status_t nxc__rd_version(nxc__reader_t *r, const char *magic, unsigned *version) {
    if (r->len < 4 || memcmp(r->p, magic, 4))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: not nxc metadata (the %s does not start with \"%s\")", r->what,
                        magic);
    r->off = 4;
    nxc_status_t st = nxc__rd_need(r, 2, "version");
    if (st) return st;
    *version = nxc__get_le16(r->p + 4);
    if (*version > NXC__BLOB_VERSION)
        return nxc__err(NXC_ERR_METADATA_VERSION,
                        "metadata: metadata format version %u is not supported (this library "
                        "reads versions 1 to %d)",
                        *version, NXC__BLOB_VERSION);
    return NXC_OK;
}

/* The fixed header: magic, version, flags, total length, kind, identity. */
static nxc_status_t decode_header(nxc__metadata_t *m, nxc__reader_t *r) {
    const uint8_t *p = r->p;
    unsigned version;
    nxc_status_t st = nxc__rd_version(r, NXC__BLOB_MAGIC, &version);
    if (st) return st;
    if (version == 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: blob version 0 is invalid");
    if (version != 1)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: a version %u blob in one part; version %u has two, a peer part "
                        "and an op part",
                        version, version);
    m->version = (uint16_t)version;
    r->off = 6;
    if ((st = nxc__rd_need(r, HEADER_LEN - 6, "header"))) return st;
    unsigned flags = nxc__get_le16(p + 6);
    if (flags != 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: blob flags are 0x%04x; version 1 requires 0", flags);
    uint32_t total = nxc__get_le32(p + 8);
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
    m->pid = nxc__get_le32(p + 48);
    m->start_time = nxc__get_le64(p + 52);
    r->off = HEADER_LEN;
    return NXC_OK;
}

nxc_status_t nxc__md_check_key(const nxc__metadata_t *m, nxc__reader_t *r) {
    char key[NXC_KEY_MAX + 1];
    nxc_status_t st = nxc__rd_text16(r, "notification_key", NXC_KEY_MAX, key);
    if (st) return st;
    if (strcmp(key, m->notification_key))
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s notification_key \"%s\" differs from the JSON "
                        "notification_key \"%s\"",
                        r->what, key, m->notification_key);
    return NXC_OK;
}

nxc_status_t nxc__md_keys_table(nxc__metadata_t *m, nxc__reader_t *r, size_t nsec,
                                size_t conn_min) {
    if (nsec == 0) return NXC_OK;
    /* Each section takes at least conn_min bytes besides its keys, and 2
     * per key: check before allocating the keys. */
    uint64_t min = (uint64_t)nsec * (conn_min + 2 * (uint64_t)m->ndesc);
    if (nxc__rd_left(r) < min)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s truncated: %zu sections of %zu keys need at least %llu "
                        "bytes, %zu left",
                        r->what, nsec, m->ndesc, (unsigned long long)min, nxc__rd_left(r));
    /* every entry is written before it is read (nxc__rd_span) */
    m->keys_ = malloc(nsec * m->ndesc * sizeof *m->keys_);
    if (!m->keys_) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    return NXC_OK;
}

nxc_status_t nxc__md_ndesc(const nxc__metadata_t *m, nxc__reader_t *r) {
    nxc_status_t st = nxc__rd_need(r, 4, "ndesc");
    if (st) return st;
    uint32_t ndesc = nxc__get_le32(r->p + r->off);
    r->off += 4;
    if (ndesc != m->ndesc)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s ndesc is %u but the JSON has %zu descriptors", r->what,
                        (unsigned)ndesc, m->ndesc);
    return NXC_OK;
}

/* name, host and the notification key (which must be the JSON's). */
static nxc_status_t decode_texts(nxc__metadata_t *m, nxc__reader_t *r) {
    nxc_status_t st;
    if ((st = nxc__rd_text16(r, "name", NXC_NAME_MAX, m->name))) return st;
    if ((st = nxc__rd_text16(r, "host", NXC__HOST_MAX, m->host))) return st;
    return nxc__md_check_key(m, r);
}

/* Section s: its name (unique), conn and one key per descriptor. */
static nxc_status_t decode_section(nxc__metadata_t *m, nxc__reader_t *r, size_t s) {
    nxc__md_section_t *sec = &m->sections[s];
    nxc_status_t st;
    if ((st = nxc__rd_section_name(r, s, m->sections))) return st;
    if ((st = nxc__rd_span(r, sec->name, SIZE_MAX, &sec->conn))) return st;
    sec->keys = m->keys_ + s * m->ndesc;
    for (size_t j = 0; j < m->ndesc; j++)
        if ((st = nxc__rd_span(r, sec->name, j, &sec->keys[j]))) return st;
    m->nsections = s + 1;
    return NXC_OK;
}

/* The descriptor and section counts, then every section. */
static nxc_status_t decode_sections(nxc__metadata_t *m, nxc__reader_t *r) {
    nxc_status_t st;
    if ((st = nxc__md_ndesc(m, r)) || (st = nxc__rd_need(r, 1, "nsections"))) return st;
    size_t nsec = r->p[r->off++];
    if (nsec > NXC__MD_MAX_SECTIONS)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: blob has %zu sections; at most %d",
                        nsec, NXC__MD_MAX_SECTIONS);
    /* name length, one name byte, conn length */
    if ((st = nxc__md_keys_table(m, r, nsec, 6))) return st;
    for (size_t s = 0; s < nsec; s++)
        if ((st = decode_section(m, r, s))) return st;
    return NXC_OK;
}

static nxc_status_t decode_blob(nxc__metadata_t *m) {
    nxc__reader_t r = {m->blob_, m->blob_len_, 0, "blob"};
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

/* Version 2's nixl_metadata: "b64:", the peer part, '.', the op part. A
 * '.' is in no other form (base64 and hex have none). */
static bool two_parts(const char *nixl, size_t n) {
    return n > 4 && !memcmp(nixl, "b64:", 4) && memchr(nixl + 4, '.', n - 4);
}

/* The JSON fields, then the blob (or the two parts) inside nixl_metadata. */
static nxc_status_t decode_text(const char *text, size_t len, nxc__metadata_t *m) {
    const char *nixl = NULL;
    char *copy = NULL;
    size_t nixl_len = 0;
    uint8_t *z = NULL;
    size_t zlen = 0;
    nxc_status_t st = nxc__md_json_decode(text, len, m, &nixl, &nixl_len, &copy);
    if (st) return st;
    if (two_parts(nixl, nixl_len)) {
        st = nxc__md_v2_decode(nixl + 4, nixl_len - 4, m);
        free(copy);
        return st;
    }
    st = nxc__md_unwrap(nixl, nixl_len, &z, &zlen);
    free(copy);
    if (st) return st;
    st = nxc__md_inflate(z, zlen, &m->blob_, &m->blob_len_);
    free(z);
    return st ? st : decode_blob(m);
}

nxc_status_t nxc__md_decode(const char *text, size_t len, nxc__metadata_t *md) {
    if (!md) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata: NULL argument");
    memset(md, 0, sizeof *md);
    if (!text) return nxc__err(NXC_ERR_INVALID_PARAM, "metadata: NULL text");
    if (len > NXC_METADATA_MAX)
        return nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                        "metadata: the text is %zu bytes; at most %u are accepted", len,
                        (unsigned)NXC_METADATA_MAX);
    nxc_status_t st = nxc__md_lib_init();
    if (st) return st;
    if ((st = decode_text(text, len, md))) nxc__md_free(md); /* and zeroed, as on entry */
    return st;
}

void nxc__md_free(nxc__metadata_t *md) {
    if (!md) return;
    nxc__md_v2_release(md);
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
