/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench --check's data pattern: the sender fills each op's bytes with
 * it, the receiver counts the bytes that differ.
 */
#include <string.h>

#include "bench.h"

/* 8-byte words that depend on the op index and the word's offset within
 * the op, so stale, shifted or missing data fails. */
static inline uint64_t pat_word(uint64_t seed, uint64_t k, uint64_t w) {
    uint64_t x = seed ^ ((k + 1) * 0x9e3779b97f4a7c15ull) ^ (w * 0xbf58476d1ce4e5b9ull);
    x ^= x >> 31;
    return x | 1;
}

/* The op's bytes are `batch` blocks of `block` at base + j * block. */
void pat_fill(uint64_t seed, uint8_t *base, uint64_t block, uint64_t batch, uint64_t k) {
    uint64_t off = 0;
    for (uint64_t j = 0; j < batch; j++) {
        uint8_t *p = base + j * block;
        for (uint64_t i = 0; i < block; i++, off++) {
            if ((off & 7) == 0 && i + 8 <= block) {
                uint64_t w = pat_word(seed, k, off >> 3);
                memcpy(p + i, &w, 8);
                i += 7;
                off += 7;
            } else {
                p[i] = (uint8_t)(pat_word(seed, k, off >> 3) >> (8 * (off & 7)));
            }
        }
    }
}

/* Number of bytes that differ from the pattern of op k. */
uint64_t pat_check(uint64_t seed, const uint8_t *base, uint64_t block, uint64_t batch, uint64_t k) {
    uint64_t off = 0, bad = 0;
    for (uint64_t j = 0; j < batch; j++) {
        const uint8_t *p = base + j * block;
        for (uint64_t i = 0; i < block; i++, off++) {
            uint64_t w = pat_word(seed, k, off >> 3);
            if ((off & 7) == 0 && i + 8 <= block) {
                uint64_t got;
                memcpy(&got, p + i, 8);
                if (got != w)
                    for (int b = 0; b < 8; b++)
                        bad += ((got ^ w) >> (8 * b) & 0xff) != 0;
                i += 7;
                off += 7;
            } else {
                bad += p[i] != (uint8_t)(w >> (8 * (off & 7)));
            }
        }
    }
    return bad;
}
