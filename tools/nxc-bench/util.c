/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's small helpers: dying with a message, the clock, memory,
 * size formatting, the boot id, and making connectors and registering buffers.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

const char *const prog = "nxc-bench";
const char *role_name = "nxc-bench";

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", role_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void nxc_die(nxc_status_t st, const char *what) {
    die("%s: %s: %s", what, nxc_status_string(st), nxc_last_error());
}

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Milliseconds until deadline (now_ns), rounded up; 0 once it passed. */
int ms_left(uint64_t deadline) {
    uint64_t n = now_ns();
    if (n >= deadline) return 0;
    uint64_t ms = (deadline - n + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) die("out of memory");
    return p;
}

/* 4096 -> "4K"; exact binary multiples get a suffix. */
const char *fmt_size(uint64_t v, char *buf, size_t len) {
    if (v >= (1ull << 30) && v % (1ull << 30) == 0)
        snprintf(buf, len, "%" PRIu64 "G", v >> 30);
    else if (v >= (1ull << 20) && v % (1ull << 20) == 0)
        snprintf(buf, len, "%" PRIu64 "M", v >> 20);
    else if (v >= (1ull << 10) && v % (1ull << 10) == 0)
        snprintf(buf, len, "%" PRIu64 "K", v >> 10);
    else
        snprintf(buf, len, "%" PRIu64, v);
    return buf;
}

/* Page-aligned, pre-faulted buffer. */
uint8_t *buf_alloc(uint64_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap %" PRIu64 " bytes: %s", len, strerror(errno));
    memset(p, 0x5a, len);
    return p;
}

/* The kernel's boot id: processes that share it share CLOCK_MONOTONIC. */
void boot_id(char *out, size_t len) {
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    out[0] = 0;
    if (!f) return;
    if (!fgets(out, (int)len, f)) out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

nxc_status_t connector_try(const char *name, const char *transport, bool thread,
                           nxc_connector_t **c) {
    nxc_connector_params_t p = {0};
    char nm[64];
    snprintf(nm, sizeof nm, "%s-%ld", name, (long)getpid());
    p.field_mask = NXC_CONNECTOR_FIELD_NAME;
    p.name = nm;
    if (transport && *transport) {
        p.field_mask |= NXC_CONNECTOR_FIELD_TRANSPORTS;
        p.transports = transport;
    }
    if (!thread) { /* the caller drives progress */
        p.field_mask |= NXC_CONNECTOR_FIELD_PROGRESS_THREAD;
        p.progress_thread = 0;
    }
    return nxc_connector_create(&p, c);
}

nxc_connector_t *connector_make(const char *name, const char *transport, bool thread) {
    nxc_connector_t *c;
    nxc_status_t st = connector_try(name, transport, thread, &c);
    if (st != NXC_OK) nxc_die(st, "connector");
    return c;
}

/* The point's buffer registered for the whole point, as a server keeps
 * its pools (--no-prereg goes without, and measures cold registration). */
nxc_mem_t *buffer_alloc(nxc_connector_t *c, uint8_t **buf, uint64_t len) {
    nxc_mem_t *mem;
    void *p;
    nxc_status_t st = nxc_mem_alloc(c, len, NULL, &p, &mem);
    if (st != NXC_OK) nxc_die(st, "allocate buffer");
    memset(p, 0x5a, len);
    *buf = p;
    return mem;
}

nxc_mem_t *buffer_register(nxc_connector_t *c, uint8_t *buf, uint64_t len) {
    nxc_desc_t d = {buf, len, {NXC_DEVICE_HOST, 0}};
    nxc_mem_t *mem;
    nxc_status_t st = nxc_mem_register(c, &d, 1, NULL, &mem);
    if (st != NXC_OK) nxc_die(st, "register buffer");
    return mem;
}
