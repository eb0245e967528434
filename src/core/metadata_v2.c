/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metadata format version 2 (docs/metadata.md §6.1): nixl_metadata is
 *
 *   "b64:" base64(zlib(peer part)) "." base64(zlib(op part))
 *
 * The peer part says who the owner is and how to reach it (identity, one
 * connection info per transport): the same bytes in every op of one
 * connector. The op part holds the rest (kind, secret, one access key per
 * transport and descriptor), and nothing the JSON already says (the
 * notification key): each of its bytes is decoded at every begin. A reader keeps the peer
 * parts it decoded last, by their text: a begin whose peer part is one of
 * them decodes only the op part, about a third of version 1's work, and a
 * writer keeps the text of the peer part it wrote last.
 *
 * A decoded peer part is immutable and shared by reference count: the
 * metadata of an op (which may end on another thread) holds one, and the
 * thread's cache another.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metadata.h"
#include "core/metadata_blob.h"
#include "core/metadata_wrap.h"
#include "util/error.h"
#include "util/sys.h"

#define PEER_MAGIC NXC__BLOB_MAGIC
#define OP_MAGIC "NXCO"
#define PEER_HEADER_LEN 44        /* up to and including start_time */
#define OP_HEADER_LEN 32          /* up to and including secret */
#define PEER_CACHE_SLOTS 4        /* peers a thread remembers (most recent first) */
#define PEER_CACHE_TEXT_MAX 65536 /* longer peer parts are decoded each time */

typedef struct nxc__md_peer {
    atomic_uint refs;
    char *text; /* its base64, the cache's key (NULL: not cached) */
    size_t text_len;
    uint8_t *blob; /* the inflated part; sections' conn point into it */
    size_t blob_len;
    char name[NXC_NAME_MAX + 1];
    char host[NXC__HOST_MAX + 1];
    uint8_t instance[NXC__INSTANCE_LEN];
    uint32_t pid;
    uint64_t start_time;
    size_t nsections;
    nxc__md_section_t sections[NXC__MD_MAX_SECTIONS]; /* keys: NULL */
} peer_t;

static void peer_put(peer_t *p) {
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1) return;
    free(p->text);
    free(p->blob);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Per-thread state: the reader's peers, the writer's last peer part          */
/* ------------------------------------------------------------------------ */

typedef struct thread_state {
    peer_t *peers[PEER_CACHE_SLOTS];
    uint8_t *wrote_blob; /* the peer part this thread wrote last, */
    size_t wrote_blob_len;
    char *wrote_text; /* and its "b64:" text */
    size_t wrote_text_len;
} thread_state_t;

static pthread_key_t state_key;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static bool state_keyed;

static void state_free(void *arg) {
    thread_state_t *t = arg;
    for (int i = 0; i < PEER_CACHE_SLOTS; i++)
        peer_put(t->peers[i]);
    free(t->wrote_blob);
    free(t->wrote_text);
    free(t);
}

static void state_key_create(void) {
    state_keyed = pthread_key_create(&state_key, state_free) == 0;
}

/* This thread's state (NULL: out of memory or no key: nothing is kept). */
static thread_state_t *thread_state(void) {
    pthread_once(&state_once, state_key_create);
    return state_keyed ? nxc__thread_value(state_key, sizeof(thread_state_t)) : NULL;
}

/* The cached peer whose text is `s`, moved to the front, with a reference
 * for the caller; NULL if none. */
static peer_t *cache_find(thread_state_t *t, const char *s, size_t n) {
    for (int i = 0; t && i < PEER_CACHE_SLOTS && t->peers[i]; i++) {
        peer_t *p = t->peers[i];
        if (p->text_len != n || memcmp(p->text, s, n)) continue;
        memmove(&t->peers[1], &t->peers[0], (size_t)i * sizeof t->peers[0]);
        t->peers[0] = p;
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        return p;
    }
    return NULL;
}

/* Keep `p` (decoded from `s`) at the front, dropping the oldest. */
static void cache_add(thread_state_t *t, peer_t *p, const char *s, size_t n) {
    if (!t || n > PEER_CACHE_TEXT_MAX || !(p->text = malloc(n))) return;
    memcpy(p->text, s, n);
    p->text_len = n;
    peer_put(t->peers[PEER_CACHE_SLOTS - 1]);
    memmove(&t->peers[1], &t->peers[0], (PEER_CACHE_SLOTS - 1) * sizeof t->peers[0]);
    t->peers[0] = p;
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                   */
/* ------------------------------------------------------------------------ */

/* magic, version (checked first: a newer version may change the rest),
 * flags and total length. */
static nxc_status_t part_header(nxc__reader_t *r, const char *magic, size_t header_len) {
    const uint8_t *p = r->p;
    unsigned version;
    nxc_status_t st = nxc__rd_version(r, magic, &version);
    if (st) return st;
    if (version != 2)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s version is %u; the two-part form is version 2", r->what,
                        version);
    r->off = 6;
    if ((st = nxc__rd_need(r, header_len - 6, "header"))) return st;
    unsigned flags = nxc__get_le16(p + 6);
    if (flags != 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s flags are 0x%04x; version 2 requires 0", r->what, flags);
    uint32_t total = nxc__get_le32(p + 8);
    if (total != r->len)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: %s total_len is %u but %zu bytes were inflated", r->what,
                        (unsigned)total, r->len);
    r->off = header_len;
    return NXC_OK;
}

/* The reserved header bytes from `from` up to offset 16 are zero. */
static nxc_status_t reserved_zero(const nxc__reader_t *r, int from) {
    for (int i = from; i < 16; i++)
        if (r->p[i])
            return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: %s reserved bytes are not zero",
                            r->what);
    return NXC_OK;
}

static nxc_status_t no_trailing(const nxc__reader_t *r) {
    if (r->off == r->len) return NXC_OK;
    return nxc__err(NXC_ERR_METADATA_MALFORMED,
                    "metadata: %s has %zu trailing bytes after the last section", r->what,
                    r->len - r->off);
}

/* The peer part's fields after its header. */
static nxc_status_t peer_fields(peer_t *p, nxc__reader_t *r) {
    nxc_status_t st;
    memcpy(p->instance, r->p + 16, NXC__INSTANCE_LEN);
    p->pid = nxc__get_le32(r->p + 32);
    p->start_time = nxc__get_le64(r->p + 36);
    if ((st = nxc__rd_text16(r, "name", NXC_NAME_MAX, p->name)) ||
        (st = nxc__rd_text16(r, "host", NXC__HOST_MAX, p->host)) ||
        (st = nxc__rd_need(r, 1, "nsections")))
        return st;
    size_t nsec = r->p[r->off++];
    if (nsec > NXC__MD_MAX_SECTIONS)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: peer part has %zu sections; at most %d", nsec,
                        NXC__MD_MAX_SECTIONS);
    for (size_t s = 0; s < nsec; s++) {
        if ((st = nxc__rd_section_name(r, s, p->sections)) ||
            (st = nxc__rd_span(r, p->sections[s].name, SIZE_MAX, &p->sections[s].conn)))
            return st;
        p->nsections = s + 1;
    }
    return no_trailing(r);
}

/* Decode the peer part's text `s` (`n` base64 characters) into a new peer
 * (one reference). */
static nxc_status_t peer_decode(const char *s, size_t n, peer_t **out) {
    peer_t *p = calloc(1, sizeof *p);
    if (!p) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    atomic_init(&p->refs, 1);
    nxc_status_t st =
        nxc__md_unpack_part(s, n, "\"nixl_metadata\" peer part", &p->blob, &p->blob_len);
    if (st == NXC_OK) {
        nxc__reader_t r = {p->blob, p->blob_len, 0, "peer part"};
        if (!(st = part_header(&r, PEER_MAGIC, PEER_HEADER_LEN)) && !(st = reserved_zero(&r, 12)))
            st = peer_fields(p, &r);
    }
    if (st) {
        peer_put(p);
        return st;
    }
    *out = p;
    return NXC_OK;
}

/* The peer of text `s`: the thread's, or decoded (and then kept). */
static nxc_status_t peer_get(const char *s, size_t n, peer_t **out) {
    thread_state_t *t = thread_state();
    if ((*out = cache_find(t, s, n))) return NXC_OK;
    nxc_status_t st = peer_decode(s, n, out);
    if (st == NXC_OK) cache_add(t, *out, s, n);
    return st;
}

/* The op part's header fields, the kind checked against the JSON (before
 * the reserved bytes, as version 1 does). */
static nxc_status_t op_header(nxc__metadata_t *m, nxc__reader_t *r) {
    const uint8_t *p = r->p;
    if (p[12] != (unsigned)m->operation_kind)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: op part operation_kind %u differs from the JSON "
                        "operation_kind %d",
                        (unsigned)p[12], m->operation_kind);
    nxc_status_t st = reserved_zero(r, 13);
    if (st == NXC_OK) memcpy(m->secret, p + 16, NXC__SECRET_LEN);
    return st;
}

/* The op part (already inflated into m->blob_): its keys, one per
 * descriptor for each of the peer's sections in the peer's order. */
static nxc_status_t op_fields(nxc__metadata_t *m, const peer_t *peer) {
    nxc__reader_t r = {m->blob_, m->blob_len_, 0, "op part"};
    nxc_status_t st;
    if ((st = part_header(&r, OP_MAGIC, OP_HEADER_LEN)) || (st = op_header(m, &r)) ||
        (st = nxc__md_ndesc(m, &r)) || (st = nxc__rd_need(&r, 1, "nsections")))
        return st;
    size_t nsec = r.p[r.off++];
    if (nsec != peer->nsections)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: op part has keys for %zu sections; the peer part has %zu", nsec,
                        peer->nsections);
    if ((st = nxc__md_keys_table(m, &r, nsec, 0))) return st;
    for (size_t s = 0; s < nsec; s++) {
        nxc__md_section_t *sec = &m->sections[s];
        sec->keys = m->keys_ + s * m->ndesc;
        for (size_t j = 0; j < m->ndesc; j++)
            if ((st = nxc__rd_span(&r, peer->sections[s].name, j, &sec->keys[j]))) return st;
    }
    return no_trailing(&r);
}

/* The peer's fields into `m`, which then holds a reference to it. */
static void adopt_peer(nxc__metadata_t *m, peer_t *peer) {
    m->version = 2;
    memcpy(m->name, peer->name, sizeof m->name);
    memcpy(m->host, peer->host, sizeof m->host);
    memcpy(m->instance, peer->instance, NXC__INSTANCE_LEN);
    m->pid = peer->pid;
    m->start_time = peer->start_time;
    m->nsections = peer->nsections;
    for (size_t s = 0; s < peer->nsections; s++) {
        memcpy(m->sections[s].name, peer->sections[s].name, sizeof m->sections[s].name);
        m->sections[s].conn = peer->sections[s].conn;
    }
    m->peer_ = peer;
}

nxc_status_t nxc__md_v2_decode(const char *s, size_t n, nxc__metadata_t *m) {
    const char *dot = memchr(s, '.', n);
    size_t pn = (size_t)(dot - s), on = n - pn - 1;
    const char *o = dot + 1;
    peer_t *peer = NULL;
    nxc_status_t st = peer_get(s, pn, &peer);
    if (st) return st;
    if (memchr(o, '.', on))
        st = nxc__err(NXC_ERR_METADATA_MALFORMED,
                      "metadata: \"nixl_metadata\" has more than two parts");
    if (st == NXC_OK)
        st = nxc__md_unpack_part(o, on, "\"nixl_metadata\" op part", &m->blob_, &m->blob_len_);
    if (st == NXC_OK) st = op_fields(m, peer);
    if (st) {
        peer_put(peer);
        return st;
    }
    adopt_peer(m, peer);
    return NXC_OK;
}

void nxc__md_v2_release(nxc__metadata_t *m) {
    peer_put(m->peer_);
    m->peer_ = NULL;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                   */
/* ------------------------------------------------------------------------ */

static uint8_t *put_header(uint8_t *p, const char *magic, size_t len) {
    p = nxc__put_bytes(p, magic, 4);
    p = nxc__put_le16(p, 2);
    p = nxc__put_le16(p, 0); /* flags */
    return nxc__put_le32(p, (uint32_t)len);
}

static void write_peer(const nxc__metadata_t *md, const nxc__md_lens_t *lens, uint8_t *b,
                       size_t len) {
    uint8_t *p = put_header(b, PEER_MAGIC, len);
    p = nxc__put_le32(p, 0); /* reserved */
    p = nxc__put_bytes(p, md->instance, NXC__INSTANCE_LEN);
    p = nxc__put_le32(p, md->pid);
    p = nxc__put_le64(p, md->start_time);
    p = nxc__put_str16(p, md->name, lens->name);
    p = nxc__put_str16(p, md->host, lens->host);
    *p++ = (uint8_t)md->nsections;
    for (size_t s = 0; s < md->nsections; s++)
        p = nxc__put_section(p, &md->sections[s], lens->section_name[s]);
}

static void write_op(const nxc__metadata_t *md, const nxc__md_lens_t *lens, uint8_t *b,
                     size_t len) {
    uint8_t *p = put_header(b, OP_MAGIC, len);
    *p++ = (uint8_t)md->operation_kind;
    p = nxc__put_bytes(p, "\0\0\0", 3); /* reserved */
    p = nxc__put_bytes(p, md->secret, NXC__SECRET_LEN);
    p = nxc__put_le32(p, (uint32_t)md->ndesc);
    *p++ = (uint8_t)md->nsections;
    for (size_t s = 0; s < md->nsections; s++)
        for (size_t j = 0; j < md->ndesc; j++) {
            uint32_t klen = md->sections[s].keys ? md->sections[s].keys[j].len : 0;
            p = nxc__put_le16(p, (uint16_t)klen);
            if (klen) p = nxc__put_bytes(p, md->sections[s].keys[j].data, klen);
        }
}

/* The "b64:" text of the peer part `b`: the one this thread wrote last
 * when `b` is the same bytes (a copy either way, the caller's). */
static nxc_status_t pack_peer(const uint8_t *b, size_t len, char **out, size_t *out_len) {
    thread_state_t *t = thread_state();
    if (!t || t->wrote_blob_len != len || memcmp(t->wrote_blob, b, len)) {
        char *text = NULL;
        nxc_status_t st = nxc__md_pack_part(b, len, &text);
        if (st) return st;
        uint8_t *keep = t ? malloc(len) : NULL;
        if (!keep) {
            *out = text;
            *out_len = strlen(text);
            return NXC_OK;
        }
        free(t->wrote_blob);
        free(t->wrote_text);
        t->wrote_blob = memcpy(keep, b, len);
        t->wrote_blob_len = len;
        t->wrote_text = text;
        t->wrote_text_len = strlen(text);
    }
    if (!(*out = malloc(t->wrote_text_len + 1)))
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    memcpy(*out, t->wrote_text, t->wrote_text_len + 1);
    *out_len = t->wrote_text_len;
    return NXC_OK;
}

/* A part of `len` bytes written by `write` into a blob, then packed. */
static nxc_status_t make_part(const nxc__metadata_t *md, const nxc__md_lens_t *lens, uint64_t len,
                              bool peer, char **out, size_t *out_len) {
    if (len > NXC_METADATA_MAX)
        return nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                        "metadata encode: the %s part would be %llu bytes; at most %u",
                        peer ? "peer" : "op", (unsigned long long)len, (unsigned)NXC_METADATA_MAX);
    uint8_t *b = malloc(len);
    if (!b) return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    nxc_status_t st;
    if (peer) {
        write_peer(md, lens, b, (size_t)len);
        st = pack_peer(b, (size_t)len, out, out_len);
    } else {
        write_op(md, lens, b, (size_t)len);
        if ((st = nxc__md_pack_part(b, (size_t)len, out)) == NXC_OK) *out_len = strlen(*out);
    }
    free(b);
    return st;
}

nxc_status_t nxc__md_v2_pack(const nxc__metadata_t *md, const nxc__md_lens_t *lens, char **out_p,
                             size_t *len_p) {
    uint64_t peer_len = PEER_HEADER_LEN + 2 + lens->name + 2 + lens->host + 1 + lens->conns;
    uint64_t op_len = OP_HEADER_LEN + 4 + 1 + lens->keys;
    char *peer = NULL, *op = NULL;
    size_t pn = 0, on = 0;
    nxc_status_t st = make_part(md, lens, peer_len, true, &peer, &pn);
    if (st == NXC_OK) st = make_part(md, lens, op_len, false, &op, &on);
    /* "b64:P" "." "O" (the op part's own "b64:" dropped) */
    char *out = st == NXC_OK ? realloc(peer, pn + 1 + (on - 4) + 1) : NULL;
    if (st == NXC_OK && !out) st = nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    if (st) {
        free(peer);
        free(op);
        return st;
    }
    out[pn] = '.';
    memcpy(out + pn + 1, op + 4, on - 4 + 1);
    free(op);
    *out_p = out;
    *len_p = pn + 1 + on - 4;
    return NXC_OK;
}
