/* SPDX-License-Identifier: Apache-2.0 */
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nxt.h"

extern char **environ;

#define CMD_TIMEOUT_MS 20000    /* one `ip` command */
#define REAPER_MAX_S (6 * 3600) /* the reaper gives up waiting after this */
static const char NETNS_DIRS[][16] = {"/run/netns", "/var/run/netns"};

/* --- running `ip` ------------------------------------------------------------- */

static const char *ip_path(void) {
    static const char *const candidates[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0) return candidates[i];
    return NULL;
}

/* Run `ip args...` (argv NULL-terminated), bounded by CMD_TIMEOUT_MS, with
 * its stderr (and its stdout when with_stdout, else discarded) captured in
 * err as one line. Returns its exit status (0 = success), or -1 when it
 * could not run or was killed; err then says why. Uses posix_spawn, so it is
 * safe in a process that has threads. */
static int ip_vrun(bool with_stdout, char *err, size_t errlen, const char *arg0, va_list ap) {
    const char *argv[24];
    size_t n = 0;
    argv[n++] = "ip";
    for (const char *a = arg0; a && n < sizeof argv / sizeof argv[0] - 1;
         a = va_arg(ap, const char *))
        argv[n++] = a;
    argv[n] = NULL;
    err[0] = '\0';

    const char *ip = ip_path();
    if (!ip) {
        snprintf(err, errlen, "iproute2's `ip` not found (apt-get install iproute2)");
        return -1;
    }
    int pp[2];
    if (pipe2(pp, O_CLOEXEC)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (with_stdout)
        posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    pid_t pid;
    int rc = posix_spawn(&pid, ip, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pp[1]);
    if (rc) {
        close(pp[0]);
        snprintf(err, errlen, "cannot run %s: %s", ip, strerror(rc));
        return -1;
    }
    /* Collect stderr until EOF or the deadline, then reap. */
    size_t got = 0;
    uint64_t deadline = nxt_now_ms() + CMD_TIMEOUT_MS;
    bool timed_out = false;
    for (;;) {
        uint64_t now = nxt_now_ms();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = pp[0], .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char tmp[512];
        ssize_t k = read(pp[0], tmp, sizeof tmp);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (ssize_t i = 0; i < k && got + 1 < errlen; i++)
            err[got++] = tmp[i] == '\n' ? ' ' : tmp[i];
        err[got] = '\0';
    }
    close(pp[0]);
    int status = 0;
    if (timed_out) kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (got && err[got - 1] == ' ')
        err[--got] = '\0';
    if (timed_out) {
        snprintf(err, errlen, "did not finish within %d s (killed)", CMD_TIMEOUT_MS / 1000);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(err, errlen, "killed by signal %d", WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

static int ip_run(char *err, size_t errlen, const char *arg0, ...) {
    va_list ap;
    va_start(ap, arg0);
    int rc = ip_vrun(false, err, errlen, arg0, ap);
    va_end(ap);
    return rc;
}

/* The same, with ip's stdout in out too. */
static int ip_query(char *out, size_t outlen, const char *arg0, ...) {
    va_list ap;
    va_start(ap, arg0);
    int rc = ip_vrun(true, out, outlen, arg0, ap);
    va_end(ap);
    return rc;
}

static bool netns_exists(const char *name) {
    char path[320];
    for (size_t i = 0; i < sizeof NETNS_DIRS / sizeof NETNS_DIRS[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", NETNS_DIRS[i], name);
        if (access(path, F_OK) == 0) return true;
    }
    return false;
}

/* Remove a namespace if it exists; complains on stderr when it cannot. */
static void netns_remove(const char *name, bool quiet) {
    if (!netns_exists(name)) return;
    char err[256];
    int rc = ip_run(err, sizeof err, "netns", "delete", name, (const char *)NULL);
    if (rc != 0 && !quiet && netns_exists(name))
        fprintf(stderr, "nxt_netns: ip netns delete %s: %s\n", name, *err ? err : "failed");
}

/* Remove namespaces named like ours whose creator no longer exists (left by
 * a run whose reaper was killed too, e.g. by a kill of every process of the
 * session). */
static void sweep_stale(void) {
    DIR *d = opendir(NETNS_DIRS[0]);
    if (!d) return;
    struct dirent *e;
    int budget = 1000; /* bounded, whatever the directory holds */
    while ((e = readdir(d)) && budget-- > 0) {
        const char *nm = e->d_name;
        if (strncmp(nm, "nxc", 3) || (nm[3] != 'A' && nm[3] != 'B')) continue;
        char *end;
        long pid = strtol(nm + 4, &end, 10);
        if (end == nm + 4 || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        /* Its reaper may be removing it right now (it acts when the creator
         * ends, and the next test can start at that very moment). */
        for (int i = 0; i < 50 && netns_exists(nm); i++)
            usleep(20000);
        if (!netns_exists(nm)) continue;
        fprintf(stderr, "nxt_netns: removing stale namespace %s (its creator %ld is gone)\n", nm,
                pid);
        netns_remove(nm, false);
    }
    closedir(d);
}

/* --- the reaper -------------------------------------------------------------------- */

/* Runs detached (own session, so the harness's kill of the test's process
 * group misses it); waits for the owner to end, then removes both
 * namespaces. Never returns. */
static void reaper_main(const nxt_netns_t *ns, pid_t owner, int pidfd) {
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    for (int fd = 3; fd < maxfd; fd++) /* e.g. test channels and ctest's pipes */
        if (fd != pidfd) close(fd);
    if (chdir("/")) { /* only so as not to hold the test's directory busy */
    }
    uint64_t give_up = nxt_now_ms() + (uint64_t)REAPER_MAX_S * 1000;
    while (nxt_now_ms() < give_up) {
        if (pidfd >= 0) {
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            if (poll(&p, 1, 1000) == 1) break; /* the owner has exited */
        } else {
            if (kill(owner, 0) && errno == ESRCH) break;
            usleep(200000);
        }
    }
    netns_remove(ns->name[0], true);
    netns_remove(ns->name[1], true);
    _exit(0);
}

static pid_t reaper_start(const nxt_netns_t *ns, char *why, size_t len) {
    pid_t owner = getpid();
    int pidfd = -1;
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, owner, 0); /* -1 before Linux 5.3: poll instead */
#endif
    int pp[2];
    if (pipe2(pp, O_CLOEXEC)) {
        snprintf(why, len, "pipe: %s", strerror(errno));
        if (pidfd >= 0) close(pidfd);
        return -1;
    }
    fflush(NULL);
    pid_t mid = fork();
    if (mid < 0) {
        snprintf(why, len, "fork: %s", strerror(errno));
        close(pp[0]);
        close(pp[1]);
        if (pidfd >= 0) close(pidfd);
        return -1;
    }
    if (mid == 0) {
        setsid();
        pid_t r = fork();
        if (r != 0) { /* the middle process reports the reaper's pid and exits */
            ssize_t w = write(pp[1], &r, sizeof r);
            _exit(w == (ssize_t)sizeof r ? 0 : 1);
        }
        reaper_main(ns, owner, pidfd);
    }
    close(pp[1]);
    if (pidfd >= 0) close(pidfd);
    pid_t reaper = -1;
    struct pollfd p = {.fd = pp[0], .events = POLLIN};
    if (poll(&p, 1, 10000) != 1 || read(pp[0], &reaper, sizeof reaper) != (ssize_t)sizeof reaper)
        reaper = -1;
    close(pp[0]);
    for (uint64_t end = nxt_now_ms() + 10000;
         waitpid(mid, NULL, WNOHANG) == 0 && nxt_now_ms() < end;)
        usleep(1000);
    if (reaper <= 0) snprintf(why, len, "could not start the namespace reaper");
    return reaper;
}

/* --- the public calls ----------------------------------------------------------------- */

static int fail(nxt_netns_t *ns, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(nxt_netns_t *ns, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ns->why, sizeof ns->why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "nxt_netns: %s\n", ns->why);
    if (ns->live) nxt_netns_destroy(ns);
    return rc;
}

int nxt_netns_pair(nxt_netns_t *ns) {
    memset(ns, 0, sizeof *ns);
    ns->owner = getpid();
    ns->reaper = -1;
    long pid = (long)ns->owner;
    int x = (int)(pid % 250) + 1;
    snprintf(ns->name[0], sizeof ns->name[0], "nxcA%ld", pid);
    snprintf(ns->name[1], sizeof ns->name[1], "nxcB%ld", pid);
    snprintf(ns->veth[0], sizeof ns->veth[0], "nxa%ld", pid);
    snprintf(ns->veth[1], sizeof ns->veth[1], "nxb%ld", pid);
    snprintf(ns->addr[0], sizeof ns->addr[0], "10.211.%d.1", x);
    snprintf(ns->addr[1], sizeof ns->addr[1], "10.211.%d.2", x);

    if (geteuid() != 0)
        return fail(ns, NXT_NETNS_UNSUPPORTED,
                    "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)");
    if (!ip_path())
        return fail(ns, NXT_NETNS_UNSUPPORTED,
                    "iproute2's `ip` not found (apt-get install iproute2)");
    if (access("/proc/self/ns/net", F_OK))
        return fail(ns, NXT_NETNS_UNSUPPORTED, "this kernel has no network namespaces");

    sweep_stale();
    netns_remove(ns->name[0], false);
    netns_remove(ns->name[1], false);

    char err[256], a[24];
    if (ip_run(err, sizeof err, "netns", "add", ns->name[0], (const char *)NULL))
        return fail(ns, NXT_NETNS_UNSUPPORTED,
                    "cannot create a network namespace: ip netns add %s: %s", ns->name[0], err);
    ns->live = true; /* from here on, failures remove what exists */
    ns->reaper = reaper_start(ns, ns->why, sizeof ns->why);
    if (ns->reaper <= 0) return fail(ns, NXT_NETNS_FAILED, "%s", ns->why);
    if (ip_run(err, sizeof err, "netns", "add", ns->name[1], (const char *)NULL))
        return fail(ns, NXT_NETNS_FAILED, "ip netns add %s: %s", ns->name[1], err);
    if (ip_run(err, sizeof err, "link", "add", ns->veth[0], "netns", ns->name[0], "type", "veth",
               "peer", "name", ns->veth[1], "netns", ns->name[1], (const char *)NULL))
        return fail(ns, NXT_NETNS_UNSUPPORTED,
                    "cannot create a veth pair: ip link add %s type veth: %s", ns->veth[0], err);
    for (int s = 0; s < 2; s++) {
        snprintf(a, sizeof a, "%s/24", ns->addr[s]);
        if (ip_run(err, sizeof err, "-n", ns->name[s], "addr", "add", a, "dev", ns->veth[s],
                   (const char *)NULL))
            return fail(ns, NXT_NETNS_FAILED, "ip -n %s addr add %s dev %s: %s", ns->name[s], a,
                        ns->veth[s], err);
        if (ip_run(err, sizeof err, "-n", ns->name[s], "link", "set", "lo", "up",
                   (const char *)NULL))
            return fail(ns, NXT_NETNS_FAILED, "ip -n %s link set lo up: %s", ns->name[s], err);
    }
    if (nxt_netns_link(ns, true))
        return fail(ns, NXT_NETNS_FAILED, "could not bring the veth pair up");
    return 0;
}

int nxt_netns_enter(const nxt_netns_t *ns, int side) {
    if (side < 0 || side > 1) {
        fprintf(stderr, "nxt_netns_enter: side %d is not 0 (A) or 1 (B)\n", side);
        return -1;
    }
    const char *name = ns->name[side];
    int fd = -1;
    char path[320];
    for (size_t i = 0; fd < 0 && i < sizeof NETNS_DIRS / sizeof NETNS_DIRS[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", NETNS_DIRS[i], name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        fprintf(stderr, "nxt_netns_enter: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (setns(fd, CLONE_NEWNET)) {
        fprintf(stderr, "nxt_netns_enter: setns(%s): %s\n", name, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    /* /sys shows the network namespace of whoever mounted it: remount it in
     * a mount namespace of our own, without touching anyone else's. */
    if (unshare(CLONE_NEWNS)) {
        fprintf(stderr, "nxt_netns_enter: unshare(CLONE_NEWNS): %s%s\n", strerror(errno),
                errno == EINVAL ? " (the process has threads: enter before creating any)" : "");
        return -1;
    }
    if (mount("", "/", "none", MS_SLAVE | MS_REC, NULL)) {
        fprintf(stderr, "nxt_netns_enter: make / a slave mount: %s\n", strerror(errno));
        return -1;
    }
    if (umount2("/sys", MNT_DETACH) && errno != EINVAL) {
        fprintf(stderr, "nxt_netns_enter: umount /sys: %s\n", strerror(errno));
        return -1;
    }
    if (mount(name, "/sys", "sysfs", 0, NULL)) {
        fprintf(stderr, "nxt_netns_enter: mount sysfs on /sys: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int nxt_netns_link(const nxt_netns_t *ns, bool up) {
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        char err[256];
        if (ip_run(err, sizeof err, "-n", ns->name[s], "link", "set", ns->veth[s],
                   up ? "up" : "down", (const char *)NULL)) {
            fprintf(stderr, "nxt_netns: ip -n %s link set %s %s: %s\n", ns->name[s], ns->veth[s],
                    up ? "up" : "down", *err ? err : "failed");
            rc = -1;
        }
    }
    if (rc || !up) return rc;
    /* The carrier comes up asynchronously (the kernel's link watch runs up
     * to a second later), and software that lists interfaces (UCX) skips
     * one without it: wait until both ends report LOWER_UP. */
    uint64_t deadline = nxt_now_ms() + 10000;
    for (int s = 0; s < 2; s++) {
        char out[1024];
        for (;;) {
            int q = ip_query(out, sizeof out, "-n", ns->name[s], "-o", "link", "show", "dev",
                             ns->veth[s], (const char *)NULL);
            if (q == 0 && strstr(out, "LOWER_UP") && !strstr(out, "NO-CARRIER")) break;
            if (nxt_now_ms() >= deadline) {
                fprintf(stderr, "nxt_netns: %s in %s has no carrier 10 s after link up: %s\n",
                        ns->veth[s], ns->name[s], out);
                return -1;
            }
            usleep(20000);
        }
    }
    return 0;
}

/* The number after `"key":{"bytes":` in ip's JSON output. */
static bool json_bytes(const char *json, const char *key, uint64_t *v) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":{\"bytes\":", key);
    const char *p = strstr(json, pat);
    if (!p) return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(p + strlen(pat), &end, 10);
    if (errno || end == p + strlen(pat)) return false;
    *v = n;
    return true;
}

int nxt_netns_counters(const nxt_netns_t *ns, int side, uint64_t *rx, uint64_t *tx) {
    char out[4096];
    int q = ip_query(out, sizeof out, "-n", ns->name[side], "-j", "-s", "link", "show", "dev",
                     ns->veth[side], (const char *)NULL);
    if (q != 0 || !json_bytes(out, "rx", rx) || !json_bytes(out, "tx", tx)) {
        fprintf(stderr, "nxt_netns: no byte counters for %s in %s: %s\n", ns->veth[side],
                ns->name[side], out);
        return -1;
    }
    return 0;
}

void nxt_netns_destroy(nxt_netns_t *ns) {
    if (!ns->live || getpid() != ns->owner) return;
    netns_remove(ns->name[0], false);
    netns_remove(ns->name[1], false);
    if (ns->reaper > 0) kill(ns->reaper, SIGKILL); /* not our child: init reaps it */
    ns->reaper = -1;
    ns->live = false;
}
