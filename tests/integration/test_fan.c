/* SPDX-License-Identifier: Apache-2.0 */
/* Load: fan-in and fan-out (issue 8, item 13).
 *
 * fan_in:  one passive process serves PEERS active processes at once; each
 *          peer reads or writes OPS times through the passive op the server
 *          hands it.
 * fan_out: one active process reads from and writes to PEERS passive
 *          processes at once, OPS ops each, all posted from one event loop.
 *
 * Ops mix reads and writes, sizes from 4 KiB to 4 MiB (log-uniform, odd
 * byte counts), and every fourth op cuts both sides into 1..16 descriptors
 * of different segmentation. Every byte is verified, and a guard after each
 * destination region must stay untouched. The process in the middle checks
 * its open fds: at peak (bounded) and after nxc_connector_destroy (back to
 * where it was before the connector existed); every peer checks the latter
 * too. The aggregate rate is printed, not asserted.
 *
 * CMake runs it once per transport (NXT_TRANSPORT). NXT_FAN_PEERS and
 * NXT_FAN_OPS shrink or grow a run (e.g. to reduce a failure); a slow
 * build scales the ops per peer down (nxt_size: 12 in a TSan build). */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nxt.h"

#define MAX_PEERS 256
#define WINDOW 2 /* ops a peer has handed out or taken on at once */
#define MIN_SIZE 4096
#define MAX_SIZE (4u << 20)
#define MAX_DESCS 16
#define GUARD 64
#define GUARD_BYTE 0xa5
/* The process in the middle stays under FD_LIMIT fds, and its connector
 * adds at most FDS_PER_PEER per peer plus FDS_FIXED: the documented most a
 * peer may get (8 tcp connections, docs/transports.md) and an eventfd for
 * each of the WINDOW ops in flight. Measured: up to 4.4 per peer (shm
 * fan_out under load). Connections that are not reused or not closed, over
 * 6400 ops, break this at once. */
#define FD_LIMIT 1024
#define FDS_PER_PEER (8 + WINDOW)
#define FDS_FIXED 64
/* No op finishing for this long is a hang, reported with the stuck ops by
 * the side that holds them all (fan_in's server, fan_out's client). A peer
 * waits longer for its next message, so that this report comes first; for
 * its first, longer still: that wait also covers the other peers' start
 * and the main side's setup, which took over a minute for 64 peers under
 * ThreadSanitizer beside other suites (and the first peers gave up). */
#define STALL_MS 60000
#define PEER_STALL_MS (2 * STALL_MS)
#define PEER_FIRST_MS 180000

static int peer_wait_ms(int received) {
    return received ? PEER_STALL_MS : PEER_FIRST_MS;
}

static int n_peers = 64, n_ops = 100;

static int env_int(const char *name, int def, int lo, int hi) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    int n = atoi(v);
    if (n < lo || n > hi) nxt_failf(__FILE__, __LINE__, "%s=%s: want %d..%d", name, v, lo, hi);
    return n;
}

/* --- what each op is ---------------------------------------------------------------- */

typedef struct spec {
    int write; /* 1: a write into a writable; 0: a read of a readable */
    size_t size, npassive, nactive;
    uint64_t seed; /* of the bytes moved */
} spec_t;

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Both sides derive op i of peer p from (test, p, i), so the channel carries
 * only the metadata. */
static spec_t op_spec(int test, int peer, int i) {
    uint64_t r = mix(((uint64_t)test << 48) ^ ((uint64_t)peer << 24) ^ (uint64_t)i);
    spec_t s;
    s.write = (int)(r & 1);
    r = mix(r);
    size_t base = (size_t)MIN_SIZE << (r % 10); /* 4 KiB .. 2 MiB */
    r = mix(r);
    s.size = base + (size_t)(r % base); /* .. 4 MiB - 1, odd sizes too */
    if (i % 25 == 7) s.size = MAX_SIZE;
    r = mix(r);
    s.npassive = s.nactive = 1;
    if (i % 4 == 3) {
        s.npassive = 1 + (size_t)(r % MAX_DESCS);
        s.nactive = 1 + (size_t)((r >> 8) % MAX_DESCS);
    }
    s.seed = mix(r ^ 0x5eed);
    return s;
}

/* Cut [buf, buf+size) into n descriptors of uneven sizes. */
static void split(char *buf, size_t size, size_t n, nxc_desc_t *d) {
    size_t base = size / n, off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = i + 1 == n ? size - off : base - (i % 3 == 1 && base > 1);
        d[i] = nxt_desc(buf + off, len);
        off += len;
    }
}

/* A buffer that receives `s.size` bytes: mark the guard after them. */
static void arm(char *buf, const spec_t *s) {
    memset(buf + s->size, GUARD_BYTE, GUARD);
}

/* Check what landed in a buffer armed by arm(). */
static void check_landed(const char *buf, const spec_t *s, const char *who, int peer, int i) {
    size_t bad = nxt_verify(buf, s->size, s->seed);
    if (bad != SIZE_MAX)
        nxt_failf(__FILE__, __LINE__,
                  "%s: peer %d op %d (%s %zu B, %zu/%zu descs): byte %zu of %zu differs", who, peer,
                  i, s->write ? "write" : "read", s->size, s->npassive, s->nactive, bad, s->size);
    for (size_t k = 0; k < GUARD; k++)
        if ((unsigned char)buf[s->size + k] != GUARD_BYTE)
            nxt_failf(__FILE__, __LINE__,
                      "%s: peer %d op %d: byte %zu past the %zu B region changed", who, peer, i, k,
                      s->size);
}

/* --- fds -------------------------------------------------------------------------- */

typedef struct fds {
    int total, sockets, anon, other;
} fds_t;

static fds_t fd_census(void) {
    fds_t f = {0};
    DIR *d = opendir("/proc/self/fd");
    if (!d) nxt_failf(__FILE__, __LINE__, "/proc/self/fd: %s", strerror(errno));
    struct dirent *e;
    char target[256];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        f.total++;
        ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        if (!strncmp(target, "socket:", 7))
            f.sockets++;
        else if (!strncmp(target, "anon_inode:", 11))
            f.anon++;
        else
            f.other++;
    }
    closedir(d);
    return f;
}

static void fd_peak(fds_t *peak) {
    fds_t f = fd_census();
    if (f.total > peak->total) *peak = f;
}

static void fd_list(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char target[256];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        fprintf(stderr, "    fd %s -> %s\n", e->d_name, target);
    }
    if (d) closedir(d);
}

/* After nxc_connector_destroy every fd the connector opened is closed. */
static void fd_back_to(const fds_t *before, const char *who) {
    fds_t after = fd_census();
    if (after.total != before->total) {
        fprintf(stderr, "  %s: open fds after nxc_connector_destroy:\n", who);
        fd_list();
        nxt_failf(__FILE__, __LINE__,
                  "%s: %d fds open after nxc_connector_destroy, %d before the connector "
                  "(sockets %d/%d, anon %d/%d, other %d/%d)",
                  who, after.total, before->total, after.sockets, before->sockets, after.anon,
                  before->anon, after.other, before->other);
    }
}

static void check_fd_peak(const fds_t *base, const fds_t *peak) {
    int growth = peak->total - base->total, bound = FDS_PER_PEER * n_peers + FDS_FIXED;
    if (peak->total >= FD_LIMIT || growth > bound)
        nxt_failf(__FILE__, __LINE__,
                  "%d fds open at peak (sockets %d, anon %d, other %d), %d more than before "
                  "the connector: want < %d and at most %d more",
                  peak->total, peak->sockets, peak->anon, peak->other, growth, FD_LIMIT, bound);
}

static long peak_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* --- peers -------------------------------------------------------------------------- */

typedef struct peer {
    int index;
    pid_t pid;
    int fd;               /* our end of its channel */
    int next;             /* next op index to hand out (fan_in) / expect metadata for (fan_out) */
    int done;             /* ops finished */
    nxc_op_t *op[WINDOW]; /* NULL: the slot is free */
    int idx[WINDOW];      /* which op a slot holds */
    char *buf[WINDOW];
} peer_t;

/* Ops may end out of order, so slots are found, not computed. */
static int free_slot(nxc_op_t *const *op) {
    for (int w = 0; w < WINDOW; w++)
        if (!op[w]) return w;
    nxt_failf(__FILE__, __LINE__, "no free slot");
}

static int slot_of(nxc_op_t *const *op, const int *idx, int i) {
    for (int w = 0; w < WINDOW; w++)
        if (op[w] && idx[w] == i) return w;
    nxt_failf(__FILE__, __LINE__, "op %d is not out", i);
}

typedef struct fan {
    int test; /* 0: fan_in, 1: fan_out */
    peer_t peers[MAX_PEERS];
} fan_t;

typedef struct peer_arg {
    fan_t *fan;
    int index;
} peer_arg_t;

/* Fork the peers one at a time, each closing the channels of the peers
 * before it, so a peer's channel has exactly two ends and its fd count is
 * its own. */
static void spawn_peers(fan_t *fan, void (*fn)(int fd, void *arg)) {
    static peer_arg_t args[MAX_PEERS];
    for (int p = 0; p < n_peers; p++) {
        nxt_chan_t ch;
        nxt_chan_init(&ch);
        args[p] = (peer_arg_t){fan, p};
        fan->peers[p].index = p;
        fan->peers[p].pid = nxt_spawn(&ch, fn, &args[p]);
        fan->peers[p].fd = nxt_chan_parent(&ch);
    }
}

static void close_inherited(fan_t *fan, int self) {
    for (int p = 0; p < self; p++)
        close(fan->peers[p].fd);
}

/* A message from a peer, or a failure that says which peer ended how. */
static char *recv_from(peer_t *p, int timeout_ms) {
    char c;
    ssize_t n = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
        int st = nxt_wait_pid(p->pid, 60000);
        nxt_failf(__FILE__, __LINE__, "peer %d (pid %d) closed its channel after %d ops: %s %d",
                  p->index, (int)p->pid, p->done,
                  WIFSIGNALED(st) ? "killed by signal" : "exit status",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    return nxt_recv(p->fd, NULL, timeout_ms);
}

static int parse_ok(const char *msg) {
    int i = -1;
    if (sscanf(msg, "ok %d", &i) != 1)
        nxt_failf(__FILE__, __LINE__, "unexpected message \"%.60s\"", msg);
    return i;
}

static void join_peers(fan_t *fan) {
    for (int p = 0; p < n_peers; p++)
        nxt_join(fan->peers[p].pid, 60000);
    for (int p = 0; p < n_peers; p++)
        close(fan->peers[p].fd);
}

static const char *status_name(nxc_op_status_t s) {
    static const char *names[] = {"UNINITIALIZED", "INITIALIZED", "IN_PROGRESS",
                                  "COMPLETE",      "CANCELLED",   "ERRORED"};
    return (unsigned)s < 6 ? names[s] : "?";
}

/* No progress for STALL_MS: name every op still out, then fail. */
static void stalled(fan_t *fan, const char *who) {
    fprintf(stderr, "  %s: no op finished for %d s; ops still out:\n", who, STALL_MS / 1000);
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW; w++)
            if (fan->peers[p].op[w])
                fprintf(stderr, "    peer %d (pid %d) slot %d: %s \"%s\"\n", p,
                        (int)fan->peers[p].pid, w, status_name(nxc_op_status(fan->peers[p].op[w])),
                        nxc_op_message(fan->peers[p].op[w]));
    nxt_failf(__FILE__, __LINE__, "%s stalled", who);
}

static void report(const char *what, double secs, uint64_t bytes, uint64_t ops, const fds_t *base,
                   const fds_t *peak) {
    printf("  %s over %s: %d peers x %d ops, %.1f MiB in %.2f s: %.2f GB/s, %.0f ops/s\n", what,
           nxt_transport() ? nxt_transport() : "default", n_peers, n_ops, (double)bytes / (1 << 20),
           secs, (double)bytes / secs / 1e9, (double)ops / secs);
    printf("  fds: %d before the connector, peak %d (sockets %d, anon %d, other %d), "
           "back to %d after destroy; peak RSS %ld MiB\n",
           base->total, peak->total, peak->sockets, peak->anon, peak->other, base->total,
           peak_rss_kib() / 1024);
}

/* --- fan-in: one passive server, many active peers ---------------------------------- */

/* Peers destroy their connector the moment their last op completed: the
 * server's endpoint to one then fails in the same UCX progress pass that
 * delivers its DONE, which must still complete the passive op (ucx once
 * dropped it). NXT_FAN_EAGER_DESTROY=0 makes peers wait for the server's
 * "bye" instead. */
static bool eager_destroy(void) {
    const char *env = getenv("NXT_FAN_EAGER_DESTROY");
    return !(env && *env && atoi(env) == 0);
}

/* Active peer: take each metadata text as it comes, move the bytes, verify,
 * say "ok i". One op at a time; the server keeps WINDOW texts queued. */
static void fan_in_peer(int fd, void *arg) {
    peer_arg_t *pa = arg;
    close_inherited(pa->fan, pa->index);
    fds_t before = fd_census();
    nxc_connector_t *c = nxt_connector("fan-in-client", 1);
    char *buf = nxt_alloc(MAX_SIZE + GUARD);
    nxc_desc_t d[MAX_DESCS];
    for (int i = 0; i < n_ops; i++) {
        size_t mdlen;
        char *md = nxt_recv(fd, &mdlen, peer_wait_ms(i));
        spec_t s = op_spec(0, pa->index, i);
        split(buf, s.size, s.nactive, d);
        nxc_op_t *op;
        if (s.write) {
            nxt_fill(buf, s.size, s.seed);
            NXT_PASS(nxc_begin_write(c, d, s.nactive, md, mdlen, NULL, &op));
        } else {
            arm(buf, &s);
            NXT_PASS(nxc_begin_read(c, md, mdlen, d, s.nactive, NULL, &op));
        }
        nxc_status_t st = nxc_op_wait(op, STALL_MS);
        if (st != NXC_OK)
            nxt_failf(__FILE__, __LINE__, "fan_in peer %d op %d (%s %zu B): %s (%s) over %s",
                      pa->index, i, s.write ? "write" : "read", s.size, nxc_status_string(st),
                      nxc_op_message(op), nxc_op_transport(op));
        if (nxt_transport()) NXT_EQ_STR(nxc_op_transport(op), nxt_transport());
        if (!s.write) check_landed(buf, &s, "fan_in peer", pa->index, i);
        nxc_op_release(op);
        free(md);
        char ok[32];
        snprintf(ok, sizeof ok, "ok %d", i);
        nxt_send_str(fd, ok);
    }
    /* Destroy right after the last op: its completion must still reach the
     * server (the server waits for its passive op after our "ok"). */
    if (!eager_destroy()) free(nxt_recv(fd, NULL, STALL_MS)); /* "bye" */
    nxc_connector_destroy(c);
    fd_back_to(&before, "fan_in peer");
    free(buf);
}

/* Server: expose op `p->next` of peer p in a free slot and send its text. */
static void fan_in_offer(nxc_connector_t *c, peer_t *p, uint64_t *bytes) {
    int i = p->next++, w = free_slot(p->op);
    p->idx[w] = i;
    spec_t s = op_spec(0, p->index, i);
    nxc_desc_t d[MAX_DESCS];
    split(p->buf[w], s.size, s.npassive, d);
    if (s.write) {
        arm(p->buf[w], &s);
        NXT_PASS(nxc_create_writable(c, d, s.npassive, NULL, &p->op[w]));
    } else {
        nxt_fill(p->buf[w], s.size, s.seed);
        NXT_PASS(nxc_create_readable(c, d, s.npassive, NULL, &p->op[w]));
    }
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(p->op[w], &md, &len));
    nxt_send(p->fd, md, len);
    *bytes += s.size;
}

static void test_fan_in(void) {
    static fan_t fan;
    fan.test = 0;
    eager_destroy(); /* decided (and said) once, before the peers fork */
    spawn_peers(&fan, fan_in_peer);
    fds_t base = fd_census(), peak = base;
    nxc_connector_t *c = nxt_connector("fan-in-server", 1);
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW; w++)
            fan.peers[p].buf[w] = nxt_alloc(MAX_SIZE + GUARD);
    double t0 = nxt_now_s();
    uint64_t bytes = 0;
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW && fan.peers[p].next < n_ops; w++)
            fan_in_offer(c, &fan.peers[p], &bytes);
    struct pollfd pfd[MAX_PEERS];
    int left = n_peers;
    uint64_t last = nxt_now_ms(), sampled = 0;
    while (left > 0) {
        int n = 0;
        for (int p = 0; p < n_peers; p++)
            if (fan.peers[p].done < n_ops)
                pfd[n++] = (struct pollfd){.fd = fan.peers[p].fd, .events = POLLIN};
        int r = poll(pfd, (nfds_t)n, 100);
        if (r < 0 && errno != EINTR) nxt_failf(__FILE__, __LINE__, "poll: %s", strerror(errno));
        if (nxt_now_ms() - sampled >= 20) {
            fd_peak(&peak);
            sampled = nxt_now_ms();
        }
        if (r <= 0) {
            if (nxt_now_ms() - last > STALL_MS) stalled(&fan, "fan_in server");
            continue;
        }
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents) continue;
            peer_t *p = NULL;
            for (int q = 0; q < n_peers && !p; q++)
                if (fan.peers[q].fd == pfd[k].fd) p = &fan.peers[q];
            char *msg = recv_from(p, 10000);
            int i = parse_ok(msg);
            free(msg);
            NXT_EQ_INT(i, p->done); /* one op at a time, in order */
            int w = slot_of(p->op, p->idx, i);
            spec_t s = op_spec(0, p->index, i);
            /* The peer saw its op complete; ours follows with the
             * notification, which may still be on its way. */
            nxc_status_t st = nxc_op_wait(p->op[w], 30000);
            if (st != NXC_OK)
                nxt_failf(__FILE__, __LINE__,
                          "fan_in server: peer %d op %d (%s %zu B): passive op %s (%s) over %s",
                          p->index, i, s.write ? "writable" : "readable", s.size,
                          nxc_status_string(st), nxc_op_message(p->op[w]),
                          nxc_op_transport(p->op[w]));
            if (s.write) check_landed(p->buf[w], &s, "fan_in server", p->index, i);
            nxc_op_release(p->op[w]);
            p->op[w] = NULL;
            if (++p->done == n_ops) {
                left--;
                if (!eager_destroy()) nxt_send_str(p->fd, "bye");
            }
            if (p->next < n_ops) fan_in_offer(c, p, &bytes);
            last = nxt_now_ms();
        }
    }
    double secs = nxt_now_s() - t0;
    fd_peak(&peak);
    nxc_connector_destroy(c);
    fd_back_to(&base, "fan_in server");
    check_fd_peak(&base, &peak);
    report("fan_in", secs, bytes, (uint64_t)n_peers * (uint64_t)n_ops, &base, &peak);
    join_peers(&fan);
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW; w++)
            free(fan.peers[p].buf[w]);
}

/* --- fan-out: one active client, many passive peers ---------------------------------- */

static void fan_out_expose(nxc_connector_t *c, int fd, int peer, int i, char *buf, nxc_op_t **op) {
    spec_t s = op_spec(1, peer, i);
    nxc_desc_t d[MAX_DESCS];
    split(buf, s.size, s.npassive, d);
    if (s.write) {
        arm(buf, &s);
        NXT_PASS(nxc_create_writable(c, d, s.npassive, NULL, op));
    } else {
        nxt_fill(buf, s.size, s.seed);
        NXT_PASS(nxc_create_readable(c, d, s.npassive, NULL, op));
    }
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(*op, &md, &len));
    nxt_send(fd, md, len);
}

/* Passive peer: keep WINDOW ops exposed; on "ok i" wait for op i, verify,
 * release it and expose the next. */
static void fan_out_peer(int fd, void *arg) {
    peer_arg_t *pa = arg;
    close_inherited(pa->fan, pa->index);
    fds_t before = fd_census();
    nxc_connector_t *c = nxt_connector("fan-out-server", 1);
    char *buf[WINDOW];
    nxc_op_t *op[WINDOW] = {0};
    int idx[WINDOW], next = 0;
    for (int w = 0; w < WINDOW; w++) {
        buf[w] = nxt_alloc(MAX_SIZE + GUARD);
        if (next < n_ops) {
            idx[w] = next;
            fan_out_expose(c, fd, pa->index, next++, buf[w], &op[w]);
        }
    }
    for (int done = 0; done < n_ops; done++) {
        char *msg = nxt_recv(fd, NULL, peer_wait_ms(done));
        int i = parse_ok(msg), w = slot_of(op, idx, i);
        free(msg);
        spec_t s = op_spec(1, pa->index, i);
        nxc_status_t st = nxc_op_wait(op[w], 30000);
        if (st != NXC_OK)
            nxt_failf(__FILE__, __LINE__, "fan_out peer %d op %d (%s %zu B): passive op %s (%s)",
                      pa->index, i, s.write ? "writable" : "readable", s.size,
                      nxc_status_string(st), nxc_op_message(op[w]));
        if (s.write) check_landed(buf[w], &s, "fan_out peer", pa->index, i);
        nxc_op_release(op[w]);
        op[w] = NULL;
        if (next < n_ops) {
            idx[w] = next;
            fan_out_expose(c, fd, pa->index, next++, buf[w], &op[w]);
        }
    }
    nxc_connector_destroy(c);
    fd_back_to(&before, "fan_out peer");
    for (int w = 0; w < WINDOW; w++)
        free(buf[w]);
}

static void test_fan_out(void) {
    static fan_t fan;
    fan.test = 1;
    spawn_peers(&fan, fan_out_peer);
    fds_t base = fd_census(), peak = base;
    nxc_connector_t *c = nxt_connector("fan-out-client", 1);
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW; w++)
            fan.peers[p].buf[w] = nxt_alloc(MAX_SIZE + GUARD);
    double t0 = nxt_now_s();
    uint64_t bytes = 0;
    /* one entry per peer channel, one per op in flight */
    static struct pollfd pfd[MAX_PEERS * (1 + WINDOW)];
    static peer_t *owner[MAX_PEERS * (1 + WINDOW)];
    static int slot[MAX_PEERS * (1 + WINDOW)];
    int left = n_peers;
    uint64_t last = nxt_now_ms(), sampled = 0;
    while (left > 0) {
        int n = 0;
        for (int p = 0; p < n_peers; p++) {
            peer_t *pp = &fan.peers[p];
            if (pp->next < n_ops) {
                owner[n] = pp, slot[n] = -1;
                pfd[n++] = (struct pollfd){.fd = pp->fd, .events = POLLIN};
            }
            for (int w = 0; w < WINDOW; w++)
                if (pp->op[w]) {
                    int ofd = nxc_op_fd(pp->op[w]);
                    if (ofd < 0) nxt_failf(__FILE__, __LINE__, "nxc_op_fd: %s", nxc_last_error());
                    owner[n] = pp, slot[n] = w;
                    pfd[n++] = (struct pollfd){.fd = ofd, .events = POLLIN};
                }
        }
        int r = poll(pfd, (nfds_t)n, 100);
        if (r < 0 && errno != EINTR) nxt_failf(__FILE__, __LINE__, "poll: %s", strerror(errno));
        if (nxt_now_ms() - sampled >= 20) {
            fd_peak(&peak);
            sampled = nxt_now_ms();
        }
        if (r <= 0) {
            if (nxt_now_ms() - last > STALL_MS) stalled(&fan, "fan_out client");
            continue;
        }
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents) continue;
            peer_t *p = owner[k];
            if (slot[k] < 0) { /* a metadata text: begin its op */
                size_t mdlen;
                char c0;
                if (recv(p->fd, &c0, 1, MSG_PEEK | MSG_DONTWAIT) == 0) recv_from(p, 0);
                char *md = nxt_recv(p->fd, &mdlen, 10000);
                int i = p->next++, w = free_slot(p->op);
                p->idx[w] = i;
                spec_t s = op_spec(1, p->index, i);
                nxc_desc_t d[MAX_DESCS];
                split(p->buf[w], s.size, s.nactive, d);
                if (s.write) {
                    nxt_fill(p->buf[w], s.size, s.seed);
                    NXT_PASS(nxc_begin_write(c, d, s.nactive, md, mdlen, NULL, &p->op[w]));
                } else {
                    arm(p->buf[w], &s);
                    NXT_PASS(nxc_begin_read(c, md, mdlen, d, s.nactive, NULL, &p->op[w]));
                }
                free(md);
                bytes += s.size;
                continue;
            }
            /* an op ended */
            int w = slot[k], i = p->idx[w];
            spec_t s = op_spec(1, p->index, i);
            nxc_op_t *op = p->op[w];
            nxc_status_t st = nxc_op_wait(op, 0);
            if (st != NXC_OK)
                nxt_failf(__FILE__, __LINE__,
                          "fan_out client: peer %d op %d (%s %zu B): %s (%s) over %s", p->index, i,
                          s.write ? "write" : "read", s.size, nxc_status_string(st),
                          nxc_op_message(op), nxc_op_transport(op));
            if (nxt_transport()) NXT_EQ_STR(nxc_op_transport(op), nxt_transport());
            if (!s.write) check_landed(p->buf[w], &s, "fan_out client", p->index, i);
            nxc_op_release(op);
            p->op[w] = NULL;
            char ok[32];
            snprintf(ok, sizeof ok, "ok %d", i);
            nxt_send_str(p->fd, ok);
            last = nxt_now_ms();
            if (++p->done == n_ops) left--;
        }
    }
    double secs = nxt_now_s() - t0;
    fd_peak(&peak);
    nxc_connector_destroy(c);
    fd_back_to(&base, "fan_out client");
    check_fd_peak(&base, &peak);
    report("fan_out", secs, bytes, (uint64_t)n_peers * (uint64_t)n_ops, &base, &peak);
    join_peers(&fan);
    for (int p = 0; p < n_peers; p++)
        for (int w = 0; w < WINDOW; w++)
            free(fan.peers[p].buf[w]);
}

/* n_ops, or in a slow build (nxt_size) fewer: every peer still has a
 * 4 MiB op (op 7) and ops cut into several descriptors (3, 7, 11). */
static int fan_ops(void) {
    return (int)nxt_size((size_t)n_ops, 12);
}

static void test_fan_in_main(void) {
    n_peers = env_int("NXT_FAN_PEERS", n_peers, 1, MAX_PEERS);
    n_ops = env_int("NXT_FAN_OPS", fan_ops(), 1, 100000);
    test_fan_in();
}

static void test_fan_out_main(void) {
    n_peers = env_int("NXT_FAN_PEERS", n_peers, 1, MAX_PEERS);
    n_ops = env_int("NXT_FAN_OPS", fan_ops(), 1, 100000);
    test_fan_out();
}

static const nxt_test_t nxt_tests[] = {
    {"fan_in", test_fan_in_main, 240},
    {"fan_out", test_fan_out_main, 240},
};
NXT_MAIN(nxt_tests)
