/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine's peers (the connectors it talks to, on either side)
 * and its lifecycle: setting it up around a flavour's listening socket,
 * extra fds to watch, and tearing everything down.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transport/stream/stream_internal.h"
#include "util/error.h"
#include "util/list.h"
#include "util/time.h"

/* --- peers -------------------------------------------------------------------------- */

stream_peer_t *nxc__stream_peer_find(stream_tp_t *t, const uint8_t *instance) {
    for (stream_peer_t *p = t->peers; p; p = p->next)
        if (!memcmp(p->instance, instance, NXC__INSTANCE_LEN)) return p;
    return NULL;
}

stream_peer_t *nxc__stream_peer_get(stream_tp_t *t, const uint8_t *instance, const char *name) {
    stream_peer_t *p = nxc__stream_peer_find(t, instance);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) return NULL;
        p->src = SRC_PEER;
        memcpy(p->instance, instance, NXC__INSTANCE_LEN);
        snprintf(p->name, sizeof p->name, "%s", name);
        p->next = t->peers;
        t->peers = p;
    }
    p->refs++;
    return p;
}

static void peer_free(stream_peer_t *p) {
    free(p->conn_info);
    free(p->xfers);
    free(p);
}

void nxc__stream_peer_unref(stream_tp_t *t, stream_peer_t *p) {
    if (!p || --p->refs > 0) return;
    NXC__LIST_UNLINK(stream_peer_t, t->peers, p);
    peer_free(p);
}

/* Remember how to reach the peer of `md` (active side). */
nxc_status_t nxc__stream_peer_learn(stream_peer_t *p, const nxc__metadata_t *md,
                                    const nxc__md_section_t *sec) {
    if (p->conn_info && p->sec.conn.len == sec->conn.len &&
        !memcmp(p->conn_info, sec->conn.data, sec->conn.len))
        return NXC_OK;
    uint8_t *copy = malloc(sec->conn.len ? sec->conn.len : 1);
    if (!copy) return nxc__err(NXC_ERR_NO_MEMORY, "out of memory");
    memcpy(copy, sec->conn.data, sec->conn.len);
    free(p->conn_info);
    p->conn_info = copy;
    p->sec = *sec;
    p->sec.conn.data = copy;
    p->sec.keys = NULL;
    memset(&p->md, 0, sizeof p->md);
    snprintf(p->md.host, sizeof p->md.host, "%s", md->host);
    snprintf(p->md.name, sizeof p->md.name, "%s", md->name);
    memcpy(p->md.instance, md->instance, NXC__INSTANCE_LEN);
    p->md.pid = md->pid;
    p->md.start_time = md->start_time;
    return NXC_OK;
}

/* A working outbound connection to `p` (NULL: none). */
stream_conn_t *nxc__stream_ready_conn(stream_tp_t *t, const stream_peer_t *p) {
    for (stream_conn_t *conn = t->conns; p && conn; conn = conn->next)
        if (!conn->dead && !conn->inbound && conn->ready && !conn->closing && conn->peer == p)
            return conn;
    return NULL;
}

bool nxc__stream_send_direct_done(stream_tp_t *t, const uint8_t *instance, const char *key,
                                  const uint8_t *secret, uint8_t type) {
    stream_conn_t *conn = nxc__stream_ready_conn(t, nxc__stream_peer_find(t, instance));
    if (!conn) return false;
    nxc__wire_read_done_t r = {.key_len = (uint16_t)strlen(key)};
    memcpy(r.secret, secret, sizeof r.secret);
    if (!nxc__stream_send_frame(conn, type, 0, &r, sizeof r, key, r.key_len, NULL, 0, NULL, 0))
        return false;
    nxc__stream_conn_flush(conn);
    return true;
}

pid_t nxc__stream_peer_pid(stream_tp_t *t, const uint8_t *instance) {
    stream_conn_t *conn = nxc__stream_ready_conn(t, nxc__stream_peer_find(t, instance));
    return conn ? conn->peer_pid : 0;
}

bool nxc__stream_peer_connected(stream_tp_t *t, const uint8_t *instance) {
    stream_peer_t *p = nxc__stream_peer_find(t, instance);
    return p && p->nconns > p->connecting;
}

bool nxc__stream_supports_device(nxc__tp_t *tp, nxc_device_kind_t kind) {
    return kind == NXC_DEVICE_HOST;
}

/* --- lifecycle ----------------------------------------------------------------------------- */

nxc_status_t nxc__stream_watch(stream_tp_t *t, int fd, void (*fn)(stream_tp_t *t)) {
    watch_t *w = malloc(sizeof *w);
    if (!w) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    *w = (watch_t){SRC_WATCH, fd, fn, NULL};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = w};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e)) {
        free(w);
        return nxc__err(NXC_ERR_SYSTEM, "%s: epoll_ctl: %s", t->name, strerror(errno));
    }
    w->next = t->watches;
    t->watches = w;
    return NXC_OK;
}

nxc_status_t nxc__stream_init(stream_tp_t *t, const stream_flavour_t *fl, const char *name, int lfd,
                              int timeout_ms) {
    t->fl = fl;
    t->name = name;
    t->lfd = lfd;
    t->timeout_ms = timeout_ms;
    t->max_stripes = fl->max_stripes;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0) return nxc__err(NXC_ERR_SYSTEM, "%s: epoll: %s", name, strerror(errno));
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &t->lfd};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, lfd, &e))
        return nxc__err(NXC_ERR_SYSTEM, "%s: epoll_ctl: %s", name, strerror(errno));
    return NXC_OK;
}

/* Before closing: send what is still queued (a DONE or ACK the peer's op
 * completes with), for at most a second in all. */
static void flush_all(stream_tp_t *t) {
    uint64_t until = nxc__now_ns() + 1000000000ull;
    for (stream_conn_t *conn = t->conns; conn; conn = conn->next) {
        while (!conn->dead && conn->out && !conn->connecting && nxc__now_ns() < until) {
            struct pollfd p = {.fd = conn->fd, .events = POLLOUT};
            if (poll(&p, 1, 10) == 1) nxc__stream_conn_flush(conn);
        }
    }
}

void nxc__stream_destroy(nxc__tp_t *tp) {
    stream_tp_t *t = stream_of(tp);
    flush_all(t);
    for (stream_conn_t *conn = t->conns; conn; conn = conn->next)
        nxc__stream_conn_close(conn, "connector destroyed");
    nxc__stream_conns_reap(t);
    if (t->fl && t->fl->destroy) t->fl->destroy(t);
    while (t->watches) {
        struct watch *w = t->watches;
        t->watches = w->next;
        free(w);
    }
    if (t->lfd >= 0) close(t->lfd);
    if (t->epfd >= 0) close(t->epfd);
    while (t->peers) {
        stream_peer_t *p = t->peers;
        t->peers = p->next;
        peer_free(p);
    }
    free(t);
}
