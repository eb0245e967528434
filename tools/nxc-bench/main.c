/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench: bandwidth and latency of nxc between two processes.
 *
 *   nxc-bench --self [options]                  both roles, forked on this host
 *   nxc-bench --target [--listen ADDR:PORT]     serve one initiator, then exit
 *   nxc-bench --initiator HOST:PORT [options]   drive a sweep against a target
 *
 * The target is the passive side: it owns one buffer per point and, for each
 * op, creates a readable (for --op read) or writable (--op write) over
 * `batch` blocks of it and hands the metadata text to the initiator. The
 * initiator is the active side: it begins reads or writes with that metadata
 * and times them. The two meet through a rendezvous socket (TCP) that
 * carries length-prefixed messages; nxc moves the bytes.
 *
 * A passive op completes once, so every op needs fresh metadata. The
 * initiator asks for it a round at a time (up to --round ops): the target
 * creates the round's ops and sends all their metadata before the initiator
 * starts its clock, so the rendezvous stays out of the timed section. Within
 * a round the initiator keeps --concurrency ops in flight.
 *
 *   latency       begin call -> op seen complete on the initiator (its
 *                 completion queue)
 *   notification  begin call on the initiator -> passive op seen complete on
 *                 the target (its completion queue), on the initiator's
 *                 clock (the offset between the two clocks is measured by
 *                 ping-pong over the rendezvous socket at each point)
 *   bandwidth     bytes of the timed ops / sum over rounds of (first begin ->
 *                 last completion)
 *
 * Only the public header is used. Every wait is bounded: ops carry
 * deadlines, socket reads and writes have deadlines, and a point stops
 * issuing ops after --point-time seconds.
 *
 * The parts: main.c (this file: the roles' start, outputs, the forked
 * target of --self), cli.c (command line), sock.c and wire.c (the
 * rendezvous connection and its messages), target.c, initiator.c,
 * report.c (table, --json, --csv), pattern.c (--check data), util.c.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "report.h"

static void on_alarm(int sig) {
    static const char msg[] = "nxc-bench: --timeout reached, giving up\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    (void)sig;
    _exit(3);
}

static int list_transports(void) {
    nxc_connector_t *c = connector_make("nxc-bench-probe", cfg.transport, true);
    printf("%s\n", nxc_connector_transports(c));
    nxc_connector_destroy(c);
    return 0;
}

/* --cpus: both CPUs are ones this process may run on (checked once, before
 * any role starts or --self forks its target). */
static void check_cpus(void) {
    if (cfg.cpus[0] < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set)) die("sched_getaffinity: %s", strerror(errno));
    for (int r = 0; r < 2; r++)
        if (!CPU_ISSET(cfg.cpus[r], &set))
            die("--cpus: CPU %d is not one this process may run on (see nproc, taskset -p)",
                cfg.cpus[r]);
}

/* --cpus: run this process, and the threads it starts from now on, on the
 * role's CPU (0 target, 1 initiator). */
static void pin_role(int role) {
    if (cfg.cpus[role] < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cfg.cpus[role], &set);
    if (sched_setaffinity(0, sizeof set, &set))
        die("--cpus: cannot run the %s on CPU %d: %s", role ? "initiator" : "target",
            cfg.cpus[role], strerror(errno));
}

static int run_target(void) {
    role_name = "nxc-bench target";
    pin_role(0);
    const char *addr = cfg.listen ? cfg.listen : "127.0.0.1:18515";
    int lfd = sock_listen(addr);
    fprintf(stderr, "%s: listening on %s\n", role_name, addr);
    int fd = sock_accept(lfd, cfg.idle_timeout_s);
    close(lfd);
    int rc = target_serve(fd);
    close(fd);
    return rc;
}

/* The initiator's outputs: the table on stdout, unless --json/--csv rows
 * take stdout (then the table goes to stderr) or -q drops it. */
static void open_outputs(void) {
    if (cfg.fmt != FMT_NONE) {
        if (cfg.out_path) {
            rows_out = fopen(cfg.out_path, "w");
            if (!rows_out) die("%s: %s", cfg.out_path, strerror(errno));
            table_out = stdout;
        } else {
            rows_out = stdout;
            table_out = stderr;
        }
    } else {
        table_out = stdout;
    }
    if (cfg.quiet) table_out = NULL;
    progress_on = cfg.progress == 1 || (cfg.progress < 0 && isatty(2));
}

/* --self: fork the target, serving on a port of the loopback; returns the
 * initiator's connection to it, and the child in *child. */
static int fork_target(pid_t *child) {
    int lfd = sock_listen(cfg.listen ? cfg.listen : "127.0.0.1:0");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl)) die("getsockname: %s", strerror(errno));
    fflush(NULL);
    pid_t parent = getpid();
    *child = fork();
    if (*child < 0) die("fork: %s", strerror(errno));
    if (*child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        role_name = "nxc-bench target";
        pin_role(0);
        int tfd = sock_accept(lfd, 60);
        close(lfd);
        int rc = target_serve(tfd);
        close(tfd);
        exit(rc); /* stdio was flushed before fork; lets LeakSanitizer check the target */
    }
    role_name = "nxc-bench initiator";
    pin_role(1);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl))
        die("connect to the forked target: %s", strerror(errno));
    sock_tune(fd);
    close(lfd);
    return fd;
}

/* The forked target exits after BYE; give it 10 s. Returns rc, or 1 when
 * rc was 0 and the target did not end well. */
static int reap_target(pid_t child, int rc) {
    int status = 0;
    uint64_t deadline = now_ns() + 10000000000ull;
    pid_t w;
    while ((w = waitpid(child, &status, WNOHANG)) == 0 && ms_left(deadline) > 0)
        usleep(10000);
    if (w == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        fprintf(stderr, "%s: target did not exit; killed it\n", prog);
        rc = rc ? rc : 1;
    } else if (w > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        fprintf(stderr, "%s: target exited with status %d\n", prog,
                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        rc = rc ? rc : 1;
    }
    return rc;
}

/* --initiator, or --self with its target forked. */
static int run_initiator(void) {
    open_outputs();
    pid_t child = -1;
    int fd;
    if (cfg.role == ROLE_SELF) {
        fd = fork_target(&child);
    } else {
        role_name = "nxc-bench initiator";
        pin_role(1);
        fd = sock_connect(cfg.connect, 30);
    }
    int rc = initiator_run(fd);
    close(fd);
    if (child > 0) rc = reap_target(child, rc);
    if (rows_out && rows_out != stdout) fclose(rows_out);
    return rc;
}

int main(int argc, char **argv) {
    int rc = cli_parse(argc, argv);
    if (rc != CLI_RUN) return rc;
    if (cfg.list_transports) return list_transports();
    if (cfg.role == ROLE_NONE) {
        usage(stderr);
        return 2;
    }
    check_cpus();
    signal(SIGPIPE, SIG_IGN);
    if (cfg.timeout_s) {
        signal(SIGALRM, on_alarm);
        alarm((unsigned)cfg.timeout_s);
    }
    return cfg.role == ROLE_TARGET ? run_target() : run_initiator();
}
