/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's command line: the configuration every part reads (cfg, set
 * by cli_parse before any role starts, read-only after) and the --help
 * text.
 */
#ifndef NXC_BENCH_CLI_H
#define NXC_BENCH_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_LIST 64 /* values in --block-sizes or --batch */

enum role { ROLE_NONE, ROLE_SELF, ROLE_TARGET, ROLE_INITIATOR };
enum opkind { OP_READ = 0, OP_WRITE = 1 };
enum fmt { FMT_NONE, FMT_JSON, FMT_CSV };

/* How both sides drive nxc: progress threads and sleeping waits (default);
 * --loop: no progress threads, each side sleeps in poll() on the
 * connector's fd beside its own and drives progress when it is readable (a
 * server's own event loop); --busy: no progress threads, waits spin. */
enum { WAIT_THREAD, WAIT_LOOP, WAIT_BUSY };

typedef struct cfg {
    enum role role;
    const char *listen; /* target: ADDR:PORT (default 127.0.0.1:18515) */
    const char *connect;
    int ops[2];
    int nops;
    uint64_t blocks[MAX_LIST];
    int nblocks;
    uint64_t batches[MAX_LIST];
    int nbatches;
    long iters, warmup, min_iters;
    uint64_t max_bytes; /* timed bytes per point */
    double point_time;  /* seconds of timed ops per point */
    int concurrency;
    const char *transport;
    bool check, prereg, quiet;
    bool alloc; /* the target's buffers from nxc_mem_alloc() */
    int wait;   /* how nxc is driven and waited for, WAIT_* (the target learns it at HELLO) */
    enum fmt fmt;
    const char *out_path;
    int progress; /* -1 auto (stderr is a tty) */
    int op_timeout_ms;
    int idle_timeout_s; /* target: longest wait for the initiator's next message */
    int timeout_s;      /* whole run, 0 = none */
    uint64_t max_mem;   /* buffer bytes per process and point */
    int round_max;
    int between_kib; /* --between: KiB the initiator sweeps between two ops */
    int cpus[2];     /* --cpus: the target's and the initiator's CPU; -1: unpinned */
    uint64_t seed;
    bool list_transports; /* --list-transports: print them and exit */
} cfg_t;

extern cfg_t cfg;

/* Fill cfg from the command line. Returns CLI_RUN to go on, or the exit
 * status when the command line is done with (--help, --version: 0; a bad
 * command line: 2, with the message printed). */
#define CLI_RUN (-1)
int cli_parse(int argc, char **argv);

/* The --help text (also printed, to stderr, when no role was given). */
void usage(FILE *f);

#endif
