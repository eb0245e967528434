/* SPDX-License-Identifier: Apache-2.0 */
/* The event loop documented in nxc.h, driven by the application (progress
 * thread off): it completes a transfer, then sleeps while nothing happens
 * (no periodic wake-ups, no spinning), and an op's deadline wakes it by
 * itself through the connector's fd. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "nxt.h"

#define SIZE (1u << 20)
#define SEED 61

static bool terminal(nxc_op_t *op) {
    nxc_op_status_t s = nxc_op_status(op);
    return s == NXC_OP_COMPLETE || s == NXC_OP_CANCELLED || s == NXC_OP_ERRORED;
}

/* Run nxc.h's loop for up to `ms` or, with `op`, until it ends; returns how
 * many times poll() returned. Every inner loop is bounded. */
static int run_loop(nxc_connector_t *c, nxc_op_t *op, int ms) {
    int fd = nxc_connector_fd(c), polls = 0;
    NXT_CHECK(fd >= 0);
    uint64_t end = nxt_now_ms() + (uint64_t)ms;
    for (;;) {
        for (int i = 0; i < 1000000 && nxc_connector_progress(c) > 0; i++)
            ;
        if (op && terminal(op)) break;
        uint64_t now = nxt_now_ms();
        if (now >= end) break;
        if (nxc_connector_arm(c) != NXC_OK) continue;
        poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, (int)(end - now));
        polls++;
        NXT_CHECK(polls < 10000000); /* a spinning loop fails here, bounded */
    }
    return polls;
}

static void readable_peer(int fd, void *arg) {
    nxc_connector_t *c = nxt_connector("loop-owner", 1);
    char *buf = nxt_alloc(SIZE);
    nxt_fill(buf, SIZE, SEED);
    nxc_op_t *op = nxt_offer(c, fd, NXC_OP_READABLE, buf, SIZE);
    free(nxt_recv(fd, NULL, 60000)); /* until the reader is done */
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

/* After a completed read, one idle second costs a handful of poll()
 * returns (ucx: one per keepalive interval), not millions. */
static void test_idle_after_read(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(readable_peer, NULL, &pid);
    char *md = nxt_recv(fd, NULL, 30000);
    nxc_connector_t *c = nxt_connector("loop-reader", 0);
    char *dst = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(dst, SIZE);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &op));
    int busy = run_loop(c, op, 30000);
    NXT_EQ_INT(nxc_op_result(op), NXC_OK);
    NXT_EQ_INT(nxt_verify(dst, SIZE, SEED), SIZE_MAX);
    int idle = run_loop(c, NULL, 1000);
    printf("  %s: read took %d poll() returns; then one idle second %d\n", nxc_op_transport(op),
           busy, idle);
    NXT_CHECK(idle <= 10);
    nxc_op_release(op);
    nxt_send_str(fd, "done");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(dst);
    free(md);
}

/* With nothing else happening, an op's deadline wakes the loop through the
 * connector's fd; nxc_connector_timeout() announces it. */
static void test_deadline_wakes_loop(void) {
    nxc_connector_t *c = nxt_connector("loop-deadline", 0);
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    NXT_EQ_INT(nxc_connector_timeout(c), -1);
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 300};
    nxc_op_t *op;
    /* before the create, whose clock the deadline runs on: a loaded host
     * may hold this thread up between the two */
    uint64_t t0 = nxt_now_ms();
    NXT_PASS(nxc_create_readable(c, &d, 1, &p, &op));
    int t = nxc_connector_timeout(c);
    NXT_CHECK(t > 0 && t <= 300);
    int polls = run_loop(c, op, 10000);
    uint64_t took = nxt_now_ms() - t0;
    printf("  deadline 300 ms: ended %s after %llu ms and %d poll() returns\n",
           nxc_status_string(nxc_op_result(op)), (unsigned long long)took, polls);
    NXT_EQ_INT(nxc_op_result(op), NXC_ERR_TIMED_OUT);
    NXT_CHECK(took >= 295 && took < 5000);
    NXT_CHECK(polls <= 5);
    NXT_EQ_INT(nxc_connector_timeout(c), -1);
    nxc_op_release(op);
    nxc_connector_destroy(c);
}

static bool fd_readable(int fd) {
    return poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 0) == 1;
}

/* Work posted while no one is asleep on the fd (the application has not
 * armed it: it polls its queues, or has not slept yet) writes nothing to
 * it; the next arm says to progress first. After an arm, the same post
 * makes the fd readable. Before, every post wrote the fd's eventfd, read
 * by no one when the application never slept. */
static void test_wake_only_when_armed(void) {
    nxc_connector_t *c = nxt_connector("loop-armed", 0);
    int fd = nxc_connector_fd(c);
    bool quiet = !fd_readable(fd); /* ucx's event fd may start readable */
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    /* each deadline comes before the timer the loop set (none, then 60 s) */
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 60000};
    nxc_op_t *first, *second;
    NXT_PASS(nxc_create_readable(c, &d, 1, &p, &first));
    if (quiet) NXT_CHECK(!fd_readable(fd));
    NXT_EQ_INT(nxc_connector_arm(c), NXC_INPROGRESS);
    for (int i = 0; i < 1000 && nxc_connector_progress(c) > 0; i++)
        ;
    NXT_EQ_INT(nxc_connector_arm(c), NXC_OK);
    NXT_CHECK(!fd_readable(fd));
    p.timeout_ms = 30000;
    NXT_PASS(nxc_create_readable(c, &d, 1, &p, &second));
    NXT_CHECK(fd_readable(fd));
    printf("  fd quiet at creation: %s\n", quiet ? "yes" : "no");
    nxc_op_release(first);
    nxc_op_release(second);
    nxc_connector_destroy(c);
}

typedef struct sleeper {
    nxc_connector_t *c;
    _Atomic(nxc_op_t *) op; /* set by the main thread while the loop sleeps */
    uint64_t ended_ms;
} sleeper_t;

/* nxc.h's loop until the op published in s->op ends (20 s at most). */
static void *sleeping_loop(void *arg) {
    sleeper_t *s = arg;
    int fd = nxc_connector_fd(s->c);
    uint64_t end = nxt_now_ms() + 20000;
    for (uint64_t now; (now = nxt_now_ms()) < end;) {
        for (int i = 0; i < 1000000 && nxc_connector_progress(s->c) > 0; i++)
            ;
        nxc_op_t *op = atomic_load(&s->op);
        if (op && terminal(op)) {
            s->ended_ms = nxt_now_ms();
            break;
        }
        if (nxc_connector_arm(s->c) != NXC_OK) continue;
        poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, (int)(end - now));
    }
    return NULL;
}

/* An op created by another thread while the application's loop sleeps on
 * the fd with no timer set wakes it: its deadline is met, not the loop's
 * 20 s sleep. */
static void test_post_wakes_sleeping_loop(void) {
    sleeper_t s = {.c = nxt_connector("loop-sleeper", 0)};
    pthread_t th;
    NXT_CHECK(pthread_create(&th, NULL, sleeping_loop, &s) == 0);
    usleep(100000); /* asleep in poll() by now, on a loaded host too */
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 200};
    nxc_op_t *op;
    uint64_t t0 = nxt_now_ms();
    NXT_PASS(nxc_create_readable(s.c, &d, 1, &p, &op));
    atomic_store(&s.op, op);
    pthread_join(th, NULL);
    NXT_CHECK(s.ended_ms != 0);
    printf("  deadline 200 ms, posted while the loop slept: ended after %llu ms\n",
           (unsigned long long)(s.ended_ms - t0));
    NXT_CHECK(s.ended_ms - t0 >= 195 && s.ended_ms - t0 < 5000);
    NXT_EQ_INT(nxc_op_result(op), NXC_ERR_TIMED_OUT);
    nxc_op_release(op);
    nxc_connector_destroy(s.c);
}

/* The reader for test_pass_keeps_arm: READS readables' texts, each read
 * when the owner says so, each read's end reported back. */
#define READS 3
static void two_reads_peer(int fd, void *arg) {
    (void)arg;
    nxc_connector_t *c = nxt_connector("rearm-reader", 1);
    char *dst = nxt_alloc(4096);
    nxc_desc_t d = nxt_desc(dst, 4096);
    char *mds[READS];
    for (int i = 0; i < READS; i++)
        mds[i] = nxt_recv(fd, NULL, 30000);
    for (int i = 0; i < READS; i++) {
        free(nxt_recv(fd, NULL, 30000)); /* "go" */
        nxc_op_t *op;
        NXT_PASS(nxc_begin_read(c, mds[i], 0, &d, 1, NULL, &op));
        NXT_PASS(nxc_op_wait(op, 30000));
        nxc_op_release(op);
        nxt_send_str(fd, "read");
    }
    free(nxt_recv(fd, NULL, 30000)); /* until the owner is done */
    nxc_connector_destroy(c);
    for (int i = 0; i < READS; i++)
        free(mds[i]);
    free(dst);
}

/* Sleep on the fd, then let nxc_op_status() make the pass, until `op`
 * ends; false if the fd stayed quiet for `ms` meanwhile. */
static bool status_loop(nxc_connector_t *c, nxc_op_t *op, int ms) {
    struct pollfd pfd = {.fd = nxc_connector_fd(c), .events = POLLIN};
    for (int i = 0; i < 100000 && !terminal(op); i++)
        if (poll(&pfd, 1, ms) == 0) return false;
    return terminal(op);
}

/* An application that armed its loop and then makes its passes through
 * nxc_op_status() (or nxc_cq_poll()) instead of nxc_connector_progress()
 * still hears of the next op: such a pass leaves the connector armed.
 * Before, shm's pass drained the doorbell that the second read rang (the
 * first is told by a frame while the peer takes the doorbell's fd), so
 * the peer of the third rang no one and the owner slept through it. */
static void test_pass_keeps_arm(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(two_reads_peer, NULL, &pid);
    nxc_connector_t *c = nxt_connector("rearm-owner", 0);
    static char bufs[READS][4096];
    nxc_op_t *ops[READS];
    for (int i = 0; i < READS; i++) {
        nxc_desc_t d = nxt_desc(bufs[i], sizeof bufs[i]);
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &ops[i]));
        const char *md;
        NXT_PASS(nxc_op_metadata(ops[i], &md, NULL));
        nxt_send_str(fd, md);
    }
    for (int i = 0; i < 1000 && nxc_connector_progress(c) > 0; i++)
        ;
    NXT_EQ_INT(nxc_connector_arm(c), NXC_OK);
    for (int i = 0; i < READS; i++) {
        nxt_send_str(fd, "go");
        bool woken = status_loop(c, ops[i], 5000);
        printf("  read %d: the owner's fd %s\n", i + 1, woken ? "woke it" : "stayed quiet");
        NXT_CHECK(woken);
        NXT_EQ_INT(nxc_op_result(ops[i]), NXC_OK);
        free(nxt_recv(fd, NULL, 30000)); /* "read" */
    }
    for (int i = 0; i < READS; i++)
        nxc_op_release(ops[i]);
    nxc_connector_destroy(c); /* first: the peer's destroy finds it gone */
    nxt_send_str(fd, "done");
    nxt_join(pid, 30000);
}

#define BIG (8u << 20) /* over shm.inline_max: copier threads end the op */
#define BIG_READS 4

/* Offers BIG_READS readables of BIG bytes in turn, each when asked. */
static void big_readables_peer(int fd, void *arg) {
    (void)arg;
    nxc_connector_t *c = nxt_connector("big-owner", 1);
    char *buf = nxt_alloc(BIG);
    nxt_fill(buf, BIG, SEED);
    for (int i = 0; i < BIG_READS; i++) {
        nxc_op_t *op = nxt_offer(c, fd, NXC_OP_READABLE, buf, BIG);
        free(nxt_recv(fd, NULL, 60000)); /* "next" */
        nxc_op_release(op);
    }
    nxc_connector_destroy(c);
    free(buf);
}

/* nxc_op_wait() without a progress thread sleeps on the connector's fd; an
 * op that a transport's own thread ends (a shm copier) wakes it. Before,
 * nothing did: each wait slept its full second (nxc-bench --loop: 100 ms
 * per 256 MiB read, its poll slice), so the median here was about 1 s. */
static void test_wait_hears_copier_end(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(big_readables_peer, NULL, &pid);
    nxc_connector_t *c = nxt_connector("big-reader", 0);
    char *dst = nxt_alloc(BIG);
    nxc_desc_t d = nxt_desc(dst, BIG);
    uint64_t took[BIG_READS];
    for (int i = 0; i < BIG_READS; i++) {
        char *md = nxt_recv(fd, NULL, 30000);
        memset(dst, 0, BIG);
        nxc_op_t *op;
        uint64_t t0 = nxt_now_ms();
        NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &op));
        NXT_PASS(nxc_op_wait(op, 30000));
        took[i] = nxt_now_ms() - t0;
        NXT_EQ_INT(nxt_verify(dst, BIG, SEED), SIZE_MAX);
        nxc_op_release(op);
        free(md);
        if (i + 1 < BIG_READS) nxt_send_str(fd, "next");
    }
    nxc_connector_destroy(c); /* first: the peer's destroy finds it gone */
    nxt_send_str(fd, "next");
    nxt_join(pid, 30000);
    free(dst);
    for (int i = 1; i < BIG_READS; i++) /* sorted, for the median */
        for (int j = i; j > 0 && took[j] < took[j - 1]; j--) {
            uint64_t t = took[j];
            took[j] = took[j - 1];
            took[j - 1] = t;
        }
    printf("  %d reads of 8 MiB, waited without a thread: %llu to %llu ms\n", BIG_READS,
           (unsigned long long)took[0], (unsigned long long)took[BIG_READS - 1]);
    NXT_CHECK(took[BIG_READS / 2] < 500); /* a missed wake-up costs 1000 */
}

/* A wait that times out says so in nxc_last_error(). */
static void test_wait_timeout_message(void) {
    nxc_connector_t *c = nxt_connector("loop-wait", 1);
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf);
    nxc_op_t *op;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op));
    NXT_EQ_INT(nxc_op_wait(op, 10), NXC_INPROGRESS);
    NXT_CHECK(strstr(nxc_last_error(), "still in progress after 10 ms"));
    nxc_op_release(op);
    nxc_connector_destroy(c);
    NXT_EQ_INT(nxc_connector_arm(NULL), NXC_ERR_INVALID_PARAM);
    NXT_EQ_INT(nxc_connector_timeout(NULL), -1);
}

static const nxt_test_t nxt_tests[] = {
    {"idle_after_read", test_idle_after_read, 120},
    {"deadline_wakes_loop", test_deadline_wakes_loop, 60},
    {"wait_timeout_message", test_wait_timeout_message, 60},
    {"wake_only_when_armed", test_wake_only_when_armed, 60},
    {"post_wakes_sleeping_loop", test_post_wakes_sleeping_loop, 60},
    {"pass_keeps_arm", test_pass_keeps_arm, 120},
    {"wait_hears_copier_end", test_wait_hears_copier_end, 120},
};
NXT_MAIN(nxt_tests)
