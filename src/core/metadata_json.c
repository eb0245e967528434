/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON layer of the metadata text, on yajl (Debian's libyajl2).
 *
 * Why yajl's event parser and not a document tree: parsing is on every
 * nxc_begin_read/write, and a tree costs an allocation per value and a
 * second walk. jansson took 13 us for the 0.9 KB text of one descriptor
 * and 1.3 ms for the 52 KB of 1024; yajl's events, written straight into
 * nxc__metadata_t, take about a tenth of that.
 *
 * The price is that the rules a tree parser gave for free are kept here:
 * no key twice in one object at any depth (known keys by a bit per object,
 * other keys in a set keyed by object), no \u0000 in a string or key,
 * nesting bounded at JSON_MAX_DEPTH, strict UTF-8 (yajl checks only the
 * byte patterns, so overlong forms and surrogates are refused here). Field
 * checks run after the whole text parsed, in the order of docs/metadata.md,
 * so a text with several faults reports the same one whatever its layout.
 *
 * The hot paths of a 1024-descriptor text (integers of up to 18 digits,
 * ASCII strings, one device text repeated) have short cuts: 393 -> 247 us
 * per decode; a text in the encoder's own layout skips yajl
 * (metadata_json_canon.c): 36 us, and 0.5 us (was 1.0) for one
 * descriptor. The encoder is metadata_json_gen.c, the set of unknown keys
 * metadata_json_keys.c.
 */
#include "core/metadata_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "core/device.h"
#include "util/error.h"
#include "util/text.h"

#define JSON_MAX_DEPTH 2048 /* nesting levels, as jansson bounded them */

enum { TOP_DESCRIPTORS, TOP_NIXL, TOP_KEY, TOP_KIND, TOP_FIELDS };
enum { DESC_DEVICE, DESC_PTR, DESC_SIZE, DESC_FIELDS };
/* A field name and its length, so that a key is compared only with the
 * name of its length. */
typedef struct field_name {
    const char *name;
    size_t len;
} field_name_t;
#define FIELD(s)                                                                                   \
    { s, sizeof s - 1 }
static const field_name_t top_names[TOP_FIELDS] = {FIELD("descriptors"), FIELD("nixl_metadata"),
                                                   FIELD("notification_key"),
                                                   FIELD("operation_kind")};
static const field_name_t desc_names[DESC_FIELDS] = {FIELD("device"), FIELD("ptr"), FIELD("size")};

typedef enum {
    JT_ABSENT,
    JT_OBJECT,
    JT_ARRAY,
    JT_STRING,
    JT_INTEGER,
    JT_REAL,
    JT_BOOLEAN,
    JT_NULL
} jtype_t;

/* What a container is to the decoder; everything else is only checked. */
typedef enum { ROLE_OTHER, ROLE_ROOT, ROLE_DESCS, ROLE_DESC } role_t;

typedef struct frame {
    uint8_t role;
    uint8_t seen; /* known keys met so far (objects), a bit per field */
    uint32_t serial;
} frame_t;

/* The descriptor being read: what its fields were, checked at its end.
 * device_why is written only with a failed device_st, so a new descriptor
 * resets the rest (on_start_map). */
typedef struct desc_state {
    jtype_t type[DESC_FIELDS];
    long long value[DESC_FIELDS]; /* ptr and size */
    nxc_device_t device;
    nxc_status_t device_st;
    char device_why[200];
} desc_state_t;

typedef struct parse {
    nxc__metadata_t *m;
    int depth;
    uint32_t serials;
    int field; /* of the innermost object: the known field whose value comes next, or -1 */
    jtype_t root_type;
    jtype_t top_type[TOP_FIELDS];
    long long kind;
    size_t key_len;
    bool key_printable;
    char *nixl;          /* a copy of the string (yajl's own bytes), or NULL */
    const char *nixl_at; /* the string: nixl, or in the text */
    size_t nixl_len;
    size_t ndescs, cap; /* elements of "descriptors"; room in m->descs */
    desc_state_t desc;
    nxc__device_memo_t memo; /* the last device text parsed */
    nxc_status_t desc_st;    /* the first descriptor's fault, reported after the fields above */
    char desc_why[256];
    nxc__md_keyset_t *unknown; /* the keys nxc does not know, of every object */
    nxc_status_t stop_st;      /* why a callback stopped the parse (message already set) */
    frame_t *stack;            /* JSON_MAX_DEPTH frames, allocated when yajl first parses */
} parse_t;

static const char *jtype_name(jtype_t t) {
    switch (t) {
    case JT_OBJECT: return "an object";
    case JT_ARRAY: return "an array";
    case JT_STRING: return "a string";
    case JT_INTEGER: return "an integer";
    case JT_REAL: return "a real number";
    case JT_BOOLEAN: return "a boolean";
    case JT_NULL: return "null";
    case JT_ABSENT: break;
    }
    return "nothing";
}

/* ------------------------------------------------------------------------ */
/* Rules of the text itself                                                  */
/* ------------------------------------------------------------------------ */

static int stop(parse_t *p, nxc_status_t st) {
    p->stop_st = st;
    return 0; /* yajl: cancel the parse */
}

/* A string value or key: no \u0000, valid UTF-8. */
static int check_string(parse_t *p, const unsigned char *s, size_t n, const char *what) {
    size_t i = nxc__ascii_span(s, n); /* the common case: all ASCII */
    if (i == n) return 1;
    if (memchr(s + i, '\0', n - i))
        return stop(
            p, nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: a JSON %s holds \\u0000", what));
    if (!nxc__utf8_valid(s + i, n - i))
        return stop(p, nxc__err(NXC_ERR_METADATA_MALFORMED,
                                "metadata: a JSON %s is not valid UTF-8", what));
    return 1;
}

/* Remember an unknown key of the innermost object; 0 (stop) if it was there. */
static int note_unknown_key(parse_t *p, const unsigned char *key, size_t n) {
    int added = nxc__md_keyset_add(&p->unknown, p->stack[p->depth - 1].serial, key, n);
    if (added < 0) return stop(p, nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory"));
    if (added == 0)
        return stop(p, nxc__err(NXC_ERR_METADATA_MALFORMED,
                                "metadata: an object holds the key \"%.*s\" twice",
                                (int)(n > 64 ? 64 : n), key));
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Where a value goes                                                        */
/* ------------------------------------------------------------------------ */

typedef enum { SLOT_NONE, SLOT_TOP, SLOT_DESC_ELEMENT, SLOT_DESC_FIELD } slot_t;

static void desc_fault(parse_t *p, nxc_status_t st, const char *fmt, ...) {
    if (p->desc_st != NXC_OK) return; /* the first descriptor's fault is the one told */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->desc_why, sizeof p->desc_why, fmt, ap);
    va_end(ap);
    p->desc_st = st;
}

/* Record the type of a value starting now and say where it belongs. */
static slot_t place(parse_t *p, jtype_t t) {
    if (p->depth == 0) {
        p->root_type = t;
        return SLOT_NONE;
    }
    frame_t *f = &p->stack[p->depth - 1];
    switch ((role_t)f->role) {
    case ROLE_ROOT:
        if (p->field < 0) return SLOT_NONE;
        p->top_type[p->field] = t;
        return SLOT_TOP;
    case ROLE_DESCS:
        if (t != JT_OBJECT && p->ndescs < NXC__MD_MAX_DESCS)
            desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                       "metadata: descriptor %zu must be an object, got %s", p->ndescs,
                       jtype_name(t));
        p->ndescs++;
        return SLOT_DESC_ELEMENT;
    case ROLE_DESC:
        if (p->field < 0) return SLOT_NONE;
        p->desc.type[p->field] = t;
        return SLOT_DESC_FIELD;
    case ROLE_OTHER: break;
    }
    return SLOT_NONE;
}

/* The fields of the descriptor that just ended, in the order the text
 * format lists them. */
static void check_desc(parse_t *p, size_t i) {
    const desc_state_t *d = &p->desc;
    if (d->type[DESC_DEVICE] == JT_ABSENT)
        return desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                          "metadata: descriptor %zu: \"device\" is missing", i);
    if (d->type[DESC_DEVICE] != JT_STRING)
        return desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                          "metadata: descriptor %zu: \"device\" must be a string, got %s", i,
                          jtype_name(d->type[DESC_DEVICE]));
    if (d->device_st != NXC_OK)
        return desc_fault(p, d->device_st, "metadata: descriptor %zu: %s", i, d->device_why);
    for (int f = DESC_PTR; f <= DESC_SIZE; f++) {
        if (d->type[f] == JT_ABSENT)
            return desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                              "metadata: descriptor %zu: \"%s\" is missing", i, desc_names[f].name);
        if (d->type[f] != JT_INTEGER)
            return desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                              "metadata: descriptor %zu: \"%s\" must be an integer, got %s", i,
                              desc_names[f].name, jtype_name(d->type[f]));
        if (d->value[f] <= 0)
            return desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                              "metadata: descriptor %zu: \"%s\" is %lld; it must be > 0", i,
                              desc_names[f].name, d->value[f]);
    }
    /* both are at most 2^63 - 1, so the sum fits; kept for the format's rule */
    if ((uint64_t)d->value[DESC_PTR] + (uint64_t)d->value[DESC_SIZE] < (uint64_t)d->value[DESC_PTR])
        desc_fault(p, NXC_ERR_METADATA_MALFORMED,
                   "metadata: descriptor %zu: ptr + size overflows 64 bits", i);
}

/* Keep the descriptor that just ended (index i) in m->descs. */
static int store_desc(parse_t *p, size_t i) {
    if (i >= NXC__MD_MAX_DESCS || p->desc_st != NXC_OK) return 1; /* refused at the end */
    if (!nxc__md_descs_room(&p->m->descs, &p->cap, i))
        return stop(p, nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory"));
    p->m->descs[i] = (nxc__rdesc_t){.addr = (uint64_t)p->desc.value[DESC_PTR],
                                    .size = (uint64_t)p->desc.value[DESC_SIZE],
                                    .device = p->desc.device};
    return 1;
}

/* ------------------------------------------------------------------------ */
/* yajl's events                                                             */
/* ------------------------------------------------------------------------ */

static int on_null(void *ctx) {
    place(ctx, JT_NULL);
    return 1;
}

static int on_boolean(void *ctx, int b) {
    place(ctx, JT_BOOLEAN);
    return 1;
}

/* A number as yajl lexed it (JSON grammar already checked). An integer is
 * one with no fraction or exponent, and must fit in 64 signed bits; a real
 * must not overflow to infinity (it may round to 0). yajl's own integer
 * conversion refuses -2^63, which is in range, hence the text. */
/* A JSON integer of at most 18 digits (yajl checked the grammar: an
 * optional '-', digits, no leading zero), which cannot overflow: every
 * address and size is one. false: take the general path. */
static bool small_integer(const char *s, size_t n, long long *v_p) {
    bool minus = n > 0 && s[0] == '-';
    size_t i = minus, digits = n - i;
    if (digits == 0 || digits > 18) return false;
    long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *v_p = minus ? -v : v;
    return true;
}

/* The number's value where it is a descriptor's or the op kind's. */
static void keep_integer(parse_t *p, long long v) {
    slot_t slot = place(p, JT_INTEGER);
    if (slot == SLOT_TOP && p->field == TOP_KIND) p->kind = v;
    if (slot == SLOT_DESC_FIELD) p->desc.value[p->field] = v;
}

static int on_number(void *ctx, const char *s, size_t n) {
    parse_t *p = ctx;
    long long v = 0;
    if (small_integer(s, n, &v)) {
        keep_integer(p, v);
        return 1;
    }
    bool integer = !memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n);
    char small[64], *text = n < sizeof small ? small : malloc(n + 1);
    if (!text) return stop(p, nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory"));
    memcpy(text, s, n);
    text[n] = '\0';
    errno = 0;
    bool range;
    if (integer) {
        v = strtoll(text, NULL, 10);
        range = errno != ERANGE;
    } else {
        double d = strtod(text, NULL);
        range = !(errno == ERANGE && d != 0);
    }
    if (text != small) free(text);
    if (!range)
        return stop(p, nxc__err(NXC_ERR_METADATA_MALFORMED,
                                "metadata: the number %.*s%s is out of range",
                                (int)(n > 40 ? 40 : n), s, n > 40 ? "..." : ""));
    if (integer)
        keep_integer(p, v);
    else
        place(p, JT_REAL);
    return 1;
}

static void parse_device(parse_t *p, const unsigned char *s, size_t n) {
    if (n >= 64) { /* no device name is this long: say so without copying it */
        p->desc.device_st = NXC_ERR_INVALID_DEVICE;
        snprintf(p->desc.device_why, sizeof p->desc.device_why,
                 "device text of %zu bytes is not a device", n);
        return;
    }
    p->desc.device_st = nxc__device_parse_memo(&p->memo, (const char *)s, n, &p->desc.device);
    if (p->desc.device_st != NXC_OK)
        snprintf(p->desc.device_why, sizeof p->desc.device_why, "%s", nxc_last_error());
}

static int keep_nixl(parse_t *p, const unsigned char *s, size_t n) {
    p->nixl = malloc(n ? n : 1);
    if (!p->nixl) return stop(p, nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory"));
    memcpy(p->nixl, s, n);
    p->nixl_at = p->nixl;
    p->nixl_len = n;
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n) {
    parse_t *p = ctx;
    if (!check_string(p, s, n, "string")) return 0;
    slot_t slot = place(p, JT_STRING);
    if (slot == SLOT_DESC_FIELD && p->field == DESC_DEVICE) parse_device(p, s, n);
    if (slot != SLOT_TOP) return 1;
    if (p->field == TOP_NIXL) return keep_nixl(p, s, n);
    if (p->field == TOP_KEY) {
        p->key_len = n;
        p->key_printable = nxc__printable((const char *)s, n);
        if (n <= NXC_KEY_MAX) {
            memcpy(p->m->notification_key, s, n);
            p->m->notification_key[n] = '\0';
        }
    }
    return 1;
}

static int push(parse_t *p, role_t role) {
    if (p->depth == JSON_MAX_DEPTH)
        return stop(p, nxc__err(NXC_ERR_METADATA_MALFORMED,
                                "metadata: the JSON nests deeper than %d levels", JSON_MAX_DEPTH));
    p->stack[p->depth++] = (frame_t){.role = (uint8_t)role, .serial = p->serials++};
    p->field = -1;
    return 1;
}

static int on_start_map(void *ctx) {
    parse_t *p = ctx;
    bool top = p->depth == 0;
    slot_t s = place(p, JT_OBJECT);
    if (s == SLOT_DESC_ELEMENT) /* all but device_why, 200 bytes written only on failure */
        memset(&p->desc, 0, offsetof(desc_state_t, device_why));
    return push(p, top ? ROLE_ROOT : s == SLOT_DESC_ELEMENT ? ROLE_DESC : ROLE_OTHER);
}

static int on_start_array(void *ctx) {
    parse_t *p = ctx;
    slot_t s = place(p, JT_ARRAY);
    bool descs = s == SLOT_TOP && p->field == TOP_DESCRIPTORS;
    return push(p, descs ? ROLE_DESCS : ROLE_OTHER);
}

static int field_index(const field_name_t *names, int count, const unsigned char *key, size_t n) {
    for (int i = 0; i < count; i++)
        if (names[i].len == n && !memcmp(names[i].name, key, n)) return i;
    return -1;
}

static int on_map_key(void *ctx, const unsigned char *key, size_t n) {
    parse_t *p = ctx;
    if (!check_string(p, key, n, "key")) return 0;
    frame_t *f = &p->stack[p->depth - 1];
    p->field = f->role == ROLE_ROOT   ? field_index(top_names, TOP_FIELDS, key, n)
               : f->role == ROLE_DESC ? field_index(desc_names, DESC_FIELDS, key, n)
                                      : -1;
    if (p->field < 0) return note_unknown_key(p, key, n);
    if (f->seen & (1u << p->field))
        return stop(p, nxc__err(NXC_ERR_METADATA_MALFORMED,
                                "metadata: an object holds the key \"%.*s\" twice", (int)n, key));
    f->seen |= (uint8_t)(1u << p->field);
    return 1;
}

static int on_end_map(void *ctx) {
    parse_t *p = ctx;
    bool desc = p->stack[p->depth - 1].role == ROLE_DESC;
    p->depth--;
    if (!desc) return 1;
    check_desc(p, p->ndescs - 1);
    return store_desc(p, p->ndescs - 1);
}

static int on_end_array(void *ctx) {
    ((parse_t *)ctx)->depth--;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

/* Parse `len` bytes of `text`; with a `tail`, only the first `len` bytes,
 * then `tail_len` bytes of `tail` as if they followed (the short cut's
 * split). */
static nxc_status_t run_parser(parse_t *p, const char *text, size_t len, const char *tail,
                               size_t tail_len) {
    if (!p->stack && !(p->stack = malloc(JSON_MAX_DEPTH * sizeof *p->stack)))
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    yajl_handle h = yajl_alloc(&callbacks, NULL, p);
    if (!h) return nxc__err(NXC_ERR_NO_MEMORY, "metadata: out of memory");
    /* check_string() checks every string and key, strictly: yajl's own,
     * looser pass over the same bytes would only cost time */
    yajl_config(h, yajl_dont_validate_strings, 1);
    const unsigned char *u = (const unsigned char *)text;
    yajl_status ys = yajl_parse(h, u, len);
    if (ys == yajl_status_ok && tail) ys = yajl_parse(h, (const unsigned char *)tail, tail_len);
    if (ys == yajl_status_ok) ys = yajl_complete_parse(h);
    nxc_status_t st = NXC_OK;
    if (ys == yajl_status_client_canceled)
        st = p->stop_st;
    else if (ys != yajl_status_ok) {
        size_t at = yajl_get_bytes_consumed(h);
        unsigned char *why = yajl_get_error(h, 0, u, len);
        st = nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: not valid JSON (near byte %zu): %s",
                      at, why ? (const char *)why : "parse error");
        if (why) yajl_free_error(h, why);
    }
    yajl_free(h);
    return st;
}

/* The state before parsing into `m`, whose descs have room for `cap`. The
 * nesting stack is kept as it is: push() writes a frame before use. A text
 * the short cut reads whole never needs it, and its 16 KiB were most of
 * what decoding a one-descriptor text allocated. */
static void parse_start(parse_t *p, nxc__metadata_t *m, size_t cap) {
    frame_t *stack = p->stack;
    memset(p, 0, sizeof *p);
    p->stack = stack;
    p->m = m;
    p->cap = cap;
    p->field = -1;
}

/* Back to the state before parsing, keeping m->descs and its room. */
static void parse_reset(parse_t *p) {
    nxc__md_keyset_free(&p->unknown);
    free(p->nixl);
    parse_start(p, p->m, p->cap);
}

/* The fields after the list, as the short cut read them: the state yajl's
 * callbacks would have left for that very text. */
static nxc_status_t take_canon_tail(parse_t *p, const nxc__md_canon_tail_t *tail) {
    p->nixl_at = tail->nixl; /* the text's own bytes: no escape in them */
    p->nixl_len = tail->nixl_len;
    p->root_type = JT_OBJECT;
    p->top_type[TOP_DESCRIPTORS] = JT_ARRAY;
    p->top_type[TOP_NIXL] = p->top_type[TOP_KEY] = JT_STRING;
    p->top_type[TOP_KIND] = JT_INTEGER;
    p->kind = tail->kind;
    p->key_len = tail->key_len;
    p->key_printable = nxc__printable(tail->key, tail->key_len);
    memcpy(p->m->notification_key, tail->key, tail->key_len);
    p->m->notification_key[tail->key_len] = '\0';
    return NXC_OK;
}

/* The whole text, read by the short cut when it is in the encoder's
 * layout (the list, then the fields after it; or the list alone, yajl
 * parsing the rest). Whatever fails after a short cut is parsed again in
 * full, so that the message (and its byte offsets) is the one yajl gives
 * for the text as it is. */
static nxc_status_t parse_text(parse_t *p, const char *text, size_t len) {
    size_t n = 0;
    size_t close = nxc__md_json_canon_descs(text, len, &p->m->descs, &p->cap, &n);
    if (close) {
        p->ndescs = n;
        nxc__md_canon_tail_t tail;
        if (nxc__md_json_canon_tail(text + close, len - close, &tail))
            return take_canon_tail(p, &tail);
        nxc_status_t st =
            run_parser(p, text, sizeof NXC__MD_JSON_CANON_OPEN - 1, text + close, len - close);
        if (st == NXC_OK) return NXC_OK;
        parse_reset(p);
    }
    return run_parser(p, text, len, NULL, 0);
}

/* The checks of docs/metadata.md §3.2, once the whole text parsed. */
static nxc_status_t check_fields(const parse_t *p, nxc__metadata_t *m) {
    static const jtype_t want[TOP_FIELDS] = {JT_ARRAY, JT_STRING, JT_STRING, JT_INTEGER};
    if (p->root_type != JT_OBJECT)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: the JSON is %s, not an object",
                        jtype_name(p->root_type));
    for (int f = 0; f < TOP_FIELDS; f++) {
        if (p->top_type[f] == JT_ABSENT)
            return nxc__err(NXC_ERR_METADATA_MALFORMED,
                            "metadata: required field \"%s\" is missing", top_names[f].name);
        if (p->top_type[f] != want[f])
            return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: \"%s\" must be %s, got %s",
                            top_names[f].name, jtype_name(want[f]), jtype_name(p->top_type[f]));
    }
    if (p->kind != NXC__MD_KIND_READ && p->kind != NXC__MD_KIND_WRITE)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: \"operation_kind\" is %lld; expected 1 (read) or 2 (write)",
                        p->kind);
    m->operation_kind = (int)p->kind;
    if (p->key_len < 1 || p->key_len > NXC_KEY_MAX)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: \"notification_key\" is %zu bytes; expected 1..%d", p->key_len,
                        NXC_KEY_MAX);
    if (!p->key_printable)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: \"notification_key\" holds a byte that is not printable ASCII");
    if (p->ndescs == 0)
        return nxc__err(NXC_ERR_METADATA_MALFORMED, "metadata: \"descriptors\" is empty");
    if (p->ndescs > NXC__MD_MAX_DESCS)
        return nxc__err(NXC_ERR_METADATA_MALFORMED,
                        "metadata: \"descriptors\" has %zu entries; at most %d", p->ndescs,
                        NXC__MD_MAX_DESCS);
    if (p->desc_st != NXC_OK) return nxc__err(p->desc_st, "%s", p->desc_why);
    m->ndesc = p->ndescs;
    return NXC_OK;
}

nxc_status_t nxc__md_json_decode(const char *text, size_t len, nxc__metadata_t *m,
                                 const char **nixl_p, size_t *nixl_len_p, char **nixl_copy_p) {
    parse_t state = {.stack = NULL}, *p = &state;
    parse_start(p, m, 0);
    nxc_status_t st = parse_text(p, text, len);
    if (st == NXC_OK) st = check_fields(p, m);
    nxc__md_keyset_free(&p->unknown);
    if (st == NXC_OK) {
        *nixl_p = p->nixl_at;
        *nixl_len_p = p->nixl_len;
        *nixl_copy_p = p->nixl;
    } else
        free(p->nixl);
    free(p->stack);
    return st;
}
