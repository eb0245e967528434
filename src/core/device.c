/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/device.h"
#include "util/error.h"

#define DEVICE_ID_MAX 1023

/* Parse the ordinal after "cuda:"/"gpu:": 1..4 decimal digits, <= 1023. */
static int parse_ordinal(const char *digits, size_t n, int *id) {
    if (n == 0 || n > 4) return -1;
    int value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)digits[i])) return -1;
        value = value * 10 + (digits[i] - '0');
    }
    if (value > DEVICE_ID_MAX) return -1;
    *id = value;
    return 0;
}

nxc_status_t nxc_device_parse(const char *text, nxc_device_t *device_p) {
    if (!text || !device_p) return nxc__err(NXC_ERR_INVALID_PARAM, "device: NULL argument");
    const char *trimmed = text;
    size_t n = strlen(trimmed);
    while (n && isspace((unsigned char)*trimmed))
        trimmed++, n--;
    while (n && isspace((unsigned char)trimmed[n - 1]))
        n--;

    nxc_device_t device = {NXC_DEVICE_UNSPECIFIED, 0};
    size_t host = n >= 3 && !strncasecmp(trimmed, "cpu", 3)    ? 3
                  : n >= 4 && !strncasecmp(trimmed, "host", 4) ? 4
                                                               : 0;
    int id = -1;
    if (host) {
        /* "cpu:0" as the reference writes it; there is no other host ordinal */
        if (n == host || (trimmed[host] == ':' &&
                          parse_ordinal(trimmed + host + 1, n - host - 1, &id) == 0 && id == 0))
            device.kind = NXC_DEVICE_HOST;
    } else {
        size_t pfx = n >= 4 && !strncasecmp(trimmed, "cuda", 4)  ? 4
                     : n >= 3 && !strncasecmp(trimmed, "gpu", 3) ? 3
                                                                 : 0;
        if (pfx && n == pfx) {
            device.kind = NXC_DEVICE_CUDA;
        } else if (pfx && trimmed[pfx] == ':' &&
                   parse_ordinal(trimmed + pfx + 1, n - pfx - 1, &device.id) == 0) {
            device.kind = NXC_DEVICE_CUDA;
        }
    }
    if (device.kind == NXC_DEVICE_UNSPECIFIED)
        return nxc__err(NXC_ERR_INVALID_DEVICE,
                        "device \"%.40s\": expected cpu, cpu:0, host, host:0, cuda, cuda:N, "
                        "gpu or gpu:N (N in 0..%d)",
                        text, DEVICE_ID_MAX);
    *device_p = device;
    return NXC_OK;
}

nxc_status_t nxc__device_parse_memo(nxc__device_memo_t *memo, const char *s, size_t n,
                                    nxc_device_t *device_p) {
    /* what the encoder writes for host memory, in nearly every text: the
     * parse (a copy, a lower-case compare, a table) was 330 instructions
     * of a 7,300-instruction begin */
    if (n == 3 && !memcmp(s, "cpu", 3)) {
        *device_p = (nxc_device_t){NXC_DEVICE_HOST, 0};
        return NXC_OK;
    }
    if (memo->len == n && n > 0 && !memcmp(memo->text, s, n)) {
        *device_p = memo->device;
        return NXC_OK;
    }
    char text[64];
    if (n >= sizeof text) return nxc__err(NXC_ERR_INVALID_DEVICE, "device text too long");
    memcpy(text, s, n);
    text[n] = '\0';
    nxc_status_t st = nxc_device_parse(text, device_p);
    if (st == NXC_OK && n > 0 && n <= sizeof memo->text) {
        memcpy(memo->text, s, n);
        memo->len = n;
        memo->device = *device_p;
    }
    return st;
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

bool nxc__device_valid(nxc_device_t device) {
    return (device.kind == NXC_DEVICE_HOST && device.id == 0) ||
           (device.kind == NXC_DEVICE_CUDA && device.id >= 0 && device.id <= DEVICE_ID_MAX);
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
        const nxc_desc_t *desc = &descs[i];
        if (!desc->ptr)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptor %zu: ptr is NULL", what, i);
        if (desc->size == 0)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptor %zu: size is 0", what, i);
        if ((uintptr_t)desc->ptr + desc->size < (uintptr_t)desc->ptr)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR,
                            "%s descriptor %zu: ptr + size wraps the address space", what, i);
        if (!nxc__device_valid(desc->device))
            return nxc__err(NXC_ERR_INVALID_DEVICE, "%s descriptor %zu: device kind %d id %d", what,
                            i, (int)desc->device.kind, desc->device.id);
        if (desc->device.kind != descs[0].device.kind || desc->device.id != descs[0].device.id)
            return nxc__err(NXC_ERR_MIXED_DEVICES,
                            "%s descriptor %zu is on another device than descriptor 0; one "
                            "list must use one device",
                            what, i);
        if (total + desc->size < total)
            return nxc__err(NXC_ERR_INVALID_DESCRIPTOR, "%s descriptors: total size overflows",
                            what);
        total += desc->size;
    }
    *total_p = total;
    return NXC_OK;
}
