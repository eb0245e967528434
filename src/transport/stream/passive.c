/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream engine's passive side: answering the requests of peers that
 * want to read or write this connector's passive ops.
 *
 * Every inbound connection is a peer's handle for the core's grants, so
 * closing one cuts exactly the access it carried. A request is checked by
 * nxc__grant_open() (op, secret, kind, every range) before any byte of the
 * op's memory is read or written; anything malformed or refused closes the
 * connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/stream/stream_internal.h"
#include "util/error.h"
#include "util/text.h"

#define MAX_XFERS 4096 /* striped transfers in flight per peer */

/* --- striped transfers ------------------------------------------------------------------ */

static xfer_t *xfer_find(stream_peer_t *p, uint64_t id) {
    for (size_t i = 0; i < p->nxfers; i++)
        if (p->xfers[i].id == id) return &p->xfers[i];
    return NULL;
}

/* Give back the grants a transfer holds (it ended, or gave up) and forget it. */
static void xfer_end(stream_tp_t *t, stream_peer_t *p, xfer_t *x) {
    for (unsigned i = 0; i < x->nheld; i++)
        nxc__grant_close(t->base.c, p, x->held[i], false);
    *x = p->xfers[--p->nxfers];
}

/* Stripe `stripe` of transfer `id` on op `key` was granted; false when it
 * contradicts what earlier stripes said, repeats one, or is one too many. */
static bool xfer_add(stream_peer_t *p, uint64_t id, unsigned nstripes, unsigned stripe,
                     const char *key) {
    if (nstripes <= 1) return true;
    xfer_t *x = xfer_find(p, id);
    if (!x) {
        if (p->nxfers >= MAX_XFERS) return false;
        x = realloc(p->xfers, (p->nxfers + 1) * sizeof *x);
        if (!x) return false;
        p->xfers = x;
        x = &x[p->nxfers++];
        *x = (xfer_t){.id = id, .nstripes = nstripes};
        snprintf(x->key, sizeof x->key, "%s", key);
    }
    if (x->nstripes != nstripes || (x->started >> stripe & 1) || strcmp(x->key, key)) return false;
    x->started |= 1u << stripe;
    return true;
}

/* A passive stripe finished moving its bytes (grant `grant`, held by
 * connection `conn`): the last one completes the op; the others hand their
 * grant to the transfer. */
static void passive_stripe_done(stream_conn_t *conn, uint64_t grant, uint64_t id,
                                unsigned nstripes) {
    stream_tp_t *t = conn->t;
    xfer_t *x = nstripes > 1 ? xfer_find(conn->peer, id) : NULL;
    if (nstripes > 1 && !x) { /* the transfer was given up meanwhile */
        nxc__grant_close(t->base.c, conn, grant, false);
        return;
    }
    if (x && x->nheld + 1 < x->nstripes) {
        nxc__grant_move(t->base.c, conn, grant, conn->peer);
        x->held[x->nheld++] = grant;
        return;
    }
    if (x) xfer_end(t, conn->peer, x);
    nxc__grant_close(t->base.c, conn, grant, true);
}

/* The peer's last inbound connection closed: transfers it left half done
 * fail their ops (its memory is partly written), and no grant names it. */
void nxc__stream_peer_gone(stream_tp_t *t, stream_peer_t *p, const char *why) {
    if (p->nxfers == 0) return;
    p->nxfers = 0;
    char text[NXC_NAME_MAX + 512];
    snprintf(text, sizeof text, "peer %s went away in the middle of a striped transfer (%s)",
             p->name, why);
    nxc__peer_lost(t->base.c, p, text);
}

/* --- frames ----------------------------------------------------------------------------- */

/* Copy `len` bytes of the frame's body, from `at` on, out as a text. */
static void body_text(const stream_conn_t *conn, size_t at, size_t len, char *out) {
    memcpy(out, conn->body + at, len);
    out[len] = '\0';
}

static void refuse(stream_conn_t *conn, uint64_t xfer, nxc_status_t st, const char *why) {
    nxc__wire_refused_t r = {.status = st};
    nxc__stream_send_frame(conn, NXC__WIRE_REFUSED, xfer, &r, sizeof r, why, strlen(why), NULL, 0,
                           NULL, 0);
    conn->closing = true;
    conn->in = IN_DISCARD;
}

static void on_hello(stream_conn_t *conn) {
    stream_tp_t *t = conn->t;
    nxc__wire_hello_t h;
    if (conn->hdr.type != NXC__WIRE_HELLO || conn->hdr.body_len < sizeof h) {
        nxc__stream_conn_close(conn, "protocol: expected HELLO");
        return;
    }
    memcpy(&h, conn->body, sizeof h);
    if (h.version != NXC__WIRE_VERSION || h.name_len > NXC_NAME_MAX ||
        conn->hdr.body_len != sizeof h + h.name_len) {
        nxc__stream_conn_close(conn, "protocol: bad HELLO (version %u)", h.version);
        return;
    }
    if (memcmp(h.want, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN)) {
        nxc__stream_conn_close(conn, "HELLO for another connector");
        return;
    }
    char name[NXC_NAME_MAX + 1];
    body_text(conn, sizeof h, h.name_len, name);
    for (char *p = name; *p; p++) /* it goes into logs and messages */
        if (*p != ' ' && !nxc__visible((unsigned char)*p)) *p = '?';
    conn->peer = nxc__stream_peer_get(t, h.instance, name);
    if (!conn->peer) {
        nxc__stream_conn_close(conn, "out of memory");
        return;
    }
    conn->ready = true;
    nxc__wire_hello_ok_t ok;
    memcpy(ok.instance, nxc__connector_instance(t->base.c), NXC__INSTANCE_LEN);
    nxc__stream_send_frame(conn, NXC__WIRE_HELLO_OK, 0, &ok, sizeof ok, NULL, 0, NULL, 0, NULL, 0);
}

/* Take a REQ apart: its fixed part into `q`, its key into `key`. false (the
 * connection closed) when it is malformed; its ranges are then in the body
 * right after the key. */
static bool req_parse(stream_conn_t *conn, nxc__wire_req_t *q, char *key) {
    if (conn->hdr.body_len < sizeof *q) {
        nxc__stream_conn_close(conn, "protocol: short REQ");
        return false;
    }
    memcpy(q, conn->body, sizeof *q);
    if (q->key_len == 0 || q->key_len > NXC_KEY_MAX || q->nranges == 0 ||
        q->nranges > NXC__WIRE_MAX_RANGES || q->nstripes == 0 ||
        q->nstripes > NXC__WIRE_MAX_STRIPES || q->stripe >= q->nstripes ||
        (q->md_kind != NXC__MD_KIND_READ && q->md_kind != NXC__MD_KIND_WRITE) ||
        q->inline_data != (conn->t->fl->inline_data ? 1 : 0) ||
        conn->hdr.body_len !=
            sizeof *q + q->key_len + (uint64_t)q->nranges * sizeof(nxc__wire_range_t)) {
        nxc__stream_conn_close(conn, "protocol: malformed REQ");
        return false;
    }
    body_text(conn, sizeof *q, q->key_len, key);
    if (strlen(key) != q->key_len) {
        nxc__stream_conn_close(conn, "protocol: NUL in key");
        return false;
    }
    return true;
}

static void on_req(stream_conn_t *conn) {
    stream_tp_t *t = conn->t;
    nxc__wire_req_t q;
    uint64_t xfer = conn->hdr.xfer;
    char key[NXC_KEY_MAX + 1];
    if (!req_parse(conn, &q, key)) return;
    nxc__range_t *r = malloc(q.nranges * sizeof *r);
    struct iovec *iov = malloc(q.nranges * sizeof *iov);
    if (!r || !iov) {
        free(r);
        free(iov);
        nxc__stream_conn_close(conn, "out of memory");
        return;
    }
    memcpy(r, conn->body + sizeof q + q.key_len, q.nranges * sizeof *r);
    uint64_t total = 0;
    bool overflow = false;
    for (uint32_t i = 0; i < q.nranges; i++) {
        overflow |= r[i].len > UINT64_MAX - total;
        total += r[i].len;
        iov[i] = (struct iovec){(void *)(uintptr_t)r[i].addr, (size_t)r[i].len};
    }
    uint64_t gid = 0;
    char why[200] = "ranges overflow";
    nxc_status_t st =
        overflow ? NXC_ERR_REFUSED
                 : nxc__grant_open_part(t->base.c, &t->base, conn, key, q.secret, q.md_kind, r,
                                        q.nranges, q.stripe, q.nstripes, &gid, why, sizeof why);
    free(r);
    if (st == NXC_OK && !xfer_add(conn->peer, xfer, q.nstripes, q.stripe, key)) {
        nxc__grant_close(t->base.c, conn, gid, false);
        st = NXC_ERR_REFUSED;
        snprintf(why, sizeof why,
                 "striped transfer: stripe repeated, another op, or too many in flight");
    }
    if (st != NXC_OK) {
        free(iov);
        refuse(conn, xfer, st, why);
        return;
    }
    nxc__wire_grant_t msg = {.grant = gid};
    bool write = q.md_kind == NXC__MD_KIND_WRITE;
    if (!t->fl->inline_data) {
        free(iov);
        nxc__stream_send_frame(conn, NXC__WIRE_GRANTED, xfer, &msg, sizeof msg, NULL, 0, NULL, 0,
                               NULL, 0);
    } else if (!write) {
        nxc__stream_send_frame(conn, NXC__WIRE_GRANTED, xfer, &msg, sizeof msg, NULL, 0, NULL, 0,
                               iov, q.nranges);
    } else {
        conn->piov = iov;
        conn->pn = q.nranges;
        conn->pi = 0;
        conn->pleft = total;
        conn->in = IN_PAYLOAD;
    }
    /* what this connection's DONE or payload completes */
    conn->pgrant = gid;
    conn->pxfer = xfer;
    conn->pnstripes = q.nstripes;
}

/* The payload of a tcp write landed: the passive op's bytes are all there. */
void nxc__stream_passive_payload_done(stream_conn_t *conn) {
    nxc__wire_grant_t msg = {.grant = conn->pgrant};
    passive_stripe_done(conn, conn->pgrant, conn->pxfer, conn->pnstripes);
    nxc__stream_send_frame(conn, NXC__WIRE_ACK, conn->pxfer, &msg, sizeof msg, NULL, 0, NULL, 0,
                           NULL, 0);
    conn->pgrant = 0;
}

static void on_done(stream_conn_t *conn) {
    nxc__wire_done_t d;
    if (conn->hdr.body_len != sizeof d) {
        nxc__stream_conn_close(conn, "protocol: bad DONE");
        return;
    }
    memcpy(&d, conn->body, sizeof d);
    if (d.grant != conn->pgrant || conn->hdr.xfer != conn->pxfer) {
        nxc__stream_conn_close(conn, "protocol: DONE for a grant this connection does not hold");
        return;
    }
    /* The grant must outlive every byte sent from the op's memory: a DONE
     * while that is still queued would let the sending go on after the
     * owner got its buffers back. */
    for (const out_t *o = conn->out; o; o = o->next)
        if (o->idx < o->niov) {
            nxc__stream_conn_close(conn, "protocol: DONE before the payload was sent");
            return;
        }
    if (d.complete) {
        passive_stripe_done(conn, d.grant, conn->pxfer, conn->pnstripes);
    } else { /* the active side gave up the whole transfer */
        xfer_t *x = xfer_find(conn->peer, conn->pxfer);
        if (x) xfer_end(conn->t, conn->peer, x);
        nxc__grant_close(conn->t->base.c, conn, d.grant, false);
    }
    conn->pgrant = 0;
}

/* A reader cancelled (tcp): stop sending its bytes, give the grant back
 * (the op stays usable for another reader) and close, since the payload
 * stops mid-frame. */
static void on_cancel(stream_conn_t *conn) {
    nxc__wire_grant_t msg;
    if (!conn->t->fl->inline_data || conn->hdr.body_len != sizeof msg) {
        nxc__stream_conn_close(conn, "protocol: unexpected CANCEL");
        return;
    }
    memcpy(&msg, conn->body, sizeof msg);
    if (!conn->pgrant || msg.grant != conn->pgrant || conn->hdr.xfer != conn->pxfer || conn->piov) {
        nxc__stream_conn_close(conn, "protocol: CANCEL for a grant this connection does not send");
        return;
    }
    xfer_t *x = conn->pnstripes > 1 ? xfer_find(conn->peer, conn->pxfer) : NULL;
    if (x) xfer_end(conn->t, conn->peer, x);
    nxc__grant_close(conn->t->base.c, conn, msg.grant, false);
    conn->pgrant = 0;
    nxc__stream_conn_close(conn, "the peer cancelled its read");
}

/* READ_DONE or WRITE_DONE: a direct access (shm) moved the whole op. */
static void on_direct_done(stream_conn_t *conn) {
    nxc__wire_read_done_t r;
    bool read = conn->hdr.type == NXC__WIRE_READ_DONE;
    if (conn->t->fl->inline_data || conn->hdr.body_len < sizeof r) {
        nxc__stream_conn_close(conn, "protocol: unexpected %s", read ? "READ_DONE" : "WRITE_DONE");
        return;
    }
    memcpy(&r, conn->body, sizeof r);
    if (r.key_len == 0 || r.key_len > NXC_KEY_MAX || conn->hdr.body_len != sizeof r + r.key_len) {
        nxc__stream_conn_close(conn, "protocol: bad %s", read ? "READ_DONE" : "WRITE_DONE");
        return;
    }
    char key[NXC_KEY_MAX + 1];
    body_text(conn, sizeof r, r.key_len, key);
    /* false: the op ended meanwhile (a reader's own check then failed; a
     * writer's claim held the end back until it was done) */
    nxc__complete_direct(conn->t->base.c, &conn->t->base, key, r.secret,
                         read ? NXC_OP_READABLE : NXC_OP_WRITABLE);
}

void nxc__stream_passive_dispatch(stream_conn_t *conn) {
    if (!conn->ready) {
        on_hello(conn);
        return;
    }
    switch (conn->hdr.type) {
    case NXC__WIRE_REQ:
        if (conn->pgrant) {
            nxc__stream_conn_close(conn, "protocol: REQ while a grant is open");
            return;
        }
        on_req(conn);
        break;
    case NXC__WIRE_DONE: on_done(conn); break;
    case NXC__WIRE_READ_DONE:
    case NXC__WIRE_WRITE_DONE: on_direct_done(conn); break;
    case NXC__WIRE_CANCEL: on_cancel(conn); break;
    default: nxc__stream_conn_close(conn, "protocol: unexpected frame type %u", conn->hdr.type);
    }
}

/* --- ops -------------------------------------------------------------------------------- */

nxc_status_t nxc__stream_section(stream_tp_t *t, nxc_op_t *op, nxc__md_section_t *sec,
                                 const char *conn_info) {
    size_t nbufs;
    nxc__op_local(op, &nbufs);
    sec->keys = calloc(nbufs, sizeof *sec->keys);
    if (!sec->keys) return nxc__err(NXC_ERR_NO_MEMORY, "%s: out of memory", t->name);
    snprintf(sec->name, sizeof sec->name, "%s", t->name);
    sec->conn = (nxc__bytes_t){(const uint8_t *)conn_info, (uint32_t)strlen(conn_info)};
    return NXC_OK;
}

void nxc__stream_drop_peer(nxc__tp_t *tp, void *grant_peer) {
    if (*(const int *)grant_peer == SRC_CONN) {
        nxc__stream_conn_close(grant_peer, "access revoked while the peer was still moving bytes");
        return;
    }
    /* a striped transfer's grant: cut every connection of that peer */
    for (stream_conn_t *conn = stream_of(tp)->conns; conn; conn = conn->next)
        if (conn->inbound && conn->peer == grant_peer)
            nxc__stream_conn_close(conn, "access revoked while the peer was still moving bytes");
}
