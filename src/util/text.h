/* SPDX-License-Identifier: Apache-2.0 */
/* Small text checks and conversions (internal). */
#ifndef NXC_UTIL_TEXT_H
#define NXC_UTIL_TEXT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Copy `src` into `dst` of `cap` bytes (cap >= 1), cut short if need be,
 * always NUL-terminated: what snprintf(dst, cap, "%s", src) does, without
 * the formatter, whose code and tables were 6% of an op's start from cold
 * caches. */
static inline void nxc__str_copy(char *dst, size_t cap, const char *src) {
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A visible ASCII character: 0x21..0x7e, no space, no control byte. */
static inline bool nxc__visible(unsigned char c) {
    return c >= 0x21 && c <= 0x7e;
}

/* How many leading bytes of `s` (of `n`) are ASCII other than NUL, 0x01..
 * 0x7f: eight at a time, as most of what nxc parses is ASCII text. */
static inline size_t nxc__ascii_span(const unsigned char *s, size_t n) {
    const uint64_t high = 0x8080808080808080ull, ones = 0x0101010101010101ull;
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        if ((w & high) || ((w - ones) & ~w & high)) break; /* a high bit, or a zero byte */
    }
    while (i < n && s[i] != 0 && s[i] < 0x80)
        i++;
    return i;
}

/* Sixteen bytes as one vector (GCC's and clang's vector extension): a
 * comparison tests all of them at once (SSE2 on x86-64, NEON on arm64). */
typedef unsigned char nxc__v16_t __attribute__((vector_size(16)));

/* Are the whole 16-byte blocks of `s` (of `n`) all within lo..0x7e, and
 * (json) free of '"' and '\\'? *done: the bytes they cover. Metadata
 * carries hundreds of such bytes, checked at every begin: 400 bytes take
 * about 250 instructions, against 1,100 eight at a time with word tests
 * and 2,000 a byte at a time. */
static inline bool nxc__words_within(const unsigned char *s, size_t n, unsigned lo, bool json,
                                     size_t *done) {
    nxc__v16_t bad = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        nxc__v16_t v;
        memcpy(&v, s + i, 16);
        bad |= (nxc__v16_t)((v < (unsigned char)lo) | (v > 0x7e));
        if (json) bad |= (nxc__v16_t)((v == '"') | (v == '\\'));
    }
    uint64_t w[2];
    memcpy(w, &bad, sizeof w);
    *done = i;
    return !(w[0] | w[1]);
}

/* Are all `n` bytes of `s` visible ASCII characters, 0x21..0x7e (names,
 * keys and transport names that travel in metadata)? */
static inline bool nxc__printable(const char *s, size_t n) {
    size_t i;
    if (!nxc__words_within((const unsigned char *)s, n, 0x21, false, &i)) return false;
    for (; i < n; i++)
        if (!nxc__visible((unsigned char)s[i])) return false;
    return true;
}

/* Do all `n` bytes of `s` stand in a JSON string as themselves: 0x20..0x7e
 * other than '"' and '\\' (no escape needed)? */
static inline bool nxc__json_plain(const unsigned char *s, size_t n) {
    size_t i;
    if (!nxc__words_within(s, n, 0x20, true, &i)) return false;
    for (; i < n; i++)
        if (s[i] - 0x20u > 0x5eu || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, at most
 * U+10FFFF (yajl, for one, checks only that the bytes follow the
 * lead/continuation pattern). */
static inline bool nxc__utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        if (len == 0 || n - i < len) return false;
        unsigned c1 = s[i + 1];
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (c1 < lo || c1 > hi) return false;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        i += len;
    }
    return true;
}

/* Is the NUL-terminated `s` 1..`max` visible ASCII characters (a name or
 * key that travels in metadata)? */
static inline bool nxc__printable_text(const char *s, size_t max) {
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max && nxc__printable(s, n);
}

/* `n` bytes as 2n lowercase hex digits and a NUL; `out` holds 2n + 1. */
static inline void nxc__hex(char *out, const uint8_t *bytes, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A dotted IPv4 address (the form a listener binds to)? */
static inline bool nxc__ipv4_text(const char *s) {
    struct in_addr in;
    return inet_pton(AF_INET, s, &in) == 1;
}

#endif
