/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connector and op internals of the core. Transports do not include this
 * header: what they may use is in transport/transport.h.
 *
 * One mutex per connector (c->lock) guards the connector, its ops and every
 * call into a transport. The progress thread holds it while progressing and
 * drops it while sleeping in epoll. c->cond is broadcast whenever an op
 * reaches a terminal state or its in-flight count drops, which is what
 * nxc_op_wait() and the cancel/release drains wait on.
 */
#ifndef NXC_CORE_CORE_H
#define NXC_CORE_CORE_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/metadata.h"
#include "core/sglist.h"
#include "nxc/nxc.h"
#include "transport/transport.h"
#include "util/hash.h"

#define NXC__MAX_TRANSPORTS 4
#define NXC__MAX_OPTIONS 32 /* options items a connector keeps (each key once) */
/* The field_mask bits this library defines (others are refused). */
#define NXC__CONNECTOR_FIELDS                                                                      \
    (NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |                                   \
     NXC_CONNECTOR_FIELD_PROGRESS_THREAD | NXC_CONNECTOR_FIELD_LOG_LEVEL |                         \
     NXC_CONNECTOR_FIELD_TCP_ADDRESS | NXC_CONNECTOR_FIELD_TCP_PORT | NXC_CONNECTOR_FIELD_OPTIONS)
#define NXC__OP_FIELDS                                                                             \
    (NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_NOTIFICATION_KEY | NXC_OP_FIELD_USER_DATA |               \
     NXC_OP_FIELD_CQ)
/* How long cancel/release let in-flight transfers drain before cutting the
 * connection that carries them. */
#define NXC__DRAIN_MS 2000

/* A peer's permission to move bytes of one passive op (passive side). */
typedef struct nxc__grant {
    struct nxc__grant *next; /* in op->grants */
    uint64_t id;
    nxc__tp_t *tp;
    void *peer; /* the transport's handle of the peer, compared by identity */
    nxc_op_t *op;
    UT_hash_handle by_id; /* in c->grants_by_id */
} nxc__grant_t;

/* A transport option the user set (options.c). */
typedef struct nxc__option_value {
    const nxc__tp_option_t *opt;
    char value[64];
} nxc__option_value_t;

struct nxc_op {
    nxc_connector_t *c;
    nxc_op_t *prev, *next; /* in c->ops */
    nxc_op_kind_t kind;
    nxc_op_status_t status;
    nxc_status_t result; /* NXC_INPROGRESS until terminal */
    char message[256];
    char key[NXC_KEY_MAX + 1];
    /* In c->passive_by_key while the op is passive and not released (keys
     * are unique among those); `indexed` says whether it is. */
    UT_hash_handle by_key;
    bool indexed;
    uint8_t secret[NXC__SECRET_LEN];
    nxc_desc_t *local;
    size_t nlocal;
    size_t total;
    void *user_data;
    uint64_t deadline;           /* monotonic ns; UINT64_MAX: none */
    int efd;                     /* eventfd made on demand by nxc_op_fd(); -1 before */
    nxc_cq_t *cq;                /* gets an entry when the op ends; NULL: none */
    nxc_op_t *cq_prev, *cq_next; /* in cq's entries while queued */
    bool cq_queued;
    bool released;                    /* the user released the handle; freed once idle */
    const nxc__transport_ops_t *used; /* the transport that moved the bytes */
    int busy;                         /* transport work in flight on the op */

    /* passive */
    char *md_text;
    size_t md_len;
    bool revoked; /* no new grants */
    nxc__grant_t *grants;
    void *exposed[NXC__MAX_TRANSPORTS]; /* per transport expose() state */

    /* active */
    nxc__tp_t *tp;
    void *tp_op; /* the transport's per-op state */
    nxc__metadata_t md;
    nxc__seg_t *segs;
    size_t nsegs;
};

struct nxc_connector {
    pthread_mutex_t lock;
    /* Threads blocked on `lock`: the progress thread steps aside for them
     * between passes, so a long transfer cannot starve API calls. */
    atomic_int waiters;
    /* nxc_op_wait() sleeps here, not on `lock`, so that waking up does not
     * depend on winning `lock` from a busy progress thread. */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond; /* CLOCK_MONOTONIC; broadcast when any op ends */
    pthread_cond_t cond;      /* CLOCK_MONOTONIC */
    char name[NXC_NAME_MAX + 1];
    char transports_text[128];
    bool transports_chosen; /* the user ordered the transports (param or NXC_TRANSPORTS) */
    nxc__option_value_t options[NXC__MAX_OPTIONS]; /* checked, for transports' create() */
    size_t noptions;
    uint8_t instance[NXC__INSTANCE_LEN];
    char host[NXC__HOST_MAX + 1];
    uint32_t pid;
    uint64_t start_time;
    nxc__tp_t *tps[NXC__MAX_TRANSPORTS]; /* in preference order */
    size_t ntps;
    int epfd;    /* transports' event fds, wakefd and timerfd */
    int wakefd;  /* eventfd: wakes the progress thread or waiters */
    int timerfd; /* CLOCK_MONOTONIC: readable when the next deadline or timer is due */
    /* What timerfd is set to (ns, UINT64_MAX: disarmed), so that a loop pass
     * whose next due time did not change makes no timerfd_settime call. */
    uint64_t timer_set;
    bool use_thread;
    bool stopping;
    /* nxc_connector_destroy() has begun (set under both locks): waits end
     * with NXC_ERR_CANCELED, nothing is reaped until destroy does it. */
    bool destroying;
    /* Threads inside nxc_op_wait(): destroy frees nothing until they left. */
    atomic_int in_wait;
    pthread_t thread;
    nxc_op_t *ops;       /* every op not yet freed */
    nxc_cq_t *cqs;       /* every completion queue not yet destroyed */
    nxc_mem_t *mems;     /* every registration not yet dropped */
    size_t released_ops; /* released by the user, not yet freed */
    uint64_t next_grant_id;
    /* Indexes (uthash) so that a peer's request finds its op, and a grant
     * id its grant, without a walk of every op: a server has thousands. */
    nxc_op_t *passive_by_key;
    nxc__grant_t *grants_by_id;
    /* No live op's deadline comes before this (exact after each walk of
     * nxc__check_deadlines, lowered when an op is linked): loop passes and
     * timer arming need no walk of every op until it is reached. */
    uint64_t deadline_floor;
};

/* A completion queue: the ended ops whose entries were not taken yet. */
struct nxc_cq {
    nxc_connector_t *c;
    nxc_cq_t *next;        /* in c->cqs */
    nxc_op_t *head, *tail; /* queued ops, oldest first (op->cq_prev/cq_next) */
    atomic_size_t count;   /* queued ops; read without the lock by waiters */
    int efd;               /* eventfd: readable while count > 0 */
};

/* Take the connector lock from an API call. */
static inline void nxc__lock(nxc_connector_t *c) {
    atomic_fetch_add(&c->waiters, 1);
    pthread_mutex_lock(&c->lock);
    atomic_fetch_sub(&c->waiters, 1);
}
static inline void nxc__unlock(nxc_connector_t *c) {
    pthread_mutex_unlock(&c->lock);
}

/* --- core internals --------------------------------------------------------- */

/* nxc__op_terminal() without the connector lock (the state is published
 * last). */
static inline bool nxc__op_terminal_atomic(const nxc_op_t *op) {
    nxc_op_status_t s = __atomic_load_n(&op->status, __ATOMIC_ACQUIRE);
    return s == NXC_OP_COMPLETE || s == NXC_OP_CANCELLED || s == NXC_OP_ERRORED;
}

/* progress.c */
int nxc__progress_locked(nxc_connector_t *c);
/* Arm every transport for sleeping; false: work is pending, progress again. */
bool nxc__arm_all(nxc_connector_t *c);
/* The earliest monotonic ns at which progress must run (an op's deadline,
 * a transport's timer); UINT64_MAX: none. */
uint64_t nxc__next_due(nxc_connector_t *c);
/* Before sleeping on epfd: arm the transports and set the timerfd to the
 * next due time. false: work is pending or due, progress again. */
bool nxc__loop_arm(nxc_connector_t *c);
/* After waking: empty the wake eventfd and the timerfd. */
void nxc__loop_drain(nxc_connector_t *c);
/* Sleep until woken, due or timeout_ms (-1: no limit; lock held on entry and
 * exit). */
void nxc__sleep_locked(nxc_connector_t *c, int timeout_ms);
void *nxc__progress_thread(void *arg);
/* A public wait begins / ends: nxc_connector_destroy() frees nothing while
 * any is inside (c->in_wait). Call enter before touching anything else. */
void nxc__waiter_enter(nxc_connector_t *c);
void nxc__waiter_leave(nxc_connector_t *c);
/* With a progress thread, lock not held: sleep on done_cond (broadcast when
 * any op ends) until pred(arg) (read without the lock: atomics only), the
 * connector is being destroyed, or the deadline. */
void nxc__sleep_until_done(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                           uint64_t deadline);
/* Wait (lock held) until pred(arg) or the deadline; drives progress when
 * the connector has no thread. Returns pred(arg). */
bool nxc__wait_locked(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                      uint64_t deadline);

/* op.c */
/* Choose the transport for a transfer to the peer of `md` from memory of
 * `kind`: the first, in this connector's order (fallbacks last unless the
 * user ordered them), that the peer offers and that says it reaches the peer.
 * `note` (may be NULL) hears every transport's verdict; with `all`, the ones
 * after the choice are asked too (nxc-info). NULL when none fits; then
 * *why_p (may be NULL) is the status a begin fails with: NXC_ERR_UNREACHABLE
 * when a transport found the peer gone, else NXC_ERR_NO_TRANSPORT. */
typedef void (*nxc__pick_note_fn)(void *arg, const nxc__tp_t *tp, bool chosen, const char *why);
nxc__tp_t *nxc__pick(nxc_connector_t *c, const nxc__metadata_t *md, nxc_device_kind_t kind,
                     const nxc__md_section_t **sec_p, nxc__pick_note_fn note, void *arg, bool all,
                     nxc_status_t *why_p);
/* Can a transport of `c` move memory of device `d`? NXC_ERR_NOT_SUPPORTED
 * naming `what` ("local") if none. */
nxc_status_t nxc__check_device(nxc_connector_t *c, nxc_device_t d, const char *what);
void nxc__op_link(nxc_connector_t *c, nxc_op_t *op);
void nxc__op_free_locked(nxc_op_t *op);
/* Revoke a passive op's access: no new grants; drain or drop existing ones
 * (may_block: wait up to NXC__DRAIN_MS first). */
void nxc__passive_revoke(nxc_op_t *op, bool may_block);
/* Connector destroy: stop every op (cancel the active ones, revoke the
 * passive ones) at once, wait for them against one drain deadline, abort
 * the stragglers and wait once more, then mark every op released. Its time
 * does not grow with the number of stuck ops. */
void nxc__stop_all(nxc_connector_t *c);
/* Cancel an active op and wait for it to drain (bounded). */
void nxc__active_stop(nxc_op_t *op, nxc_status_t why);
void nxc__check_deadlines(nxc_connector_t *c);
/* Free released ops that are idle. */
void nxc__reap(nxc_connector_t *c);
/* The user let go of op (release, or connector destroy). */
void nxc__op_mark_released(nxc_op_t *op);

/* cq.c (lock held) */
/* The op ended: queue its entry (nothing if it has no queue or is released). */
void nxc__cq_push(nxc_op_t *op);
/* The op is being released or freed: withdraw its entry if queued. */
void nxc__cq_withdraw(nxc_op_t *op);
/* Is `cq` a live queue of `c`? */
bool nxc__cq_of(nxc_connector_t *c, const nxc_cq_t *cq);
/* Connector destroy: detach and free every queue. */
void nxc__cq_destroy_all(nxc_connector_t *c);

/* options.c (connector creation) */
/* Check and keep the items of the `options` parameter. */
nxc_status_t nxc__options_parse(nxc_connector_t *c, const char *text);
/* A shorthand field (tcp_address) sets option scope.key: checked alike,
 * and refused when the options text set that key too. */
nxc_status_t nxc__option_shorthand(nxc_connector_t *c, const char *field, const char *scope,
                                   const char *key, const char *value);

/* mem.c (lock held) */
/* Connector destroy: drop every registration the user left. */
void nxc__mem_drop_all(nxc_connector_t *c);
/* Registrations made and reused by this connector's transports (tests). */
void nxc__reg_stats(nxc_connector_t *c, uint64_t *made, uint64_t *reused);

#endif
