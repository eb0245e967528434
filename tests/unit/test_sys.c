/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of what src/util/sys.c reads of a process from /proc: its
 * start time, whether it is alive, and whether it is free to run. The ucx
 * transport's destroy waits longer for a peer that can run than for one
 * that is stopped, dead or replaced. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nxt.h"
#include "util/sys.h"

static void sleeper(int fd, void *arg) {
    (void)fd;
    (void)arg;
    pause(); /* until killed */
}

/* Wait (bounded) until `pid` can run again after a SIGCONT. */
static bool resumes(pid_t pid, uint64_t start) {
    for (uint64_t end = nxt_now_ms() + 10000; nxt_now_ms() < end; usleep(1000))
        if (nxc__process_can_run(pid, start)) return true;
    return false;
}

static void test_self(void) {
    uint64_t start = nxc__process_start_time();
    NXT_CHECK(start > 0);
    NXT_CHECK(nxc__process_start_time_of(getpid()) == start);
    NXT_CHECK(nxc__process_alive(getpid()));
    NXT_CHECK(nxc__process_can_run(getpid(), start));
    NXT_CHECK(!nxc__process_can_run(getpid(), start + 1)); /* the pid reused */
    NXT_CHECK(!nxc__process_can_run(0, start));
    NXT_CHECK(!nxc__process_can_run(-1, start));
    NXT_CHECK(!nxc__process_alive(0));
}

/* A sleeping child can run; stopped, it cannot (though alive); continued,
 * it can again; killed and not yet reaped (a zombie), it is neither. */
static void test_child_states(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(sleeper, NULL, &pid);
    uint64_t start = nxc__process_start_time_of(pid);
    NXT_CHECK(start > 0);
    NXT_CHECK(nxc__process_can_run(pid, start));
    nxt_stop(pid);
    NXT_CHECK(nxc__process_alive(pid));
    NXT_CHECK(!nxc__process_can_run(pid, start));
    NXT_CHECK(kill(pid, SIGCONT) == 0);
    NXT_CHECK(resumes(pid, start));
    NXT_CHECK(kill(pid, SIGKILL) == 0);
    /* Reaped by no one yet: a zombie (or on its way there). */
    for (uint64_t end = nxt_now_ms() + 10000; nxc__process_alive(pid) && nxt_now_ms() < end;)
        usleep(1000);
    NXT_CHECK(!nxc__process_alive(pid));
    NXT_CHECK(!nxc__process_can_run(pid, start));
    nxt_wait_pid(pid, 10000);
    NXT_CHECK(nxc__process_start_time_of(pid) == 0);
    NXT_CHECK(!nxc__process_can_run(pid, start));
    close(fd);
}

static const nxt_test_t nxt_tests[] = {
    {"self", test_self, 0},
    {"child_states", test_child_states, 0},
};
NXT_MAIN(nxt_tests)
