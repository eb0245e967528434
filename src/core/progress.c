/*
 * Progress: one loop drives every transport, deadlines and reaping. It runs
 * on the connector's progress thread, or inside nxc_op_wait()/status()/
 * nxc_connector_progress() when the thread is off.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/core.h"
#include "util/time.h"

/* Longest sleep: deadlines are checked at least this often. */
#define SLEEP_MAX_MS 100

void nxc__wake(nxc_connector_t *c) {
    uint64_t one = 1;
    ssize_t r = write(c->wakefd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero, which is enough */
}

int nxc__progress_locked(nxc_connector_t *c) {
    int work = 0;
    for (size_t i = 0; i < c->ntps; i++)
        work += c->tps[i]->ops->progress(c->tps[i]);
    nxc__check_deadlines(c);
    nxc__reap(c);
    return work;
}

bool nxc__arm_all(nxc_connector_t *c) {
    for (size_t i = 0; i < c->ntps; i++)
        if (!c->tps[i]->ops->arm(c->tps[i])) return false;
    return true;
}

/* Earliest deadline of a live op, as a sleep bound. */
static int sleep_bound_ms(nxc_connector_t *c, int cap) {
    uint64_t first = UINT64_MAX;
    for (nxc_op_t *op = c->ops; op; op = op->next)
        if (!nxc__op_terminal(op) && op->deadline < first) first = op->deadline;
    return nxc__ms_until(first, cap);
}

void nxc__sleep_locked(nxc_connector_t *c, int timeout_ms) {
    if (!nxc__arm_all(c)) return; /* events already pending: progress again */
    int bound = sleep_bound_ms(c, timeout_ms);
    pthread_mutex_unlock(&c->lock);
    struct epoll_event evs[8];
    int n = epoll_wait(c->epfd, evs, 8, bound);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) {
            uint64_t v;
            ssize_t r = read(c->wakefd, &v, sizeof v);
            (void)r;
        }
    }
    pthread_mutex_lock(&c->lock);
}

/* Let API calls blocked on the lock in between two busy passes. */
static void step_aside(nxc_connector_t *c) {
    if (atomic_load(&c->waiters) == 0) return;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < 1000 && atomic_load(&c->waiters) > 0; i++)
        sched_yield();
    pthread_mutex_lock(&c->lock);
}

void *nxc__progress_thread(void *arg) {
    nxc_connector_t *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        if (nxc__progress_locked(c) > 0) {
            step_aside(c);
            continue;
        }
        nxc__sleep_locked(c, SLEEP_MAX_MS);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

bool nxc__wait_locked(nxc_connector_t *c, nxc_op_t *op, bool (*pred)(const nxc_op_t *),
                      uint64_t deadline) {
    while (!pred(op)) {
        int ms = nxc__ms_until(deadline, SLEEP_MAX_MS);
        if (deadline != UINT64_MAX && nxc__now_ns() >= deadline) break;
        if (c->use_thread) {
            uint64_t until = nxc__now_ns() + (uint64_t)(ms ? ms : 1) * 1000000u;
            struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                                  .tv_nsec = (long)(until % 1000000000u)};
            atomic_fetch_add(&c->waiters, 1); /* counts while re-taking the lock */
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            atomic_fetch_sub(&c->waiters, 1);
        } else {
            if (nxc__progress_locked(c) > 0) continue;
            if (pred(op)) break;
            nxc__sleep_locked(c, ms ? ms : 1);
        }
    }
    return pred(op);
}
