/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON layer of the metadata text, written (metadata_json.c reads it):
 * yajl's generator, compact, in the order docs/metadata.md §3.3 fixes.
 * Integers are written without sprintf (yajl_gen_integer's), which was a
 * quarter of creating a readable of 1024 descriptors: 378 -> 258 us.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "core/metadata_json.h"
#include "util/error.h"

static bool gen_key(yajl_gen gen, const char *key) {
    return yajl_gen_string(gen, (const unsigned char *)key, strlen(key)) == yajl_gen_status_ok;
}

/* yajl_gen_integer() formats with sprintf, a quarter of encoding 1024
 * descriptors; a JSON integer is only its decimal digits. */
static bool gen_integer(yajl_gen gen, long long v) {
    char text[24], *at = text + sizeof text;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        *--at = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--at = '-';
    return yajl_gen_number(gen, at, (size_t)(text + sizeof text - at)) == yajl_gen_status_ok;
}

static nxc_status_t gen_descs(yajl_gen gen, const nxc__metadata_t *md) {
    bool ok = yajl_gen_array_open(gen) == yajl_gen_status_ok;
    char dev[NXC_DEVICE_TEXT_MAX];
    for (size_t i = 0; ok && i < md->ndesc; i++) {
        const nxc__rdesc_t *d = &md->descs[i];
        /* the descriptors of an op are nearly always on one device: format once */
        bool same = i > 0 && d->device.kind == d[-1].device.kind && d->device.id == d[-1].device.id;
        if (!same && nxc_device_format(d->device, dev, sizeof dev) != NXC_OK)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "metadata encode: descriptor %zu: device kind %d id %d is invalid", i,
                            (int)d->device.kind, d->device.id);
        ok = yajl_gen_map_open(gen) == yajl_gen_status_ok && gen_key(gen, "device") &&
             gen_key(gen, dev) && gen_key(gen, "ptr") && gen_integer(gen, (long long)d->addr) &&
             gen_key(gen, "size") && gen_integer(gen, (long long)d->size) &&
             yajl_gen_map_close(gen) == yajl_gen_status_ok;
    }
    ok = ok && yajl_gen_array_close(gen) == yajl_gen_status_ok;
    return ok ? NXC_OK : nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
}

static nxc_status_t gen_text(yajl_gen gen, const nxc__metadata_t *md, const char *nixl,
                             size_t nixl_len) {
    nxc_status_t st;
    if (yajl_gen_map_open(gen) != yajl_gen_status_ok || !gen_key(gen, "descriptors"))
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    if ((st = gen_descs(gen, md))) return st;
    bool ok = gen_key(gen, "nixl_metadata") &&
              yajl_gen_string(gen, (const unsigned char *)nixl, nixl_len) == yajl_gen_status_ok &&
              gen_key(gen, "notification_key") && gen_key(gen, md->notification_key) &&
              gen_key(gen, "operation_kind") && gen_integer(gen, md->operation_kind) &&
              yajl_gen_map_close(gen) == yajl_gen_status_ok;
    return ok ? NXC_OK : nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
}

/* The text as yajl writes it, straight into one buffer sized for it. yajl's
 * own buffer grows from 2 KiB by doubling, and its text was then copied
 * out: for 1024 descriptors, six reallocations and a copy of 52 KiB. */
typedef struct text_sink {
    char *p;
    size_t len, cap;
    bool oom;
} text_sink_t;

static void sink_write(void *ctx, const char *str, size_t len) {
    text_sink_t *t = ctx;
    if (t->oom) return;
    if (t->len + len + 1 > t->cap) {
        size_t cap = (t->len + len + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, str, len);
    t->len += len;
}

/* A little more than the text of `md` takes when its descriptors are host
 * memory with 12-digit addresses (about 50 bytes each). */
static size_t text_estimate(const nxc__metadata_t *md, size_t nixl_len) {
    return 160 + nixl_len + strlen(md->notification_key) + 56 * md->ndesc;
}

nxc_status_t nxc__md_json_encode(const nxc__metadata_t *md, const char *nixl, size_t nixl_len,
                                 char **text_p, size_t *len_p) {
    text_sink_t sink = {.cap = text_estimate(md, nixl_len)};
    sink.p = malloc(sink.cap);
    yajl_gen gen = sink.p ? yajl_gen_alloc(NULL) : NULL;
    if (!gen || !yajl_gen_config(gen, yajl_gen_print_callback, sink_write, &sink)) {
        if (gen) yajl_gen_free(gen);
        free(sink.p);
        return nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    }
    nxc_status_t st = gen_text(gen, md, nixl, nixl_len);
    yajl_gen_free(gen);
    if (st == NXC_OK && sink.oom)
        st = nxc__err(NXC_ERR_NO_MEMORY, "metadata encode: out of memory");
    if (st == NXC_OK && sink.len > NXC_METADATA_MAX)
        st = nxc__err(NXC_ERR_METADATA_TOO_LARGE,
                      "metadata encode: the text would be %zu bytes; at most %u", sink.len,
                      (unsigned)NXC_METADATA_MAX);
    if (st != NXC_OK) {
        free(sink.p);
        return st;
    }
    sink.p[sink.len] = '\0';
    *text_p = sink.p;
    if (len_p) *len_p = sink.len;
    return NXC_OK;
}
