/* SPDX-License-Identifier: Apache-2.0 */
/* Image embeddings without a vision model: every value is a function of the
 * request id and its index, so the receiver can check each byte by
 * recomputing it instead of trusting a checksum. */
#include <stdint.h>
#include <string.h>

#include "demo.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A finite fp16 of magnitude in [2^-8, 1): random sign and mantissa,
 * exponent 7..14, so the data looks like activations rather than NaN-laden
 * noise. Branch-free so the compiler can vectorise it. */
static uint16_t to_half(uint16_t r) {
    return (uint16_t)((r & 0x83ffu) | ((7u + ((r >> 10) & 7u)) << 10));
}

/* Element k is lane k % 4 of output k / 4 of the splitmix64 sequence that
 * starts at `seed`, so any block can be recomputed on its own. `first`
 * must be a multiple of 4 (both callers guarantee it). */
static void fill_block(uint16_t *dst, size_t first, size_t count, uint64_t seed) {
    const uint64_t step = 0x9e3779b97f4a7c15ull;
    size_t g0 = first / 4, full = count / 4;
    for (size_t g = 0; g < full; g++) {
        uint64_t r = splitmix64(seed + (g0 + g) * step);
        for (int j = 0; j < 4; j++)
            dst[4 * g + j] = to_half((uint16_t)(r >> (16 * j)));
    }
    uint64_t r = splitmix64(seed + (g0 + full) * step);
    for (size_t j = 0; j < count % 4; j++)
        dst[4 * full + j] = to_half((uint16_t)(r >> (16 * j)));
}

static uint64_t seed_of(uint64_t request_id) {
    return splitmix64(request_id ^ 0x6e78636d6dull);
}

void embed_fill(uint16_t *dst, size_t count, uint64_t request_id) {
    fill_block(dst, 0, count, seed_of(request_id));
}

size_t embed_verify(const uint16_t *src, size_t count, uint64_t request_id) {
    enum { BLOCK = 4096 };
    uint16_t want[BLOCK];
    uint64_t seed = seed_of(request_id);
    for (size_t first = 0; first < count; first += BLOCK) {
        size_t n = count - first < BLOCK ? count - first : BLOCK;
        fill_block(want, first, n, seed);
        if (memcmp(want, src + first, n * sizeof want[0]) == 0) continue;
        const unsigned char *a = (const void *)want, *b = (const void *)(src + first);
        size_t i = 0;
        while (a[i] == b[i])
            i++;
        return first * sizeof want[0] + i;
    }
    return SIZE_MAX;
}
