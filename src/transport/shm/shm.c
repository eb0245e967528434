/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm transport: peers on the same host. The control channel is the
 * stream engine over a unix-domain socket (abstract name "nxc-shm-<instance>",
 * so it vanishes with the process); the bytes never travel in it. Once the
 * passive side granted a request, the active side copies straight between
 * the two processes' buffers with process_vm_readv/process_vm_writev: one
 * copy, no CPU on the passive side, many descriptors per call (IOV_MAX).
 * Transfers above NXC_SHM_INLINE_MAX are split over a pool of
 * NXC_SHM_THREADS copier threads (default 2) working in chunks of at most
 * CHUNK bytes, so a cancel is honoured within one chunk.
 *
 * Reachability: same host identity, the peer process alive with the pid and
 * start time its metadata names (a recycled pid is another process), its
 * socket reachable (not in another network namespace), and the kernel
 * letting this process read its memory (ptrace access mode: same user, or
 * privileges, Yama's ptrace_scope). Any of these failing makes the transport
 * step aside for the next one, and the reason is logged and kept for
 * nxc-info.
 *
 * Revocation: the passive side cannot stop another process's system calls.
 * Release waits (NXC__DRAIN_MS) for a peer holding a grant, then closes its
 * connection; the peer's copier checks for that between chunks. A peer frozen
 * (SIGSTOP) in the middle of a chunk for longer than the drain can still
 * finish that one chunk after release returns: docs/transports.md.
 *
 * Small ops can also be read or written without a grant round trip, in
 * the initiator's own thread: direct.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/shm/shm_internal.h"
#include "util/env.h"
#include "util/error.h"
#include "util/eventfd.h"
#include "util/iov.h"
#include "util/list.h"
#include "util/log.h"
#include "util/sys.h"
#include "util/text.h"

#define CHUNK (4u << 20) /* bytes per copier system call at most */

static socklen_t abstract_addr(struct sockaddr_un *sa, const char *name, size_t len) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (len > sizeof sa->sun_path - 1) len = sizeof sa->sun_path - 1;
    memcpy(sa->sun_path + 1, name, len); /* sun_path[0] = 0: abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* --- copying ---------------------------------------------------------------------------- */

/* Has the passive side closed the control connection (revoked access)? */
static bool hung_up(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Copy bytes [from, to) of stripe `s` in calls of at most CHUNK bytes and
 * IOVS iovecs, watching `ctl` (the control connection) between calls.
 * Returns 0, an errno, or -1 when asked to stop. */
static int copy_range(const stream_stripe_t *s, int ctl, uint64_t from, uint64_t to) {
    bool write = nxc__op_kind(s->op) == NXC_OP_WRITE;
    size_t i = 0;     /* the piece `from` is in */
    uint64_t off = 0; /* and how far into it */
    nxc__iov_seek(s->local, s->n, &i, &off, from);
    while (from < to) {
        if (atomic_load(&s->stop) != NXC_OK) return -1;
        if (hung_up(ctl)) return ECONNRESET;
        struct iovec l[IOVS], r[IOVS];
        size_t nl = 0, nr = 0; /* the two lists are merged apart: neighbours on one side only */
        uint64_t bytes = 0;
        for (size_t j = i, o = off;
             j < s->n && nl < IOVS && nr < IOVS && bytes < CHUNK && from + bytes < to; j++, o = 0) {
            uint64_t len = s->local[j].iov_len - o;
            if (len > to - from - bytes) len = to - from - bytes;
            if (len > CHUNK - bytes) len = CHUNK - bytes;
            nxc__iov_append(l, &nl, (uint8_t *)s->local[j].iov_base + o, (size_t)len);
            nxc__iov_append(r, &nr, (void *)(uintptr_t)(s->remote[j].addr + o), (size_t)len);
            bytes += len;
        }
        ssize_t got = nxc__shm_vm_copy(s->remote_pid, write, l, nl, r, nr);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (got == 0) return EFAULT;
        /* advance by what moved (a partial call moves a prefix) */
        from += (uint64_t)got;
        nxc__iov_seek(s->local, s->n, &i, &off, (uint64_t)got);
    }
    return 0;
}

/* -1 means the copier was told to stop: by a cancel or deadline (the op's
 * own reason), or because the control connection closed under it, which is
 * the peer failing or revoking access, not a cancel. */
static nxc_status_t copy_status(const stream_stripe_t *s, int err) {
    return err == 0                            ? NXC_OK
           : err == -1                         ? atomic_load(&s->stop)
           : err == ESRCH || err == ECONNRESET ? NXC_ERR_PEER_FAILED
                                               : NXC_ERR_TRANSPORT;
}

static const char *copy_error(const stream_stripe_t *s, int err, char *buf, size_t len) {
    nxc_status_t stop = atomic_load(&s->stop);
    if (err == -1 && stop == NXC_ERR_TIMED_OUT) return "the op's deadline passed";
    if (err == -1 && stop != NXC_ERR_PEER_FAILED) return "cancelled";
    if (err == ECONNRESET || err == -1)
        snprintf(buf, len, "the peer closed the connection (access revoked, or it died)");
    else if (err == EPERM)
        snprintf(buf, len, "the kernel refused access to the peer's memory (EPERM)");
    else if (err == ESRCH)
        snprintf(buf, len, "the peer process is gone");
    else
        snprintf(buf, len, "process_vm copy failed: %s", strerror(err));
    return buf;
}

/* Connector lock held: tell the stream engine that `group`'s copy is
 * over (the op may complete), and free the group. */
static void report_group(stream_tp_t *stream, group_t *group) {
    int err = atomic_load(&group->failed);
    char buf[160];
    nxc__stream_copy_done(stream, group->s, copy_status(group->s, err),
                          err ? copy_error(group->s, err, buf, sizeof buf) : "");
    close(group->ctl);
    free(group);
}

/* The group's last job ended (in a copier). Where the connector lock is
 * free the copier reports it itself; else the loop does, woken through
 * t->efd. Handing every end to the loop cost a wake-up of the progress
 * thread before the op could complete: 27 us of a 4 MiB write's 320 here. */
static void group_finish(shm_tp_t *t, group_t *group) {
    nxc_connector_t *c = t->s.base.c;
    if (nxc__try_lock(c)) {
        report_group(&t->s, group);
        nxc__unlock_and_wake_if_needed(c, &t->s.base);
        return;
    }
    pthread_mutex_lock(&t->mu);
    group->next = t->done;
    t->done = group;
    pthread_mutex_unlock(&t->mu);
    nxc__eventfd_ring(t->efd);
}

ssize_t nxc__shm_vm_copy_part(pid_t pid, bool write, const struct iovec *mine,
                              const struct iovec *theirs, size_t n, uint64_t from, uint64_t to) {
    struct iovec m[IOVS], r[IOVS];
    size_t nm = nxc__iov_slice(mine, n, from, to, m);
    size_t nr = nxc__iov_slice(theirs, n, from, to, r);
    return nxc__shm_vm_copy(pid, write, m, nm, r, nr);
}

/* The second half of a direct copy: its bytes, then `done` for the caller
 * waiting on it. */
static void copy_half(half_copy_t *h) {
    h->moved = nxc__shm_vm_copy_part(h->pid, h->write, h->mine, h->theirs, h->n, h->from, h->to);
    atomic_store_explicit(&h->done, true, memory_order_release);
}

bool nxc__shm_post_half(shm_tp_t *t, half_copy_t *half) {
    pthread_mutex_lock(&t->mu);
    bool idle = t->idle > 0 && !t->jobs && !t->quit;
    if (idle) {
        half->job = (job_t){.half = half};
        NXC__QUEUE_APPEND(t->jobs, t->jobs_tail, &half->job);
        pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return idle;
}

bool nxc__shm_take_back_half(shm_tp_t *t, half_copy_t *half) {
    pthread_mutex_lock(&t->mu);
    /* queued into an empty queue, it stays the head until a copier pops it */
    bool queued = t->jobs == &half->job;
    if (queued) {
        job_t *j;
        NXC__QUEUE_POP(t->jobs, t->jobs_tail, j);
    }
    pthread_mutex_unlock(&t->mu);
    return queued;
}

static void *copier(void *arg) {
    shm_tp_t *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        t->idle++;
        while (!t->jobs && !t->quit)
            pthread_cond_wait(&t->cv, &t->mu);
        t->idle--;
        if (!t->jobs) break;
        job_t *j;
        NXC__QUEUE_POP(t->jobs, t->jobs_tail, j);
        pthread_mutex_unlock(&t->mu);
        if (j->half) { /* the caller owns it, and waits */
            copy_half(j->half);
            pthread_mutex_lock(&t->mu);
            continue;
        }
        int err = copy_range(j->group->s, j->group->ctl, j->from, j->to);
        if (err) {
            int none = 0;
            atomic_compare_exchange_strong(&j->group->failed, &none, err);
        }
        group_t *group = j->group;
        free(j);
        if (atomic_fetch_sub(&group->left, 1) == 1) group_finish(t, group);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Progress side: report finished groups (connector lock held). */
static void on_copies_done(stream_tp_t *stream) {
    shm_tp_t *t = shm_of(stream);
    nxc__eventfd_drain(t->efd);
    pthread_mutex_lock(&t->mu);
    group_t *group = t->done;
    t->done = NULL;
    pthread_mutex_unlock(&t->mu);
    while (group) {
        group_t *next = group->next;
        report_group(stream, group);
        group = next;
    }
}

static bool shm_copy(stream_tp_t *stream, stream_stripe_t *s, nxc_status_t *result, char *why,
                     size_t len) {
    shm_tp_t *t = shm_of(stream);
    if (s->bytes <= t->inline_max || t->nthreads == 0) {
        int err = copy_range(s, s->ctl_fd, 0, s->bytes);
        *result = copy_status(s, err);
        char buf[160];
        if (err) snprintf(why, len, "%s", copy_error(s, err, buf, sizeof buf));
        return true;
    }
    uint64_t njobs = s->bytes / (t->inline_max ? t->inline_max : 1);
    if (njobs > (uint64_t)t->nthreads) njobs = (uint64_t)t->nthreads;
    if (njobs == 0) njobs = 1;
    group_t *group = calloc(1, sizeof *group);
    job_t *jobs[MAX_THREADS] = {0};
    bool ok = group != NULL && (group->ctl = fcntl(s->ctl_fd, F_DUPFD_CLOEXEC, 0)) >= 0;
    for (uint64_t i = 0; ok && i < njobs; i++)
        ok = (jobs[i] = calloc(1, sizeof(job_t))) != NULL;
    if (!ok) {
        if (group && group->ctl > 0) close(group->ctl);
        free(group);
        for (uint64_t i = 0; i < njobs; i++)
            free(jobs[i]);
        *result = NXC_ERR_NO_MEMORY;
        snprintf(why, len, "shm: out of memory");
        return true;
    }
    group->s = s;
    atomic_store(&group->left, (int)njobs);
    uint64_t per = (s->bytes + njobs - 1) / njobs;
    pthread_mutex_lock(&t->mu);
    for (uint64_t i = 0; i < njobs; i++) {
        jobs[i]->group = group;
        jobs[i]->from = i * per;
        jobs[i]->to = (i + 1) * per < s->bytes ? (i + 1) * per : s->bytes;
        NXC__QUEUE_APPEND(t->jobs, t->jobs_tail, jobs[i]);
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return false;
}

/* --- connecting ------------------------------------------------------------------------- */

static int shm_connect(stream_tp_t *t, const nxc__metadata_t *md, const nxc__md_section_t *sec,
                       unsigned attempt) {
    if (attempt > 0 || sec->conn.len == 0) return -2;
    struct sockaddr_un sa;
    socklen_t sl = abstract_addr(&sa, (const char *)sec->conn.data, sec->conn.len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sl) && errno != EINPROGRESS && errno != EAGAIN) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void shm_tune(stream_tp_t *t, int fd) {}

/* Every byte shm moves goes to or from the process that accepted our
 * connection, as the kernel names it (SO_PEERCRED: the credentials of the
 * listening socket's owner, in this process's pid namespace). The metadata's
 * pid is only a claim: a text edited to name a third process, or this one,
 * must not redirect the copy, so the two must agree at first contact and the
 * copy uses the kernel's. */
static bool shm_vet(stream_tp_t *t, int fd, const nxc__metadata_t *md, pid_t *pid_p, char *why,
                    size_t len) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) || cred.pid <= 0) {
        snprintf(why, len, "cannot learn which process holds the peer's socket: %s",
                 strerror(errno));
        return false;
    }
    if ((uint32_t)cred.pid != md->pid) {
        snprintf(why, len,
                 "the peer's socket is held by process %d, not by process %u that the "
                 "metadata names",
                 (int)cred.pid, md->pid);
        return false;
    }
    *pid_p = cred.pid;
    return true;
}

static void shm_flavour_destroy(stream_tp_t *stream) {
    shm_tp_t *t = shm_of(stream);
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < t->nthreads; i++)
        pthread_join(t->threads[i], NULL);
    t->nthreads = 0;
    if (t->efd >= 0) close(t->efd);
    nxc__shm_arena_close(t);
    while (t->done) { /* nothing is in flight at destroy; belt and braces */
        group_t *group = t->done;
        t->done = group->next;
        free(group);
    }
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

static const stream_flavour_t shm_flavour = {
    .inline_data = false,
    .max_conns = 4,
    .max_stripes = 1,
    .stripe_min = UINT64_MAX,
    .connect = shm_connect,
    .tune = shm_tune,
    .vet = shm_vet,
    .copy = shm_copy,
    .process_lost = nxc__shm_claimer_lost,
    .destroy = shm_flavour_destroy,
};

/* --- the transport ---------------------------------------------------------------------- */

static nxc_status_t shm_create(nxc_connector_t *c, nxc__tp_t **tp_p) {
    /* Can this process use process_vm_readv at all (seccomp may forbid it)? */
    char probe = 1, dst = 0;
    struct iovec l = {&dst, 1}, r = {&probe, 1};
    if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != 1)
        return nxc__err(NXC_ERR_NOT_SUPPORTED, "shm: process_vm_readv unusable here: %s",
                        strerror(errno));

    shm_tp_t *t = calloc(1, sizeof *t);
    if (!t) return nxc__err(NXC_ERR_NO_MEMORY, "shm: out of memory");
    t->s.lfd = t->s.epfd = t->efd = t->arena_fd = t->notify_fd = -1;
    t->pid = getpid();
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    char instance[2 * NXC__INSTANCE_LEN + 1];
    nxc__hex(instance, nxc__connector_instance(c), NXC__INSTANCE_LEN);
    snprintf(t->sock_name, sizeof t->sock_name, "nxc-shm-%s", instance);
    bool doorbell = nxc__option_int(c, "shm", "doorbell", 1);
    if (!nxc__shm_arena_open(t, nxc__connector_instance(c), doorbell))
        NXC_LOG_I("shm: no arena for direct access (%s); every transfer takes a grant",
                  strerror(errno));
    t->inline_max = (size_t)nxc__option_int(c, "shm", "inline_max", 1 << 20);
    if (t->notify_fd >= 0)
        t->s.base.linger_ns = (uint64_t)nxc__option_int(c, "shm", "linger_us", 50) * 1000u;
    int want_threads = (int)nxc__option_int(c, "shm", "threads", 2);

    struct sockaddr_un sa;
    socklen_t sl = abstract_addr(&sa, t->sock_name, strlen(t->sock_name));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    nxc_status_t st = NXC_OK;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) || listen(fd, 128))
        st = nxc__err(NXC_ERR_SYSTEM, "shm: cannot listen on @%s: %s", t->sock_name,
                      strerror(errno));
    if (st != NXC_OK && fd >= 0) close(fd);
    if (st == NXC_OK) {
        st = nxc__stream_init(&t->s, &shm_flavour, "shm", fd,
                              (int)nxc__option_int(c, "shm", "timeout_ms", 10000));
        t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (st == NXC_OK && t->efd < 0)
            st = nxc__err(NXC_ERR_SYSTEM, "shm: eventfd: %s", strerror(errno));
        if (st == NXC_OK) st = nxc__stream_watch(&t->s, t->efd, on_copies_done);
        if (st == NXC_OK && t->notify_fd >= 0)
            st = nxc__stream_watch(&t->s, t->notify_fd, nxc__shm_collect_rung);
        for (int i = 0; st == NXC_OK && i < want_threads; i++) {
            int e = pthread_create(&t->threads[i], NULL, copier, t);
            if (e)
                st = nxc__err(NXC_ERR_SYSTEM, "shm: copier thread: %s", strerror(e));
            else
                t->nthreads++;
        }
    }
    if (st != NXC_OK) {
        if (t->s.fl)
            nxc__stream_destroy(&t->s.base);
        else {
            shm_flavour_destroy(&t->s);
            free(t);
        }
        return st;
    }
    *tp_p = &t->s.base;
    return NXC_OK;
}

static nxc_status_t shm_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec) {
    if (nxc__shm_direct((shm_tp_t *)tp, op, sec)) return NXC_OK;
    return nxc__stream_post(tp, op, sec);
}

static nxc_status_t shm_reachable(nxc__tp_t *tp, const nxc__metadata_t *md,
                                  const nxc__md_section_t *sec, char *why, size_t len) {
    nxc_connector_t *c = tp->c;
    if (strcmp(md->host, nxc__connector_host(c)) != 0) {
        snprintf(why, len, "the peer is on another host (%.60s)", md->host);
        return NXC_ERR_NO_TRANSPORT;
    }
    /* A live connection vouches for the peer: the checks below passed when it
     * was made, and it closes when the peer dies. */
    if (nxc__stream_peer_connected((stream_tp_t *)tp, md->instance)) return NXC_OK;
    /* The same dead peer is UNREACHABLE on every transport: tcp and ucx
     * find it so when they connect; shm finds it here, before trying. */
    if (md->pid == 0 || nxc__process_start_time_of((int)md->pid) != md->start_time) {
        snprintf(why, len,
                 "the peer process %u is gone (exited, or its pid was reused; or it is in "
                 "another pid namespace)",
                 md->pid);
        return NXC_ERR_UNREACHABLE;
    }
    /* The kernel's ptrace access check, on a byte the peer offers. */
    char byte;
    struct iovec l = {&byte, 1}, r = {(void *)(uintptr_t)md->descs[0].addr, 1};
    if (process_vm_readv((pid_t)md->pid, &l, 1, &r, 1, 0) < 0 && errno != EFAULT) {
        snprintf(why, len,
                 "the kernel forbids access to process %u's memory (%s: another "
                 "user, ptrace policy or a container boundary)",
                 md->pid, strerror(errno));
        /* Once per process: worth knowing, since every such transfer then
         * takes a slower transport. */
        static atomic_bool told;
        if (!atomic_exchange(&told, true))
            NXC_LOG_W("shm: %s; using the next transport (see nxc-info)", why);
        return NXC_ERR_NO_TRANSPORT;
    }
    /* Its socket: absent when the peer is in another network namespace. */
    int fd = shm_connect(NULL, md, sec, 0);
    if (fd < 0) {
        snprintf(why, len,
                 "the peer's local socket @%.*s is unreachable (%s: its connector is "
                 "destroyed, or it is in another network namespace)",
                 (int)(sec->conn.len > 48 ? 48 : sec->conn.len), (const char *)sec->conn.data,
                 strerror(errno));
        return NXC_ERR_UNREACHABLE;
    }
    close(fd);
    return NXC_OK;
}

static void shm_describe(nxc__tp_t *tp, char *buf, size_t len) {
    shm_tp_t *t = (shm_tp_t *)tp;
    char yama[16] = "absent";
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
    if (f) {
        if (!fgets(yama, sizeof yama, f)) snprintf(yama, sizeof yama, "?");
        yama[strcspn(yama, "\n")] = '\0';
        fclose(f);
    }
    snprintf(buf, len,
             "process_vm_readv/writev allowed for this process; control socket @%s; %d copier "
             "threads above %zu KiB; Yama ptrace_scope %s (peers must be the same user, or "
             "this process privileged)",
             t->sock_name, t->nthreads, t->inline_max >> 10, yama);
}

/* The engine's progress, and the ops peers finished directly while the
 * doorbell was not armed (they did not ring). */
static int shm_progress(nxc__tp_t *tp) {
    shm_tp_t *t = (shm_tp_t *)tp;
    int work = nxc__stream_progress(tp);
    if (nxc__shm_finished_any(t)) {
        nxc__shm_collect(t);
        work++;
    }
    return work;
}

static bool shm_arm(nxc__tp_t *tp) {
    return nxc__stream_arm(tp) && nxc__shm_doorbell_arm((shm_tp_t *)tp);
}

static bool shm_ready(nxc__tp_t *tp) {
    return nxc__shm_finished_any((shm_tp_t *)tp);
}

/* shm.<key> in the connector's options; NXC_SHM_<KEY> otherwise. */
static const nxc__tp_option_t shm_options[] = {
    {.key = "timeout_ms", .env = "NXC_SHM_TIMEOUT_MS", .lo = 100, .hi = 3600000},
    {.key = "threads", .env = "NXC_SHM_THREADS", .lo = 0, .hi = MAX_THREADS},
    {.key = "inline_max", .env = "NXC_SHM_INLINE_MAX", .lo = 0, .hi = 1 << 30},
    {.key = "doorbell", .env = "NXC_SHM_DOORBELL", .lo = 0, .hi = 1},
    {.key = "linger_us", .env = "NXC_SHM_LINGER_US", .lo = 0, .hi = 10000},
};

const nxc__transport_ops_t nxc__transport_shm = {
    .name = "shm",
    .create = shm_create,
    NXC__STREAM_OPS_BUT_LOOP,
    .progress = shm_progress,
    .arm = shm_arm,
    .ready = shm_ready,
    .expose = nxc__shm_expose,
    .retire = nxc__shm_retire,
    .direct_busy = nxc__shm_direct_busy,
    .unexpose = nxc__shm_unexpose,
    .reachable = shm_reachable,
    .post = shm_post,
    .describe = shm_describe,
    .options = shm_options,
    .noptions = sizeof shm_options / sizeof shm_options[0],
};
