/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's initiator, the active side: it drives the sweep (every op,
 * batch and block size) against a target over the rendezvous socket. Each
 * point runs in rounds: the target sends a round's metadata, the initiator
 * begins reads or writes with it, --concurrency at a time, and times them;
 * the target then reports when it saw each of its passive ops complete.
 */
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "report.h"
#include "wire.h"

typedef struct ipoint {
    int kind;
    uint64_t block, batch, opbytes;
    long iters, warmup; /* timed and untimed ops */
    uint64_t round;     /* ops per round */
    uint64_t slots;     /* target buffer slots */
    int conc;
    uint8_t *buf; /* conc slots of opbytes */
    uint64_t buflen;
    nxc_mem_t *reg; /* the buffer's registration for the point */
    int op_timeout_ms;
    int64_t offset; /* target clock - initiator clock, ns */
    /* per timed op */
    double *lat, *ntf, *lag;
    long nlat, nntf;
    uint64_t mismatched, timed_ns, timed_ops;
    const char *transport;
} ipoint_t;

typedef struct inflight {
    nxc_op_t *op;
    int slot;      /* local buffer slot */
    uint64_t k, i; /* op index in the point, index in the round */
    uint64_t t0;
} inflight_t;

/* One round: ops [first, first + n) of the point. */
typedef struct iround {
    uint64_t first, n;
    const char **md; /* the target's metadata, pointing into the message */
    size_t *mdlen;
    nxc_desc_t *descs;
    /* In-flight ops by buffer slot: each op's user_data is its slot, and
     * their ends come through one completion queue, as in a server. */
    inflight_t *fl;
    nxc_cq_entry_t *ends;
    nxc_cq_t *cq;
    nxc_op_params_t prm;
    uint64_t *t_begin, *t_end;
    uint64_t next, done, use; /* ops begun, ended, to run */
    int nfl, nfree;
    int *free_slots;
    uint64_t span0, span1; /* first begin, last end */
} iround_t;

static bool shared_clock; /* both processes on one kernel */

/* Clock offset between target and initiator, from the ping with the
 * shortest round trip. */
static int64_t measure_offset(int fd, buf_t *b) {
    uint64_t best_rtt = UINT64_MAX;
    int64_t best = 0;
    for (int i = 0; i < 8; i++) {
        buf_clear(b);
        uint64_t t0 = now_ns();
        put_u64(b, t0);
        msg_send(fd, M_PING, b, 10000);
        msg_expect(fd, b, M_PONG, 10000);
        uint64_t t2 = now_ns();
        uint64_t e0 = get_u64(b), t1 = get_u64(b);
        if (b->bad || e0 != t0) die("rendezvous: bad PONG");
        if (t2 - t0 < best_rtt) {
            best_rtt = t2 - t0;
            best = (int64_t)(t1 - (t0 + (t2 - t0) / 2));
        }
    }
    return best;
}

/* Read a byte of every page of [p, p + n). An application has read the
 * message that brought it a metadata text before it begins the op; the
 * round's texts came in one receive, into pages only the kernel wrote.
 * On the paravirtualised VM this was measured on, the first user-space
 * read of each such page cost about 7 us: decoding a text of 1024
 * descriptors (13 pages) took 120 us untouched and 26 us touched. That is
 * the rendezvous's cost, not the op's. */
static void touch_pages(const uint8_t *p, size_t n) {
    volatile uint8_t sink = 0;
    for (size_t off = 0; off < n; off += 4096)
        sink ^= p[off];
    (void)sink;
}

/* Ask the target for the round's ops and take their metadata. */
static void round_fetch(int fd, ipoint_t *ip, iround_t *r, buf_t *b) {
    buf_clear(b);
    put_u64(b, r->first);
    put_u64(b, r->n);
    msg_send(fd, M_ROUND, b, 10000);
    /* Creating n ops can take a while with large batches. */
    msg_expect(fd, b, M_MDS, 60000 + (int)(r->n * ip->batch / 100));
    uint64_t got = get_u64(b);
    if (b->bad || got != r->n) die("rendezvous: bad metadata message");
    r->md = xcalloc(r->n, sizeof *r->md);
    r->mdlen = xcalloc(r->n, sizeof *r->mdlen);
    for (uint64_t i = 0; i < r->n; i++)
        r->md[i] = get_str(b, &r->mdlen[i]);
    if (b->bad) die("rendezvous: truncated metadata message");
    touch_pages(b->p, b->len);
}

static void round_setup(nxc_connector_t *c, ipoint_t *ip, iround_t *r) {
    r->descs = xcalloc(ip->batch, sizeof *r->descs);
    r->fl = xcalloc((size_t)ip->conc, sizeof *r->fl);
    r->ends = xcalloc((size_t)ip->conc, sizeof *r->ends);
    r->t_begin = xcalloc(r->n, sizeof *r->t_begin);
    r->t_end = xcalloc(r->n, sizeof *r->t_end);
    nxc_status_t st = nxc_cq_create(c, NULL, &r->cq);
    if (st != NXC_OK) nxc_die(st, "cq_create");
    r->prm = (nxc_op_params_t){.field_mask =
                                   NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_CQ | NXC_OP_FIELD_USER_DATA,
                               .timeout_ms = ip->op_timeout_ms,
                               .cq = r->cq};
    r->use = r->n;
    r->nfree = ip->conc;
    r->free_slots = xcalloc((size_t)ip->conc, sizeof *r->free_slots);
    for (int i = 0; i < ip->conc; i++)
        r->free_slots[i] = ip->conc - 1 - i;
}

/* --between: the application's work between two ops, as a write to every
 * cache line of that much other memory, before the op's clock starts. A
 * tight loop of ops keeps the library's working set in cache; a server
 * runs other code in between, and its ops pay for the misses. */
static void work_between_ops(void) {
    static uint8_t *scratch;
    size_t n = (size_t)cfg.between_kib << 10;
    if (n == 0) return;
    if (!scratch) scratch = xcalloc(n, 1);
    for (size_t i = 0; i < n; i += 64)
        scratch[i]++;
}

/* Begin ops until --concurrency are in flight, all are begun, or stop_at
 * (--point-time) is reached. */
static void round_begin(nxc_connector_t *c, ipoint_t *ip, iround_t *r, uint64_t stop_at) {
    while (r->nfl < ip->conc && r->next < r->use) {
        if (r->next > 0 && now_ns() >= stop_at) {
            r->use = r->next; /* --point-time reached: stop issuing */
            break;
        }
        int s = r->free_slots[--r->nfree];
        uint8_t *base = ip->buf + (uint64_t)s * ip->opbytes;
        uint64_t k = r->first + r->next;
        if (cfg.check && ip->kind == OP_WRITE) pat_fill(cfg.seed, base, ip->block, ip->batch, k);
        for (uint64_t j = 0; j < ip->batch; j++)
            r->descs[j] = (nxc_desc_t){base + j * ip->block, ip->block, {NXC_DEVICE_HOST, 0}};
        nxc_op_t *op;
        r->prm.user_data = (void *)(intptr_t)s;
        const char *md = r->md[r->next];
        size_t mdlen = r->mdlen[r->next], n = (size_t)ip->batch;
        work_between_ops();
        uint64_t t0 = now_ns();
        nxc_status_t st = ip->kind == OP_READ
                              ? nxc_begin_read(c, md, mdlen, r->descs, n, &r->prm, &op)
                              : nxc_begin_write(c, r->descs, n, md, mdlen, &r->prm, &op);
        if (st != NXC_OK) nxc_die(st, ip->kind == OP_READ ? "begin_read" : "begin_write");
        if (r->next == 0) r->span0 = t0;
        r->t_begin[r->next] = t0;
        r->fl[s] = (inflight_t){op, s, k, r->next, t0};
        r->nfl++;
        r->next++;
    }
}

/* Take the `got` ends the completion queue gave, seen at time t. */
static void round_reap(ipoint_t *ip, iround_t *r, int got, uint64_t t) {
    for (int e = 0; e < got; e++) {
        inflight_t *f = &r->fl[(intptr_t)r->ends[e].user_data];
        if (r->ends[e].result != NXC_OK)
            die("op %" PRIu64 " (%s, %" PRIu64 " bytes): %s: %s", f->k,
                ip->kind == OP_READ ? "read" : "write", ip->opbytes,
                nxc_status_string(r->ends[e].result), nxc_op_message(f->op));
        if (!ip->transport) ip->transport = nxc_op_transport(f->op);
        r->t_end[f->i] = t;
        if (t > r->span1) r->span1 = t;
        if (cfg.check && ip->kind == OP_READ)
            ip->mismatched += pat_check(cfg.seed, ip->buf + (uint64_t)f->slot * ip->opbytes,
                                        ip->block, ip->batch, f->k);
        nxc_op_release(f->op);
        f->op = NULL;
        r->done++;
        r->nfl--;
        r->free_slots[r->nfree++] = f->slot;
    }
}

/* Tell the target how many ops were begun, take its result, and add the
 * round's times to the point's when it is timed. */
static void round_finish(int fd, ipoint_t *ip, iround_t *r, bool timed, buf_t *b) {
    buf_clear(b);
    put_u64(b, r->use);
    msg_send(fd, M_ROUND_END, b, 10000);
    msg_expect(fd, b, M_ROUND_RES, 30000);
    uint64_t rn = get_u64(b), mism = get_u64(b), errs = get_u64(b);
    size_t elen;
    const char *etext = get_str(b, &elen);
    if (b->bad || rn != r->n) die("rendezvous: bad round result");
    if (errs) die("target: %" PRIu64 " passive op(s) failed, first: %.*s", errs, (int)elen, etext);
    ip->mismatched += mism;
    if (!timed) return;
    for (uint64_t i = 0; i < r->use; i++) {
        uint64_t td = get_u64(b);
        ip->lat[ip->nlat++] = (double)(r->t_end[i] - r->t_begin[i]) / 1e3;
        if (td) {
            double tl = (double)((int64_t)td - ip->offset);
            ip->ntf[ip->nntf] = (tl - (double)r->t_begin[i]) / 1e3;
            ip->lag[ip->nntf++] = (tl - (double)r->t_end[i]) / 1e3;
        }
    }
    ip->timed_ns += r->span1 - r->span0;
    ip->timed_ops += r->use;
}

static void round_free(iround_t *r) {
    free(r->md);
    free(r->mdlen);
    free(r->descs);
    free(r->fl);
    free(r->ends);
    free(r->t_begin);
    free(r->t_end);
    free(r->free_slots);
}

/* Run ops [first, first+n) of the point. Returns the number begun. */
static uint64_t run_round(int fd, nxc_connector_t *c, ipoint_t *ip, uint64_t first, uint64_t n,
                          bool timed, uint64_t stop_at, buf_t *b) {
    iround_t r = {.first = first, .n = n};
    round_fetch(fd, ip, &r, b);
    round_setup(c, ip, &r);
    /* Ops are issued until stop_at; the last ones end by their deadline. */
    uint64_t round_deadline = (stop_at > now_ns() ? stop_at : now_ns()) +
                              (2ull * (uint64_t)ip->op_timeout_ms + 5000) * 1000000ull;
    while (r.done < r.use) {
        round_begin(c, ip, &r, stop_at);
        if (r.done >= r.use) break;
        int left = ms_left(round_deadline);
        if (left == 0) die("round did not finish before its deadline (peer hung?)");
        /* --loop: with the progress thread off, nxc_cq_wait() sleeps on the
         * connector's fd and drives it */
        int got = cfg.wait == WAIT_BUSY ? nxc_cq_poll(r.cq, r.ends, ip->conc)
                                        : nxc_cq_wait(r.cq, r.ends, ip->conc,
                                                      left < POLL_SLICE_MS ? left : POLL_SLICE_MS);
        if (got < 0) nxc_die((nxc_status_t)got, "cq_wait");
        if (got == 0 && cfg.wait == WAIT_BUSY) sched_yield(); /* spin, but let copier threads run */
        round_reap(ip, &r, got, now_ns());
    }
    nxc_cq_destroy(r.cq);
    round_finish(fd, ip, &r, timed, b);
    round_free(&r);
    return r.use;
}

/* Iterations, warm-up, concurrency, round and target slots of the point;
 * false (with a message) when its buffers would not fit --max-mem. */
static bool point_plan(ipoint_t *ip) {
    char b1[32], b2[32], b3[32];
    uint64_t opbytes = ip->opbytes;
    /* iterations: bounded by --max-bytes, floored by --min-iters */
    long iters = cfg.iters;
    if ((uint64_t)iters > cfg.max_bytes / opbytes) {
        long lim = (long)(cfg.max_bytes / opbytes);
        iters = lim < cfg.min_iters ? cfg.min_iters : lim;
        if (iters > cfg.iters) iters = cfg.iters;
    }
    long warmup = cfg.warmup;
    if (warmup > 0 && warmup > iters / 5) warmup = iters / 5 > 0 ? iters / 5 : 1;
    int conc = cfg.concurrency;
    uint64_t round = (uint64_t)cfg.round_max;
    uint64_t slots;
    if (cfg.check) {
        /* every op of a round has its own target memory */
        uint64_t memlim = cfg.max_mem / opbytes;
        if (round > memlim) round = memlim;
        if ((uint64_t)conc > round) conc = (int)round;
        slots = round;
    } else {
        slots = (uint64_t)conc;
    }
    if (conc < 1 || opbytes > cfg.max_mem / (uint64_t)conc || opbytes > cfg.max_mem / slots) {
        progress_clear();
        uint64_t bufs = conc < 1 ? 1 : (uint64_t)conc > slots ? (uint64_t)conc : slots;
        fprintf(stderr,
                "%s: skipping %s %s x%" PRIu64 ": needs %" PRIu64 " buffer(s) of %s, more than "
                "--max-mem %s\n",
                prog, ip->kind == OP_READ ? "read" : "write", fmt_size(ip->block, b1, sizeof b1),
                ip->batch, bufs, fmt_size(opbytes, b2, sizeof b2),
                fmt_size(cfg.max_mem, b3, sizeof b3));
        return false;
    }
    /* Metadata is roughly 100 bytes per descriptor: keep a round's under
     * 64 MB. */
    uint64_t mdlim = (64ull << 20) / (ip->batch * 128 + 1024);
    if (round > mdlim) round = mdlim > 0 ? mdlim : 1;
    if ((uint64_t)conc > round) conc = (int)round;
    ip->iters = iters, ip->warmup = warmup, ip->conc = conc;
    ip->round = round, ip->slots = slots;
    return true;
}

/* Tell the target about the point (M_POINT) and set up this side's
 * buffer and samples. */
static void point_start(int fd, nxc_connector_t *c, ipoint_t *ip, buf_t *b) {
    ip->op_timeout_ms = cfg.op_timeout_ms;
    if (ip->op_timeout_ms <= 0) {
        uint64_t ms = 10000 + ip->opbytes / 50000; /* 10 s + 20 ms per MB */
        ip->op_timeout_ms = ms > 3600000 ? 3600000 : (int)ms;
    }
    /* A round issues ops for at most --point-time s, and its last ops end by
     * their own deadline: passive ops need not live longer than that. */
    uint64_t passive_ms =
        (uint64_t)(cfg.point_time * 1000) + 2ull * (uint64_t)ip->op_timeout_ms + 30000;
    if (passive_ms > INT_MAX) passive_ms = INT_MAX;

    ip->offset = shared_clock ? 0 : measure_offset(fd, b);
    buf_clear(b);
    put_u64(b, (uint64_t)ip->kind);
    put_u64(b, ip->block);
    put_u64(b, ip->batch);
    put_u64(b, ip->slots);
    put_u64(b, cfg.check);
    put_u64(b, cfg.seed);
    put_u64(b, passive_ms);
    put_u64(b, cfg.alloc ? TARGET_MEM_ALLOC : cfg.prereg ? TARGET_MEM_REGISTER : TARGET_MEM_PLAIN);
    msg_send(fd, M_POINT, b, 10000);
    msg_expect(fd, b, M_POINT_OK, 120000);

    ip->buflen = ip->opbytes * (uint64_t)ip->conc;
    ip->buf = buf_alloc(ip->buflen);
    ip->reg = cfg.prereg ? buffer_register(c, ip->buf, ip->buflen) : NULL;
    ip->lat = xcalloc((size_t)ip->iters, sizeof(double));
    ip->ntf = xcalloc((size_t)ip->iters, sizeof(double));
    ip->lag = xcalloc((size_t)ip->iters, sizeof(double));
}

/* Warm-up, then timed rounds. Returns true when --point-time cut the
 * timed ops short. */
static bool point_rounds(int fd, nxc_connector_t *c, ipoint_t *ip, buf_t *b, const char *label) {
    uint64_t warmup = (uint64_t)ip->warmup, end = (uint64_t)(ip->warmup + ip->iters);
    uint64_t warm_stop = now_ns() + (uint64_t)(cfg.point_time * 1e9);
    for (uint64_t k = 0; k < warmup;) {
        uint64_t n = warmup - k < ip->round ? warmup - k : ip->round;
        uint64_t used = run_round(fd, c, ip, k, n, false, warm_stop, b);
        k += used;
        if (used < n) break;
    }
    uint64_t stop_at = now_ns() + (uint64_t)(cfg.point_time * 1e9);
    for (uint64_t k = warmup; k < end;) {
        uint64_t want = end - k;
        uint64_t n = want < ip->round ? want : ip->round;
        uint64_t used = run_round(fd, c, ip, k, n, true, stop_at, b);
        k += used;
        progress("%s: %" PRIu64 "/%ld ops", label, k - warmup, ip->iters);
        if (used < n || (now_ns() >= stop_at && k < end)) return true;
    }
    return false;
}

static void point_row(ipoint_t *ip, bool cut, row_t *row) {
    *row = (row_t){
        .kind = ip->kind,
        .block = ip->block,
        .batch = ip->batch,
        .opbytes = ip->opbytes,
        .iters = (long)ip->timed_ops,
        .warmup = ip->warmup,
        .concurrency = ip->conc,
        .seconds = (double)ip->timed_ns / 1e9,
        .gbps = ip->timed_ns ? (double)(ip->timed_ops * ip->opbytes) / (double)ip->timed_ns : 0,
        .mismatched = ip->mismatched,
        .transport = ip->transport,
        .cut_short = cut};
    row_stats(row, ip->lat, ip->nlat, ip->ntf, ip->lag, ip->nntf);
}

/* Run one point; false if it was skipped. */
static bool run_point(int fd, nxc_connector_t *c, int kind, uint64_t block, uint64_t batch,
                      row_t *row, buf_t *b, const char *label) {
    if (block > UINT64_MAX / batch) return false;
    ipoint_t ip = {.kind = kind, .block = block, .batch = batch, .opbytes = block * batch};
    if (!point_plan(&ip)) return false;
    point_start(fd, c, &ip, b);
    bool cut = point_rounds(fd, c, &ip, b, label);
    msg_send(fd, M_POINT_END, NULL, 10000);
    msg_expect(fd, b, M_POINT_END_OK, 30000);
    point_row(&ip, cut, row);
    nxc_mem_deregister(ip.reg);
    munmap(ip.buf, ip.buflen);
    free(ip.lat);
    free(ip.ntf);
    free(ip.lag);
    return true;
}

/* M_HELLO -> M_HELLO_OK: the target's transports, and whether it runs on
 * this kernel (one CLOCK_MONOTONIC, no offset to estimate). */
static void initiator_hello(int fd, buf_t *b, char *target_transports, size_t len) {
    put_u64(b, PROTO_VERSION);
    const char *tr = cfg.transport ? cfg.transport : "";
    put_str(b, tr, strlen(tr));
    put_u64(b, (uint64_t)cfg.wait);
    msg_send(fd, M_HELLO, b, 10000);
    msg_expect(fd, b, M_HELLO_OK, 60000);
    (void)get_u64(b);
    size_t tlen;
    const char *ttr = get_str(b, &tlen);
    snprintf(target_transports, len, "%.*s", (int)tlen, ttr);
    char bid[64];
    size_t blen;
    const char *tbid = get_str(b, &blen);
    boot_id(bid, sizeof bid);
    shared_clock = !b->bad && *bid && strlen(bid) == blen && !memcmp(bid, tbid, blen);
}

/* Every point of the sweep, a row each. Returns the bytes --check found
 * different; *measured counts the points not skipped. */
static uint64_t sweep(int fd, nxc_connector_t *c, buf_t *b, int total, int *measured) {
    int npt = 0;
    bool csv_header = false;
    uint64_t mismatched = 0;
    for (int o = 0; o < cfg.nops; o++)
        for (int bi = 0; bi < cfg.nbatches; bi++)
            for (int si = 0; si < cfg.nblocks; si++) {
                char label[96], b1[32];
                npt++;
                snprintf(label, sizeof label, "[%d/%d] %s %s x%" PRIu64, npt, total,
                         cfg.ops[o] == OP_READ ? "read" : "write",
                         fmt_size(cfg.blocks[si], b1, sizeof b1), cfg.batches[bi]);
                progress("%s", label);
                row_t row;
                if (!run_point(fd, c, cfg.ops[o], cfg.blocks[si], cfg.batches[bi], &row, b, label))
                    continue;
                mismatched += row.mismatched;
                (*measured)++;
                print_row(&row, &csv_header);
            }
    return mismatched;
}

int initiator_run(int fd) {
    buf_t b = {0};
    char target_transports[256];
    initiator_hello(fd, &b, target_transports, sizeof target_transports);
    nxc_connector_t *c =
        connector_make("nxc-bench-initiator", cfg.transport, cfg.wait == WAIT_THREAD);
    print_header(nxc_connector_transports(c), target_transports, shared_clock);

    int total = cfg.nops * cfg.nblocks * cfg.nbatches, measured = 0;
    uint64_t mismatched = sweep(fd, c, &b, total, &measured);
    progress_clear();
    msg_send(fd, M_BYE, NULL, 10000);
    nxc_connector_destroy(c);
    buf_free(&b);
    if (mismatched) {
        fprintf(stderr, "%s: --check: %" PRIu64 " bytes differed from what was sent\n", prog,
                mismatched);
        return 1;
    }
    if (measured == 0) {
        fprintf(stderr, "%s: nothing was measured: all %d point(s) were skipped\n", prog, total);
        return 1;
    }
    return 0;
}
