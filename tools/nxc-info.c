/*
 * nxc-info: which transports this host offers and, given an op's metadata,
 * which one a transfer to that peer would use and why.
 *
 *   nxc-info                    the transports here, in default order
 *   nxc-info METADATA_FILE|-    also: the peer of that metadata, and the
 *                               verdict of every transport for it
 *
 * Honours NXC_TRANSPORTS and the other environment variables the library
 * reads, so it answers for the configuration the application would run with.
 * Exit status: 0, or 1 when no transport starts or none reaches the peer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nxc/nxc_version.h"
#include "transport/transport.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nxc-info [METADATA_FILE | -]\n"
               "  Lists the transports this host offers; given an op's metadata text (a file,\n"
               "  or - for stdin), also says which transport a transfer to that peer would\n"
               "  use and why the others would not.\n");
}

static char *slurp(const char *path, size_t *len_p) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *bigger = cap < (64u << 20) ? realloc(buf, 2 * cap + 1) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (f != stdin) fclose(f);
    while (buf && len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (buf) buf[len] = '\0';
    *len_p = len;
    return buf;
}

/* Every transport built in, started alone, to show why one cannot run. */
static void list_transports(const nxc_connector_t *c) {
    printf("transports built in (default order):\n");
    for (size_t i = 0; i < nxc__transports_builtin_count; i++) {
        const char *name = nxc__transports_builtin[i]->name;
        const nxc__tp_t *tp = NULL;
        for (size_t j = 0; j < c->ntps; j++)
            if (!strcmp(c->tps[j]->ops->name, name)) tp = c->tps[j];
        char line[768] = "";
        if (tp) {
            if (tp->ops->describe) tp->ops->describe((nxc__tp_t *)tp, line, sizeof line);
            printf("  %-4s  runs%s: %s\n", name, tp->fallback ? " (as a fallback)" : "", line);
            continue;
        }
        nxc_connector_params_t p = {.field_mask = NXC_CONNECTOR_FIELD_TRANSPORTS |
                                                  NXC_CONNECTOR_FIELD_PROGRESS_THREAD |
                                                  NXC_CONNECTOR_FIELD_LOG_LEVEL,
                                    .transports = name,
                                    .progress_thread = 0,
                                    .log_level = NXC_LOG_ERROR};
        nxc_connector_t *alone = NULL;
        if (nxc_connector_create(&p, &alone) == NXC_OK) {
            printf("  %-4s  not in this configuration (NXC_TRANSPORTS=%s)\n", name,
                   getenv("NXC_TRANSPORTS") ? getenv("NXC_TRANSPORTS") : "");
            nxc_connector_destroy(alone);
        } else {
            printf("  %-4s  unavailable: %s\n", name, nxc_last_error());
        }
    }
}

typedef struct verdicts {
    int chosen;
} verdicts_t;

static void print_verdict(void *arg, const nxc__tp_t *tp, bool chosen, const char *why) {
    verdicts_t *v = arg;
    if (chosen) v->chosen++;
    printf("  %-4s  %s%s\n", tp->ops->name, chosen ? "CHOSEN" : "not used: ", chosen ? "" : why);
}

static int explain(nxc_connector_t *c, const char *text, size_t len) {
    nxc__metadata_t md;
    if (nxc__md_decode(text, len, &md) != NXC_OK) {
        fprintf(stderr, "nxc-info: the metadata does not decode: %s\n", nxc_last_error());
        return 1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < md.ndesc; i++)
        total += md.descs[i].size;
    char dev[32];
    nxc_device_format(md.ndesc ? md.descs[0].device : (nxc_device_t){NXC_DEVICE_HOST, 0}, dev,
                      sizeof dev);
    bool same_host = !strcmp(md.host, c->host);
    printf("\npeer: connector \"%s\", host %s (%s), pid %u\n", md.name, md.host,
           same_host ? "this host" : "another host", md.pid);
    printf("op:   %s, %zu descriptor%s, %llu bytes on %s, key %s\n",
           md.operation_kind == NXC__MD_KIND_READ ? "readable (peers read it)"
                                                  : "writable (peers write it)",
           md.ndesc, md.ndesc == 1 ? "" : "s", (unsigned long long)total, dev, md.notification_key);
    printf("offers:");
    for (size_t i = 0; i < md.nsections; i++)
        printf(" %s", md.sections[i].name);
    printf("\n\na transfer from this process's host memory would use:\n");
    verdicts_t v = {0};
    const nxc__md_section_t *sec = NULL;
    nxc__lock(c);
    nxc__pick(c, &md, NXC_DEVICE_HOST, &sec, print_verdict, &v, true, NULL);
    nxc__unlock(c);
    if (!v.chosen) printf("  no transport reaches this peer\n");
    nxc__md_free(&md);
    return v.chosen ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
        usage(argc > 2 ? stderr : stdout);
        return argc > 2 ? 2 : 0;
    }
    nxc_connector_params_t p = {.field_mask =
                                    NXC_CONNECTOR_FIELD_PROGRESS_THREAD | NXC_CONNECTOR_FIELD_NAME,
                                .name = "nxc-info",
                                .progress_thread = 0};
    nxc_connector_t *c = NULL;
    nxc_status_t st = nxc_connector_create(&p, &c);
    printf("nxc %s on host %s\n", nxc_version(), c ? c->host : "?");
    if (st != NXC_OK) {
        printf("no transport starts here: %s\n", nxc_last_error());
        list_transports(&(nxc_connector_t){.ntps = 0});
        return 1;
    }
    printf("this configuration runs: %s%s\n", nxc_connector_transports(c),
           c->transports_chosen ? " (order set by the user)" : "");
    list_transports(c);
    int rc = 0;
    if (argc == 2) {
        size_t len = 0;
        char *text = slurp(argv[1], &len);
        if (!text) {
            fprintf(stderr, "nxc-info: cannot read %s\n", argv[1]);
            rc = 1;
        } else {
            rc = explain(c, text, len);
        }
        free(text);
    }
    nxc_connector_destroy(c);
    return rc;
}
