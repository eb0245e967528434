/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine's own structures and the calls its files make to each
 * other (internal to src/transport/stream/; the flavours see stream.h).
 *
 *   conn.c     connections: open, close, frame, send, receive; the progress pass
 *   passive.c  the passive side: HELLO, REQ (grants), DONE, CANCEL, READ_DONE
 *   active.c   the active side: stripes, queues, connecting, replies, post/cancel
 *   peer.c     peers, and the engine's set-up and teardown
 */
#ifndef NXC_TRANSPORT_STREAM_INTERNAL_H
#define NXC_TRANSPORT_STREAM_INTERNAL_H

#include "transport/stream/stream.h"

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
    uint32_t started;                     /* bit mask of the stripes granted so far */
    uint64_t held[NXC__WIRE_MAX_STRIPES]; /* grants of finished stripes */
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
    /* The process holding the other end: outbound, vetted (vet()); inbound,
     * from the kernel's credentials of a unix socket (0 for tcp). */
    pid_t peer_pid;
    uint32_t events;
    uint64_t last_rx;     /* ns */
    uint64_t frame_start; /* ns: the handshake, or the frame being received, began */
    uint64_t discard_until;
    char why[200]; /* why it closed */
    /* input */
    enum in_state in;
    nxc__wire_hdr_t hdr;
    size_t got;
    uint8_t *body;
    struct iovec *piov; /* payload destination */
    size_t pn, pi;
    uint64_t pleft;
    /* bytes received ahead of the frame part that takes them (conn.c) */
    uint8_t *rbuf;
    size_t rbeg, rend;
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

static inline stream_tp_t *stream_of(nxc__tp_t *tp) {
    return (stream_tp_t *)tp;
}

/* --- conn.c ------------------------------------------------------------------------------- */

/* Close a connection now; the core hears of it at the end of the pass. */
void nxc__stream_conn_close(stream_conn_t *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Free dead connections; tell the core which grants died with them. */
void nxc__stream_conns_reap(stream_tp_t *t);
stream_conn_t *nxc__stream_conn_new(stream_tp_t *t, int fd, bool inbound, stream_peer_t *p);
/* Queue `hdr`+`body` (+ payload iovecs, taken over) for sending. */
bool nxc__stream_send_frame(stream_conn_t *conn, uint8_t type, uint64_t xfer, const void *b1,
                            size_t l1, const void *b2, size_t l2, const void *b3, size_t l3,
                            struct iovec *iov, size_t niov);
/* Send what is queued, up to the pass budget. */
int nxc__stream_conn_flush(stream_conn_t *conn);

/* --- passive.c ---------------------------------------------------------------------------- */

/* A whole frame arrived on an inbound connection. */
void nxc__stream_passive_dispatch(stream_conn_t *conn);
/* The payload of a tcp write landed: the passive op's bytes are all there. */
void nxc__stream_passive_payload_done(stream_conn_t *conn);
/* The peer's last inbound connection closed. */
void nxc__stream_peer_gone(stream_tp_t *t, stream_peer_t *p, const char *why);

/* --- active.c ----------------------------------------------------------------------------- */

/* A whole frame arrived on an outbound connection. */
void nxc__stream_active_dispatch(stream_conn_t *conn);
/* An active read's bytes all arrived. */
void nxc__stream_active_payload_done(stream_conn_t *conn);
/* The connect of `conn` finished (writable): check it, say HELLO. */
void nxc__stream_conn_connected(stream_conn_t *conn);
void nxc__stream_stripe_end(stream_tp_t *t, stream_stripe_t *s, nxc_status_t st, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));
/* Connecting failed: fail what waits for the peer unless something will carry it. */
void nxc__stream_peer_unreachable(stream_tp_t *t, stream_peer_t *p, const char *why);
/* Give waiting stripes to free connections; open more while allowed. */
void nxc__stream_dispatch(stream_tp_t *t, stream_peer_t *p);

/* --- peer.c ------------------------------------------------------------------------------- */

stream_peer_t *nxc__stream_peer_find(stream_tp_t *t, const uint8_t *instance);
stream_peer_t *nxc__stream_peer_get(stream_tp_t *t, const uint8_t *instance, const char *name);
void nxc__stream_peer_unref(stream_tp_t *t, stream_peer_t *p);
/* Remember how to reach the peer of `md` (active side). */
nxc_status_t nxc__stream_peer_learn(stream_peer_t *p, const nxc__metadata_t *md,
                                    const nxc__md_section_t *sec);
/* A working outbound connection to `p` (NULL: none). */
stream_conn_t *nxc__stream_ready_conn(stream_tp_t *t, const stream_peer_t *p);

#endif
