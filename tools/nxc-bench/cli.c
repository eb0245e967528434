/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-bench's command line: the defaults, the --help text, getopt_long's
 * table of options and what each sets in cfg, and the parsers of sizes
 * ("64K") and lists ("4K..64M*4,1G") the options take.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

cfg_t cfg = {
    .ops = {OP_READ},
    .nops = 1,
    .iters = 1000,
    .warmup = 10,
    .min_iters = 5,
    .max_bytes = 1ull << 30,
    .point_time = 10.0,
    .concurrency = 1,
    .prereg = true,
    .progress = -1,
    .idle_timeout_s = 120,
    .max_mem = 2ull << 30,
    .round_max = 256,
    .seed = 0x6e7863u,
    .cpus = {-1, -1},
};

/* The lists as given; parsed once every option has been read. */
static const char *blocks_text = "4K..64M", *batches_text = "1";

void usage(FILE *f) {
    fprintf(f,
            "usage: %s --self [options]\n"
            "       %s --target [--listen ADDR:PORT] [--transport NAME]\n"
            "       %s --initiator HOST:PORT [options]\n"
            "       %s --list-transports | --version\n"
            "\n"
            "Measures nxc between a target (passive: readables/writables over one\n"
            "buffer) and an initiator (active: reads/writes). Options:\n"
            "  --op read|write|read,write   direction (default read)\n"
            "  --block-sizes LIST           e.g. 4K..256M (powers of two), 4K..256M*4,\n"
            "                               or 4K,64K,1M (default 4K..64M)\n"
            "  --batch LIST                 descriptors per op, e.g. 1..1024 (default 1)\n"
            "  --iters N                    timed ops per point (default 1000)\n"
            "  --warmup N                   untimed ops first (default 10)\n"
            "  --max-bytes SIZE             bound on timed bytes per point: large ops run\n"
            "                               fewer iterations (default 1G)\n"
            "  --min-iters N                floor for that reduction (default 5)\n"
            "  --point-time SEC             stop issuing ops after SEC s of a point (10)\n"
            "  --concurrency N              ops in flight (default 1)\n"
            "  --transport NAME             connector transports, e.g. ucx (default: all)\n"
            "  --check                      verify every byte moved (slower)\n"
            "  --json | --csv               machine-readable rows (to stdout, or -o FILE);\n"
            "                               the table then goes to stderr if both would\n"
            "                               share stdout\n"
            "  -o, --output FILE            where the machine-readable rows go\n"
            "  --progress | --no-progress   progress on stderr (default: if a tty)\n"
            "  -q, --quiet                  no table\n"
            "  --op-timeout MS              deadline of each op (default 10 s + 20 ms/MB)\n"
            "  --timeout SEC                bound on the whole run (default none)\n"
            "  --idle-timeout SEC           target: longest silence from the initiator (120)\n"
            "  --max-mem SIZE               buffer bytes per process and point (default 2G)\n"
            "  --round N                    ops whose metadata is fetched at once (256, max 1024)\n"
            "  --loop                       no progress threads: each side sleeps in\n"
            "                               poll() on the connector's fd and drives it\n"
            "                               (a server's own event loop)\n"
            "  --busy                       no progress threads, and waits spin instead\n"
            "                               of sleeping (the mode of NIXL's benchmarks;\n"
            "                               a core per side)\n"
            "  --no-prereg                  do not keep each buffer registered for the\n"
            "                               whole point (measures cold registration)\n"
            "  --alloc                      the target's buffers come from nxc_mem_alloc():\n"
            "                               shm peers map them and copy with memcpy\n"
            "  --seed N                     data pattern seed for --check\n"
            "  --between KIB                initiator: write that many KiB of other memory\n"
            "                               before each op, outside its timing (the\n"
            "                               application's work between ops: each op\n"
            "                               starts from caches as a server leaves them;\n"
            "                               read the latencies: GB/s counts the sweeps)\n"
            "  --cpus T,I                   pin the target (all its threads) to CPU T and\n"
            "                               the initiator to CPU I, as ucx_perftest -c\n"
            "                               does: figures that do not depend on where\n"
            "                               the scheduler places the two processes\n"
            "\n"
            "Table columns, one row per point (op, block size, batch):\n"
            "  transport   what moved the bytes (nxc_op_transport of the first op)\n"
            "  GB/s        bytes of the timed ops / time with ops in flight\n"
            "  lat p50/p99 begin call -> op seen complete on the initiator, in us\n"
            "  ntf p50     notification time, in us: begin call on the initiator ->\n"
            "              the target's passive op seen complete, on the initiator's\n"
            "              clock (the two clocks are one when both run on one kernel,\n"
            "              else their offset is estimated by ping-pong at each point)\n"
            "The --json/--csv rows add min/mean latency, notify p99 and\n"
            "notify_lag_p50_us: the target's completion minus the initiator's, per\n"
            "op. It is often negative: both sides learn of the end independently, and\n"
            "the target's op may be seen complete before the initiator's own wait\n"
            "returns; across hosts the clock offset adds up to half a round trip of\n"
            "error either way.\n"
            "\n"
            "Exit status: 0; 1 when a point failed, --check found a difference, or no\n"
            "point could be measured (all skipped, e.g. over --max-mem); 2 for a bad\n"
            "command line; 3 when --timeout ran out.\n",
            prog, prog, prog, prog);
}

/* ------------------------------------------------------------------------ */
/* Sizes, counts and lists                                                   */
/* ------------------------------------------------------------------------ */

/* "4K", "64KiB", "1M", "2G", "512" -> bytes (binary multiples). */
static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1ull << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ull << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ull << 30;
        end++;
        break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return false;
    if (v > UINT64_MAX / mul) return false;
    *out = v * mul;
    return true;
}

static bool parse_count(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

/* One item of a LIST: VALUE, or A..B (A, 2A, 4A, ... up to B), or A..B*F
 * (factor F). Exits with status 2 when it is malformed. */
static void parse_item(char *item, bool sizes, const char *text, const char *what, uint64_t *a,
                       uint64_t *b, uint64_t *f) {
    char *dots = strstr(item, "..");
    bool ok;
    *f = 2;
    if (dots) {
        *dots = 0;
        char *hi = dots + 2, *star = strchr(hi, '*');
        if (star) {
            *star = 0;
            if (!parse_count(star + 1, f) || *f < 2) {
                fprintf(stderr, "%s: bad factor in %s\n", prog, what);
                exit(2);
            }
        }
        ok = (sizes ? parse_size(item, a) && parse_size(hi, b)
                    : parse_count(item, a) && parse_count(hi, b)) &&
             *a > 0 && *a <= *b;
    } else {
        ok = (sizes ? parse_size(item, a) : parse_count(item, a)) && *a > 0;
        *b = *a;
    }
    if (!ok) {
        fprintf(stderr, "%s: bad %s '%s'\n", prog, what, text);
        exit(2);
    }
}

/* LIST: items separated by commas (see parse_item). Returns the number of
 * values; exits with status 2 on a bad, empty or too long list. */
static int parse_list(const char *text, bool sizes, uint64_t *vals, int max, const char *what) {
    char *dup = strdup(text);
    if (!dup) die("out of memory");
    int n = 0;
    char *save = NULL;
    for (char *item = strtok_r(dup, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        uint64_t a, b, f;
        parse_item(item, sizes, text, what, &a, &b, &f);
        for (uint64_t v = a; v <= b; v = (v > b / f) ? b + 1 : v * f) {
            if (n == max) {
                fprintf(stderr, "%s: too many %s (max %d)\n", prog, what, max);
                exit(2);
            }
            vals[n++] = v;
            if (v == b) break;
        }
    }
    free(dup);
    if (n == 0) {
        fprintf(stderr, "%s: empty %s\n", prog, what);
        exit(2);
    }
    return n;
}

static long need_long(const char *opt, const char *v, long lo, long hi) {
    uint64_t x;
    if (!v || !parse_count(v, &x) || x < (uint64_t)lo || x > (uint64_t)hi) {
        fprintf(stderr, "%s: %s needs a number in %ld..%ld\n", prog, opt, lo, hi);
        exit(2);
    }
    return (long)x;
}

/* --cpus T,I: two CPU numbers (whether they exist is known when pinning) */
static void need_cpus(const char *opt, const char *v) {
    const char *comma = v ? strchr(v, ',') : NULL;
    char first[32];
    if (!comma || (size_t)(comma - v) >= sizeof first) {
        fprintf(stderr, "%s: %s needs two CPU numbers, T,I (e.g. 1,0)\n", prog, opt);
        exit(2);
    }
    memcpy(first, v, (size_t)(comma - v));
    first[comma - v] = '\0';
    cfg.cpus[0] = (int)need_long(opt, first, 0, CPU_SETSIZE - 1);
    cfg.cpus[1] = (int)need_long(opt, comma + 1, 0, CPU_SETSIZE - 1);
}

static uint64_t need_size(const char *opt, const char *v) {
    uint64_t x;
    if (!v || !parse_size(v, &x) || x == 0) {
        fprintf(stderr, "%s: %s needs a size such as 64K or 1G\n", prog, opt);
        exit(2);
    }
    return x;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* Options without a short form; the others use their letter. */
enum {
    O_VERSION = 256,
    O_LIST_TRANSPORTS,
    O_SELF,
    O_TARGET,
    O_LISTEN,
    O_INITIATOR,
    O_OP,
    O_MIN_ITERS,
    O_MAX_BYTES,
    O_POINT_TIME,
    O_CHECK,
    O_JSON,
    O_CSV,
    O_PROGRESS,
    O_NO_PROGRESS,
    O_OP_TIMEOUT,
    O_TIMEOUT,
    O_IDLE_TIMEOUT,
    O_MAX_MEM,
    O_ROUND,
    O_NO_PREREG,
    O_ALLOC,
    O_BUSY,
    O_LOOP,
    O_SEED,
    O_BETWEEN,
    O_CPUS,
};

/* A switch takes no value, but "--check=VALUE" has always been accepted
 * (the value ignored): optional_argument keeps it so, and never takes the
 * next word. */
#define SWITCH optional_argument
#define VALUE required_argument

static const struct option options[] = {
    {"help", SWITCH, NULL, 'h'},
    {"version", SWITCH, NULL, O_VERSION},
    {"list-transports", SWITCH, NULL, O_LIST_TRANSPORTS},
    {"self", SWITCH, NULL, O_SELF},
    {"target", SWITCH, NULL, O_TARGET},
    {"listen", VALUE, NULL, O_LISTEN},
    {"initiator", VALUE, NULL, O_INITIATOR},
    {"op", VALUE, NULL, O_OP},
    {"block-sizes", VALUE, NULL, 's'},
    {"block-size", VALUE, NULL, 's'},
    {"batch", VALUE, NULL, 'b'},
    {"iters", VALUE, NULL, 'n'},
    {"warmup", VALUE, NULL, 'w'},
    {"min-iters", VALUE, NULL, O_MIN_ITERS},
    {"max-bytes", VALUE, NULL, O_MAX_BYTES},
    {"point-time", VALUE, NULL, O_POINT_TIME},
    {"concurrency", VALUE, NULL, 'c'},
    {"transport", VALUE, NULL, 't'},
    {"check", SWITCH, NULL, O_CHECK},
    {"json", SWITCH, NULL, O_JSON},
    {"csv", SWITCH, NULL, O_CSV},
    {"output", VALUE, NULL, 'o'},
    {"progress", SWITCH, NULL, O_PROGRESS},
    {"no-progress", SWITCH, NULL, O_NO_PROGRESS},
    {"quiet", SWITCH, NULL, 'q'},
    {"op-timeout", VALUE, NULL, O_OP_TIMEOUT},
    {"timeout", VALUE, NULL, O_TIMEOUT},
    {"idle-timeout", VALUE, NULL, O_IDLE_TIMEOUT},
    {"max-mem", VALUE, NULL, O_MAX_MEM},
    {"round", VALUE, NULL, O_ROUND},
    {"no-prereg", SWITCH, NULL, O_NO_PREREG},
    {"alloc", SWITCH, NULL, O_ALLOC},
    {"busy", SWITCH, NULL, O_BUSY},
    {"loop", SWITCH, NULL, O_LOOP},
    {"seed", VALUE, NULL, O_SEED},
    {"between", VALUE, NULL, O_BETWEEN},
    {"cpus", VALUE, NULL, O_CPUS},
    {NULL, 0, NULL, 0},
};

/* '+': stop at the first word that is no option (it is an error, reported
 * in order with the others); ':': report a missing value as ':'. */
static const char short_options[] = "+:hs:b:n:w:c:t:o:q";

#define NEXT_OPTION (-2) /* cli_parse: this option done, read the next */

static int unknown(const char *word) {
    fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, word);
    return 2;
}

/* getopt_long also takes an unambiguous abbreviation ("--iter"); nxc-bench
 * never did, so a long option must be spelled out. */
static bool spelled_out(const char *word, const char *name) {
    size_t n = strlen(name);
    return !strncmp(word, "--", 2) && !strncmp(word + 2, name, n) &&
           (word[2 + n] == 0 || word[2 + n] == '=');
}

/* `word`, the last on the line, is an option that needs a value. */
static int missing(int letter, const char *word) {
    char name[64];
    if (!strncmp(word, "--", 2)) {
        const struct option *o = options;
        while (o->name && strcmp(word + 2, o->name))
            o++;
        if (!o->name) return unknown(word); /* an abbreviation */
        snprintf(name, sizeof name, "%s", word);
    } else {
        snprintf(name, sizeof name, "-%c", letter);
    }
    fprintf(stderr, "%s: %s needs a value\n", prog, name);
    return 2;
}

static int set_op(const char *s) {
    if (!strcmp(s, "read"))
        cfg.nops = 1, cfg.ops[0] = OP_READ;
    else if (!strcmp(s, "write"))
        cfg.nops = 1, cfg.ops[0] = OP_WRITE;
    else if (!strcmp(s, "read,write") || !strcmp(s, "both"))
        cfg.nops = 2, cfg.ops[0] = OP_READ, cfg.ops[1] = OP_WRITE;
    else if (!strcmp(s, "write,read"))
        cfg.nops = 2, cfg.ops[0] = OP_WRITE, cfg.ops[1] = OP_READ;
    else {
        fprintf(stderr, "%s: --op takes read, write or read,write\n", prog);
        return 2;
    }
    return NEXT_OPTION;
}

static int set_transport(const char *s) {
    cfg.transport = s;
    if (!*cfg.transport) {
        fprintf(stderr, "%s: --transport needs a name\n", prog);
        return 2;
    }
    return NEXT_OPTION;
}

/* Apply one option; `name` is how it was spelled ("--iters" or "-n") for
 * the messages, `v` its value. Returns NEXT_OPTION or an exit status. */
static int apply(int opt, const char *name, const char *v) {
    switch (opt) {
    case 'h': usage(stdout); return 0;
    case O_VERSION:
        printf("nxc-bench %s (library %s)\n", NXC_VERSION_STRING, nxc_version());
        return 0;
    case O_LIST_TRANSPORTS: cfg.list_transports = true; break;
    case O_SELF: cfg.role = ROLE_SELF; break;
    case O_TARGET: cfg.role = ROLE_TARGET; break;
    case O_LISTEN: cfg.listen = v; break;
    case O_INITIATOR:
        cfg.role = ROLE_INITIATOR;
        cfg.connect = v;
        break;
    case O_OP: return set_op(v);
    case 's': blocks_text = v; break;
    case 'b': batches_text = v; break;
    case 'n': cfg.iters = need_long(name, v, 1, 100000000); break;
    case 'w': cfg.warmup = need_long(name, v, 0, 1000000); break;
    case O_MIN_ITERS: cfg.min_iters = need_long(name, v, 1, 1000000); break;
    case O_MAX_BYTES: cfg.max_bytes = need_size(name, v); break;
    case O_POINT_TIME: cfg.point_time = (double)need_long(name, v, 1, 86400); break;
    case 'c': cfg.concurrency = (int)need_long(name, v, 1, 1024); break;
    case 't': return set_transport(v);
    case O_CHECK: cfg.check = true; break;
    case O_JSON: cfg.fmt = FMT_JSON; break;
    case O_CSV: cfg.fmt = FMT_CSV; break;
    case 'o': cfg.out_path = v; break;
    case O_PROGRESS: cfg.progress = 1; break;
    case O_NO_PROGRESS: cfg.progress = 0; break;
    case 'q': cfg.quiet = true; break;
    case O_OP_TIMEOUT: cfg.op_timeout_ms = (int)need_long(name, v, 1, INT_MAX); break;
    case O_TIMEOUT: cfg.timeout_s = (int)need_long(name, v, 1, 1000000); break;
    case O_IDLE_TIMEOUT: cfg.idle_timeout_s = (int)need_long(name, v, 1, 1000000); break;
    case O_MAX_MEM: cfg.max_mem = need_size(name, v); break;
    case O_ROUND: /* 1024: a bound from when every passive op had an fd of its own */
        cfg.round_max = (int)need_long(name, v, 1, 1024);
        break;
    case O_NO_PREREG: cfg.prereg = false; break;
    case O_ALLOC: cfg.alloc = true; break;
    case O_BUSY: cfg.wait = WAIT_BUSY; break;
    case O_LOOP: cfg.wait = WAIT_LOOP; break;
    case O_SEED: cfg.seed = (uint64_t)need_long(name, v, 0, LONG_MAX); break;
    case O_BETWEEN: cfg.between_kib = (int)need_long(name, v, 0, 1 << 20); break;
    case O_CPUS: need_cpus(name, v); break;
    }
    return NEXT_OPTION;
}

/* Read and apply the option at optind. Returns NEXT_OPTION, CLI_RUN at the
 * end of the line, or an exit status. */
static int next_option(int argc, char **argv) {
    int at = optind, which = -1;
    int opt = getopt_long(argc, argv, short_options, options, &which);
    if (opt == -1) {
        if (optind > at) return unknown(argv[at]);       /* "--": getopt's end of options */
        if (optind < argc) return unknown(argv[optind]); /* a word that is no option */
        return CLI_RUN;
    }
    if (opt == '?') return unknown(argv[at]);
    if (opt == ':') return missing(optopt, argv[at]);
    char name[64];
    if (which >= 0) {
        if (!spelled_out(argv[at], options[which].name)) return unknown(argv[at]);
        snprintf(name, sizeof name, "--%s", options[which].name);
    } else {
        snprintf(name, sizeof name, "-%c", opt);
    }
    return apply(opt, name, optarg);
}

int cli_parse(int argc, char **argv) {
    int rc;
    opterr = 0; /* the messages are nxc-bench's own */
    while ((rc = next_option(argc, argv)) == NEXT_OPTION)
        ;
    if (rc != CLI_RUN) return rc;
    cfg.nblocks = parse_list(blocks_text, true, cfg.blocks, MAX_LIST, "--block-sizes");
    cfg.nbatches = parse_list(batches_text, false, cfg.batches, MAX_LIST, "--batch");
    for (int i = 0; i < cfg.nbatches; i++)
        if (cfg.batches[i] > 65536) {
            fprintf(stderr, "%s: --batch is at most 65536\n", prog);
            return 2;
        }
    return CLI_RUN;
}
