/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounds-checked walks over UCX 1.13's packed worker addresses and rkeys
 * (see ucx_check.h). Every read goes through rd_*(), which fails instead of
 * reading past `len`; the layout comments describe what UCX 1.13 writes.
 */
#include "transport/ucx/ucx_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <ucs/algorithm/crc.h>

/* A cursor over untrusted bytes. */
typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    char *why;
    size_t why_len;
} rd_t;

static bool fail(rd_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(rd_t *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, r->why_len, fmt, ap);
    va_end(ap);
    return false;
}

static bool rd_skip(rd_t *r, size_t n, const char *what) {
    if (n > r->len - r->pos)
        return fail(r, "%s needs %zu bytes at offset %zu of %zu", what, n, r->pos, r->len);
    r->pos += n;
    return true;
}

static bool rd_u8(rd_t *r, uint8_t *v, const char *what) {
    if (!rd_skip(r, 1, what)) return false;
    *v = r->p[r->pos - 1];
    return true;
}

/* --- worker address ------------------------------------------------------------- */

/* Address versions (low nibble of the first byte) and header flags. */
enum { ADDR_V1 = 0, ADDR_V2 = 1 };
enum {
    HDR_DEBUG_INFO = 1u << 0,  /* a worker name string follows the ids */
    HDR_WORKER_UUID = 1u << 1, /* an 8-byte worker uuid */
    HDR_CLIENT_ID = 1u << 2,   /* an 8-byte client id */
    HDR_AM_ONLY = 1u << 3,
    HDR_KNOWN = HDR_DEBUG_INFO | HDR_WORKER_UUID | HDR_CLIENT_ID | HDR_AM_ONLY
};
#define NULL_RESOURCE 0xffu
#define FLAG_LAST 0x80u      /* last device / last transport of a device */
#define MD_EMPTY_DEV 0x80u   /* md byte: the device lists no transports */
#define DEV_NUM_PATHS 0x40u  /* device length byte: a path count follows */
#define DEV_SYS_DEVICE 0x20u /* device length byte: a system device id follows */
#define DEV_LEN_MASK 0x1fu   /* device length byte: the length */
#define IFACE_HAS_EP 0x40u   /* iface length byte: endpoint addresses follow */
#define IFACE_LEN_MASK 0x3fu /* iface length byte: the length */
#define MAX_RESOURCES 128    /* UCP_MAX_RESOURCES */
#define MD_INDEX_BITS 64     /* ucp_md_map_t */
#define IFACE_ATTR_V1_LEN 16 /* 3 floats (overhead, bandwidth, latency) + prio/flags */
#define IFACE_ATTR_V2_LEN 8  /* 3 fp8 + prio + u16 segment size + u16 flags */

/* A length or index in the low `mask` bits of a byte; in version 2 the value
 * `mask` itself means "the real value is the next byte". */
static bool rd_extended(rd_t *r, int version, uint8_t first, unsigned mask, unsigned *v,
                        const char *what) {
    *v = first & mask;
    if (version == ADDR_V2 && *v == mask) {
        uint8_t b;
        if (!rd_u8(r, &b, what)) return false;
        *v = b;
    }
    return true;
}

/* The header: version, flags, ids and the optional worker name. */
static bool addr_header(rd_t *r, int *version) {
    uint8_t b0, flags;
    if (!rd_u8(r, &b0, "the header")) return false;
    *version = b0 & 0x0f;
    if (*version == ADDR_V1) {
        flags = b0 >> 4;
    } else if (*version == ADDR_V2) {
        if (!rd_u8(r, &flags, "the header flags")) return false;
    } else {
        return fail(r, "address version %d (UCX 1.13 knows 1 and 2)", *version + 1);
    }
    if (flags & ~HDR_KNOWN) return fail(r, "unknown header flags 0x%02x", flags);
    /* Version-1 addresses carry the uuid whether or not they say so. */
    if ((*version == ADDR_V1 || (flags & HDR_WORKER_UUID)) && !rd_skip(r, 8, "the worker uuid"))
        return false;
    if ((flags & HDR_CLIENT_ID) && !rd_skip(r, 8, "the client id")) return false;
    if (flags & HDR_DEBUG_INFO) {
        uint8_t n;
        if (!rd_u8(r, &n, "the worker name length") || !rd_skip(r, n, "the worker name"))
            return false;
    }
    return true;
}

/* Transports whose rkey UCX 1.13 packs empty, and the shared-memory ones
 * that only allocate: names as UCX checksums them in addresses. */
typedef struct tl_sums {
    uint16_t zero_key[3], alloc_only[2];
} tl_sums_t;

static tl_sums_t tl_sums(void) {
    return (tl_sums_t){{ucs_crc16_string("self"), ucs_crc16_string("tcp"), ucs_crc16_string("cma")},
                       {ucs_crc16_string("sysv"), ucs_crc16_string("posix")}};
}

static bool sum_in(uint16_t s, const uint16_t *set, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (set[i] == s) return true;
    return false;
}

/* Version-1 interface attributes hold floats that UCX computes with. */
static bool iface_attr_v1(rd_t *r) {
    size_t at = r->pos;
    if (!rd_skip(r, IFACE_ATTR_V1_LEN, "transport attributes")) return false;
    float f[3];
    memcpy(f, r->p + at, sizeof f);
    if (!isfinite(f[0]) || !isfinite(f[1]) || !isfinite(f[2]) || f[1] <= 0)
        return fail(r, "transport attributes at offset %zu are not sane numbers", at);
    return true;
}

/* One transport of a device: name checksum, attributes, address. */
static bool addr_iface(rd_t *r, int version, uint16_t *sum, bool *last) {
    uint8_t b[2], lb;
    if (!rd_u8(r, &b[0], "a transport name") || !rd_u8(r, &b[1], "a transport name")) return false;
    *sum = (uint16_t)(b[0] | b[1] << 8);
    if (version == ADDR_V1 ? !iface_attr_v1(r) : !rd_skip(r, IFACE_ATTR_V2_LEN, "attributes"))
        return false;
    unsigned alen;
    if (!rd_u8(r, &lb, "a transport address length") ||
        !rd_extended(r, version, lb, IFACE_LEN_MASK, &alen, "a transport address length"))
        return false;
    /* A worker address never carries endpoint addresses (UCX packs those
     * only into its own wire-up messages). */
    if (lb & IFACE_HAS_EP) return fail(r, "a transport lists endpoint addresses");
    *last = (lb & FLAG_LAST) != 0;
    return rd_skip(r, alen, "a transport address");
}

/* One device: md index, device address, then its transports. */
static bool addr_device(rd_t *r, int version, nxc__ucx_addr_info_t *info, bool *last) {
    uint8_t mb, lb;
    unsigned md, dlen;
    if (!rd_u8(r, &mb, "a device") ||
        !rd_extended(r, version, mb, version == ADDR_V1 ? 0x1fu : 0x7fu, &md, "an md index"))
        return false;
    if (md >= MD_INDEX_BITS) return fail(r, "md index %u (at most %d)", md, MD_INDEX_BITS - 1);
    if (!rd_u8(r, &lb, "a device address length") ||
        !rd_extended(r, version, lb, DEV_LEN_MASK, &dlen, "a device address length"))
        return false;
    *last = (lb & FLAG_LAST) != 0;
    if ((lb & DEV_NUM_PATHS) && !rd_skip(r, 1, "a path count")) return false;
    if ((lb & DEV_SYS_DEVICE) && !rd_skip(r, 1, "a system device")) return false;
    if (!rd_skip(r, dlen, "a device address")) return false;
    if (mb & MD_EMPTY_DEV) return true;
    tl_sums_t sums = tl_sums();
    uint64_t bit = 1ull << md;
    if (!(info->mds & bit)) info->zero_key |= bit; /* until a transport says otherwise */
    info->mds |= bit;
    for (bool tl_last = false; !tl_last;) {
        if (++info->ifaces > MAX_RESOURCES)
            return fail(r, "more than %d transports", MAX_RESOURCES);
        uint16_t sum;
        if (!addr_iface(r, version, &sum, &tl_last)) return false;
        if (!sum_in(sum, sums.zero_key, 3)) info->zero_key &= ~bit;
        if (sum_in(sum, sums.alloc_only, 2)) info->alloc_only |= bit;
    }
    return true;
}

bool nxc__ucx_addr_check(const uint8_t *addr, size_t len, nxc__ucx_addr_info_t *info_p, char *why,
                         size_t why_len) {
    rd_t r = {addr, len, 0, why, why_len};
    nxc__ucx_addr_info_t info = {0};
    int version;
    if (!addr || !addr_header(&r, &version)) return addr ? false : fail(&r, "no address");
    if (r.pos < len && addr[r.pos] == NULL_RESOURCE) return fail(&r, "the address lists no device");
    for (bool last = false; !last;)
        if (!addr_device(&r, version, &info, &last)) return false;
    if (r.pos != len) return fail(&r, "%zu bytes after the last device", len - r.pos);
    if (!info.mds) return fail(&r, "the address lists no transport");
    if (info_p) *info_p = info;
    return true;
}

/* --- remote key --------------------------------------------------------------------- */

/* Layout: md map (8 bytes), memory type (1 byte), then for each md in the
 * map, lowest first: size (1 byte) and that many bytes of the transport's
 * key. */
bool nxc__ucx_rkey_check(const uint8_t *key, size_t len, const nxc__ucx_addr_info_t *peer,
                         unsigned mem_type, char *why, size_t why_len) {
    rd_t r = {key, len, 0, why, why_len};
    if (!key || !rd_skip(&r, 9, "the md map and memory type"))
        return key ? false : fail(&r, "no key");
    uint64_t map;
    memcpy(&map, key, sizeof map);
    if (key[8] != mem_type) return fail(&r, "memory type %u, expected %u", key[8], mem_type);
    if (!map) return fail(&r, "the key names no memory domain");
    for (unsigned md = 0; md < MD_INDEX_BITS; md++) {
        uint64_t bit = 1ull << md;
        if (!(map & bit)) continue;
        uint8_t n;
        if (!rd_u8(&r, &n, "a transport key size") || !rd_skip(&r, n, "a transport key"))
            return false;
        if (!(peer->mds & bit))
            return fail(&r, "md %u is not one of the peer's (map 0x%llx)", md,
                        (unsigned long long)peer->mds);
        if (peer->alloc_only & bit)
            return fail(&r, "md %u is shared memory that cannot register user memory", md);
        if ((peer->zero_key & bit) && n != 0)
            return fail(&r, "md %u packs an empty key, not %u bytes", md, n);
    }
    if (r.pos != len) return fail(&r, "%zu bytes after the last transport key", len - r.pos);
    return true;
}

bool nxc__ucx_conn_check(const uint8_t *conn, size_t len, nxc__ucx_addr_info_t *info, uint32_t *ip,
                         uint16_t *port, char *why, size_t why_len) {
    if (len <= NXC__UCX_LISTEN_LEN) {
        snprintf(why, why_len, "%zu bytes: too short for a worker address and a listener", len);
        return false;
    }
    const uint8_t *l = conn + len - NXC__UCX_LISTEN_LEN;
    uint16_t p = (uint16_t)(l[4] | l[5] << 8);
    if (memcmp(l, "NXUL", 4) || p == 0 || l[6] || l[7]) {
        snprintf(why, why_len, "no listener record after the worker address");
        return false;
    }
    if (!nxc__ucx_addr_check(conn, len - NXC__UCX_LISTEN_LEN, info, why, why_len)) return false;
    if (ip) memcpy(ip, l + 8, 4);
    if (port) *port = p;
    return true;
}
