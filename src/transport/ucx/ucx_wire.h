/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The UCX transport's control messages (internal): UCP active messages
 * between two nxc connectors. Shared by the transport's files and the
 * tests that play a hostile peer. All fields little-endian (ucx_internal.h
 * refuses big-endian hosts).
 *
 *   active                                    passive
 *   GRANT_REQ {want, key, secret,  ─▶ the passive side checks want, then key
 *              ranges}                 and secret, then that the endpoint
 *                                      is its own; the core checks the op,
 *                                      kind and bounds → grant id
 *             ◀─ GRANT_REP {status, grant}
 *   get/put or DATA/READ_REQ per segment
 *   DONE {grant, complete} ──────────────────▶
 *
 * At destroy, to every connected peer (either side):
 *   BYE ─────────────────────────────────────▶ answered at once, after
 *             ◀─ BYE_ACK                        every message before it
 */
#ifndef NXC_TRANSPORT_UCX_WIRE_H
#define NXC_TRANSPORT_UCX_WIRE_H

#include <stdint.h>

#include "core/metadata.h"

enum {
    NXC__UCX_AM_GRANT_REQ = 1,
    NXC__UCX_AM_GRANT_REP = 2,
    NXC__UCX_AM_DONE = 3,
    NXC__UCX_AM_DATA = 4,      /* write, message path: bytes for a writable */
    NXC__UCX_AM_READ_REQ = 5,  /* read, message path: send me this range */
    NXC__UCX_AM_READ_DATA = 6, /* read, message path: bytes of a readable */
    NXC__UCX_AM_BYE = 7,       /* destroying: answer once you have my messages */
    NXC__UCX_AM_BYE_ACK = 8,   /* the answer */
    NXC__UCX_AM_LAST = NXC__UCX_AM_BYE_ACK
};

/* "NXX3": version 2 added GRANT_REQ.want; version 3 connects through
 * listeners, answers on the endpoint a request came on (so a GRANT_REQ
 * carries no address) and sends every message with UCP_AM_SEND_FLAG_REPLY.
 * An older peer's messages carry another magic and are dropped, not
 * misread. */
#define NXC__UCX_MAGIC 0x3358584eu

/* GRANT_REQ, followed by key, addr_len bytes of address (always 0: a
 * request that names an address is refused), requester name, nranges
 * nxc__range_t. Sent with UCP_AM_SEND_FLAG_REPLY: the answer, a refusal or
 * a grant, goes back on the endpoint the request came on, and the peer at
 * its other end is who holds the grant. */
typedef struct nxc__ucx_grant_req {
    uint32_t magic;
    uint8_t md_kind;
    uint8_t pad;
    uint16_t key_len;
    uint32_t addr_len;
    uint32_t nranges;
    uint16_t name_len;
    uint16_t pad2;
    uint64_t req_id;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the requester's */
    uint8_t want[NXC__INSTANCE_LEN];     /* the connector the metadata names */
    uint8_t secret[NXC__SECRET_LEN];
} nxc__ucx_grant_req_t;

/* GRANT_REP, followed by a reason text when refused. status: NXC_OK,
 * NXC_ERR_REFUSED (no live op with this key and secret, wrong kind, out of
 * bounds), NXC_ERR_UNREACHABLE (this worker is not the connector `want`
 * names: that one is gone), or NXC_ERR_TRANSPORT (a malformed request). */
typedef struct nxc__ucx_grant_rep {
    uint32_t magic;
    int32_t status;
    uint64_t req_id;
    uint64_t grant_id;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the passive side's */
} nxc__ucx_grant_rep_t;

typedef struct nxc__ucx_done {
    uint32_t magic;
    uint32_t complete; /* 1: all bytes landed; 0: the active side gave up */
    uint64_t grant_id;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the active side's */
} nxc__ucx_done_t;

/* BYE and BYE_ACK. A connector being destroyed sends BYE to each peer it
 * is connected to and closes the endpoint once BYE_ACK came back (or its
 * wait ran out). UCX delivers a peer's disconnect on the connection
 * manager's socket, not in order with its messages: a DONE sent right
 * before the close could reach the owner after the disconnect had already
 * failed its op. The answer to BYE is sent from the callback that receives
 * it, so every message the peer sent before BYE has been received (and
 * queued) first. */
typedef struct nxc__ucx_bye {
    uint32_t magic;
    uint32_t reserved; /* 0 */
} nxc__ucx_bye_t;

/* Header of AM_DATA and AM_READ_REQ: which grant, which remote range. */
typedef struct nxc__ucx_range {
    uint32_t magic;
    uint32_t seg; /* AM_READ_REQ: the requester's segment index */
    uint64_t grant_id;
    uint64_t req_id; /* AM_READ_REQ: the requester's op */
    uint64_t addr, len;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the active side's */
} nxc__ucx_range_t;

/* Header of AM_READ_DATA: where in the requester's segment the bytes go. */
typedef struct nxc__ucx_read_data {
    uint32_t magic;
    uint32_t seg;
    uint64_t req_id;
    uint64_t off;
} nxc__ucx_read_data_t;

#endif
