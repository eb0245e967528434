/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connector inside the core: its struct, its lock and its limits.
 * Transports do not include this header: what they may use is in
 * transport/transport.h.
 *
 * One mutex per connector (c->lock) guards the connector, its ops and every
 * call into a transport. The progress thread holds it while progressing and
 * drops it while sleeping in epoll. c->cond is broadcast whenever an op
 * reaches a terminal state or its in-flight count drops, which is what
 * nxc_op_wait() and the cancel/release drains wait on.
 */
#ifndef NXC_CORE_CONNECTOR_H
#define NXC_CORE_CONNECTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"
#include "transport/transport.h"
#include "util/eventfd.h"

#define NXC__MAX_TRANSPORTS 4
#define NXC__MAX_OPTIONS 32 /* options items a connector keeps (each key once) */
/* The field_mask bits this library defines (others are refused). */
#define NXC__CONNECTOR_FIELDS                                                                      \
    (NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |                                   \
     NXC_CONNECTOR_FIELD_PROGRESS_THREAD | NXC_CONNECTOR_FIELD_LOG_LEVEL |                         \
     NXC_CONNECTOR_FIELD_TCP_ADDRESS | NXC_CONNECTOR_FIELD_TCP_PORT |                              \
     NXC_CONNECTOR_FIELD_OPTIONS | NXC_CONNECTOR_FIELD_METADATA_VERSION)

typedef struct nxc__grant nxc__grant_t; /* core/grant.h */

/* A transport option the user set (options.c). */
typedef struct nxc__option_value {
    const nxc__tp_option_t *opt;
    char value[64];
} nxc__option_value_t;

struct nxc_connector {
    pthread_mutex_t lock;
    /* Threads blocked on `lock`: the progress thread steps aside for them
     * between passes, so a long transfer cannot starve API calls. */
    atomic_int waiters;
    /* Threads asleep on `cond` in nxc__wait_locked() (under `lock`), and
     * of those the ones a broadcast woke that have not re-taken `lock`
     * yet: those count for stepping aside too. A sleeper that nothing woke
     * does not: stepping aside for it waited its whole sleep, up to 1000
     * sched_yield() calls after every busy pass, and on a loaded host a
     * drain's own progress stalled for seconds behind it. */
    int sleepers;
    atomic_int woken;
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
    uint16_t md_version;                 /* the metadata format its passive ops write: 1 or 2 */
    nxc__tp_t *tps[NXC__MAX_TRANSPORTS]; /* in preference order */
    size_t ntps;
    int epfd;    /* transports' event fds, wakefd and timerfd */
    int wakefd;  /* eventfd: wakes the progress thread or waiters */
    int timerfd; /* CLOCK_MONOTONIC: readable when the next deadline or timer is due */
    /* What timerfd is set to (ns, UINT64_MAX: disarmed), so that a loop pass
     * whose next due time did not change makes no timerfd_settime call. */
    uint64_t timer_set;
    /* Who may be asleep on epfd, so that work posted outside a pass must
     * write wakefd (nxc__loop_needs_wake in progress.c): loops inside nxc
     * (the progress thread, waiters without it) between arming and taking
     * the lock back, and the application from a successful arm until its
     * next nxc_connector_progress(). */
    int loop_sleepers;
    bool app_armed;
    /* Work was posted while no loop slept: the next arm refuses (progress
     * first) and the next pass clears it. Atomic for the lingering
     * progress thread, which looks without the lock. */
    atomic_bool wake_pending;
    bool use_thread;
    bool stopping;
    /* nxc_connector_destroy() has begun (set under both locks): waits end
     * with NXC_ERR_CANCELED, nothing is reaped until destroy does it. */
    bool destroying;
    /* Threads inside nxc_op_wait(): destroy frees nothing until they left. */
    atomic_int in_wait;
    pthread_t thread;
    nxc_op_t *ops, *ops_tail; /* every op not yet freed, newest first */
    nxc_cq_t *cqs;            /* every completion queue not yet destroyed */
    nxc_mem_t *mems;          /* every registration not yet dropped */
    size_t released_ops;      /* released by the user, not yet freed */
    uint64_t next_grant_id;
    /* Indexes (uthash) so that a peer's request finds its op, and a grant
     * id its grant, without a walk of every op: a server has thousands. */
    nxc_op_t *passive_by_key;
    nxc__grant_t *grants_by_id;
    /* No live op's deadline comes before this (exact after each walk of
     * nxc__check_deadlines, lowered when an op is linked): loop passes and
     * timer arming need no walk of every op until it is reached. */
    uint64_t deadline_floor;
    /* Run by the loop after each pass over the transports (lock held): the
     * ops' deadlines and reaping, nxc__ops_after_pass() in op.c. Through
     * this pointer, set at creation, progress.c calls nothing in op.c, and
     * op.c waits through progress.c: the two files form no cycle. */
    void (*after_pass)(nxc_connector_t *c);
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

/* Wake the threads asleep in nxc__wait_locked() (lock held): they will
 * want the lock back, and the progress thread steps aside for them.
 * Without a progress thread they sleep on epfd instead, and what changed
 * may have come from a transport's own thread (a shm copier ending an op)
 * or another thread's pass, which signal none of its fds. */
static inline void nxc__wake_sleepers(nxc_connector_t *c) {
    if (c->sleepers > 0) atomic_store(&c->woken, c->sleepers);
    pthread_cond_broadcast(&c->cond);
    if (!c->use_thread && c->loop_sleepers > 0) nxc__eventfd_ring(c->wakefd);
}

#endif
