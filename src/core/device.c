/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/device.h"
#include "util/error.h"

#define DEVICE_ID_MAX 1023

/* Parse the ordinal after "cuda:"/"gpu:": 1..4 decimal digits, <= 1023. */
static int parse_ordinal(const char *s, size_t n, int *id) {
    if (n == 0 || n > 4) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > DEVICE_ID_MAX) return -1;
    *id = v;
    return 0;
}

nxc_status_t nxc_device_parse(const char *text, nxc_device_t *device_p) {
    if (!text || !device_p) return nxc__err(NXC_ERR_INVALID_PARAM, "device: NULL argument");
    const char *s = text;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;

    nxc_device_t d = {NXC_DEVICE_UNSPECIFIED, 0};
    size_t host = n >= 3 && !strncasecmp(s, "cpu", 3)    ? 3
                  : n >= 4 && !strncasecmp(s, "host", 4) ? 4
                                                         : 0;
    int id = -1;
    if (host) {
        /* "cpu:0" as the reference writes it; there is no other host ordinal */
        if (n == host ||
            (s[host] == ':' && parse_ordinal(s + host + 1, n - host - 1, &id) == 0 && id == 0))
            d.kind = NXC_DEVICE_HOST;
    } else {
        size_t pfx = n >= 4 && !strncasecmp(s, "cuda", 4)  ? 4
                     : n >= 3 && !strncasecmp(s, "gpu", 3) ? 3
                                                           : 0;
        if (pfx && n == pfx) {
            d.kind = NXC_DEVICE_CUDA;
        } else if (pfx && s[pfx] == ':' && parse_ordinal(s + pfx + 1, n - pfx - 1, &d.id) == 0) {
            d.kind = NXC_DEVICE_CUDA;
        }
    }
    if (d.kind == NXC_DEVICE_UNSPECIFIED)
        return nxc__err(NXC_ERR_INVALID_DEVICE,
                        "device \"%.40s\": expected cpu, cpu:0, host, host:0, cuda, cuda:N, "
                        "gpu or gpu:N (N in 0..%d)",
                        text, DEVICE_ID_MAX);
    *device_p = d;
    return NXC_OK;
}

nxc_status_t nxc_device_format(nxc_device_t device, char *buf, size_t len) {
    if (!buf) return nxc__err(NXC_ERR_INVALID_PARAM, "device format: NULL buffer");
    int n;
    if (device.kind == NXC_DEVICE_HOST)
        n = snprintf(buf, len, "cpu");
    else if (device.kind == NXC_DEVICE_CUDA && device.id >= 0 && device.id <= DEVICE_ID_MAX)
        n = snprintf(buf, len, "cuda:%d", device.id);
    else
        return nxc__err(NXC_ERR_INVALID_DEVICE, "device kind %d id %d cannot be formatted",
                        (int)device.kind, device.id);
    if (n < 0 || (size_t)n >= len)
        return nxc__err(NXC_ERR_INVALID_PARAM, "device format: buffer of %zu bytes too small", len);
    return NXC_OK;
}

bool nxc__device_valid(nxc_device_t d) {
    return (d.kind == NXC_DEVICE_HOST && d.id == 0) ||
           (d.kind == NXC_DEVICE_CUDA && d.id >= 0 && d.id <= DEVICE_ID_MAX);
}

nxc_status_t nxc__descs_check(const char *what, const nxc_desc_t *descs, size_t count,
                              size_t *total_p) {
    if (!descs && count) return nxc__err(NXC_ERR_INVALID_PARAM, "%s descriptors: NULL list", what);
    if (count == 0) return nxc__err(NXC_ERR_EMPTY_LIST, "%s descriptors: the list is empty", what);
    if (count > NXC_DESCS_MAX)
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s descriptors: %zu, more than NXC_DESCS_MAX (%d)",
                        what, count, NXC_DESCS_MAX);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const nxc_desc_t *d = &descs[i];
        if (!d->ptr)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptor %zu: ptr is NULL", what, i);
        if (d->size == 0)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptor %zu: size is 0", what, i);
        if ((uintptr_t)d->ptr + d->size < (uintptr_t)d->ptr)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR,
                            "%s descriptor %zu: ptr + size wraps the address space", what, i);
        if (!nxc__device_valid(d->device))
            return nxc__err(NXC_ERR_INVALID_DEVICE, "%s descriptor %zu: device kind %d id %d", what,
                            i, (int)d->device.kind, d->device.id);
        if (d->device.kind != descs[0].device.kind || d->device.id != descs[0].device.id)
            return nxc__err(NXC_ERR_MIXED_DEVICES,
                            "%s descriptor %zu is on another device than descriptor 0; one "
                            "list must use one device",
                            what, i);
        if (total + d->size < total)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptors: total size overflows",
                            what);
        total += d->size;
    }
    *total_p = total;
    return NXC_OK;
}
