/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's rendezvous protocol: the messages between the initiator and
 * the target, {magic, type, len} + payload over the rendezvous socket, and
 * the buffer their payloads are built in and read from (8-byte integers
 * in host order, strings as a length and their bytes).
 */
#ifndef NXC_BENCH_WIRE_H
#define NXC_BENCH_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 3
#define MSG_MAGIC 0x4e584342u /* "NXCB" */
#define MSG_MAX (512ull << 20)

enum msg_type {
    M_HELLO = 1, /* I->T: proto, transport, wait mode */
    M_HELLO_OK,  /* T->I: proto, transports, boot id */
    M_PING,      /* I->T: t0 */
    M_PONG,      /* T->I: t0, t_target */
    M_POINT,     /* I->T: kind, block, batch, slots, check, seed, passive timeout, target_mem */
    M_POINT_OK,  /* T->I */
    M_ROUND,     /* I->T: first op index, count */
    M_MDS,       /* T->I: count, metadata texts */
    M_ROUND_END, /* I->T: ops begun */
    M_ROUND_RES, /* T->I: count, mismatched bytes, errors, error text, completion times */
    M_POINT_END, /* I->T */
    M_POINT_END_OK /* T->I */,
    M_BYE,  /* I->T */
    M_ERROR /* either way: text */
};

/* M_POINT's target_mem: how the target gets its buffer */
enum target_mem {
    TARGET_MEM_PLAIN = 0,    /* mmap, not registered (--no-prereg) */
    TARGET_MEM_REGISTER = 1, /* mmap, registered for the point */
    TARGET_MEM_ALLOC = 2,    /* nxc_mem_alloc() (--alloc) */
};

typedef struct msg_hdr {
    uint32_t magic;
    uint32_t type;
    uint64_t len;
} msg_hdr_t;

typedef struct buf {
    uint8_t *p;
    size_t len, cap, pos; /* pos: read cursor */
    bool bad;             /* a read ran past the end */
} buf_t;

void buf_clear(buf_t *b);
void buf_free(buf_t *b);
void put_u64(buf_t *b, uint64_t v);
void put_str(buf_t *b, const char *s, size_t n);
/* Past the end: 0 or "", and b->bad set. */
uint64_t get_u64(buf_t *b);
const char *get_str(buf_t *b, size_t *n); /* points into b; not NUL-terminated */

/* Send or receive one message within timeout_ms, or die. msg_recv returns
 * the type; an M_ERROR from the peer ends the run with its text. */
void msg_send(int fd, uint32_t type, const buf_t *b, int timeout_ms);
uint32_t msg_recv(int fd, buf_t *b, int timeout_ms);
void msg_expect(int fd, buf_t *b, uint32_t type, int timeout_ms);

/* Target: tell the initiator why this run ends (M_ERROR), say it on
 * stderr, exit 1. The text starts with "target: ". */
void send_error(int fd, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

#endif
