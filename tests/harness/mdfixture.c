/* SPDX-License-Identifier: Apache-2.0 */
#include "mdfixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nxt.h"

void nxt_mdfix_init(nxt_mdfix_t *f, size_t ndesc, size_t nsec, int kind) {
    memset(f, 0, sizeof *f);
    nxc__metadata_t *md = &f->md;
    md->operation_kind = kind;
    snprintf(md->notification_key, sizeof md->notification_key, "key-%zu-%zu", ndesc, nsec);
    snprintf(md->name, sizeof md->name, "worker-%zu", ndesc);
    snprintf(md->host, sizeof md->host, "host.example:boot-id-1234");
    for (int i = 0; i < NXC__INSTANCE_LEN; i++)
        md->instance[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < NXC__SECRET_LEN; i++)
        md->secret[i] = (uint8_t)(0x10 * i + 7);
    md->pid = 123456;
    md->start_time = 0x0102030405060708ull;
    md->ndesc = ndesc;
    md->descs = calloc(ndesc, sizeof *md->descs);
    NXT_CHECK(md->descs);
    for (size_t i = 0; i < ndesc; i++) {
        md->descs[i].addr = 0x7f0000000000ull + i * 0x10000;
        md->descs[i].size = 4096 + i;
        md->descs[i].device = (nxc_device_t){NXC_DEVICE_HOST, 0};
    }
    md->nsections = nsec;
    f->storage = malloc(NXT_MDFIX_STORAGE);
    NXT_CHECK(f->storage);
    nxt_fill(f->storage, NXT_MDFIX_STORAGE, 99);
    f->keys = calloc(nsec * ndesc + 1, sizeof *f->keys);
    NXT_CHECK(f->keys);
    for (size_t s = 0; s < nsec; s++) {
        nxc__md_section_t *sec = &md->sections[s];
        if (s == 0)
            snprintf(sec->name, sizeof sec->name, "ucx");
        else if (s == 1)
            snprintf(sec->name, sizeof sec->name, "tcp");
        else
            snprintf(sec->name, sizeof sec->name, "s%d", (int)s & 7);
        sec->conn.data = f->storage + s;
        sec->conn.len = (uint32_t)(10 + s);
        sec->keys = f->keys + s * ndesc;
        for (size_t j = 0; j < ndesc; j++) {
            sec->keys[j].len = (uint32_t)((j + s) % 7);
            sec->keys[j].data = sec->keys[j].len ? f->storage + 100 + (j % 1000) : NULL;
        }
    }
}

void nxt_mdfix_free(nxt_mdfix_t *f) {
    free(f->md.descs);
    free(f->storage);
    free(f->keys);
    memset(f, 0, sizeof *f);
}

void nxt_mdfix_longest(nxt_mdfix_t *f) {
    memset(f->md.name, '~', NXC_NAME_MAX);
    f->md.name[NXC_NAME_MAX] = '\0';
    memset(f->md.host, '!', NXC__HOST_MAX);
    f->md.host[NXC__HOST_MAX] = '\0';
    memset(f->md.notification_key, 'k', NXC_KEY_MAX);
    f->md.notification_key[NXC_KEY_MAX] = '\0';
    memset(f->md.sections[7].name, 'z', NXC__TRANSPORT_NAME_MAX);
    f->md.sections[7].name[NXC__TRANSPORT_NAME_MAX] = '\0';
}

static bool bytes_eq(nxc__bytes_t a, nxc__bytes_t b) {
    return a.len == b.len && (a.len == 0 || !memcmp(a.data, b.data, a.len));
}

void nxt_md_check_same(const nxc__metadata_t *a, const nxc__metadata_t *b) {
    NXT_EQ_INT(b->operation_kind, a->operation_kind);
    NXT_EQ_STR(b->notification_key, a->notification_key);
    NXT_EQ_STR(b->name, a->name);
    NXT_EQ_STR(b->host, a->host);
    NXT_CHECK(!memcmp(b->instance, a->instance, NXC__INSTANCE_LEN));
    NXT_CHECK(!memcmp(b->secret, a->secret, NXC__SECRET_LEN));
    NXT_EQ_INT(b->pid, a->pid);
    NXT_CHECK(b->start_time == a->start_time);
    NXT_EQ_INT(b->ndesc, a->ndesc);
    for (size_t i = 0; i < a->ndesc; i++) {
        NXT_CHECK(b->descs[i].addr == a->descs[i].addr);
        NXT_CHECK(b->descs[i].size == a->descs[i].size);
        NXT_EQ_INT(b->descs[i].device.kind, a->descs[i].device.kind);
        NXT_EQ_INT(b->descs[i].device.id, a->descs[i].device.id);
    }
    NXT_EQ_INT(b->nsections, a->nsections);
    for (size_t s = 0; s < a->nsections; s++) {
        NXT_EQ_STR(b->sections[s].name, a->sections[s].name);
        NXT_CHECK(bytes_eq(b->sections[s].conn, a->sections[s].conn));
        for (size_t j = 0; j < a->ndesc; j++) {
            nxc__bytes_t ka = a->sections[s].keys ? a->sections[s].keys[j] : (nxc__bytes_t){0};
            NXT_CHECK(bytes_eq(b->sections[s].keys[j], ka));
        }
    }
}

static bool all_zero(const void *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (((const uint8_t *)p)[i]) return false;
    return true;
}

nxc_status_t nxt_md_dec(const char *text, size_t len) {
    nxc__metadata_t md;
    memset(&md, 0xab, sizeof md);
    nxc_status_t st = nxc__md_decode(text, len, &md);
    if (st == NXC_OK) {
        nxc__md_free(&md);
    } else {
        NXT_CHECK(md.descs == NULL && md.blob_ == NULL && md.keys_ == NULL && md.peer_ == NULL);
        NXT_CHECK(all_zero(&md, sizeof md));
        NXT_CHECK(!strncmp(nxc_last_error(), "metadata: ", 10));
    }
    return st;
}

void nxt_bb_bytes(nxt_bb_t *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        NXT_CHECK(b->p);
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

void nxt_bb_u8(nxt_bb_t *b, uint8_t v) {
    nxt_bb_bytes(b, &v, 1);
}
void nxt_bb_u16(nxt_bb_t *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    nxt_bb_bytes(b, x, 2);
}
void nxt_bb_u32(nxt_bb_t *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    nxt_bb_bytes(b, x, 4);
}
void nxt_bb_u64(nxt_bb_t *b, uint64_t v) {
    nxt_bb_u32(b, (uint32_t)v);
    nxt_bb_u32(b, (uint32_t)(v >> 32));
}
void nxt_bb_str16(nxt_bb_t *b, const char *s) {
    nxt_bb_u16(b, (uint16_t)strlen(s));
    nxt_bb_bytes(b, s, strlen(s));
}
void nxt_bb_str8(nxt_bb_t *b, const char *s) {
    nxt_bb_u8(b, (uint8_t)strlen(s));
    nxt_bb_bytes(b, s, strlen(s));
}
