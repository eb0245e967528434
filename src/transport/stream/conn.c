/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine's connections (see stream_internal.h): opening and
 * closing them, framing what they send and receive, and the progress pass
 * that drives them all. What a complete frame means is up to the passive
 * (passive.c) or the active side (active.c).
 *
 * Freeing: a closed connection stays allocated, marked dead, until the end
 * of the progress pass, so grants and stripes pointing at it stay valid while
 * the core is told.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/stream/stream_internal.h"
#include "util/iov.h"
#include "util/list.h"
#include "util/log.h"
#include "util/time.h"

#define MAX_INBOUND 1024
#define PASS_BUDGET (8u << 20) /* bytes one connection moves per progress pass */
#define IOV_BATCH 64           /* iovecs per sendmsg/readv */
#define DISCARD_MS 1000        /* how long a refusing side drains its input */

/* --- connections: plumbing ------------------------------------------------------------- */

static void conn_events(stream_conn_t *conn, uint32_t ev) {
    if (conn->dead || conn->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = conn};
    if (epoll_ctl(conn->t->epfd, EPOLL_CTL_MOD, conn->fd, &e) == 0) conn->events = ev;
}

static void out_free_all(stream_conn_t *conn) {
    while (conn->out) {
        out_t *o;
        NXC__QUEUE_POP(conn->out, conn->out_tail, o);
        free(o->iov);
        free(o);
    }
}

/* Close a connection now; the core hears of it at the end of the pass. */
void nxc__stream_conn_close(stream_conn_t *conn, const char *fmt, ...) {
    if (conn->dead) return;
    stream_tp_t *t = conn->t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conn->why, sizeof conn->why, fmt, ap);
    va_end(ap);
    conn->dead = true;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
    close(conn->fd);
    conn->fd = -1;
    out_free_all(conn);
    free(conn->body);
    conn->body = NULL;
    free(conn->piov);
    conn->piov = NULL;
    free(conn->rbuf);
    conn->rbuf = NULL;
    conn->rbeg = conn->rend = 0;
    t->dirty = true;
    NXC_LOG_D("%s: connection %s peer %s closed: %s", t->name, conn->inbound ? "from" : "to",
              conn->peer ? conn->peer->name : "(unknown)", conn->why);
    if (!conn->inbound && conn->peer) {
        conn->peer->nconns--;
        if (!conn->ready) {
            /* Never got through: fail what waits rather than reconnect in a loop. */
            conn->peer->connecting--;
            conn->peer->refused = true;
            nxc__stream_peer_unreachable(t, conn->peer, conn->why);
        }
    }
    if (conn->stripe) {
        stream_stripe_t *s = conn->stripe;
        conn->stripe = NULL;
        s->conn = NULL;
        /* a copier still on it reports through nxc__stream_copy_done() */
        nxc_status_t none = NXC_OK;
        atomic_compare_exchange_strong(&s->stop, &none, NXC_ERR_PEER_FAILED);
        if (!s->done && !s->copying)
            nxc__stream_stripe_end(t, s, conn->ready ? NXC_ERR_PEER_FAILED : NXC_ERR_UNREACHABLE,
                                   "connection to peer %s lost: %s", conn->peer->name, conn->why);
    }
}

/* Has peer `p` a live inbound connection left? */
static bool inbound_left(stream_tp_t *t, const stream_peer_t *p) {
    for (stream_conn_t *conn = t->conns; conn; conn = conn->next)
        if (conn->inbound && !conn->dead && conn->peer == p) return true;
    return false;
}

/* Free dead connections; tell the core which grants died with them. */
void nxc__stream_conns_reap(stream_tp_t *t) {
    for (stream_conn_t **link = &t->conns; *link;) {
        stream_conn_t *conn = *link;
        if (!conn->dead) {
            link = &conn->next;
            continue;
        }
        *link = conn->next;
        if (conn->inbound) {
            char why[NXC_NAME_MAX + 260];
            snprintf(why, sizeof why, "peer %s: %s", conn->peer ? conn->peer->name : "(unknown)",
                     conn->why);
            nxc__peer_lost(t->base.c, conn, why);
            if (t->fl->process_lost && conn->peer_pid > 0) t->fl->process_lost(t, conn->peer_pid);
            if (conn->peer && !inbound_left(t, conn->peer))
                nxc__stream_peer_gone(t, conn->peer, why);
        }
        nxc__stream_peer_unref(t, conn->peer);
        free(conn);
    }
}

stream_conn_t *nxc__stream_conn_new(stream_tp_t *t, int fd, bool inbound, stream_peer_t *p) {
    stream_conn_t *conn = calloc(1, sizeof *conn);
    if (!conn) return NULL;
    conn->src = SRC_CONN;
    conn->t = t;
    conn->fd = fd;
    conn->inbound = inbound;
    conn->peer = p;
    struct ucred cred;
    socklen_t len = sizeof cred;
    /* only a flavour that asks (shm: unix sockets) */
    if (inbound && t->fl->process_lost && !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
        conn->peer_pid = cred.pid;
    conn->last_rx = conn->frame_start = nxc__now_ns();
    conn->events = EPOLLIN | (inbound ? 0 : EPOLLOUT);
    struct epoll_event e = {.events = conn->events, .data.ptr = conn};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e)) {
        free(conn);
        return NULL;
    }
    conn->next = t->conns;
    t->conns = conn;
    if (p) p->refs++;
    return conn;
}

/* Queue `hdr`+`body` (+ payload iovecs, taken over) for sending. */
bool nxc__stream_send_frame(stream_conn_t *conn, uint8_t type, uint64_t xfer, const void *b1,
                            size_t l1, const void *b2, size_t l2, const void *b3, size_t l3,
                            struct iovec *iov, size_t niov) {
    if (conn->dead) {
        free(iov);
        return false;
    }
    size_t body = l1 + l2 + l3;
    out_t *o = malloc(sizeof *o + sizeof(nxc__wire_hdr_t) + body);
    if (!o) {
        free(iov);
        nxc__stream_conn_close(conn, "out of memory");
        return false;
    }
    nxc__wire_hdr_t h = {
        .magic = NXC__WIRE_MAGIC, .type = type, .body_len = (uint32_t)body, .xfer = xfer};
    memcpy(o->bytes, &h, sizeof h);
    uint8_t *p = o->bytes + sizeof h;
    if (l1) memcpy(p, b1, l1);
    if (l2) memcpy(p + l1, b2, l2);
    if (l3) memcpy(p + l1 + l2, b3, l3);
    *o = (out_t){.len = sizeof h + body, .iov = iov, .niov = niov};
    NXC__QUEUE_APPEND(conn->out, conn->out_tail, o);
    return true;
}

/* Send what is queued, up to the pass budget. */
int nxc__stream_conn_flush(stream_conn_t *conn) {
    size_t budget = PASS_BUDGET, moved = 0;
    while (conn->out && !conn->dead && moved < budget) {
        out_t *o = conn->out;
        struct iovec v[IOV_BATCH];
        size_t n = 0;
        if (o->off < o->len) v[n++] = (struct iovec){o->bytes + o->off, o->len - o->off};
        for (size_t i = o->idx; i < o->niov && n < IOV_BATCH; i++)
            v[n++] = o->iov[i];
        if (n == 0) {
            NXC__QUEUE_POP(conn->out, conn->out_tail, o);
            free(o->iov);
            free(o);
            continue;
        }
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = n};
        ssize_t r = sendmsg(conn->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            nxc__stream_conn_close(conn, "send: %s", strerror(errno));
            return 1;
        }
        moved += (size_t)r;
        size_t left = (size_t)r;
        size_t h = o->len - o->off < left ? o->len - o->off : left;
        o->off += h;
        left -= h;
        o->idx = nxc__iov_consume(o->iov, o->niov, o->idx, left);
    }
    if (conn->dead) return 1;
    if (!conn->out && conn->closing) {
        shutdown(conn->fd, SHUT_WR);
        if (!conn->discard_until) conn->discard_until = nxc__now_ns() + DISCARD_MS * 1000000ull;
    }
    conn_events(conn, EPOLLIN | (conn->out ? EPOLLOUT : 0));
    return moved > 0;
}

/* --- input ----------------------------------------------------------------------------- */

static void frame_done(stream_conn_t *conn) {
    if (conn->inbound)
        nxc__stream_passive_dispatch(conn);
    else
        nxc__stream_active_dispatch(conn);
    free(conn->body);
    conn->body = NULL;
    if (conn->in == IN_BODY || conn->in == IN_HDR) conn->in = IN_HDR;
    conn->got = 0;
}

static bool hdr_ok(stream_conn_t *conn) {
    const nxc__wire_hdr_t *h = &conn->hdr;
    if (h->magic != NXC__WIRE_MAGIC) {
        nxc__stream_conn_close(conn, "protocol: bad magic 0x%08x", h->magic);
        return false;
    }
    if (h->body_len > (conn->ready ? NXC__WIRE_MAX_BODY : 1024)) {
        nxc__stream_conn_close(conn, "protocol: body of %u bytes", h->body_len);
        return false;
    }
    return true;
}

static void payload_done(stream_conn_t *conn) {
    free(conn->piov);
    conn->piov = NULL;
    conn->in = IN_HDR;
    conn->got = 0;
    if (conn->inbound)
        nxc__stream_passive_payload_done(conn);
    else
        nxc__stream_active_payload_done(conn);
}

/* A frame's header and body (and whatever follows them) are received
 * through a buffer of this size: one recv() takes in a small frame, or a
 * 4 KiB op's GRANTED and payload, where a header, a body and the EAGAIN
 * that ended the pass took three. A recv() that does not fill it found the
 * socket empty: the pass stops there (epoll is level-triggered). */
#define RBUF_SIZE 8192

/* A header, or a whole frame, is in: go on as it says. */
static void frame_complete(stream_conn_t *conn) {
    conn->in = IN_HDR;
    frame_done(conn);
    if (conn->in == IN_PAYLOAD && conn->pleft == 0) payload_done(conn);
}

static void header_complete(stream_conn_t *conn) {
    if (!hdr_ok(conn)) return;
    conn->got = 0;
    if (!conn->hdr.body_len) {
        frame_complete(conn);
        return;
    }
    conn->body = malloc(conn->hdr.body_len);
    if (!conn->body) {
        nxc__stream_conn_close(conn, "out of memory");
        return;
    }
    conn->in = IN_BODY;
}

/* `n` more bytes of the payload (at most pleft) are in place. */
static void payload_advance(stream_conn_t *conn, size_t n) {
    conn->pleft -= n;
    conn->pi = nxc__iov_consume(conn->piov, conn->pn, conn->pi, n);
    if (conn->pleft == 0) payload_done(conn);
}

/* `n` buffered bytes (at most pleft) into the payload's buffers. */
static void payload_take(stream_conn_t *conn, const uint8_t *p, size_t n) {
    for (size_t i = conn->pi, left = n; left > 0; i++) {
        size_t k = conn->piov[i].iov_len < left ? conn->piov[i].iov_len : left;
        memcpy(conn->piov[i].iov_base, p, k);
        p += k;
        left -= k;
    }
    payload_advance(conn, n);
}

/* Give buffered bytes to the frame part being received: at least one byte
 * goes, or the connection closes. */
static void take_buffered(stream_conn_t *conn) {
    const uint8_t *p = conn->rbuf + conn->rbeg;
    size_t avail = conn->rend - conn->rbeg, n;
    switch (conn->in) {
    case IN_DISCARD: n = avail; break;
    case IN_PAYLOAD:
        n = avail < conn->pleft ? avail : (size_t)conn->pleft;
        conn->rbeg += n;
        payload_take(conn, p, n);
        return;
    case IN_HDR:
        if (conn->ready && conn->got == 0) conn->frame_start = conn->last_rx;
        n = sizeof conn->hdr - conn->got < avail ? sizeof conn->hdr - conn->got : avail;
        memcpy((uint8_t *)&conn->hdr + conn->got, p, n);
        break;
    case IN_BODY:
    default:
        n = conn->hdr.body_len - conn->got < avail ? conn->hdr.body_len - conn->got : avail;
        memcpy(conn->body + conn->got, p, n);
        break;
    }
    conn->rbeg += n;
    if (conn->in == IN_DISCARD) return;
    conn->got += n;
    if (conn->in == IN_HDR && conn->got == sizeof conn->hdr)
        header_complete(conn);
    else if (conn->in == IN_BODY && conn->got == conn->hdr.body_len)
        frame_complete(conn);
}

/* One system call's worth of input. A payload goes straight into its
 * buffers; when the call asks for the rest of it, the buffer takes what
 * follows. Everything else goes into the buffer. `*fill` is how many bytes
 * the call asked for, when a short count means the socket is empty (0
 * where the pass reads on until EAGAIN, as before). */
static ssize_t receive(stream_conn_t *conn, size_t *fill) {
    static uint8_t sink[65536];
    *fill = 0;
    if (conn->in == IN_DISCARD) return recv(conn->fd, sink, sizeof sink, MSG_DONTWAIT);
    if (!conn->rbuf && !(conn->rbuf = malloc(RBUF_SIZE))) {
        nxc__stream_conn_close(conn, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    conn->rbeg = conn->rend = 0;
    if (conn->in == IN_BODY && conn->hdr.body_len - conn->got >= RBUF_SIZE) {
        /* a large body (many ranges): into its own memory, read on as a
         * payload is */
        size_t rest = conn->hdr.body_len - conn->got;
        ssize_t r = recv(conn->fd, conn->body + conn->got, rest, MSG_DONTWAIT);
        if (r > 0 && (conn->got += (size_t)r) == conn->hdr.body_len) frame_complete(conn);
        return r;
    }
    if (conn->in != IN_PAYLOAD) {
        ssize_t r = recv(conn->fd, conn->rbuf, RBUF_SIZE, MSG_DONTWAIT);
        if (r > 0) conn->rend = (size_t)r;
        *fill = RBUF_SIZE;
        return r;
    }
    struct iovec v[IOV_BATCH + 1];
    size_t n = 0;
    uint64_t want = 0;
    for (size_t i = conn->pi; i < conn->pn && n < IOV_BATCH; i++) {
        v[n++] = conn->piov[i];
        want += conn->piov[i].iov_len;
    }
    if (want == conn->pleft) v[n++] = (struct iovec){conn->rbuf, RBUF_SIZE};
    ssize_t r = readv(conn->fd, v, (int)n);
    if (r <= 0) return r;
    /* Only past the payload's end does a short count end the pass: a sender
     * in the middle of a large payload is still writing, and reading on (as
     * before) took more of it per pass. */
    if ((uint64_t)r > want) *fill = (size_t)want + RBUF_SIZE;
    size_t took = (uint64_t)r < want ? (size_t)r : (size_t)want;
    conn->rend = (size_t)r - took;
    payload_advance(conn, took);
    return r;
}

/* Read what is there, up to the pass budget. */
static int conn_read(stream_conn_t *conn) {
    size_t moved = 0;
    bool empty = false;
    for (;;) {
        while (!conn->dead && conn->rbeg < conn->rend)
            take_buffered(conn);
        if (conn->dead || empty || moved >= PASS_BUDGET) break;
        size_t fill;
        ssize_t r = receive(conn, &fill);
        if (r == 0) {
            nxc__stream_conn_close(conn,
                                   conn->closing ? "closed after a refusal" : "closed by the peer");
            break;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                nxc__stream_conn_close(conn, "receive: %s", strerror(errno));
            break;
        }
        moved += (size_t)r;
        if (conn->peer) conn->peer->unresponsive = false;
        conn->last_rx = nxc__now_ns();
        empty = (size_t)r < fill;
    }
    return moved > 0;
}

/* Is a frame half-received (or the greeting missing) for too long? Too
 * slow: a handshake or a header+body must complete within the timeout (from
 * their start, so a byte now and then does not keep one open); a payload,
 * which may be large, must not pause for that long. Returns what stalled, or
 * NULL. */
static const char *conn_stalled(const stream_conn_t *conn, uint64_t now) {
    uint64_t limit = (uint64_t)conn->t->timeout_ms * 1000000u;
    if (!conn->ready && now - conn->frame_start > limit) return "handshake unfinished";
    if ((conn->in == IN_BODY || (conn->in == IN_HDR && conn->got > 0)) &&
        now - conn->frame_start > limit)
        return "frame unfinished";
    if (conn->in == IN_PAYLOAD && now - conn->last_rx > limit) return "no payload bytes";
    return NULL;
}

/* When conn_stalled() or a refused connection's discard period could next
 * close `conn`; UINT64_MAX if nothing is pending on it. */
static uint64_t conn_due(const stream_conn_t *conn) {
    uint64_t limit = (uint64_t)conn->t->timeout_ms * 1000000u, due = UINT64_MAX;
    if (!conn->ready || conn->in == IN_BODY || (conn->in == IN_HDR && conn->got > 0))
        due = conn->frame_start + limit;
    else if (conn->in == IN_PAYLOAD)
        due = conn->last_rx + limit;
    if (conn->discard_until && conn->discard_until + 1 < due) due = conn->discard_until + 1;
    return due;
}

uint64_t nxc__stream_next_timer(nxc__tp_t *tp) {
    uint64_t first = UINT64_MAX;
    for (stream_conn_t *conn = stream_of(tp)->conns; conn; conn = conn->next) {
        if (conn->dead) continue;
        uint64_t due = conn_due(conn);
        if (due < first) first = due;
    }
    return first;
}

/* --- events ------------------------------------------------------------------------------ */

static void on_accept(stream_tp_t *t) {
    for (int i = 0; i < 64; i++) {
        int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        unsigned n = 0;
        for (stream_conn_t *conn = t->conns; conn; conn = conn->next)
            n += conn->inbound && !conn->dead;
        if (n >= MAX_INBOUND) {
            NXC_LOG_W("%s: %u inbound connections already; refusing another", t->name, n);
            close(fd);
            continue;
        }
        t->fl->tune(t, fd);
        if (!nxc__stream_conn_new(t, fd, true, NULL)) close(fd);
    }
}

static void conn_event(stream_conn_t *conn, uint32_t ev, int *work) {
    if (conn->dead) return;
    if (conn->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            nxc__stream_conn_connected(conn);
            (*work)++;
        }
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) *work += conn_read(conn);
    if (!conn->dead && conn->out) *work += nxc__stream_conn_flush(conn);
}

int nxc__stream_progress(nxc__tp_t *tp) {
    stream_tp_t *t = stream_of(tp);
    int work = 0;
    struct epoll_event evs[32];
    int n = epoll_wait(t->epfd, evs, 32, 0);
    for (int i = 0; i < n; i++) {
        void *ptr = evs[i].data.ptr;
        if (ptr == &t->lfd) {
            on_accept(t);
            work++;
        } else if (*(int *)ptr == SRC_WATCH) {
            watch_t *w = ptr;
            w->fn(t);
            work++;
        } else {
            conn_event(ptr, evs[i].events, &work);
        }
    }
    uint64_t now = nxc__now_ns();
    const char *stall;
    for (stream_conn_t *conn = t->conns; conn; conn = conn->next) {
        if (conn->dead) continue;
        if (conn->discard_until && now > conn->discard_until)
            nxc__stream_conn_close(conn, "refused");
        else if ((stall = conn_stalled(conn, now)))
            nxc__stream_conn_close(conn, "stalled: %s for %d ms", stall, t->timeout_ms);
    }
    if (t->dirty) {
        t->dirty = false;
        work++;
        for (stream_peer_t *p = t->peers; p; p = p->next)
            if (p->queue) nxc__stream_dispatch(t, p);
    }
    nxc__stream_conns_reap(t);
    return work;
}

/* Does a stripe wait for a connection (in its peer's queue)? */
static bool stripes_waiting(const stream_tp_t *t) {
    for (const stream_peer_t *p = t->peers; p; p = p->next)
        if (p->queue) return true;
    return false;
}

/* A post sends its request at once or queues it; a connection it opens,
 * and output a full socket holds back, wait on the transport's epoll set
 * (EPOLLOUT), and stall checks on next_timer. `dirty` is set whenever a
 * connection frees up (a stripe ends): the pass it asks for has work only
 * while stripes wait. */
bool nxc__stream_idle(nxc__tp_t *tp) {
    const stream_tp_t *t = stream_of(tp);
    return !t->dirty || !stripes_waiting(t);
}

bool nxc__stream_arm(nxc__tp_t *tp) {
    return !stream_of(tp)->dirty;
}

int nxc__stream_event_fd(nxc__tp_t *tp) {
    return stream_of(tp)->epfd;
}
