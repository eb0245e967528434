/* SPDX-License-Identifier: Apache-2.0 */
/* The request channel: a stream socket carrying messages framed by a 4-byte
 * big-endian length. It stands in for the request plane of a serving stack
 * (the bytes of the embeddings never travel here, only small texts). */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "demo.h"

/* Messages are small texts plus one metadata blob; refuse anything larger
 * than the metadata limit with headroom, so a corrupt length cannot make us
 * allocate gigabytes. */
#define CHAN_MAX (NXC_METADATA_MAX + 64 * 1024)

static int send_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        /* MSG_NOSIGNAL: a dead peer must be an error here, not a SIGPIPE. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "%s: channel: send: %s\n", demo_role,
                    errno == EPIPE ? "peer closed the channel (did it exit?)" : strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int chan_send(int fd, const char *text) {
    size_t len = strlen(text);
    uint32_t hdr = htonl((uint32_t)len);
    if (send_all(fd, &hdr, sizeof hdr) != 0) return -1;
    return send_all(fd, text, len);
}

/* Read exactly len bytes, each wait bounded by timeout_ms. */
static int recv_all(int fd, void *buf, size_t len, int timeout_ms) {
    char *p = buf;
    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            fprintf(stderr, "%s: channel: no message from the peer within %d ms\n", demo_role,
                    timeout_ms);
            return -1;
        }
        ssize_t n = r < 0 ? -1 : read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "%s: channel: %s\n", demo_role,
                    n == 0 ? "peer closed the channel (did it exit?)" : strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

char *chan_recv(int fd, int timeout_ms) {
    uint32_t hdr;
    if (recv_all(fd, &hdr, sizeof hdr, timeout_ms) != 0) return NULL;
    size_t len = ntohl(hdr);
    if (len > CHAN_MAX) {
        fprintf(stderr, "%s: channel: message of %zu bytes is over the %d-byte limit\n", demo_role,
                len, (int)CHAN_MAX);
        return NULL;
    }
    char *text = malloc(len + 1);
    if (!text || recv_all(fd, text, len, timeout_ms) != 0) {
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}
