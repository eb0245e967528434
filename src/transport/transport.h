/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport interface (internal). A transport moves the bytes of active
 * ops and lets peers reach the memory of passive ops. Each lives in
 * src/transport/<name>/ (with a transport.cmake naming its sources) and
 * exports one `const nxc__transport_ops_t nxc__transport_<name>`; the
 * CMake list NXC_TRANSPORTS_BUILTIN puts it in the registry.
 *
 * This header is all a transport needs from the core (with util/ for errors,
 * logs, the environment and time, and core/regcache.h if it registers
 * memory with a device layer).
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
#include "core/sglist.h"
#include "nxc/nxc.h"

typedef struct nxc__transport_ops nxc__transport_ops_t;

/* One setting a transport takes, given as "<transport>.<key>=<value>" in
 * the connector parameter `options` (checked by the core against this
 * table before any transport starts), else from its environment variable,
 * else the transport's default. Read back with nxc__option_int() or
 * nxc__option_text(). */
typedef struct nxc__tp_option {
    const char *key;                 /* "port" */
    const char *env;                 /* "NXC_TCP_PORT", or NULL */
    long long lo, hi;                /* an integer's range (valid == NULL) */
    bool (*valid)(const char *text); /* a text's check; NULL: an integer */
    const char *accepted;            /* what a text takes, for messages */
} nxc__tp_option_t;

/* Base of every transport instance; a transport's struct starts with it. */
typedef struct nxc__tp {
    const nxc__transport_ops_t *ops;
    nxc_connector_t *c;
    /* Set by create(): works, but other transports should be tried first
     * unless the user ordered the transports (ucx without RDMA hardware). */
    bool fallback;
    /* Set by create(), with ready(): how long the progress thread keeps
     * looking (ready()) after its last work before it sleeps; 0: not. */
    uint64_t linger_ns;
} nxc__tp_t;

struct nxc__transport_ops {
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
    /* Optional: has progress() work, by a look at memory only (no system
     * call, no lock: any thread, any time while the transport lives)? The
     * progress thread asks while it lingers before sleeping (progress.c). */
    bool (*ready)(nxc__tp_t *tp);
    /* Optional: the monotonic ns by which progress() must run again even if
     * event_fd stays quiet (a timeout to check, a keepalive), UINT64_MAX for
     * none. The loop sleeps on a timer set to it; nothing else wakes it. */
    uint64_t (*next_timer)(nxc__tp_t *tp);
    /* Optional (lock held, no side effect): is nothing left for the loop
     * until one of the transport's fds has an event or next_timer comes?
     * Asked after work done outside a pass (a post that left the op
     * running, a copier's report): the loop is woken only if not
     * (nxc__loop_needs_wake in core/progress.c). Without it the loop is
     * always woken. */
    bool (*idle)(nxc__tp_t *tp);

    /* Can this transport move memory of this device kind? */
    bool (*supports_device)(nxc__tp_t *tp, nxc_device_kind_t kind);

    /* Passive: make `op`'s local buffers reachable; fill `sec` (name, conn
     * info, one key per local descriptor; the bytes stay owned by the
     * transport until unexpose). Per-op state goes in *state_p. */
    nxc_status_t (*expose)(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p);
    /* Passive, optional: the op is about to end (complete, cancelled, expired):
     * refuse any new access from now on. Called before the end is visible. */
    void (*retire)(nxc__tp_t *tp, nxc_op_t *op, void *state);
    /* Passive, optional: is a peer moving bytes of the op without a grant
     * right now (shm's direct writes, claimed in memory the two processes
     * share)? Revocation waits for it as for a grant, up to NXC__DRAIN_MS. */
    bool (*direct_busy)(nxc__tp_t *tp, nxc_op_t *op, void *state);
    /* Passive: drop what expose() made (registrations, keys). Called after the
     * core has revoked access and no grant on the op remains. */
    void (*unexpose)(nxc__tp_t *tp, nxc_op_t *op, void *state);
    /* Passive: cut the peer holding `grant_peer` off at once (it held a grant
     * on an op whose access is being revoked and did not finish in time).
     * The transport reports the loss with nxc__peer_lost(), from inside this
     * call or later in its pass (the stream transports and ucx: later). */
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
    /* Active: start moving op's bytes (nxc__op_peer_md(), nxc__op_segs()
     * describe the peer and the plan). On error nothing is in flight and the op is not finished. */
    nxc_status_t (*post)(nxc__tp_t *tp, nxc_op_t *op, const nxc__md_section_t *sec);
    /* Active: stop the op as soon as possible; finish it with `why` once
     * nothing is in flight (at once if nothing is). */
    void (*cancel)(nxc__tp_t *tp, nxc_op_t *op, nxc_status_t why);
    /* Active: cancel() did not drain in time: abort what is in flight now
     * (may cut the connection to the peer), then finish the op. */
    void (*abort_io)(nxc__tp_t *tp, nxc_op_t *op);
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

    /* The options this transport takes (see nxc__tp_option_t); none: NULL. */
    const nxc__tp_option_t *options;
    size_t noptions;
};

/* --- the core, as a transport sees it (lock held for every call) ------------- */

/* struct nxc_op and struct nxc_connector stay opaque here: a transport
 * reads an op through these accessors, which is what lets the core change
 * its layout without touching any transport. Arrays are returned whole, so
 * a loop over segments costs one call, not one per element. */

/* What the op is: its kind, its notification key (NUL-terminated), and, for
 * a passive op, the secret a peer must present (NXC__SECRET_LEN bytes). */
nxc_op_kind_t nxc__op_kind(const nxc_op_t *op);
const char *nxc__op_key(const nxc_op_t *op);
const uint8_t *nxc__op_secret(const nxc_op_t *op);
/* Passive (READABLE, WRITABLE) or active (READ, WRITE)? */
bool nxc__op_passive(const nxc_op_t *op);
/* Has the op ended (COMPLETE, CANCELLED or ERRORED)? */
bool nxc__op_terminal(const nxc_op_t *op);
/* The op's local buffers (*n_p of them) and their total size in bytes. */
const nxc_desc_t *nxc__op_local(const nxc_op_t *op, size_t *n_p);
uint64_t nxc__op_total(const nxc_op_t *op);
/* Active: the peer's parsed metadata, and the transfer plan pairing local
 * and remote buffers (*n_p segments, in order). */
const nxc__metadata_t *nxc__op_peer_md(const nxc_op_t *op);
const nxc__seg_t *nxc__op_segs(const nxc_op_t *op, size_t *n_p);
/* Active: the transport the op was posted on, and that transport's per-op
 * state (NULL until post() sets it; release() clears it). */
nxc__tp_t *nxc__op_tp(const nxc_op_t *op);
void *nxc__op_tp_state(const nxc_op_t *op);
void nxc__op_set_tp_state(nxc_op_t *op, void *state);

/* The active ops posted on `tp` that carry its per-op state, one after the
 * other: NULL gives the first, NULL comes back after the last. The op in
 * hand may be finished (not freed) before asking for the next. */
nxc_op_t *nxc__tp_next_op(nxc__tp_t *tp, nxc_op_t *prev);
/* Is there a live, unreleased passive op keyed `key` whose secret is
 * `secret`? A cheap pre-check before answering a stranger: access is still
 * decided by nxc__grant_open(). */
bool nxc__passive_known(nxc_connector_t *c, const char *key, const uint8_t *secret);

/* The connector: its name (travels in metadata and hellos), its random
 * instance id (NXC__INSTANCE_LEN bytes) and this host's name as metadata
 * carries it. */
const char *nxc__connector_name(const nxc_connector_t *c);
const uint8_t *nxc__connector_instance(const nxc_connector_t *c);
const char *nxc__connector_host(const nxc_connector_t *c);
/* Option `key` of transport `scope` (create() and later): the value the
 * user gave, else its environment variable's if valid, else `def` (text:
 * NULL). The text stays valid while the connector lives. */
long long nxc__option_int(const nxc_connector_t *c, const char *scope, const char *key,
                          long long def);
const char *nxc__option_text(const nxc_connector_t *c, const char *scope, const char *key);

/* In-flight accounting of an active op (lock held, as for every call here).
 * A transport begins one unit for each thing it started that still touches
 * the op's local buffers (a send, a get/put, a stripe, an awaited reply) and
 * ends it when that thing is over. The core frees a released op only once
 * nothing is in flight; the transport finishes the op only then. */
void nxc__op_io_begin(nxc_op_t *op);
void nxc__op_io_end(nxc_op_t *op);
/* Is anything the transport started on `op` still in flight? */
bool nxc__op_io_pending(const nxc_op_t *op);

/* End `op` with `result` (NXC_OK = COMPLETE, NXC_ERR_CANCELED = CANCELLED,
 * else ERRORED) exactly once; later calls are ignored. Wakes waiters. */
void nxc__op_finish(nxc_op_t *op, nxc_status_t result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A peer asks to move bytes of the passive op keyed `key`. Checks, in this
 * order, that the op exists, is live and not revoked, that `secret` matches,
 * that the access `md_kind` matches (READ needs a readable), and that the
 * ranges are exactly the op's buffers, in order (a transfer moves all of
 * the op or nothing). On success records a grant held
 * by `peer` and writes its id; else NXC_ERR_REFUSED with the reason in
 * `why`. Refusals never touch memory. */
typedef struct nxc__range {
    uint64_t addr, len;
} nxc__range_t;
nxc_status_t nxc__grant_open(nxc_connector_t *c, nxc__tp_t *tp, void *peer, const char *key,
                             const uint8_t *secret, int md_kind, const nxc__range_t *ranges,
                             size_t nranges, uint64_t *grant_id_p, char *why, size_t why_len);
/* The same for one stripe of a transfer split over several connections:
 * the ranges must be exactly part `part` of `nparts` of the op's bytes (the
 * op's buffers in descriptor order, cut in parts of ceil(total / nparts)
 * bytes). nxc__grant_open() asks for part 0 of 1: the whole op. */
nxc_status_t nxc__grant_open_part(nxc_connector_t *c, nxc__tp_t *tp, void *peer, const char *key,
                                  const uint8_t *secret, int md_kind, const nxc__range_t *ranges,
                                  size_t nranges, unsigned part, unsigned nparts,
                                  uint64_t *grant_id_p, char *why, size_t why_len);
/* Hand grant `id` held by `peer` over to `to` (a striped transfer's stripe
 * finished on one connection; the transfer as a whole still holds the op,
 * and `to`'s loss fails it). false when no such grant exists. */
bool nxc__grant_move(nxc_connector_t *c, void *peer, uint64_t id, void *to);
/* The live op of `kind` on which `peer` holds grant `id`, provided
 * [addr, addr+len) lies inside its buffers (running on from one buffer into
 * the next only where that one starts at the byte the first ends, so the
 * neighbours of a buffer pool can move as one range); NULL otherwise.
 * Message-path transports call this for every message before touching
 * memory. */
nxc_op_t *nxc__grant_op(nxc_connector_t *c, void *peer, uint64_t id, nxc_op_kind_t kind,
                        uint64_t addr, uint64_t len);
/* The peer holding grant `id` finished (complete = true: all bytes landed,
 * the op turns COMPLETE) or gave up (false). Unknown ids, or ids held by
 * another peer, are ignored and return false. */
bool nxc__grant_close(nxc_connector_t *c, void *peer, uint64_t id, bool complete);
/* A peer moved the bytes of the passive op keyed `key` without a grant (a
 * transport whose passive side checks access by itself, before and after the
 * copy: shm's direct reads). Completes the op if it is live, of `kind`, and
 * `secret` matches; false otherwise. */
bool nxc__complete_direct(nxc_connector_t *c, nxc__tp_t *tp, const char *key, const uint8_t *secret,
                          nxc_op_kind_t kind);
/* The same for an op the transport found by itself (shm's arena names the
 * op's record, not its key): completes `op` (NULL: none) if it is live and
 * of `kind`. */
bool nxc__complete_direct_op(nxc_connector_t *c, nxc__tp_t *tp, nxc_op_t *op, nxc_op_kind_t kind);
/* `peer` is gone (died, or cut off): its grants are dropped and every
 * passive op it held one on turns ERRORED (PEER_FAILED). A peer that gives
 * up cleanly returns its grant with nxc__grant_close() first. */
void nxc__peer_lost(nxc_connector_t *c, void *peer, const char *why);

/* Bytes of `op` began to move (active), or a peer was granted access
 * (passive): INITIALIZED turns IN_PROGRESS; any other state is left as it
 * is (a status never goes back). The one way transports change a status
 * short of ending the op (nxc__op_finish()). */
void nxc__op_progressing(nxc_op_t *op);

/* Wake the progress thread or a waiter (any thread, lock held or not). */
void nxc__wake(nxc_connector_t *c);
/* For a transport's own threads (shm's copiers): take the connector lock
 * if it is free (true), to finish work in place of the loop; false leaves
 * the work to the loop. Never blocks, so it needs no lock order. */
bool nxc__try_lock(nxc_connector_t *c);
/* Release a lock taken with nxc__try_lock(), waking the loop if the work
 * done under it left the loop something: `tp` not idle, or something due
 * before the timer the loop armed. */
void nxc__unlock_and_wake_if_needed(nxc_connector_t *c, nxc__tp_t *tp);

/* Registry (registry.c, generated from registry.c.in by CMake): the
 * transports built in, in default preference order; each folder defines
 * `const nxc__transport_ops_t nxc__transport_<name>`. */
const nxc__transport_ops_t *nxc__transport_find(const char *name, size_t len);
extern const nxc__transport_ops_t *const nxc__transports_builtin[];
extern const size_t nxc__transports_builtin_count;
/* Their names, ", "-separated ("shm, ucx, tcp"), for messages. */
extern const char nxc__transports_builtin_names[];
/* Tests only: one more transport, found by its name (never picked by
 * default and not in the names above), so that the core's unit tests can
 * run ops over a transport they script (tests/harness/fake_transport.c).
 * NULL in every program; set it before creating the connector. */
extern const nxc__transport_ops_t *nxc__transport_for_tests;

#endif
