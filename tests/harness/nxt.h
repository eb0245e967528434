/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxt — the tests' small harness. Each test runs in its own forked process
 * group with a timeout; on timeout or at the end of the test the whole group
 * (the test and any peers it forked) is killed, so no test leaves children
 * behind or hangs the suite.
 *
 * A test file defines `static const nxt_test_t nxt_tests[] = {...}` and calls
 * NXT_MAIN(). `./test_x name-substring` runs a subset.
 *
 * Skipping. A case that cannot run here (not root, no network namespaces,
 * a known open bug) calls nxt_skip("why"): it prints "SKIP <case>: why"
 * and ends as skipped, neither passed nor failed. The binary's exit status:
 *   1   some case failed;
 *   77  every case that ran was skipped (ctest, with SKIP_RETURN_CODE 77 on
 *       the test, reports the test as skipped, not passed);
 *   0   otherwise: at least one case passed and none failed. The skipped
 *       cases of such a run are only the SKIP lines in its output, so that
 *       one case that cannot run does not hide the ones that did.
 */
#ifndef NXT_H
#define NXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "nxc/nxc.h"

typedef struct nxt_test {
    const char *name;
    void (*fn)(void);
    int timeout_s; /* 0: 60 s */
} nxt_test_t;

int nxt_run(const nxt_test_t *tests, size_t n, int argc, char **argv);
#define NXT_MAIN(tests)                                                                            \
    int main(int argc, char **argv) {                                                              \
        return nxt_run(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);                       \
    }

void nxt_failf(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* The exit status of a binary whose cases were all skipped (automake's and
 * ctest's convention). */
#define NXT_SKIP_STATUS 77
/* End the current case as skipped, saying why (call it from the case's own
 * process, not from a peer it forked). */
void nxt_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define NXT_CHECK(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) nxt_failf(__FILE__, __LINE__, "check failed: %s", #cond);                     \
    } while (0)

#define NXT_EQ_INT(a, b)                                                                           \
    do {                                                                                           \
        long long nxt_a_ = (long long)(a), nxt_b_ = (long long)(b);                                \
        if (nxt_a_ != nxt_b_)                                                                      \
            nxt_failf(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, nxt_a_, #b,       \
                      nxt_b_);                                                                     \
    } while (0)

#define NXT_EQ_STR(a, b)                                                                           \
    do {                                                                                           \
        const char *nxt_a_ = (a), *nxt_b_ = (b);                                                   \
        if (!nxt_a_ || !nxt_b_ || strcmp(nxt_a_, nxt_b_))                                          \
            nxt_failf(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,                     \
                      nxt_a_ ? nxt_a_ : "(null)", nxt_b_ ? nxt_b_ : "(null)");                     \
    } while (0)

/* An nxc call that must succeed; prints nxc_last_error() when it does not. */
#define NXT_PASS(expr)                                                                             \
    do {                                                                                           \
        nxc_status_t nxt_s_ = (expr);                                                              \
        if (nxt_s_ != NXC_OK)                                                                      \
            nxt_failf(__FILE__, __LINE__, "%s -> %s (%s)", #expr, nxc_status_string(nxt_s_),       \
                      nxc_last_error());                                                           \
    } while (0)

/* An nxc call that must fail with exactly `want`. */
#define NXT_FAIL(expr, want)                                                                       \
    do {                                                                                           \
        nxc_status_t nxt_s_ = (expr);                                                              \
        if (nxt_s_ != (want))                                                                      \
            nxt_failf(__FILE__, __LINE__, "%s -> %s (%s), expected %s", #expr,                     \
                      nxc_status_string(nxt_s_), nxc_last_error(), nxc_status_string(want));       \
    } while (0)

/* --- the clock ------------------------------------------------------------- */

/* The tests' one clock: CLOCK_MONOTONIC, so deadlines, stall bounds and
 * durations are unaffected by changes to the wall clock. nxt_now_ms() is in
 * whole milliseconds (rounded down), for deadlines and bounds; nxt_now_s()
 * in seconds with nanosecond resolution, for throughput and durations
 * printed as fractions of a second. Both count from the same arbitrary
 * origin: compare or subtract values of the same function only. */
uint64_t nxt_now_ms(void);
double nxt_now_s(void);

/* What the host took from this process while a timing was measured. A
 * thread sleeps 2 ms at a time and keeps the longest it overslept: on a
 * loaded host the time its threads waited for a CPU, on a paused virtual
 * machine the pause. A check that tells a library's latency from a fault
 * (a wake-up missed) by a margin the host can eat adds the stall it saw to
 * its bound, so it fails on the fault and not on the host. */
typedef struct nxt_stall_watch nxt_stall_watch_t;
nxt_stall_watch_t *nxt_stall_watch_start(void);
/* Stop and free the watch: the longest stall it saw, in ms. */
uint64_t nxt_stall_watch_stop(nxt_stall_watch_t *w);

/* --- multi-process helpers ------------------------------------------------ */

/* A bidirectional message channel between a test and a peer it forks
 * (a socketpair; messages are length-prefixed). */
typedef struct nxt_chan {
    int fd[2];
} nxt_chan_t;

void nxt_chan_init(nxt_chan_t *ch);
/* Fork a peer running fn(ch_end, arg); the peer exits 0 when fn returns,
 * 1 when a check fails. The peer stays in the test's process group.
 * Call it while the calling process has a single thread (before it creates a
 * connector with a progress thread): a fork copies every lock another thread
 * holds, so a child could hang in malloc (ASan's allocator is not fork-safe)
 * or in a library's lock. The call fails the test when threads exist. */
pid_t nxt_spawn(nxt_chan_t *ch, void (*fn)(int fd, void *arg), void *arg);
/* In the parent after nxt_spawn: the parent's end of the channel. */
int nxt_chan_parent(nxt_chan_t *ch);
/* nxt_chan_init, nxt_spawn and nxt_chan_parent in one: fork a peer running
 * fn(its end, arg) and return the parent's end; the peer's pid in *pid_p. */
int nxt_spawn_peer(void (*fn)(int fd, void *arg), void *arg, pid_t *pid_p);
void nxt_send(int fd, const void *buf, size_t len);
/* Receive one message into a malloc'd, NUL-terminated buffer (caller frees);
 * fails the test after timeout_ms. */
char *nxt_recv(int fd, size_t *len_p, int timeout_ms);
void nxt_send_str(int fd, const char *s);
/* Wait for a peer to exit (fails the test after timeout_ms); returns its
 * wait status. */
int nxt_wait_pid(pid_t pid, int timeout_ms);
/* SIGSTOP a peer and return once it is really stopped (kill() only queues
 * the signal: the peer could still answer for a moment). */
void nxt_stop(pid_t pid);
/* Assert the peer exited with status 0. */
void nxt_join(pid_t pid, int timeout_ms);
/* SIGKILL a peer and reap it (fails the test after timeout_ms, as
 * nxt_wait_pid); returns its wait status. A stopped peer is killed too. */
int nxt_kill(pid_t pid, int timeout_ms);

/* --- data helpers ----------------------------------------------------------- */

/* Fill with a deterministic pattern derived from seed; check it back. */
void nxt_fill(void *buf, size_t len, uint64_t seed);
/* Returns the first differing offset, or SIZE_MAX if all match. */
size_t nxt_verify(const void *buf, size_t len, uint64_t seed);
/* An aligned, zeroed buffer (fails the test on ENOMEM). */
void *nxt_alloc(size_t len);
/* A test's big quantity scaled for a slow build: `full` divided by the
 * size scale, never below `min` (nor above `full`). For the bytes of big
 * transfers, and the op counts of cases built to be long, in builds whose
 * every byte copied and every lock taken costs many times what it costs in
 * a normal build. The scale is NXT_SIZE_SCALE when that is set to 1..1024;
 * otherwise 8 in a ThreadSanitizer build, 4 in an AddressSanitizer build
 * (both detected at compile time) and 1 in any other build, whose sizes
 * stay as written. Only the amount shrinks, never what a case checks: a
 * case that needs a transfer still under way when something happens to it
 * (a kill, a cancel, a freeze) keeps `min` large enough for that. */
size_t nxt_size(size_t full, size_t min);
/* The divisor nxt_size() uses. */
unsigned nxt_size_scale(void);
/* A host descriptor. */
nxc_desc_t nxt_desc(void *ptr, size_t size);
/* Expose [buf, buf + len) on `c` as one passive op of `kind`
 * (NXC_OP_READABLE or NXC_OP_WRITABLE), no parameters, and send its
 * metadata on `fd`. */
nxc_op_t *nxt_offer(nxc_connector_t *c, int fd, nxc_op_kind_t kind, void *buf, size_t len);
/* Connector with the given name (NULL: default) and progress thread, on
 * the transport under test (nxt_transport(), else the default). */
nxc_connector_t *nxt_connector(const char *name, int progress_thread);
/* Connector of params `p`, on the transport under test (as above). */
nxc_connector_t *nxt_connector_with(nxc_connector_params_t p);
/* Connector that uses exactly `transport` (checked), with a progress thread. */
nxc_connector_t *nxt_connector_on(const char *name, const char *transport);
/* Environment override for the transport under test (conformance suite). */
const char *nxt_transport(void);
/* For a connector without a progress thread: progress `c` until a peer has
 * reached the passive `op` (a grant), then check the op has not ended, and
 * return. Every other progress pass is left to the caller, so the transfer
 * is certain to be under way and unfinished, whatever the machine's load.
 * Its reads never progress (nxc_op_status would: without a progress thread
 * it runs a pass, which can land a whole transfer). Fails the test after
 * timeout_ms. */
void nxt_await_grant(nxc_connector_t *c, nxc_op_t *op, int timeout_ms);

#endif
