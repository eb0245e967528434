/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine's active side: moving the bytes of this connector's
 * reads and writes.
 *
 * An op becomes one or more stripes queued on the peer; each connection
 * carries one stripe at a time (so a refusal, which closes the connection,
 * never takes another op down with it) and connections are kept for the
 * next ops. A peer gets at most flavour->max_conns connections.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/segment.h"
#include "transport/stream/stream_internal.h"
#include "util/error.h"
#include "util/list.h"

/* --- stripes ----------------------------------------------------------------------------- */

static void aop_fail(nxc_op_t *op, nxc_status_t st, const char *why) {
    aop_t *a = nxc__op_tp_state(op);
    if (a->error != NXC_OK) return;
    a->error = st;
    snprintf(a->why, sizeof a->why, "%s", why);
}

/* Finish the op once nothing of it is in flight. */
static void aop_settle(nxc_op_t *op) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a || nxc__op_terminal(op)) return;
    if (a->error != NXC_OK)
        for (unsigned i = 0; i < a->nstripes; i++) {
            stream_stripe_t *s = &a->stripes[i];
            if (!s->done && !s->conn) {
                NXC__QUEUE_UNLINK(stream_stripe_t, a->peer->queue, a->peer->queue_tail, s);
                s->done = true;
                nxc__op_io_end(op);
            }
        }
    if (nxc__op_io_pending(op)) return;
    if (a->error == NXC_OK)
        nxc__op_finish(op, NXC_OK, "%s", "");
    else
        nxc__op_finish(op, a->error, "%s", a->why);
}

void nxc__stream_stripe_end(stream_tp_t *t, stream_stripe_t *s, nxc_status_t st, const char *fmt,
                            ...) {
    if (s->done) return;
    if (st != NXC_OK) {
        char why[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        aop_fail(s->op, st, why);
    }
    s->done = true;
    nxc__op_io_end(s->op);
    stream_conn_t *conn = s->conn;
    if (conn) {
        conn->stripe = NULL;
        s->conn = NULL;
    }
    t->dirty = true; /* the connection is free for the next stripe */
    aop_settle(s->op);
}

/* A cancelled tcp read whose bytes are arriving: rather than take in the
 * rest of the payload (which may take seconds), ask the passive side to
 * stop (CANCEL), discard what is still in flight, and end the stripe now.
 * The connection closes once the passive side hangs up (or DISCARD_MS). */
static void abandon_read(stream_tp_t *t, stream_conn_t *conn, stream_stripe_t *s) {
    nxc__wire_grant_t msg = {.grant = s->grant};
    nxc__stream_send_frame(conn, NXC__WIRE_CANCEL, ((aop_t *)nxc__op_tp_state(s->op))->xfer, &msg,
                           sizeof msg, NULL, 0, NULL, 0, NULL, 0);
    free(conn->piov);
    conn->piov = NULL;
    conn->in = IN_DISCARD;
    conn->closing = true;
    nxc__stream_conn_flush(conn);
    nxc__stream_stripe_end(t, s, NXC_ERR_CANCELED, "cancelled");
}

/* Is `s` a tcp read stripe receiving its payload? */
static bool read_arriving(const stream_tp_t *t, const stream_stripe_t *s) {
    return t->fl->inline_data && nxc__op_kind(s->op) == NXC_OP_READ && s->conn && s->grant &&
           s->conn->in == IN_PAYLOAD && s->conn->stripe == s;
}

static void send_req(stream_conn_t *conn, stream_stripe_t *s) {
    stream_tp_t *t = conn->t;
    nxc_op_t *op = s->op;
    aop_t *a = nxc__op_tp_state(op);
    bool write = nxc__op_kind(op) == NXC_OP_WRITE;
    nxc__wire_req_t q = {.md_kind = write ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ,
                         .inline_data = t->fl->inline_data,
                         .stripe = (uint8_t)s->idx,
                         .nstripes = (uint8_t)a->nstripes,
                         .key_len = (uint16_t)strlen(nxc__op_key(op)),
                         .nranges = (uint32_t)s->n};
    memcpy(q.secret, nxc__op_peer_md(op)->secret, sizeof q.secret);
    struct iovec *payload = NULL;
    if (t->fl->inline_data && write) {
        payload = malloc(s->n * sizeof *payload);
        if (!payload) {
            nxc__stream_conn_close(conn, "out of memory");
            return;
        }
        memcpy(payload, s->local, s->n * sizeof *payload);
    }
    conn->stripe = s;
    s->conn = conn;
    if (payload) nxc__op_progressing(op);
    nxc__stream_send_frame(conn, NXC__WIRE_REQ, a->xfer, &q, sizeof q, nxc__op_key(op), q.key_len,
                           s->remote, s->n * sizeof *s->remote, payload, payload ? s->n : 0);
    nxc__stream_conn_flush(conn);
}

static void open_conn(stream_tp_t *t, stream_peer_t *p);

/* Give waiting stripes to free connections; open more while allowed. */
void nxc__stream_dispatch(stream_tp_t *t, stream_peer_t *p) {
    for (stream_conn_t *conn = t->conns; conn && p->queue; conn = conn->next) {
        if (conn->dead || conn->inbound || conn->peer != p || !conn->ready || conn->stripe ||
            conn->closing)
            continue;
        stream_stripe_t *s;
        NXC__QUEUE_POP(p->queue, p->queue_tail, s);
        send_req(conn, s);
    }
    /* Stripes still waiting, counted only as far as the loop below can use
     * (a peer's queue may hold thousands). */
    unsigned waiting = 0, enough = p->connecting + t->fl->max_conns + 1;
    for (stream_stripe_t *s = p->queue; s && waiting < enough; s = s->next)
        waiting++;
    while (waiting > p->connecting && p->nconns < t->fl->max_conns && !p->refused) {
        unsigned before = p->nconns;
        open_conn(t, p);
        if (p->nconns == before) break;
    }
}

/* Connecting failed: unless a working connection will carry what waits for
 * this peer, or an attempt is still under way, fail it; the next op to this
 * peer may try again. */
void nxc__stream_peer_unreachable(stream_tp_t *t, stream_peer_t *p, const char *why) {
    if (p->connecting > 0 || nxc__stream_ready_conn(t, p)) return;
    p->refused = false;
    while (p->queue) {
        stream_stripe_t *s;
        NXC__QUEUE_POP(p->queue, p->queue_tail, s);
        nxc__stream_stripe_end(t, s, NXC_ERR_UNREACHABLE, "cannot connect to peer %s: %s", p->name,
                               why);
    }
}

static void open_conn(stream_tp_t *t, stream_peer_t *p) {
    int fd = -1;
    unsigned attempt = 0;
    char why[128] = "no address";
    for (;; attempt++) {
        fd = t->fl->connect(t, &p->md, &p->sec, attempt);
        if (fd >= 0 || fd == -2) break;
        snprintf(why, sizeof why, "%s", strerror(errno));
    }
    if (fd < 0) {
        p->refused = true;
        nxc__stream_peer_unreachable(t, p, why);
        return;
    }
    stream_conn_t *conn = nxc__stream_conn_new(t, fd, false, p);
    if (!conn) {
        close(fd);
        p->refused = true;
        nxc__stream_peer_unreachable(t, p, "out of memory");
        return;
    }
    conn->attempt = attempt;
    conn->connecting = true;
    p->nconns++;
    p->connecting++;
}

/* --- frames ------------------------------------------------------------------------------ */

/* The connect of `conn` finished (writable): check it, say HELLO. */
void nxc__stream_conn_connected(stream_conn_t *conn) {
    stream_tp_t *t = conn->t;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        /* Try the peer's next address on a fresh socket. */
        stream_peer_t *p = conn->peer;
        unsigned attempt = conn->attempt + 1;
        int fd;
        while ((fd = t->fl->connect(t, &p->md, &p->sec, attempt)) == -1)
            attempt++;
        if (fd >= 0) {
            epoll_ctl(t->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
            close(conn->fd);
            conn->fd = fd;
            conn->attempt = attempt;
            struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = conn};
            conn->events = e.events;
            if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e) == 0) return;
        }
        nxc__stream_conn_close(conn, "connect: %s", strerror(err));
        nxc__stream_peer_unreachable(t, p, conn->why);
        return;
    }
    conn->connecting = false;
    t->fl->tune(t, conn->fd);
    nxc_connector_t *c = t->base.c;
    size_t nl = strlen(nxc__connector_name(c));
    nxc__wire_hello_t h = {.version = NXC__WIRE_VERSION, .name_len = (uint16_t)nl};
    memcpy(h.instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
    memcpy(h.want, conn->peer->instance, NXC__INSTANCE_LEN);
    nxc__stream_send_frame(conn, NXC__WIRE_HELLO, 0, &h, sizeof h, nxc__connector_name(c), nl, NULL,
                           0, NULL, 0);
    nxc__stream_conn_flush(conn);
}

static void on_hello_ok(stream_conn_t *conn) {
    nxc__wire_hello_ok_t ok;
    if (conn->hdr.type != NXC__WIRE_HELLO_OK || conn->hdr.body_len != sizeof ok) {
        nxc__stream_conn_close(conn, "protocol: expected HELLO_OK");
        return;
    }
    memcpy(&ok, conn->body, sizeof ok);
    if (memcmp(ok.instance, conn->peer->instance, NXC__INSTANCE_LEN)) {
        nxc__stream_conn_close(conn, "reached another connector than the metadata's");
        return;
    }
    char why[200];
    if (conn->t->fl->vet &&
        !conn->t->fl->vet(conn->t, conn->fd, &conn->peer->md, &conn->peer_pid, why, sizeof why)) {
        nxc__stream_conn_close(conn, "%s", why);
        return;
    }
    conn->ready = true;
    conn->peer->connecting--;
    conn->peer->refused = false;
    conn->t->dirty = true;
}

void nxc__stream_active_dispatch(stream_conn_t *conn) {
    stream_tp_t *t = conn->t;
    if (!conn->ready) {
        on_hello_ok(conn);
        return;
    }
    stream_stripe_t *s = conn->stripe;
    if (!s || conn->hdr.xfer != ((aop_t *)nxc__op_tp_state(s->op))->xfer) {
        nxc__stream_conn_close(conn, "protocol: reply to no request in flight");
        return;
    }
    bool write = nxc__op_kind(s->op) == NXC_OP_WRITE;
    switch (conn->hdr.type) {
    case NXC__WIRE_REFUSED: {
        nxc__wire_refused_t r;
        if (conn->hdr.body_len < sizeof r) {
            nxc__stream_conn_close(conn, "protocol: short REFUSED");
            return;
        }
        memcpy(&r, conn->body, sizeof r);
        int n = (int)(conn->hdr.body_len - sizeof r);
        nxc__stream_stripe_end(t, s, NXC_ERR_REFUSED, "peer %s refused the %s: %.*s",
                               conn->peer->name, write ? "write" : "read", n > 200 ? 200 : n,
                               (char *)conn->body + sizeof r);
        conn->closing = true; /* the peer closes it too */
        nxc__stream_conn_close(conn, "refused");
        return;
    }
    case NXC__WIRE_GRANTED:
    case NXC__WIRE_ACK: {
        nxc__wire_grant_t msg;
        bool ack = conn->hdr.type == NXC__WIRE_ACK;
        if (conn->hdr.body_len != sizeof msg || ack != (t->fl->inline_data && write) || s->grant) {
            nxc__stream_conn_close(conn, "protocol: unexpected %s", ack ? "ACK" : "GRANTED");
            return;
        }
        memcpy(&msg, conn->body, sizeof msg);
        s->grant = msg.grant;
        nxc__op_progressing(s->op);
        if (ack) {
            nxc__stream_stripe_end(t, s, NXC_OK, "%s", "");
        } else if (t->fl->inline_data) {                               /* read: the bytes follow */
            if (((aop_t *)nxc__op_tp_state(s->op))->error != NXC_OK) { /* cancelled meanwhile */
                conn->in = IN_PAYLOAD;
                abandon_read(t, conn, s);
                return;
            }
            conn->piov = malloc(s->n * sizeof *conn->piov);
            if (!conn->piov) {
                nxc__stream_conn_close(conn, "out of memory");
                return;
            }
            memcpy(conn->piov, s->local, s->n * sizeof *conn->piov);
            conn->pn = s->n;
            conn->pi = 0;
            conn->pleft = s->bytes;
            conn->in = IN_PAYLOAD;
        } else {
            nxc_status_t st = NXC_OK;
            char why[200] = "";
            s->copying = true;
            s->ctl_fd = conn->fd;
            s->remote_pid = conn->peer_pid;
            if (t->fl->copy(t, s, &st, why, sizeof why)) nxc__stream_copy_done(t, s, st, why);
        }
        return;
    }
    default: nxc__stream_conn_close(conn, "protocol: unexpected frame type %u", conn->hdr.type);
    }
}

void nxc__stream_copy_done(stream_tp_t *t, stream_stripe_t *s, nxc_status_t result,
                           const char *why) {
    stream_conn_t *conn = s->conn;
    s->copying = false;
    if (conn && !conn->dead) {
        /* A cancelled op does not complete its peer, even if its bytes moved. */
        bool complete = result == NXC_OK && ((aop_t *)nxc__op_tp_state(s->op))->error == NXC_OK;
        nxc__wire_done_t d = {.grant = s->grant, .complete = complete};
        nxc__stream_send_frame(conn, NXC__WIRE_DONE, ((aop_t *)nxc__op_tp_state(s->op))->xfer, &d,
                               sizeof d, NULL, 0, NULL, 0, NULL, 0);
        nxc__stream_conn_flush(conn);
    } else if (result == NXC_OK) {
        result = NXC_ERR_PEER_FAILED;
        why = "connection lost before the completion was sent";
    }
    nxc__stream_stripe_end(t, s, result, "%s", why);
}

/* An active read's bytes all arrived. */
void nxc__stream_active_payload_done(stream_conn_t *conn) {
    nxc__stream_copy_done(conn->t, conn->stripe, NXC_OK, "");
}

/* --- ops --------------------------------------------------------------------------------- */

/* Cut the op's segments into stripes of about equal bytes. */
/* Add a piece to a stripe, growing the last one when the piece continues
 * it on both sides: a pool's neighbouring blocks travel as one range (the
 * owner's check accepts a range running on into the next buffer exactly
 * there), so 1024 blocks cost one range in the request, one check and one
 * iovec, not 1024. */
static void stripe_add(stream_stripe_t *s, uint64_t remote, void *local, uint64_t len) {
    if (s->n > 0) {
        nxc__wire_range_t *r = &s->remote[s->n - 1];
        struct iovec *l = &s->local[s->n - 1];
        if (r->addr + r->len == remote && (uint8_t *)l->iov_base + l->iov_len == local) {
            r->len += len;
            l->iov_len += (size_t)len;
            s->bytes += len;
            return;
        }
    }
    s->remote[s->n] = (nxc__wire_range_t){remote, len};
    s->local[s->n] = (struct iovec){local, (size_t)len};
    s->n++;
    s->bytes += len;
}

/* Give back the room a stripe did not use: neighbouring blocks merge into
 * one range, so 1024 blocks side by side take one entry of the 1025 set
 * aside, and the rest (32 KiB) would stay allocated for the op's life.
 * A shrink that fails leaves the room as it was. */
static void stripe_fit(stream_stripe_t *s, size_t cap) {
    if (s->n == 0 || s->n > cap / 2) return;
    void *remote = realloc(s->remote, s->n * sizeof *s->remote);
    if (remote) s->remote = remote;
    void *local = realloc(s->local, s->n * sizeof *s->local);
    if (local) s->local = local;
}

static nxc_status_t make_stripes(stream_tp_t *t, nxc_op_t *op, aop_t *a) {
    uint64_t total = nxc__op_total(op);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    unsigned ns = 1;
    if (t->max_stripes > 1 && total >= 2 * t->fl->stripe_min) {
        uint64_t want = total / t->fl->stripe_min;
        ns = want < t->max_stripes ? (unsigned)want : t->max_stripes;
    }
    a->stripes = calloc(ns, sizeof *a->stripes);
    if (!a->stripes) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    a->nstripes = ns;
    uint64_t per = (total + ns - 1) / ns;
    size_t si = 0;
    uint64_t seg_off = 0;
    for (unsigned i = 0; i < ns; i++) {
        stream_stripe_t *s = &a->stripes[i];
        s->op = op;
        s->idx = i;
        /* at most nsegs - si pieces, +1 for a split at the start */
        size_t cap = nsegs - si + 1;
        s->remote = malloc(cap * sizeof *s->remote);
        s->local = malloc(cap * sizeof *s->local);
        if (!s->remote || !s->local)
            return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
        uint64_t want = i + 1 == ns ? UINT64_MAX : per;
        while (si < nsegs && s->bytes < want) {
            const nxc__seg_t *seg = &segs[si];
            uint64_t len = seg->len - seg_off;
            if (len > want - s->bytes) len = want - s->bytes;
            stripe_add(s, nxc__seg_remote(seg, md, seg_off), nxc__seg_local(seg, bufs, seg_off),
                       len);
            seg_off += len;
            if (seg_off == seg->len) {
                si++;
                seg_off = 0;
            }
        }
        stripe_fit(s, cap);
    }
    return NXC_OK;
}

static void aop_free(stream_tp_t *t, aop_t *a) {
    if (!a) return;
    for (unsigned i = 0; a->stripes && i < a->nstripes; i++) {
        free(a->stripes[i].remote);
        free(a->stripes[i].local);
    }
    free(a->stripes);
    nxc__stream_peer_unref(t, a->peer);
    free(a);
}

nxc_status_t nxc__stream_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec) {
    stream_tp_t *t = stream_of(tp);
    size_t nsegs;
    nxc__op_segs(op, &nsegs);
    if (strlen(nxc__op_key(op)) > NXC_KEY_MAX || nsegs == 0)
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s: nothing to move", t->name);
    aop_t *a = calloc(1, sizeof *a);
    if (!a) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    a->peer = nxc__stream_peer_get(t, nxc__op_peer_md(op)->instance, nxc__op_peer_md(op)->name);
    nxc_status_t st = a->peer ? nxc__stream_peer_learn(a->peer, nxc__op_peer_md(op), sec)
                              : nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    if (st == NXC_OK) st = make_stripes(t, op, a);
    if (st != NXC_OK) {
        aop_free(t, a);
        return st;
    }
    a->xfer = ++t->next_xfer;
    nxc__op_set_tp_state(op, a);
    for (unsigned i = 0; i < a->nstripes; i++) {
        NXC__QUEUE_APPEND(a->peer->queue, a->peer->queue_tail, &a->stripes[i]);
        nxc__op_io_begin(op);
    }
    nxc__stream_dispatch(t, a->peer);
    return NXC_OK;
}

/* Close the connections carrying `a`'s unfinished stripes; true if any was. */
static bool cut_stripes(aop_t *a) {
    bool cut = false;
    for (unsigned i = 0; i < a->nstripes; i++) {
        stream_stripe_t *s = &a->stripes[i];
        /* A stripe in a copier thread cannot be interrupted; it stops at its
         * next chunk. One on a connection goes with the connection. */
        if (!s->done && s->conn && !s->copying) {
            nxc__stream_conn_close(s->conn, "aborted: the op did not stop in time");
            cut = true;
        }
    }
    return cut;
}

void nxc__stream_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a) return;
    aop_fail(op, why, why == NXC_ERR_TIMED_OUT ? "the op's deadline passed" : "cancelled");
    for (unsigned i = 0; i < a->nstripes; i++) {
        nxc_status_t none = NXC_OK;
        atomic_compare_exchange_strong(&a->stripes[i].stop, &none, why);
        if (!a->stripes[i].done && read_arriving(stream_of(tp), &a->stripes[i]))
            abandon_read(stream_of(tp), a->stripes[i].conn, &a->stripes[i]);
    }
    if (a->peer && a->peer->unresponsive) cut_stripes(a); /* it would not drain either */
    aop_settle(op);
}

void nxc__stream_abort_io(nxc__tp_t *tp, nxc_op_t *op) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a) return;
    if (cut_stripes(a) && a->peer) a->peer->unresponsive = true;
    aop_settle(op);
}

void nxc__stream_release(nxc__tp_t *tp, nxc_op_t *op) {
    aop_free(stream_of(tp), nxc__op_tp_state(op));
    nxc__op_set_tp_state(op, NULL);
}
