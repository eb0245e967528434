/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-multimodal-demo: the encode/prefill embedding hand-off of a
 * disaggregated multimodal serving graph, as two real processes.
 *
 * With no --role this is the launcher: it makes the request channel (a
 * socketpair), starts itself twice (--role encode / --role prefill, each
 * with its end of the channel as --fd), and waits for both with a deadline,
 * killing them if they hang. Its exit status is 0 only if both workers
 * exited 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

const char *demo_role = "launcher";

double demo_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nxc-multimodal-demo [options]\n"
               "  --requests N        requests per pattern (default 8)\n"
               "  --tokens N          embedding rows (default 576)\n"
               "  --hidden N          embedding width in fp16 values (default 4096)\n"
               "  --size-mib X        embedding size instead of --tokens (whole tokens)\n"
               "  --pattern P         read | write | both (default both)\n"
               "  --transport NAME    connector param `transports` (default: library's)\n"
               "  --op-timeout-ms N   limit of every op wait (default 10000)\n"
               "  --deadline-s N      launcher kills the workers after N s (default 60)\n"
               "internal: --role encode|prefill --fd N\n");
}

static int parse_pattern(const char *s, int *out) {
    if (!strcmp(s, "read"))
        *out = DEMO_PATTERN_READ;
    else if (!strcmp(s, "write"))
        *out = DEMO_PATTERN_WRITE;
    else if (!strcmp(s, "both"))
        *out = DEMO_PATTERN_READ | DEMO_PATTERN_WRITE;
    else
        return -1;
    return 0;
}

/* A positive integer option value, or -1. */
static long positive(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v <= 0 || v > 1L << 30 ? -1 : v;
}

/* Apply one option; -1 if its value is bad. */
static int apply_opt(int c, const char *arg, demo_opts_t *o, double *size_mib) {
    long v = 1;
    switch (c) {
    case 'r': o->requests = (int)(v = positive(arg)); break;
    case 't': o->tokens = (size_t)(v = positive(arg)); break;
    case 'H': o->hidden = (size_t)(v = positive(arg)); break;
    case 'o': o->op_timeout_ms = (int)(v = positive(arg)); break;
    case 'd': o->deadline_s = (int)(v = positive(arg)); break;
    case 'f': o->fd = (int)(v = positive(arg)); break;
    case 's': v = (*size_mib = strtod(arg, NULL)) > 0 ? 1 : -1; break;
    case 'p': v = parse_pattern(arg, &o->patterns) == 0 ? 1 : -1; break;
    case 'T': o->transport = arg; break;
    case 'R': o->role = arg; break;
    default: return -1;
    }
    if (v < 0) fprintf(stderr, "nxc-multimodal-demo: bad option value '%s'\n", arg);
    return v < 0 ? -1 : 0;
}

int demo_parse_opts(int argc, char **argv, demo_opts_t *o) {
    static const struct option longopts[] = {
        {"requests", 1, 0, 'r'},      {"tokens", 1, 0, 't'},
        {"hidden", 1, 0, 'H'},        {"size-mib", 1, 0, 's'},
        {"pattern", 1, 0, 'p'},       {"transport", 1, 0, 'T'},
        {"op-timeout-ms", 1, 0, 'o'}, {"deadline-s", 1, 0, 'd'},
        {"role", 1, 0, 'R'},          {"fd", 1, 0, 'f'},
        {"help", 0, 0, 'h'},          {0, 0, 0, 0}};
    *o = (demo_opts_t){.requests = 8,
                       .tokens = 576,
                       .hidden = 4096,
                       .patterns = DEMO_PATTERN_READ | DEMO_PATTERN_WRITE,
                       .op_timeout_ms = 10000,
                       .deadline_s = 60,
                       .fd = -1};
    double size_mib = 0;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (apply_opt(c, optarg, o, &size_mib) != 0) {
            fprintf(stderr, "try: nxc-multimodal-demo --help\n");
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    /* --size-mib picks the token count for the current width. */
    if (size_mib > 0) {
        o->tokens = (size_t)(size_mib * 1048576.0 / (2.0 * (double)o->hidden) + 0.5);
        if (o->tokens == 0) o->tokens = 1;
    }
    if (o->tokens > (1u << 30) / o->hidden) { /* keeps sizes far from overflow */
        fprintf(stderr, "nxc-multimodal-demo: embeddings over 2 GiB are not supported\n");
        return -1;
    }
    return 0;
}

nxc_connector_t *demo_connector(const char *role, const char *transport) {
    if (strcmp(nxc_version(), NXC_VERSION_STRING) != 0)
        fprintf(stderr, "%s: warning: built against nxc %s but running %s\n", role,
                NXC_VERSION_STRING, nxc_version());
    char name[64];
    snprintf(name, sizeof name, "%s-worker-%ld", role, (long)getpid());
    nxc_connector_params_t p = {.field_mask = NXC_CONNECTOR_FIELD_NAME, .name = name};
    if (transport) {
        p.field_mask |= NXC_CONNECTOR_FIELD_TRANSPORTS;
        p.transports = transport;
    }
    nxc_connector_t *c = NULL;
    nxc_status_t st = nxc_connector_create(&p, &c);
    if (st != NXC_OK) {
        fprintf(stderr, "%s: nxc_connector_create: %s: %s\n", role, nxc_status_string(st),
                nxc_last_error());
        return NULL;
    }
    return c;
}

/* Child side of spawn_worker(): re-run this program as one worker. */
static void exec_worker(const demo_opts_t *o, const char *role, int fd) {
    char sfd[16], req[16], tok[24], hid[24], tmo[16];
    const char *pattern = o->patterns == DEMO_PATTERN_READ    ? "read"
                          : o->patterns == DEMO_PATTERN_WRITE ? "write"
                                                              : "both";
    snprintf(sfd, sizeof sfd, "%d", fd);
    snprintf(req, sizeof req, "%d", o->requests);
    snprintf(tok, sizeof tok, "%zu", o->tokens);
    snprintf(hid, sizeof hid, "%zu", o->hidden);
    snprintf(tmo, sizeof tmo, "%d", o->op_timeout_ms);
    const char *argv[] = {"nxc-multimodal-demo",
                          "--role",
                          role,
                          "--fd",
                          sfd,
                          "--requests",
                          req,
                          "--tokens",
                          tok,
                          "--hidden",
                          hid,
                          "--pattern",
                          pattern,
                          "--op-timeout-ms",
                          tmo,
                          o->transport ? "--transport" : NULL,
                          o->transport,
                          NULL};
    /* The channel was made close-on-exec so that each worker holds only its
     * own end: then a worker that dies shows up as EOF at the other. */
    fcntl(fd, F_SETFD, 0);
    execv("/proc/self/exe", (char **)argv);
    fprintf(stderr, "launcher: exec /proc/self/exe: %s\n", strerror(errno));
    _exit(127);
}

static pid_t spawn_worker(const demo_opts_t *o, const char *role, int fd) {
    pid_t pid = fork();
    if (pid < 0) fprintf(stderr, "launcher: fork: %s\n", strerror(errno));
    if (pid == 0) exec_worker(o, role, fd);
    return pid;
}

typedef struct worker {
    const char *role;
    pid_t pid;
    int done, ok;
} worker_t;

static void report_exit(worker_t *w, int status) {
    w->done = 1;
    w->ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "launcher: %s worker (pid %ld) killed by signal %d (%s)\n", w->role,
                (long)w->pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (!w->ok)
        fprintf(stderr, "launcher: %s worker (pid %ld) exited with status %d\n", w->role,
                (long)w->pid, WEXITSTATUS(status));
}

static void kill_stragglers(worker_t *w, int n, const char *why) {
    for (int i = 0; i < n; i++) {
        if (w[i].done || w[i].pid <= 0) continue; /* never kill(-1) */
        fprintf(stderr, "launcher: killing %s worker (pid %ld): %s\n", w[i].role, (long)w[i].pid,
                why);
        kill(w[i].pid, SIGKILL);
        waitpid(w[i].pid, NULL, 0);
        w[i].done = 1;
    }
}

/* Wait for both workers; once one has failed the other gets a short grace
 * period (it should notice the closed channel) before it is killed. */
static int reap_workers(worker_t *w, int n, int deadline_s) {
    double deadline = demo_now_us() + deadline_s * 1e6;
    int left = n, failed = 0;
    while (left > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        for (int i = 0; pid > 0 && i < n; i++) {
            if (w[i].pid != pid) continue;
            report_exit(&w[i], status);
            left--;
            if (!w[i].ok && !failed++ && deadline > demo_now_us() + 5e6)
                deadline = demo_now_us() + 5e6;
        }
        if (pid > 0) continue;
        if (demo_now_us() > deadline) {
            kill_stragglers(w, n, failed ? "its peer failed" : "deadline passed");
            return 1;
        }
        usleep(10000);
    }
    return failed ? 1 : 0;
}

static int launch(const demo_opts_t *o) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        fprintf(stderr, "launcher: socketpair: %s\n", strerror(errno));
        return 1;
    }
    fflush(stdout);
    worker_t w[2] = {{.role = "encode"}, {.role = "prefill"}};
    w[0].pid = spawn_worker(o, "encode", sv[0]);
    w[1].pid = w[0].pid > 0 ? spawn_worker(o, "prefill", sv[1]) : -1;
    close(sv[0]);
    close(sv[1]);
    if (w[1].pid < 0) {
        kill_stragglers(w, 2, "could not start its peer");
        return 1;
    }
    int rc = reap_workers(w, 2, o->deadline_s);
    printf("%s\n", rc == 0 ? "demo: PASS" : "demo: FAIL");
    return rc;
}

int main(int argc, char **argv) {
    demo_opts_t o;
    if (demo_parse_opts(argc, argv, &o) != 0) return 2;
    /* Workers share the terminal: line buffering keeps their lines whole. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!o.role) return launch(&o);
    if (o.fd < 0) {
        fprintf(stderr, "nxc-multimodal-demo: --role needs --fd\n");
        return 2;
    }
    demo_role = o.role;
    if (!strcmp(o.role, "encode")) return encode_worker_main(&o);
    if (!strcmp(o.role, "prefill")) return prefill_worker_main(&o);
    fprintf(stderr, "nxc-multimodal-demo: unknown role '%s'\n", o.role);
    return 2;
}
