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

typedef struct job {
    struct job *next;
    group_t *group;
    uint64_t from, to; /* byte range of the stripe */
} job_t;

typedef struct shm_tp {
    stream_tp_t s;
    char sock_name[64];
    size_t inline_max;
    int nthreads;
    pthread_t threads[MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *jobs, *jobs_tail;
    group_t *done;
    bool quit;
    int efd; /* copier -> progress: groups are done */
} shm_tp_t;

static inline shm_tp_t *shm_of(stream_tp_t *t) {
    return (shm_tp_t *)t;
}

/* --- direct.c --------------------------------------------------------------------------- */

nxc_status_t nxc__shm_expose(nxc__tp_t *tp, nxc_op_t *op, nxc__md_section_t *sec, void **state_p);
void nxc__shm_retire(nxc__tp_t *tp, nxc_op_t *op, void *state);
void nxc__shm_unexpose(nxc__tp_t *tp, nxc_op_t *op, void *state);
/* Read op's bytes directly; false: take the grant path instead. */
bool nxc__shm_direct_read(shm_tp_t *t, nxc_op_t *op, const nxc__md_section_t *sec);

#endif
