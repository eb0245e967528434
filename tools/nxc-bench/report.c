/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's output: the progress line on stderr, percentiles, and each
 * point's row in the table and as a --json or --csv row.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"
#include "report.h"

FILE *table_out, *rows_out;
bool progress_on;

void progress(const char *fmt, ...) {
    if (!progress_on) return;
    va_list ap;
    va_start(ap, fmt);
    bool tty = isatty(2);
    if (tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    if (!tty) fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}
void progress_clear(void) {
    if (progress_on && isatty(2)) fputs("\r\033[K", stderr);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(double *v, long n, double q) { /* v sorted */
    if (n <= 0) return -1;
    long r = (long)(q * (double)n + 0.999999);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

void row_stats(row_t *r, double *lat, long nlat, double *ntf, double *lag, long nntf) {
    qsort(lat, (size_t)nlat, sizeof(double), cmp_double);
    qsort(ntf, (size_t)nntf, sizeof(double), cmp_double);
    qsort(lag, (size_t)nntf, sizeof(double), cmp_double);
    double sum = 0;
    for (long i = 0; i < nlat; i++)
        sum += lat[i];
    r->lat_p50 = pct(lat, nlat, 0.50);
    r->lat_p99 = pct(lat, nlat, 0.99);
    r->lat_min = nlat ? lat[0] : -1;
    r->lat_mean = nlat ? sum / (double)nlat : -1;
    r->ntf_p50 = pct(ntf, nntf, 0.50);
    r->ntf_p99 = pct(ntf, nntf, 0.99);
    r->lag_p50 = pct(lag, nntf, 0.50);
}

void print_header(const char *transports, const char *target_transports, bool shared_clock) {
    if (!table_out) return;
    char between[48] = "";
    if (cfg.between_kib) snprintf(between, sizeof between, ", --between %d KiB", cfg.between_kib);
    char cpus[48] = "";
    if (cfg.cpus[0] >= 0) snprintf(cpus, sizeof cpus, ", --cpus %d,%d", cfg.cpus[0], cfg.cpus[1]);
    fprintf(table_out,
            "# nxc-bench %s, transports %s (target: %s), concurrency %d, %s clock%s%s%s%s%s%s\n"
            "%-5s %-9s %8s %6s %9s %6s %8s %10s %10s %10s\n",
            nxc_version(), transports, target_transports, cfg.concurrency,
            shared_clock ? "shared" : "ping-synchronised", cfg.check ? ", --check" : "",
            cfg.prereg ? "" : ", --no-prereg", cfg.alloc ? ", --alloc" : "",
            cfg.wait == WAIT_BUSY   ? ", --busy"
            : cfg.wait == WAIT_LOOP ? ", --loop"
                                    : "",
            between, cpus, "op", "transport", "block", "batch", "bytes/op", "iters", "GB/s",
            "lat p50", "lat p99", "ntf p50");
    fprintf(table_out, "%-5s %-9s %8s %6s %9s %6s %8s %10s %10s %10s\n", "", "", "", "", "", "", "",
            "us", "us", "us");
    fflush(table_out);
}

static const char *kind_name(const row_t *r) {
    return r->kind == OP_READ ? "read" : "write";
}

static void table_row(const row_t *r) {
    char b1[32], b2[32];
    progress_clear();
    fprintf(table_out, "%-5s %-9s %8s %6" PRIu64 " %9s %6ld %8.3f %10.1f %10.1f %10.1f%s\n",
            kind_name(r), r->transport ? r->transport : "-", fmt_size(r->block, b1, sizeof b1),
            r->batch, fmt_size(r->opbytes, b2, sizeof b2), r->iters, r->gbps, r->lat_p50,
            r->lat_p99, r->ntf_p50,
            r->mismatched ? "  DATA MISMATCH" : (r->cut_short ? "  (time-bounded)" : ""));
    fflush(table_out);
}

static void json_row(const row_t *r) {
    const char *tr = r->transport ? r->transport : "";
    fprintf(rows_out,
            "{\"tool\":\"nxc-bench\",\"version\":\"%s\",\"transport\":\"%s\",\"op\":\"%s\","
            "\"block\":%" PRIu64 ",\"batch\":%" PRIu64 ",\"bytes_per_op\":%" PRIu64
            ",\"iters\":%ld,\"warmup\":%ld,\"concurrency\":%d,\"check\":%s,"
            "\"gbps\":%.4f,\"seconds\":%.6f,\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,"
            "\"lat_min_us\":%.2f,\"lat_mean_us\":%.2f,\"notify_p50_us\":%.2f,"
            "\"notify_p99_us\":%.2f,\"notify_lag_p50_us\":%.2f,\"mismatched_bytes\":%" PRIu64
            ",\"time_bounded\":%s}\n",
            nxc_version(), tr, kind_name(r), r->block, r->batch, r->opbytes, r->iters, r->warmup,
            r->concurrency, cfg.check ? "true" : "false", r->gbps, r->seconds, r->lat_p50,
            r->lat_p99, r->lat_min, r->lat_mean, r->ntf_p50, r->ntf_p99, r->lag_p50, r->mismatched,
            r->cut_short ? "true" : "false");
}

/* The header goes before the first row. */
static void csv_row(const row_t *r, bool *csv_header) {
    const char *tr = r->transport ? r->transport : "";
    if (!*csv_header) {
        fprintf(rows_out, "tool,version,transport,op,block,batch,bytes_per_op,iters,warmup,"
                          "concurrency,check,gbps,seconds,lat_p50_us,lat_p99_us,lat_min_us,"
                          "lat_mean_us,notify_p50_us,notify_p99_us,notify_lag_p50_us,"
                          "mismatched_bytes,time_bounded\n");
        *csv_header = true;
    }
    fprintf(rows_out,
            "nxc-bench,%s,%s,%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64
            ",%ld,%ld,%d,%d,%.4f,%.6f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%" PRIu64 ",%d\n",
            nxc_version(), tr, kind_name(r), r->block, r->batch, r->opbytes, r->iters, r->warmup,
            r->concurrency, cfg.check, r->gbps, r->seconds, r->lat_p50, r->lat_p99, r->lat_min,
            r->lat_mean, r->ntf_p50, r->ntf_p99, r->lag_p50, r->mismatched, r->cut_short);
}

void print_row(const row_t *r, bool *csv_header) {
    if (table_out) table_row(r);
    if (!rows_out) return;
    if (cfg.fmt == FMT_JSON)
        json_row(r);
    else if (cfg.fmt == FMT_CSV)
        csv_row(r, csv_header);
    fflush(rows_out);
}
