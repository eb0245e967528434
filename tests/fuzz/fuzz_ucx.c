/* SPDX-License-Identifier: Apache-2.0 */
/* The UCX address and rkey checks (src/transport/ucx/ucx_check.c).
 *
 * Part 1: every worker address and rkey this machine's UCX produces passes,
 * over the configurations nxc may meet (transport subsets incl. shared
 * memory, address version 2, debug info in addresses), for buffers of
 * several sizes and places. A check stricter than UCX is acceptable only
 * while this holds.
 *
 * Part 2: a seeded, bounded mutation campaign (bit flips, truncation,
 * insertion, random bytes) over those real addresses and keys: the checks
 * must never read out of bounds (ASan/UBSan in the sanitizer build) and must
 * refuse what no longer parses exactly.
 *
 * Usage: fuzz_ucx [iterations] [seed]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#include "transport/ucx/ucx_check.h"

#define MAX_SAMPLES 64

typedef struct sample {
    uint8_t *bytes;
    size_t len;
    int addr; /* index of the address a key belongs to; -1 for addresses */
} sample_t;

static sample_t addrs[MAX_SAMPLES], keys[MAX_SAMPLES];
static nxc__ucx_addr_info_t infos[MAX_SAMPLES];
static int naddrs, nkeys, failures;

static void fail(const char *what, const char *config, const char *why) {
    fprintf(stderr, "FAIL: %s of UCX configured %s refused: %s\n", what, config, why);
    failures++;
}

static uint8_t *dup_bytes(const void *p, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, p, n);
    return b;
}

/* A UCX context configured with `kv` ("KEY=VALUE;..."), its worker address
 * and the rkeys of a few buffers: each must pass the checks. */
static void real_samples(const char *kv) {
    ucp_config_t *cfg;
    if (ucp_config_read(NULL, NULL, &cfg) != UCS_OK) abort();
    char text[256];
    snprintf(text, sizeof text, "%s", kv);
    for (char *save, *item = strtok_r(text, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        *eq = '\0';
        if (ucp_config_modify(cfg, item, eq + 1) != UCS_OK) {
            printf("  (UCX has no setting %s here; skipped)\n", item);
            ucp_config_release(cfg);
            return;
        }
    }
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                       .features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP};
    ucp_context_h ctx;
    ucs_status_t s = ucp_init(&pp, cfg, &ctx);
    ucp_config_release(cfg);
    if (s != UCS_OK) {
        printf("  %-40s: UCX does not start (%s); skipped\n", kv, ucs_status_string(s));
        return;
    }
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SERIALIZED};
    ucp_worker_h w;
    if (ucp_worker_create(ctx, &wp, &w) != UCS_OK) abort();
    ucp_worker_attr_t wa = {.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS};
    if (ucp_worker_query(w, &wa) != UCS_OK) abort();
    char why[256];
    nxc__ucx_addr_info_t info;
    if (!nxc__ucx_addr_check((const uint8_t *)wa.address, wa.address_length, &info, why,
                             sizeof why))
        fail("the worker address", kv, why);
    int ai = naddrs;
    if (naddrs < MAX_SAMPLES) {
        infos[naddrs] = info;
        addrs[naddrs++] =
            (sample_t){dup_bytes(wa.address, wa.address_length), wa.address_length, -1};
    }
    printf("  %-40s: address of %zu bytes, %u transports, mds 0x%llx", kv, wa.address_length,
           info.ifaces, (unsigned long long)info.mds);
    static char small[64], page[4096] __attribute__((aligned(4096)));
    size_t sizes[] = {1, 4096, 1u << 20, 8u << 20};
    for (int i = 0; i < 6; i++) {
        void *buf = i == 0 ? small : i == 1 ? page : malloc(sizes[i - 2]);
        size_t len = i == 0 ? sizeof small : i == 1 ? sizeof page : sizes[i - 2];
        ucp_mem_map_params_t mp = {.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                                                 UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                                   .address = buf,
                                   .length = len};
        ucp_mem_h memh;
        void *packed;
        size_t plen;
        if (ucp_mem_map(ctx, &mp, &memh) != UCS_OK) abort();
        if (ucp_rkey_pack(ctx, memh, &packed, &plen) != UCS_OK) abort();
        if (!nxc__ucx_rkey_check(packed, plen, &info, UCS_MEMORY_TYPE_HOST, why, sizeof why))
            fail("an rkey", kv, why);
        if (i == 2) printf(", rkey of %zu bytes\n", plen);
        if (nkeys < MAX_SAMPLES) keys[nkeys++] = (sample_t){dup_bytes(packed, plen), plen, ai};
        ucp_rkey_buffer_release(packed);
        ucp_mem_unmap(ctx, memh);
        if (i >= 2) free(buf);
    }
    ucp_worker_release_address(w, wa.address);
    ucp_worker_destroy(w);
    ucp_cleanup(ctx);
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A mutated copy of `in` in a buffer of exactly the new length (so ASan sees
 * any read past it). */
static uint8_t *mutant(const sample_t *in, uint64_t *s, size_t *len_p) {
    size_t len = in->len, n = len;
    uint8_t tmp[1024];
    memcpy(tmp, in->bytes, len);
    switch (rnd(s) % 5) {
    case 0: /* 1-3 bit flips */
        for (int k = 1 + (int)(rnd(s) % 3); k > 0; k--) {
            size_t bit = rnd(s) % (len * 8);
            tmp[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        break;
    case 1: n = rnd(s) % len; break; /* truncation */
    case 2:                          /* a byte set to a boundary value */
        tmp[rnd(s) % len] = (uint8_t[]){0, 0x1f, 0x3f, 0x7f, 0x80, 0xff}[rnd(s) % 6];
        break;
    case 3: /* bytes inserted */
        if (len < sizeof tmp - 16) {
            size_t at = rnd(s) % len, k = 1 + rnd(s) % 16;
            memmove(tmp + at + k, tmp + at, len - at);
            for (size_t i = 0; i < k; i++)
                tmp[at + i] = (uint8_t)rnd(s);
            n = len + k;
        }
        break;
    default: /* random bytes */
        n = 1 + rnd(s) % (len + 32);
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)rnd(s);
    }
    *len_p = n;
    return dup_bytes(tmp, n);
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 100000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
    /* Part 1 */
    const char *configs[] = {"TLS=all",
                             "TLS=tcp",
                             "TLS=self,tcp",
                             "TLS=sm,tcp",
                             "TLS=sysv,posix,cma,tcp",
                             "TLS=all;ADDRESS_VERSION=v2",
                             "TLS=all;ADDRESS_DEBUG_INFO=y",
                             "TLS=tcp;ADDRESS_VERSION=v2;ADDRESS_DEBUG_INFO=y",
                             "TLS=all;UNIFIED_MODE=n;PROTO_ENABLE=y"};
    printf("real addresses and rkeys:\n");
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        real_samples(configs[i]);
    if (!naddrs || !nkeys) {
        fprintf(stderr, "FAIL: no sample\n");
        return 1;
    }
    /* Part 2 */
    uint64_t s = seed;
    long pass_a = 0, pass_k = 0;
    char why[256];
    for (long i = 0; i < iters; i++) {
        size_t n;
        const sample_t *a = &addrs[rnd(&s) % (uint64_t)naddrs];
        uint8_t *m = mutant(a, &s, &n);
        nxc__ucx_addr_info_t info;
        pass_a += nxc__ucx_addr_check(m, n, &info, why, sizeof why);
        free(m);
        const sample_t *k = &keys[rnd(&s) % (uint64_t)nkeys];
        m = mutant(k, &s, &n);
        pass_k += nxc__ucx_rkey_check(m, n, &infos[k->addr], UCS_MEMORY_TYPE_HOST, why, sizeof why);
        free(m);
    }
    printf("%ld mutated addresses and %ld mutated rkeys (seed %llu): %ld and %ld still pass "
           "(harmless changes: ids, attributes, addresses' contents)\n",
           iters, iters, (unsigned long long)seed, pass_a, pass_k);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
