/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nxc-info: which transports this host offers and, given an op's metadata,
 * which one a transfer to that peer would use and why.
 *
 *   nxc-info                    the transports here, in default order
 *   nxc-info METADATA_FILE|-    also: the peer of that metadata, the verdict
 *                               of every transport for it, and whether the
 *                               peer answers (see contact() below)
 *
 * Honours NXC_TRANSPORTS and the other environment variables the library
 * reads, so it answers for the configuration the application would run with.
 * Exit status: 0; 1 when no transport starts, none reaches the peer, or the
 * peer does not answer; 2 for a bad command line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/connector.h"
#include "core/select.h"
#include "nxc/nxc_version.h"
#include "transport/transport.h"
#include "util/sys.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nxc-info [--no-contact] [METADATA_FILE | -]\n"
               "       nxc-info --help | --version\n"
               "  Lists the transports this host offers. Given an op's metadata text (a file,\n"
               "  or - for stdin), also says which transport a transfer to that peer would use\n"
               "  and why the others would not, then contacts the peer the way a transfer\n"
               "  would: it begins a transfer for an op key that does not exist, which a live\n"
               "  peer refuses without touching any memory.\n"
               "  --no-contact  only the checks made from the metadata, without contacting\n"
               "                the peer (a peer that has exited may then look reachable)\n"
               "  --version     print the version and exit\n"
               "Exit status: 0; 1 when no transport starts, none reaches the peer or the peer\n"
               "does not answer; 2 for a bad command line.\n");
}

/* The file's text, or NULL with errno set. */
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
    int err = ferror(f) ? errno : buf ? 0 : ENOMEM;
    if (f != stdin) fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
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

/* Contact the peer as a transfer would: the same connector, the same choice
 * of transport, a begin for an op key and secret that do not exist, over
 * the metadata's first byte. A live peer refuses it (NXC_ERR_REFUSED, "no
 * live operation") before any memory is touched; a dead one gives what a
 * real transfer would get (NXC_ERR_UNREACHABLE...). 0: the peer answered. */
static int contact(nxc_connector_t *c, const nxc__metadata_t *md) {
    nxc__metadata_t probe = *md;
    nxc__rdesc_t one = md->descs[0];
    one.size = 1;
    probe.descs = &one;
    probe.ndesc = 1;
    nxc__uuid4(probe.notification_key);
    nxc__random(probe.secret, sizeof probe.secret);
    char *text = NULL;
    size_t len = 0;
    static char byte;
    nxc_desc_t local = {&byte, 1, {NXC_DEVICE_HOST, 0}};
    nxc_op_params_t p = {.field_mask = NXC_OP_FIELD_TIMEOUT, .timeout_ms = 30000};
    nxc_op_t *op = NULL;
    nxc_status_t st = nxc__md_encode(&probe, &text, &len);
    if (st == NXC_OK)
        st = md->operation_kind == NXC__MD_KIND_READ
                 ? nxc_begin_read(c, text, len, &local, 1, &p, &op)
                 : nxc_begin_write(c, &local, 1, text, len, &p, &op);
    char why[512];
    snprintf(why, sizeof why, "%s", nxc_last_error());
    const char *tp = op ? nxc_op_transport(op) : NULL;
    if (st == NXC_OK) {
        st = nxc_op_wait(op, -1);
        snprintf(why, sizeof why, "%s", nxc_op_message(op));
    }
    nxc_op_release(op);
    free(text);
    printf("\ncontact (a request for an op that does not exist%s%s):\n", tp ? ", over " : "",
           tp ? tp : "");
    if (st == NXC_ERR_REFUSED) {
        printf("  the peer answered and refused it, as it should: a transfer can reach it\n");
        return 0;
    }
    printf("  a transfer would fail: %s (%s)\n", nxc_status_string(st), why);
    return 1;
}

static int explain(nxc_connector_t *c, const char *text, size_t len, bool probe) {
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
    nxc__select_transport(c, &md, NXC_DEVICE_HOST, &sec, print_verdict, &v, true, NULL);
    nxc__unlock(c);
    int rc = v.chosen ? 0 : 1;
    if (!v.chosen)
        printf("  no transport reaches this peer\n");
    else if (probe)
        rc = contact(c, &md);
    else
        printf("\nthe peer was not contacted (--no-contact): whether it still answers is not "
               "checked\n");
    nxc__md_free(&md);
    return rc;
}

int main(int argc, char **argv) {
    const char *file = NULL;
    bool probe = true, options = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            usage(stdout);
            return 0;
        } else if (options && !strcmp(a, "--version")) {
            printf("nxc-info (nxc %s)\n", nxc_version());
            return 0;
        } else if (options && !strcmp(a, "--no-contact")) {
            probe = false;
        } else if (options && !strcmp(a, "--")) {
            options = false;
        } else if (options && a[0] == '-' && a[1]) {
            fprintf(stderr, "nxc-info: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (file) {
            fprintf(stderr, "nxc-info: one metadata file at most ('%s' and '%s')\n", file, a);
            usage(stderr);
            return 2;
        } else {
            file = a;
        }
    }
    /* Read the file first: a bad path is the answer, not the report. */
    char *text = NULL;
    size_t len = 0;
    if (file && !(text = slurp(file, &len))) {
        fprintf(stderr, "nxc-info: cannot read %s: %s\n", file, strerror(errno));
        return 1;
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
        free(text);
        return 1;
    }
    printf("this configuration runs: %s%s\n", nxc_connector_transports(c),
           c->transports_chosen ? " (order set by the user)" : "");
    list_transports(c);
    int rc = text ? explain(c, text, len, probe) : 0;
    free(text);
    nxc_connector_destroy(c);
    return rc;
}
