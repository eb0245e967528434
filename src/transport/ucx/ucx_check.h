/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checks of UCX's packed worker addresses and packed remote keys, done by
 * nxc before UCX sees them (internal).
 *
 * UCX parses both without a length: ucp_ep_create() and
 * ucp_worker_address_query() assert (and abort the process) on an address
 * version they do not know and read past the end of a truncated address;
 * ucp_ep_rkey_unpack() reads as many entries as the key's md map names,
 * indexes tables with its memory type, and attaches shared memory segments
 * a key names. A peer's bytes reach both, through the metadata text or a
 * control message, so nxc walks them first, bounds-checked against their
 * length, the way UCX 1.13's unpack code reads them (ucp/wireup/address.c,
 * ucp/core/ucp_rkey.c), and refuses what does not parse exactly.
 *
 * The layouts are UCX 1.13's (address versions 1 and 2, non-unified mode;
 * rkeys without the distance trailer, which ucp_ep_rkey_unpack() never
 * reads). A peer running another UCX release may be refused; every address
 * and key that UCX 1.13 produces on the supported transports is accepted
 * (fuzz_ucx checks this against the local UCX).
 */
#ifndef NXC_TRANSPORT_UCX_CHECK_H
#define NXC_TRANSPORT_UCX_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a valid worker address says about the peer's memory domains. */
typedef struct nxc__ucx_addr_info {
    uint64_t mds;        /* md indices with at least one transport */
    uint64_t zero_key;   /* mds whose transports all pack empty rkeys (self, tcp, cma) */
    uint64_t alloc_only; /* mds of sysv/posix: they never register user memory */
    unsigned ifaces;     /* transports listed */
} nxc__ucx_addr_info_t;

/* Is `addr` (len bytes) a complete UCX 1.13 worker address? On success fill
 * *info (may be NULL); on failure write the reason into why[why_len]. */
bool nxc__ucx_addr_check(const uint8_t *addr, size_t len, nxc__ucx_addr_info_t *info, char *why,
                         size_t why_len);

/* The ucx section's connection info in nxc metadata: the connector's UCX
 * worker address, then where its UCX listener accepts connections:
 *
 *   worker address (UCX 1.13, checked by nxc__ucx_addr_check())
 *   4  "NXUL"
 *   2  port, little-endian, not 0
 *   2  reserved, 0
 *   4  IPv4 address, network order
 *
 * Endpoints are made through the listener (UCX's connection manager); the
 * worker address tells which memory domains the peer has (rkey checks). */
#define NXC__UCX_LISTEN_LEN 12

/* Is `conn` (len bytes) such connection info? On success fill *info (may be
 * NULL), *ip (network order) and *port (host order) (may be NULL); on
 * failure write the reason into why[why_len]. The worker address is the
 * first len - NXC__UCX_LISTEN_LEN bytes. */
bool nxc__ucx_conn_check(const uint8_t *conn, size_t len, nxc__ucx_addr_info_t *info, uint32_t *ip,
                         uint16_t *port, char *why, size_t why_len);

/* Is `key` (len bytes) a UCX 1.13 packed rkey for memory of `mem_type`
 * (ucs_memory_type_t) that names only memory domains the peer described by
 * `peer` has, with the entry sizes their transports pack? */
bool nxc__ucx_rkey_check(const uint8_t *key, size_t len, const nxc__ucx_addr_info_t *peer,
                         unsigned mem_type, char *why, size_t why_len);

/* Bytes of zeros nxc appends to a copy of an address or key before handing
 * it to UCX: a transport that reads a fixed-size record from a shorter
 * entry then reads zeros of nxc's, not past the allocation. */
#define NXC__UCX_PAD 256

#endif
