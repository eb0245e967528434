/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine (internal): what the tcp transport and the shm
 * transport's control channel share. Connections carry the framed protocol
 * of wire.h; the engine runs the passive side (checking every request with
 * the core's grants before touching memory) and the active side (a queue of
 * stripes per peer, one stripe at a time per connection, connections reused
 * across ops). Everything runs under the connector lock from progress(),
 * except the shm copier threads (shm.c), which touch only the memory a
 * grant covers and report back through an eventfd.
 *
 * The flavour hooks below are what differs: how to listen and connect, how a
 * connection is tuned, and how granted bytes move when they do not travel in
 * the stream (shm: process_vm_readv/writev).
 */
#ifndef NXC_TRANSPORT_STREAM_STREAM_H
#define NXC_TRANSPORT_STREAM_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "transport/stream/wire.h"
#include "transport/transport.h"

typedef struct stream_tp stream_tp_t;
typedef struct stream_conn stream_conn_t;
typedef struct stream_peer stream_peer_t;
typedef struct stream_stripe stream_stripe_t;

typedef struct stream_flavour {
    bool inline_data;     /* the bytes travel in the stream (tcp) */
    unsigned max_conns;   /* outbound connections per peer */
    unsigned max_stripes; /* stripes of one large transfer */
    uint64_t stripe_min;  /* bytes per stripe at least */
    /* Start a non-blocking connect to the peer that wrote `md`/`sec`; try the
     * `attempt`-th address it offers. Returns the fd, -1 with errno when that
     * address fails, or -2 when there are no more addresses. */
    int (*connect)(stream_tp_t *t, const nxc__metadata_t *md, const nxc__md_section_t *sec,
                   unsigned attempt);
    /* Tune an accepted or connected socket (keepalive, timeouts). */
    void (*tune)(stream_tp_t *t, int fd);
    /* Optional: vet an outbound connection once the peer answered HELLO (at
     * every first contact) and learn which process holds its other end
     * (shm: from the kernel's credentials of the listening socket, never from
     * the metadata). false: the connection is closed with the reason in why. */
    bool (*vet)(stream_tp_t *t, int fd, const nxc__metadata_t *md, pid_t *pid_p, char *why,
                size_t why_len);
    /* Move the bytes of a granted stripe that does not travel in the stream
     * (called only when !inline_data; NULL otherwise).
     * Either finish now (return true with *result set) or hand the work to a
     * thread and call nxc__stream_copy_done() later (return false). */
    bool (*copy)(stream_tp_t *t, stream_stripe_t *s, nxc_status_t *result, char *why,
                 size_t why_len);
    /* Optional: an inbound connection from process `pid` (the kernel's
     * credentials of a unix socket; never called for tcp) closed. */
    void (*process_lost)(stream_tp_t *t, pid_t pid);
    /* Free what the flavour added to the transport. */
    void (*destroy)(stream_tp_t *t);
} stream_flavour_t;

/* One transfer's share that one connection carries. */
struct stream_stripe {
    stream_stripe_t *next; /* in the peer's queue of stripes waiting for a connection */
    nxc_op_t *op;
    stream_conn_t *conn; /* while assigned */
    unsigned idx;
    size_t n; /* ranges == local iovecs */
    nxc__wire_range_t *remote;
    struct iovec *local;
    uint64_t bytes;
    uint64_t grant;
    pid_t remote_pid; /* shm: the process holding the granting connection (vet()) */
    bool done;
    bool copying; /* in the flavour's copy(): ends only through nxc__stream_copy_done() */
    int ctl_fd;   /* shm: the control connection, for copiers to watch */
    /* shm copier: give up at the next chunk. NXC_OK: go on; else why it must
     * stop (NXC_ERR_PEER_FAILED: its connection closed; a cancel reason). */
    _Atomic nxc_status_t stop;
};

struct stream_tp {
    nxc__tp_t base;
    const stream_flavour_t *fl;
    const char *name;
    int epfd; /* the engine's own epoll set: listener, connections, copier eventfd */
    int lfd;  /* listening socket */
    stream_conn_t *conns;
    stream_peer_t *peers;
    uint64_t next_xfer;
    int timeout_ms;       /* a frame left half-sent this long closes its connection */
    unsigned max_stripes; /* the flavour's, or as configured */
    bool dirty;           /* stripes wait for a connection: dispatch on the next progress */
    struct watch *watches;
    void *flavour_state;
};

/* Set up the engine around a listening socket (owned from now on) and the
 * flavour; the flavour's create() calls it. */
nxc_status_t nxc__stream_init(stream_tp_t *t, const stream_flavour_t *fl, const char *name, int lfd,
                              int timeout_ms);
void nxc__stream_destroy(nxc__tp_t *tp);
/* Watch one more fd (the shm copier's eventfd); events call back `fn`. */
nxc_status_t nxc__stream_watch(stream_tp_t *t, int fd, void (*fn)(stream_tp_t *t));
/* A copier finished stripe `s` (lock held): send DONE and go on. */
void nxc__stream_copy_done(stream_tp_t *t, stream_stripe_t *s, nxc_status_t result,
                           const char *why);

/* Fill a passive op's metadata section: this transport's name, `conn_info` (kept
 * by the transport) as connection info, and empty keys (sec->keys is
 * allocated here and freed by the core). */
nxc_status_t nxc__stream_section(stream_tp_t *t, nxc_op_t *op, nxc__md_section_t *sec,
                                 const char *conn_info);

/* Has this transport a working connection to the connector `instance`? */
bool nxc__stream_peer_connected(stream_tp_t *t, const uint8_t *instance);
/* The process holding a working connection to the connector `instance`, as
 * vet() learnt it at first contact; 0 when there is none. */
pid_t nxc__stream_peer_pid(stream_tp_t *t, const uint8_t *instance);

/* Tell the peer `instance` that a direct read or write (`type`
 * NXC__WIRE_READ_DONE or NXC__WIRE_WRITE_DONE) of its op `key` moved every
 * byte (shm), over a ready connection; false when there is none. */
bool nxc__stream_send_direct_done(stream_tp_t *t, const uint8_t *instance, const char *key,
                                  const uint8_t *secret, uint8_t type);

/* The ops shared by both transports. */
int nxc__stream_event_fd(nxc__tp_t *tp);
int nxc__stream_progress(nxc__tp_t *tp);
bool nxc__stream_arm(nxc__tp_t *tp);
bool nxc__stream_idle(nxc__tp_t *tp);
uint64_t nxc__stream_next_timer(nxc__tp_t *tp);
bool nxc__stream_supports_device(nxc__tp_t *tp, nxc_device_kind_t kind);
void nxc__stream_drop_peer(nxc__tp_t *tp, void *grant_peer);
nxc_status_t nxc__stream_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec);
void nxc__stream_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why);
void nxc__stream_abort_io(nxc__tp_t *tp, nxc_op_t *op);
void nxc__stream_release(nxc__tp_t *tp, nxc_op_t *op);

/* The entries of a flavour's ops table that are the engine's as they are;
 * the flavour adds create, expose, reachable, post and describe (and shm
 * retire and unexpose). */
#define NXC__STREAM_OPS                                                                            \
    NXC__STREAM_OPS_BUT_LOOP, .progress = nxc__stream_progress, .arm = nxc__stream_arm
/* The same without progress and arm, for a flavour that wraps them (shm). */
#define NXC__STREAM_OPS_BUT_LOOP                                                                   \
    .destroy = nxc__stream_destroy, .event_fd = nxc__stream_event_fd,                              \
    .next_timer = nxc__stream_next_timer, .idle = nxc__stream_idle,                                \
    .supports_device = nxc__stream_supports_device, .drop_peer = nxc__stream_drop_peer,            \
    .cancel = nxc__stream_cancel, .abort_io = nxc__stream_abort_io, .release = nxc__stream_release

#endif
