/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport interface (internal). A transport moves the bytes of active
 * ops and lets peers reach the memory of passive ops. Each lives in
 * src/transport/<name>/ and exports one `const nxc__transport_ops_t`, listed
 * in registry.c.
 *
 * Locking: every member except create/destroy is called with the connector
 * lock held, and transports call back into the core (nxc__grant_*,
 * nxc__op_finish, nxc__peer_lost) with that lock still held. A transport
 * never blocks under the lock; it never calls user code.
 *
 * Active-op contract: once post() succeeded, the transport owns the op's
 * progress and finishes it exactly once with nxc__op_finish(), and only when
 * nothing it started still touches the op's local buffers (so a terminal op's
 * buffers are the caller's again). nxc__op_io_begin()/nxc__op_io_end() count
 * what is still in flight.
 */
#ifndef NXC_TRANSPORT_H
#define NXC_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metadata.h"
#include "nxc/nxc.h"

typedef struct nxc__transport_ops nxc__transport_ops_t;

/* Base of every transport instance; a transport's struct starts with it. */
typedef struct nxc__tp {
    const nxc__transport_ops_t *ops;
    nxc_connector_t *c;
    /* Set by create(): works, but other transports should be tried first
     * unless the user ordered the transports (ucx without RDMA hardware). */
    bool fallback;
} nxc__tp_t;

struct nxc__transport_ops {
    size_t size; /* sizeof(nxc__transport_ops_t) when built, so the table can grow */
    const char *name;

    /* Start the transport for connector `c`. NXC_ERR_NOT_SUPPORTED when it
     * cannot run on this host (the connector then goes on without it). */
    nxc_status_t (*create)(nxc_connector_t *c, nxc__tp_t **tp_p);
    /* Stop: close every connection, free everything. All ops are gone. */
    void (*destroy)(nxc__tp_t *tp);

    /* A file descriptor that becomes readable when progress() has work, or -1
     * when the transport only needs periodic progress. */
    int (*event_fd)(nxc__tp_t *tp);
    /* Do pending work without blocking; return how much was done (0: idle). */
    int (*progress)(nxc__tp_t *tp);
    /* Re-arm event_fd before sleeping on it: false means "progress again". */
    bool (*arm)(nxc__tp_t *tp);
    /* Optional: the monotonic ns by which progress() must run again even if
     * event_fd stays quiet (a timeout to check, a keepalive), UINT64_MAX for
     * none. The loop sleeps on a timer set to it; nothing else wakes it. */
    uint64_t (*next_timer)(nxc__tp_t *tp);

    /* Can this transport move memory of this device kind? */
    bool (*supports_device)(nxc__tp_t *tp, nxc_device_kind_t kind);

    /* Passive: make `op`'s local buffers reachable; fill `sec` (name, conn
     * info, one key per local descriptor; the bytes stay owned by the
     * transport until unexpose). Per-op state goes in *state_p. */
    nxc_status_t (*expose)(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p);
    /* Passive, optional: the op is about to end (complete, cancelled, expired):
     * refuse any new access from now on. Called before the end is visible. */
    void (*retire)(nxc__tp_t *tp, nxc_op_t *op, void *state);
    /* Passive: drop what expose() made (registrations, keys). Called after the
     * core has revoked access and no grant on the op remains. */
    void (*unexpose)(nxc__tp_t *tp, nxc_op_t *op, void *state);
    /* Passive: cut the peer holding `grant_peer` off at once (it held a grant
     * on an op whose access is being revoked and did not finish in time). */
    void (*drop_peer)(nxc__tp_t *tp, void *grant_peer);

    /* Active: can the peer that wrote `md` be reached through `sec`? NXC_OK,
     * or the reason in why[len] and NXC_ERR_NO_TRANSPORT (this transport
     * cannot serve that peer: another host, a kernel policy; the next one may)
     * or NXC_ERR_UNREACHABLE (the peer did not answer: its process is gone,
     * its socket absent). When no transport fits, a begin fails with
     * UNREACHABLE if any said so, the status a transport that tried to
     * connect would have ended the op with. */
    nxc_status_t (*reachable)(nxc__tp_t *tp, const nxc__metadata_t *md,
                              const nxc__md_section_t *sec, char *why, size_t len);
    /* Active: start moving op's bytes (op->md, op->segs describe the peer and
     * the plan). On error nothing is in flight and the op is not finished. */
    nxc_status_t (*post)(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec);
    /* Active: stop the op as soon as possible; finish it with `why` once
     * nothing is in flight (at once if nothing is). */
    void (*cancel)(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why);
    /* Active: cancel() did not drain in time: abort what is in flight now
     * (may cut the connection to the peer), then finish the op. */
    void (*force)(nxc__tp_t *tp, nxc_op_t *op);
    /* Active: free per-op state; the op is terminal and nothing is in flight. */
    void (*release)(nxc__tp_t *tp, nxc_op_t *op);

    /* Optional: register the `n` buffers of `descs` for later ops (see
     * nxc_mem_register()); the transport's hold goes in *state_p. */
    nxc_status_t (*mem_register)(nxc__tp_t *tp, const nxc_desc_t *descs, size_t n, void **state_p);
    /* Optional: drop the hold mem_register() took. */
    void (*mem_deregister)(nxc__tp_t *tp, void *state);
    /* Optional, for tests and nxc-info: registrations made and reused. */
    void (*reg_stats)(nxc__tp_t *tp, uint64_t *made, uint64_t *reused);

    /* One line on how this transport runs here (nxc-info). */
    void (*describe)(nxc__tp_t *tp, char *buf, size_t len);
};

/* --- core calls for transports (op.c) --------------------------------------- */

/* In-flight accounting of an active op (lock held, as for every call here).
 * A transport begins one unit for each thing it started that still touches
 * the op's local buffers (a send, a get/put, a stripe, an awaited reply) and
 * ends it when that thing is over. The core frees a released op only once
 * nothing is in flight; the transport finishes the op only then. */
void nxc__op_io_begin(nxc_op_t *op);
void nxc__op_io_end(nxc_op_t *op);
/* Is anything the transport started on `op` still in flight? */
bool nxc__op_io_pending(const nxc_op_t *op);

/* Registry (registry.c): transports built in, in default preference order. */
const nxc__transport_ops_t *nxc__transport_find(const char *name, size_t len);
extern const nxc__transport_ops_t *const nxc__transports_builtin[];
extern const size_t nxc__transports_builtin_count;

extern const nxc__transport_ops_t nxc__transport_ucx;
extern const nxc__transport_ops_t nxc__transport_shm;
extern const nxc__transport_ops_t nxc__transport_tcp;

#endif
