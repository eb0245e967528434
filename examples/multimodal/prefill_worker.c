/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The prefill worker: asks the encode worker for the embeddings of each
 * image and checks every byte it receives. It drives the demo: it sends the
 * requests, times them, prints one line per request and the summary, and
 * fails (exit 1) on a wrong byte, a failed op or a broken channel.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

typedef struct sample {
    double lat_us;  /* request sent .. data verified */
    double xfer_us; /* the active op: begin .. complete */
} sample_t;

typedef struct prefill {
    const demo_opts_t *o;
    nxc_connector_t *c;
    int fd;
    size_t count, bytes; /* embeddings: fp16 values, bytes */
    nxc_desc_t wdesc;    /* the write pattern's one reused landing buffer */
    double register_us;  /* pre-registering wdesc at start-up */
    double create_us;    /* sum over write requests of nxc_create_writable */
    int ncreate;
    sample_t *samples[2];
    int nsamples[2];
} prefill_t;

/* One request's result, for the line printer. */
typedef struct outcome {
    nxc_status_t st; /* of the op this side waited for */
    size_t bad;      /* offset of the first wrong byte, SIZE_MAX if none */
    char tp_active[32], tp_passive[32];
    sample_t s;
} outcome_t;

static const char *pattern_name(int p) {
    return p == DEMO_PATTERN_READ ? "read" : "write";
}

static void copy_transport(char *dst, size_t len, const char *name) {
    snprintf(dst, len, "%s", name ? name : "none");
}

static char *request_text(prefill_t *pf, int pattern, long id, const char *md) {
    return msg_build(md,
                     "\"type\":\"encode\",\"request_id\":%ld,\"pattern\":\"%s\","
                     "\"image_url\":\"demo://images/%ld.jpg\",\"tokens\":%zu,\"hidden\":%zu",
                     id, pattern_name(pattern), id, pf->o->tokens, pf->o->hidden);
}

/* The encoder's reply of type `want` to request `id`, or NULL after saying
 * what came instead (an "error" reply carries the encoder's reason). */
static char *check_reply(char *msg, long id, const char *want) {
    char type[16] = "", why[512] = "";
    long rid = -1;
    if (!msg) return NULL;
    msg_str(msg, "type", type, sizeof type);
    msg_long(msg, "request_id", &rid);
    if (!strcmp(type, want) && rid == id) return msg;
    if (!strcmp(type, "error") && msg_str(msg, "message", why, sizeof why) == 0)
        fprintf(stderr, "prefill: request %ld: the encode worker failed: %s\n", id, why);
    else
        fprintf(stderr, "prefill: request %ld: unexpected reply: %.200s\n", id, msg);
    free(msg);
    return NULL;
}

static char *expect_reply(prefill_t *pf, long id, const char *want) {
    return check_reply(chan_recv(pf->fd, demo_chan_timeout_ms(pf->o)), id, want);
}

/* Take the encoder's "done": its op's transport and, for writes, its
 * transfer time. */
static void take_done(const char *done, char *tp, size_t tp_len, sample_t *s) {
    long xfer = 0;
    if (msg_str(done, "transport", tp, tp_len) != 0) copy_transport(tp, tp_len, NULL);
    if (msg_long(done, "xfer_us", &xfer) == 0 && xfer > 0) s->xfer_us = (double)xfer;
}

static void report_op_failure(prefill_t *pf, long id, const char *what, nxc_status_t st,
                              nxc_op_t *op) {
    if (st == NXC_INPROGRESS)
        fprintf(stderr, "prefill: request %ld: %s did not complete within %d ms\n", id, what,
                pf->o->op_timeout_ms);
    else
        fprintf(stderr, "prefill: request %ld: %s: %s: %s\n", id, what, nxc_status_string(st),
                op ? nxc_op_message(op) : nxc_last_error());
}

/* Read the embeddings named by `md` into a fresh buffer and verify them. */
static void pull_embeddings(prefill_t *pf, long id, const char *md, size_t md_len, outcome_t *out) {
    /* A fresh buffer per request, like torch.empty() in a real worker. */
    uint16_t *buf = malloc(pf->bytes);
    nxc_desc_t d = {.ptr = buf, .size = pf->bytes, .device = {NXC_DEVICE_HOST, 0}};
    nxc_op_t *op = NULL;
    double t1 = demo_now_us();
    out->st = buf ? nxc_begin_read(pf->c, md, md_len, &d, 1, NULL, &op) : NXC_ERR_NO_MEMORY;
    if (out->st == NXC_OK) out->st = nxc_op_wait(op, pf->o->op_timeout_ms);
    out->s.xfer_us = demo_now_us() - t1;
    if (out->st != NXC_OK)
        report_op_failure(pf, id, op ? "read op" : "nxc_begin_read", out->st, op);
    out->bad = out->st == NXC_OK ? embed_verify(buf, pf->count, (uint64_t)id) : SIZE_MAX;
    copy_transport(out->tp_active, sizeof out->tp_active, nxc_op_transport(op));
    nxc_op_release(op); /* cancels a read still running, so buf is ours again */
    free(buf);
}

/* Pattern 1: the encoder publishes readable embeddings; we pull them. */
static int read_request(prefill_t *pf, long id, outcome_t *out) {
    double t0 = demo_now_us();
    char *req = request_text(pf, DEMO_PATTERN_READ, id, NULL);
    int sent = req && chan_send(pf->fd, req) == 0;
    free(req);
    char *reply = sent ? expect_reply(pf, id, "embeddings") : NULL;
    size_t md_len = 0;
    const char *md = reply ? msg_metadata(reply, &md_len) : NULL;
    if (!md) {
        free(reply);
        return -1;
    }
    pull_embeddings(pf, id, md, md_len, out);
    out->s.lat_us = demo_now_us() - t0;
    free(reply);

    /* Tell the encoder it may free its copy; it answers with its transport. */
    char ack[96];
    snprintf(ack, sizeof ack, "{\"type\":\"verified\",\"request_id\":%ld,\"ok\":%d}", id,
             out->st == NXC_OK && out->bad == SIZE_MAX);
    char *done = chan_send(pf->fd, ack) == 0 ? expect_reply(pf, id, "done") : NULL;
    if (!done) return -1;
    take_done(done, out->tp_passive, sizeof out->tp_passive, &(sample_t){0});
    free(done);
    return 0;
}

/* Wait for the writable op, but also watch the channel: if the encoder
 * cannot write it says so there, and waiting out the op's deadline would
 * only delay the failure. Returns the op's state; *reply_p gets the
 * encoder's message if one arrived. */
static nxc_status_t wait_writable(prefill_t *pf, nxc_op_t *op, char **reply_p) {
    struct pollfd p[2] = {{.fd = nxc_op_fd(op), .events = POLLIN},
                          {.fd = pf->fd, .events = POLLIN}};
    double end = demo_now_us() + pf->o->op_timeout_ms * 1e3;
    while (p[0].fd >= 0 && !*reply_p) {
        int left_ms = (int)((end - demo_now_us()) / 1e3);
        int n = left_ms > 0 ? poll(p, 2, left_ms) : 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || p[0].revents) break;
        if (!p[1].revents) continue;
        *reply_p = chan_recv(pf->fd, demo_chan_timeout_ms(pf->o));
        /* A broken channel or an error report: no write is coming. */
        if (!*reply_p || !strstr(*reply_p, "\"type\":\"done\"")) return nxc_op_wait(op, 0);
    }
    /* The encoder's "done" can overtake our op's completion notice. */
    int left_ms = (int)((end - demo_now_us()) / 1e3);
    return nxc_op_wait(op, left_ms > 0 ? left_ms : 0);
}

/* Offer the reused buffer as writable and send its metadata with the
 * request; NULL op (and a printed error) if it could not be created. */
static nxc_op_t *offer_writable(prefill_t *pf, long id) {
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = pf->o->op_timeout_ms};
    nxc_op_t *op = NULL;
    double t = demo_now_us();
    nxc_status_t st = nxc_create_writable(pf->c, &pf->wdesc, 1, &p, &op);
    pf->create_us += demo_now_us() - t;
    pf->ncreate++;
    if (st != NXC_OK) {
        report_op_failure(pf, id, "nxc_create_writable", st, NULL);
        return NULL;
    }
    const char *md;
    nxc_op_metadata(op, &md, NULL);
    char *req = request_text(pf, DEMO_PATTERN_WRITE, id, md);
    int sent = req && chan_send(pf->fd, req) == 0;
    free(req);
    if (!sent) nxc_op_release(op);
    return sent ? op : NULL;
}

/* Pattern 2: we offer our buffer writable; the encoder pushes into it. */
static int write_request(prefill_t *pf, long id, outcome_t *out) {
    double t0 = demo_now_us();
    nxc_op_t *op = offer_writable(pf, id);
    if (!op) return -1;
    char *reply = NULL;
    out->st = wait_writable(pf, op, &reply);
    /* Still in progress with a reply in hand: the reply says why. */
    if (out->st != NXC_OK && !(out->st == NXC_INPROGRESS && reply))
        report_op_failure(pf, id, "writable op", out->st, op);
    out->bad = out->st == NXC_OK ? embed_verify(pf->wdesc.ptr, pf->count, (uint64_t)id) : SIZE_MAX;
    out->s.lat_us = demo_now_us() - t0;
    copy_transport(out->tp_passive, sizeof out->tp_passive, nxc_op_transport(op));
    nxc_op_release(op); /* a late write can no longer land after this */
    if (!reply) reply = chan_recv(pf->fd, demo_chan_timeout_ms(pf->o));
    reply = check_reply(reply, id, "done");
    if (!reply) return -1;
    take_done(reply, out->tp_active, sizeof out->tp_active, &out->s);
    free(reply);
    return 0;
}

/* Both ops must name the same transport, and it must be one we allowed. */
static int transport_ok(const prefill_t *pf, const outcome_t *out) {
    if (strcmp(out->tp_active, out->tp_passive) != 0 || !strcmp(out->tp_active, "none")) return 0;
    if (!pf->o->transport) return 1;
    char allowed[256];
    snprintf(allowed, sizeof allowed, ",%s,", pf->o->transport);
    char want[40];
    snprintf(want, sizeof want, ",%s,", out->tp_active);
    return strstr(allowed, want) != NULL;
}

static void print_line(const prefill_t *pf, int pattern, long id, const outcome_t *out) {
    printf("%-5s %4ld %9zu B %9.0f us %9.0f us %7.2f GB/s %7.2f GB/s  %s -> %s\n",
           pattern_name(pattern), id, pf->bytes, out->s.lat_us, out->s.xfer_us,
           pf->bytes / out->s.lat_us / 1e3, pf->bytes / out->s.xfer_us / 1e3, out->tp_active,
           out->tp_passive);
}

/* Run one request and judge it: 0 if every byte arrived intact. */
static int run_request(prefill_t *pf, int pattern, long id) {
    outcome_t out = {.st = NXC_ERR_INVALID_STATE, .bad = SIZE_MAX};
    int rc =
        pattern == DEMO_PATTERN_READ ? read_request(pf, id, &out) : write_request(pf, id, &out);
    if (rc != 0) return -1;
    if (out.st != NXC_OK) return -1;
    print_line(pf, pattern, id, &out);
    if (out.bad != SIZE_MAX) {
        fprintf(stderr, "prefill: request %ld: byte %zu of %zu differs from what was encoded\n", id,
                out.bad, pf->bytes);
        return -1;
    }
    if (!transport_ok(pf, &out)) {
        fprintf(stderr, "prefill: request %ld: transports disagree or were not allowed: %s/%s\n",
                id, out.tp_active, out.tp_passive);
        return -1;
    }
    int k = pattern - 1;
    pf->samples[k][pf->nsamples[k]++] = out.s;
    return 0;
}

static int by_latency(const void *a, const void *b) {
    double x = ((const sample_t *)a)->lat_us, y = ((const sample_t *)b)->lat_us;
    return (x > y) - (x < y);
}

static void print_summary(prefill_t *pf) {
    for (int k = 0; k < 2; k++) {
        int n = pf->nsamples[k];
        if (!(pf->o->patterns & (k + 1)) || n == 0) continue;
        double e2e = 0, xfer = 0;
        for (int i = 0; i < n; i++) {
            e2e += pf->bytes / pf->samples[k][i].lat_us / 1e3;
            xfer += pf->bytes / pf->samples[k][i].xfer_us / 1e3;
        }
        qsort(pf->samples[k], (size_t)n, sizeof(sample_t), by_latency);
        double med = n % 2 ? pf->samples[k][n / 2].lat_us
                           : (pf->samples[k][n / 2 - 1].lat_us + pf->samples[k][n / 2].lat_us) / 2;
        printf("summary %-5s: %d/%d requests verified, median latency %.0f us, mean %.2f GB/s "
               "end-to-end, mean %.2f GB/s transfer\n",
               pattern_name(k + 1), n, pf->o->requests, med, e2e / n, xfer / n);
    }
    if (pf->ncreate > 0)
        printf("summary write: nxc_create_writable on the reused buffer: %.0f us to pre-register, "
               "then %.0f us per request (registration cache)\n",
               pf->register_us, pf->create_us / pf->ncreate);
}

/* The write pattern's landing buffer: allocated, touched and registered
 * once, then offered writable again for every request. Creating and
 * releasing a writable is how a relaxed-registration API pre-registers:
 * the registration stays in the connector's cache for the next op. */
static int setup_write_buffer(prefill_t *pf) {
    void *buf = aligned_alloc(4096, (pf->bytes + 4095) / 4096 * 4096);
    if (!buf) return -1;
    memset(buf, 0, pf->bytes); /* fault the pages in now, not during a request */
    pf->wdesc = (nxc_desc_t){.ptr = buf, .size = pf->bytes, .device = {NXC_DEVICE_HOST, 0}};
    nxc_op_t *op = NULL;
    double t = demo_now_us();
    nxc_status_t st = nxc_create_writable(pf->c, &pf->wdesc, 1, NULL, &op);
    pf->register_us = demo_now_us() - t;
    nxc_op_release(op);
    if (st != NXC_OK) report_op_failure(pf, -1, "nxc_create_writable", st, NULL);
    return st == NXC_OK ? 0 : -1;
}

/* The encoder's greeting: proves it is up, and names its connector. */
static int meet_encoder(prefill_t *pf) {
    char *hello = chan_recv(pf->fd, demo_chan_timeout_ms(pf->o));
    char name[NXC_NAME_MAX + 1] = "?", tps[128] = "?";
    if (!hello || !strstr(hello, "\"type\":\"hello\"")) {
        fprintf(stderr, "prefill: the encode worker did not say hello\n");
        free(hello);
        return -1;
    }
    msg_str(hello, "name", name, sizeof name);
    msg_str(hello, "transports", tps, sizeof tps);
    free(hello);
    printf("encode worker '%s' (transports %s) <-> prefill worker '%s' (transports %s)\n", name,
           tps, nxc_connector_name(pf->c), nxc_connector_transports(pf->c));
    printf("%d request(s) per pattern, embeddings %zu x %zu fp16 = %zu bytes (%.2f MiB)\n",
           pf->o->requests, pf->o->tokens, pf->o->hidden, pf->bytes, pf->bytes / 1048576.0);
    /* two times, then the bandwidth each gives: end to end, and the
     * transfer alone */
    printf("%-5s %4s %11s %12s %12s %12s %12s  %s\n", "pat", "req", "bytes", "latency", "xfer time",
           "e2e rate", "xfer rate", "transport active -> passive");
    return 0;
}

/* All requests, read pattern first; request ids are unique across patterns
 * so a stale buffer can never pass verification. */
static int run_all(prefill_t *pf) {
    long id = 0;
    for (int pattern = DEMO_PATTERN_READ; pattern <= DEMO_PATTERN_WRITE; pattern <<= 1) {
        if (!(pf->o->patterns & pattern)) continue;
        if (pattern == DEMO_PATTERN_WRITE && setup_write_buffer(pf) != 0) return -1;
        for (int i = 0; i < pf->o->requests; i++)
            if (run_request(pf, pattern, id++) != 0) return -1;
    }
    return 0;
}

int prefill_worker_main(const demo_opts_t *o) {
    prefill_t pf = {.o = o, .fd = o->fd, .count = o->tokens * o->hidden};
    pf.bytes = demo_bytes(o->tokens, o->hidden);
    pf.c = demo_connector("prefill", o->transport);
    pf.samples[0] = calloc((size_t)o->requests, sizeof(sample_t));
    pf.samples[1] = calloc((size_t)o->requests, sizeof(sample_t));
    int rc = pf.c && pf.samples[0] && pf.samples[1] ? meet_encoder(&pf) : -1;
    if (rc == 0) rc = run_all(&pf);
    /* Let the encoder finish cleanly, unless it is already gone. */
    struct pollfd peer = {.fd = pf.fd, .events = POLLOUT};
    if (poll(&peer, 1, 0) == 1 && !(peer.revents & (POLLHUP | POLLERR)))
        chan_send(pf.fd, "{\"type\":\"shutdown\"}");
    if (rc == 0) print_summary(&pf);
    nxc_connector_destroy(pf.c); /* before freeing wdesc: no op may still use it */
    free(pf.wdesc.ptr);
    free(pf.samples[0]);
    free(pf.samples[1]);
    return rc == 0 ? 0 : 1;
}
