/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's rendezvous sockets: the TCP connection the two roles meet
 * over (listen, accept, connect with retries), every wait bounded.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

static void split_hostport(const char *text, char *host, size_t hlen, char *port, size_t plen,
                           const char *defhost) {
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(host, hlen, "%s", text);
        snprintf(port, plen, "18515");
        return;
    }
    size_t n = (size_t)(colon - text);
    if (n == 0)
        snprintf(host, hlen, "%s", defhost);
    else
        snprintf(host, hlen, "%.*s", (int)n, text);
    snprintf(port, plen, "%s", colon + 1);
}

int sock_listen(const char *addr) {
    char host[256], port[32];
    split_hostport(addr, host, sizeof host, port, sizeof port, "127.0.0.1");
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) die("listen %s: %s", addr, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1))
        die("listen %s: %s", addr, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

void sock_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int sock_accept(int lfd, int timeout_s) {
    struct pollfd pfd = {lfd, POLLIN, 0};
    int r;
    do
        r = poll(&pfd, 1, timeout_s * 1000);
    while (r < 0 && errno == EINTR);
    if (r == 0) die("no initiator connected within %d s", timeout_s);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) die("accept: %s", strerror(errno));
    sock_tune(fd);
    return fd;
}

/* Connect, retrying for up to timeout_s (the target may still be starting). */
int sock_connect(const char *addr, int timeout_s) {
    char host[256], port[32];
    split_hostport(addr, host, sizeof host, port, sizeof port, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) die("connect %s: %s", addr, gai_strerror(rc));
    uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull;
    for (;;) {
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
            freeaddrinfo(res);
            sock_tune(fd);
            return fd;
        }
        int e = errno;
        close(fd);
        if (ms_left(deadline) == 0) die("connect %s: %s", addr, strerror(e));
        usleep(100000);
    }
}
