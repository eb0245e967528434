/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc — move memory between the workers of a distributed inference graph.
 *
 * This header is the whole public API and its specification. Anything not
 * declared here is private and may change without notice.
 *
 * Model (the "NIXL Connect" model, in C):
 *
 *   passive side                          active side
 *   ------------                          -----------
 *   nxc_create_readable(bufs) ──metadata text (any channel)──▶ nxc_begin_read(md, bufs)
 *   nxc_create_writable(bufs) ──metadata text (any channel)──▶ nxc_begin_write(bufs, md)
 *   op turns COMPLETE when the peer's                          op turns COMPLETE when
 *   data has landed (notification)                             the bytes have moved
 *
 * READ pairs only with READABLE, WRITE only with WRITABLE. The metadata is a
 * small JSON text with the shape of the reference's RdmaMetadata; it carries
 * the connection info and access keys needed to reach the passive side's
 * buffers, so treat it as a capability (docs/metadata.md).
 *
 * Conventions
 *   - Every call that can fail returns nxc_status_t (0 = NXC_OK, negative =
 *     error), or -1 where it returns a file descriptor. A failing call
 *     leaves a message naming the problem in nxc_last_error() (the rule is
 *     stated there).
 *   - Out-parameters come last and are written only on success.
 *   - Objects are opaque and library-allocated; destroy/release accept NULL
 *     and return void.
 *   - Parameter structs start with `field_mask`: a field is read only when its
 *     NXC_..._FIELD_ bit is set, so a zeroed struct (or NULL) means "all
 *     defaults", and fields can be added without breaking the ABI. A bit this
 *     library does not define is refused with NXC_ERR_INVALID_PARAM and a
 *     message naming the bit, so a program built against a newer header
 *     fails loudly on an older library instead of losing a setting.
 *
 * Threads
 *   Every function may be called from any thread, concurrently, on the same
 *   connector and the same ops, except that an op must not be used after
 *   nxc_op_release() and a connector not after nxc_connector_destroy(). By
 *   default each connector runs one progress thread that completes ops in the
 *   background. nxc never calls user code: completion is observed by
 *   nxc_op_wait(), nxc_op_status() or the op's file descriptor.
 *
 * Memory ownership
 *   Buffers named by descriptors stay owned by the caller. They must stay
 *   valid (not freed or unmapped) until the op using them is released (passive
 *   ops) or has reached a terminal state (active ops). nxc never copies them
 *   into a staging buffer of its own on the paths that can avoid it.
 */
#ifndef NXC_NXC_H
#define NXC_NXC_H

#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NXC_API __attribute__((visibility("default")))
#else
#define NXC_API
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Result of a call, or the reason an op ended. Ranges say what broke:
 *   -1..-19   the arguments of the call (nothing happened; fix the call)
 *   -20..-29  the metadata text (it was damaged, forged, or is from a
 *             newer/other library)
 *   -30..-39  what this host or build can do
 *   -40..-49  the peer or the transfer (the op is over; a retry with fresh
 *             metadata may succeed)
 *   -50..     library state and the operating system
 */
typedef enum nxc_status {
    NXC_OK = 0,
    NXC_INPROGRESS = 1, /* not an error: the op has not finished yet */

    NXC_ERR_INVALID_PARAM = -1,      /* NULL where a value is required, bad field */
    NXC_ERR_NO_MEMORY = -2,          /* allocation failed */
    NXC_ERR_INVALID_DEVICE = -3,     /* device text is not cpu|host[:0]|cuda[:N]|gpu[:N] */
    NXC_ERR_INVALID_DESCRIPTOR = -4, /* NULL ptr or zero size in a descriptor */
    NXC_ERR_EMPTY_LIST = -5,         /* descriptor count is zero */
    NXC_ERR_MIXED_DEVICES = -6,      /* one list holds more than one device */
    NXC_ERR_SIZE_MISMATCH = -7,      /* local and remote totals differ */
    NXC_ERR_WRONG_OPERATION = -8,    /* READ on writable metadata, or the reverse */

    NXC_ERR_METADATA_MALFORMED = -20, /* not valid JSON / base64 / zlib / blob */
    NXC_ERR_METADATA_TOO_LARGE = -21, /* over NXC_METADATA_MAX, before or after inflate */
    NXC_ERR_METADATA_VERSION = -22,   /* blob format version not supported */

    NXC_ERR_NOT_SUPPORTED = -30, /* e.g. GPU memory with no GPU-capable transport */
    NXC_ERR_NO_TRANSPORT = -31,  /* no transport allowed here is offered by the peer */

    NXC_ERR_UNREACHABLE = -40, /* the peer could not be contacted */
    NXC_ERR_PEER_FAILED = -41, /* the peer died or disconnected during the op */
    NXC_ERR_REFUSED = -42,     /* the peer refused: op released, expired, done, bad key */
    NXC_ERR_TIMED_OUT = -43,   /* the op's own deadline passed */
    NXC_ERR_CANCELED = -44,    /* nxc_op_cancel() or release ended the op */
    NXC_ERR_TRANSPORT = -45,   /* the transport reported an unexpected error */

    NXC_ERR_INVALID_STATE = -50, /* call not valid for this op or connector now */
    NXC_ERR_SYSTEM = -51         /* an OS call failed; the message has errno's text */
} nxc_status_t;

/* The ranges above, for code that decides by kind of failure. */
#define NXC_STATUS_IS_ERR(s) ((int)(s) < 0)
#define NXC_STATUS_IS_CALL_ERR(s) ((int)(s) <= -1 && (int)(s) >= -19)
#define NXC_STATUS_IS_METADATA_ERR(s) ((int)(s) <= -20 && (int)(s) >= -29)
#define NXC_STATUS_IS_HOST_ERR(s) ((int)(s) <= -30 && (int)(s) >= -39)
/* The peer or the transfer failed: a retry with fresh metadata may succeed. */
#define NXC_STATUS_IS_RETRYABLE(s) ((int)(s) <= -40 && (int)(s) >= -49)

/* Static English text for a status ("invalid descriptor", ...). Never NULL;
 * unknown values give "unknown status". Thread-safe. */
NXC_API const char *nxc_status_string(nxc_status_t status);

/* The message of the most recent nxc call on this thread that failed, naming
 * what was wrong ("local descriptor 3: size is 0"). This is the one rule,
 * like errno's:
 *   - a call fails when it returns a negative nxc_status_t, or -1 for the
 *     calls that return a file descriptor or a count; only such a call
 *     writes the message (nxc_op_wait() returning an op's error is one);
 *   - a call that succeeds (NXC_OK, NXC_INPROGRESS, a valid fd) leaves the
 *     message as it was, so read it right after the failing call; except
 *     nxc_op_wait() when it times out (NXC_INPROGRESS): it writes why, so
 *     that whatever did not return NXC_OK has a message;
 *   - "" until a call has failed on this thread;
 *   - the pointer stays valid for the thread's lifetime; the text changes
 *     only when another call fails on this thread.
 * Why an op ended later, in the background, is not here: nxc_op_message(). */
NXC_API const char *nxc_last_error(void);

/* Library version, e.g. "0.1.0" (NXC_VERSION_STRING is the header's). */
NXC_API const char *nxc_version(void);

/* The loaded library's version as a number, MAJOR * 10000 + MINOR * 100 +
 * PATCH (NXC_VERSION_NUMBER is the header's). */
NXC_API int nxc_version_number(void);

/* 1 when the loaded library implements the API of the header a program was
 * built with: call nxc_version_compatible(NXC_VERSION_NUMBER) at start-up.
 * Same major version and a library at least as new; while the major version
 * is 0, the minor version must match too. 0 otherwise. */
NXC_API int nxc_version_compatible(int header_version);

/* ------------------------------------------------------------------------ */
/* Devices and descriptors                                                   */
/* ------------------------------------------------------------------------ */

typedef enum nxc_device_kind {
    NXC_DEVICE_UNSPECIFIED = 0,
    NXC_DEVICE_HOST = 1, /* CPU memory ("cpu", "host") */
    NXC_DEVICE_CUDA = 2  /* CUDA device memory ("cuda:N", "gpu:N") */
} nxc_device_kind_t;

/* A memory kind and its ordinal. Plain value type. */
typedef struct nxc_device {
    nxc_device_kind_t kind;
    int id; /* 0 for host; the CUDA ordinal for CUDA */
} nxc_device_t;

/* Longest text nxc_device_format() writes, with its NUL. */
#define NXC_DEVICE_TEXT_MAX 16

/* Parse "cpu", "host", "cpu:0", "host:0", "cuda", "cuda:N", "gpu", "gpu:N"
 * (case-insensitive, surrounding blanks ignored; N a decimal ordinal
 * 0..1023; "cuda" and "gpu" alone are cuda:0). These are the texts the
 * reference (nixl_connect's Device) accepts with one meaning; its other
 * readings ("cpu:3" as host memory, "cudaX" as cuda:0) are refused here.
 * Anything else: NXC_ERR_INVALID_DEVICE. NULL arguments:
 * NXC_ERR_INVALID_PARAM. */
NXC_API nxc_status_t nxc_device_parse(const char *text, nxc_device_t *device_p);

/* Write "cpu" or "cuda:N" into buf (NXC_DEVICE_TEXT_MAX is always enough).
 * NXC_ERR_INVALID_DEVICE for an unspecified kind or a bad ordinal. */
NXC_API nxc_status_t nxc_device_format(nxc_device_t device, char *buf, size_t len);

/* A region of memory. `ptr` must not be NULL and `size` must not be 0.
 * All descriptors of one list must be on the same device kind. */
typedef struct nxc_desc {
    void *ptr;
    size_t size;
    nxc_device_t device;
} nxc_desc_t;

/* ------------------------------------------------------------------------ */
/* Connector                                                                 */
/* ------------------------------------------------------------------------ */

/* One per process is the norm: it owns the transports, the registration
 * cache, the progress thread and the connections to peers. */
typedef struct nxc_connector nxc_connector_t;

typedef enum nxc_log_level {
    NXC_LOG_ERROR = 0,
    NXC_LOG_WARN = 1, /* default; also NXC_LOG_LEVEL=warn */
    NXC_LOG_INFO = 2,
    NXC_LOG_DEBUG = 3
} nxc_log_level_t;

enum {
    NXC_CONNECTOR_FIELD_NAME = 1u << 0,
    NXC_CONNECTOR_FIELD_TRANSPORTS = 1u << 1,
    NXC_CONNECTOR_FIELD_PROGRESS_THREAD = 1u << 2,
    NXC_CONNECTOR_FIELD_LOG_LEVEL = 1u << 3,
    NXC_CONNECTOR_FIELD_TCP_ADDRESS = 1u << 4,
    NXC_CONNECTOR_FIELD_TCP_PORT = 1u << 5,
    NXC_CONNECTOR_FIELD_OPTIONS = 1u << 6,
    NXC_CONNECTOR_FIELD_METADATA_VERSION = 1u << 7
};

#define NXC_NAME_MAX 128 /* bytes of a connector name, NUL excluded */

typedef struct nxc_connector_params {
    uint64_t field_mask;
    /* Name shown to peers and in logs. Default: a random unique name. Copied.
     * 1..NXC_NAME_MAX bytes, each a visible ASCII character (0x21..0x7e: no
     * space, no control character), the rule of the metadata it travels in
     * (docs/metadata.md). */
    const char *name;
    /* Comma-separated transports to allow, in order of preference, from
     * "shm", "ucx", "tcp". Default: the NXC_TRANSPORTS environment variable
     * if set and valid (an invalid one is warned about and ignored, like every
     * NXC_* variable: README.md, "Configuration"), else every transport built
     * in, where a transfer takes shm for a peer on this host, ucx if UCX has
     * RDMA hardware, else tcp. An order set
     * here (or in NXC_TRANSPORTS) is taken as given. A transport that cannot
     * start on this host is skipped (logged); none: NXC_ERR_NO_TRANSPORT.
     * Unknown names: NXC_ERR_INVALID_PARAM. */
    const char *transports;
    /* 1 (default): a progress thread completes ops in the background.
     * 0: nothing happens unless the caller drives nxc_connector_progress(),
     * nxc_op_wait() or nxc_op_status(). */
    int progress_thread;
    /* Default: NXC_LOG_LEVEL environment variable, else NXC_LOG_WARN. */
    nxc_log_level_t log_level;
    /* Shorthand for the option tcp.address (below): the tcp transport's
     * listening address, an IPv4 address in dotted form. Default:
     * NXC_TCP_ADDRESS, else "0.0.0.0" (every interface; the metadata then
     * lists every up IPv4 address, loopback last). Copied. */
    const char *tcp_address;
    /* Shorthand for the option tcp.port: its port; 0 (default, or
     * NXC_TCP_PORT): any free port. */
    int tcp_port;
    /* Transport options, scoped by transport: comma-separated items
     * "<transport>.<key>=<value>", e.g. "tcp.address=127.0.0.1,tcp.port=5000".
     * Read during nxc_connector_create() only (copied; the text may go
     * afterwards). Each one wins over its environment variable:
     *   tcp.address     dotted IPv4 listening address (NXC_TCP_ADDRESS);
     *                   ucx listens there too unless ucx.address is set
     *   tcp.port        0..65535, 0: any free port (NXC_TCP_PORT)
     *   tcp.timeout_ms  100..3600000 (NXC_TCP_TIMEOUT_MS)
     *   tcp.streams     1..16 (NXC_TCP_STREAMS)
     *   shm.timeout_ms  100..3600000 (NXC_SHM_TIMEOUT_MS)
     *   shm.threads     0..8 (NXC_SHM_THREADS)
     *   shm.inline_max  0..1073741824 (NXC_SHM_INLINE_MAX)
     *   shm.doorbell    0..1 (NXC_SHM_DOORBELL)
     *   shm.linger_us   0..10000 (NXC_SHM_LINGER_US)
     *   ucx.address     dotted IPv4 address of ucx's listener
     * (README.md, "Configuration", says what each does.) Checked strictly,
     * unlike the environment: NXC_ERR_INVALID_PARAM, with a message naming
     * the item, for an item that is not <transport>.<key>=<value>, a scope
     * that is no transport built in, a key its transport does not take, a
     * value it does not accept, a key given twice, or a key also given by
     * its shorthand field (tcp_address, tcp_port). An option of a transport
     * left out by `transports` is checked, then unused. Empty items are
     * ignored. */
    const char *options;
    /* The metadata format version this connector's passive ops write
     * (docs/metadata.md, "Versioning"): 1 or 2. Default: the
     * NXC_METADATA_VERSION environment variable, else 1. Every version of
     * this library reads both; a library that reads only version 1 (nxc
     * 0.1 before version 2 was added) refuses version 2 as malformed, so
     * keep 1 while such peers may receive this connector's metadata.
     * Version 2 splits what is the same in every op of a connector (its
     * identity and transport addresses) from what is the op's own, so a
     * peer decodes the former once: a begin's decoding takes about half
     * of version 1's instructions. Another value: NXC_ERR_INVALID_PARAM. */
    int metadata_version;
} nxc_connector_params_t;

/* Create a connector. `params` may be NULL (all defaults). Errors:
 * NXC_ERR_INVALID_PARAM (bad field, unknown transport), NXC_ERR_NO_TRANSPORT
 * (no allowed transport could start), NXC_ERR_NO_MEMORY, NXC_ERR_SYSTEM. */
NXC_API nxc_status_t nxc_connector_create(const nxc_connector_params_t *params,
                                          nxc_connector_t **connector_p);

/* Destroy a connector. Ops not yet released are cancelled and released
 * (their handles become invalid), all together: transfers still moving get
 * one drain period (2 s), then are aborted, so stopping them takes at most
 * about 4 s however many are stuck (closing a transport's connections to
 * unresponsive peers adds its own bounded wait, up to 4 s for ucx; ucx
 * waits longer, up to 10 s for the flush and 10 s for the close, for a
 * peer that is slow but still taking what was sent to it, or that is a
 * live, unstopped process on this host).
 * Threads already blocked in nxc_op_wait() on its ops are woken and return
 * NXC_ERR_CANCELED (or the op's result, if it ended first); nothing is
 * freed until they have left. Returns after the progress thread has
 * stopped and every peer connection is closed. Calls
 * that start after destroy began are undefined. NULL is a no-op. */
NXC_API void nxc_connector_destroy(nxc_connector_t *connector);

/* The connector's name. Valid for the connector's lifetime. */
NXC_API const char *nxc_connector_name(const nxc_connector_t *connector);

/* Comma-separated transports this connector runs, in preference order. */
NXC_API const char *nxc_connector_transports(const nxc_connector_t *connector);

/*
 * Driving a connector from your own event loop (progress thread off).
 * Everything that can make progress due is behind one file descriptor: the
 * transports' events, work posted by nxc calls, and a timer for the next
 * deadline, so a loop needs no periodic wake-up and an idle connector's fd
 * stays quiet:
 *
 *     int fd = nxc_connector_fd(c);             // add it to epoll/poll/asyncio
 *     for (;;) {
 *         while (nxc_connector_progress(c) > 0) // do what is pending
 *             ;
 *         if (nxc_connector_arm(c) != NXC_OK)   // something came in meanwhile
 *             continue;
 *         poll(&(struct pollfd){fd, POLLIN, 0}, 1, -1); // or with other fds
 *     }
 *
 * nxc_connector_progress() arms by itself when it returns 0, so
 * "progress until 0, then poll" also works; nxc_connector_arm() makes the
 * step explicit (as ucp_worker_arm() does in UCX). nxc_op_wait(),
 * nxc_op_status() and the other calls may be used from other threads
 * meanwhile; they take the connector's lock.
 */

/* Do what is pending without blocking: returns the amount of work done
 * (0 if none), or a negative nxc_status_t. Needed only when the progress
 * thread is off; harmless otherwise. */
NXC_API int nxc_connector_progress(nxc_connector_t *connector);

/* Prepare to sleep on nxc_connector_fd(): arms the transports and sets the
 * fd's timer to the next deadline. NXC_OK: nothing is pending, sleep until
 * the fd is readable. NXC_INPROGRESS: work arrived or a deadline is due,
 * call nxc_connector_progress() first. NXC_ERR_INVALID_PARAM: NULL.
 * Work posted by any thread (an op begun or created) makes the fd readable
 * only from an arm (NXC_OK here, or nxc_connector_progress() returning 0)
 * to the next nxc_connector_progress(); posted outside that window, it
 * makes the next arm return NXC_INPROGRESS. An application that never
 * sleeps on the fd pays no wake-up per op. The calls that make a pass
 * without a progress thread (nxc_op_status, nxc_cq_poll, the waits) leave
 * an armed connector armed, so they may be called between the arm and the
 * sleep, or instead of nxc_connector_progress() when the fd wakes. */
NXC_API int nxc_connector_arm(nxc_connector_t *connector);

/* Milliseconds until the next deadline or internal timer (0: due now), or
 * -1 if there is none: a poll timeout for loops that want one (the fd's
 * timer already covers it). -1 also for a NULL connector, with
 * nxc_last_error() set. */
NXC_API int nxc_connector_timeout(nxc_connector_t *connector);

/* The connector's file descriptor for the loop above: readable when
 * nxc_connector_progress() has work to do. Owned by the connector; do not
 * read from it or close it. Level-triggered (epoll: without EPOLLET). -1
 * with nxc_last_error() on error. */
NXC_API int nxc_connector_fd(nxc_connector_t *connector);

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

typedef struct nxc_op nxc_op_t;

/* The reference's OperationStatus, with the same numbers. */
typedef enum nxc_op_status {
    NXC_OP_UNINITIALIZED = 0,
    NXC_OP_INITIALIZED = 1, /* passive: waiting for a peer; active: posted */
    /* active: bytes are moving. passive: a peer was granted access; it stays
     * so (a status never goes back) until the op ends, also when that peer
     * gives up, since part of the memory may have been written. */
    NXC_OP_IN_PROGRESS = 2,
    NXC_OP_COMPLETE = 3,  /* terminal: all bytes landed */
    NXC_OP_CANCELLED = 4, /* terminal: nxc_op_cancel() */
    NXC_OP_ERRORED = 5    /* terminal: see nxc_op_result() / nxc_op_message() */
} nxc_op_status_t;

typedef enum nxc_op_kind {
    NXC_OP_READABLE = 1, /* passive: a peer may read these buffers */
    NXC_OP_WRITABLE = 2, /* passive: a peer may write into these buffers */
    NXC_OP_READ = 3,     /* active: read a peer's readable buffers */
    NXC_OP_WRITE = 4     /* active: write into a peer's writable buffers */
} nxc_op_kind_t;

enum {
    NXC_OP_FIELD_TIMEOUT = 1u << 0,
    NXC_OP_FIELD_NOTIFICATION_KEY = 1u << 1,
    NXC_OP_FIELD_USER_DATA = 1u << 2,
    NXC_OP_FIELD_CQ = 1u << 3
};

typedef struct nxc_cq nxc_cq_t; /* a completion queue, see below */

#define NXC_KEY_MAX 64 /* bytes of a notification key, NUL excluded */

typedef struct nxc_op_params {
    uint64_t field_mask;
    /* Deadline in ms from creation (> 0). Past it the op turns ERRORED with
     * NXC_ERR_TIMED_OUT; a passive op's memory is then no longer reachable.
     * An active op with bytes still in flight first stops them (its buffers
     * must be the caller's once it ends), which may take up to 2 s more when
     * the peer or the link is stuck. Default: none (the op lives until it
     * completes, fails or is released). */
    int timeout_ms;
    /* Passive ops only: the key the peer's notification must carry. 1..
     * NXC_KEY_MAX bytes, each a visible ASCII character (0x21..0x7e, no
     * space), unique among this connector's live passive ops. Default: a
     * random UUID4 text. */
    const char *notification_key;
    /* Opaque pointer returned by nxc_op_user_data() and in the op's
     * completion entry. */
    void *user_data;
    /* The completion queue that receives one entry when the op ends; it must
     * belong to the same connector. Default: none. */
    nxc_cq_t *cq;
} nxc_op_params_t;

/*
 * Passive ops. Let a peer read (readable) or write (writable) the `count`
 * local buffers in `descs` (copied; the memory itself is not). The buffers
 * stay reachable by a peer holding the metadata until the op is complete,
 * timed out, or released. Registration is relaxed: any memory, any time;
 * buffers used again are found in the registration cache.
 *
 * Errors: NXC_ERR_INVALID_PARAM (also: more than NXC_DESCS_MAX descriptors),
 * NXC_ERR_EMPTY_LIST, NXC_ERR_INVALID_DESCRIPTOR, NXC_ERR_MIXED_DEVICES,
 * NXC_ERR_INVALID_DEVICE, NXC_ERR_NOT_SUPPORTED (no transport can move this device's memory),
 * NXC_ERR_INVALID_STATE (key already in use), NXC_ERR_TRANSPORT (registration
 * failed), NXC_ERR_NO_MEMORY.
 */
NXC_API nxc_status_t nxc_create_readable(nxc_connector_t *connector, const nxc_desc_t *descs,
                                         size_t count, const nxc_op_params_t *params,
                                         nxc_op_t **op_p);
NXC_API nxc_status_t nxc_create_writable(nxc_connector_t *connector, const nxc_desc_t *descs,
                                         size_t count, const nxc_op_params_t *params,
                                         nxc_op_t **op_p);

/* The metadata text of a passive op (NUL-terminated JSON; *len_p excludes
 * the NUL). Owned by the op, valid until nxc_op_release(). Hand it to the
 * peer by any channel. NXC_ERR_INVALID_STATE on an active op. */
NXC_API nxc_status_t nxc_op_metadata(nxc_op_t *op, const char **text_p, size_t *len_p);

/* Most descriptors in one list, local or remote: every call refuses a longer
 * one with NXC_ERR_INVALID_PARAM, on every transport. (A transfer between
 * two lists of this size moves at most 2 * NXC_DESCS_MAX - 1 segments.) A
 * remote list is bounded by NXC_METADATA_MAX as well. */
#define NXC_DESCS_MAX 65536

/* Largest metadata text accepted, and largest blob after inflating. */
#define NXC_METADATA_MAX (4u << 20)

/*
 * Active ops. Read the peer's readable buffers named by `metadata` into
 * `local` (begin_read), or write `local` into the peer's writable buffers
 * (begin_write). The transfer is posted before the call returns. Local and
 * remote lists need equal total sizes; their segmentation may differ (nxc
 * scatters and gathers). When all bytes have landed the peer is notified and
 * both ops turn COMPLETE.
 *
 * Errors returned by the call (nothing was posted): NXC_ERR_INVALID_PARAM
 * (also: more than NXC_DESCS_MAX local descriptors), NXC_ERR_EMPTY_LIST,
 * NXC_ERR_INVALID_DESCRIPTOR, NXC_ERR_MIXED_DEVICES, NXC_ERR_WRONG_OPERATION,
 * NXC_ERR_SIZE_MISMATCH, NXC_ERR_METADATA_*, NXC_ERR_NOT_SUPPORTED,
 * NXC_ERR_NO_TRANSPORT, NXC_ERR_NO_MEMORY, and NXC_ERR_UNREACHABLE when the
 * peer is known to be unreachable before trying (an address that cannot
 * even be used; shm: the peer's process has exited or its connector's
 * socket is gone). The same failure found while connecting ends the op
 * instead, with the same status: a dead peer is NXC_ERR_UNREACHABLE on
 * every transport, whether the call or the op reports it.
 * Errors that end the op later (nxc_op_result()): NXC_ERR_UNREACHABLE,
 * NXC_ERR_REFUSED, NXC_ERR_PEER_FAILED, NXC_ERR_TIMED_OUT, NXC_ERR_TRANSPORT.
 * `metadata_len` may be 0 for a NUL-terminated text.
 * The two take their arguments in opposite orders on purpose: the source
 * comes first, as in the reference's begin_read(metadata, local) and
 * begin_write(local, metadata), so code ported from it reads the same.
 */
NXC_API nxc_status_t nxc_begin_read(nxc_connector_t *connector, const char *metadata,
                                    size_t metadata_len, const nxc_desc_t *local, size_t count,
                                    const nxc_op_params_t *params, nxc_op_t **op_p);
NXC_API nxc_status_t nxc_begin_write(nxc_connector_t *connector, const nxc_desc_t *local,
                                     size_t count, const char *metadata, size_t metadata_len,
                                     const nxc_op_params_t *params, nxc_op_t **op_p);

/* Current state. Never blocks; drives progress when the progress thread is
 * off. A NULL op gives NXC_OP_UNINITIALIZED. */
NXC_API nxc_op_status_t nxc_op_status(nxc_op_t *op);

/* NXC_OK once COMPLETE, NXC_INPROGRESS before a terminal state, else the
 * reason the op ended (NXC_ERR_CANCELED, NXC_ERR_PEER_FAILED, ...). */
NXC_API nxc_status_t nxc_op_result(nxc_op_t *op);

/* Why the op ended, in words ("peer 'encoder-1' disconnected"); "" if it
 * has not failed. A per-thread copy, valid until the next call of this
 * function on the same thread. */
NXC_API const char *nxc_op_message(nxc_op_t *op);

/*
 * Wait up to `timeout_ms` (0 = just check, < 0 = no limit) for a terminal
 * state. Returns NXC_OK when COMPLETE, NXC_INPROGRESS if the wait timed out
 * (the op goes on; nxc_last_error() says so), or the op's error when it
 * ended otherwise (nxc_last_error() then holds nxc_op_message()). Several
 * threads may wait on one op; a wait under way when another thread calls
 * nxc_connector_destroy() returns NXC_ERR_CANCELED.
 */
NXC_API nxc_status_t nxc_op_wait(nxc_op_t *op, int timeout_ms);

/*
 * A file descriptor that becomes readable once the op reaches a terminal
 * state and stays readable (level-triggered; do not read from it) until the
 * op is released. Owned by the op: do not close it. -1 with nxc_last_error()
 * on failure. With the progress thread off, also poll nxc_connector_fd().
 */
NXC_API int nxc_op_fd(nxc_op_t *op);

/*
 * Cancel a non-terminal op: it turns CANCELLED (result NXC_ERR_CANCELED).
 * When the call returns nxc no longer touches the op's local buffers, and a
 * passive op's buffers are no longer reachable by peers. On a terminal op it
 * changes nothing and returns NXC_OK. May block briefly (bounded) while
 * in-flight transfers drain. An active op hands its access back to the
 * passive side, which stays usable for another try; one whose bytes do not
 * stop within the 2 s drain is aborted by cutting its connection, and the
 * passive side then sees a lost peer (its op ends NXC_ERR_PEER_FAILED).
 * Once one op's drain has failed, further stops of ops on that peer cut
 * at once until the peer sends again: cancelling or releasing all the ops
 * of a frozen peer, one after another, costs one drain, not one each.
 */
NXC_API nxc_status_t nxc_op_cancel(nxc_op_t *op);

/*
 * Release the op and everything it holds. A non-terminal op is cancelled
 * first. For a passive op, peers can no longer reach its memory when this
 * returns; metadata handed out earlier is refused from then on. The handle
 * is invalid afterwards. NULL is a no-op.
 */
NXC_API void nxc_op_release(nxc_op_t *op);

NXC_API nxc_op_kind_t nxc_op_kind(const nxc_op_t *op);
/* Total bytes of the op's local descriptors. */
NXC_API size_t nxc_op_size(const nxc_op_t *op);
/* The notification key (passive: its own; active: the peer's). */
NXC_API const char *nxc_op_notification_key(const nxc_op_t *op);
NXC_API void *nxc_op_user_data(const nxc_op_t *op);

/* Name of the transport that moves (active) or moved (passive, once a peer
 * has reached it) the bytes: "shm", "ucx" or "tcp"; NULL for a passive op no peer has
 * reached yet. Static string. */
NXC_API const char *nxc_op_transport(nxc_op_t *op);

/* ------------------------------------------------------------------------ */
/* Explicit registration                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Registration is implicit and cached: an op registers what it needs with
 * the transports that need it (ucx; shm and tcp need none) and the cache
 * keeps it for the next op over the same memory. A process that keeps
 * buffer pools can register them once instead: ops whose buffers lie inside
 * registered memory then never register again, and the first op pays no
 * registration either.
 *
 * A registration covers whole pages, like every registration of this kind
 * (UCX's and NIXL's alike): a peer holding an op's metadata could, with
 * RDMA hardware, reach the rest of the registered pages while the op lives.
 * Register pools that hold only what peers may see.
 */
typedef struct nxc_mem nxc_mem_t;

typedef struct nxc_mem_params {
    uint64_t field_mask; /* no fields yet: 0, or pass NULL */
} nxc_mem_params_t;

/* Register the `count` buffers of `descs` (copied; the memory is not) with
 * every transport of `connector` that registers memory. The buffers must
 * stay mapped until nxc_mem_deregister(). Errors: NXC_ERR_INVALID_PARAM,
 * NXC_ERR_EMPTY_LIST, NXC_ERR_INVALID_DESCRIPTOR, NXC_ERR_MIXED_DEVICES,
 * NXC_ERR_NOT_SUPPORTED (no transport can move this device's memory),
 * NXC_ERR_TRANSPORT (a transport refused the registration), NXC_ERR_NO_MEMORY. */
NXC_API nxc_status_t nxc_mem_register(nxc_connector_t *connector, const nxc_desc_t *descs,
                                      size_t count, const nxc_mem_params_t *params,
                                      nxc_mem_t **mem_p);

/* Allocate `size` bytes of host memory (zeroed, page-aligned, rounded up to
 * whole pages) and register it as nxc_mem_register() would; *ptr_p gets its
 * address, *mem_p the registration.
 *
 * Why: this memory is shared with peers on this host. It is a sealed
 * memfd; the shm transport names it in the access record of each op that
 * exposes it, and a peer's shm transport maps it once (through /proc,
 * where the kernel would allow process_vm_readv) and from then on reads or
 * writes an op's bytes with memcpy, not a system call per op. A 4 KiB op
 * then costs about what nxc's own bookkeeping costs (docs/benchmarks.md).
 * That is shm's direct path: ops of up to 8 buffers, all in one
 * allocation, and NXC_SHM_INLINE_MAX bytes (1 MiB), once the peer has a
 * connection to this connector. Other ops, ops over other memory, and ops
 * over this memory on tcp or ucx are unchanged. Only the passive side's
 * memory matters: a reader's or writer's own buffers can be anything.
 *
 * Access: peers still reach the memory only through live ops (a read or
 * write of an op that has ended fails as before). A peer that mapped it
 * could, as one with process_vm_readv rights (the same user) can reach all
 * of this process's memory anyway, touch the rest of it: allocate from it
 * only what peers may see, as with any registration.
 *
 * Fork: the mapping is shared, so a child forked after this call shares
 * the memory with its parent (each sees the other's writes), where fork
 * would copy malloc'd memory.
 *
 * Lifetime: nxc_mem_deregister() unmaps it, and only that call: the memory
 * and its handle outlive nxc_connector_destroy() (which drops the
 * registration), so a handle may be deregistered after its connector is
 * gone, and must be, or the memory leaks. Release the ops over it first,
 * as before freeing any buffer an op uses. Peers that mapped it keep their
 * mapping, so its pages live on until each of them drops it (they keep a
 * few such mappings per connector and drop the oldest for a new one, and
 * all at nxc_connector_destroy()).
 *
 * Errors: NXC_ERR_INVALID_PARAM (NULL argument, size 0, unknown params
 * field), NXC_ERR_NO_MEMORY (the memfd or its mapping could not be made),
 * NXC_ERR_TRANSPORT (a transport refused the registration). */
NXC_API nxc_status_t nxc_mem_alloc(nxc_connector_t *connector, size_t size,
                                   const nxc_mem_params_t *params, void **ptr_p, nxc_mem_t **mem_p);

/* Drop a registration. Ops still using the memory keep their own hold on
 * it: the registration goes when the last of them ends (deferred, never
 * refused). Memory from nxc_mem_alloc() is unmapped here (see there). The
 * handle is invalid afterwards. Registrations left at
 * nxc_connector_destroy() go with the connector, except those of
 * nxc_mem_alloc(), whose handles stay valid for this call alone. Not
 * concurrently with the destroy of the handle's connector. NULL is a no-op. */
NXC_API void nxc_mem_deregister(nxc_mem_t *mem);

/* ------------------------------------------------------------------------ */
/* Completion queues                                                         */
/* ------------------------------------------------------------------------ */

/*
 * A completion queue collects the ends of many ops, so that a server with
 * thousands of ops in flight waits on one thing (one call, one fd) instead
 * of one per op. An op created with `cq` in its params delivers exactly one
 * entry there when it reaches a terminal state (COMPLETE, CANCELLED or
 * ERRORED), passive or active alike. Entries come out in the order the ops
 * ended. The op stays valid after its entry was taken: release it as usual.
 * An op released before its entry was taken never appears (a queued entry
 * is withdrawn). Queues have no size limit: each entry lives in its op.
 *
 * Threads: any call from any thread. Several threads may poll or wait on
 * one queue; each entry goes to exactly one of them.
 */
typedef struct nxc_cq_entry {
    nxc_op_t *op;
    void *user_data;     /* the op's params.user_data */
    nxc_status_t result; /* NXC_OK (complete) or why it ended, as nxc_op_result() */
    nxc_op_kind_t kind;
} nxc_cq_entry_t;

typedef struct nxc_cq_params {
    uint64_t field_mask; /* no fields yet: 0, or pass NULL */
} nxc_cq_params_t;

/* Create a queue on `connector`; any number per connector. Errors:
 * NXC_ERR_INVALID_PARAM, NXC_ERR_NO_MEMORY, NXC_ERR_SYSTEM (eventfd). */
NXC_API nxc_status_t nxc_cq_create(nxc_connector_t *connector, const nxc_cq_params_t *params,
                                   nxc_cq_t **cq_p);

/* Destroy a queue. Ops still attached to it keep running and deliver no
 * entry; entries not taken are dropped (their ops stay valid). A queue left
 * at nxc_connector_destroy() is destroyed with the connector. Must not be
 * called while another thread polls or waits on it. NULL is a no-op. */
NXC_API void nxc_cq_destroy(nxc_cq_t *cq);

/* Take up to `max` entries without blocking (with the progress thread off,
 * progress is driven once first). Returns how many were written to
 * `entries` (0: none yet), or NXC_ERR_INVALID_PARAM. */
NXC_API int nxc_cq_poll(nxc_cq_t *cq, nxc_cq_entry_t *entries, int max);

/* Like nxc_cq_poll(), but blocks up to `timeout_ms` (< 0: no limit) for the
 * first entry. 0 when the time ran out; NXC_ERR_CANCELED when the connector
 * is destroyed meanwhile (as for nxc_op_wait()). */
NXC_API int nxc_cq_wait(nxc_cq_t *cq, nxc_cq_entry_t *entries, int max, int timeout_ms);

/* A file descriptor readable while the queue holds entries (level-
 * triggered: do not read from it) for epoll, asyncio or libuv. Owned by the
 * queue. After the last entry is taken it may stay readable until a
 * nxc_cq_poll() or nxc_cq_wait() finds the queue empty, which makes it
 * unreadable: on each readiness, poll until 0 (a loop that does never
 * spins and never sleeps with entries waiting). Not waking anyone for an
 * entry taken at once saves two system calls per op. With the progress
 * thread off, also drive nxc_connector_fd(). */
NXC_API int nxc_cq_fd(nxc_cq_t *cq);

#ifdef __cplusplus
}
#endif
#endif /* NXC_NXC_H */
