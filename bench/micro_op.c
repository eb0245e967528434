/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fixed per-op costs of nxc, in one process, single thread:
 *
 *   nxc-micro-op [ITERS [TRANSPORT [NDESC [LIVE [MEM]]]]]
 *
 *   create   nxc_create_readable of one 4 KiB descriptor + nxc_op_metadata
 *            (the text a peer needs), registered memory, no peer involved
 *   release  nxc_op_release of that readable (nobody read it)
 *   create_timeout  create as above with a 60 s deadline (a server's ops
 *            have one): the connector's progress thread sleeps on a timer
 *            for the earliest deadline, and must not be woken per op
 *   begin    nxc_begin_read of that metadata by a second connector in this
 *            process, up to the op's completion (shm reads a reachable
 *            readable inside the call), then its release
 *
 * Each is timed over ITERS (default 20000) after 1000 untimed warm-up
 * rounds; the connectors are created once, outside the timing. TRANSPORT
 * (default shm) is what both connectors run. NDESC (default 1) splits the
 * op into that many 4 KiB descriptors, side by side in one buffer (issue
 * 12's "1024 descriptors at the speed of one"). Prints one JSON object per
 * measure: {"probe":"micro-op","what","transport","ndesc","iters","us"} with the
 * mean microseconds per call. Issue 12's targets: create and begin of one
 * descriptor at most 5 us each.
 *
 *   begin_live  with LIVE > 0: begin as above while the owner keeps LIVE
 *            other readables open, as a server with many requests in
 *            flight does (shm's direct access has a record per open op)
 *
 * MEM "alloc" takes the owner's buffer from nxc_mem_alloc() (shm then
 * copies with memcpy through a mapping, no system call); default "heap".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nxc/nxc.h>

#define BLOCK 4096

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void check(nxc_status_t st, const char *what) {
    if (st == NXC_OK) return;
    fprintf(stderr, "nxc-micro-op: %s: %s (%s)\n", what, nxc_status_string(st), nxc_last_error());
    exit(1);
}

static nxc_connector_t *connector(const char *name, const char *transport) {
    nxc_connector_params_t p = {.field_mask =
                                    NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS,
                                .name = name,
                                .transports = transport};
    nxc_connector_t *c = NULL;
    check(nxc_connector_create(&p, &c), "connector_create");
    return c;
}

static void report(const char *what, const char *transport, int ndesc, int iters, uint64_t ns) {
    printf("{\"probe\":\"micro-op\",\"what\":\"%s\",\"transport\":\"%s\",\"ndesc\":%d,"
           "\"iters\":%d,\"us\":%.3f}\n",
           what, transport, ndesc, iters, (double)ns / 1000.0 / iters);
}

/* One round: create a readable and its metadata, let `reader` (if any)
 * read it, release both; the three spans are added to `ns`. */
static void round_trip(nxc_connector_t *owner, nxc_connector_t *reader, nxc_desc_t *src,
                       nxc_desc_t *dst, size_t ndesc, const nxc_op_params_t *params,
                       uint64_t ns[3]) {
    uint64_t t0 = now_ns();
    nxc_op_t *readable = NULL, *read = NULL;
    const char *md = NULL;
    size_t len = 0;
    check(nxc_create_readable(owner, src, ndesc, params, &readable), "create_readable");
    check(nxc_op_metadata(readable, &md, &len), "op_metadata");
    uint64_t t1 = now_ns();
    if (reader) {
        check(nxc_begin_read(reader, md, len, dst, ndesc, NULL, &read), "begin_read");
        check(nxc_op_wait(read, 10000), "op_wait");
        nxc_op_release(read);
    }
    uint64_t t2 = now_ns();
    if (reader) check(nxc_op_wait(readable, 10000), "op_wait (readable)");
    uint64_t t3 = now_ns();
    nxc_op_release(readable);
    uint64_t t4 = now_ns();
    ns[0] += t1 - t0;
    ns[1] += t2 - t1;
    ns[2] += t4 - t3;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    const char *transport = argc > 2 ? argv[2] : "shm";
    int ndesc = argc > 3 ? atoi(argv[3]) : 1;
    int live = argc > 4 ? atoi(argv[4]) : 0;
    const char *mem = argc > 5 ? argv[5] : "heap";
    if (iters < 1) iters = 1;
    if (ndesc < 1 || ndesc > 4096 || live < 0 || live > 100000 ||
        (strcmp(mem, "heap") && strcmp(mem, "alloc"))) {
        fprintf(stderr, "nxc-micro-op: NDESC must be 1..4096, LIVE 0..100000, MEM heap or alloc\n");
        return 2;
    }
    nxc_connector_t *owner = connector("micro-owner", transport);
    nxc_connector_t *reader = connector("micro-reader", transport);
    size_t bytes = (size_t)BLOCK * (size_t)ndesc;
    char *src_buf = NULL, *dst_buf = aligned_alloc(BLOCK, bytes);
    nxc_mem_t *m1 = NULL, *m2 = NULL;
    if (!strcmp(mem, "alloc"))
        check(nxc_mem_alloc(owner, bytes, NULL, (void **)&src_buf, &m1), "mem_alloc");
    else
        src_buf = aligned_alloc(BLOCK, bytes);
    nxc_desc_t *src = calloc((size_t)ndesc, sizeof *src), *dst = calloc((size_t)ndesc, sizeof *dst);
    if (!src_buf || !dst_buf || !src || !dst) {
        fprintf(stderr, "nxc-micro-op: out of memory\n");
        return 1;
    }
    memset(src_buf, 0x5a, bytes);
    memset(dst_buf, 0, bytes);
    for (int i = 0; i < ndesc; i++) {
        src[i] = (nxc_desc_t){src_buf + (size_t)i * BLOCK, BLOCK, {NXC_DEVICE_HOST, 0}};
        dst[i] = (nxc_desc_t){dst_buf + (size_t)i * BLOCK, BLOCK, {NXC_DEVICE_HOST, 0}};
    }
    /* as a server with buffer pools would: the whole buffers, registered once */
    nxc_desc_t src_all = {src_buf, bytes, {NXC_DEVICE_HOST, 0}};
    nxc_desc_t dst_all = {dst_buf, bytes, {NXC_DEVICE_HOST, 0}};
    if (!m1) check(nxc_mem_register(owner, &src_all, 1, NULL, &m1), "mem_register");
    check(nxc_mem_register(reader, &dst_all, 1, NULL, &m2), "mem_register");

    size_t n = (size_t)ndesc;
    uint64_t ns[3] = {0};
    int warmup = iters < 1000 ? iters : 1000;
    for (int i = 0; i < warmup; i++)
        round_trip(owner, reader, src, dst, n, NULL, ns);
    memset(ns, 0, sizeof ns);
    for (int i = 0; i < iters; i++) /* create and release alone */
        round_trip(owner, NULL, src, dst, n, NULL, ns);
    report("create", transport, ndesc, iters, ns[0]);
    report("release", transport, ndesc, iters, ns[2]);
    nxc_op_params_t due = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 60000};
    memset(ns, 0, sizeof ns);
    for (int i = 0; i < iters; i++)
        round_trip(owner, NULL, src, dst, n, &due, ns);
    report("create_timeout", transport, ndesc, iters, ns[0]);
    memset(ns, 0, sizeof ns);
    for (int i = 0; i < iters; i++)
        round_trip(owner, reader, src, dst, n, NULL, ns);
    if (memcmp(src_buf, dst_buf, bytes) != 0) {
        fprintf(stderr, "nxc-micro-op: the bytes read differ from the source\n");
        return 1;
    }
    report("begin", transport, ndesc, iters, ns[1]);
    if (live > 0) {
        nxc_op_t **open = calloc((size_t)live, sizeof *open);
        if (!open) {
            fprintf(stderr, "nxc-micro-op: out of memory\n");
            return 1;
        }
        for (int i = 0; i < live; i++)
            check(nxc_create_readable(owner, src, n, NULL, &open[i]), "create_readable (live)");
        memset(ns, 0, sizeof ns);
        for (int i = 0; i < iters; i++)
            round_trip(owner, reader, src, dst, n, NULL, ns);
        report("begin_live", transport, ndesc, iters, ns[1]);
        for (int i = 0; i < live; i++)
            nxc_op_release(open[i]);
        free(open);
    }
    nxc_mem_deregister(m1); /* and unmapped, if from nxc_mem_alloc() */
    nxc_mem_deregister(m2);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
    free(src);
    free(dst);
    if (strcmp(mem, "alloc")) free(src_buf);
    free(dst_buf);
    return 0;
}
