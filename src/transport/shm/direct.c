/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm transport's direct reads.
 *
 * A readable with few buffers also gets an access record in the passive
 * process's memory; its address and a random tag are the first descriptor's
 * shm key. A reader then needs no grant round trip: it reads the record
 * (live, tag, secret, notification key, and the metadata's descriptors being
 * exactly the op's buffers, so the read moves the whole op), copies,
 * reads the record again (still live: the bytes were the op's while it
 * copied), and sends READ_DONE, which completes the passive op. The passive
 * side clears `live` before the op ends in any way (retire) and before its
 * buffers go back to their owner, so a copy that overlaps the end fails its
 * second check. Writes keep the grant: a writer cannot be stopped halfway.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "transport/segment.h"
#include "transport/shm/shm_internal.h"
#include "util/sys.h"

#define RECORD_MAGIC 0x4452434552584e00ull /* "\0NXRECRD" */
#define RECORD_RANGES 8

typedef struct record {
    uint64_t magic;
    uint64_t tag;
    volatile uint64_t live;
    uint8_t secret[NXC__SECRET_LEN];
    char key[NXC_KEY_MAX + 1]; /* the op's notification key: READ_DONE names it */
    uint8_t pad0[7];
    uint32_t nranges;
    uint32_t pad;
    nxc__range_t ranges[RECORD_RANGES];
} record_t;

typedef struct record_key {
    uint64_t addr, tag;
} record_key_t;

nxc_status_t nxc__shm_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p) {
    shm_tp_t *t = (shm_tp_t *)tp;
    *state_p = NULL;
    nxc_status_t st = nxc__stream_section(&t->s, op, sec, t->sock_name);
    if (st != NXC_OK) return st;
    size_t nbufs;
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    if (nxc__op_kind(op) != NXC_OP_READABLE || nbufs > RECORD_RANGES) return NXC_OK;
    /* record + its key in one allocation: the key bytes must live as long */
    struct {
        record_t r;
        record_key_t k;
    } *e = calloc(1, sizeof *e);
    if (!e) return NXC_OK; /* no direct reads for this op: grants still work */
    e->r.magic = RECORD_MAGIC;
    nxc__random(&e->r.tag, sizeof e->r.tag);
    memcpy(e->r.secret, nxc__op_secret(op), NXC__SECRET_LEN);
    memcpy(e->r.key, nxc__op_key(op), sizeof e->r.key);
    e->r.nranges = (uint32_t)nbufs;
    for (size_t i = 0; i < nbufs; i++)
        e->r.ranges[i] = (nxc__range_t){(uintptr_t)bufs[i].ptr, bufs[i].size};
    __atomic_store_n(&e->r.live, 1, __ATOMIC_RELEASE);
    e->k = (record_key_t){(uintptr_t)&e->r, e->r.tag};
    sec->keys[0] = (nxc__bytes_t){(const uint8_t *)&e->k, sizeof e->k};
    *state_p = e;
    return NXC_OK;
}

void nxc__shm_retire(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    record_t *r = state;
    __atomic_store_n(&r->live, 0, __ATOMIC_SEQ_CST);
}

void nxc__shm_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state) {
    record_t *r = state;
    if (!r) return;
    __atomic_store_n(&r->live, 0, __ATOMIC_SEQ_CST);
    r->magic = 0;
    free(r);
}

/* Does the record (copied from the owner) allow this read? The metadata's
 * key must be the op's, or the owner would drop our READ_DONE and never
 * complete; its descriptors must be exactly the op's buffers, so that
 * completing means the whole op was read (the planner already made the
 * local total equal the remote one). */
static bool record_valid(const record_t *r, const record_key_t *key, const nxc_op_t *op) {
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    if (r->magic != RECORD_MAGIC || r->tag != key->tag || r->live != 1 ||
        r->nranges > RECORD_RANGES || r->nranges != md->ndesc ||
        sodium_memcmp(r->secret, md->secret, NXC__SECRET_LEN) ||
        strncmp(r->key, nxc__op_key(op), sizeof r->key))
        return false;
    for (size_t i = 0; i < md->ndesc; i++)
        if (md->descs[i].addr != r->ranges[i].addr || md->descs[i].size != r->ranges[i].len)
            return false;
    return true;
}

static bool read_record(pid_t pid, const record_key_t *key, record_t *r) {
    struct iovec l = {r, sizeof *r}, rv = {(void *)(uintptr_t)key->addr, sizeof *r};
    return process_vm_readv(pid, &l, 1, &rv, 1, 0) == (ssize_t)sizeof *r;
}

/* Read op's bytes directly; false: take the grant path instead (which also
 * gives the passive side's reason if access is refused). */
bool nxc__shm_direct_read(shm_tp_t *t, nxc_op_t *op, const nxc__md_section_t *sec) {
    const nxc__metadata_t *md = nxc__op_peer_md(op);
    size_t nsegs, nbufs;
    const nxc__seg_t *segs = nxc__op_segs(op, &nsegs);
    const nxc_desc_t *bufs = nxc__op_local(op, &nbufs);
    uint64_t total = nxc__op_total(op);
    if (nxc__op_kind(op) != NXC_OP_READ || total > t->inline_max || nsegs > IOVS ||
        sec->keys[0].len != sizeof(record_key_t))
        return false;
    /* the process our connection to this connector was vetted against, never
     * the pid the metadata claims */
    pid_t pid = nxc__stream_peer_pid(&t->s, md->instance);
    if (pid <= 0) return false;
    record_key_t key;
    memcpy(&key, sec->keys[0].data, sizeof key);
    record_t r;
    if (!read_record(pid, &key, &r) || !record_valid(&r, &key, op)) return false;
    struct iovec l[IOVS], rv[IOVS];
    for (size_t i = 0; i < nsegs; i++) {
        const nxc__seg_t *seg = &segs[i];
        l[i] = (struct iovec){nxc__seg_local(seg, bufs, 0), seg->len};
        rv[i] = (struct iovec){(void *)(uintptr_t)nxc__seg_remote(seg, md, 0), seg->len};
    }
    ssize_t got = process_vm_readv(pid, l, nsegs, rv, nsegs, 0);
    if (got != (ssize_t)total || !read_record(pid, &key, &r) || !record_valid(&r, &key, op))
        return false;
    if (!nxc__stream_send_read_done(&t->s, md->instance, nxc__op_key(op), md->secret)) return false;
    nxc__op_finish(op, NXC_OK, "%s", "");
    return true;
}
