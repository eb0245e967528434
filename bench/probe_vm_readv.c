/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Copy limits for bench/compare, single thread:
 *
 *   nxc-probe-copy vm_readv SIZES [ITERS [MAX_BYTES [SECONDS]]]
 *       process_vm_readv() of a buffer owned by a child process into a local
 *       one: the cost of one kernel-mediated cross-process copy, the floor
 *       for any same-host transport that copies once.
 *   nxc-probe-copy memcpy SIZES [ITERS [MAX_BYTES [SECONDS]]]
 *       memcpy() between two buffers of this process.
 *
 * SIZES is a comma-separated list (4K,64K,1M) or a range of powers of two
 * (4K..256M). Per size: ITERS copies (default 1000), fewer when they would
 * move more than MAX_BYTES (default 1G) or take longer than SECONDS (default
 * 2), never fewer than 3. Buffers are reused (cache-warm for small sizes).
 * Prints one JSON object per size: {"probe", "block", "iters", "gbps", "us"}
 * (GB/s decimal; us = mean time per copy).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES 64

static _Noreturn void die(const char *fmt, const char *arg) {
    fprintf(stderr, "nxc-probe-copy: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
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
    if (!dup) die("%s", "out of memory");
    for (char *it = strtok_r(dup, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        char *dots = strstr(it, "..");
        uint64_t a, b;
        if (dots) {
            *dots = 0;
            if (!parse_size(it, &a) || !parse_size(dots + 2, &b) || a > b)
                die("bad size range '%s'", text);
        } else {
            if (!parse_size(it, &a)) die("bad size '%s'", it);
            b = a;
        }
        for (uint64_t x = a; x <= b && n < MAX_SIZES; x *= 2)
            v[n++] = x;
    }
    free(dup);
    if (n == 0) die("no sizes in '%s'", text);
    return n;
}

static void *map(uint64_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(p, 0x3c, len);
    return p;
}

/* One copy of `len` bytes; 0 on success. */
static int copy_once(int vm, pid_t pid, void *dst, void *src, uint64_t len) {
    if (!vm) {
        memcpy(dst, src, len);
        __asm__ __volatile__("" : : "r"(dst) : "memory"); /* keep the copy */
        return 0;
    }
    uint64_t done = 0;
    while (done < len) {
        struct iovec l = {(char *)dst + done, len - done}, r = {(char *)src + done, len - done};
        ssize_t got = process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (got <= 0) return -1;
        done += (uint64_t)got;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "vm_readv") && strcmp(argv[1], "memcpy"))) {
        fprintf(stderr, "usage: nxc-probe-copy vm_readv|memcpy SIZES [ITERS [MAX_BYTES "
                        "[SECONDS [BETWEEN_KIB]]]]\n");
        return 2;
    }
    int vm = !strcmp(argv[1], "vm_readv");
    uint64_t sizes[MAX_SIZES], iters = 1000, max_bytes = 1ull << 30, seconds = 2;
    int n = parse_sizes(argv[2], sizes);
    if (argc > 3 && !parse_size(argv[3], &iters)) die("bad ITERS '%s'", argv[3]);
    if (argc > 4 && !parse_size(argv[4], &max_bytes)) die("bad MAX_BYTES '%s'", argv[4]);
    if (argc > 5 && !parse_size(argv[5], &seconds)) die("bad SECONDS '%s'", argv[5]);
    /* As nxc-bench --between: that many KiB of other memory written before
     * each copy, outside its timing (only the copies are summed). */
    uint64_t between = 0;
    if (argc > 6 && strcmp(argv[6], "0") && !parse_size(argv[6], &between))
        die("bad BETWEEN_KIB '%s'", argv[6]);
    uint8_t *scratch = between ? map(between << 10) : NULL;
    uint64_t max = 0;
    for (int i = 0; i < n; i++)
        if (sizes[i] > max) max = sizes[i];

    uint8_t *dst = map(max), *src = NULL;
    pid_t child = 0;
    if (vm) {
        /* The child maps and fills the source, reports its address, and
         * waits until the parent closes the pipe (or dies). */
        int up[2], down[2];
        if (pipe(up) || pipe(down)) die("pipe: %s", strerror(errno));
        pid_t parent = getpid();
        child = fork();
        if (child < 0) die("fork: %s", strerror(errno));
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            close(up[0]);
            close(down[1]);
            void *p = map(max);
            if (write(up[1], &p, sizeof p) != (ssize_t)sizeof p) _exit(1);
            char c;
            while (read(down[0], &c, 1) > 0) {
            }
            _exit(0);
        }
        close(up[1]);
        close(down[0]);
        if (read(up[0], &src, sizeof src) != (ssize_t)sizeof src) die("%s", "child failed");
        close(up[0]);
        /* down[1] stays open until exit */
    } else {
        src = map(max);
    }

    for (int i = 0; i < n; i++) {
        uint64_t len = sizes[i], it = iters;
        if (it > max_bytes / len) it = max_bytes / len;
        if (it < 3) it = 3;
        for (int w = 0; w < 2; w++)
            if (copy_once(vm, child, dst, src, len)) die("process_vm_readv: %s", strerror(errno));
        uint64_t t0 = now_ns(), deadline = t0 + seconds * 1000000000ull, done = 0, swept = 0;
        while (done < it) {
            if (scratch) {
                uint64_t s0 = now_ns();
                for (uint64_t k = 0; k < between << 10; k += 64)
                    scratch[k]++;
                swept += now_ns() - s0;
            }
            if (copy_once(vm, child, dst, src, len)) die("process_vm_readv: %s", strerror(errno));
            done++;
            if ((done & 15) == 0 && now_ns() > deadline) break;
        }
        uint64_t dt = now_ns() - t0 - swept;
        printf("{\"probe\":\"%s\",\"block\":%" PRIu64 ",\"iters\":%" PRIu64
               ",\"gbps\":%.4f,\"us\":%.3f}\n",
               argv[1], len, done, (double)(len * done) / (double)dt,
               (double)dt / 1e3 / (double)done);
        fflush(stdout);
    }
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    return 0;
}
