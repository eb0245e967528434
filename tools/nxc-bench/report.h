/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's output: one row per point, as a table and as --json or
 * --csv rows, the statistics of a row, and the progress line.
 */
#ifndef NXC_BENCH_REPORT_H
#define NXC_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct row {
    int kind;
    uint64_t block, batch, opbytes;
    long iters, warmup;
    int concurrency;
    double gbps, seconds;
    double lat_p50, lat_p99, lat_min, lat_mean;
    double ntf_p50, ntf_p99, lag_p50;
    uint64_t mismatched;
    const char *transport;
    bool cut_short; /* --point-time stopped it early */
} row_t;

/* Where the table and the --json/--csv rows go (NULL: nowhere), and
 * whether progress is shown; main sets them before the initiator runs. */
extern FILE *table_out, *rows_out;
extern bool progress_on;

void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void progress_clear(void);

/* The row's latency, notification and lag statistics, in us, from the
 * timed ops' samples (sorted here); -1 where there are none. */
void row_stats(row_t *r, double *lat, long nlat, double *ntf, double *lag, long nntf);

void print_header(const char *transports, const char *target_transports, bool shared_clock);
void print_row(const row_t *r, bool *csv_header);

#endif
