/* SPDX-License-Identifier: Apache-2.0 */
/* Two hosts on one machine: the passive peer runs in network namespace A,
 * the active peer in namespace B, and they reach each other only over a
 * veth pair (tests/harness/netns.h). For each transport:
 *
 *   <t>_read_8m, <t>_write_8m   8 MiB moved and verified byte for byte, and
 *                               seen crossing the veth pair
 *   <t>_read_exit, _write_exit  the same, but the active peer destroys its
 *                               connector and exits the moment its op is
 *                               COMPLETE: the passive op must still complete
 *   <t>_link_cut_write, _read   the link is cut in the middle of a 256 MiB
 *                               transfer: both ops must end (ERRORED) within
 *                               30 s of the cut, without hanging; each side's
 *                               time is printed. Then the link comes back and
 *                               a read with fresh metadata must work.
 *
 * Needs root and iproute2; without them every case is skipped (nxt_skip:
 * "SKIP: <reason>", and the binary exits 77, which ctest reports as
 * skipped). A transport this library does not have is skipped the same
 * way. Environment:
 *   NXT_TRANSPORT=<name>    run only that transport's tests
 *   NXT_CUT_DEADLINE_MS=N   deadline of both link-cut ops (default 20000; 0:
 *                           none, to see how long the transport alone takes
 *                           to notice; the peers then give up after 65 s)
 *   NXT_TWOHOST_STRICT=1    also check, for ucx, what UCX 1.13 is known to
 *                           get wrong here (off by default for ucx only):
 *                           the retry after the link is back (UCX's tcp
 *                           progress may crash after a dead link)
 */
#include <inttypes.h>
#include <unistd.h>

#include "netns.h"
#include "nxt.h"

#define SMALL (8u << 20) /* verified transfers */
#define BIG (256u << 20) /* the transfer the link cut interrupts */
#define AGAIN (1u << 20) /* the retry after the link is back */
#define SEED 0x7a11u
#define CUT_DEADLINE_MS 20000 /* default deadline of both link-cut ops */
#define CUT_BOUND_MS 30000    /* both must have ended this long after the cut */
#define MSG_MS 60000          /* channel messages between the test and its peers */
#define OP_MS 60000           /* waits for ops that should complete */

typedef enum scenario {
    VERIFY, /* the active peer stays until the passive one has checked */
    EXIT,   /* the active peer exits as soon as its op is complete */
    CUT     /* the link goes down mid-transfer */
} scenario_t;

typedef struct peer_arg {
    const nxt_netns_t *ns;
    const char *transport;
    bool write; /* begin_write into a writable (else begin_read of a readable) */
    scenario_t scenario;
} peer_arg_t;

static int cut_deadline_ms(void) {
    const char *e = getenv("NXT_CUT_DEADLINE_MS");
    return e && *e ? atoi(e) : CUT_DEADLINE_MS;
}

/* How long a peer waits for its link-cut op: past the deadline, or 65 s
 * without one, so a transport that never notices shows as a failure after
 * a minute, not as a hang. */
static int cut_wait_ms(void) {
    int d = cut_deadline_ms();
    return d > 0 ? d + 15000 : 65000;
}

/* Checks UCX 1.13 fails (see the report printed when they are skipped). */
static bool strict(const char *transport) {
    const char *e = getenv("NXT_TWOHOST_STRICT");
    if (e && *e) return atoi(e) != 0;
    return strcmp(transport, "ucx") != 0;
}

/* --- inside the namespaces ------------------------------------------------------ */

static void enter(const peer_arg_t *a, int side) {
    if (nxt_netns_enter(a->ns, side))
        nxt_failf(__FILE__, __LINE__, "could not enter namespace %s", a->ns->name[side]);
}

/* This side's connector, restricted to the transport under test. NULL after
 * telling the test "skip:<reason>" when the library has no such transport;
 * otherwise it tells the test "ready". */
static nxc_connector_t *peer_connector(int fd, const char *name, const char *transport,
                                       int progress_thread) {
    nxc_connector_params_t p = {0};
    p.field_mask = NXC_CONNECTOR_FIELD_NAME | NXC_CONNECTOR_FIELD_TRANSPORTS |
                   NXC_CONNECTOR_FIELD_PROGRESS_THREAD;
    p.name = name;
    p.transports = transport;
    p.progress_thread = progress_thread;
    nxc_connector_t *c = NULL;
    nxc_status_t st = nxc_connector_create(&p, &c);
    if (st == NXC_ERR_INVALID_PARAM && strstr(nxc_last_error(), "unknown transport")) {
        char msg[600];
        snprintf(msg, sizeof msg, "skip:this library has no '%s' transport (%s)", transport,
                 nxc_last_error());
        nxt_send_str(fd, msg);
        return NULL;
    }
    if (st != NXC_OK)
        nxt_failf(__FILE__, __LINE__, "%s: connector with transports '%s': %s (%s)", name,
                  transport, nxc_status_string(st), nxc_last_error());
    NXT_EQ_STR(nxc_connector_transports(c), transport);
    nxt_send_str(fd, "ready");
    return c;
}

/* "end <status> <result> <nxt_now_ms() at the end> <message>" */
static void report_end(int fd, nxc_op_t *op) {
    char msg[700];
    snprintf(msg, sizeof msg, "end %d %d %" PRIu64 " %s", (int)nxc_op_status(op),
             (int)nxc_op_result(op), nxt_now_ms(), nxc_op_message(op));
    nxt_send_str(fd, msg);
}

static void check_bytes(const char *who, const char *buf, size_t size, uint64_t seed) {
    size_t bad = nxt_verify(buf, size, seed);
    if (bad != SIZE_MAX)
        nxt_failf(__FILE__, __LINE__, "%s: byte %zu of %zu differs", who, bad, size);
}

static nxc_op_params_t cut_params(scenario_t s) {
    nxc_op_params_t p = {0};
    if (s == CUT && cut_deadline_ms() > 0) {
        p.field_mask = NXC_OP_FIELD_TIMEOUT;
        p.timeout_ms = cut_deadline_ms();
    }
    return p;
}

/* Namespace A: a readable (filled) or writable (checked) buffer. In the
 * link-cut scenario this side drives its own progress, so that between the
 * grant and the cut no byte can land here: the transfer is certain to be in
 * flight when the link goes down, whatever the machine's load. */
static void passive_peer(int fd, void *arg) {
    const peer_arg_t *a = arg;
    enter(a, 0);
    bool cut = a->scenario == CUT;
    nxc_connector_t *c = peer_connector(fd, "host-a", a->transport, cut ? 0 : 1);
    if (!c) return;
    size_t size = cut ? BIG : SMALL;
    char *buf = nxt_alloc(size);
    if (!a->write) nxt_fill(buf, size, SEED);
    nxc_desc_t d = nxt_desc(buf, size);
    nxc_op_params_t p = cut_params(a->scenario);
    nxc_op_t *op;
    if (a->write)
        NXT_PASS(nxc_create_writable(c, &d, 1, &p, &op));
    else
        NXT_PASS(nxc_create_readable(c, &d, 1, &p, &op));
    const char *md;
    NXT_PASS(nxc_op_metadata(op, &md, NULL));
    nxt_send_str(fd, md);

    if (!cut) {
        nxc_op_wait(op, OP_MS);
        if (nxc_op_status(op) == NXC_OP_COMPLETE) {
            NXT_EQ_STR(nxc_op_transport(op), a->transport);
            if (a->write) check_bytes("host A", buf, size, SEED);
        }
        report_end(fd, op);
    } else {
        nxt_await_grant(c, op, 30000);
        nxt_send_str(fd, "granted");
        free(nxt_recv(fd, NULL, MSG_MS)); /* "cut": the link is down now */
        nxc_op_wait(op, cut_wait_ms());
        report_end(fd, op);

        /* "again" once the link is back: fresh metadata must work (we drive
         * progress); "bye": no retry. */
        char *m = nxt_recv(fd, NULL, MSG_MS);
        if (!strcmp(m, "again")) {
            nxc_op_t *op2;
            nxt_fill(buf, AGAIN, SEED + 1);
            d.size = AGAIN;
            NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op2));
            NXT_PASS(nxc_op_metadata(op2, &md, NULL));
            nxt_send_str(fd, md);
            nxc_op_wait(op2, OP_MS);
            report_end(fd, op2);
            nxc_op_release(op2);
        }
        free(m);
    }
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

/* Namespace B: reads into a buffer it checks, or writes a filled one. */
static void active_peer(int fd, void *arg) {
    const peer_arg_t *a = arg;
    enter(a, 1);
    bool cut = a->scenario == CUT;
    nxc_connector_t *c = peer_connector(fd, "host-b", a->transport, 1);
    if (!c) return;
    char *md = nxt_recv(fd, NULL, MSG_MS);
    size_t size = cut ? BIG : SMALL;
    char *buf = nxt_alloc(size);
    if (a->write) nxt_fill(buf, size, SEED);
    nxc_desc_t d = nxt_desc(buf, size);
    nxc_op_params_t p = cut_params(a->scenario);
    nxc_op_t *op;
    if (a->write)
        NXT_PASS(nxc_begin_write(c, &d, 1, md, 0, &p, &op));
    else
        NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, &p, &op));
    free(md);

    if (!cut) {
        NXT_PASS(nxc_op_wait(op, OP_MS));
        NXT_EQ_STR(nxc_op_transport(op), a->transport);
        if (!a->write) check_bytes("host B", buf, size, SEED);
        if (a->scenario == EXIT) { /* straight out, as a process that is done would */
            nxc_op_release(op);
            nxc_connector_destroy(c);
            nxt_send_str(fd, "done");
            free(buf);
            return;
        }
        nxt_send_str(fd, "done");
        free(nxt_recv(fd, NULL, MSG_MS)); /* "bye": the passive side has finished */
    } else {
        nxc_op_wait(op, cut_wait_ms());
        report_end(fd, op);

        md = nxt_recv(fd, NULL, MSG_MS); /* the retry's readable, or "bye" */
        if (strcmp(md, "bye")) {
            nxc_op_t *op2;
            memset(buf, 0, AGAIN);
            d.size = AGAIN;
            NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &op2));
            nxc_op_wait(op2, OP_MS);
            if (nxc_op_status(op2) == NXC_OP_COMPLETE) check_bytes("host B", buf, AGAIN, SEED + 1);
            report_end(fd, op2);
            nxc_op_release(op2);
        }
        free(md);
    }
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

/* --- the test process (root namespace) ------------------------------------------ */

typedef struct ended {
    int status, result;
    uint64_t at;
    char message[600];
} ended_t;

static ended_t parse_end(const char *who, char *msg) {
    ended_t e = {0};
    int used = 0;
    if (sscanf(msg, "end %d %d %" SCNu64 " %n", &e.status, &e.result, &e.at, &used) != 3)
        nxt_failf(__FILE__, __LINE__, "%s: unexpected report '%s'", who, msg);
    snprintf(e.message, sizeof e.message, "%s", msg + used);
    free(msg);
    return e;
}

static const char *result_name(int result) {
    return result == NXC_OK ? "complete" : nxc_status_string((nxc_status_t)result);
}

static void print_cut_end(const char *who, const ended_t *e, uint64_t t_cut) {
    long long after = (long long)e->at - (long long)t_cut;
    const char *how = e->result == NXC_ERR_TIMED_OUT ? "ended by its own deadline"
                      : e->status == NXC_OP_ERRORED  ? "the transport noticed"
                      : e->status == NXC_OP_COMPLETE ? "completed"
                                                     : "not ended: nothing noticed";
    printf("  %s: %s %lld ms after the cut (%s)%s%s%s\n", who, result_name(e->result), after, how,
           e->message[0] ? ": \"" : "", e->message, e->message[0] ? "\"" : "");
}

/* One side's op must have ended ERRORED, after the cut, within the bound. */
static void check_cut_end(const char *who, const ended_t *e, uint64_t t_cut) {
    long long after = (long long)e->at - (long long)t_cut;
    if (e->status == NXC_OP_COMPLETE)
        nxt_failf(__FILE__, __LINE__,
                  "%s: the op completed although the link was down: did the bytes bypass the "
                  "veth pair?",
                  who);
    if (e->status != NXC_OP_ERRORED)
        nxt_failf(__FILE__, __LINE__,
                  "%s: op still in progress %lld ms after the cut: the transport never noticed "
                  "the dead link",
                  who, after);
    if (after < 0) nxt_failf(__FILE__, __LINE__, "%s: the op ended before the link was cut", who);
    if (after > CUT_BOUND_MS)
        nxt_failf(__FILE__, __LINE__, "%s: ended %lld ms after the cut, over the %d ms bound", who,
                  after, CUT_BOUND_MS);
}

/* "ready", or a skip from a peer whose library lacks the transport. */
static bool peer_ready(const char *who, int fd, char **skip) {
    char *m = nxt_recv(fd, NULL, MSG_MS);
    if (!strncmp(m, "skip:", 5)) {
        if (!*skip) *skip = strdup(m + 5);
        free(m);
        return false;
    }
    if (strcmp(m, "ready")) nxt_failf(__FILE__, __LINE__, "%s: unexpected message '%s'", who, m);
    free(m);
    return true;
}

/* The verified transfers (VERIFY, EXIT). */
static void run_verify(const nxt_netns_t *ns, const peer_arg_t *a, int fa, int fb) {
    uint64_t rx0, tx0, rx1, tx1;
    NXT_CHECK(nxt_netns_counters(ns, 0, &rx0, &tx0) == 0);
    char *md = nxt_recv(fa, NULL, MSG_MS);
    nxt_send_str(fb, md);
    free(md);
    free(nxt_recv(fb, NULL, OP_MS + MSG_MS)); /* "done": B's op is complete (and checked) */
    ended_t ea = parse_end("host A", nxt_recv(fa, NULL, OP_MS + MSG_MS));
    if (a->scenario == VERIFY) nxt_send_str(fb, "bye");
    NXT_CHECK(nxt_netns_counters(ns, 0, &rx1, &tx1) == 0);
    uint64_t crossed = a->write ? rx1 - rx0 : tx1 - tx0;
    printf("  %s %s of %u MiB: %s on B, %s on A; %.1f MiB crossed the veth pair\n", a->transport,
           a->write ? "write" : "read", SMALL >> 20, "complete", result_name(ea.result),
           crossed / 1048576.0);
    if (ea.result != NXC_OK) {
        nxt_failf(
            __FILE__, __LINE__, "host A: passive op %s: %s%s", result_name(ea.result), ea.message,
            a->scenario == EXIT ? " (the active peer exited right after its op completed)" : "");
    }
    if (crossed < SMALL)
        nxt_failf(__FILE__, __LINE__,
                  "only %" PRIu64 " bytes crossed the veth pair for a %u-byte transfer: the "
                  "bytes went another way",
                  crossed, SMALL);
}

static void run_cut(const nxt_netns_t *ns, const peer_arg_t *a, int fa, int fb) {
    char *md = nxt_recv(fa, NULL, MSG_MS);
    nxt_send_str(fb, md);
    free(md);
    free(nxt_recv(fa, NULL, MSG_MS)); /* "granted": bytes are moving (and held) */
    uint64_t t0 = nxt_now_ms();
    NXT_CHECK(nxt_netns_link(ns, false) == 0);
    uint64_t t_cut = nxt_now_ms();
    printf("  link cut during a %u MiB %s (ip link set down: %llu ms); op deadline %d ms\n",
           BIG >> 20, a->write ? "write" : "read", (unsigned long long)(t_cut - t0),
           cut_deadline_ms());
    nxt_send_str(fa, "cut");
    int wait = cut_wait_ms() + 15000;
    ended_t eb = parse_end("host B", nxt_recv(fb, NULL, wait));
    ended_t ea = parse_end("host A", nxt_recv(fa, NULL, wait));
    const char *who_b = a->write ? "active (B, write)" : "active (B, read)";
    const char *who_a = a->write ? "passive (A, writable)" : "passive (A, readable)";
    print_cut_end(who_b, &eb, t_cut);
    print_cut_end(who_a, &ea, t_cut);
    check_cut_end(who_b, &eb, t_cut);
    check_cut_end(who_a, &ea, t_cut);

    /* Link back up: a fresh readable on A, read from B. (Without the retry
     * the link stays down while the peers tear down: UCX 1.13 can crash when
     * a connection it force-closed comes back.) */
    if (!strict(a->transport)) {
        printf("  KNOWN (not checked; NXT_TWOHOST_STRICT=1 checks it): a retry after the link "
               "is back can crash UCX 1.13's tcp progress\n");
        nxt_send_str(fa, "bye");
        nxt_send_str(fb, "bye");
        return;
    }
    NXT_CHECK(nxt_netns_link(ns, true) == 0);
    uint64_t t_up = nxt_now_ms();
    nxt_send_str(fa, "again");
    md = nxt_recv(fa, NULL, MSG_MS);
    nxt_send_str(fb, md);
    free(md);
    eb = parse_end("host B", nxt_recv(fb, NULL, OP_MS + MSG_MS));
    ea = parse_end("host A", nxt_recv(fa, NULL, OP_MS + MSG_MS));
    printf("  link up again: a %u MiB read with fresh metadata: %s on B (%lld ms), %s on A\n",
           AGAIN >> 20, result_name(eb.result), (long long)eb.at - (long long)t_up,
           result_name(ea.result));
    if (eb.result != NXC_OK)
        nxt_failf(__FILE__, __LINE__, "retry after the link came back: %s: %s",
                  result_name(eb.result), eb.message);
    NXT_EQ_INT(ea.result, NXC_OK);
}

static void run(const char *transport, bool write, scenario_t scenario) {
    const char *only = nxt_transport();
    if (only && strcmp(only, transport)) {
        nxt_skip("NXT_TRANSPORT=%s selects another transport", only);
    }
    nxt_netns_t ns;
    int rc = nxt_netns_pair(&ns);
    if (rc == NXT_NETNS_UNSUPPORTED) nxt_skip("%s", ns.why);
    if (rc) nxt_failf(__FILE__, __LINE__, "network namespaces: %s", ns.why);
    printf("  %s: A=%s (%s) <-veth-> B=%s (%s)\n", transport, ns.name[0], ns.addr[0], ns.name[1],
           ns.addr[1]);

    peer_arg_t arg = {.ns = &ns, .transport = transport, .write = write, .scenario = scenario};
    nxt_chan_t cha, chb;
    nxt_chan_init(&cha);
    pid_t pa = nxt_spawn(&cha, passive_peer, &arg);
    int fa = nxt_chan_parent(&cha);
    nxt_chan_init(&chb);
    pid_t pb = nxt_spawn(&chb, active_peer, &arg);
    int fb = nxt_chan_parent(&chb);

    char *skip = NULL;
    bool ok_a = peer_ready("host A", fa, &skip);
    bool ok_b = peer_ready("host B", fb, &skip);
    if (!ok_a || !ok_b) {
        close(fa); /* a peer still up sees its channel close and fails out at once */
        close(fb);
        nxt_wait_pid(pa, 30000);
        nxt_wait_pid(pb, 30000);
        nxt_netns_destroy(&ns);
        char why[512];
        snprintf(why, sizeof why, "%s", skip ? skip : "a peer could not start");
        free(skip);
        nxt_skip("%s", why);
    }
    if (scenario == CUT)
        run_cut(&ns, &arg, fa, fb);
    else
        run_verify(&ns, &arg, fa, fb);
    nxt_join(pb, 30000);
    nxt_join(pa, 30000);
    close(fa);
    close(fb);
    nxt_netns_destroy(&ns);
}

static void ucx_read(void) {
    run("ucx", false, VERIFY);
}
static void ucx_write(void) {
    run("ucx", true, VERIFY);
}
static void ucx_read_exit(void) {
    run("ucx", false, EXIT);
}
static void ucx_write_exit(void) {
    run("ucx", true, EXIT);
}
static void ucx_cut_write(void) {
    run("ucx", true, CUT);
}
static void ucx_cut_read(void) {
    run("ucx", false, CUT);
}
static void tcp_read(void) {
    run("tcp", false, VERIFY);
}
static void tcp_write(void) {
    run("tcp", true, VERIFY);
}
static void tcp_read_exit(void) {
    run("tcp", false, EXIT);
}
static void tcp_write_exit(void) {
    run("tcp", true, EXIT);
}
static void tcp_cut_write(void) {
    run("tcp", true, CUT);
}
static void tcp_cut_read(void) {
    run("tcp", false, CUT);
}

static const nxt_test_t nxt_tests[] = {
    {"ucx_read_8m", ucx_read, 90},
    {"ucx_write_8m", ucx_write, 90},
    {"ucx_read_exit", ucx_read_exit, 90},
    {"ucx_write_exit", ucx_write_exit, 90},
    {"ucx_link_cut_write", ucx_cut_write, 150},
    {"ucx_link_cut_read", ucx_cut_read, 150},
    {"tcp_read_8m", tcp_read, 90},
    {"tcp_write_8m", tcp_write, 90},
    {"tcp_read_exit", tcp_read_exit, 90},
    {"tcp_write_exit", tcp_write_exit, 90},
    {"tcp_link_cut_write", tcp_cut_write, 150},
    {"tcp_link_cut_read", tcp_cut_read, 150},
};
NXT_MAIN(nxt_tests)
