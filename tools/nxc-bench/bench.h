/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's private header: what its parts share. The configuration is
 * in cli.h, the rendezvous messages in wire.h, the output in report.h;
 * here are the small helpers (util.c), the --check data pattern
 * (pattern.c), the rendezvous sockets (sock.c) and the two roles
 * (target.c, initiator.c) that main.c starts.
 */
#ifndef NXC_BENCH_BENCH_H
#define NXC_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "nxc/nxc.h"

/* Longest single wait of the roles' loops, between looks at the clock. */
#define POLL_SLICE_MS 100

/* util.c */
extern const char *const prog; /* "nxc-bench": command-line messages */
extern const char *role_name;  /* what die() says first: the role */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void nxc_die(nxc_status_t st, const char *what) __attribute__((noreturn));
uint64_t now_ns(void);
int ms_left(uint64_t deadline);
void *xcalloc(size_t n, size_t sz);
const char *fmt_size(uint64_t v, char *buf, size_t len);
uint8_t *buf_alloc(uint64_t len);
void boot_id(char *out, size_t len);
/* A connector named NAME-pid over TRANSPORT ("" or NULL: all), with a
 * progress thread or, !THREAD, driven by its caller. connector_make dies
 * on failure. */
nxc_status_t connector_try(const char *name, const char *transport, bool thread,
                           nxc_connector_t **c);
nxc_connector_t *connector_make(const char *name, const char *transport, bool thread);
nxc_mem_t *buffer_register(nxc_connector_t *c, uint8_t *buf, uint64_t len);
/* `len` bytes from nxc_mem_alloc(), filled as buf_alloc() fills; dies on
 * failure. The memory goes with nxc_mem_deregister(). */
nxc_mem_t *buffer_alloc(nxc_connector_t *c, uint8_t **buf, uint64_t len);

/* pattern.c: the bytes --check expects of op k of a point (`batch` blocks
 * of `block` bytes from base on). */
void pat_fill(uint64_t seed, uint8_t *base, uint64_t block, uint64_t batch, uint64_t k);
uint64_t pat_check(uint64_t seed, const uint8_t *base, uint64_t block, uint64_t batch, uint64_t k);

/* sock.c: the rendezvous connection (TCP, ADDR:PORT; port 18515 unless
 * given). */
int sock_listen(const char *addr);
int sock_accept(int lfd, int timeout_s);
int sock_connect(const char *addr, int timeout_s);
void sock_tune(int fd);

/* The roles, over a connected rendezvous socket; each returns the exit
 * status. */
int target_serve(int fd);
int initiator_run(int fd);

#endif
