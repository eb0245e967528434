/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tcp transport: the stream engine over TCP. The bytes travel in the
 * stream, straight from the registered buffers into the socket (sendmsg with
 * iovecs over the op's memory) and from the socket into them (readv): no
 * staging copy. Transfers of at least 2 x NXC_TCP_STRIPE_MIN bytes are split
 * over up to NXC_TCP_STREAMS connections.
 *
 * Metadata: the section's connection info is the text
 * "<ipv4>[,<ipv4>...]:<port>", every address this connector listens on (with
 * the wildcard address: every up IPv4 interface, loopback last). The active
 * side tries them in order; a HELLO naming the wanted connector makes sure it
 * reached the right one.
 *
 * Dead peers: TCP keepalive and TCP_USER_TIMEOUT, both set from
 * NXC_TCP_TIMEOUT_MS (default 10 s), close a connection whose peer stopped
 * answering; a frame left half-sent that long closes it too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/stream/stream.h"
#include "util/env.h"
#include "util/error.h"
#include "util/log.h"
#include "util/text.h"

#define INFO_MAX 512

typedef struct tcp_tp {
    stream_tp_t s;
    char info[INFO_MAX]; /* "<addr>,...:<port>" */
    int timeout_ms;
} tcp_tp_t;

static tcp_tp_t *tcp_of(stream_tp_t *t) {
    return (tcp_tp_t *)t;
}

/* The attempt-th address of "a,b,c:port"; false when there is none. */
static bool info_addr(const uint8_t *info, size_t len, unsigned attempt, struct sockaddr_in *sa) {
    char text[INFO_MAX];
    if (len == 0 || len >= sizeof text) return false;
    memcpy(text, info, len);
    text[len] = '\0';
    char *colon = strrchr(text, ':');
    if (!colon) return false;
    *colon = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) return false;
    char *save = NULL, *a = strtok_r(text, ",", &save);
    for (unsigned i = 0; a && i < attempt; i++)
        a = strtok_r(NULL, ",", &save);
    if (!a) return false;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, a, &sa->sin_addr) == 1;
}

static int tcp_connect(stream_tp_t *t, const nxc__metadata_t *md, const nxc__md_section_t *sec,
                       unsigned attempt) {
    struct sockaddr_in sa;
    if (!info_addr(sec->conn.data, sec->conn.len, attempt, &sa)) return -2;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    t->fl->tune(t, fd);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void tcp_tune(stream_tp_t *t, int fd) {
    int one = 1, ms = tcp_of(t)->timeout_ms;
    int idle = ms / 2000 > 0 ? ms / 2000 : 1, intvl = 1;
    int cnt = (ms / 1000 - idle) > 1 ? ms / 1000 - idle : 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    unsigned int uto = (unsigned int)ms;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
}

static const stream_flavour_t tcp_flavour = {
    .inline_data = true,
    .max_conns = 8,
    .max_stripes = 2,
    .stripe_min = 4u << 20,
    .connect = tcp_connect,
    .tune = tcp_tune,
    /* no copy(): the bytes travel in the stream (inline_data) */
};

/* "a,b,...:port" for every address the listener is reachable at. */
static void make_info(tcp_tp_t *t, const char *bind_addr, int port) {
    size_t used = 0;
    char *out = t->info;
    if (strcmp(bind_addr, "0.0.0.0") != 0) {
        used = (size_t)snprintf(out, INFO_MAX, "%s", bind_addr);
    } else {
        struct ifaddrs *ifs = NULL;
        if (getifaddrs(&ifs) == 0) {
            for (int loop = 0; loop < 2; loop++) /* loopback last */
                for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
                    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
                        !(i->ifa_flags & IFF_UP) || !!(i->ifa_flags & IFF_LOOPBACK) != loop)
                        continue;
                    char a[INET_ADDRSTRLEN];
                    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, sizeof a);
                    if (used + strlen(a) + 8 < INFO_MAX)
                        used += (size_t)snprintf(out + used, INFO_MAX - used, "%s%s",
                                                 used ? "," : "", a);
                }
            freeifaddrs(ifs);
        }
        if (used == 0) used = (size_t)snprintf(out, INFO_MAX, "127.0.0.1");
    }
    snprintf(out + used, INFO_MAX - used, ":%d", port);
}

/* tcp.<key> in the connector's options; NXC_TCP_<KEY> otherwise. */
static const nxc__tp_option_t tcp_options[] = {
    {.key = "address",
     .env = "NXC_TCP_ADDRESS",
     .valid = nxc__ipv4_text,
     .accepted = "an IPv4 address in dotted form"},
    {.key = "port", .env = "NXC_TCP_PORT", .lo = 0, .hi = 65535},
    {.key = "timeout_ms", .env = "NXC_TCP_TIMEOUT_MS", .lo = 100, .hi = 3600000},
    {.key = "streams", .env = "NXC_TCP_STREAMS", .lo = 1, .hi = NXC__WIRE_MAX_STRIPES},
};

static nxc_status_t tcp_create(nxc_connector_t *c, nxc__tp_t **tp_p) {
    tcp_tp_t *t = calloc(1, sizeof *t);
    if (!t) return nxc__err(NXC_ERR_NO_MEMORY, "tcp: out of memory");
    t->s.lfd = t->s.epfd = -1;
    t->timeout_ms = (int)nxc__option_int(c, "tcp", "timeout_ms", 10000);
    const char *addr = nxc__option_text(c, "tcp", "address");
    if (!addr) addr = "0.0.0.0"; /* every interface */
    int port = (int)nxc__option_int(c, "tcp", "port", 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    nxc_status_t st = NXC_OK;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 128))
        st = nxc__err(NXC_ERR_SYSTEM, "tcp: cannot listen on %s:%d: %s", addr, port,
                      strerror(errno));
    socklen_t sl = sizeof sa;
    if (st == NXC_OK && getsockname(fd, (struct sockaddr *)&sa, &sl))
        st = nxc__err(NXC_ERR_SYSTEM, "tcp: getsockname: %s", strerror(errno));
    if (st != NXC_OK) {
        if (fd >= 0) close(fd);
        free(t);
        return st;
    }
    st = nxc__stream_init(&t->s, &tcp_flavour, "tcp", fd, t->timeout_ms);
    if (st != NXC_OK) {
        nxc__stream_destroy(&t->s.base);
        return st;
    }
    t->s.max_stripes = (unsigned)nxc__option_int(c, "tcp", "streams", tcp_flavour.max_stripes);
    make_info(t, addr, ntohs(sa.sin_port));
    NXC_LOG_D("tcp: listening, metadata address %s", t->info);
    *tp_p = &t->s.base;
    return NXC_OK;
}

static nxc_status_t tcp_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec,
                               void **state_p) {
    *state_p = NULL;
    return nxc__stream_section(&((tcp_tp_t *)tp)->s, op, sec, ((tcp_tp_t *)tp)->info);
}

static nxc_status_t tcp_reachable(nxc__tp_t *tp, const nxc__metadata_t *md,
                                  const nxc__md_section_t *sec, char *why, size_t len) {
    struct sockaddr_in sa;
    if (!info_addr(sec->conn.data, sec->conn.len, 0, &sa)) {
        snprintf(why, len, "the peer's tcp section has no usable address");
        return NXC_ERR_NO_TRANSPORT;
    }
    return NXC_OK;
}

static void tcp_describe(nxc__tp_t *tp, char *buf, size_t len) {
    tcp_tp_t *t = (tcp_tp_t *)tp;
    snprintf(buf, len,
             "listening on %s; up to %u connections per peer, transfers of %llu MiB or more "
             "striped over %u; dead-peer timeout %d ms",
             t->info, tcp_flavour.max_conns, (unsigned long long)(2 * tcp_flavour.stripe_min >> 20),
             t->s.max_stripes, t->timeout_ms);
}

const nxc__transport_ops_t nxc__transport_tcp = {
    .name = "tcp",
    .create = tcp_create,
    NXC__STREAM_OPS,
    .expose = tcp_expose,
    /* no unexpose: tcp_expose() keeps no per-op state, and the core calls
     * unexpose only for the state expose() left */
    .reachable = tcp_reachable,
    .post = nxc__stream_post,
    .describe = tcp_describe,
    .options = tcp_options,
    .noptions = sizeof tcp_options / sizeof tcp_options[0],
};
