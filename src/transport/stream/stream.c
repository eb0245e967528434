/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine shared by the tcp and shm transports (see stream.h and
 * the protocol in wire.h).
 *
 * Passive side: every inbound connection is a peer's handle for the core's
 * grants, so closing one cuts exactly the access it carried. A request is
 * checked by nxc__grant_open() (op, secret, kind, every range) before any
 * byte of the op's memory is read or written; anything malformed or refused
 * closes the connection.
 *
 * Active side: an op becomes one or more stripes queued on the peer; each
 * connection carries one stripe at a time (so a refusal, which closes the
 * connection, never takes another op down with it) and connections are kept
 * for the next ops. A peer gets at most flavour->max_conns connections.
 *
 * Freeing: a closed connection stays allocated, marked dead, until the end
 * of the progress pass, so grants and stripes pointing at it stay valid while
 * the core is told.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/stream/stream.h"
#include "util/error.h"
#include "util/log.h"
#include "util/time.h"

#define MAX_INBOUND 1024
#define MAX_XFERS 4096         /* striped transfers in flight per peer */
#define PASS_BUDGET (8u << 20) /* bytes one connection moves per progress pass */
#define IOV_BATCH 64           /* iovecs per sendmsg/readv */
#define DISCARD_MS 1000        /* how long a refusing side drains its input */

/* Something to send: owned header bytes, then optionally payload from memory
 * the op owns (advanced in place). */
typedef struct out {
    struct out *next;
    size_t len, off;
    struct iovec *iov;
    size_t niov, idx;
    uint8_t bytes[];
} out_t;

/* Passive side: a striped transfer in flight. Each stripe is granted on its
 * own connection; a finished stripe's grant is handed to the transfer (held
 * by the peer, not the connection) until the last stripe completes the op,
 * so the op stays IN_PROGRESS in between and fails if the peer goes away. */
typedef struct xfer {
    uint64_t id;
    char key[NXC_KEY_MAX + 1]; /* every stripe must name the same op */
    unsigned nstripes;
    uint32_t started;                    /* bit mask of the stripes granted so far */
    uint64_t held[NXC_WIRE_MAX_STRIPES]; /* grants of finished stripes */
    unsigned nheld;
} xfer_t;

struct stream_peer {
    int src; /* SRC_PEER: grants of finished stripes are held by the peer */
    stream_peer_t *next;
    int refs; /* connections + active ops */
    uint8_t instance[NXC__INSTANCE_LEN];
    char name[NXC_NAME_MAX + 1];
    /* active side: how to reach it */
    nxc__metadata_t md; /* only the fields connect() needs: host, pid, start_time */
    uint8_t *conn_info;
    nxc__md_section_t sec;
    unsigned nconns, connecting;
    /* A connection to it failed before it was ready: open no more until the
     * queue has been failed or a connection got through, or two attempts in
     * flight keep restarting each other for ever against a dead peer. */
    bool refused;
    /* A stop on it had to be forced (its bytes did not drain): until it
     * sends again, stop its next ops at once instead of waiting a drain
     * each, so that releasing many ops of a frozen peer is not n drains. */
    bool unresponsive;
    stream_stripe_t *queue, *queue_tail;
    /* passive side: striped transfers in flight */
    xfer_t *xfers;
    size_t nxfers;
};

enum in_state { IN_HDR, IN_BODY, IN_PAYLOAD, IN_DISCARD };

/* What an epoll event points at: a connection or a watched fd. */
enum { SRC_CONN = 0x636f6e6e, SRC_WATCH = 0x77617463, SRC_PEER = 0x70656572 };

struct stream_conn {
    int src; /* SRC_CONN */
    stream_conn_t *next;
    stream_tp_t *t;
    stream_peer_t *peer;
    int fd;
    bool inbound, connecting, ready, closing, dead;
    unsigned attempt;
    pid_t peer_pid; /* outbound, vetted: the process holding the other end */
    uint32_t events;
    uint64_t last_rx;     /* ns */
    uint64_t frame_start; /* ns: the handshake, or the frame being received, began */
    uint64_t discard_until;
    char why[200]; /* why it closed */
    /* input */
    enum in_state in;
    nxc_wire_hdr_t hdr;
    size_t got;
    uint8_t *body;
    struct iovec *piov; /* payload destination */
    size_t pn, pi;
    uint64_t pleft;
    /* passive: the grant a tcp write's payload lands in */
    uint64_t pgrant, pxfer;
    unsigned pnstripes;
    /* output */
    out_t *out, *out_tail;
    /* active: the stripe it carries */
    stream_stripe_t *stripe;
};

typedef struct aop {
    stream_peer_t *peer;
    uint64_t xfer;
    stream_stripe_t *stripes;
    unsigned nstripes;
    nxc_status_t error; /* first failure or stop reason; NXC_OK: none */
    char why[256];
} aop_t;

typedef struct watch {
    int src; /* SRC_WATCH */
    int fd;
    void (*fn)(stream_tp_t *t);
    struct watch *next;
} watch_t;

static stream_tp_t *T(nxc__tp_t *tp) {
    return (stream_tp_t *)tp;
}

/* --- peers -------------------------------------------------------------------------- */

static stream_peer_t *peer_find(stream_tp_t *t, const uint8_t *instance) {
    for (stream_peer_t *p = t->peers; p; p = p->next)
        if (!memcmp(p->instance, instance, NXC__INSTANCE_LEN)) return p;
    return NULL;
}

static stream_peer_t *peer_get(stream_tp_t *t, const uint8_t *instance, const char *name) {
    stream_peer_t *p = peer_find(t, instance);
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

static void peer_unref(stream_tp_t *t, stream_peer_t *p) {
    if (!p || --p->refs > 0) return;
    for (stream_peer_t **pp = &t->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p->conn_info);
    free(p->xfers);
    free(p);
}

/* Remember how to reach the peer of `md` (active side). */
static nxc_status_t peer_learn(stream_peer_t *p, const nxc__metadata_t *md,
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

static xfer_t *xfer_find(stream_peer_t *p, uint64_t id) {
    for (size_t i = 0; i < p->nxfers; i++)
        if (p->xfers[i].id == id) return &p->xfers[i];
    return NULL;
}

/* Give back the grants a transfer holds (it ended, or gave up) and forget it. */
static void xfer_end(stream_tp_t *t, stream_peer_t *p, xfer_t *x) {
    for (unsigned i = 0; i < x->nheld; i++)
        nxc__grant_close(t->base.c, p, x->held[i], false);
    *x = p->xfers[--p->nxfers];
}

/* Stripe `stripe` of transfer `id` on op `key` was granted; false when it
 * contradicts what earlier stripes said, repeats one, or is one too many. */
static bool xfer_add(stream_peer_t *p, uint64_t id, unsigned nstripes, unsigned stripe,
                     const char *key) {
    if (nstripes <= 1) return true;
    xfer_t *x = xfer_find(p, id);
    if (!x) {
        if (p->nxfers >= MAX_XFERS) return false;
        x = realloc(p->xfers, (p->nxfers + 1) * sizeof *x);
        if (!x) return false;
        p->xfers = x;
        x = &x[p->nxfers++];
        *x = (xfer_t){.id = id, .nstripes = nstripes};
        snprintf(x->key, sizeof x->key, "%s", key);
    }
    if (x->nstripes != nstripes || (x->started >> stripe & 1) || strcmp(x->key, key)) return false;
    x->started |= 1u << stripe;
    return true;
}

/* A passive stripe finished moving its bytes (grant `grant`, held by
 * connection `k`): the last one completes the op; the others hand their
 * grant to the transfer. */
static void passive_stripe_done(stream_conn_t *k, uint64_t grant, uint64_t id, unsigned nstripes) {
    stream_tp_t *t = k->t;
    xfer_t *x = nstripes > 1 ? xfer_find(k->peer, id) : NULL;
    if (nstripes > 1 && !x) { /* the transfer was given up meanwhile */
        nxc__grant_close(t->base.c, k, grant, false);
        return;
    }
    if (x && x->nheld + 1 < x->nstripes) {
        nxc__grant_move(t->base.c, k, grant, k->peer);
        x->held[x->nheld++] = grant;
        return;
    }
    if (x) xfer_end(t, k->peer, x);
    nxc__grant_close(t->base.c, k, grant, true);
}

/* The peer's last inbound connection closed: transfers it left half done
 * fail their ops (its memory is partly written), and no grant names it. */
static void peer_gone(stream_tp_t *t, stream_peer_t *p, const char *why) {
    if (p->nxfers == 0) return;
    p->nxfers = 0;
    char text[NXC_NAME_MAX + 512];
    snprintf(text, sizeof text, "peer %s went away in the middle of a striped transfer (%s)",
             p->name, why);
    nxc__peer_lost(t->base.c, p, text);
}

/* --- connections: plumbing ------------------------------------------------------------- */

static void conn_events(stream_conn_t *k, uint32_t ev) {
    if (k->dead || k->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = k};
    if (epoll_ctl(k->t->epfd, EPOLL_CTL_MOD, k->fd, &e) == 0) k->events = ev;
}

static void out_free_all(stream_conn_t *k) {
    while (k->out) {
        out_t *o = k->out;
        k->out = o->next;
        free(o->iov);
        free(o);
    }
    k->out_tail = NULL;
}

static void stripe_end(stream_tp_t *t, stream_stripe_t *s, nxc_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void peer_unreachable(stream_tp_t *t, stream_peer_t *p, const char *why);

/* Close a connection now; the core hears of it at the end of the pass. */
static void conn_close(stream_conn_t *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conn_close(stream_conn_t *k, const char *fmt, ...) {
    if (k->dead) return;
    stream_tp_t *t = k->t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->why, sizeof k->why, fmt, ap);
    va_end(ap);
    k->dead = true;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, k->fd, NULL);
    close(k->fd);
    k->fd = -1;
    out_free_all(k);
    free(k->body);
    k->body = NULL;
    free(k->piov);
    k->piov = NULL;
    t->dirty = true;
    NXC_LOG_D("%s: connection %s peer %s closed: %s", t->name, k->inbound ? "from" : "to",
              k->peer ? k->peer->name : "(unknown)", k->why);
    if (!k->inbound && k->peer) {
        k->peer->nconns--;
        if (!k->ready) {
            /* Never got through: fail what waits rather than reconnect in a loop. */
            k->peer->connecting--;
            k->peer->refused = true;
            peer_unreachable(t, k->peer, k->why);
        }
    }
    if (k->stripe) {
        stream_stripe_t *s = k->stripe;
        k->stripe = NULL;
        s->conn = NULL;
        /* a copier still on it reports through stream_copy_done() */
        nxc_status_t none = NXC_OK;
        atomic_compare_exchange_strong(&s->stop, &none, NXC_ERR_PEER_FAILED);
        if (!s->done && !s->copying)
            stripe_end(t, s, k->ready ? NXC_ERR_PEER_FAILED : NXC_ERR_UNREACHABLE,
                       "connection to peer %s lost: %s", k->peer->name, k->why);
    }
}

/* Has peer `p` a live inbound connection left? */
static bool inbound_left(stream_tp_t *t, const stream_peer_t *p) {
    for (stream_conn_t *k = t->conns; k; k = k->next)
        if (k->inbound && !k->dead && k->peer == p) return true;
    return false;
}

/* Free dead connections; tell the core which grants died with them. */
static void conns_reap(stream_tp_t *t) {
    for (stream_conn_t **pk = &t->conns; *pk;) {
        stream_conn_t *k = *pk;
        if (!k->dead) {
            pk = &k->next;
            continue;
        }
        *pk = k->next;
        if (k->inbound) {
            char why[NXC_NAME_MAX + 260];
            snprintf(why, sizeof why, "peer %s: %s", k->peer ? k->peer->name : "(unknown)", k->why);
            nxc__peer_lost(t->base.c, k, why);
            if (k->peer && !inbound_left(t, k->peer)) peer_gone(t, k->peer, why);
        }
        peer_unref(t, k->peer);
        free(k);
    }
}

static stream_conn_t *conn_new(stream_tp_t *t, int fd, bool inbound, stream_peer_t *p) {
    stream_conn_t *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->src = SRC_CONN;
    k->t = t;
    k->fd = fd;
    k->inbound = inbound;
    k->peer = p;
    k->last_rx = k->frame_start = nxc__now_ns();
    k->events = EPOLLIN | (inbound ? 0 : EPOLLOUT);
    struct epoll_event e = {.events = k->events, .data.ptr = k};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e)) {
        free(k);
        return NULL;
    }
    k->next = t->conns;
    t->conns = k;
    if (p) p->refs++;
    return k;
}

/* Queue `hdr`+`body` (+ payload iovecs, taken over) for sending. */
static bool send_frame(stream_conn_t *k, uint8_t type, uint64_t xfer, const void *b1, size_t l1,
                       const void *b2, size_t l2, const void *b3, size_t l3, struct iovec *iov,
                       size_t niov) {
    if (k->dead) {
        free(iov);
        return false;
    }
    size_t body = l1 + l2 + l3;
    out_t *o = malloc(sizeof *o + sizeof(nxc_wire_hdr_t) + body);
    if (!o) {
        free(iov);
        conn_close(k, "out of memory");
        return false;
    }
    nxc_wire_hdr_t h = {
        .magic = NXC_WIRE_MAGIC, .type = type, .body_len = (uint32_t)body, .xfer = xfer};
    memcpy(o->bytes, &h, sizeof h);
    uint8_t *p = o->bytes + sizeof h;
    if (l1) memcpy(p, b1, l1);
    if (l2) memcpy(p + l1, b2, l2);
    if (l3) memcpy(p + l1 + l2, b3, l3);
    *o = (out_t){.len = sizeof h + body, .iov = iov, .niov = niov};
    if (k->out_tail)
        k->out_tail->next = o;
    else
        k->out = o;
    k->out_tail = o;
    return true;
}

/* Send what is queued, up to the pass budget. */
static int conn_flush(stream_conn_t *k) {
    size_t budget = PASS_BUDGET, moved = 0;
    while (k->out && !k->dead && moved < budget) {
        out_t *o = k->out;
        struct iovec v[IOV_BATCH];
        size_t n = 0;
        if (o->off < o->len) v[n++] = (struct iovec){o->bytes + o->off, o->len - o->off};
        for (size_t i = o->idx; i < o->niov && n < IOV_BATCH; i++)
            v[n++] = o->iov[i];
        if (n == 0) {
            k->out = o->next;
            if (!k->out) k->out_tail = NULL;
            free(o->iov);
            free(o);
            continue;
        }
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = n};
        ssize_t r = sendmsg(k->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_close(k, "send: %s", strerror(errno));
            return 1;
        }
        moved += (size_t)r;
        size_t left = (size_t)r;
        size_t h = o->len - o->off < left ? o->len - o->off : left;
        o->off += h;
        left -= h;
        while (left && o->idx < o->niov) {
            struct iovec *iv = &o->iov[o->idx];
            size_t m = iv->iov_len < left ? iv->iov_len : left;
            iv->iov_base = (uint8_t *)iv->iov_base + m;
            iv->iov_len -= m;
            left -= m;
            if (iv->iov_len == 0) o->idx++;
        }
    }
    if (k->dead) return 1;
    if (!k->out && k->closing) {
        shutdown(k->fd, SHUT_WR);
        if (!k->discard_until) k->discard_until = nxc__now_ns() + DISCARD_MS * 1000000ull;
    }
    conn_events(k, EPOLLIN | (k->out ? EPOLLOUT : 0));
    return moved > 0;
}

/* --- passive side ---------------------------------------------------------------------- */

static void refuse(stream_conn_t *k, uint64_t xfer, nxc_status_t st, const char *why) {
    nxc_wire_refused_t r = {.status = st};
    send_frame(k, NXC_WIRE_REFUSED, xfer, &r, sizeof r, why, strlen(why), NULL, 0, NULL, 0);
    k->closing = true;
    k->in = IN_DISCARD;
}

static void on_hello(stream_conn_t *k) {
    stream_tp_t *t = k->t;
    nxc_wire_hello_t h;
    if (k->hdr.type != NXC_WIRE_HELLO || k->hdr.body_len < sizeof h) {
        conn_close(k, "protocol: expected HELLO");
        return;
    }
    memcpy(&h, k->body, sizeof h);
    if (h.version != NXC_WIRE_VERSION || h.name_len > NXC_NAME_MAX ||
        k->hdr.body_len != sizeof h + h.name_len) {
        conn_close(k, "protocol: bad HELLO (version %u)", h.version);
        return;
    }
    if (memcmp(h.want, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN)) {
        conn_close(k, "HELLO for another connector");
        return;
    }
    char name[NXC_NAME_MAX + 1];
    memcpy(name, k->body + sizeof h, h.name_len);
    name[h.name_len] = '\0';
    for (char *p = name; *p; p++) /* it goes into logs and messages */
        if (*p < 0x20 || *p > 0x7e) *p = '?';
    k->peer = peer_get(t, h.instance, name);
    if (!k->peer) {
        conn_close(k, "out of memory");
        return;
    }
    k->ready = true;
    nxc_wire_hello_ok_t ok;
    memcpy(ok.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    send_frame(k, NXC_WIRE_HELLO_OK, 0, &ok, sizeof ok, NULL, 0, NULL, 0, NULL, 0);
}

static void on_req(stream_conn_t *k) {
    stream_tp_t *t = k->t;
    nxc_wire_req_t q;
    uint64_t xfer = k->hdr.xfer;
    if (k->hdr.body_len < sizeof q) {
        conn_close(k, "protocol: short REQ");
        return;
    }
    memcpy(&q, k->body, sizeof q);
    if (q.key_len == 0 || q.key_len > NXC_KEY_MAX || q.nranges == 0 ||
        q.nranges > NXC_WIRE_MAX_RANGES || q.nstripes == 0 || q.nstripes > NXC_WIRE_MAX_STRIPES ||
        q.stripe >= q.nstripes ||
        (q.md_kind != NXC__MD_KIND_READ && q.md_kind != NXC__MD_KIND_WRITE) ||
        q.inline_data != (t->fl->inline_data ? 1 : 0) ||
        k->hdr.body_len != sizeof q + q.key_len + (uint64_t)q.nranges * sizeof(nxc_wire_range_t)) {
        conn_close(k, "protocol: malformed REQ");
        return;
    }
    char key[NXC_KEY_MAX + 1];
    memcpy(key, k->body + sizeof q, q.key_len);
    key[q.key_len] = '\0';
    if (strlen(key) != q.key_len) {
        conn_close(k, "protocol: NUL in key");
        return;
    }
    nxc__range_t *r = malloc(q.nranges * sizeof *r);
    struct iovec *iov = malloc(q.nranges * sizeof *iov);
    if (!r || !iov) {
        free(r);
        free(iov);
        conn_close(k, "out of memory");
        return;
    }
    memcpy(r, k->body + sizeof q + q.key_len, q.nranges * sizeof *r);
    uint64_t total = 0;
    bool overflow = false;
    for (uint32_t i = 0; i < q.nranges; i++) {
        overflow |= r[i].len > UINT64_MAX - total;
        total += r[i].len;
        iov[i] = (struct iovec){(void *)(uintptr_t)r[i].addr, (size_t)r[i].len};
    }
    uint64_t gid = 0;
    char why[200] = "ranges overflow";
    nxc_status_t st =
        overflow ? NXC_ERR_REFUSED
                 : nxc__grant_open_part(t->base.c, &t->base, k, key, q.secret, q.md_kind, r,
                                        q.nranges, q.stripe, q.nstripes, &gid, why, sizeof why);
    free(r);
    if (st == NXC_OK && !xfer_add(k->peer, xfer, q.nstripes, q.stripe, key)) {
        nxc__grant_close(t->base.c, k, gid, false);
        st = NXC_ERR_REFUSED;
        snprintf(why, sizeof why,
                 "striped transfer: stripe repeated, another op, or too many in flight");
    }
    if (st != NXC_OK) {
        free(iov);
        refuse(k, xfer, st, why);
        return;
    }
    nxc_wire_grant_t g = {.grant = gid};
    bool write = q.md_kind == NXC__MD_KIND_WRITE;
    if (!t->fl->inline_data) {
        free(iov);
        send_frame(k, NXC_WIRE_GRANTED, xfer, &g, sizeof g, NULL, 0, NULL, 0, NULL, 0);
    } else if (!write) {
        send_frame(k, NXC_WIRE_GRANTED, xfer, &g, sizeof g, NULL, 0, NULL, 0, iov, q.nranges);
    } else {
        k->piov = iov;
        k->pn = q.nranges;
        k->pi = 0;
        k->pleft = total;
        k->in = IN_PAYLOAD;
    }
    /* what this connection's DONE or payload completes */
    k->pgrant = gid;
    k->pxfer = xfer;
    k->pnstripes = q.nstripes;
}

/* The payload of a tcp write landed: the passive op's bytes are all there. */
static void passive_payload_done(stream_conn_t *k) {
    nxc_wire_grant_t g = {.grant = k->pgrant};
    passive_stripe_done(k, k->pgrant, k->pxfer, k->pnstripes);
    send_frame(k, NXC_WIRE_ACK, k->pxfer, &g, sizeof g, NULL, 0, NULL, 0, NULL, 0);
    k->pgrant = 0;
}

static void on_done(stream_conn_t *k) {
    nxc_wire_done_t d;
    if (k->hdr.body_len != sizeof d) {
        conn_close(k, "protocol: bad DONE");
        return;
    }
    memcpy(&d, k->body, sizeof d);
    if (d.grant != k->pgrant || k->hdr.xfer != k->pxfer) {
        conn_close(k, "protocol: DONE for a grant this connection does not hold");
        return;
    }
    /* The grant must outlive every byte sent from the op's memory: a DONE
     * while that is still queued would let the sending go on after the
     * owner got its buffers back. */
    for (const out_t *o = k->out; o; o = o->next)
        if (o->idx < o->niov) {
            conn_close(k, "protocol: DONE before the payload was sent");
            return;
        }
    if (d.complete) {
        passive_stripe_done(k, d.grant, k->pxfer, k->pnstripes);
    } else { /* the active side gave up the whole transfer */
        xfer_t *x = xfer_find(k->peer, k->pxfer);
        if (x) xfer_end(k->t, k->peer, x);
        nxc__grant_close(k->t->base.c, k, d.grant, false);
    }
    k->pgrant = 0;
}

/* A reader cancelled (tcp): stop sending its bytes, give the grant back
 * (the op stays usable for another reader) and close, since the payload
 * stops mid-frame. */
static void on_cancel(stream_conn_t *k) {
    nxc_wire_grant_t g;
    if (!k->t->fl->inline_data || k->hdr.body_len != sizeof g) {
        conn_close(k, "protocol: unexpected CANCEL");
        return;
    }
    memcpy(&g, k->body, sizeof g);
    if (!k->pgrant || g.grant != k->pgrant || k->hdr.xfer != k->pxfer || k->piov) {
        conn_close(k, "protocol: CANCEL for a grant this connection does not send");
        return;
    }
    xfer_t *x = k->pnstripes > 1 ? xfer_find(k->peer, k->pxfer) : NULL;
    if (x) xfer_end(k->t, k->peer, x);
    nxc__grant_close(k->t->base.c, k, g.grant, false);
    k->pgrant = 0;
    conn_close(k, "the peer cancelled its read");
}

static void on_read_done(stream_conn_t *k) {
    nxc_wire_read_done_t r;
    if (k->t->fl->inline_data || k->hdr.body_len < sizeof r) {
        conn_close(k, "protocol: unexpected READ_DONE");
        return;
    }
    memcpy(&r, k->body, sizeof r);
    if (r.key_len == 0 || r.key_len > NXC_KEY_MAX || k->hdr.body_len != sizeof r + r.key_len) {
        conn_close(k, "protocol: bad READ_DONE");
        return;
    }
    char key[NXC_KEY_MAX + 1];
    memcpy(key, k->body + sizeof r, r.key_len);
    key[r.key_len] = '\0';
    /* false: the op ended meanwhile (the reader's own check then failed) */
    nxc__complete_direct(k->t->base.c, &k->t->base, key, r.secret, NXC_OP_READABLE);
}

static void passive_dispatch(stream_conn_t *k) {
    if (!k->ready) {
        on_hello(k);
        return;
    }
    switch (k->hdr.type) {
    case NXC_WIRE_REQ:
        if (k->pgrant) {
            conn_close(k, "protocol: REQ while a grant is open");
            return;
        }
        on_req(k);
        break;
    case NXC_WIRE_DONE: on_done(k); break;
    case NXC_WIRE_READ_DONE: on_read_done(k); break;
    case NXC_WIRE_CANCEL: on_cancel(k); break;
    default: conn_close(k, "protocol: unexpected frame type %u", k->hdr.type);
    }
}

/* --- active side ----------------------------------------------------------------------- */

static void aop_fail(nxc_op_t *op, nxc_status_t st, const char *why) {
    aop_t *a = nxc__op_tp_state(op);
    if (a->error != NXC_OK) return;
    a->error = st;
    snprintf(a->why, sizeof a->why, "%s", why);
}

static void unqueue(stream_peer_t *p, stream_stripe_t *s) {
    stream_stripe_t *prev = NULL;
    for (stream_stripe_t *q = p->queue; q; prev = q, q = q->next) {
        if (q != s) continue;
        if (prev)
            prev->next = q->next;
        else
            p->queue = q->next;
        if (p->queue_tail == q) p->queue_tail = prev;
        q->next = NULL;
        return;
    }
}

/* Finish the op once nothing of it is in flight. */
static void aop_settle(nxc_op_t *op) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a || nxc__op_terminal(op)) return;
    if (a->error != NXC_OK)
        for (unsigned i = 0; i < a->nstripes; i++) {
            stream_stripe_t *s = &a->stripes[i];
            if (!s->done && !s->conn) {
                unqueue(a->peer, s);
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

static void stripe_end(stream_tp_t *t, stream_stripe_t *s, nxc_status_t st, const char *fmt, ...) {
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
    stream_conn_t *k = s->conn;
    if (k) {
        k->stripe = NULL;
        s->conn = NULL;
    }
    t->dirty = true; /* the connection is free for the next stripe */
    aop_settle(s->op);
}

/* A cancelled tcp read whose bytes are arriving: rather than take in the
 * rest of the payload (which may take seconds), ask the passive side to
 * stop (CANCEL), discard what is still in flight, and end the stripe now.
 * The connection closes once the passive side hangs up (or DISCARD_MS). */
static void abandon_read(stream_tp_t *t, stream_conn_t *k, stream_stripe_t *s) {
    nxc_wire_grant_t g = {.grant = s->grant};
    send_frame(k, NXC_WIRE_CANCEL, ((aop_t *)nxc__op_tp_state(s->op))->xfer, &g, sizeof g, NULL, 0,
               NULL, 0, NULL, 0);
    free(k->piov);
    k->piov = NULL;
    k->in = IN_DISCARD;
    k->closing = true;
    conn_flush(k);
    stripe_end(t, s, NXC_ERR_CANCELED, "cancelled");
}

/* Is `s` a tcp read stripe receiving its payload? */
static bool read_arriving(const stream_tp_t *t, const stream_stripe_t *s) {
    return t->fl->inline_data && nxc__op_kind(s->op) == NXC_OP_READ && s->conn && s->grant &&
           s->conn->in == IN_PAYLOAD && s->conn->stripe == s;
}

static void send_req(stream_conn_t *k, stream_stripe_t *s) {
    stream_tp_t *t = k->t;
    nxc_op_t *op = s->op;
    aop_t *a = nxc__op_tp_state(op);
    bool write = nxc__op_kind(op) == NXC_OP_WRITE;
    nxc_wire_req_t q = {.md_kind = write ? NXC__MD_KIND_WRITE : NXC__MD_KIND_READ,
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
            conn_close(k, "out of memory");
            return;
        }
        memcpy(payload, s->local, s->n * sizeof *payload);
    }
    k->stripe = s;
    s->conn = k;
    if (payload) nxc__op_progressing(op);
    send_frame(k, NXC_WIRE_REQ, a->xfer, &q, sizeof q, nxc__op_key(op), q.key_len, s->remote,
               s->n * sizeof *s->remote, payload, payload ? s->n : 0);
    conn_flush(k);
}

static void open_conn(stream_tp_t *t, stream_peer_t *p);

/* Give waiting stripes to free connections; open more while allowed. */
static void dispatch(stream_tp_t *t, stream_peer_t *p) {
    for (stream_conn_t *k = t->conns; k && p->queue; k = k->next) {
        if (k->dead || k->inbound || k->peer != p || !k->ready || k->stripe || k->closing) continue;
        stream_stripe_t *s = p->queue;
        p->queue = s->next;
        if (!p->queue) p->queue_tail = NULL;
        s->next = NULL;
        send_req(k, s);
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

/* A working outbound connection to `p` (NULL: none). */
static stream_conn_t *ready_conn(stream_tp_t *t, const stream_peer_t *p) {
    for (stream_conn_t *k = t->conns; p && k; k = k->next)
        if (!k->dead && !k->inbound && k->ready && !k->closing && k->peer == p) return k;
    return NULL;
}

/* Connecting failed: unless a working connection will carry what waits for
 * this peer, or an attempt is still under way, fail it; the next op to this
 * peer may try again. */
static void peer_unreachable(stream_tp_t *t, stream_peer_t *p, const char *why) {
    if (p->connecting > 0 || ready_conn(t, p)) return;
    p->refused = false;
    while (p->queue) {
        stream_stripe_t *s = p->queue;
        p->queue = s->next;
        s->next = NULL;
        if (!p->queue) p->queue_tail = NULL;
        stripe_end(t, s, NXC_ERR_UNREACHABLE, "cannot connect to peer %s: %s", p->name, why);
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
        peer_unreachable(t, p, why);
        return;
    }
    stream_conn_t *k = conn_new(t, fd, false, p);
    if (!k) {
        close(fd);
        p->refused = true;
        peer_unreachable(t, p, "out of memory");
        return;
    }
    k->attempt = attempt;
    k->connecting = true;
    p->nconns++;
    p->connecting++;
}

/* The connect of `k` finished (writable): check it, say HELLO. */
static void conn_connected(stream_conn_t *k) {
    stream_tp_t *t = k->t;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        /* Try the peer's next address on a fresh socket. */
        stream_peer_t *p = k->peer;
        unsigned attempt = k->attempt + 1;
        int fd;
        while ((fd = t->fl->connect(t, &p->md, &p->sec, attempt)) == -1)
            attempt++;
        if (fd >= 0) {
            epoll_ctl(t->epfd, EPOLL_CTL_DEL, k->fd, NULL);
            close(k->fd);
            k->fd = fd;
            k->attempt = attempt;
            struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = k};
            k->events = e.events;
            if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &e) == 0) return;
        }
        conn_close(k, "connect: %s", strerror(err));
        peer_unreachable(t, p, k->why);
        return;
    }
    k->connecting = false;
    t->fl->tune(t, k->fd);
    nxc_connector_t *c = t->base.c;
    size_t nl = strlen(nxc__connector_name(c));
    nxc_wire_hello_t h = {.version = NXC_WIRE_VERSION, .name_len = (uint16_t)nl};
    memcpy(h.instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
    memcpy(h.want, k->peer->instance, NXC__INSTANCE_LEN);
    send_frame(k, NXC_WIRE_HELLO, 0, &h, sizeof h, nxc__connector_name(c), nl, NULL, 0, NULL, 0);
    conn_flush(k);
}

static void on_hello_ok(stream_conn_t *k) {
    nxc_wire_hello_ok_t ok;
    if (k->hdr.type != NXC_WIRE_HELLO_OK || k->hdr.body_len != sizeof ok) {
        conn_close(k, "protocol: expected HELLO_OK");
        return;
    }
    memcpy(&ok, k->body, sizeof ok);
    if (memcmp(ok.instance, k->peer->instance, NXC__INSTANCE_LEN)) {
        conn_close(k, "reached another connector than the metadata's");
        return;
    }
    char why[200];
    if (k->t->fl->vet && !k->t->fl->vet(k->t, k->fd, &k->peer->md, &k->peer_pid, why, sizeof why)) {
        conn_close(k, "%s", why);
        return;
    }
    k->ready = true;
    k->peer->connecting--;
    k->peer->refused = false;
    k->t->dirty = true;
}

static void active_dispatch(stream_conn_t *k) {
    stream_tp_t *t = k->t;
    if (!k->ready) {
        on_hello_ok(k);
        return;
    }
    stream_stripe_t *s = k->stripe;
    if (!s || k->hdr.xfer != ((aop_t *)nxc__op_tp_state(s->op))->xfer) {
        conn_close(k, "protocol: reply to no request in flight");
        return;
    }
    bool write = nxc__op_kind(s->op) == NXC_OP_WRITE;
    switch (k->hdr.type) {
    case NXC_WIRE_REFUSED: {
        nxc_wire_refused_t r;
        if (k->hdr.body_len < sizeof r) {
            conn_close(k, "protocol: short REFUSED");
            return;
        }
        memcpy(&r, k->body, sizeof r);
        int n = (int)(k->hdr.body_len - sizeof r);
        stripe_end(t, s, NXC_ERR_REFUSED, "peer %s refused the %s: %.*s", k->peer->name,
                   write ? "write" : "read", n > 200 ? 200 : n, (char *)k->body + sizeof r);
        k->closing = true; /* the peer closes it too */
        conn_close(k, "refused");
        return;
    }
    case NXC_WIRE_GRANTED:
    case NXC_WIRE_ACK: {
        nxc_wire_grant_t g;
        bool ack = k->hdr.type == NXC_WIRE_ACK;
        if (k->hdr.body_len != sizeof g || ack != (t->fl->inline_data && write) || s->grant) {
            conn_close(k, "protocol: unexpected %s", ack ? "ACK" : "GRANTED");
            return;
        }
        memcpy(&g, k->body, sizeof g);
        s->grant = g.grant;
        nxc__op_progressing(s->op);
        if (ack) {
            stripe_end(t, s, NXC_OK, "%s", "");
        } else if (t->fl->inline_data) {                               /* read: the bytes follow */
            if (((aop_t *)nxc__op_tp_state(s->op))->error != NXC_OK) { /* cancelled meanwhile */
                k->in = IN_PAYLOAD;
                abandon_read(t, k, s);
                return;
            }
            k->piov = malloc(s->n * sizeof *k->piov);
            if (!k->piov) {
                conn_close(k, "out of memory");
                return;
            }
            memcpy(k->piov, s->local, s->n * sizeof *k->piov);
            k->pn = s->n;
            k->pi = 0;
            k->pleft = s->bytes;
            k->in = IN_PAYLOAD;
        } else {
            nxc_status_t st = NXC_OK;
            char why[200] = "";
            s->copying = true;
            s->ctl_fd = k->fd;
            s->remote_pid = k->peer_pid;
            nxc__op_progressing(s->op);
            if (t->fl->copy(t, s, &st, why, sizeof why)) stream_copy_done(t, s, st, why);
        }
        return;
    }
    default: conn_close(k, "protocol: unexpected frame type %u", k->hdr.type);
    }
}

void stream_copy_done(stream_tp_t *t, stream_stripe_t *s, nxc_status_t result, const char *why) {
    stream_conn_t *k = s->conn;
    s->copying = false;
    if (k && !k->dead) {
        /* A cancelled op does not complete its peer, even if its bytes moved. */
        bool complete = result == NXC_OK && ((aop_t *)nxc__op_tp_state(s->op))->error == NXC_OK;
        nxc_wire_done_t d = {.grant = s->grant, .complete = complete};
        send_frame(k, NXC_WIRE_DONE, ((aop_t *)nxc__op_tp_state(s->op))->xfer, &d, sizeof d, NULL,
                   0, NULL, 0, NULL, 0);
        conn_flush(k);
    } else if (result == NXC_OK) {
        result = NXC_ERR_PEER_FAILED;
        why = "connection lost before the completion was sent";
    }
    stripe_end(t, s, result, "%s", why);
}

/* An active read's bytes all arrived. */
static void active_payload_done(stream_conn_t *k) {
    stream_copy_done(k->t, k->stripe, NXC_OK, "");
}

/* --- input ----------------------------------------------------------------------------- */

static void frame_done(stream_conn_t *k) {
    if (k->inbound)
        passive_dispatch(k);
    else
        active_dispatch(k);
    free(k->body);
    k->body = NULL;
    if (k->in == IN_BODY || k->in == IN_HDR) k->in = IN_HDR;
    k->got = 0;
}

static bool hdr_ok(stream_conn_t *k) {
    const nxc_wire_hdr_t *h = &k->hdr;
    if (h->magic != NXC_WIRE_MAGIC) {
        conn_close(k, "protocol: bad magic 0x%08x", h->magic);
        return false;
    }
    if (h->body_len > (k->ready ? NXC_WIRE_MAX_BODY : 1024)) {
        conn_close(k, "protocol: body of %u bytes", h->body_len);
        return false;
    }
    return true;
}

static void payload_done(stream_conn_t *k) {
    free(k->piov);
    k->piov = NULL;
    k->in = IN_HDR;
    k->got = 0;
    if (k->inbound)
        passive_payload_done(k);
    else
        active_payload_done(k);
}

/* Read what is there, up to the pass budget. */
static int conn_read(stream_conn_t *k) {
    size_t moved = 0;
    while (!k->dead && moved < PASS_BUDGET) {
        ssize_t r;
        if (k->in == IN_HDR) {
            r = recv(k->fd, (uint8_t *)&k->hdr + k->got, sizeof k->hdr - k->got, MSG_DONTWAIT);
        } else if (k->in == IN_BODY) {
            r = recv(k->fd, k->body + k->got, k->hdr.body_len - k->got, MSG_DONTWAIT);
        } else if (k->in == IN_PAYLOAD) {
            size_t n = k->pn - k->pi < IOV_BATCH ? k->pn - k->pi : IOV_BATCH;
            r = readv(k->fd, k->piov + k->pi, (int)n);
        } else {
            static uint8_t sink[65536];
            r = recv(k->fd, sink, sizeof sink, MSG_DONTWAIT);
        }
        if (r == 0) {
            conn_close(k, k->closing ? "closed after a refusal" : "closed by the peer");
            break;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(k, "receive: %s", strerror(errno));
            break;
        }
        moved += (size_t)r;
        if (k->peer) k->peer->unresponsive = false;
        k->last_rx = nxc__now_ns();
        if (k->ready && k->in == IN_HDR && k->got == 0) k->frame_start = k->last_rx;
        if (k->in == IN_DISCARD) continue;
        if (k->in == IN_PAYLOAD) {
            size_t left = (size_t)r;
            k->pleft -= left;
            while (left) {
                struct iovec *iv = &k->piov[k->pi];
                size_t m = iv->iov_len < left ? iv->iov_len : left;
                iv->iov_base = (uint8_t *)iv->iov_base + m;
                iv->iov_len -= m;
                left -= m;
                if (iv->iov_len == 0) k->pi++;
            }
            while (k->pi < k->pn && k->piov[k->pi].iov_len == 0)
                k->pi++;
            if (k->pleft == 0) payload_done(k);
            continue;
        }
        k->got += (size_t)r;
        if (k->in == IN_HDR) {
            if (k->got < sizeof k->hdr) continue;
            if (!hdr_ok(k)) break;
            k->got = 0;
            if (k->hdr.body_len) {
                k->body = malloc(k->hdr.body_len);
                if (!k->body) {
                    conn_close(k, "out of memory");
                    break;
                }
                k->in = IN_BODY;
                continue;
            }
        } else if (k->got < k->hdr.body_len) {
            continue;
        }
        k->in = IN_HDR;
        frame_done(k);
        if (k->in == IN_PAYLOAD && k->pleft == 0) payload_done(k);
    }
    return moved > 0;
}

/* Is a frame half-received (or the greeting missing) for too long? */
/* Too slow: a handshake or a header+body must complete within the timeout
 * (from their start, so a byte now and then does not keep one open); a
 * payload, which may be large, must not pause for that long. Returns what
 * stalled, or NULL. */
static const char *conn_stalled(const stream_conn_t *k, uint64_t now) {
    uint64_t limit = (uint64_t)k->t->timeout_ms * 1000000u;
    if (!k->ready && now - k->frame_start > limit) return "handshake unfinished";
    if ((k->in == IN_BODY || (k->in == IN_HDR && k->got > 0)) && now - k->frame_start > limit)
        return "frame unfinished";
    if (k->in == IN_PAYLOAD && now - k->last_rx > limit) return "no payload bytes";
    return NULL;
}

/* When conn_stalled() or a refused connection's discard period could next
 * close `k`; UINT64_MAX if nothing is pending on it. */
static uint64_t conn_due(const stream_conn_t *k) {
    uint64_t limit = (uint64_t)k->t->timeout_ms * 1000000u, due = UINT64_MAX;
    if (!k->ready || k->in == IN_BODY || (k->in == IN_HDR && k->got > 0))
        due = k->frame_start + limit;
    else if (k->in == IN_PAYLOAD)
        due = k->last_rx + limit;
    if (k->discard_until && k->discard_until + 1 < due) due = k->discard_until + 1;
    return due;
}

uint64_t stream_next_timer(nxc__tp_t *tp) {
    uint64_t first = UINT64_MAX;
    for (stream_conn_t *k = T(tp)->conns; k; k = k->next) {
        if (k->dead) continue;
        uint64_t due = conn_due(k);
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
        for (stream_conn_t *k = t->conns; k; k = k->next)
            n += k->inbound && !k->dead;
        if (n >= MAX_INBOUND) {
            NXC_LOG_W("%s: %u inbound connections already; refusing another", t->name, n);
            close(fd);
            continue;
        }
        t->fl->tune(t, fd);
        if (!conn_new(t, fd, true, NULL)) close(fd);
    }
}

static void conn_event(stream_conn_t *k, uint32_t ev, int *work) {
    if (k->dead) return;
    if (k->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            conn_connected(k);
            (*work)++;
        }
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) *work += conn_read(k);
    if (!k->dead && k->out) *work += conn_flush(k);
}

int stream_progress(nxc__tp_t *tp) {
    stream_tp_t *t = T(tp);
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
    for (stream_conn_t *k = t->conns; k; k = k->next) {
        if (k->dead) continue;
        if (k->discard_until && now > k->discard_until)
            conn_close(k, "refused");
        else if ((stall = conn_stalled(k, now)))
            conn_close(k, "stalled: %s for %d ms", stall, t->timeout_ms);
    }
    if (t->dirty) {
        t->dirty = false;
        work++;
        for (stream_peer_t *p = t->peers; p; p = p->next)
            if (p->queue) dispatch(t, p);
    }
    conns_reap(t);
    return work;
}

bool stream_arm(nxc__tp_t *tp) {
    return !T(tp)->dirty;
}

int stream_event_fd(nxc__tp_t *tp) {
    return T(tp)->epfd;
}

bool stream_supports_device(nxc__tp_t *tp, nxc_device_kind_t kind) {
    return kind == NXC_DEVICE_HOST;
}

/* --- ops --------------------------------------------------------------------------------- */

bool stream_send_read_done(stream_tp_t *t, const uint8_t *instance, const char *key,
                           const uint8_t *secret) {
    stream_conn_t *k = ready_conn(t, peer_find(t, instance));
    if (!k) return false;
    nxc_wire_read_done_t r = {.key_len = (uint16_t)strlen(key)};
    memcpy(r.secret, secret, sizeof r.secret);
    if (!send_frame(k, NXC_WIRE_READ_DONE, 0, &r, sizeof r, key, r.key_len, NULL, 0, NULL, 0))
        return false;
    conn_flush(k);
    return true;
}

pid_t stream_peer_pid(stream_tp_t *t, const uint8_t *instance) {
    stream_conn_t *k = ready_conn(t, peer_find(t, instance));
    return k ? k->peer_pid : 0;
}

bool stream_peer_connected(stream_tp_t *t, const uint8_t *instance) {
    stream_peer_t *p = peer_find(t, instance);
    return p && p->nconns > p->connecting;
}

void stream_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {}

nxc_status_t stream_section(stream_tp_t *t, nxc_op_t *op, nxc__md_section_t *sec,
                            const char *conn) {
    size_t nbufs;
    nxc__op_local(op, &nbufs);
    sec->keys = calloc(nbufs, sizeof *sec->keys);
    if (!sec->keys) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    snprintf(sec->name, sizeof sec->name, "%s", t->name);
    sec->conn = (nxc__bytes_t){(const uint8_t *)conn, (uint32_t)strlen(conn)};
    return NXC_OK;
}

void stream_drop_peer(nxc__tp_t *tp, void *grant_peer) {
    if (*(const int *)grant_peer == SRC_CONN) {
        conn_close(grant_peer, "access revoked while the peer was still moving bytes");
        return;
    }
    /* a striped transfer's grant: cut every connection of that peer */
    for (stream_conn_t *k = T(tp)->conns; k; k = k->next)
        if (k->inbound && k->peer == grant_peer)
            conn_close(k, "access revoked while the peer was still moving bytes");
}

/* Cut the op's segments into stripes of about equal bytes. */
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
            const nxc__seg_t *g = &segs[si];
            uint64_t len = g->len - seg_off;
            if (len > want - s->bytes) len = want - s->bytes;
            s->remote[s->n] =
                (nxc_wire_range_t){md->descs[g->remote_idx].addr + g->remote_off + seg_off, len};
            s->local[s->n] = (struct iovec){
                (uint8_t *)bufs[g->local_idx].ptr + g->local_off + seg_off, (size_t)len};
            s->n++;
            s->bytes += len;
            seg_off += len;
            if (seg_off == g->len) {
                si++;
                seg_off = 0;
            }
        }
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
    peer_unref(t, a->peer);
    free(a);
}

nxc_status_t stream_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec) {
    stream_tp_t *t = T(tp);
    size_t nsegs;
    nxc__op_segs(op, &nsegs);
    if (strlen(nxc__op_key(op)) > NXC_KEY_MAX || nsegs == 0)
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s: nothing to move", t->name);
    aop_t *a = calloc(1, sizeof *a);
    if (!a) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    a->peer = peer_get(t, nxc__op_peer_md(op)->instance, nxc__op_peer_md(op)->name);
    nxc_status_t st = a->peer ? peer_learn(a->peer, nxc__op_peer_md(op), sec)
                              : nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    if (st == NXC_OK) st = make_stripes(t, op, a);
    if (st != NXC_OK) {
        aop_free(t, a);
        return st;
    }
    a->xfer = ++t->next_xfer;
    nxc__op_set_tp_state(op, a);
    for (unsigned i = 0; i < a->nstripes; i++) {
        stream_stripe_t *s = &a->stripes[i];
        if (a->peer->queue_tail)
            a->peer->queue_tail->next = s;
        else
            a->peer->queue = s;
        a->peer->queue_tail = s;
        nxc__op_io_begin(op);
    }
    dispatch(t, a->peer);
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
            conn_close(s->conn, "aborted: the op did not stop in time");
            cut = true;
        }
    }
    return cut;
}

void stream_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a) return;
    aop_fail(op, why, why == NXC_ERR_TIMED_OUT ? "the op's deadline passed" : "cancelled");
    for (unsigned i = 0; i < a->nstripes; i++) {
        nxc_status_t none = NXC_OK;
        atomic_compare_exchange_strong(&a->stripes[i].stop, &none, why);
        if (!a->stripes[i].done && read_arriving(T(tp), &a->stripes[i]))
            abandon_read(T(tp), a->stripes[i].conn, &a->stripes[i]);
    }
    if (a->peer && a->peer->unresponsive) cut_stripes(a); /* it would not drain either */
    aop_settle(op);
}

void stream_force(nxc__tp_t *tp, nxc_op_t *op) {
    aop_t *a = nxc__op_tp_state(op);
    if (!a) return;
    if (cut_stripes(a) && a->peer) a->peer->unresponsive = true;
    aop_settle(op);
}

void stream_release(nxc__tp_t *tp, nxc_op_t *op) {
    aop_free(T(tp), nxc__op_tp_state(op));
    nxc__op_set_tp_state(op, NULL);
}

/* --- lifecycle ----------------------------------------------------------------------------- */

nxc_status_t stream_watch(stream_tp_t *t, int fd, void (*fn)(stream_tp_t *t)) {
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

nxc_status_t stream_init(stream_tp_t *t, const stream_flavour_t *fl, const char *name, int lfd,
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
    for (stream_conn_t *k = t->conns; k; k = k->next) {
        while (!k->dead && k->out && !k->connecting && nxc__now_ns() < until) {
            struct pollfd p = {.fd = k->fd, .events = POLLOUT};
            if (poll(&p, 1, 10) == 1) conn_flush(k);
        }
    }
}

void stream_destroy(nxc__tp_t *tp) {
    stream_tp_t *t = T(tp);
    flush_all(t);
    for (stream_conn_t *k = t->conns; k; k = k->next)
        conn_close(k, "connector destroyed");
    conns_reap(t);
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
        free(p->conn_info);
        free(p->xfers);
        free(p);
    }
    free(t);
}
