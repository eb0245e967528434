/* SPDX-License-Identifier: Apache-2.0 */
/* Conformance, data movement: the four ops across real processes, 1 to 1024
 * descriptors, scatter/gather, 1 B to 256 MiB, unaligned addresses,
 * loopback, several threads, cancel mid-transfer. Every byte is verified.
 * CMake runs it once per transport (NXT_TRANSPORT=ucx|shm|tcp). */
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "nxt.h"

#define MAX_DESCS 1024

/* Cut [buf, buf+size) into n descriptors of uneven sizes (n <= size). */
static void split(char *buf, size_t size, size_t n, nxc_desc_t *d) {
    size_t base = size / n, off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = i + 1 == n ? size - off : base - (i % 3 == 1 && base > 1);
        d[i] = nxt_desc(buf + off, len);
        off += len;
    }
}

typedef struct passive_args {
    int writable;
    size_t size, ndesc, offset;
    uint64_t seed;
} passive_args_t;

/* Peer: expose `size` bytes as readable (pattern `seed`) or writable, send
 * the metadata, wait for the peer's notification, verify, say "done". */
static void passive_peer(int fd, void *arg) {
    passive_args_t *pa = arg;
    nxc_connector_t *c = nxt_connector("passive", 1);
    char *mem = nxt_alloc(pa->size + pa->offset), *buf = mem + pa->offset;
    if (!pa->writable) nxt_fill(buf, pa->size, pa->seed);
    nxc_desc_t *d = calloc(pa->ndesc, sizeof *d);
    split(buf, pa->size, pa->ndesc, d);
    nxc_op_t *op;
    if (pa->writable)
        NXT_PASS(nxc_create_writable(c, d, pa->ndesc, NULL, &op));
    else
        NXT_PASS(nxc_create_readable(c, d, pa->ndesc, NULL, &op));
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_INITIALIZED);
    NXT_CHECK(nxc_op_transport(op) == NULL);
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(op, &md, &len));
    nxt_send(fd, md, len);
    NXT_PASS(nxc_op_wait(op, 240000));
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_COMPLETE);
    NXT_CHECK(nxc_op_transport(op) != NULL);
    if (pa->writable)
        NXT_EQ_INT(nxt_verify(buf, pa->size, pa->seed), SIZE_MAX);
    else
        NXT_EQ_INT(nxt_verify(buf, pa->size, pa->seed), SIZE_MAX); /* untouched */
    nxt_send_str(fd, "done");
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(d);
    free(mem);
}

/* One transfer between two processes: the peer is passive, we are active. */
static void transfer(int write, size_t size, size_t npassive, size_t nactive, size_t offset) {
    nxt_chan_t ch;
    nxt_chan_init(&ch);
    uint64_t seed = size * 31 + npassive * 7 + nactive;
    passive_args_t pa = {write, size, npassive, offset, seed};
    pid_t pid = nxt_spawn(&ch, passive_peer, &pa);
    int fd = nxt_chan_parent(&ch);
    nxc_connector_t *c = nxt_connector("active", 1);
    size_t mdlen;
    char *md = nxt_recv(fd, &mdlen, 120000);
    char *mem = nxt_alloc(size + offset), *buf = mem + offset;
    if (write) nxt_fill(buf, size, seed);
    nxc_desc_t *d = calloc(nactive, sizeof *d);
    split(buf, size, nactive, d);
    nxc_op_t *op;
    if (write)
        NXT_PASS(nxc_begin_write(c, d, nactive, md, mdlen, NULL, &op));
    else
        NXT_PASS(nxc_begin_read(c, md, mdlen, d, nactive, NULL, &op));
    NXT_EQ_INT(nxc_op_kind(op), write ? NXC_OP_WRITE : NXC_OP_READ);
    NXT_EQ_INT(nxc_op_size(op), size);
    NXT_PASS(nxc_op_wait(op, 240000));
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_COMPLETE);
    NXT_EQ_INT(nxc_op_result(op), NXC_OK);
    NXT_EQ_STR(nxc_op_message(op), "");
    if (nxt_transport()) NXT_EQ_STR(nxc_op_transport(op), nxt_transport());
    NXT_EQ_INT(nxt_verify(buf, size, seed), SIZE_MAX);
    free(nxt_recv(fd, NULL, 120000));
    nxc_op_release(op);
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(d);
    free(md);
    free(mem);
}

static void test_read_1(void) {
    transfer(0, 1 << 20, 1, 1, 0);
}
static void test_write_1(void) {
    transfer(1, 1 << 20, 1, 1, 0);
}
static void test_read_many(void) {
    transfer(0, 4 << 20, 64, 64, 0);
}
static void test_write_many(void) {
    transfer(1, 4 << 20, 64, 64, 0);
}
static void test_read_1024(void) {
    transfer(0, 1 << 20, 1024, 1024, 0);
}
static void test_write_1024(void) {
    transfer(1, 1 << 20, 1024, 1024, 0);
}
/* The example: local 1 x 1 MiB against remote 4 x 256 KiB. */
static void test_gather_read(void) {
    transfer(0, 1 << 20, 4, 1, 0);
}
static void test_scatter_read(void) {
    transfer(0, 1 << 20, 1, 4, 0);
}
static void test_gather_write(void) {
    transfer(1, 1 << 20, 4, 1, 0);
}
static void test_uneven_sg(void) {
    transfer(0, (1 << 20) + 13, 7, 11, 0);
}
static void test_tiny(void) {
    transfer(0, 1, 1, 1, 0);
}
static void test_unaligned(void) {
    transfer(1, 100003, 3, 5, 3);
}
/* NXC_DESCS_MAX local descriptors against 3 remote ones whose boundaries
 * fall inside local ones: the plan has more segments (65,537) than a list
 * may have descriptors, and every transport must move them. */
static void test_many_segments_read(void) {
    transfer(0, 3 * NXC_DESCS_MAX, 3, NXC_DESCS_MAX, 0);
}
static void test_many_segments_write(void) {
    transfer(1, 3 * NXC_DESCS_MAX, 3, NXC_DESCS_MAX, 0);
}
/* The large sizes scale in slow builds (nxt_size), no lower than 16 MiB:
 * tcp still stripes them (8 MiB or more). */
static void test_large(void) {
    transfer(0, nxt_size(64u << 20, 16u << 20), 2, 3, 0);
}
static void test_read_256m(void) {
    transfer(0, nxt_size(256u << 20, 16u << 20), 1, 1, 0);
}
static void test_write_256m(void) {
    transfer(1, nxt_size(256u << 20, 16u << 20), 3, 1, 0);
}

/* A connector reading and writing its own memory (loopback). */
static void test_loopback(void) {
    nxc_connector_t *c = nxt_connector("self", 1);
    size_t size = 1 << 20;
    char *src = nxt_alloc(size), *dst = nxt_alloc(size);
    nxt_fill(src, size, 5);
    nxc_desc_t s = nxt_desc(src, size), dd[4];
    split(dst, size, 4, dd);
    nxc_op_t *readable, *read;
    NXT_PASS(nxc_create_readable(c, &s, 1, NULL, &readable));
    const char *md;
    NXT_PASS(nxc_op_metadata(readable, &md, NULL));
    NXT_PASS(nxc_begin_read(c, md, 0, dd, 4, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 30000));
    NXT_PASS(nxc_op_wait(readable, 30000));
    NXT_EQ_INT(nxt_verify(dst, size, 5), SIZE_MAX);
    nxc_op_release(read);
    nxc_op_release(readable);

    /* and a write into ourselves */
    nxc_op_t *writable, *write;
    memset(dst, 0, size);
    NXT_PASS(nxc_create_writable(c, dd, 4, NULL, &writable));
    NXT_PASS(nxc_op_metadata(writable, &md, NULL));
    NXT_PASS(nxc_begin_write(c, &s, 1, md, 0, NULL, &write));
    NXT_PASS(nxc_op_wait(write, 30000));
    NXT_PASS(nxc_op_wait(writable, 30000));
    NXT_EQ_INT(nxt_verify(dst, size, 5), SIZE_MAX);
    nxc_op_release(write);
    nxc_op_release(writable);
    nxc_connector_destroy(c);
    free(src);
    free(dst);
}

/* Notifications are matched by key and consumed: completing one op leaves
 * another op of the same connector waiting. */
static void test_notification_per_key(void) {
    nxc_connector_t *c = nxt_connector("keys", 1);
    char a[4096], b[4096], dst[4096];
    nxt_fill(a, sizeof a, 1);
    nxt_fill(b, sizeof b, 2);
    nxc_desc_t da = nxt_desc(a, sizeof a), db = nxt_desc(b, sizeof b), dd = nxt_desc(dst, 4096);
    nxc_op_t *ra, *rb, *read;
    NXT_PASS(nxc_create_readable(c, &da, 1, NULL, &ra));
    NXT_PASS(nxc_create_readable(c, &db, 1, NULL, &rb));
    NXT_CHECK(strcmp(nxc_op_notification_key(ra), nxc_op_notification_key(rb)) != 0);
    const char *md;
    NXT_PASS(nxc_op_metadata(rb, &md, NULL));
    NXT_PASS(nxc_begin_read(c, md, 0, &dd, 1, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 30000));
    NXT_PASS(nxc_op_wait(rb, 30000));
    NXT_EQ_INT(nxt_verify(dst, sizeof dst, 2), SIZE_MAX);
    NXT_EQ_INT(nxc_op_wait(ra, 200), NXC_INPROGRESS);
    NXT_EQ_INT(nxc_op_status(ra), NXC_OP_INITIALIZED);
    /* A second read of a completed readable is refused: completion happens once. */
    nxc_op_t *again;
    NXT_PASS(nxc_begin_read(c, md, 0, &dd, 1, NULL, &again));
    NXT_EQ_INT(nxc_op_wait(again, 30000), NXC_ERR_REFUSED);
    NXT_EQ_INT(nxc_op_status(rb), NXC_OP_COMPLETE);
    nxc_op_release(again);
    nxc_op_release(read);
    nxc_op_release(ra);
    nxc_op_release(rb);
    nxc_connector_destroy(c);
}

/* A custom notification key, as the reference allows. */
static void test_custom_key(void) {
    nxc_connector_t *c = nxt_connector("customkey", 1);
    char src[512], dst[512];
    nxt_fill(src, sizeof src, 9);
    nxc_desc_t s = nxt_desc(src, sizeof src), d = nxt_desc(dst, sizeof dst);
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_NOTIFICATION_KEY | NXC_OP_FIELD_USER_DATA,
                         .notification_key = "request-17",
                         .user_data = &p};
    nxc_op_t *r, *r2, *read;
    NXT_PASS(nxc_create_readable(c, &s, 1, &p, &r));
    NXT_EQ_STR(nxc_op_notification_key(r), "request-17");
    NXT_CHECK(nxc_op_user_data(r) == &p);
    NXT_FAIL(nxc_create_readable(c, &s, 1, &p, &r2), NXC_ERR_INVALID_STATE);
    const char *md;
    NXT_PASS(nxc_op_metadata(r, &md, NULL));
    NXT_CHECK(strstr(md, "\"notification_key\":\"request-17\"") != NULL);
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 30000));
    NXT_EQ_INT(nxt_verify(dst, sizeof dst, 9), SIZE_MAX);
    nxc_op_release(read);
    nxc_op_release(r);
    nxc_connector_destroy(c);
}

/* 4 threads x 100 concurrent ops on one connector, against a peer process
 * that serves 400 readables. */
#define THREADS 4
#define PER_THREAD 100
#define BLOCK 8192

static void many_readables_peer(int fd, void *arg) {
    nxc_connector_t *c = nxt_connector("server", 1);
    size_t n = THREADS * PER_THREAD;
    char *mem = nxt_alloc(n * BLOCK);
    nxc_op_t **ops = calloc(n, sizeof *ops);
    for (size_t i = 0; i < n; i++) {
        nxt_fill(mem + i * BLOCK, BLOCK, 1000 + i);
        nxc_desc_t d = nxt_desc(mem + i * BLOCK, BLOCK);
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &ops[i]));
        const char *md;
        size_t len;
        NXT_PASS(nxc_op_metadata(ops[i], &md, &len));
        nxt_send(fd, md, len);
    }
    for (size_t i = 0; i < n; i++) {
        NXT_PASS(nxc_op_wait(ops[i], 60000));
        nxc_op_release(ops[i]);
    }
    nxt_send_str(fd, "done");
    nxc_connector_destroy(c);
    free(ops);
    free(mem);
}

typedef struct worker {
    nxc_connector_t *c;
    char **mds;
    size_t first;
} worker_t;

static void *reader_thread(void *arg) {
    worker_t *w = arg;
    char *buf = nxt_alloc(PER_THREAD * BLOCK);
    nxc_op_t *ops[PER_THREAD];
    for (size_t i = 0; i < PER_THREAD; i++) {
        nxc_desc_t d = nxt_desc(buf + i * BLOCK, BLOCK);
        NXT_PASS(nxc_begin_read(w->c, w->mds[w->first + i], 0, &d, 1, NULL, &ops[i]));
    }
    for (size_t i = 0; i < PER_THREAD; i++) {
        NXT_PASS(nxc_op_wait(ops[i], 60000));
        NXT_EQ_INT(nxt_verify(buf + i * BLOCK, BLOCK, 1000 + w->first + i), SIZE_MAX);
        nxc_op_release(ops[i]);
    }
    free(buf);
    return NULL;
}

static void test_threads(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(many_readables_peer, NULL, &pid);
    nxc_connector_t *c = nxt_connector("client", 1);
    char *mds[THREADS * PER_THREAD];
    for (size_t i = 0; i < THREADS * PER_THREAD; i++)
        mds[i] = nxt_recv(fd, NULL, 30000);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){c, mds, (size_t)i * PER_THREAD};
        pthread_create(&th[i], NULL, reader_thread, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    free(nxt_recv(fd, NULL, 60000));
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    for (size_t i = 0; i < THREADS * PER_THREAD; i++)
        free(mds[i]);
}

/* Progress driven by the application: no progress thread on either side;
 * completion seen through the op fd and nxc_connector_fd(). */
static void test_no_progress_thread(void) {
    nxc_connector_t *c = nxt_connector("manual", 0);
    size_t size = 256 << 10;
    char *src = nxt_alloc(size), *dst = nxt_alloc(size);
    nxt_fill(src, size, 77);
    nxc_desc_t s = nxt_desc(src, size), d = nxt_desc(dst, size);
    nxc_op_t *r, *read;
    NXT_PASS(nxc_create_readable(c, &s, 1, NULL, &r));
    const char *md;
    NXT_PASS(nxc_op_metadata(r, &md, NULL));
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &read));
    int ofd = nxc_op_fd(read), cfd = nxc_connector_fd(c);
    NXT_CHECK(ofd >= 0 && cfd >= 0);
    for (int i = 0; i < 10000; i++) {
        struct pollfd pf = {.fd = ofd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 1) break;
        while (nxc_connector_progress(c) > 0) {
        }
        struct pollfd pc = {.fd = cfd, .events = POLLIN};
        poll(&pc, 1, 10);
    }
    NXT_EQ_INT(nxc_op_status(read), NXC_OP_COMPLETE);
    NXT_EQ_INT(nxt_verify(dst, size, 77), SIZE_MAX);
    NXT_PASS(nxc_op_wait(r, 10000)); /* wait drives progress itself */
    nxc_op_release(read);
    nxc_op_release(r);
    nxc_connector_destroy(c);
    free(src);
    free(dst);
}

/* Peer: a readable of `size` bytes; reports the op's final status. */
static void readable_until_done(int fd, void *arg) {
    size_t size = *(size_t *)arg;
    nxc_connector_t *c = nxt_connector("passive", 1);
    char *buf = nxt_alloc(size);
    nxt_fill(buf, size, 77);
    nxc_desc_t d = nxt_desc(buf, size);
    nxc_op_t *op;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op));
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(op, &md, &len));
    nxt_send(fd, md, len);
    nxc_status_t st = nxc_op_wait(op, 60000);
    char reply[256];
    snprintf(reply, sizeof reply, "%d %s", (int)st, nxc_op_message(op));
    nxt_send_str(fd, reply);
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

/* Cancel a large read right after it began: it ends CANCELLED (or COMPLETE
 * if it won the race), the passive op stays usable, and a second read of
 * the same metadata moves every byte. */
static void test_cancel_mid_transfer(void) {
    /* scaled (nxt_size) no lower than 32 MiB, which a slow build that
     * scales it takes far longer than 2 ms to move */
    size_t size = nxt_size(256u << 20, 32u << 20);
    pid_t pid;
    int fd = nxt_spawn_peer(readable_until_done, &size, &pid);
    nxc_connector_t *c = nxt_connector("active", 1);
    size_t mdlen;
    char *md = nxt_recv(fd, &mdlen, 30000);
    char *buf = nxt_alloc(size);
    nxc_desc_t d = nxt_desc(buf, size);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(c, md, mdlen, &d, 1, NULL, &op));
    usleep(2000);
    uint64_t t0 = nxt_now_ms();
    NXT_PASS(nxc_op_cancel(op));
    uint64_t took = nxt_now_ms() - t0;
    nxc_op_status_t st = nxc_op_status(op);
    printf("  cancelled 2 ms after begin, in %llu ms: %s (%s)\n", (unsigned long long)took,
           st == NXC_OP_CANCELLED  ? "CANCELLED"
           : st == NXC_OP_COMPLETE ? "COMPLETE"
                                   : "other",
           nxc_op_message(op));
    NXT_CHECK(st == NXC_OP_CANCELLED || st == NXC_OP_COMPLETE);
    nxc_op_release(op);
    /* A cancel that drained hands the grant back: the same metadata reads
     * again. One that had to abort (its bytes did not stop within the 2 s
     * drain, as under heavy load) cuts the connection, and the owner then
     * sees its reader lost: its readable ends PEER_FAILED (nxc.h, cancel). */
    bool aborted = took >= 1900;
    if (st == NXC_OP_CANCELLED) {
        NXT_PASS(nxc_begin_read(c, md, mdlen, &d, 1, NULL, &op));
        nxc_status_t again = nxc_op_wait(op, 60000);
        if (!aborted || again == NXC_OK) {
            NXT_EQ_INT(again, NXC_OK);
            NXT_EQ_INT(nxt_verify(buf, size, 77), SIZE_MAX);
        }
        nxc_op_release(op);
    } else {
        NXT_EQ_INT(nxt_verify(buf, size, 77), SIZE_MAX);
    }
    char *owner = nxt_recv(fd, NULL, 30000);
    printf("  the owner's readable ended: %s\n", owner);
    if (!aborted)
        NXT_EQ_INT(atoi(owner), NXC_OK);
    else
        NXT_CHECK(atoi(owner) == NXC_OK || atoi(owner) == NXC_ERR_PEER_FAILED);
    free(owner);
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(md);
    free(buf);
}

static const nxt_test_t nxt_tests[] = {
    {"read_1_desc", test_read_1, 0},
    {"write_1_desc", test_write_1, 0},
    {"read_64_descs", test_read_many, 0},
    {"write_64_descs", test_write_many, 0},
    {"read_1024_descs", test_read_1024, 0},
    {"write_1024_descs", test_write_1024, 0},
    {"gather_read_1x1MiB_from_4x256KiB", test_gather_read, 0},
    {"scatter_read_4_from_1", test_scatter_read, 0},
    {"gather_write_1_into_4", test_gather_write, 0},
    {"uneven_scatter_gather", test_uneven_sg, 0},
    {"one_byte", test_tiny, 0},
    {"unaligned", test_unaligned, 0},
    {"64MiB", test_large, 0},
    {"read_65537_segments", test_many_segments_read, 300},
    {"write_65537_segments", test_many_segments_write, 300},
    {"read_256MiB", test_read_256m, 300},
    {"write_256MiB", test_write_256m, 300},
    {"cancel_mid_transfer", test_cancel_mid_transfer, 120},
    {"loopback", test_loopback, 0},
    {"notification_per_key", test_notification_per_key, 0},
    {"custom_key", test_custom_key, 0},
    {"4_threads_x_100_ops", test_threads, 180},
    {"no_progress_thread", test_no_progress_thread, 0},
};
NXT_MAIN(nxt_tests)
