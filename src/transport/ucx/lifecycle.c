/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ucx transport's lifecycle: creating the UCP context, worker and
 * listener (and the connection info the metadata carries), describing it for
 * nxc-info, and tearing it down without leaving UCX requests behind.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucs/config/global_opts.h>

#include "transport/ucx/ucx_internal.h"
#include "util/env.h"
#include "util/error.h"
#include "util/list.h"
#include "util/log.h"
#include "util/sys.h"
#include "util/time.h"

/* Does UCX have a transport here that does RMA in hardware (InfiniBand or
 * RoCE rc/dc)? Without one, UCX emulates get/put with messages that its
 * target-side handlers answer, and UCX 1.13 aborts the process when such a
 * handler answers a peer that just died; nxc's own message path has no such
 * handler. NXC_UCX_DATA=rma|am overrides. */
static bool want_rma(ucx_tp_t *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return false;
    ucp_context_print_info(t->ctx, f);
    fclose(f);
    bool hw = buf && (strstr(buf, "-- rc_") || strstr(buf, "-- dc_") || strstr(buf, "-- gga"));
    /* "resource N : md M dev D flags -- tcp/eth0" lines name what UCX uses */
    size_t used = 0;
    for (char *p = buf; p && (p = strstr(p, "flags -- ")); p++) {
        p += strlen("flags -- ");
        size_t n = strcspn(p, " \n");
        if (used + n + 3 < sizeof t->resources)
            used += (size_t)snprintf(t->resources + used, sizeof t->resources - used, "%s%.*s",
                                     used ? ", " : "", (int)n, p);
    }
    free(buf);
    static const nxc__env_choice_t modes[] = {{"auto", -1}, {"rma", 1}, {"am", 0}};
    int mode = nxc__env_enum("NXC_UCX_DATA", -1, modes, sizeof modes / sizeof modes[0]);
    return mode < 0 ? hw : mode == 1;
}

void nxc__ucx_describe(nxc__tp_t *tp, char *buf, size_t len) {
    ucx_tp_t *t = ucx_of(tp);
    unsigned maj, min, rel;
    ucp_get_version(&maj, &min, &rel);
    snprintf(buf, len, "UCX %u.%u.%u; data path %s; resources: %s", maj, min, rel,
             t->use_rma ? "get/put (RMA hardware)"
                        : "active messages (no RMA hardware: UCX would only emulate get/put, "
                          "so tcp and shm go first)",
             t->resources[0] ? t->resources : "none");
}

static void set_default(ucp_config_t *cfg, const char *key, const char *value) {
    char env[64];
    snprintf(env, sizeof env, "UCX_%s", key);
    if (!getenv(env)) ucp_config_modify(cfg, key, value);
}

/* Which peers a wait is for: those whose flush, BYE answer or close is
 * still awaited. */
typedef bool awaited_fn(const ucx_peer_t *p);

/* How long destroy waits for a flush or a close: while UCX keeps finding
 * work (a slow peer still taking what we send), up to `until`; once it has
 * found none for `idle` ns, the peers still waited for count as
 * unresponsive, unless one of them is a process on this host that is free
 * to run (see live_peer_awaited()). One bound serves a whole round of
 * requests, so a round with many frozen peers costs one idle period, not
 * one each. */
typedef struct {
    uint64_t until, idle, busy, max;
    awaited_fn *awaited; /* NULL: no peer in particular */
} wait_bound_t;

static wait_bound_t wait_bound(uint64_t idle_ns, uint64_t max_ns, awaited_fn *awaited) {
    uint64_t now = nxc__now_ns();
    return (wait_bound_t){
        .until = now + max_ns, .idle = idle_ns, .busy = now, .max = max_ns, .awaited = awaited};
}

/* Is a peer that `b` waits for a live process on this host, not stopped?
 * Such a peer that took nothing for the idle period is starved (a loaded
 * host: under ThreadSanitizer, a server with 64 clients took nothing from
 * one for over 3 s), not frozen; giving up on it would lose the last
 * message we sent it, a DONE among them. Only a peer stopped, dead or on
 * another host (whose state we cannot see) is given up on early. */
static bool live_peer_awaited(const ucx_tp_t *t, const wait_bound_t *b) {
    if (!b->awaited) return false;
    for (const ucx_peer_t *p = t->peers; p; p = p->next)
        if (b->awaited(p) && nxc__process_can_run((int)p->pid, p->start_time)) return true;
    return false;
}

/* Why `b` ran out for peer `p`, for a warning: no progress for its idle
 * period, or its overall cap, which only a peer alive on this host is
 * waited for (another peer of the same round may be what kept it going). */
static const char *bound_reason(const wait_bound_t *b, const ucx_peer_t *p, char *buf, size_t len) {
    bool capped = nxc__now_ns() >= b->until;
    unsigned long long ms = (unsigned long long)((capped ? b->max : b->idle) / 1000000);
    if (!capped)
        snprintf(buf, len, "the peer took nothing for %llu ms", ms);
    else if (nxc__process_can_run((int)p->pid, p->start_time))
        snprintf(buf, len,
                 "the flush reached its %llu ms cap: the peer's process is alive on this host "
                 "but took data slowly or not at all (starved, or its connector has no progress "
                 "thread and its application is not driving it)",
                 ms);
    else
        snprintf(buf, len, "the flush reached its %llu ms cap", ms);
    return buf;
}

static const char *peer_name(const ucx_peer_t *p) {
    return p->name[0] ? p->name : "(unnamed)";
}

/* How long a wait spins on the worker after its last progress before it
 * sleeps on the worker's events instead, and for how long at most at a
 * time. A destroy that waits seconds for a starved peer must not take the
 * CPU that peer needs: 64 clients spinning in destroy starved every other
 * process on the host, under ThreadSanitizer, for over a minute. */
#define SPIN_NS 1000000ull
#define NAP_MS 5

/* Sleep until the worker has an event, or NAP_MS (not when it has one
 * already). */
static void nap(ucx_tp_t *t) {
    if (ucp_worker_arm(t->worker) != UCS_OK) return;
    struct pollfd pf = {.fd = t->efd, .events = POLLIN};
    poll(&pf, 1, NAP_MS);
}

/* One worker progress call, unless `b` ran out (then false). */
static bool progress_within(ucx_tp_t *t, wait_bound_t *b) {
    uint64_t now = nxc__now_ns();
    if (now >= b->until) return false;
    if (now - b->busy >= b->idle) {
        if (!live_peer_awaited(t, b)) return false;
        b->busy = now; /* a live peer is slow: wait on, up to the cap */
    }
    if (ucp_worker_progress(t->worker))
        b->busy = now;
    else if (now - b->busy >= SPIN_NS)
        nap(t);
    return true;
}

/* Progress until `r` (a request, or the status of one that needs none)
 * completes or `b` runs out, then release it. True if it completed. */
static bool settle(ucx_tp_t *t, ucs_status_ptr_t r, wait_bound_t *b) {
    if (!UCS_PTR_IS_PTR(r)) return true;
    while (ucp_request_check_status(r) == UCS_INPROGRESS && progress_within(t, b))
        ;
    bool done = ucp_request_check_status(r) != UCS_INPROGRESS;
    ucp_request_free(r);
    return done;
}

/* Progress until UCX has had nothing to do for `quiet` ns, or until. */
static void progress_until_quiet(ucx_tp_t *t, uint64_t quiet, uint64_t until) {
    uint64_t now = nxc__now_ns(), idle_since = now;
    while (now < until && now - idle_since < quiet) {
        if (ucp_worker_progress(t->worker)) idle_since = nxc__now_ns();
        now = nxc__now_ns();
    }
}

/* Flush every healthy endpoint of ours, together, within `b`. A flush
 * completes once the endpoint's wire-up is over and what we sent reached
 * the peer (a DONE sent just before the application destroys the connector
 * must not be lost). A peer whose flush does not complete in time counts as
 * failed from here on: its endpoint is then closed forced, and what was
 * still queued for it is lost (said in a warning). */
static void flush_peers(ucx_tp_t *t, wait_bound_t *b) {
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (p->failed || !p->ep) continue;
        ucp_request_param_t rp = {0};
        ucs_status_ptr_t r = ucp_ep_flush_nbx(p->ep, &rp);
        p->flush_req = UCS_PTR_IS_PTR(r) ? r : NULL;
    }
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (p->flush_req && !settle(t, p->flush_req, b) && !p->failed) {
            p->failed = true;
            char why[256];
            NXC_LOG_W("ucx: destroy: what was still queued for peer %s may be lost (%s); its "
                      "endpoint is closed forced",
                      peer_name(p), bound_reason(b, p, why, sizeof why));
        }
        p->flush_req = NULL;
    }
}

/* Say BYE to every peer we are connected to and have spoken with (see
 * ucx_wire.h); await_byes() waits for the answers. */
static void say_bye(ucx_tp_t *t) {
    msg_bye_t m = {.magic = MSG_MAGIC};
    for (ucx_peer_t *p = t->peers; p; p = p->next)
        if (!p->failed && p->ep && (p->wire == WIRE_DONE || p->bound))
            p->bye_sent = nxc__ucx_ep_send(t, p->ep, AM_BYE, &m, sizeof m, NULL, 0, NULL,
                                           UCP_AM_SEND_FLAG_REPLY) == UCS_OK;
}

static bool flush_awaited(const ucx_peer_t *p) {
    return p->flush_req != NULL;
}

static bool close_awaited(const ucx_peer_t *p) {
    return p->close_req != NULL;
}

static bool bye_unanswered(const ucx_peer_t *p) {
    return p->bye_sent && !p->bye_acked && !p->failed;
}

static bool bye_awaited(const ucx_tp_t *t) {
    for (const ucx_peer_t *p = t->peers; p; p = p->next)
        if (bye_unanswered(p)) return true;
    return false;
}

/* Progress until every live peer answered our BYE, within `b`. A peer that
 * does not answer is closed all the same (in flush mode): it is only no
 * longer known to have handled all we sent. */
static void await_byes(ucx_tp_t *t, wait_bound_t *b) {
    uint64_t t0 = nxc__now_ns();
    while (bye_awaited(t) && progress_within(t, b))
        ;
    for (const ucx_peer_t *p = t->peers; p; p = p->next)
        if (bye_unanswered(p))
            NXC_LOG_I("ucx: destroy: peer %s did not answer BYE in %llu ms", peer_name(p),
                      (unsigned long long)((nxc__now_ns() - t0) / 1000000));
}

/* Close every endpoint, together: a healthy peer's in flush mode, so that
 * what is still queued on it (a wire-up reply included) goes out first, a
 * failed peer's forced (see begin_close()). Wait for them within `b`. */
static void close_peers(ucx_tp_t *t, wait_bound_t *b) {
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        if (!p->ep) continue;
        ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                  .flags = p->failed ? UCP_EP_CLOSE_FLAG_FORCE : 0};
        ucs_status_ptr_t r = ucp_ep_close_nbx(p->ep, &rp);
        p->ep = NULL;
        p->close_req = UCS_PTR_IS_PTR(r) ? r : NULL;
    }
    for (ucx_peer_t *p = t->peers; p; p = p->next) {
        settle(t, p->close_req, b);
        p->close_req = NULL;
    }
    while (t->peers)
        nxc__ucx_unlist_peer(t, t->peers);
}

/* Let UCX finish what is under way before the worker goes, each step
 * bounded: progress until quiet, BYE said (see say_bye()), our endpoints
 * flushed (what we sent, a DONE included, reached the peer), the worker
 * flushed, the answers to BYE awaited, our endpoints closed
 * (see close_peers()) and their close requests waited for, then progress
 * until UCX has been quiet a moment. Meanwhile our listener rejects new
 * connections (see nxc__ucx_destroy()). The flush and the close each wait
 * while UCX keeps making progress or the peer is a live process on this
 * host, up to 10 s, so a slow but live peer (a loaded server draining many
 * clients) still gets our last bytes; any other peer that takes nothing for
 * 3 s counts as stopped. 1 s was too short: in the fan-in test under load
 * (ASan, CPU hogs, 64 clients) a live server took nothing from one client
 * for over a second, and the forced close lost that client's last DONE;
 * under ThreadSanitizer, for over 3 s. */
#define QUIESCE_IDLE_NS 3000000000ull
#define QUIESCE_MAX_NS 10000000000ull
static void quiesce(ucx_tp_t *t) {
    progress_until_quiet(t, 20000000ull, nxc__now_ns() + 500000000ull);
    wait_bound_t b = wait_bound(QUIESCE_IDLE_NS, QUIESCE_MAX_NS, flush_awaited);
    say_bye(t);
    flush_peers(t, &b);
    ucp_request_param_t rp = {0};
    b.awaited = NULL;
    settle(t, ucp_worker_flush_nbx(t->worker, &rp), &b);
    b.awaited = bye_unanswered;
    await_byes(t, &b);
    b = wait_bound(QUIESCE_IDLE_NS, QUIESCE_MAX_NS, close_awaited);
    close_peers(t, &b);
    progress_until_quiet(t, 20000000ull, nxc__now_ns() + 500000000ull);
}

void nxc__ucx_destroy(nxc__tp_t *tp) {
    ucx_tp_t *t = ucx_of(tp);
    t->closing = true; /* nxc__ucx_conn_req_cb() rejects from here on */
    while (t->conn_reqs) {
        conn_req_t *q = t->conn_reqs;
        t->conn_reqs = q->next;
        ucp_listener_reject(t->listener, q->req);
        free(q);
    }
    if (t->worker) {
        quiesce(t);
        /* The listener goes last, right before the worker: UCX 1.13 leaves
         * the connections it accepted but whose request has not arrived yet
         * pointing at a destroyed listener, and calls it when the request
         * arrives (uct_tcp_sockcm_ep_server_invoke_conn_req_cb: a use after
         * free). Until the listener goes, such a request is rejected; the
         * worker's destruction closes what is left. */
        if (t->listener) ucp_listener_destroy(t->listener);
        /* Messages that arrived meanwhile are dropped with the inbox below:
         * answering them now would only create peers. */
        nxc__regcache_fini(&t->rc);
        if (t->addr) ucp_worker_release_address(t->worker, t->addr);
        ucp_worker_destroy(t->worker);
    }
    while (t->inbox) {
        inbox_msg_t *m;
        NXC__QUEUE_POP(t->inbox, t->inbox_tail, m);
        free(m);
    }
    if (t->ctx) ucp_cleanup(t->ctx);
    free(t->conn);
    free(t);
}

/* The IPv4 address peers reach our listener at: the connector's tcp address
 * when it names one, else the first up interface that is not loopback (as
 * the tcp transport lists them), else loopback. Network order. */
static uint32_t listen_ip(const char *bind_addr) {
    struct in_addr a = {.s_addr = htonl(INADDR_LOOPBACK)};
    if (strcmp(bind_addr, "0.0.0.0") != 0) {
        inet_pton(AF_INET, bind_addr, &a);
        return a.s_addr;
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) return a.s_addr;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
            !(i->ifa_flags & IFF_LOOPBACK)) {
            a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            break;
        }
    freeifaddrs(ifs);
    return a.s_addr;
}

/* ucx.address, else the tcp listener's address (tcp.address, the
 * tcp_address shorthand or NXC_TCP_ADDRESS), which ucx always followed. */
static const char *listen_address(const nxc_connector_t *c) {
    const char *addr = nxc__option_text(c, "ucx", "address");
    if (!addr) addr = nxc__option_text(c, "tcp", "address");
    return addr ? addr : "0.0.0.0";
}

/* Open the listener peers connect to (any port, on listen_address()) and
 * build the connection info the metadata carries: our worker address, then
 * the listener's address (ucx_check.h). */
static ucs_status_t listen_and_describe(ucx_tp_t *t, const char *bind_addr) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) return UCS_ERR_INVALID_ADDR;
    ucp_listener_params_t lp = {
        .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&sa, .addrlen = sizeof sa},
        .conn_handler = {.cb = nxc__ucx_conn_req_cb, .arg = t}};
    ucs_status_t s = ucp_listener_create(t->worker, &lp, &t->listener);
    if (s != UCS_OK) return s;
    ucp_listener_attr_t la = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    s = ucp_listener_query(t->listener, &la);
    if (s != UCS_OK) return s;
    uint16_t port = ntohs(((const struct sockaddr_in *)&la.sockaddr)->sin_port);
    uint32_t ip = listen_ip(bind_addr);
    t->conn_len = t->addr_len + NXC__UCX_LISTEN_LEN;
    t->conn = malloc(t->conn_len);
    if (!t->conn) return UCS_ERR_NO_MEMORY;
    uint8_t *l = t->conn + t->addr_len;
    memcpy(t->conn, t->addr, t->addr_len);
    memcpy(l, "NXUL", 4);
    l[4] = (uint8_t)port, l[5] = (uint8_t)(port >> 8), l[6] = l[7] = 0;
    memcpy(l + 8, &ip, 4);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ip, text, sizeof text);
    NXC_LOG_D("ucx: listening on %s:%u, advertised as %s:%u", bind_addr, port, text, port);
    return UCS_OK;
}

/* The address and rkey checks mirror UCX 1.13's formats: say so once when
 * another release runs, whose peers' addresses they may refuse. */
static void warn_version_once(void) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    unsigned maj, min, rel;
    ucp_get_version(&maj, &min, &rel);
    if ((maj != 1 || min != 13) && !atomic_flag_test_and_set(&said))
        NXC_LOG_W("ucx: running UCX %u.%u.%u; nxc checks worker addresses and remote keys "
                  "against UCX 1.13's formats and may refuse some of this release's",
                  maj, min, rel);
}

/* UCX logs on its own (to stderr, "UCX  ERROR ..."), with its own threshold
 * (UCX_LOG_LEVEL, read when libucs loads). Unless the user set that, follow
 * nxc's: failures UCX reports to nxc come back as op results and nxc's own
 * messages, so at NXC_LOG_LEVEL=error UCX keeps only its fatal lines. Set
 * before UCX reads its configuration, and again for each connector, since
 * the process-wide nxc level only rises. */
static void follow_log_level(void) {
    if (getenv("UCX_LOG_LEVEL")) return;
    static const char *const ucx_level[] = {[NXC_LOG_ERROR] = "fatal",
                                            [NXC_LOG_WARN] = "warn",
                                            [NXC_LOG_INFO] = "diag",
                                            [NXC_LOG_DEBUG] = "info"};
    ucs_global_opts_set_value("LOG_LEVEL", ucx_level[nxc__log_level()]);
}

nxc_status_t nxc__ucx_create(nxc_connector_t *c, nxc__tp_t **tp_p) {
    ucx_tp_t *t = calloc(1, sizeof *t);
    if (!t) return nxc__err(NXC_ERR_NO_MEMORY, "ucx: out of memory");
    t->efd = -1;
    follow_log_level();
    ucp_config_t *cfg;
    ucs_status_t s = ucp_config_read(NULL, NULL, &cfg);
    if (s != UCS_OK) {
        free(t);
        return nxc__ucx_err("ucp_config_read", s);
    }
    /* Notice a dead peer in seconds, not UCX's default 20 s. */
    set_default(cfg, "KEEPALIVE_INTERVAL", "1s"); /* = KEEPALIVE_NS */
    /* Not a default: in unified mode UCX leaves lengths out of the addresses
     * it packs and reads them from its own transports, so nxc could not
     * check a peer's address (ucx_check.c) before UCX reads it. */
    ucp_config_modify(cfg, "UNIFIED_MODE", "n");
    /* Endpoints come from the listener (see connect_peer()): connect only
     * over the device the connection was made on, so that UCX needs no
     * wire-up message exchange after the connection manager's. */
    set_default(cfg, "CM_USE_ALL_DEVICES", "n");
    warn_version_once();
    ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
                       .features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
                       .name = nxc__connector_name(c)};
    s = ucp_init(&pp, cfg, &t->ctx);
    ucp_config_release(cfg);
    if (s != UCS_OK) {
        free(t);
        return nxc__ucx_err("ucp_init", s);
    }
    ucp_context_attr_t ca = {.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES};
    if (ucp_context_query(t->ctx, &ca) == UCS_OK)
        t->cuda = (ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;

    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SERIALIZED};
    nxc_status_t st = NXC_OK;
    s = ucp_worker_create(t->ctx, &wp, &t->worker);
    if (s == UCS_OK) s = ucp_worker_get_efd(t->worker, &t->efd);
    if (s == UCS_OK) {
        ucp_worker_attr_t wa = {.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS};
        s = ucp_worker_query(t->worker, &wa);
        t->addr = wa.address;
        t->addr_len = wa.address_length;
    }
    if (s == UCS_OK) s = nxc__ucx_set_am_handlers(t);
    if (s == UCS_OK) s = listen_and_describe(t, listen_address(c));
    if (s != UCS_OK) st = nxc__ucx_err("worker setup", s);
    if (st == NXC_OK && t->conn_len > UINT32_MAX)
        st = nxc__err(NXC_ERR_TRANSPORT, "ucx: worker address too long");
    if (st != NXC_OK) {
        nxc__ucx_destroy(&t->base);
        return st;
    }
    nxc__regcache_init(&t->rc, &nxc__ucx_reg_ops, t, nxc__regcache_env_max_idle());
    t->use_rma = want_rma(t);
    t->base.fallback = !t->use_rma;
    NXC_LOG_D("ucx: worker address %zu bytes, cuda %s, data path %s", t->addr_len,
              t->cuda ? "yes" : "no", t->use_rma ? "rma (get/put)" : "active messages");
    *tp_p = &t->base;
    return NXC_OK;
}
