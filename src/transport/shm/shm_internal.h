/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm transport's own structures (internal to src/transport/shm/):
 * shm.c is the transport (copier threads, connecting, create, reachability),
 * direct.c the direct reads of small readables (see there).
 */
#ifndef NXC_TRANSPORT_SHM_INTERNAL_H
#define NXC_TRANSPORT_SHM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "transport/stream/stream.h"

#define IOVS 1024 /* iovecs per call (IOV_MAX) */
#define MAX_THREADS 8

/* One copy split into jobs; the last job to finish reports the stripe. */
typedef struct group {
    struct group *next; /* in the done list */
    stream_stripe_t *s;
    int ctl; /* a duplicate of the control connection's fd */
    atomic_int left;
    atomic_int failed; /* errno of the first failure, or -1 for "stopped" (see s->stop) */
} group_t;

typedef struct half_copy half_copy_t;

typedef struct job {
    struct job *next;
    group_t *group;    /* a stripe's job (freed by the copier), or NULL: */
    half_copy_t *half; /* the second half of a direct copy (the caller's) */
    uint64_t from, to; /* byte range of the stripe */
} job_t;

/* The second half of a large direct copy (direct.c): a copier thread moves
 * bytes [from, to) of the iovecs while the caller moves the first half,
 * then waits for `done`. Everything lives on the caller's stack. */
struct half_copy {
    job_t job;
    pid_t pid;
    bool write;
    const struct iovec *mine, *theirs;
    size_t n; /* entries in each, side by side (one segment each) */
    uint64_t from, to;
    ssize_t moved; /* -1: failed */
    atomic_bool done;
};

/* --- direct access (direct.c) ------------------------------------------------------------ */

#define RECORD_RANGES 8 /* buffers an op may have and still be reached directly */
/* Exposed ops with direct access at once, per connector: beyond them ops
 * take the grant path, about ten times slower per small op. A server keeps
 * thousands open; the records it never uses are never touched (the arena's
 * memfd pages come with first use). */
#define ARENA_RECORDS 16384
#define DONE_WORDS (ARENA_RECORDS / 64)
#define DONE_SUMMARY_WORDS (DONE_WORDS / 64)
_Static_assert(ARENA_RECORDS % 4096 == 0, "whole done and summary words");

/* An access record's state word, shared by the owner and its peers:
 * seq (bits 40..63, new each time the record is reused) | phase (32..39) |
 * the claiming writer's pid (0..31). */
enum record_phase {
    PHASE_FREE = 0,
    PHASE_LIVE,
    PHASE_CLAIMED, /* a writer is copying */
    PHASE_WRITTEN, /* a writer moved every byte */
    PHASE_DEAD,    /* the op ended: no new access */
    PHASE_READ,    /* a reader moved every byte */
};
#define STATE(seq, phase, pid)                                                                     \
    (((uint64_t)(seq) << 40) | ((uint64_t)(phase) << 32) | (uint32_t)(pid))
#define STATE_SEQ(s) ((s) >> 40)
#define STATE_PHASE(s) ((unsigned)(((s) >> 32) & 0xff))
#define STATE_PID(s) ((pid_t)(uint32_t)(s))

/* What a peer needs to reach an op without a grant. The owner writes the
 * fields only while the phase is FREE; peers copy them and trust them only
 * as far as the state word says they held. */
typedef struct record {
    _Atomic uint64_t state;
    uint64_t tag; /* random: the metadata's key names it */
    uint8_t secret[NXC__SECRET_LEN];
    char key[NXC_KEY_MAX + 1]; /* the op's notification key: READ/WRITE_DONE name it */
    uint8_t pad0[7];
    uint32_t nranges;
    uint32_t kind; /* nxc_op_kind_t: READABLE or WRITABLE */
    nxc__range_t ranges[RECORD_RANGES];
    /* The nxc_mem_alloc() memory that holds every range, if any: its memfd
     * by number in the owner process and inode, and its address there
     * (mem_fd -1: none; peers then copy with process_vm_readv/writev). */
    int32_t mem_fd;
    uint32_t pad1;
    uint64_t mem_ino;
    uint64_t mem_base;
} record_t;

#define ARENA_MAGIC 0x344e455241584e00ull /* "\0NXAREN4" */

/* The owner's records in a sealed memfd that peers map too, and the
 * doorbell through which peers report the ops they finished: a peer marks
 * the record (READ or WRITTEN), sets its bit in `done`, then the bit of
 * that word in `done_summary`, and rings the owner's eventfd only if
 * `wake` was 0; the owner clears `wake` only when it is about to sleep
 * (arm), so ops that finish while it is awake, or lingering before sleep,
 * cost no system call. The owner looks at the few summary words, and only
 * at the `done` words they name. */
typedef struct arena {
    uint64_t magic;
    uint8_t instance[NXC__INSTANCE_LEN]; /* the owner connector's */
    uint32_t nrecords;
    int32_t notify_fd; /* the owner's eventfd, by number (-1: none; peers send frames) */
    _Alignas(64) _Atomic uint32_t wake; /* 1: a ring is on its way or the owner will look */
    _Alignas(64) _Atomic uint64_t done_summary[DONE_SUMMARY_WORDS]; /* words of `done`, by bit */
    _Alignas(64) _Atomic uint64_t done[DONE_WORDS];                 /* records finished, by bit */
    record_t records[ARENA_RECORDS];
} arena_t;

/* Mark record `slot` finished in the arena's done bitmap, then in its
 * summary (the order collect_bits() relies on). A peer rings the doorbell
 * after this if it finds `wake` 0. */
static inline void nxc__shm_mark_done(arena_t *a, uint32_t slot) {
    uint32_t w = slot / 64;
    atomic_fetch_or(&a->done[w], 1ull << (slot % 64));
    atomic_fetch_or(&a->done_summary[w / 64], 1ull << (w % 64));
}

/* A direct op's key in the metadata (shm's key of descriptor 0). */
typedef struct record_key {
    int32_t arena_fd; /* the memfd's number in the owner process */
    uint32_t slot;
    uint64_t tag;
} record_key_t;

/* A peer's arena, mapped here (active side). */
typedef struct peer_arena {
    uint8_t instance[NXC__INSTANCE_LEN];
    pid_t pid;
    int32_t fd_no;
    arena_t *map;  /* NULL: unused */
    int notify_fd; /* our copy of the owner's eventfd (-1: none; send frames) */
} peer_arena_t;
#define PEER_ARENAS 16

/* A peer's nxc_mem_alloc() memory, mapped here (active side): found again
 * by process, fd number and inode, so a reused fd number is a new entry. */
typedef struct peer_mem {
    pid_t pid;
    int32_t fd_no;
    uint64_t ino;
    uint8_t *map; /* NULL: unused */
    size_t len;
} peer_mem_t;
#define PEER_MEMS 16

/* What large direct copies have cost lately, per size class (512 KiB,
 * 1 MiB, ... 64 MiB and more): nanoseconds per byte, a moving average of
 * copies made whole [0] and split with a copier thread [1] (0: none yet). */
#define SPLIT_CLASSES 8
#define SPLIT_PROBE 16 /* one copy in this many goes the way that cost more lately */
typedef struct split_cost {
    double ns_per_byte[2];
    uint32_t copies;
} split_cost_t;

typedef struct shm_tp {
    stream_tp_t s;
    char sock_name[64];
    size_t inline_max;
    pid_t pid; /* this process, as records name readers and writers */
    int nthreads;
    pthread_t threads[MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *jobs, *jobs_tail;
    int idle; /* copier threads waiting for a job */
    group_t *done;
    bool quit;
    int efd; /* copier -> progress: groups are done */
    /* direct access, owner side: the arena (-1/NULL: none), its free
     * records, and the op behind each record in use */
    int arena_fd;
    arena_t *arena;
    int notify_fd; /* the arena's doorbell (-1: none) */
    /* The doorbell was armed since it was last drained, so a peer may have
     * rung it (connector lock) */
    bool bell_armed;
    uint32_t free_slots[ARENA_RECORDS];
    uint32_t nfree;
    nxc_op_t *slot_op[ARENA_RECORDS];
    /* direct access, active side: the arenas of peers, mapped on first use */
    peer_arena_t peers[PEER_ARENAS];
    unsigned next_evict;
    peer_mem_t peer_mems[PEER_MEMS];
    unsigned next_mem_evict;
    split_cost_t split[SPLIT_CLASSES]; /* (connector lock) */
} shm_tp_t;

static inline shm_tp_t *shm_of(stream_tp_t *t) {
    return (shm_tp_t *)t;
}

/* --- direct.c --------------------------------------------------------------------------- */

/* The arena: made at create (false: no direct access, grants still work),
 * with its doorbell unless `doorbell` is false (peers then send frames);
 * unmapped at destroy with the peers' arenas. */
bool nxc__shm_arena_open(shm_tp_t *t, const uint8_t *instance, bool doorbell);
void nxc__shm_arena_close(shm_tp_t *t);
/* Complete the ops peers finished directly: the doorbell rang (watched
 * fd: drained), or a progress pass found a bit set (drained only when it
 * was armed since it was last drained: only then can it have rung). */
void nxc__shm_collect_rung(stream_tp_t *stream);
void nxc__shm_collect(shm_tp_t *t);
/* Did a peer finish an op directly that collect() has not seen? Memory
 * only: any thread, no lock. */
bool nxc__shm_finished_any(const shm_tp_t *t);
/* Before the owner sleeps: from here on a peer that finishes rings; false
 * if one finished meanwhile (progress again instead). */
bool nxc__shm_doorbell_arm(shm_tp_t *t);
nxc_status_t nxc__shm_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p);
void nxc__shm_retire(nxc__tp_t *tp, nxc_op_t *op, void *state);
bool nxc__shm_direct_busy(nxc__tp_t *tp, nxc_op_t *op, void *state);
void nxc__shm_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state);
/* process_vm_readv (write: process_vm_writev) between our `mine` and
 * process `pid`'s `theirs`: every copy shm makes. */
static inline ssize_t nxc__shm_vm_copy(pid_t pid, bool write, const struct iovec *mine, size_t nm,
                                       const struct iovec *theirs, size_t nt) {
    return write ? process_vm_writev(pid, mine, nm, theirs, nt, 0)
                 : process_vm_readv(pid, mine, nm, theirs, nt, 0);
}

/* Bytes [from, to) of the `n` side-by-side entries of `mine` and `theirs`
 * (one segment each), copied as above; returns what the call moved. */
ssize_t nxc__shm_vm_copy_part(pid_t pid, bool write, const struct iovec *mine,
                              const struct iovec *theirs, size_t n, uint64_t from, uint64_t to);

/* Queue `half` for an idle copier thread; false (nothing queued) when none
 * is idle. shm.c. */
bool nxc__shm_post_half(shm_tp_t *t, half_copy_t *half);
/* Take `half` back if no copier has started it (true: the caller copies it
 * itself); false: a copier has it, and sets `done` when it is over. */
bool nxc__shm_take_back_half(shm_tp_t *t, half_copy_t *half);
/* The size class of a direct copy of `total` bytes (at least SPLIT_MIN). */
unsigned nxc__shm_split_class(uint64_t total);
/* Split the next copy of this class? The way that cost less lately, but
 * every SPLIT_PROBE-th copy the other way, to follow a host whose load
 * changes; each way is tried once first. */
bool nxc__shm_split_choose(split_cost_t *cost);
/* A copy of `total` bytes, split or whole, took `ns`. */
void nxc__shm_split_record(split_cost_t *cost, bool split, uint64_t total, uint64_t ns);
/* Move op's bytes directly (a read or a write); false: take the grant path
 * instead (which also gives the passive side's reason if access is refused). */
bool nxc__shm_direct(shm_tp_t *t, nxc_op_t *op, const nxc__md_section_t *sec);
/* A peer process's connection closed: if the process is gone, the ops it
 * was writing directly fail (their memory is partly written). */
void nxc__shm_claimer_lost(stream_tp_t *stream, pid_t pid);

#endif
