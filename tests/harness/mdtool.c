/* SPDX-License-Identifier: Apache-2.0 */
#include "mdtool.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "nxt.h"

char *nxt_md_patch_blob(const char *md, void (*patch)(uint8_t *blob, size_t len, void *arg),
                        void *arg) {
    json_t *root = json_loads(md, 0, NULL);
    NXT_CHECK(root);
    const char *b64 = json_string_value(json_object_get(root, "nixl_metadata"));
    NXT_CHECK(b64 && !strncmp(b64, "b64:", 4));
    size_t zlen, cap = strlen(b64);
    uint8_t *z = malloc(cap);
    NXT_CHECK(sodium_base642bin(z, cap, b64 + 4, strlen(b64 + 4), NULL, &zlen, NULL,
                                sodium_base64_VARIANT_ORIGINAL) == 0);
    uLongf blen = 1 << 20;
    uint8_t *blob = malloc(blen);
    NXT_CHECK(uncompress(blob, &blen, z, zlen) == Z_OK);
    patch(blob, blen, arg);
    uLongf zcap = compressBound(blen);
    uint8_t *z2 = malloc(zcap);
    NXT_CHECK(compress2(z2, &zcap, blob, blen, 6) == Z_OK);
    size_t b64cap = sodium_base64_ENCODED_LEN(zcap, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(b64cap + 4);
    memcpy(out, "b64:", 4);
    sodium_bin2base64(out + 4, b64cap, z2, zcap, sodium_base64_VARIANT_ORIGINAL);
    json_object_set_new(root, "nixl_metadata", json_string(out));
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    free(z);
    free(blob);
    free(z2);
    free(out);
    return text;
}

char *nxt_md_patch_desc(const char *md, size_t i, int64_t ptr_delta, uint64_t size,
                        const char *device) {
    json_t *root = json_loads(md, 0, NULL);
    NXT_CHECK(root);
    json_t *d = json_array_get(json_object_get(root, "descriptors"), i);
    NXT_CHECK(d);
    json_int_t ptr = json_integer_value(json_object_get(d, "ptr"));
    json_object_set_new(d, "ptr", json_integer(ptr + ptr_delta));
    if (size) json_object_set_new(d, "size", json_integer((json_int_t)size));
    if (device) json_object_set_new(d, "device", json_string(device));
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

char *nxt_md_set_kind(const char *md, int kind) {
    json_t *root = json_loads(md, 0, NULL);
    NXT_CHECK(root);
    json_object_set_new(root, "operation_kind", json_integer(kind));
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}
