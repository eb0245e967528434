/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's rendezvous messages: payload buffers, and sending and
 * receiving {magic, type, len} + payload with every I/O bounded.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bench.h"
#include "wire.h"

static void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) die("out of memory");
    b->p = p;
    b->cap = cap;
}
static void put_bytes(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
void put_u64(buf_t *b, uint64_t v) {
    put_bytes(b, &v, 8);
}
void put_str(buf_t *b, const char *s, size_t n) {
    put_u64(b, n);
    put_bytes(b, s, n);
}
uint64_t get_u64(buf_t *b) {
    uint64_t v = 0;
    if (b->len - b->pos < 8) {
        b->bad = true;
        return 0;
    }
    memcpy(&v, b->p + b->pos, 8);
    b->pos += 8;
    return v;
}
/* Points into the buffer; not NUL-terminated. */
const char *get_str(buf_t *b, size_t *n) {
    uint64_t len = get_u64(b);
    if (b->bad || len > b->len - b->pos) {
        b->bad = true;
        *n = 0;
        return "";
    }
    const char *s = (const char *)b->p + b->pos;
    b->pos += len;
    *n = len;
    return s;
}
void buf_clear(buf_t *b) {
    b->len = b->pos = 0, b->bad = false;
}
void buf_free(buf_t *b) {
    free(b->p);
    *b = (buf_t){0};
}

/* Move all `len` bytes before `deadline`; false with errno on failure
 * (ETIMEDOUT when the deadline passed, EPIPE when the peer closed). */
static bool io_full(int fd, void *p, size_t len, bool out, uint64_t deadline) {
    uint8_t *c = p;
    while (len) {
        ssize_t r =
            out ? send(fd, c, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, c, len, MSG_DONTWAIT);
        if (r > 0) {
            c += r;
            len -= (size_t)r;
            continue;
        }
        if (r == 0) {
            errno = EPIPE;
            return false;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
        int left = ms_left(deadline);
        if (left == 0) {
            errno = ETIMEDOUT;
            return false;
        }
        struct pollfd pfd = {fd, out ? POLLOUT : POLLIN, 0};
        if (poll(&pfd, 1, left) < 0 && errno != EINTR) return false;
    }
    return true;
}

static const char *io_why(void) {
    return errno == ETIMEDOUT ? "peer did not answer in time (hung or too slow)"
           : errno == EPIPE   ? "peer closed the connection"
                              : strerror(errno);
}

void msg_send(int fd, uint32_t type, const buf_t *b, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    msg_hdr_t h = {MSG_MAGIC, type, b ? b->len : 0};
    if (!io_full(fd, &h, sizeof h, true, deadline) ||
        (b && b->len && !io_full(fd, b->p, b->len, true, deadline)))
        die("rendezvous: send: %s", io_why());
}

/* Receive one message into b; an M_ERROR from the peer ends the run. */
uint32_t msg_recv(int fd, buf_t *b, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    msg_hdr_t h;
    if (!io_full(fd, &h, sizeof h, false, deadline)) die("rendezvous: receive: %s", io_why());
    if (h.magic != MSG_MAGIC || h.len > MSG_MAX)
        die("rendezvous: bad message from peer (not nxc-bench, or another version)");
    buf_clear(b);
    buf_reserve(b, h.len);
    if (h.len && !io_full(fd, b->p, h.len, false, deadline))
        die("rendezvous: receive: %s", io_why());
    b->len = h.len;
    if (h.type == M_ERROR) {
        size_t n;
        const char *s = get_str(b, &n);
        die("peer failed: %.*s", (int)n, s);
    }
    return h.type;
}

void msg_expect(int fd, buf_t *b, uint32_t type, int timeout_ms) {
    uint32_t t = msg_recv(fd, b, timeout_ms);
    if (t != type) die("rendezvous: expected message %u, got %u", type, t);
}

void send_error(int fd, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    buf_t b = {0};
    put_str(&b, text, strlen(text));
    uint64_t deadline = now_ns() + 2000000000ull;
    msg_hdr_t h = {MSG_MAGIC, M_ERROR, b.len};
    if (io_full(fd, &h, sizeof h, true, deadline)) io_full(fd, b.p, b.len, true, deadline);
    buf_free(&b);
    fprintf(stderr, "nxc-bench %s\n", text); /* text starts with "target: " */
    exit(1);
}
