/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Raw TCP ping-pong latency, the floor for a small transfer plus its
 * acknowledgement between two hosts (bench/twohost runs it between two
 * network namespaces):
 *
 *   nxc-probe-tcp server ADDR:PORT [REQ [REPLY]]
 *       serve one client: answer every REQ-byte request (default 4096) with
 *       a REPLY-byte reply (default 4) until the client closes. Gives up
 *       when no client comes within 30 s or one goes silent for 10 s.
 *   nxc-probe-tcp client ADDR:PORT [ITERS [REQ [REPLY [SECONDS]]]]
 *       connect (retrying for 10 s while the server starts), 100 untimed
 *       round trips, then ITERS timed ones (default 10000), stopping early
 *       after SECONDS (default 5). Prints one JSON object: {"probe", "req",
 *       "reply", "iters", "p50_us", "p99_us", "min_us", "mean_us"}.
 *
 * One blocking socket per side, TCP_NODELAY, no threads. Every wait is
 * bounded. ADDR is an IPv4 or IPv6 address or a host name.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100
#define IO_TIMEOUT_MS 10000
#define MAX_MSG (64u << 20)

static const char *prog = "nxc-probe-tcp";

static void die(const char *what, const char *detail) {
    fprintf(stderr, "%s: %s%s%s\n", prog, what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned long parse_num(const char *s, const char *what, unsigned long min,
                               unsigned long max) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) die("bad number for", what);
    return v;
}

/* "host:port" or "[v6]:port" -> addrinfo list (caller frees). */
static struct addrinfo *resolve(const char *spec, int passive) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host)
        die("expected ADDR:PORT, got", spec);
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') h++, hl -= 2;
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc) die(spec, gai_strerror(rc));
    return res;
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Wait until fd is ready for `events`, up to timeout_ms: 1 ready, 0 not. */
static int wait_fd(int fd, short events, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("poll", strerror(errno));
        return r;
    }
}

/* Move exactly len bytes; 0 on success, -1 on EOF (reading), dies on
 * errors and on IO_TIMEOUT_MS of silence. */
static int xfer(int fd, char *buf, size_t len, int reading) {
    while (len) {
        if (!wait_fd(fd, reading ? POLLIN : POLLOUT, IO_TIMEOUT_MS))
            die(reading ? "peer silent for 10 s" : "peer not reading for 10 s", NULL);
        ssize_t n = reading ? recv(fd, buf, len, 0) : send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) die(reading ? "recv" : "send", strerror(errno));
        if (n == 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int serve(const char *spec, size_t req, size_t reply) {
    struct addrinfo *res = resolve(spec, 1);
    int lfd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0) die("socket", strerror(errno));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, res->ai_addr, res->ai_addrlen) || listen(lfd, 1)) die(spec, strerror(errno));
    freeaddrinfo(res);
    if (!wait_fd(lfd, POLLIN, 30000)) die("no client within 30 s", NULL);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) die("accept", strerror(errno));
    close(lfd);
    tune(fd);
    char *in = calloc(1, req), *out = calloc(1, reply);
    if (!in || !out) die("out of memory", NULL);
    while (xfer(fd, in, req, 1) == 0)
        if (xfer(fd, out, reply, 0)) break;
    close(fd);
    free(in);
    free(out);
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int client(const char *spec, unsigned long iters, size_t req, size_t reply, double secs) {
    struct addrinfo *res = resolve(spec, 0);
    int fd = -1;
    uint64_t give_up = now_ns() + 10000000000ull;
    while (fd < 0) {
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket", strerror(errno));
        if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
        int e = errno;
        close(fd);
        fd = -1;
        if (now_ns() > give_up) die(spec, strerror(e));
        usleep(100000);
    }
    freeaddrinfo(res);
    tune(fd);
    char *out = malloc(req), *in = malloc(reply);
    uint64_t *lat = malloc(iters * sizeof *lat);
    if (!out || !in || !lat) die("out of memory", NULL);
    memset(out, 0x5a, req);
    for (int i = 0; i < WARMUP; i++)
        if (xfer(fd, out, req, 0) || xfer(fd, in, reply, 1)) die("server closed early", NULL);
    unsigned long n = 0;
    uint64_t stop = now_ns() + (uint64_t)(secs * 1e9);
    for (; n < iters && now_ns() < stop; n++) {
        uint64_t t0 = now_ns();
        if (xfer(fd, out, req, 0) || xfer(fd, in, reply, 1)) die("server closed early", NULL);
        lat[n] = now_ns() - t0;
    }
    close(fd);
    if (n == 0) die("no round trip timed", NULL);
    double sum = 0;
    for (unsigned long i = 0; i < n; i++)
        sum += (double)lat[i];
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("{\"probe\":\"tcp_pingpong\",\"req\":%zu,\"reply\":%zu,\"iters\":%lu,\"p50_us\":%.2f,"
           "\"p99_us\":%.2f,\"min_us\":%.2f,\"mean_us\":%.2f}\n",
           req, reply, n, lat[n / 2] / 1e3, lat[(size_t)((double)(n - 1) * 0.99)] / 1e3,
           lat[0] / 1e3, sum / (double)n / 1e3);
    free(out);
    free(in);
    free(lat);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && !strcmp(argv[1], "server")) {
        size_t req = argc > 3 ? parse_num(argv[3], "REQ", 1, MAX_MSG) : 4096;
        size_t reply = argc > 4 ? parse_num(argv[4], "REPLY", 1, MAX_MSG) : 4;
        return serve(argv[2], req, reply);
    }
    if (argc >= 3 && !strcmp(argv[1], "client")) {
        unsigned long iters = argc > 3 ? parse_num(argv[3], "ITERS", 1, 10000000) : 10000;
        size_t req = argc > 4 ? parse_num(argv[4], "REQ", 1, MAX_MSG) : 4096;
        size_t reply = argc > 5 ? parse_num(argv[5], "REPLY", 1, MAX_MSG) : 4;
        double secs = argc > 6 ? (double)parse_num(argv[6], "SECONDS", 1, 3600) : 5;
        return client(argv[2], iters, req, reply, secs);
    }
    fprintf(stderr,
            "usage: %s server ADDR:PORT [REQ [REPLY]]\n"
            "       %s client ADDR:PORT [ITERS [REQ [REPLY [SECONDS]]]]\n",
            prog, prog);
    return 2;
}
