/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress and waiting: one loop drives every transport, deadlines and
 * reaping. It runs on the connector's progress thread, or inside
 * nxc_op_wait()/status()/nxc_connector_progress() when the thread is off.
 *
 * Waiting has one owner, this file. The connector's epoll set holds the
 * transports' event fds, the wake eventfd (an API call posted work) and a
 * timerfd set to the next time something is due (an op's deadline, a
 * transport's timer). Before sleeping the loop arms the transports and the
 * timer; after waking it drains both fds. Nothing wakes up periodically, so
 * an idle connector's fd stays quiet (see nxc_connector_arm() in nxc.h).
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/progress.h"
#include "util/eventfd.h"
#include "util/time.h"

/* Longest sleep of the progress thread: a safety net only, every timer is
 * on the timerfd. */
#define SLEEP_MAX_MS 1000

void nxc__wake(nxc_connector_t *c) {
    nxc__eventfd_ring(c->wakefd);
}

bool nxc__loop_wake_wanted(nxc_connector_t *c) {
    if (c->loop_sleepers > 0 || c->app_armed) return true;
    atomic_store_explicit(&c->wake_pending, true, memory_order_relaxed);
    return false;
}

bool nxc__loop_needs_wake(nxc_connector_t *c, nxc__tp_t *tp) {
    const nxc__transport_ops_t *ops = tp->ops;
    bool work = !ops->idle || !ops->idle(tp) || nxc__next_due(c) < c->timer_set;
    return work && nxc__loop_wake_wanted(c);
}

/* Without a progress thread, where the application armed: arm again after
 * a pass it did not ask for, which may have drained what was armed (shm's
 * doorbell, UCX's worker fd); work already pending writes wakefd, so that
 * its loop comes back at once. */
static void keep_app_armed(nxc_connector_t *c) {
    if (c->use_thread || !c->app_armed) return;
    if (!nxc__loop_arm(c)) nxc__wake(c);
}

int nxc__progress_in_call(nxc_connector_t *c) {
    int work = nxc__progress_locked(c);
    keep_app_armed(c);
    return work;
}

static bool wake_pending(nxc_connector_t *c) {
    return atomic_load_explicit(&c->wake_pending, memory_order_relaxed);
}

bool nxc__try_lock(nxc_connector_t *c) {
    return pthread_mutex_trylock(&c->lock) == 0;
}

void nxc__unlock_and_wake_if_needed(nxc_connector_t *c, nxc__tp_t *tp) {
    bool wake = nxc__loop_needs_wake(c, tp);
    nxc__unlock(c);
    if (wake) nxc__wake(c);
}

void nxc__loop_drain(nxc_connector_t *c) {
    nxc__eventfd_drain(c->wakefd);
    uint64_t count;
    if (read(c->timerfd, &count, sizeof count) == (ssize_t)sizeof count)
        c->timer_set = UINT64_MAX; /* it fired: a one-shot timer is disarmed now */
}

int nxc__progress_locked(nxc_connector_t *c) {
    /* this pass takes up what was posted before it (all under the lock) */
    atomic_store_explicit(&c->wake_pending, false, memory_order_relaxed);
    int work = 0;
    for (size_t i = 0; i < c->ntps; i++)
        work += c->tps[i]->ops->progress(c->tps[i]);
    c->after_pass(c); /* the ops' deadlines and reaping */
    return work;
}

bool nxc__arm_all(nxc_connector_t *c) {
    for (size_t i = 0; i < c->ntps; i++)
        if (!c->tps[i]->ops->arm(c->tps[i])) return false;
    return true;
}

uint64_t nxc__next_due(nxc_connector_t *c) {
    /* A lower bound: when it passes, nxc__check_deadlines() makes it exact. */
    uint64_t first = c->deadline_floor;
    for (size_t i = 0; i < c->ntps; i++) {
        const nxc__transport_ops_t *ops = c->tps[i]->ops;
        if (ops->next_timer) {
            uint64_t timer = ops->next_timer(c->tps[i]);
            if (timer < first) first = timer;
        }
    }
    return first;
}

bool nxc__loop_arm(nxc_connector_t *c) {
    if (wake_pending(c) || !nxc__arm_all(c)) return false;
    uint64_t due = nxc__next_due(c);
    if (due != UINT64_MAX && due <= nxc__now_ns()) return false; /* already due: progress first */
    if (due == c->timer_set) return true;
    struct itimerspec its = {0}; /* all zero: disarmed */
    if (due != UINT64_MAX) its.it_value = nxc__clock_kernel(due);
    if (timerfd_settime(c->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        c->timer_set = due;
    else
        c->timer_set = UINT64_MAX - 1; /* unknown: set it again next time */
    return true;
}

void nxc__sleep_locked(nxc_connector_t *c, int timeout_ms) {
    if (!nxc__loop_arm(c)) return; /* events already pending: progress again */
    c->loop_sleepers++;
    pthread_mutex_unlock(&c->lock);
    struct epoll_event evs[8];
    epoll_wait(c->epfd, evs, 8, timeout_ms);
    pthread_mutex_lock(&c->lock);
    c->loop_sleepers--;
    nxc__loop_drain(c);
}

bool nxc__lock_wanted(nxc_connector_t *c) {
    return atomic_load(&c->waiters) > 0 || atomic_load(&c->woken) > 0;
}

/* Let API calls that want the lock in between two busy passes. */
static void step_aside(nxc_connector_t *c) {
    if (!nxc__lock_wanted(c)) return;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < 1000 && nxc__lock_wanted(c); i++)
        sched_yield();
    pthread_mutex_lock(&c->lock);
}

/* The longest linger a transport asks for (see nxc__tp_t.linger_ns). */
static uint64_t linger_ns(const nxc_connector_t *c) {
    uint64_t ns = 0;
    for (size_t i = 0; i < c->ntps; i++)
        if (c->tps[i]->ops->ready && c->tps[i]->linger_ns > ns) ns = c->tps[i]->linger_ns;
    return ns;
}

static bool any_ready(nxc_connector_t *c) {
    for (size_t i = 0; i < c->ntps; i++)
        if (c->tps[i]->ops->ready && c->tps[i]->ops->ready(c->tps[i])) return true;
    return false;
}

/* The transports' event fds, to peek at with poll() while lingering. The
 * wake eventfd and the timerfd are not among them: a lingering thread is
 * not asleep, so an API call posts work by c->wake_pending instead of the
 * eventfd, and a timer waits for the linger's end as it did. */
static nfds_t transport_fds(nxc_connector_t *c, struct pollfd *fds) {
    nfds_t n = 0;
    for (size_t i = 0; i < c->ntps; i++)
        fds[n++] = (struct pollfd){.fd = c->tps[i]->ops->event_fd(c->tps[i]), .events = POLLIN};
    return n;
}

typedef enum { LINGER_OVER, LINGER_WORK, LINGER_FD } linger_end_t;

/* The fds are polled at one look in this many: a system call at every
 * look slowed the looks at the bitmap (a shm owner's 4 KiB ops). */
#define FD_LOOK_EVERY 4

/* Keep looking, lock released, until a transport has work (WORK), an API
 * call wants the lock or posted work (WORK: destroy takes the lock too), a
 * transport's fd has an event (FD), or `until` passes (OVER). A peer that
 * finishes an op meanwhile finds the doorbell unarmed and rings no one: at
 * one op every few microseconds, the wake-up each op would cost its
 * initiator (a cross-CPU interrupt inside its system call) is not paid.
 * The fds are looked at so that a frame that arrives meanwhile (a grant,
 * the end of a stream op, a tcp op of the same connector) is taken at
 * once, not when the linger runs out up to linger_ns later. Yielding, so
 * that on a host with no free core the others run. */
static linger_end_t linger(nxc_connector_t *c, uint64_t until) {
    struct pollfd fds[NXC__MAX_TRANSPORTS];
    nfds_t nfds = transport_fds(c, fds);
    pthread_mutex_unlock(&c->lock);
    linger_end_t end;
    for (unsigned looks = 0;; looks++) {
        /* peeked, not taken: the pass that follows handles the event */
        end = any_ready(c) || nxc__lock_wanted(c) || wake_pending(c) ? LINGER_WORK
              : looks % FD_LOOK_EVERY == 0 && poll(fds, nfds, 0) > 0 ? LINGER_FD
                                                                     : LINGER_OVER;
        if (end != LINGER_OVER || nxc__now_ns() >= until) break;
        sched_yield();
    }
    pthread_mutex_lock(&c->lock);
    return end;
}

void *nxc__progress_thread(void *arg) {
    nxc_connector_t *c = arg;
    pthread_mutex_lock(&c->lock);
    uint64_t last_work = 0, linger_for = linger_ns(c);
    while (!c->stopping) {
        if (nxc__progress_locked(c) > 0) {
            if (linger_for) last_work = nxc__now_ns();
            step_aside(c);
            continue;
        }
        if (last_work) {
            linger_end_t end = linger(c, last_work + linger_for);
            if (end == LINGER_WORK) continue;
            /* One pass for the fd's event; one that brought no work (an fd
             * that stays readable with nothing to do) ends in the sleep,
             * which arms and drains, instead of lingering on it. */
            last_work = 0;
            if (end == LINGER_FD) continue;
        }
        nxc__sleep_locked(c, SLEEP_MAX_MS);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

bool nxc__wait_locked(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                      uint64_t deadline) {
    while (!pred(arg)) {
        int ms = nxc__ms_until(deadline, SLEEP_MAX_MS);
        if (deadline != UINT64_MAX && nxc__now_ns() >= deadline) break;
        if (c->use_thread) {
            struct timespec ts =
                nxc__clock_kernel(nxc__now_ns() + (uint64_t)(ms ? ms : 1) * 1000000u);
            c->sleepers++;
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            c->sleepers--;
            /* The lock is ours again: one fewer to step aside for (`woken`
             * changes only under the lock; step_aside() reads it without). */
            if (atomic_load(&c->woken) > 0) atomic_fetch_sub(&c->woken, 1);
        } else {
            if (nxc__progress_locked(c) > 0) continue;
            if (pred(arg)) break;
            nxc__sleep_locked(c, ms ? ms : 1);
        }
    }
    keep_app_armed(c);
    return pred(arg);
}

void nxc__waiter_enter(nxc_connector_t *c) {
    atomic_fetch_add(&c->in_wait, 1);
}

void nxc__waiter_leave(nxc_connector_t *c) {
    pthread_mutex_lock(&c->done_lock);
    atomic_fetch_sub(&c->in_wait, 1);
    pthread_cond_broadcast(&c->done_cond); /* destroy may be waiting for us */
    pthread_mutex_unlock(&c->done_lock);
}

void nxc__sleep_until_done(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                           uint64_t deadline) {
    pthread_mutex_lock(&c->done_lock);
    while (!pred(arg) && !c->destroying) {
        uint64_t now = nxc__now_ns();
        if (now >= deadline) break;
        uint64_t until = deadline - now > 100000000u ? now + 100000000u : deadline;
        struct timespec ts = nxc__clock_kernel(until);
        pthread_cond_timedwait(&c->done_cond, &c->done_lock, &ts);
    }
    pthread_mutex_unlock(&c->done_lock);
}
