/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's target, the passive side: it serves one initiator over the
 * rendezvous socket. For each point it owns one buffer; for each round it
 * creates a readable (--op read) or writable (--op write) over `batch`
 * blocks of it per op, sends their metadata, and reports when each op was
 * seen complete (and, for --check writes, the bytes that differ).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "wire.h"

typedef struct tpoint {
    int kind;
    uint64_t block, batch, slots, opbytes, seed;
    bool check, active;
    int passive_timeout_ms;
    uint8_t *buf;
    uint64_t buflen;
    nxc_mem_t *reg; /* the buffer's registration for the point */
    bool allocated; /* buf is reg's memory (nxc_mem_alloc): unmapped with it */
} tpoint_t;

/* One round's passive ops, [first, first + n) of the point, and what
 * became of them. */
typedef struct tround {
    uint64_t first, n;
    nxc_op_t **ops;   /* NULL once ended or released */
    uint64_t *t_done; /* when each op was seen complete, 0 if not */
    nxc_cq_t *cq;     /* the ops' ends (user_data: the op's index in the round) */
    uint64_t pending; /* ops not yet ended or released */
    uint64_t used;    /* ops the initiator began (all until ROUND_END says) */
    uint64_t mismatched, errors;
    char errtext[512]; /* the first error */
    bool ended;        /* ROUND_END received */
    uint64_t deadline;
} tround_t;

static void target_point(int fd, nxc_connector_t *c, tpoint_t *tp, buf_t *in) {
    tp->kind = (int)get_u64(in);
    tp->block = get_u64(in);
    tp->batch = get_u64(in);
    tp->slots = get_u64(in);
    tp->check = get_u64(in) != 0;
    tp->seed = get_u64(in);
    tp->passive_timeout_ms = (int)get_u64(in);
    uint64_t mem = get_u64(in);
    if (in->bad || tp->block == 0 || tp->batch == 0 || tp->slots == 0 ||
        tp->block > UINT64_MAX / tp->batch || mem > TARGET_MEM_ALLOC)
        send_error(fd, "target: malformed POINT message");
    tp->opbytes = tp->block * tp->batch;
    if (tp->opbytes > cfg.max_mem / tp->slots)
        send_error(fd, "target: point needs %" PRIu64 " bytes, over its --max-mem", tp->opbytes);
    tp->buflen = tp->opbytes * tp->slots;
    if (mem == TARGET_MEM_ALLOC) {
        tp->reg = buffer_alloc(c, &tp->buf, tp->buflen);
    } else {
        tp->buf = buf_alloc(tp->buflen);
        tp->reg = mem == TARGET_MEM_REGISTER ? buffer_register(c, tp->buf, tp->buflen) : NULL;
    }
    tp->allocated = mem == TARGET_MEM_ALLOC;
    tp->active = true;
    msg_send(fd, M_POINT_OK, NULL, 10000);
}

static void target_point_end(tpoint_t *tp) {
    nxc_mem_deregister(tp->reg);
    if (tp->buf && !tp->allocated) munmap(tp->buf, tp->buflen);
    *tp = (tpoint_t){0};
}

/* Create the round's passive ops and send their metadata (M_MDS). */
static void round_create(int fd, nxc_connector_t *c, tpoint_t *tp, tround_t *r, buf_t *out) {
    nxc_desc_t *descs = xcalloc(tp->batch, sizeof *descs);
    nxc_status_t st = nxc_cq_create(c, NULL, &r->cq);
    if (st != NXC_OK) send_error(fd, "target: cq_create: %s", nxc_last_error());
    nxc_op_params_t prm = {.field_mask =
                               NXC_OP_FIELD_TIMEOUT | NXC_OP_FIELD_CQ | NXC_OP_FIELD_USER_DATA,
                           .timeout_ms = tp->passive_timeout_ms,
                           .cq = r->cq};
    buf_clear(out);
    put_u64(out, r->n);
    for (uint64_t i = 0; i < r->n; i++) {
        uint64_t k = r->first + i;
        uint64_t slot = (tp->check ? i : k) % tp->slots;
        uint8_t *base = tp->buf + slot * tp->opbytes;
        if (tp->check && tp->kind == OP_READ) pat_fill(tp->seed, base, tp->block, tp->batch, k);
        for (uint64_t j = 0; j < tp->batch; j++)
            descs[j] = (nxc_desc_t){base + j * tp->block, tp->block, {NXC_DEVICE_HOST, 0}};
        prm.user_data = (void *)(uintptr_t)i;
        st = tp->kind == OP_READ
                 ? nxc_create_readable(c, descs, (size_t)tp->batch, &prm, &r->ops[i])
                 : nxc_create_writable(c, descs, (size_t)tp->batch, &prm, &r->ops[i]);
        if (st != NXC_OK)
            send_error(fd, "target: create %s: %s: %s",
                       tp->kind == OP_READ ? "readable" : "writable", nxc_status_string(st),
                       nxc_last_error());
        const char *md;
        size_t mdlen;
        st = nxc_op_metadata(r->ops[i], &md, &mdlen);
        if (st != NXC_OK)
            send_error(fd, "target: metadata: %s: %s", nxc_status_string(st), nxc_last_error());
        put_str(out, md, mdlen);
    }
    msg_send(fd, M_MDS, out, 30000);
    free(descs);
}

static void round_release(tround_t *r, uint64_t i) {
    nxc_op_release(r->ops[i]);
    r->ops[i] = NULL;
}

/* The deadline passed: the ops not seen complete fail (those the initiator
 * began) or go. */
static void round_expire(int fd, tround_t *r) {
    for (uint64_t i = 0; i < r->n; i++)
        if (r->ops[i]) {
            if (i < r->used) {
                r->errors++;
                if (!*r->errtext)
                    snprintf(r->errtext, sizeof r->errtext,
                             "op %" PRIu64 ": no notification before the deadline", r->first + i);
            }
            round_release(r, i);
        }
    r->pending = 0;
    if (!r->ended) send_error(fd, "target: initiator silent past the round's deadline");
}

/* Record the ops the completion queue reports ended, each batch at the
 * time the poll returned it; returns how many. (A time read before the
 * poll came before entries the poll waited for: where nxc_cq_poll() waited
 * for the connector lock, ops begun meanwhile showed a negative ntf.) */
static uint64_t round_reap(tpoint_t *tp, tround_t *r) {
    nxc_cq_entry_t ends[256];
    uint64_t reaped = 0;
    for (int got; (got = nxc_cq_poll(r->cq, ends, 256)) > 0; reaped += (uint64_t)got) {
        uint64_t t = now_ns();
        for (int e = 0; e < got; e++) {
            uint64_t i = (uintptr_t)ends[e].user_data;
            if (ends[e].result == NXC_OK) {
                r->t_done[i] = t;
                if (tp->check && tp->kind == OP_WRITE) {
                    uint64_t slot = i % tp->slots;
                    r->mismatched += pat_check(tp->seed, tp->buf + slot * tp->opbytes, tp->block,
                                               tp->batch, r->first + i);
                }
            } else {
                r->errors++;
                if (!*r->errtext)
                    snprintf(r->errtext, sizeof r->errtext, "op %" PRIu64 ": %s: %s", r->first + i,
                             nxc_status_string(ends[e].result), nxc_op_message(r->ops[i]));
            }
            round_release(r, i);
            r->pending--;
        }
    }
    return reaped;
}

/* M_ROUND_END: the initiator began `used` ops and saw them complete; the
 * others go, and the notifications still due get 5 s. */
static void round_on_end(int fd, tround_t *r, buf_t *in) {
    uint32_t type = msg_recv(fd, in, 10000);
    if (type != M_ROUND_END) send_error(fd, "target: expected ROUND_END");
    r->used = get_u64(in);
    if (in->bad || r->used > r->n) send_error(fd, "target: malformed ROUND_END");
    for (uint64_t i = r->used; i < r->n; i++)
        if (r->ops[i]) {
            round_release(r, i);
            r->pending--;
        }
    r->ended = true;
    uint64_t d2 = now_ns() + 5000000000ull;
    if (d2 < r->deadline) r->deadline = d2;
}

/* Watch the ops' completion queue beside the socket until every op ended
 * and the initiator sent ROUND_END. Until ROUND_END the passive deadline
 * bounds the ops; after it, the notifications of ops the initiator saw
 * complete get 5 s. */
static void round_wait(int fd, nxc_connector_t *c, tpoint_t *tp, tround_t *r, buf_t *in) {
    r->deadline = now_ns() + ((uint64_t)tp->passive_timeout_ms + 10000) * 1000000ull;
    while (r->pending > 0 || !r->ended) {
        int left = ms_left(r->deadline);
        if (left == 0) {
            round_expire(fd, r);
            break;
        }
        /* --busy: nothing sleeps; each reap below drives progress once.
         * --loop: progress until nothing is pending, then sleep on the
         * connector's fd too. */
        int slice = cfg.wait == WAIT_BUSY ? 0 : left < POLL_SLICE_MS ? left : POLL_SLICE_MS;
        struct pollfd pfd[3] = {{nxc_cq_fd(r->cq), POLLIN, 0}};
        nfds_t n = 1;
        if (cfg.wait == WAIT_LOOP) {
            while (nxc_connector_progress(c) > 0) {
            }
            pfd[n++] = (struct pollfd){nxc_connector_fd(c), POLLIN, 0};
        }
        struct pollfd *sock = r->ended ? NULL : &pfd[n];
        if (sock) pfd[n++] = (struct pollfd){fd, POLLIN, 0};
        int got = poll(pfd, n, slice);
        if (got < 0 && errno != EINTR) send_error(fd, "target: poll: %s", strerror(errno));
        /* the ops first, so that their times are not delayed by the socket */
        if (round_reap(tp, r) == 0 && cfg.wait == WAIT_BUSY)
            sched_yield(); /* spin, but let copier threads run */
        if (got > 0 && sock && (sock->revents & (POLLIN | POLLHUP | POLLERR)))
            round_on_end(fd, r, in);
    }
}

/* M_ROUND_RES: count, mismatched bytes, errors, the first error, and the
 * completion times. */
static void round_report(int fd, tround_t *r, buf_t *out) {
    buf_clear(out);
    put_u64(out, r->n);
    put_u64(out, r->mismatched);
    put_u64(out, r->errors);
    put_str(out, r->errtext, strlen(r->errtext));
    for (uint64_t i = 0; i < r->n; i++)
        put_u64(out, r->t_done[i]);
    msg_send(fd, M_ROUND_RES, out, 10000);
}

/* One round: create n passive ops, send their metadata, record when each
 * completes, then report. */
static void target_round(int fd, nxc_connector_t *c, tpoint_t *tp, buf_t *in, buf_t *out) {
    tround_t r = {.first = get_u64(in)};
    r.n = get_u64(in);
    if (in->bad || !tp->active || r.n == 0 || r.n > 1u << 20)
        send_error(fd, "target: malformed ROUND message");
    r.ops = xcalloc(r.n, sizeof *r.ops);
    r.t_done = xcalloc(r.n, sizeof *r.t_done);
    r.pending = r.used = r.n;
    round_create(fd, c, tp, &r, out);
    round_wait(fd, c, tp, &r, in);
    nxc_cq_destroy(r.cq);
    round_report(fd, &r, out);
    free(r.ops);
    free(r.t_done);
}

/* M_HELLO -> M_HELLO_OK: check the protocol, make the connector (the
 * initiator's --transport unless the target has its own), and answer with
 * its transports and this kernel's boot id. */
static nxc_connector_t *target_hello(int fd, buf_t *in, buf_t *out, int idle_ms) {
    msg_expect(fd, in, M_HELLO, idle_ms);
    uint64_t proto = get_u64(in);
    size_t tlen;
    const char *tr = get_str(in, &tlen);
    if (in->bad || proto != PROTO_VERSION)
        send_error(fd, "target: protocol %" PRIu64 " not supported (this is %d)", proto,
                   PROTO_VERSION);
    uint64_t wait = get_u64(in);
    if (in->bad || wait > WAIT_BUSY) send_error(fd, "target: malformed HELLO");
    char transport[256];
    snprintf(transport, sizeof transport, "%.*s", (int)tlen, tr);
    if (cfg.transport) snprintf(transport, sizeof transport, "%s", cfg.transport);
    cfg.wait = (int)wait;
    nxc_connector_t *c;
    nxc_status_t st = connector_try("nxc-bench-target", transport, cfg.wait == WAIT_THREAD, &c);
    if (st != NXC_OK)
        send_error(fd, "target: connector (transports '%s'): %s: %s", transport,
                   nxc_status_string(st), nxc_last_error());
    buf_clear(out);
    put_u64(out, PROTO_VERSION);
    const char *tl = nxc_connector_transports(c);
    put_str(out, tl, strlen(tl));
    char bid[64];
    boot_id(bid, sizeof bid);
    put_str(out, bid, strlen(bid));
    msg_send(fd, M_HELLO_OK, out, 10000);
    return c;
}

static void target_pong(int fd, buf_t *in, buf_t *out) {
    uint64_t t0 = get_u64(in);
    buf_clear(out);
    put_u64(out, t0);
    put_u64(out, now_ns());
    msg_send(fd, M_PONG, out, 10000);
}

int target_serve(int fd) {
    buf_t in = {0}, out = {0};
    int idle_ms = cfg.idle_timeout_s * 1000;
    nxc_connector_t *c = target_hello(fd, &in, &out, idle_ms);
    tpoint_t tp = {0};
    for (;;) {
        uint32_t type = msg_recv(fd, &in, idle_ms);
        if (type == M_PING) {
            target_pong(fd, &in, &out);
        } else if (type == M_POINT) {
            if (tp.active) target_point_end(&tp);
            target_point(fd, c, &tp, &in);
        } else if (type == M_ROUND) {
            target_round(fd, c, &tp, &in, &out);
        } else if (type == M_POINT_END) {
            target_point_end(&tp);
            msg_send(fd, M_POINT_END_OK, NULL, 10000);
        } else if (type == M_BYE) {
            break;
        } else {
            send_error(fd, "target: unexpected message %u", type);
        }
    }
    target_point_end(&tp);
    nxc_connector_destroy(c);
    buf_free(&in);
    buf_free(&out);
    return 0;
}
