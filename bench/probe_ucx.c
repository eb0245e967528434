/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A raw UCP peer for bench/compare, without nxc:
 *
 *   nxc-probe-ucx [--nixl] get|put SIZES [ITERS [MAX_BYTES [SECONDS]]]
 *
 * Forks a target process that maps one buffer with UCP, sends its worker
 * address and packed rkey over a socketpair, and then progresses its worker
 * in a busy loop (so, unlike ucx_perftest's parked responder, it answers
 * emulated get/put at once). The initiator connects an endpoint and, per
 * op, posts one ucp_get_nbx/ucp_put_nbx of the block and an endpoint flush,
 * and waits for both: the shape of one op with concurrency 1, minus nxc's
 * grant round trip and notification.
 *
 * The endpoint's error handling is the difference between the two modes:
 *   (default)  peer-failure mode, as nxc's ucx transport runs: a peer's
 *              death fails the endpoint instead of hanging it, and UCX 1.13
 *              then keeps to transports that can report it (tcp here, not
 *              its shared-memory ones);
 *   --nixl     no error handling, as NIXL's UCX backend creates its
 *              endpoints: UCX may use its shared-memory transports (sysv
 *              and posix on the development host), and a dead peer is not
 *              detected.
 *
 * Each size is timed after 0.2 s of the same ops (UCX wires an endpoint up
 * over its first ops). SIZES, ITERS, MAX_BYTES and SECONDS work as in
 * nxc-probe-copy. Prints one JSON object per size: {"probe":"ucx_get"|
 * "ucx_put"|"ucx_nixl_get"|"ucx_nixl_put", "block", "iters", "gbps", "us"}
 * (GB/s decimal; us = mean time per op), and on stderr the endpoint's
 * lanes (ucp_ep_print_info: which transports moved the bytes).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#define MAX_SIZES 64
#define WARMUP_NS 200000000ull /* 0.2 s per size */

static _Noreturn void die(const char *what, const char *detail) {
    fprintf(stderr, "nxc-probe-ucx: %s: %s\n", what, detail);
    exit(1);
}

static void ucs_check(ucs_status_t s, const char *what) {
    if (s != UCS_OK) die(what, ucs_status_string(s));
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || v == 0) return 0;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    if (*end) return 0;
    *out = v * mul;
    return 1;
}

static int parse_sizes(const char *text, uint64_t *v) {
    char *dup = strdup(text), *save = NULL;
    int n = 0;
    if (!dup) die("sizes", "out of memory");
    for (char *it = strtok_r(dup, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        char *dots = strstr(it, "..");
        uint64_t a, b;
        if (dots) {
            *dots = 0;
            if (!parse_size(it, &a) || !parse_size(dots + 2, &b) || a > b) die("bad range", text);
        } else {
            if (!parse_size(it, &a)) die("bad size", it);
            b = a;
        }
        for (uint64_t x = a; x <= b && n < MAX_SIZES; x *= 2)
            v[n++] = x;
    }
    free(dup);
    if (n == 0) die("no sizes in", text);
    return n;
}

/* Length-prefixed blobs over the socketpair. */
static void send_blob(int fd, const void *p, uint64_t len) {
    if (write(fd, &len, sizeof len) != (ssize_t)sizeof len) die("send", strerror(errno));
    const char *c = p;
    while (len) {
        ssize_t r = write(fd, c, len);
        if (r <= 0) die("send", strerror(errno));
        c += r;
        len -= (uint64_t)r;
    }
}

static void *recv_blob(int fd, uint64_t *len_p) {
    uint64_t len;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 30000) <= 0) die("receive", "target did not answer in 30 s");
    if (read(fd, &len, sizeof len) != (ssize_t)sizeof len || len > (1u << 20))
        die("receive", "bad message from the target");
    char *p = malloc(len ? len : 1), *c = p;
    if (!p) die("receive", "out of memory");
    for (uint64_t left = len; left;) {
        ssize_t r = read(fd, c, left);
        if (r <= 0) die("receive", "target closed the connection");
        c += r;
        left -= (uint64_t)r;
    }
    *len_p = len;
    return p;
}

static void make_worker(ucp_context_h *ctx, ucp_worker_h *w) {
    ucp_config_t *cfg;
    ucs_check(ucp_config_read(NULL, NULL, &cfg), "ucp_config_read");
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_RMA};
    ucs_check(ucp_init(&pp, cfg, ctx), "ucp_init");
    ucp_config_release(cfg);
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    ucs_check(ucp_worker_create(*ctx, &wp, w), "ucp_worker_create");
}

static void *map_fill(uint64_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap", strerror(errno));
    memset(p, 0x3c, len);
    return p;
}

/* Target: map, publish, progress until the initiator closes the socket. */
static void target(int fd, uint64_t max) {
    ucp_context_h ctx;
    ucp_worker_h w;
    make_worker(&ctx, &w);
    void *buf = map_fill(max);
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = buf,
                               .length = max};
    ucp_mem_h memh;
    ucs_check(ucp_mem_map(ctx, &mp, &memh), "ucp_mem_map");
    void *rkey;
    size_t rkey_len;
    ucs_check(ucp_rkey_pack(ctx, memh, &rkey, &rkey_len), "ucp_rkey_pack");
    ucp_address_t *addr;
    size_t addr_len;
    ucs_check(ucp_worker_get_address(w, &addr, &addr_len), "ucp_worker_get_address");
    uint64_t where = (uint64_t)(uintptr_t)buf;
    send_blob(fd, addr, addr_len);
    send_blob(fd, rkey, rkey_len);
    send_blob(fd, &where, sizeof where);
    ucp_rkey_buffer_release(rkey);
    ucp_worker_release_address(w, addr);
    for (unsigned long i = 0;; i++) {
        ucp_worker_progress(w);
        if ((i & 1023) == 0) {
            struct pollfd pfd = {fd, POLLIN, 0};
            if (poll(&pfd, 1, 0) > 0) break; /* EOF: the initiator is done */
        }
    }
    _exit(0); /* endpoints of a gone peer: let the kernel clean up */
}

static void wait_req(ucp_worker_h w, ucs_status_ptr_t req, const char *what) {
    if (req == NULL) return;
    if (UCS_PTR_IS_ERR(req)) die(what, ucs_status_string(UCS_PTR_STATUS(req)));
    uint64_t deadline = now_ns() + 30000000000ull;
    ucs_status_t s;
    unsigned long spins = 0;
    while ((s = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        ucp_worker_progress(w);
        if ((++spins & 4095) == 0 && now_ns() > deadline) die(what, "no completion in 30 s");
    }
    ucp_request_free(req);
    if (s != UCS_OK) die(what, ucs_status_string(s));
}

static void ep_err(void *arg, ucp_ep_h ep, ucs_status_t status) {
    (void)arg;
    (void)ep;
    die("endpoint", ucs_status_string(status));
}

int main(int argc, char **argv) {
    int nixl = argc > 1 && !strcmp(argv[1], "--nixl");
    argc -= nixl;
    argv += nixl;
    if (argc < 3 || (strcmp(argv[1], "get") && strcmp(argv[1], "put"))) {
        fprintf(stderr,
                "usage: nxc-probe-ucx [--nixl] get|put SIZES [ITERS [MAX_BYTES [SECONDS]]]\n");
        return 2;
    }
    int put = !strcmp(argv[1], "put");
    uint64_t sizes[MAX_SIZES], iters = 1000, max_bytes = 1ull << 30, seconds = 2, max = 0;
    int n = parse_sizes(argv[2], sizes);
    if (argc > 3 && !parse_size(argv[3], &iters)) die("bad ITERS", argv[3]);
    if (argc > 4 && !parse_size(argv[4], &max_bytes)) die("bad MAX_BYTES", argv[4]);
    if (argc > 5 && !parse_size(argv[5], &seconds)) die("bad SECONDS", argv[5]);
    for (int i = 0; i < n; i++)
        if (sizes[i] > max) max = sizes[i];

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) die("socketpair", strerror(errno));
    fflush(NULL);
    pid_t parent = getpid(), child = fork();
    if (child < 0) die("fork", strerror(errno));
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        close(sv[0]);
        target(sv[1], max);
    }
    close(sv[1]);

    ucp_context_h ctx;
    ucp_worker_h w;
    make_worker(&ctx, &w);
    uint64_t alen, rlen, wlen;
    void *addr = recv_blob(sv[0], &alen), *rkey_buf = recv_blob(sv[0], &rlen);
    uint64_t *where = recv_blob(sv[0], &wlen);
    if (wlen != sizeof *where) die("receive", "bad buffer address");
    ucp_ep_params_t ep_params = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = addr,
        .err_mode = nixl ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ep_err, .arg = NULL}};
    ucp_ep_h ep;
    ucs_check(ucp_ep_create(w, &ep_params, &ep), "ucp_ep_create");
    ucp_rkey_h rkey;
    ucs_check(ucp_ep_rkey_unpack(ep, rkey_buf, &rkey), "ucp_ep_rkey_unpack");
    void *local = map_fill(max);
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = local,
                               .length = max};
    ucp_mem_h memh;
    ucs_check(ucp_mem_map(ctx, &mp, &memh), "ucp_mem_map");

    ucp_request_param_t rp = {.op_attr_mask = 0};
    for (int i = 0; i < n; i++) {
        uint64_t len = sizes[i], it = iters;
        if (it > max_bytes / len) it = max_bytes / len;
        if (it < 3) it = 3;
        /* Warm up for WARMUP_NS (at least 2 ops): UCX finishes wiring the
         * endpoint up over the first ops (in NIXL's mode, 4 KiB gets took
         * 15 us each over the first 300 and 2.5 us from a few thousand on). */
        uint64_t t0 = 0, done = 0, deadline = 0, warm_until = now_ns() + WARMUP_NS;
        for (uint64_t k = 0; done < it; k++) {
            if (k >= 2 && !t0 && now_ns() >= warm_until)
                t0 = now_ns(), deadline = t0 + seconds * 1000000000ull;
            ucs_status_ptr_t r = put ? ucp_put_nbx(ep, local, len, *where, rkey, &rp)
                                     : ucp_get_nbx(ep, local, len, *where, rkey, &rp);
            wait_req(w, r, put ? "ucp_put_nbx" : "ucp_get_nbx");
            wait_req(w, ucp_ep_flush_nbx(ep, &rp), "ucp_ep_flush_nbx");
            if (t0 && ++done >= 3 && now_ns() > deadline) break;
        }
        uint64_t dt = now_ns() - t0;
        printf("{\"probe\":\"ucx_%s%s\",\"block\":%" PRIu64 ",\"iters\":%" PRIu64
               ",\"gbps\":%.4f,\"us\":%.3f}\n",
               nixl ? "nixl_" : "", argv[1], len, done, (double)(len * done) / (double)dt,
               (double)dt / 1e3 / (double)done);
        fflush(stdout);
    }
    ucp_ep_print_info(ep, stderr); /* which transports moved the bytes */
    ucp_rkey_destroy(rkey);
    close(sv[0]); /* the target stops progressing and exits */
    int status;
    waitpid(child, &status, 0);
    ucp_ep_close_nbx(
        ep, &(ucp_request_param_t){.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                   .flags = UCP_EP_CLOSE_FLAG_FORCE}); /* peer gone: no flush */
    ucp_mem_unmap(ctx, memh);
    ucp_worker_destroy(w);
    ucp_cleanup(ctx);
    free(addr);
    free(rkey_buf);
    free(where);
    return 0;
}
