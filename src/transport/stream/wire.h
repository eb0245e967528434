/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire protocol of nxc's stream transports (tcp, and shm's control
 * channel over a unix-domain socket). All integers little-endian. Every frame
 * is a fixed header, `body_len` bytes of body, and for two frame types a
 * payload whose length the receiver already knows from the request.
 *
 *   active (connects)                        passive (listens)
 *   HELLO {version, instance, want, name} ─▶ checks `want` is its instance
 *              ◀─ HELLO_OK {instance}
 *   REQ {kind, key, secret, ranges}      ─▶  core checks op, secret, kind and
 *     (tcp write: + the ranges' bytes)       every range, before touching memory
 *              ◀─ GRANTED {grant}            (tcp read: + the ranges' bytes)
 *              ◀─ ACK {grant}                (tcp write: all bytes landed;
 *                                             the passive op is complete)
 *              ◀─ REFUSED {status, reason}   then the passive closes
 *   DONE {grant, complete}               ─▶  (shm, tcp read) op complete
 *
 *   CANCEL {grant}                       ─▶  tcp read: the active side gave
 *                                             up; the passive stops sending,
 *                                             drops the grant (the op stays
 *                                             usable) and closes
 *
 *   READ_DONE {secret, key}              ─▶  shm: the active side read a
 *                                             readable directly (after
 *                                             checking its access record
 *                                             before and after the copy)
 *   WRITE_DONE {secret, key}             ─▶  shm: the active side wrote a
 *                                             writable directly (under a
 *                                             claim in the owner's arena)
 *
 * A request of a striped transfer names the transfer (`xfer`, chosen by the
 * active side) and the number of stripes; the passive op completes when the
 * last stripe does. A passive side closes the connection on anything it does
 * not expect: a bad magic or version, an unknown or out-of-turn frame type, a
 * body too long, a refused request.
 */
#ifndef NXC_TRANSPORT_STREAM_WIRE_H
#define NXC_TRANSPORT_STREAM_WIRE_H

#include <stdint.h>

#include "core/metadata.h"

#define NXC__WIRE_MAGIC 0x3153584eu /* "NXS1" */
/* 2: merged ranges in requests, the shm arena's keys, WRITE_DONE. */
#define NXC__WIRE_VERSION 2
/* Largest body: a request naming every segment of the largest transfer (a
 * plan between two lists of NXC_DESCS_MAX descriptors has fewer than twice
 * as many segments). */
#define NXC__WIRE_MAX_RANGES (2 * NXC__MD_MAX_DESCS)
#define NXC__WIRE_MAX_BODY                                                                         \
    (sizeof(nxc__wire_req_t) + NXC_KEY_MAX + NXC__WIRE_MAX_RANGES * sizeof(nxc__wire_range_t))
#define NXC__WIRE_MAX_STRIPES 16

enum nxc__wire_type {
    NXC__WIRE_HELLO = 1,
    NXC__WIRE_HELLO_OK = 2,
    NXC__WIRE_REQ = 3,
    NXC__WIRE_GRANTED = 4,
    NXC__WIRE_ACK = 5,
    NXC__WIRE_REFUSED = 6,
    NXC__WIRE_DONE = 7,
    NXC__WIRE_READ_DONE = 8,   /* shm: a direct read (no grant) moved every byte */
    NXC__WIRE_CANCEL = 9,      /* tcp read: stop sending this grant's bytes */
    NXC__WIRE_WRITE_DONE = 10, /* shm: a direct write (claimed, no grant) moved every byte */
};

typedef struct nxc__wire_hdr {
    uint32_t magic;
    uint8_t type;
    uint8_t pad[3];
    uint32_t body_len;
    uint32_t pad2;
    uint64_t xfer; /* the active side's transfer id (REQ and its replies) */
} nxc__wire_hdr_t;

/* HELLO body, followed by name_len bytes of the sender's connector name. */
typedef struct nxc__wire_hello {
    uint16_t version;
    uint16_t name_len;
    uint32_t pad;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the sender's connector */
    uint8_t want[NXC__INSTANCE_LEN];     /* the connector it means to reach */
} nxc__wire_hello_t;

/* HELLO_OK body. */
typedef struct nxc__wire_hello_ok {
    uint8_t instance[NXC__INSTANCE_LEN];
} nxc__wire_hello_ok_t;

/* REQ body, followed by key_len bytes of key and nranges ranges (addresses
 * in the passive process). */
typedef struct nxc__wire_req {
    uint8_t md_kind;     /* NXC__MD_KIND_READ: read a readable; _WRITE: write a writable */
    uint8_t inline_data; /* 1: the bytes travel in this stream (tcp); 0: they do not (shm) */
    uint8_t stripe;      /* this request's index in its transfer */
    uint8_t nstripes;    /* 1..NXC__WIRE_MAX_STRIPES */
    uint16_t key_len;
    uint16_t pad;
    uint32_t nranges;
    uint32_t pad2;
    uint8_t secret[NXC__SECRET_LEN];
} nxc__wire_req_t;

typedef struct nxc__wire_range {
    uint64_t addr, len;
} nxc__wire_range_t;

/* GRANTED, ACK and CANCEL body. */
typedef struct nxc__wire_grant {
    uint64_t grant;
} nxc__wire_grant_t;

/* REFUSED body, followed by a reason text (not NUL-terminated). */
typedef struct nxc__wire_refused {
    int32_t status;
    uint32_t pad;
} nxc__wire_refused_t;

/* READ_DONE and WRITE_DONE body, followed by key_len bytes of key. */
typedef struct nxc__wire_read_done {
    uint8_t secret[NXC__SECRET_LEN];
    uint16_t key_len;
    uint8_t pad[6];
} nxc__wire_read_done_t;

/* DONE body. */
typedef struct nxc__wire_done {
    uint64_t grant;
    uint32_t complete; /* 1: every byte moved; 0: the active side gave up */
    uint32_t pad;
} nxc__wire_done_t;

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the stream wire format is little-endian; add byte swapping for this host"
#endif

#endif
