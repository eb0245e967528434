/* SPDX-License-Identifier: Apache-2.0 */
/* Walking an iovec array by a count of bytes (internal): the one place that
 * knows how a partial readv/sendmsg/process_vm_* call advances through it. */
#ifndef NXC_UTIL_IOV_H
#define NXC_UTIL_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Move the position (*idx_p, *off_p: entry, and bytes into it) `bytes`
 * further through the `n` entries of `iov`, which stay as they are (several
 * threads may walk one array). A position never rests at the end of an
 * entry: there it moves to the start of the next. */
static inline void nxc__iov_seek(const struct iovec *iov, size_t n, size_t *idx_p, uint64_t *off_p,
                                 uint64_t bytes) {
    size_t i = *idx_p;
    uint64_t off = *off_p;
    while (bytes && i < n) {
        uint64_t rest = iov[i].iov_len - off;
        if (bytes < rest) {
            off += bytes;
            bytes = 0;
        } else {
            bytes -= rest;
            i++;
            off = 0;
        }
    }
    *idx_p = i;
    *off_p = off;
}

/* Consume `bytes` from entry `idx` on, in place: entries used up are
 * skipped, a partly used one is shortened to what is left. Returns the index
 * of the first entry with bytes left (n when none has). */
static inline size_t nxc__iov_consume(struct iovec *iov, size_t n, size_t idx, uint64_t bytes) {
    uint64_t off = 0;
    nxc__iov_seek(iov, n, &idx, &off, bytes);
    if (idx < n) {
        iov[idx].iov_base = (uint8_t *)iov[idx].iov_base + off;
        iov[idx].iov_len -= (size_t)off;
    }
    while (idx < n && iov[idx].iov_len == 0)
        idx++;
    return idx;
}

/* Bytes [from, to) of the `n` entries of `iov` as entries of `out` (room
 * for n); returns how many. */
static inline size_t nxc__iov_slice(const struct iovec *iov, size_t n, uint64_t from, uint64_t to,
                                    struct iovec *out) {
    size_t i = 0, k = 0;
    uint64_t off = 0;
    nxc__iov_seek(iov, n, &i, &off, from);
    for (uint64_t left = to - from; left > 0 && i < n; i++, off = 0) {
        uint64_t len = iov[i].iov_len - off < left ? iov[i].iov_len - off : left;
        out[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + off, (size_t)len};
        left -= len;
    }
    return k;
}

/* Append [base, base + len) to the `*n` entries of `iov`, growing the last
 * entry instead when the range starts where it ends. process_vm_readv/writev
 * pin and look up the pages of every remote entry separately (about 0.15 us
 * each), so descriptors that lie side by side (a KV-block pool) are worth
 * one entry. The caller keeps *n below the array's size. */
static inline void nxc__iov_append(struct iovec *iov, size_t *n, void *base, size_t len) {
    if (*n > 0 && (uint8_t *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == (uint8_t *)base) {
        iov[*n - 1].iov_len += len;
        return;
    }
    iov[(*n)++] = (struct iovec){base, len};
}

#endif
