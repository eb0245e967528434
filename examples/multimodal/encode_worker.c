/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The encode worker: turns "images" into embeddings and hands them to the
 * prefill worker through nxc. Per request, depending on the pattern:
 *   read:  register the embeddings readable, reply with the metadata, and
 *          keep them alive until the prefill worker has pulled them;
 *   write: push the embeddings into the writable buffer whose metadata came
 *          with the request.
 * Every request gets exactly one reply ("done" or "error"), so the two
 * workers stay in lock-step on the channel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

typedef struct encode_req {
    long id;
    char pattern[8];
    long tokens, hidden;
    const char *msg; /* the whole request (write: carries the metadata) */
} encode_req_t;

typedef struct encoder {
    const demo_opts_t *o;
    nxc_connector_t *c;
    int fd;
} encoder_t;

/* Tell the prefill worker why request `id` failed; -1 if the channel broke. */
static int reply_error(encoder_t *e, long id, const char *what, nxc_status_t st,
                       const char *detail) {
    char text[512];
    snprintf(text, sizeof text, "%s: %s: %s", what, nxc_status_string(st), detail);
    msg_sanitize(text);
    fprintf(stderr, "encode: request %ld: %s\n", id, text);
    char *msg =
        msg_build(NULL, "\"type\":\"error\",\"request_id\":%ld,\"message\":\"%s\"", id, text);
    int rc = msg && chan_send(e->fd, msg) == 0 ? 1 : -1;
    free(msg);
    return rc;
}

static int reply_done(encoder_t *e, long id, const char *transport, double xfer_us) {
    char *msg = msg_build(NULL,
                          "\"type\":\"done\",\"request_id\":%ld,\"transport\":\"%s\","
                          "\"xfer_us\":%ld",
                          id, transport ? transport : "none", (long)xfer_us);
    int rc = msg && chan_send(e->fd, msg) == 0 ? 0 : -1;
    free(msg);
    return rc;
}

/* "Run the vision model": a fresh buffer per request, as a real encoder
 * would allocate a fresh output tensor. */
static uint16_t *encode_image(const encode_req_t *r, nxc_desc_t *d) {
    size_t count = (size_t)r->tokens * (size_t)r->hidden;
    uint16_t *emb = malloc(count * sizeof *emb);
    if (!emb) return NULL;
    embed_fill(emb, count, (uint64_t)r->id);
    *d = (nxc_desc_t){.ptr = emb, .size = count * sizeof *emb, .device = {NXC_DEVICE_HOST, 0}};
    return emb;
}

/* Publish the embeddings readable, then wait until the peer has read them:
 * the buffer must outlive the transfer, and completing the passive op is
 * how we learn that it is safe to free. */
static int publish_readable(encoder_t *e, const encode_req_t *r, nxc_desc_t *d) {
    /* A deadline, so a prefill worker that never reads cannot pin our
     * memory (and this request) forever. */
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = e->o->op_timeout_ms};
    nxc_op_t *op = NULL;
    nxc_status_t st = nxc_create_readable(e->c, d, 1, &p, &op);
    if (st != NXC_OK) return reply_error(e, r->id, "nxc_create_readable", st, nxc_last_error());
    const char *md;
    nxc_op_metadata(op, &md, NULL);
    char *msg = msg_build(md, "\"type\":\"embeddings\",\"request_id\":%ld", r->id);
    int rc = msg && chan_send(e->fd, msg) == 0 ? 0 : -1;
    free(msg);
    char *ack = rc == 0 ? chan_recv(e->fd, demo_chan_timeout_ms(e->o)) : NULL;
    long ok = 0;
    if (!ack || msg_long(ack, "ok", &ok) != 0) rc = -1;
    free(ack);
    if (rc == 0 && ok) {
        st = nxc_op_wait(op, e->o->op_timeout_ms);
        if (st != NXC_OK) rc = reply_error(e, r->id, "readable op", st, nxc_op_message(op));
    }
    if (rc == 0) rc = reply_done(e, r->id, nxc_op_transport(op), 0);
    nxc_op_release(op); /* revokes the peer's access before we free */
    return rc;
}

static int push_write(encoder_t *e, const encode_req_t *r, nxc_desc_t *d) {
    size_t md_len;
    const char *md = msg_metadata(r->msg, &md_len);
    if (!md) return reply_error(e, r->id, "request", NXC_ERR_INVALID_PARAM, "no metadata");
    nxc_op_t *op = NULL;
    double t0 = demo_now_us();
    nxc_status_t st = nxc_begin_write(e->c, d, 1, md, md_len, NULL, &op);
    if (st != NXC_OK) return reply_error(e, r->id, "nxc_begin_write", st, nxc_last_error());
    st = nxc_op_wait(op, e->o->op_timeout_ms);
    double xfer_us = demo_now_us() - t0;
    int rc = st == NXC_OK ? reply_done(e, r->id, nxc_op_transport(op), xfer_us)
                          : reply_error(e, r->id, "write op", st, nxc_op_message(op));
    nxc_op_release(op); /* cancels it if still running, so the free below is safe */
    return rc;
}

/* 0: served; 1: failed but the peer was told; -1: the channel is broken. */
static int serve(encoder_t *e, const encode_req_t *r) {
    nxc_desc_t d;
    uint16_t *emb = encode_image(r, &d);
    if (!emb) return reply_error(e, r->id, "encode", NXC_ERR_NO_MEMORY, "malloc failed");
    int rc = !strcmp(r->pattern, "read") ? publish_readable(e, r, &d) : push_write(e, r, &d);
    free(emb);
    return rc;
}

static int parse_request(const char *msg, encode_req_t *r) {
    char type[16];
    r->msg = msg;
    if (msg_str(msg, "type", type, sizeof type) != 0 || strcmp(type, "encode") != 0 ||
        msg_long(msg, "request_id", &r->id) != 0 ||
        msg_str(msg, "pattern", r->pattern, sizeof r->pattern) != 0 ||
        msg_long(msg, "tokens", &r->tokens) != 0 || msg_long(msg, "hidden", &r->hidden) != 0 ||
        r->tokens <= 0 || r->hidden <= 0)
        return -1;
    return strcmp(r->pattern, "read") && strcmp(r->pattern, "write") ? -1 : 0;
}

static int say_hello(encoder_t *e) {
    char *msg = msg_build(NULL, "\"type\":\"hello\",\"name\":\"%s\",\"transports\":\"%s\"",
                          nxc_connector_name(e->c), nxc_connector_transports(e->c));
    int rc = msg ? chan_send(e->fd, msg) : -1;
    free(msg);
    return rc;
}

int encode_worker_main(const demo_opts_t *o) {
    encoder_t e = {.o = o, .c = demo_connector("encode", o->transport), .fd = o->fd};
    if (!e.c || say_hello(&e) != 0) {
        nxc_connector_destroy(e.c);
        return 1;
    }
    int failures = 0;
    for (;;) {
        /* Between requests the prefill worker may be verifying 4.5 MiB. */
        char *msg = chan_recv(e.fd, demo_chan_timeout_ms(o));
        encode_req_t r;
        int rc = -1;
        if (msg && strstr(msg, "\"type\":\"shutdown\"")) {
            free(msg);
            break;
        }
        if (msg && parse_request(msg, &r) == 0)
            rc = serve(&e, &r);
        else if (msg)
            fprintf(stderr, "encode: malformed request: %.200s\n", msg);
        free(msg);
        if (rc != 0) failures++;
        if (rc < 0) break;
    }
    nxc_connector_destroy(e.c);
    return failures ? 1 : 0;
}
