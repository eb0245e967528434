/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Raw cross-process wake-up on this host, the floor for telling a passive
 * op's owner that its data landed:
 *
 *   nxc-probe-wakeup [ITERS [SECONDS]]
 *
 * Two processes ping-pong an 8-byte message over a unix socket pair, each
 * asleep in epoll_wait between messages, as nxc's progress threads are.
 * Half a round trip is one message and one wake-up of a sleeping process:
 * what an owner's notification costs at best (issue 12 asks for nxc-bench's
 * "ntf p50" within 1.2x of it). 100 untimed round trips, then ITERS timed
 * ones (default 10000), stopping early after SECONDS (default 5). Then as
 * many more round trips, each begun once the other process has been asleep
 * for 50 us, timing only the send: what the waker pays for one wake-up (the
 * kernel's work of waking a sleeper on another CPU, in a VM an IPI), paid
 * inside the call that sends a notification. Prints one JSON object:
 * {"probe":"wakeup","iters","rtt_p50_us","rtt_p99_us","half_rtt_p50_us",
 * "send_p50_us"}. Every wait is bounded (10 s); the child ends when the
 * parent closes its end, and is killed if it has not by then.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep until fd is readable, then take one 8-byte message; false on EOF,
 * error or a silent peer. */
static int receive(int ep, int fd) {
    struct epoll_event ev;
    if (epoll_wait(ep, &ev, 1, WAIT_MS) != 1) return 0;
    uint64_t msg;
    return read(fd, &msg, sizeof msg) == (ssize_t)sizeof msg;
}

static int send_one(int fd) {
    uint64_t msg = 1;
    return write(fd, &msg, sizeof msg) == (ssize_t)sizeof msg;
}

static int sleeper(int fd) {
    struct epoll_event ev = {.events = EPOLLIN};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) return 1;
    while (receive(ep, fd) && send_one(fd)) {
    }
    return 0;
}

/* Spin (do not sleep: this process stays on its CPU) for ns nanoseconds. */
static void spin(uint64_t ns) {
    for (uint64_t end = now_ns() + ns; now_ns() < end;) {
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 10000;
    double seconds = argc > 2 ? atof(argv[2]) : 5;
    if (iters < 1 || seconds <= 0) {
        fprintf(stderr, "usage: nxc-probe-wakeup [ITERS [SECONDS]]\n");
        return 2;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        perror("nxc-probe-wakeup: socketpair");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("nxc-probe-wakeup: fork");
        return 1;
    }
    if (child == 0) {
        close(sv[0]);
        _exit(sleeper(sv[1]));
    }
    close(sv[1]);
    int fd = sv[0], ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    uint64_t *rtt = malloc((size_t)iters * sizeof *rtt);
    uint64_t *sends = malloc((size_t)iters * sizeof *sends);
    int ok = ep >= 0 && rtt && sends && !epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    for (int i = 0; ok && i < 100; i++)
        ok = send_one(fd) && receive(ep, fd);
    long n = 0;
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    for (; ok && n < iters && now_ns() < end; n++) {
        uint64_t t0 = now_ns();
        ok = send_one(fd) && receive(ep, fd);
        rtt[n] = now_ns() - t0;
    }
    long ns = 0;
    end = now_ns() + (uint64_t)(seconds * 1e9);
    for (; ok && ns < n && now_ns() < end; ns++) {
        spin(50000);
        uint64_t t0 = now_ns();
        ok = send_one(fd);
        sends[ns] = now_ns() - t0;
        ok = ok && receive(ep, fd);
    }
    close(fd);
    int status = 0;
    for (int i = 0; i < 100 && waitpid(child, &status, WNOHANG) == 0; i++)
        usleep(10000);
    if (waitpid(child, &status, WNOHANG) == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
    }
    if (!ok || n == 0 || ns == 0) {
        fprintf(stderr, "nxc-probe-wakeup: the ping-pong failed after %ld round trips\n", n);
        return 1;
    }
    qsort(rtt, (size_t)n, sizeof *rtt, cmp_u64);
    qsort(sends, (size_t)ns, sizeof *sends, cmp_u64);
    double p50 = rtt[n / 2] / 1e3, p99 = rtt[n * 99 / 100] / 1e3;
    printf("{\"probe\":\"wakeup\",\"iters\":%ld,\"rtt_p50_us\":%.2f,\"rtt_p99_us\":%.2f,"
           "\"half_rtt_p50_us\":%.2f,\"send_p50_us\":%.2f}\n",
           n, p50, p99, p50 / 2, sends[ns / 2] / 1e3);
    free(rtt);
    free(sends);
    return 0;
}
