/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The set of unknown keys met in one metadata text, for the rule that no
 * object holds a key twice (metadata_json.c knows its own fields by a bit
 * per object; this is for every other key). One entry per key: the 4 bytes
 * of its object's serial number, then the key.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/metadata_json.h"

/* The table's hash is keyed per process, so a text cannot be built to
 * make all of its keys collide. */
static uint8_t g_hash_key[crypto_shorthash_KEYBYTES];
#define HASH_FUNCTION(keyptr, keylen, hashv)                                                       \
    do {                                                                                           \
        uint8_t h_[crypto_shorthash_BYTES];                                                        \
        crypto_shorthash(h_, (const unsigned char *)(keyptr), (keylen), g_hash_key);               \
        memcpy(&(hashv), h_, sizeof(hashv));                                                       \
    } while (0)
#include "util/hash.h"

struct nxc__md_keyset {
    UT_hash_handle hh;
    size_t len;
    uint8_t bytes[];
};

static void hash_key_init(void) {
    randombytes_buf(g_hash_key, sizeof g_hash_key); /* libsodium started by nxc__md_decode */
}

int nxc__md_keyset_add(nxc__md_keyset_t **set, uint32_t serial, const unsigned char *key,
                       size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, hash_key_init);
    nxc__md_keyset_t *k = malloc(sizeof *k + 4 + n);
    if (!k) return -1;
    k->len = 4 + n;
    memcpy(k->bytes, &serial, 4);
    memcpy(k->bytes + 4, key, n);
    nxc__md_keyset_t *old = NULL;
    HASH_FIND(hh, *set, k->bytes, k->len, old);
    if (old) {
        free(k);
        return 0;
    }
    HASH_ADD_KEYPTR(hh, *set, k->bytes, k->len, k);
    HASH_FIND(hh, *set, k->bytes, k->len, old);
    if (!old) { /* uthash could not grow its table (HASH_NONFATAL_OOM) */
        free(k);
        return -1;
    }
    return 1;
}

void nxc__md_keyset_free(nxc__md_keyset_t **set) {
    nxc__md_keyset_t *k, *tmp;
    HASH_ITER(hh, *set, k, tmp) {
        HASH_DEL(*set, k);
        free(k);
    }
}
