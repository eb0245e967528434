/* SPDX-License-Identifier: Apache-2.0 */
#include "mdtool.h"

#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "nxt.h"

char *nxt_b64(const void *bytes, size_t len) {
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    NXT_CHECK(out);
    sodium_bin2base64(out, cap, bytes, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

uint8_t *nxt_unb64(const char *b64, size_t n, size_t *len) {
    uint8_t *bin = malloc(n + 1);
    NXT_CHECK(bin);
    NXT_CHECK(sodium_base642bin(bin, n + 1, b64, n, NULL, len, NULL,
                                sodium_base64_VARIANT_ORIGINAL) == 0);
    return bin;
}

/* The base64 text of a blob (zlib'd: version 1) or a part (raw when its
 * first byte is 'N': version 2) after patch() was applied to its bytes. */
static char *patched(const char *b64, size_t n, bool raw_ok,
                     void (*patch)(uint8_t *blob, size_t len, void *arg), void *arg) {
    size_t zlen;
    uint8_t *z = nxt_unb64(b64, n, &zlen);
    if (raw_ok && zlen && z[0] == 'N') {
        patch(z, zlen, arg);
        char *out = nxt_b64(z, zlen);
        free(z);
        return out;
    }
    uLongf blen = 1 << 20;
    uint8_t *blob = malloc(blen);
    NXT_CHECK(uncompress(blob, &blen, z, zlen) == Z_OK);
    patch(blob, blen, arg);
    uLongf zcap = compressBound(blen);
    uint8_t *z2 = malloc(zcap);
    NXT_CHECK(compress2(z2, &zcap, blob, blen, 6) == Z_OK);
    char *out = nxt_b64(z2, zcap);
    free(z);
    free(blob);
    free(z2);
    return out;
}

char *nxt_md_patch_blob(const char *md, void (*patch)(uint8_t *blob, size_t len, void *arg),
                        void *arg) {
    json_t *root = json_loads(md, 0, NULL);
    NXT_CHECK(root);
    const char *nixl = json_string_value(json_object_get(root, "nixl_metadata"));
    NXT_CHECK(nixl && !strncmp(nixl, "b64:", 4));
    const char *dot = strchr(nixl, '.'); /* version 2: "b64:" peer "." op */
    const char *b64 = dot ? dot + 1 : nixl + 4;
    char *text = patched(b64, strlen(b64), dot != NULL, patch, arg);
    size_t keep = (size_t)(b64 - nixl);
    char *out = malloc(keep + strlen(text) + 1);
    NXT_CHECK(out);
    memcpy(out, nixl, keep);
    strcpy(out + keep, text);
    json_object_set_new(root, "nixl_metadata", json_string(out));
    char *result = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    free(text);
    free(out);
    return result;
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

char *nxt_md_text(const char *nixl, int kind, const char *key, size_t ndesc) {
    json_t *root = json_object(), *arr = json_array();
    for (size_t i = 0; i < ndesc; i++)
        json_array_append_new(arr,
                              json_pack("{s:s,s:I,s:I}", "device", "cpu", "ptr",
                                        (json_int_t)(4096 * (i + 1)), "size", (json_int_t)4096));
    json_object_set_new(root, "descriptors", arr);
    json_object_set_new(root, "nixl_metadata", json_string(nixl));
    json_object_set_new(root, "notification_key", json_string(key));
    json_object_set_new(root, "operation_kind", json_integer(kind));
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    NXT_CHECK(text);
    json_decref(root);
    return text;
}
