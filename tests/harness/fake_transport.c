/* SPDX-License-Identifier: Apache-2.0 */
/* The "fake" transport of the core's unit tests: see fake_transport.h. */
#include "fake_transport.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/connector.h"
#include "nxt.h"
#include "transport/transport.h"
#include "util/list.h"
#include "util/time.h"

typedef enum { MSG_REQ, MSG_GRANT, MSG_REFUSED, MSG_DONE, MSG_CUT } msg_type_t;

/* What one fake connector sends another. `from` is the sender's identity:
 * the owner keys its grants by it, and answers go back to it while it is
 * still in the fabric. */
typedef struct msg {
    struct msg *next;
    msg_type_t type;
    fake_t *from;
    uint64_t xfer;  /* the initiator's transfer */
    uint64_t grant; /* GRANT, DONE */
    bool complete;  /* DONE: every byte moved */
    char key[NXC_KEY_MAX + 1];
    uint8_t secret[NXC__SECRET_LEN];
    int md_kind;
    nxc__range_t *ranges;
    size_t nranges;
    char why[200]; /* REFUSED */
} msg_t;

/* An active op's transfer, on the initiator. */
typedef struct xfer {
    struct xfer *next;
    uint64_t id;
    nxc_op_t *op;
    fake_t *owner;
    uint64_t grant;
    bool granted, cancelled, in_flight;
    nxc_status_t why; /* what a cancel ends it with */
} xfer_t;

struct fake {
    nxc__tp_t base;
    struct fake *next; /* in the fabric */
    char name[NXC_NAME_MAX + 1];
    msg_t *inbox, *inbox_tail; /* the fabric's lock */
    xfer_t *xfers;
    uint64_t next_xfer;
    bool hold, stall, deaf;
    uint64_t idle_skip_ns;
    int direct_passes; /* passes left of a grant-free access in flight */
};

/* Every fake connector of the process, and their inboxes. */
static pthread_mutex_t fabric_lock = PTHREAD_MUTEX_INITIALIZER;
static fake_t *fabric;

static char log_text[16384] = " ";

static void log_event(const fake_t *f, const char *event) {
    pthread_mutex_lock(&fabric_lock);
    size_t used = strlen(log_text);
    snprintf(log_text + used, sizeof log_text - used, "%s.%s ", f->name, event);
    pthread_mutex_unlock(&fabric_lock);
}

const char *fake_log(void) {
    return log_text + 1;
}

void fake_log_clear(void) {
    strcpy(log_text, " ");
}

void fake_expect_log(const char *file, int line, const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    const char *at = log_text;
    for (const char *event = first; event; event = va_arg(ap, const char *)) {
        char word[128];
        snprintf(word, sizeof word, " %s ", event);
        const char *found = strstr(at, word);
        if (!found) {
            va_end(ap);
            nxt_failf(file, line, "no \"%s\" after the events before it in the log: %s", event,
                      fake_log());
        }
        at = found + strlen(word) - 1;
    }
    va_end(ap);
}

static fake_t *fake_named(const char *name, size_t len) {
    for (fake_t *f = fabric; f; f = f->next)
        if (strlen(f->name) == len && !memcmp(f->name, name, len)) return f;
    return NULL;
}

/* Put `m` in `to`'s inbox, or drop it when `to` is gone. */
static void send_msg(fake_t *to, msg_t *m) {
    pthread_mutex_lock(&fabric_lock);
    fake_t *live = fabric;
    while (live && live != to)
        live = live->next;
    if (live) NXC__QUEUE_APPEND(to->inbox, to->inbox_tail, m);
    pthread_mutex_unlock(&fabric_lock);
    if (!live) {
        free(m->ranges);
        free(m);
    }
}

static msg_t *new_msg(fake_t *from, msg_type_t type, uint64_t xfer) {
    msg_t *m = calloc(1, sizeof *m);
    NXT_CHECK(m);
    m->type = type;
    m->from = from;
    m->xfer = xfer;
    return m;
}

static fake_t *fake_self(nxc__tp_t *tp) {
    return (fake_t *)tp;
}

/* --- the initiator ------------------------------------------------------------ */

static xfer_t *xfer_find(fake_t *f, uint64_t id) {
    for (xfer_t *x = f->xfers; x; x = x->next)
        if (x->id == id) return x;
    return NULL;
}

/* The transfer is over: nothing touches the op's buffers any more. */
static void xfer_end(xfer_t *x, nxc_status_t result, const char *why) {
    if (!x->in_flight) return;
    x->in_flight = false;
    nxc__op_io_end(x->op);
    nxc__op_finish(x->op, result, "%s", why);
}

/* Hand the grant back, unused (a cancelled transfer). */
static void give_back(fake_t *f, xfer_t *x) {
    msg_t *m = new_msg(f, MSG_DONE, x->id);
    m->grant = x->grant;
    send_msg(x->owner, m);
    log_event(f, "give_back");
    xfer_end(x, x->why, "cancelled (fake)");
}

static void copy_bytes(xfer_t *x) {
    const nxc__metadata_t *md = nxc__op_peer_md(x->op);
    size_t nlocal, nsegs;
    const nxc_desc_t *local = nxc__op_local(x->op, &nlocal);
    const nxc__seg_t *segs = nxc__op_segs(x->op, &nsegs);
    for (size_t i = 0; i < nsegs; i++) {
        char *mine = (char *)local[segs[i].local_idx].ptr + segs[i].local_off;
        char *theirs = (char *)(uintptr_t)(md->descs[segs[i].remote_idx].addr + segs[i].remote_off);
        if (nxc__op_kind(x->op) == NXC_OP_READ)
            memcpy(mine, theirs, segs[i].len);
        else
            memcpy(theirs, mine, segs[i].len);
    }
}

/* Move what is granted, unless this side stalls. */
static int run_granted(fake_t *f) {
    int work = 0;
    for (xfer_t *x = f->xfers; x && !f->stall; x = x->next) {
        if (!x->granted || !x->in_flight) continue;
        work++;
        if (x->cancelled) {
            give_back(f, x);
            continue;
        }
        copy_bytes(x);
        msg_t *m = new_msg(f, MSG_DONE, x->id);
        m->grant = x->grant;
        m->complete = true;
        send_msg(x->owner, m);
        log_event(f, "copied");
        xfer_end(x, NXC_OK, "");
    }
    return work;
}

static void on_grant(fake_t *f, const msg_t *m) {
    xfer_t *x = xfer_find(f, m->xfer);
    log_event(f, "granted");
    if (!x || !x->in_flight) { /* ended meanwhile: the grant goes back at once */
        msg_t *back = new_msg(f, MSG_DONE, m->xfer);
        back->grant = m->grant;
        send_msg(m->from, back);
        return;
    }
    x->granted = true;
    x->grant = m->grant;
    nxc__op_progressing(x->op);
}

static void on_refused(fake_t *f, const msg_t *m) {
    xfer_t *x = xfer_find(f, m->xfer);
    log_event(f, "refused");
    if (x) xfer_end(x, x->cancelled ? x->why : NXC_ERR_REFUSED, m->why);
}

/* --- the owner ---------------------------------------------------------------- */

static void on_req(fake_t *f, const msg_t *m) {
    uint64_t id = 0;
    msg_t *reply = new_msg(f, MSG_GRANT, m->xfer);
    nxc_status_t st = nxc__grant_open(f->base.c, &f->base, m->from, m->key, m->secret, m->md_kind,
                                      m->ranges, m->nranges, &id, reply->why, sizeof reply->why);
    log_event(f, st == NXC_OK ? "grant" : "refuse");
    if (st != NXC_OK) reply->type = MSG_REFUSED;
    reply->grant = id;
    send_msg(m->from, reply);
}

static void on_done(fake_t *f, const msg_t *m) {
    bool known = nxc__grant_close(f->base.c, m->from, m->grant, m->complete);
    log_event(f, !known ? "done_unknown" : m->complete ? "done" : "returned");
}

/* The peer cut the connection: whatever either side had with it is lost. */
static void on_cut(fake_t *f, const msg_t *m) {
    log_event(f, "cut");
    nxc__peer_lost(f->base.c, m->from, "fake: the peer cut the connection");
    for (xfer_t *x = f->xfers; x; x = x->next)
        if (x->owner == m->from) xfer_end(x, NXC_ERR_PEER_FAILED, "fake: the owner cut us off");
}

static void handle(fake_t *f, const msg_t *m) {
    switch (m->type) {
    case MSG_REQ: on_req(f, m); break;
    case MSG_GRANT: on_grant(f, m); break;
    case MSG_REFUSED: on_refused(f, m); break;
    case MSG_DONE: on_done(f, m); break;
    case MSG_CUT: on_cut(f, m); break;
    }
}

/* --- the transport's calls ------------------------------------------------------ */

static nxc_status_t fake_create(nxc_connector_t *c, nxc__tp_t **tp_p) {
    fake_t *f = calloc(1, sizeof *f);
    if (!f) return NXC_ERR_NO_MEMORY;
    f->base.c = c;
    snprintf(f->name, sizeof f->name, "%s", nxc__connector_name(c));
    f->next_xfer = 1;
    pthread_mutex_lock(&fabric_lock);
    f->next = fabric;
    fabric = f;
    pthread_mutex_unlock(&fabric_lock);
    *tp_p = &f->base;
    return NXC_OK;
}

static void fake_destroy(nxc__tp_t *tp) {
    fake_t *f = fake_self(tp);
    log_event(f, "destroy");
    pthread_mutex_lock(&fabric_lock);
    NXC__LIST_UNLINK(fake_t, fabric, f);
    pthread_mutex_unlock(&fabric_lock);
    while (f->inbox) {
        msg_t *m;
        NXC__QUEUE_POP(f->inbox, f->inbox_tail, m);
        free(m->ranges);
        free(m);
    }
    while (f->xfers) {
        xfer_t *x = f->xfers;
        f->xfers = x->next;
        free(x);
    }
    free(f);
}

static int fake_event_fd(nxc__tp_t *tp) {
    (void)tp;
    return -1; /* the tests drive every pass themselves */
}

static int fake_progress(nxc__tp_t *tp) {
    fake_t *f = fake_self(tp);
    int work = 0;
    while (!f->hold) {
        msg_t *m = NULL;
        pthread_mutex_lock(&fabric_lock);
        if (f->inbox) NXC__QUEUE_POP(f->inbox, f->inbox_tail, m);
        pthread_mutex_unlock(&fabric_lock);
        if (!m) break;
        handle(f, m);
        free(m->ranges);
        free(m);
        work++;
    }
    work += run_granted(f);
    if (f->direct_passes > 0) { /* the access goes on: work for this pass */
        work++;
        if (--f->direct_passes == 0) log_event(f, "direct_end");
    }
    if (work == 0 && f->idle_skip_ns) {
        nxc__clock_skip(f->idle_skip_ns);
        work = 1;
    }
    return work;
}

static bool fake_arm(nxc__tp_t *tp) {
    fake_t *f = fake_self(tp);
    return f->hold || fake_inbox(f) == 0;
}

static bool fake_supports_device(nxc__tp_t *tp, nxc_device_kind_t kind) {
    (void)tp;
    return kind == NXC_DEVICE_HOST;
}

static nxc_status_t fake_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec,
                                void **state_p) {
    fake_t *f = fake_self(tp);
    (void)op;
    strcpy(sec->name, "fake");
    sec->conn = (nxc__bytes_t){(const uint8_t *)f->name, (uint32_t)strlen(f->name)};
    sec->keys = NULL; /* no key: the op's secret is all a peer needs */
    *state_p = f;
    log_event(f, "expose");
    return NXC_OK;
}

static void fake_retire(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    (void)state;
    /* The core calls it before the end is visible: say so if it is not. */
    log_event(fake_self(tp), nxc__op_terminal(op) ? "retire_late" : "retire");
}

static bool fake_direct_busy(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    (void)op, (void)state;
    return fake_self(tp)->direct_passes != 0;
}

static void fake_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    (void)op, (void)state;
    log_event(fake_self(tp), "unexpose");
}

static void fake_drop_peer(nxc__tp_t *tp, void *grant_peer) {
    fake_t *f = fake_self(tp);
    log_event(f, "drop_peer");
    send_msg(grant_peer, new_msg(f, MSG_CUT, 0));
    nxc__peer_lost(tp->c, grant_peer, "fake: cut off by the owner");
}

static nxc_status_t fake_reachable(nxc__tp_t *tp, const nxc__metadata_t *md,
                                   const nxc__md_section_t *sec, char *why, size_t len) {
    (void)tp, (void)md;
    pthread_mutex_lock(&fabric_lock);
    fake_t *owner = fake_named((const char *)sec->conn.data, sec->conn.len);
    pthread_mutex_unlock(&fabric_lock);
    if (owner) return NXC_OK;
    snprintf(why, len, "no fake connector named \"%.*s\"", (int)sec->conn.len,
             (const char *)sec->conn.data);
    return NXC_ERR_UNREACHABLE;
}

static nxc_status_t fake_post(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec) {
    fake_t *f = fake_self(tp);
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    pthread_mutex_lock(&fabric_lock);
    fake_t *owner = fake_named((const char *)sec->conn.data, sec->conn.len);
    pthread_mutex_unlock(&fabric_lock);
    xfer_t *x = calloc(1, sizeof *x);
    msg_t *m = new_msg(f, MSG_REQ, f->next_xfer);
    m->ranges = calloc(md->ndesc, sizeof *m->ranges);
    if (!owner || !x || !m->ranges) {
        free(x);
        free(m->ranges);
        free(m);
        return owner ? NXC_ERR_NO_MEMORY : NXC_ERR_UNREACHABLE;
    }
    *x = (xfer_t){.next = f->xfers,
                  .id = f->next_xfer++,
                  .op = op,
                  .owner = owner,
                  .in_flight = true,
                  .why = NXC_ERR_CANCELED};
    f->xfers = x;
    nxc__op_set_tp_state(op, x);
    nxc__op_io_begin(op); /* the transfer, from the request to its end */
    snprintf(m->key, sizeof m->key, "%s", md->notification_key);
    memcpy(m->secret, md->secret, sizeof m->secret);
    m->md_kind = md->operation_kind;
    for (size_t i = 0; i < md->ndesc; i++)
        m->ranges[i] = (nxc__range_t){md->descs[i].addr, md->descs[i].size};
    m->nranges = md->ndesc;
    send_msg(owner, m);
    log_event(f, "post");
    return NXC_OK;
}

static void fake_cancel(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why) {
    fake_t *f = fake_self(tp);
    xfer_t *x = nxc__op_tp_state(op);
    log_event(f, "cancel");
    x->cancelled = true;
    x->why = why;
    /* Granted: hand the grant back now. Not yet: when the answer comes. */
    if (x->granted && x->in_flight && !f->stall) give_back(f, x);
}

static void fake_abort_io(nxc__tp_t *tp, nxc_op_t *op) {
    fake_t *f = fake_self(tp);
    xfer_t *x = nxc__op_tp_state(op);
    log_event(f, f->deaf ? "abort_ignored" : "abort_io");
    if (f->deaf || !x->in_flight) return;
    send_msg(x->owner, new_msg(f, MSG_CUT, x->id)); /* like cutting the connection */
    xfer_end(x, x->why, "aborted (fake)");
}

static void fake_release(nxc__tp_t *tp, nxc_op_t *op) {
    fake_t *f = fake_self(tp);
    xfer_t *x = nxc__op_tp_state(op);
    log_event(f, "release");
    NXC__LIST_UNLINK(xfer_t, f->xfers, x);
    free(x);
    nxc__op_set_tp_state(op, NULL);
}

static void fake_describe(nxc__tp_t *tp, char *buf, size_t len) {
    (void)tp;
    snprintf(buf, len, "fake: in-process, for the core's unit tests");
}

static const nxc__transport_ops_t fake_ops = {
    .name = "fake",
    .create = fake_create,
    .destroy = fake_destroy,
    .event_fd = fake_event_fd,
    .progress = fake_progress,
    .arm = fake_arm,
    .supports_device = fake_supports_device,
    .expose = fake_expose,
    .retire = fake_retire,
    .direct_busy = fake_direct_busy,
    .unexpose = fake_unexpose,
    .drop_peer = fake_drop_peer,
    .reachable = fake_reachable,
    .post = fake_post,
    .cancel = fake_cancel,
    .abort_io = fake_abort_io,
    .release = fake_release,
    .describe = fake_describe,
};

/* --- the tests' side -------------------------------------------------------------- */

nxc_connector_t *fake_connector(const char *name) {
    nxc__transport_for_tests = &fake_ops;
    nxc_connector_params_t p = {
        .field_mask = NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |
                      NXC_CONNECTOR_FIELD_PROGRESS_THREAD,
        .name = name,
        .transports = "fake",
        .progress_thread = 0,
    };
    nxc_connector_t *c = NULL;
    NXT_PASS(nxc_connector_create(&p, &c));
    return c;
}

fake_t *fake_of(nxc_connector_t *c) {
    NXT_CHECK(c->ntps == 1 && c->tps[0]->ops == &fake_ops);
    return fake_self(c->tps[0]);
}

void fake_pass(int passes, ...) {
    for (int i = 0; i < passes; i++) {
        va_list ap;
        va_start(ap, passes);
        for (nxc_connector_t *c = va_arg(ap, nxc_connector_t *); c;
             c = va_arg(ap, nxc_connector_t *))
            NXT_CHECK(nxc_connector_progress(c) >= 0);
        va_end(ap);
    }
}

void fake_hold(fake_t *f, bool hold) {
    f->hold = hold;
}
void fake_stall(fake_t *f, bool stall) {
    f->stall = stall;
}
void fake_deaf(fake_t *f, bool deaf) {
    f->deaf = deaf;
}
void fake_direct(fake_t *f, int passes) {
    f->direct_passes = passes;
}
void fake_idle_skip(fake_t *f, uint64_t ns) {
    f->idle_skip_ns = ns;
}

int fake_inbox(fake_t *f) {
    int n = 0;
    pthread_mutex_lock(&fabric_lock);
    for (msg_t *m = f->inbox; m; m = m->next)
        n++;
    pthread_mutex_unlock(&fabric_lock);
    return n;
}
