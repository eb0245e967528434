/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm transport's direct access: a small op read or written without a
 * grant round trip, inside the initiator's begin call.
 *
 * The arena. Each shm transport keeps its access records in a memfd
 * (sealed against resizing) that peers on the host map as well: a peer opens
 * /proc/<pid>/fd/<n> of the process its vetted connection leads to, which
 * the kernel allows exactly where it allows process_vm_readv. A readable or
 * writable with few buffers gets a record (tag, secret, notification key,
 * buffers) and a state word both sides change with atomic operations; the
 * record's fd number, index and tag are the first descriptor's shm key.
 *
 * Read: copy the record and check it (LIVE, tag, secret, key, and the
 * metadata's descriptors exactly the op's buffers, so the read moves the
 * whole op), process_vm_readv the bytes, turn the state word from what it
 * was into READ (the same word: the bytes were the op's all along), tell
 * the owner.
 *
 * Write: copy and check the record the same way, claim it (LIVE -> CLAIMED
 * with this pid, from that very state word: nothing changed since the copy),
 * process_vm_writev the bytes, mark it WRITTEN, tell the owner. A claim is
 * what makes writes safe without a grant: the owner, when the op ends in
 * any way (retire, before the end is visible), turns LIVE into DEAD, so no
 * write starts after it; a write it finds CLAIMED is under way, and the
 * core waits for it as it waits for a grant (direct_busy), up to the drain
 * bound, unless the claiming process is gone. A claimer that dies mid-write
 * fails the op PEER_FAILED when its connection closes: its memory is partly
 * written.
 *
 * Telling the owner: the arena's doorbell (arena_t), whose eventfd a peer
 * takes with pidfd_getfd (the same permission process_vm_readv needs) when
 * it maps the arena; one ring wakes the owner for every op finished before
 * it looks. Where that is refused (seccomp, an older kernel), a READ_DONE
 * or WRITE_DONE frame on the connection.
 *
 * Memory from nxc_mem_alloc(): when every buffer of the op lies in one such
 * allocation, the record names its memfd (number, inode, address). A peer
 * maps it once, through /proc as the arena, and reads or writes the op's
 * bytes with memcpy instead of a system call: the same checks, claims and
 * state changes around the copy, so access ends with the op exactly as
 * before.
 *
 * Anything that does not fit (a record taken, a check failing, no
 * connection yet) falls back to the grant path, which gives the owner's
 * reason when access is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/mem.h"
#include "transport/segment.h"
#include "transport/shm/shm_internal.h"
#include "util/eventfd.h"
#include "util/log.h"
#include "util/sys.h"
#include "util/time.h"

/* The owner's hold on one record (the expose() state). */
typedef struct direct_op {
    uint32_t slot;
    record_key_t key; /* the bytes of the metadata key: they live as long */
} direct_op_t;

/* --- the arena, owner side ----------------------------------------------------------- */

bool nxc__shm_arena_open(shm_tp_t *t, const uint8_t *instance, bool doorbell) {
    t->arena_fd = memfd_create("nxc-shm-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (t->arena_fd < 0) return false;
    if (ftruncate(t->arena_fd, sizeof(arena_t)) ||
        fcntl(t->arena_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
        close(t->arena_fd);
        t->arena_fd = -1;
        return false;
    }
    void *map = mmap(NULL, sizeof(arena_t), PROT_READ | PROT_WRITE, MAP_SHARED, t->arena_fd, 0);
    if (map == MAP_FAILED) {
        close(t->arena_fd);
        t->arena_fd = -1;
        return false;
    }
    t->arena = map;
    t->notify_fd = doorbell ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
    t->arena->notify_fd = t->notify_fd;
    t->arena->magic = ARENA_MAGIC;
    memcpy(t->arena->instance, instance, NXC__INSTANCE_LEN);
    t->arena->nrecords = ARENA_RECORDS;
    for (uint32_t i = 0; i < ARENA_RECORDS; i++)
        t->free_slots[i] = ARENA_RECORDS - 1 - i;
    t->nfree = ARENA_RECORDS;
    return true;
}

static void peer_arena_drop(peer_arena_t *p) {
    if (!p->map) return;
    munmap(p->map, sizeof(arena_t));
    if (p->notify_fd >= 0) close(p->notify_fd);
    p->map = NULL;
    p->notify_fd = -1;
}

static void peer_mem_drop(peer_mem_t *m) {
    if (m->map) munmap(m->map, m->len);
    *m = (peer_mem_t){0};
}

void nxc__shm_arena_close(shm_tp_t *t) {
    for (unsigned i = 0; i < PEER_ARENAS; i++)
        peer_arena_drop(&t->peers[i]);
    for (unsigned i = 0; i < PEER_MEMS; i++)
        peer_mem_drop(&t->peer_mems[i]);
    if (t->arena) munmap(t->arena, sizeof(arena_t));
    if (t->arena_fd >= 0) close(t->arena_fd);
    if (t->notify_fd >= 0) close(t->notify_fd);
    t->arena = NULL;
    t->arena_fd = t->notify_fd = -1;
}

/* The op in `slot` if a peer finished it (the record says READ or WRITTEN:
 * peers change only the phase, so it is the phase of this op, not of an op
 * the slot held before), with the kind it needs. */
static nxc_op_t *finished_op(shm_tp_t *t, unsigned slot, nxc_op_kind_t *kind) {
    record_t *r = &t->arena->records[slot];
    unsigned phase = STATE_PHASE(atomic_load(&r->state));
    *kind = phase == PHASE_READ ? NXC_OP_READABLE : NXC_OP_WRITABLE;
    bool finished = phase == PHASE_READ || phase == PHASE_WRITTEN;
    return finished && r->kind == (uint32_t)*kind ? t->slot_op[slot] : NULL;
}

/* Take the bits set in `word` (zero when none, without a write). */
static uint64_t take_bits(_Atomic uint64_t *word) {
    return atomic_load(word) ? atomic_exchange(word, 0) : 0;
}

/* Complete the ops whose bits are set in `done` word `w`. */
static void collect_word(shm_tp_t *t, unsigned w) {
    for (uint64_t bits = take_bits(&t->arena->done[w]); bits; bits &= bits - 1) {
        nxc_op_kind_t kind;
        nxc_op_t *op = finished_op(t, w * 64 + (unsigned)__builtin_ctzll(bits), &kind);
        /* a bit for an op that ended meanwhile (or a slot reused) is moot */
        if (op) nxc__complete_direct_op(t->s.base.c, &t->s.base, op, kind);
    }
}

/* Complete the ops whose bits are set in the arena's done bitmap. A
 * summary bit is taken before the word it names: a peer sets its word's
 * bit first, so a bit set after the look is summarised again after it
 * (and rings, if the owner armed meanwhile). */
static void collect_bits(shm_tp_t *t) {
    for (unsigned s = 0; s < DONE_SUMMARY_WORDS; s++)
        for (uint64_t words = take_bits(&t->arena->done_summary[s]); words; words &= words - 1)
            collect_word(t, s * 64 + (unsigned)__builtin_ctzll(words));
}

/* Drained before the bits are looked at: a ring after it is for a bit set
 * after the look, and wakes the loop again. */
static void drain_doorbell(shm_tp_t *t) {
    t->bell_armed = false;
    nxc__eventfd_drain(t->notify_fd);
}

void nxc__shm_collect_rung(stream_tp_t *stream) {
    shm_tp_t *t = shm_of(stream);
    drain_doorbell(t);
    collect_bits(t);
}

/* While the owner's loop keeps going (busy, or lingering) the doorbell
 * stays unarmed and peers ring no one: draining it at every op then cost
 * the owner a read() system call an op (4 KiB ops). */
void nxc__shm_collect(shm_tp_t *t) {
    if (t->bell_armed) drain_doorbell(t);
    collect_bits(t);
}

bool nxc__shm_finished_any(const shm_tp_t *t) {
    if (!t->arena) return false;
    for (unsigned s = 0; s < DONE_SUMMARY_WORDS; s++)
        if (atomic_load(&t->arena->done_summary[s])) return true;
    return false;
}

bool nxc__shm_doorbell_arm(shm_tp_t *t) {
    if (!t->arena) return true;
    t->bell_armed = true;
    /* seq_cst, as the peers' bit and exchange: a peer that sets its bit
     * after the look below finds `wake` 0 and rings */
    atomic_store(&t->arena->wake, 0);
    return !nxc__shm_finished_any(t);
}

/* Name in `r` the nxc_mem_alloc() memory that holds all of its ranges,
 * if one does. */
static void record_name_mem(shm_tp_t *t, record_t *r) {
    nxc__shared_mem_t sh;
    r->mem_fd = -1;
    r->mem_ino = r->mem_base = 0;
    if (!nxc__mem_shared_find(t->s.base.c, r->ranges[0].addr, r->ranges[0].len, &sh)) return;
    for (uint32_t i = 1; i < r->nranges; i++)
        if (!nxc__span_within(r->ranges[i].addr, r->ranges[i].len, sh.base, sh.len)) return;
    r->mem_fd = sh.fd;
    r->mem_ino = sh.ino;
    r->mem_base = sh.base;
}

nxc_status_t nxc__shm_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p) {
    shm_tp_t *t = (shm_tp_t *)tp;
    *state_p = NULL;
    nxc_status_t st = nxc__stream_section(&t->s, op, sec, t->sock_name);
    size_t nbufs;
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    if (st != NXC_OK || !t->arena || t->nfree == 0 || nbufs > RECORD_RANGES) return st;
    direct_op_t *d = calloc(1, sizeof *d);
    if (!d) return NXC_OK; /* no direct access for this op: grants still work */
    d->slot = t->free_slots[--t->nfree];
    record_t *r = &t->arena->records[d->slot];
    /* The phase is FREE (a new record, or unexpose() freed it): nobody
     * trusts the fields until the state turns LIVE with the new seq. */
    uint64_t seq = STATE_SEQ(atomic_load(&r->state)) + 1;
    nxc__random(&r->tag, sizeof r->tag);
    memcpy(r->secret, nxc__op_secret(op), NXC__SECRET_LEN);
    memcpy(r->key, nxc__op_key(op), sizeof r->key);
    r->kind = (uint32_t)nxc__op_kind(op);
    r->nranges = (uint32_t)nbufs;
    for (size_t i = 0; i < nbufs; i++)
        r->ranges[i] = (nxc__range_t){(uintptr_t)bufs[i].ptr, bufs[i].size};
    record_name_mem(t, r);
    atomic_store_explicit(&r->state, STATE(seq, PHASE_LIVE, 0), memory_order_release);
    d->key = (record_key_t){t->arena_fd, d->slot, r->tag};
    sec->keys[0] = (nxc__bytes_t){(const uint8_t *)&d->key, sizeof d->key};
    t->slot_op[d->slot] = op;
    *state_p = d;
    return NXC_OK;
}

/* No new access from now on: LIVE turns DEAD. A claimed write is left to
 * finish (direct_busy() tells the core). */
void nxc__shm_retire(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    shm_tp_t *t = (shm_tp_t *)tp;
    direct_op_t *d = state;
    record_t *r = &t->arena->records[d->slot];
    uint64_t s = atomic_load(&r->state);
    while (STATE_PHASE(s) == PHASE_LIVE &&
           !atomic_compare_exchange_weak(&r->state, &s, STATE(STATE_SEQ(s), PHASE_DEAD, 0)))
        ;
}

bool nxc__shm_direct_busy(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    shm_tp_t *t = (shm_tp_t *)tp;
    direct_op_t *d = state;
    uint64_t s = atomic_load(&t->arena->records[d->slot].state);
    return STATE_PHASE(s) == PHASE_CLAIMED && nxc__process_alive(STATE_PID(s));
}

void nxc__shm_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    shm_tp_t *t = (shm_tp_t *)tp;
    direct_op_t *d = state;
    record_t *r = &t->arena->records[d->slot];
    /* A new seq: a writer still holding a claim past the drain bound fails
     * its final step and reports no success; nobody matches an old key. */
    uint64_t s = atomic_load(&r->state);
    atomic_store(&r->state, STATE(STATE_SEQ(s) + 1, PHASE_FREE, 0));
    t->slot_op[d->slot] = NULL;
    t->free_slots[t->nfree++] = d->slot;
    free(d);
}

void nxc__shm_claimer_lost(stream_tp_t *stream, pid_t pid) {
    shm_tp_t *t = shm_of(stream);
    if (!t->arena || pid <= 0 || nxc__process_alive(pid)) return;
    for (uint32_t i = 0; i < ARENA_RECORDS; i++) {
        record_t *r = &t->arena->records[i];
        uint64_t s = atomic_load(&r->state);
        if (!t->slot_op[i] || STATE_PHASE(s) != PHASE_CLAIMED || STATE_PID(s) != pid) continue;
        atomic_compare_exchange_strong(&r->state, &s, STATE(STATE_SEQ(s), PHASE_DEAD, 0));
        nxc__op_finish(t->slot_op[i], NXC_ERR_PEER_FAILED,
                       "shm: process %d died while writing the op's memory directly", (int)pid);
    }
}

/* --- the peer's side ------------------------------------------------------------------ */

/* Our copy of the doorbell of the arena `a` that process `pidfd` holds
 * (-1: none; the owner is then told with frames). */
static int peer_doorbell(int pidfd, const arena_t *a) {
    int fd = pidfd >= 0 && a->notify_fd >= 0 ? pidfd_getfd(pidfd, a->notify_fd, 0) : -1;
    if (fd < 0) return -1;
    static const char eventfd_link[] = "anon_inode:[eventfd]";
    char link[sizeof eventfd_link], path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link);
    /* an eventfd, or nothing: never ring some other file */
    if (n != (ssize_t)sizeof eventfd_link - 1 || memcmp(link, eventfd_link, (size_t)n)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Process `pid`'s file `fd_no` (an arena, or nxc_mem_alloc() memory),
 * opened through /proc and mapped here whole, if it is a regular file
 * sealed against shrinking (the owner cannot make our loads fault) of
 * `want_size` bytes (0: any) and inode `want_ino` (0: any); its size in
 * *len_p. NULL if it cannot be. */
static void *map_peer_file(pid_t pid, int32_t fd_no, size_t want_size, uint64_t want_ino,
                           size_t *len_p) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, (int)fd_no);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    void *map = MAP_FAILED;
    if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (!want_size || st.st_size == (off_t)want_size) &&
        (!want_ino || (uint64_t)st.st_ino == want_ino) && seals >= 0 && (seals & F_SEAL_SHRINK))
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return NULL;
    *len_p = (size_t)st.st_size;
    return map;
}

/* The arena of connector `instance` that is process `pid`'s fd `fd_no`,
 * mapped here and checked; NULL if it cannot be. */
static arena_t *map_arena(const uint8_t *instance, pid_t pid, int32_t fd_no) {
    size_t len;
    arena_t *a = map_peer_file(pid, fd_no, sizeof(arena_t), 0, &len);
    if (a && (a->magic != ARENA_MAGIC || memcmp(a->instance, instance, NXC__INSTANCE_LEN))) {
        munmap(a, sizeof(arena_t));
        a = NULL;
    }
    return a;
}

/* The arena of the owner connector `instance`, held by process `pid`, with
 * its doorbell (mapped on first use); NULL if it cannot be reached. */
static peer_arena_t *peer_arena(shm_tp_t *t, const uint8_t *instance, pid_t pid, int32_t fd_no) {
    for (unsigned i = 0; i < PEER_ARENAS; i++) {
        peer_arena_t *p = &t->peers[i];
        if (p->map && p->pid == pid && p->fd_no == fd_no &&
            !memcmp(p->instance, instance, NXC__INSTANCE_LEN))
            return p;
    }
    /* The pidfd first: the doorbell then comes from the process the arena
     * was checked in, even if the pid were reused in between. */
    int pidfd = pidfd_open(pid, 0);
    arena_t *a = map_arena(instance, pid, fd_no);
    int bell = a ? peer_doorbell(pidfd, a) : -1;
    if (pidfd >= 0) close(pidfd);
    if (!a) return NULL;
    peer_arena_t *p = &t->peers[t->next_evict++ % PEER_ARENAS];
    peer_arena_drop(p);
    *p = (peer_arena_t){.pid = pid, .fd_no = fd_no, .map = a, .notify_fd = bell};
    memcpy(p->instance, instance, NXC__INSTANCE_LEN);
    return p;
}

/* The owner's nxc_mem_alloc() memory that `r` names, mapped here on first
 * use (checked to be that very file); NULL if it cannot be. */
static peer_mem_t *peer_mem(shm_tp_t *t, pid_t pid, const record_t *r) {
    for (unsigned i = 0; i < PEER_MEMS; i++) {
        peer_mem_t *m = &t->peer_mems[i];
        if (m->map && m->pid == pid && m->fd_no == r->mem_fd && m->ino == r->mem_ino) return m;
    }
    size_t len;
    uint8_t *map = r->mem_ino ? map_peer_file(pid, r->mem_fd, 0, r->mem_ino, &len) : NULL;
    if (!map) return NULL;
    peer_mem_t *m = &t->peer_mems[t->next_mem_evict++ % PEER_MEMS];
    peer_mem_drop(m);
    *m = (peer_mem_t){.pid = pid, .fd_no = r->mem_fd, .ino = r->mem_ino, .map = map, .len = len};
    return m;
}

/* Does the record (copied from the owner) allow this op? A read needs a
 * readable, a write a writable (whatever the metadata says). The metadata's
 * key must be the op's, or the owner would drop our READ/WRITE_DONE and
 * never complete; its descriptors must be exactly the op's buffers, so that
 * completing means the whole op moved (the planner already made the local
 * total equal the remote one). */
static bool record_valid(const record_t *r, const record_key_t *key, const nxc_op_t *op) {
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    nxc_op_kind_t need = nxc__op_kind(op) == NXC_OP_READ ? NXC_OP_READABLE : NXC_OP_WRITABLE;
    if (r->tag != key->tag || r->kind != (uint32_t)need || r->nranges > RECORD_RANGES ||
        r->nranges != md->ndesc || sodium_memcmp(r->secret, md->secret, NXC__SECRET_LEN) ||
        strncmp(r->key, nxc__op_key(op), sizeof r->key))
        return false;
    for (size_t i = 0; i < md->ndesc; i++)
        if (md->descs[i].addr != r->ranges[i].addr || md->descs[i].size != r->ranges[i].len)
            return false;
    return true;
}

/* The record an op may use directly, its state word as the copy was taken,
 * and the process to copy with. */
typedef struct direct_access {
    pid_t pid;
    peer_arena_t *owner;
    uint32_t slot;
    _Atomic uint64_t *state;
    uint64_t seen;
    peer_mem_t *mem; /* the op's memory mapped here, or NULL: copy by system call */
    uint64_t mem_base;
} direct_access_t;

static bool direct_open(shm_tp_t *t, nxc_op_t *op, const nxc__md_section_t *sec,
                        direct_access_t *acc) {
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs;
    nxc__op_segs(op, &nsegs);
    if (nxc__op_total(op) > t->inline_max || nsegs > IOVS ||
        sec->keys[0].len != sizeof(record_key_t))
        return false;
    /* the process our connection to this connector was vetted against, never
     * the pid the metadata claims */
    acc->pid = nxc__stream_peer_pid(&t->s, md->instance);
    if (acc->pid <= 0) return false;
    record_key_t key;
    memcpy(&key, sec->keys[0].data, sizeof key);
    acc->owner =
        key.slot < ARENA_RECORDS ? peer_arena(t, md->instance, acc->pid, key.arena_fd) : NULL;
    if (!acc->owner) return false;
    acc->slot = key.slot;
    record_t *shared = &acc->owner->map->records[key.slot], copy;
    acc->state = &shared->state;
    /* A seqlock read: the fields hold for the state word seen before the
     * copy if it is the same after it (the owner rewrites them only under a
     * new seq). The closing check is a compare-and-swap that writes back
     * what it finds: it orders the copy's reads before it as the usual
     * acquire fence would, and ThreadSanitizer, which does not model
     * fences, understands it. */
    acc->seen = atomic_load_explicit(acc->state, memory_order_acquire);
    memcpy(&copy, shared, sizeof copy);
    uint64_t now = acc->seen;
    if (STATE_PHASE(acc->seen) != PHASE_LIVE ||
        !atomic_compare_exchange_strong(acc->state, &now, acc->seen) ||
        !record_valid(&copy, &key, op))
        return false;
    acc->mem = copy.mem_fd >= 0 ? peer_mem(t, acc->pid, &copy) : NULL;
    acc->mem_base = copy.mem_base;
    return true;
}

/* The op's segments as iovecs on both sides; returns how many. */
static size_t direct_iovs(nxc_op_t *op, struct iovec *mine, struct iovec *theirs) {
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    for (size_t i = 0; i < nsegs; i++) {
        mine[i] = (struct iovec){nxc__seg_local(&segs[i], bufs, 0), segs[i].len};
        theirs[i] =
            (struct iovec){(void *)(uintptr_t)nxc__seg_remote(&segs[i], md, 0), segs[i].len};
    }
    return nsegs;
}

/* Tell the owner the op moved directly (its record says READ or WRITTEN):
 * through the arena's doorbell, else with a READ_DONE or WRITE_DONE frame. */
static bool tell_owner(shm_tp_t *t, nxc_op_t *op, const direct_access_t *acc, uint8_t type) {
    arena_t *a = acc->owner->map;
    if (acc->owner->notify_fd >= 0) {
        nxc__shm_mark_done(a, acc->slot);
        /* after the bits: an owner that clears `wake` later still sees them */
        if (!atomic_exchange(&a->wake, 1)) nxc__eventfd_ring(acc->owner->notify_fd);
        return true;
    }
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    return nxc__stream_send_direct_done(&t->s, md->instance, nxc__op_key(op), md->secret, type);
}

/* Below this a copy is never split: posting the half and waking a copier
 * thread cost 12 us on one host and 14-27 us on another, against the copy
 * time / 2 the half saves (at 256 KiB the two were even on the first). */
#define SPLIT_MIN (512u << 10)

/* Whether a split pays depends on the host, so each copy's cost is kept
 * and the cheaper way taken. Where waking a thread is cheap and one
 * thread's copy is bound by its core, two halves beat one copy (1 MiB at
 * 1.1-1.4x the bare copy on one host); where the wake-up is a slow
 * cross-CPU interrupt (14-27 us in a paravirtualized VM) or the copy is
 * bound by the memory both halves share, the split lost (1 MiB at 0.6-0.7x,
 * whole at 0.85-1.0x). */
unsigned nxc__shm_split_class(uint64_t total) {
    unsigned c = 0;
    for (uint64_t size = (uint64_t)SPLIT_MIN * 2; size <= total && c < SPLIT_CLASSES - 1; size *= 2)
        c++;
    return c;
}

bool nxc__shm_split_choose(split_cost_t *cost) {
    uint32_t n = ++cost->copies;
    if (cost->ns_per_byte[1] == 0) return true;
    if (cost->ns_per_byte[0] == 0) return false;
    bool split = cost->ns_per_byte[1] < cost->ns_per_byte[0];
    return n % SPLIT_PROBE == 0 ? !split : split;
}

void nxc__shm_split_record(split_cost_t *cost, bool split, uint64_t total, uint64_t ns) {
    double *avg = &cost->ns_per_byte[split], v = (double)ns / (double)total;
    if (*avg == 0) {
        *avg = v;
        return;
    }
    /* one copy the scheduler held up moves the average by a bounded step */
    if (v > 4 * *avg) v = 4 * *avg;
    *avg += (v - *avg) / 8;
}

/* This thread's half of a copy whose second half `half` was posted: the
 * copier's half taken back if no copier started it, else waited for (it
 * lives on this stack). True when every byte moved. */
static bool split_copy(shm_tp_t *t, half_copy_t *half) {
    const struct iovec *mine = half->mine, *theirs = half->theirs;
    uint64_t first = half->from;
    bool ok = nxc__shm_vm_copy_part(half->pid, half->write, mine, theirs, half->n, 0, first) ==
              (ssize_t)first;
    if (nxc__shm_take_back_half(t, half))
        half->moved = nxc__shm_vm_copy_part(half->pid, half->write, mine, theirs, half->n,
                                            half->from, half->to);
    else
        while (!atomic_load_explicit(&half->done, memory_order_acquire))
            sched_yield(); /* the other half is a copy under way: it ends */
    return ok && half->moved == (ssize_t)(half->to - half->from);
}

/* Move all `total` bytes of the `n` side-by-side entries; true when every
 * byte moved. From SPLIT_MIN on, where splitting has paid lately and a
 * copier thread is idle, the copier moves the second half while this
 * thread moves the first (a half no copier started by then, on a host with
 * no free core, is moved here). */
static bool direct_copy(shm_tp_t *t, pid_t pid, bool write, const struct iovec *mine,
                        const struct iovec *theirs, size_t n, uint64_t total) {
    if (total < SPLIT_MIN)
        return nxc__shm_vm_copy(pid, write, mine, n, theirs, n) == (ssize_t)total;
    split_cost_t *cost = &t->split[nxc__shm_split_class(total)];
    uint64_t t0 = nxc__now_ns();
    half_copy_t half = {.pid = pid,
                        .write = write,
                        .mine = mine,
                        .theirs = theirs,
                        .n = n,
                        .from = total / 2,
                        .to = total};
    bool split = nxc__shm_split_choose(cost) && nxc__shm_post_half(t, &half);
    bool ok = split ? split_copy(t, &half)
                    : nxc__shm_vm_copy(pid, write, mine, n, theirs, n) == (ssize_t)total;
    if (ok) nxc__shm_split_record(cost, split, total, nxc__now_ns() - t0);
    return ok;
}

/* The copy through the owner's memory mapped here: every entry of
 * `theirs` checked to lie inside the mapping first, then memcpy. */
static bool mapped_copy(const direct_access_t *acc, bool write, const struct iovec *mine,
                        const struct iovec *theirs, size_t n) {
    const peer_mem_t *m = acc->mem;
    for (size_t i = 0; i < n; i++)
        if (!nxc__span_within((uintptr_t)theirs[i].iov_base, theirs[i].iov_len, acc->mem_base,
                              m->len))
            return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t *there = m->map + ((uintptr_t)theirs[i].iov_base - acc->mem_base);
        if (write)
            memcpy(there, mine[i].iov_base, mine[i].iov_len);
        else
            memcpy(mine[i].iov_base, there, mine[i].iov_len);
    }
    return true;
}

/* Every byte of the op moved between the iovecs, by memcpy or system call. */
static bool access_copy(shm_tp_t *t, nxc_op_t *op, const direct_access_t *acc, bool write,
                        const struct iovec *mine, const struct iovec *theirs, size_t n) {
    if (acc->mem) return mapped_copy(acc, write, mine, theirs, n);
    return direct_copy(t, acc->pid, write, mine, theirs, n, nxc__op_total(op));
}

static bool direct_read(shm_tp_t *t, nxc_op_t *op, const direct_access_t *acc) {
    struct iovec mine[IOVS], theirs[IOVS];
    size_t n = direct_iovs(op, mine, theirs);
    bool moved = access_copy(t, op, acc, false, mine, theirs, n);
    /* still the same state: the op stayed live through the copy */
    uint64_t seen = acc->seen, read = STATE(STATE_SEQ(seen), PHASE_READ, t->pid);
    if (!moved || !atomic_compare_exchange_strong(acc->state, &seen, read)) return false;
    return tell_owner(t, op, acc, NXC__WIRE_READ_DONE);
}

static bool direct_write(shm_tp_t *t, nxc_op_t *op, const direct_access_t *acc) {
    uint64_t seen = acc->seen;
    uint64_t claimed = STATE(STATE_SEQ(seen), PHASE_CLAIMED, t->pid);
    if (!atomic_compare_exchange_strong(acc->state, &seen, claimed)) return false;
    struct iovec mine[IOVS], theirs[IOVS];
    size_t n = direct_iovs(op, mine, theirs);
    if (!access_copy(t, op, acc, true, mine, theirs, n)) {
        /* hand the claim back: the grant path retries */
        atomic_compare_exchange_strong(acc->state, &claimed, acc->seen);
        return false;
    }
    uint64_t written = STATE(STATE_SEQ(claimed), PHASE_WRITTEN, t->pid);
    if (!atomic_compare_exchange_strong(acc->state, &claimed, written)) {
        /* The owner gave the record up while we wrote (its drain bound
         * passed): the op is over for it, and the write must not count. */
        nxc__op_finish(op, NXC_ERR_REFUSED, "shm: the owner ended the op during the write");
        return true;
    }
    /* Not told: the grant path writes the same bytes again and completes. */
    return tell_owner(t, op, acc, NXC__WIRE_WRITE_DONE);
}

bool nxc__shm_direct(shm_tp_t *t, nxc_op_t *op, const nxc__md_section_t *sec) {
    direct_access_t acc;
    if (!direct_open(t, op, sec, &acc)) return false;
    bool moved =
        nxc__op_kind(op) == NXC_OP_READ ? direct_read(t, op, &acc) : direct_write(t, op, &acc);
    if (!moved) return false;
    nxc__op_finish(op, NXC_OK, "%s", ""); /* ignored when direct_write() ended it */
    return true;
}
