/* SPDX-License-Identifier: Apache-2.0 */
#include "nxt.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A ThreadSanitizer build (gcc defines __SANITIZE_THREAD__, clang has the
 * feature). */
#if defined(__SANITIZE_THREAD__)
#define NXT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NXT_TSAN 1
#endif
#endif

/* An AddressSanitizer build (the same two ways). */
#if defined(__SANITIZE_ADDRESS__)
#define NXT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NXT_ASAN 1
#endif
#endif

uint64_t nxt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

double nxt_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define STALL_NAP_MS 2

struct nxt_stall_watch {
    pthread_t th;
    _Atomic bool stop;
    uint64_t longest_ms; /* the watch thread's alone until joined */
};

static void *stall_watch(void *arg) {
    nxt_stall_watch_t *w = arg;
    while (!atomic_load(&w->stop)) {
        uint64_t t0 = nxt_now_ms();
        usleep(STALL_NAP_MS * 1000);
        uint64_t slept = nxt_now_ms() - t0;
        if (slept > STALL_NAP_MS + w->longest_ms) w->longest_ms = slept - STALL_NAP_MS;
    }
    return NULL;
}

nxt_stall_watch_t *nxt_stall_watch_start(void) {
    nxt_stall_watch_t *w = calloc(1, sizeof *w);
    NXT_CHECK(w != NULL);
    NXT_CHECK(pthread_create(&w->th, NULL, stall_watch, w) == 0);
    return w;
}

uint64_t nxt_stall_watch_stop(nxt_stall_watch_t *w) {
    atomic_store(&w->stop, true);
    pthread_join(w->th, NULL);
    uint64_t longest = w->longest_ms;
    free(w);
    return longest;
}

void nxt_failf(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  FAILED at %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

void nxt_skip(const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printf("  SKIP: %s\n", why);
    fflush(NULL);
    exit(NXT_SKIP_STATUS); /* not _exit: LeakSanitizer checks at exit */
}

static int thread_count(void);
/* Threads of a test's process before the test ran: a sanitizer's own
 * (ThreadSanitizer keeps one), none of nxc's. */
static int threads_at_start = 1;

static void *no_op(void *arg) {
    return arg;
}

/* The thread count once a runtime that starts a helper thread with the
 * first pthread_create() (ThreadSanitizer does) has started it. */
static int settled_thread_count(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, no_op, NULL) == 0) pthread_join(t, NULL);
    return thread_count();
}

/* Run one test in its own process group; kill the group when done.
 * 0: passed, 1: failed, NXT_SKIP_STATUS: skipped. */
static int run_one(const nxt_test_t *t) {
    int timeout_s = t->timeout_s ? t->timeout_s : 60;
    uint64_t start = nxt_now_ms();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        threads_at_start = settled_thread_count();
        t->fn();
        exit(0); /* not _exit: LeakSanitizer checks at exit */
    }
    setpgid(pid, pid);
    int status = 0;
    bool timed_out = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (nxt_now_ms() - start > (uint64_t)timeout_s * 1000) {
            timed_out = true;
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    kill(-pid, SIGKILL); /* any peer the test left behind */
    while (waitpid(-pid, NULL, WNOHANG) > 0) {
    }
    uint64_t ms = nxt_now_ms() - start;
    if (timed_out) {
        printf("FAIL %s: timed out after %d s\n", t->name, timeout_s);
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   %s (%llu ms)\n", t->name, (unsigned long long)ms);
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == NXT_SKIP_STATUS) {
        printf("SKIP %s (%llu ms)\n", t->name, (unsigned long long)ms);
        return NXT_SKIP_STATUS;
    }
    if (WIFSIGNALED(status))
        printf("FAIL %s: killed by signal %d\n", t->name, WTERMSIG(status));
    else
        printf("FAIL %s: exit %d\n", t->name, WEXITSTATUS(status));
    return 1;
}

int nxt_run(const nxt_test_t *tests, size_t n, int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    int failed = 0, skipped = 0, ran = 0;
#ifdef NXT_TSAN
    /* setenv() here comes too late (tried: the tests still crash) */
    const char *mem_events = getenv("UCX_MEM_EVENTS");
    if (!mem_events || strcmp(mem_events, "no"))
        printf("warning: without UCX_MEM_EVENTS=no, UCX's memory hooks crash a "
               "ThreadSanitizer build (scripts/test.sh tsan sets it)\n");
#endif
    if (nxt_size_scale() != 1)
        printf("size scale %u: big transfers and long cases shrunk %u times (nxt_size)\n",
               nxt_size_scale(), nxt_size_scale());
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        ran++;
        int r = run_one(&tests[i]);
        if (r == NXT_SKIP_STATUS)
            skipped++;
        else if (r)
            failed++;
    }
    printf("%d passed, %d failed, %d skipped\n", ran - failed - skipped, failed, skipped);
    /* the rule: nxt.h, "Skipping" */
    if (failed) return 1;
    return ran > 0 && skipped == ran ? NXT_SKIP_STATUS : 0;
}

void nxt_chan_init(nxt_chan_t *ch) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch->fd))
        nxt_failf(__FILE__, __LINE__, "socketpair: %s", strerror(errno));
}

/* Threads of this process, from /proc/self/task. */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) nxt_failf(__FILE__, __LINE__, "/proc/self/task: %s", strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

pid_t nxt_spawn(nxt_chan_t *ch, void (*fn)(int fd, void *arg), void *arg) {
    int threads = thread_count();
    if (threads > threads_at_start)
        nxt_failf(__FILE__, __LINE__,
                  "nxt_spawn from a process with %d threads (%d at the test's start): spawn "
                  "peers before creating connectors (a fork copies locks other threads hold)",
                  threads, threads_at_start);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) nxt_failf(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(ch->fd[0]);
        fn(ch->fd[1], arg);
        exit(0);
    }
    return pid;
}

int nxt_spawn_peer(void (*fn)(int fd, void *arg), void *arg, pid_t *pid_p) {
    nxt_chan_t ch;
    nxt_chan_init(&ch);
    *pid_p = nxt_spawn(&ch, fn, arg);
    return nxt_chan_parent(&ch);
}

int nxt_chan_parent(nxt_chan_t *ch) {
    if (ch->fd[1] >= 0) {
        close(ch->fd[1]);
        ch->fd[1] = -1;
    }
    return ch->fd[0];
}

static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) nxt_failf(__FILE__, __LINE__, "channel write: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

/* Read `len` bytes before `deadline`; `what` and `timeout_ms` name the wait
 * in a failure (which process waited, for what, how long). */
static void read_all(int fd, void *buf, size_t len, uint64_t deadline, const char *what,
                     int timeout_ms) {
    char *p = buf;
    size_t want = len;
    while (len) {
        uint64_t now = nxt_now_ms();
        if (now >= deadline)
            nxt_failf(__FILE__, __LINE__,
                      "channel read timed out: process %d waited %d ms for %s (%zu of %zu "
                      "bytes came)",
                      (int)getpid(), timeout_ms, what, want - len, want);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t got = read(fd, p, len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) nxt_failf(__FILE__, __LINE__, "channel closed by the peer");
        p += got;
        len -= (size_t)got;
    }
}

void nxt_send(int fd, const void *buf, size_t len) {
    uint64_t n = len;
    write_all(fd, &n, sizeof n);
    write_all(fd, buf, len);
}

void nxt_send_str(int fd, const char *s) {
    nxt_send(fd, s, strlen(s));
}

char *nxt_recv(int fd, size_t *len_p, int timeout_ms) {
    uint64_t deadline = nxt_now_ms() + (uint64_t)timeout_ms;
    uint64_t n;
    read_all(fd, &n, sizeof n, deadline, "a message", timeout_ms);
    if (n > (64u << 20)) nxt_failf(__FILE__, __LINE__, "channel message too large");
    char *buf = malloc(n + 1);
    if (!buf) nxt_failf(__FILE__, __LINE__, "out of memory");
    read_all(fd, buf, n, deadline, "the rest of a message", timeout_ms);
    buf[n] = '\0';
    if (len_p) *len_p = n;
    return buf;
}

int nxt_wait_pid(pid_t pid, int timeout_ms) {
    uint64_t deadline = nxt_now_ms() + (uint64_t)timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) nxt_failf(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
        if (nxt_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            nxt_failf(__FILE__, __LINE__, "peer %d did not exit within %d ms", (int)pid,
                      timeout_ms);
        }
        usleep(1000);
    }
}

void nxt_stop(pid_t pid) {
    NXT_CHECK(kill(pid, SIGSTOP) == 0);
    uint64_t deadline = nxt_now_ms() + 10000;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG | WUNTRACED);
        if (r == pid && WIFSTOPPED(status)) return;
        if (r == pid) nxt_failf(__FILE__, __LINE__, "peer %d ended instead of stopping", (int)pid);
        if (r < 0) nxt_failf(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
        if (nxt_now_ms() >= deadline)
            nxt_failf(__FILE__, __LINE__, "peer %d did not stop within 10 s", (int)pid);
        usleep(200);
    }
}

void nxt_join(pid_t pid, int timeout_ms) {
    int st = nxt_wait_pid(pid, timeout_ms);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        nxt_failf(__FILE__, __LINE__, "peer %d failed (status 0x%x)", (int)pid, st);
}

int nxt_kill(pid_t pid, int timeout_ms) {
    NXT_CHECK(kill(pid, SIGKILL) == 0);
    return nxt_wait_pid(pid, timeout_ms);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void nxt_fill(void *buf, size_t len, uint64_t seed) {
    unsigned char *p = buf;
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(p + i, &v, 8);
    }
    uint64_t v = splitmix(&s);
    memcpy(p + i, &v, len - i);
}

size_t nxt_verify(const void *buf, size_t len, uint64_t seed) {
    const unsigned char *p = buf;
    uint64_t s = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = splitmix(&s);
        size_t n = len - i < 8 ? len - i : 8;
        if (memcmp(p + i, &v, n) == 0) continue;
        for (size_t k = 0; k < n; k++)
            if (p[i + k] != ((const unsigned char *)&v)[k]) return i + k;
    }
    return SIZE_MAX;
}

void *nxt_alloc(size_t len) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1))
        nxt_failf(__FILE__, __LINE__, "out of memory (%zu bytes)", len);
    memset(p, 0, len);
    return p;
}

unsigned nxt_size_scale(void) {
    const char *e = getenv("NXT_SIZE_SCALE");
    if (e && *e) {
        char *end;
        unsigned long v = strtoul(e, &end, 10);
        if (*end == '\0' && v >= 1 && v <= 1024) return (unsigned)v;
    }
#if defined(NXT_TSAN)
    return 8;
#elif defined(NXT_ASAN)
    /* Each big buffer is zeroed, its shadow faulted in and, at exit, the
     * leak checker scans the heap: beside CPU hogs, 768 MiB cases took
     * 50-60 s of their 60 s (scripts/stress.sh asan). */
    return 4;
#else
    return 1;
#endif
}

size_t nxt_size(size_t full, size_t min) {
    size_t s = full / nxt_size_scale();
    if (s < min) s = min;
    return s < full ? s : full;
}

nxc_desc_t nxt_desc(void *ptr, size_t size) {
    nxc_desc_t d = {.ptr = ptr, .size = size, .device = {NXC_DEVICE_HOST, 0}};
    return d;
}

nxc_op_t *nxt_offer(nxc_connector_t *c, int fd, nxc_op_kind_t kind, void *buf, size_t len) {
    nxc_desc_t d = nxt_desc(buf, len);
    nxc_op_t *op;
    if (kind == NXC_OP_READABLE)
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op));
    else
        NXT_PASS(nxc_create_writable(c, &d, 1, NULL, &op));
    const char *md;
    NXT_PASS(nxc_op_metadata(op, &md, NULL));
    nxt_send_str(fd, md);
    return op;
}

nxc_connector_t *nxt_connector_on(const char *name, const char *transport) {
    nxc_connector_params_t p = {0};
    p.field_mask = NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |
                   NXC_CONNECTOR_FIELD_PROGRESS_THREAD;
    p.name = name;
    p.transports = transport;
    p.progress_thread = 1;
    nxc_connector_t *c = NULL;
    NXT_PASS(nxc_connector_create(&p, &c));
    NXT_EQ_STR(nxc_connector_transports(c), transport);
    return c;
}

const char *nxt_transport(void) {
    return getenv("NXT_TRANSPORT");
}

void nxt_await_grant(nxc_connector_t *c, nxc_op_t *op, int timeout_ms) {
    /* nxc_op_transport and nxc_op_result only read; a grant is what sets
     * the transport of a passive op. */
    for (uint64_t end = nxt_now_ms() + (uint64_t)timeout_ms;
         !nxc_op_transport(op) && nxt_now_ms() < end;)
        if (nxc_connector_progress(c) == 0) usleep(100);
    NXT_CHECK(nxc_op_transport(op) != NULL);
    NXT_EQ_INT(nxc_op_result(op), NXC_INPROGRESS);
}

nxc_connector_t *nxt_connector_with(nxc_connector_params_t p) {
    if (nxt_transport()) {
        p.field_mask |= NXC_CONNECTOR_FIELD_TRANSPORTS;
        p.transports = nxt_transport();
    }
    nxc_connector_t *c = NULL;
    NXT_PASS(nxc_connector_create(&p, &c));
    return c;
}

nxc_connector_t *nxt_connector(const char *name, int progress_thread) {
    nxc_connector_params_t p = {0};
    p.field_mask = NXC_CONNECTOR_FIELD_PROGRESS_THREAD;
    p.progress_thread = progress_thread;
    if (name) {
        p.field_mask |= NXC_CONNECTOR_FIELD_NAME;
        p.name = name;
    }
    return nxt_connector_with(p);
}
