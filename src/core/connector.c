/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/connector.h"
#include "core/cq.h"
#include "core/mem.h"
#include "core/op.h"
#include "core/options.h"
#include "core/progress.h"
#include "util/env.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sys.h"
#include "util/text.h"
#include "util/time.h"

/* Parse "ucx,tcp" into transport ops, in order, without duplicates. */
static nxc_status_t parse_transports(const char *text, const nxc__transport_ops_t **out,
                                     size_t *n_p) {
    size_t n = 0;
    const char *at = text;
    while (*at) {
        while (*at == ',' || isspace((unsigned char)*at))
            at++;
        if (!*at) break;
        const char *start = at;
        while (*at && *at != ',' && !isspace((unsigned char)*at))
            at++;
        const nxc__transport_ops_t *ops = nxc__transport_find(start, (size_t)(at - start));
        if (!ops)
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "transports \"%s\": unknown transport \"%.*s\" (built in: %s)", text,
                            (int)(at - start), start, nxc__transports_builtin_names);
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            dup |= out[i] == ops;
        if (!dup && n < NXC__MAX_TRANSPORTS) out[n++] = ops;
    }
    if (n == 0) return nxc__err(NXC_ERR_INVALID_PARAM, "transports \"%s\": names none", text);
    *n_p = n;
    return NXC_OK;
}

static bool transports_text(const char *text) {
    const nxc__transport_ops_t *tops[NXC__MAX_TRANSPORTS];
    size_t n;
    return parse_transports(text, tops, &n) == NXC_OK;
}

/* The `options` text, then the tcp shorthand fields, each checked against
 * the table of the transport it names. The environment is read later, by
 * each transport, for what was not given here. */
static nxc_status_t transport_options(nxc_connector_t *c, const nxc_connector_params_t *p,
                                      uint64_t mask) {
    nxc_status_t st = NXC_OK;
    if (mask & NXC_CONNECTOR_FIELD_OPTIONS) {
        if (!p->options) return nxc__err(NXC_ERR_INVALID_PARAM, "options: NULL");
        st = nxc__options_parse(c, p->options);
    }
    if (st == NXC_OK && (mask & NXC_CONNECTOR_FIELD_TCP_ADDRESS)) {
        if (!p->tcp_address) return nxc__err(NXC_ERR_INVALID_PARAM, "tcp_address: NULL");
        st = nxc__option_shorthand(c, "tcp_address", "tcp", "address", p->tcp_address);
    }
    if (st == NXC_OK && (mask & NXC_CONNECTOR_FIELD_TCP_PORT)) {
        char port[24];
        snprintf(port, sizeof port, "%d", p->tcp_port);
        st = nxc__option_shorthand(c, "tcp_port", "tcp", "port", port);
    }
    return st;
}

static nxc_status_t apply_params(nxc_connector_t *c, const nxc_connector_params_t *p,
                                 const nxc__transport_ops_t **tops, size_t *ntops) {
    uint64_t mask = p ? p->field_mask : 0;
    nxc_status_t st = nxc__check_field_mask("connector params", mask, NXC__CONNECTOR_FIELDS);
    if (st != NXC_OK) return st;
    if (mask & NXC_CONNECTOR_FIELD_NAME) {
        if (!p->name || !nxc__printable_text(p->name, NXC_NAME_MAX))
            return nxc__err(NXC_ERR_INVALID_PARAM,
                            "connector name must be 1..%d bytes, each a visible ASCII "
                            "character (0x21..0x7e: no space or control character; the name "
                            "travels in metadata)",
                            NXC_NAME_MAX);
        strcpy(c->name, p->name);
    } else {
        nxc__hex(c->name, c->instance, NXC__INSTANCE_LEN);
    }
    c->use_thread = (mask & NXC_CONNECTOR_FIELD_PROGRESS_THREAD) ? p->progress_thread != 0 : true;
    nxc_log_level_t level = nxc__log_env_level();
    if (mask & NXC_CONNECTOR_FIELD_LOG_LEVEL) {
        if (p->log_level < NXC_LOG_ERROR || p->log_level > NXC_LOG_DEBUG)
            return nxc__err(NXC_ERR_INVALID_PARAM, "log_level %d out of range", (int)p->log_level);
        level = p->log_level;
    }
    nxc__log_raise_level(level);
    c->md_version = (uint16_t)nxc__env_int("NXC_METADATA_VERSION", 1, 1, NXC__BLOB_VERSION);
    if (mask & NXC_CONNECTOR_FIELD_METADATA_VERSION) {
        if (p->metadata_version < 1 || p->metadata_version > NXC__BLOB_VERSION)
            return nxc__err(NXC_ERR_INVALID_PARAM, "metadata_version %d: expected 1 or %d",
                            p->metadata_version, NXC__BLOB_VERSION);
        c->md_version = (uint16_t)p->metadata_version;
    }

    if ((st = transport_options(c, p, mask)) != NXC_OK) return st;

    const char *list = NULL;
    if (mask & NXC_CONNECTOR_FIELD_TRANSPORTS) {
        if (!p->transports) return nxc__err(NXC_ERR_INVALID_PARAM, "transports: NULL");
        list = p->transports;
    } else {
        char accepted[96];
        snprintf(accepted, sizeof accepted, "a comma-separated list of %s",
                 nxc__transports_builtin_names);
        list = nxc__env_text("NXC_TRANSPORTS", transports_text, accepted);
    }
    c->transports_chosen = list != NULL;
    if (list) return parse_transports(list, tops, ntops);
    *ntops = 0;
    for (size_t i = 0; i < nxc__transports_builtin_count && i < NXC__MAX_TRANSPORTS; i++)
        tops[(*ntops)++] = nxc__transports_builtin[i];
    return NXC_OK;
}

static nxc_status_t start_transports(nxc_connector_t *c, const nxc__transport_ops_t **tops,
                                     size_t ntops) {
    char reasons[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < ntops; i++) {
        nxc__tp_t *tp = NULL;
        nxc_status_t st = tops[i]->create(c, &tp);
        if (st != NXC_OK) {
            NXC_LOG_W("connector %s: transport %s unavailable: %s", c->name, tops[i]->name,
                      nxc_last_error());
            used +=
                (size_t)snprintf(reasons + used, used < sizeof reasons ? sizeof reasons - used : 0,
                                 "%s%s", used ? "; " : "", nxc_last_error());
            if (used >= sizeof reasons) used = sizeof reasons - 1;
            continue;
        }
        tp->ops = tops[i];
        tp->c = c;
        int fd = tp->ops->event_fd(tp);
        if (fd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tp};
            if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev)) {
                tp->ops->destroy(tp);
                return nxc__err(NXC_ERR_SYSTEM, "epoll_ctl: %s", strerror(errno));
            }
        }
        c->tps[c->ntps++] = tp;
        size_t tl = strlen(c->transports_text);
        snprintf(c->transports_text + tl, sizeof c->transports_text - tl, "%s%s", tl ? "," : "",
                 tp->ops->name);
    }
    if (c->ntps == 0)
        return nxc__err(NXC_ERR_NO_TRANSPORT, "connector %s: no transport could start (%s)",
                        c->name, reasons);
    return NXC_OK;
}

static void destroy_connector(nxc_connector_t *c) {
    for (size_t i = c->ntps; i-- > 0;)
        c->tps[i]->ops->destroy(c->tps[i]);
    if (c->epfd >= 0) close(c->epfd);
    if (c->wakefd >= 0) close(c->wakefd);
    if (c->timerfd >= 0) close(c->timerfd);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->done_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static nxc_status_t connector_create(const nxc_connector_params_t *params,
                                     nxc_connector_t **connector_p) {
    if (!connector_p) return nxc__err(NXC_ERR_INVALID_PARAM, "connector_create: NULL out-param");
    nxc_connector_t *c = calloc(1, sizeof *c);
    if (!c) return nxc__err(NXC_ERR_NO_MEMORY, "connector: out of memory");
    c->epfd = c->wakefd = c->timerfd = -1;
    c->timer_set = UINT64_MAX;
    c->deadline_floor = UINT64_MAX;
    c->after_pass = nxc__ops_after_pass;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_cond_init(&c->done_cond, &ca);
    pthread_mutex_init(&c->done_lock, NULL);
    pthread_condattr_destroy(&ca);
    nxc__random(c->instance, sizeof c->instance);
    nxc__host_identity(c->host, sizeof c->host);
    c->pid = (uint32_t)getpid();
    c->start_time = nxc__process_start_time();
    c->next_grant_id = 1;

    const nxc__transport_ops_t *tops[NXC__MAX_TRANSPORTS];
    size_t ntops = 0;
    nxc_status_t st = apply_params(c, params, tops, &ntops);
    if (st != NXC_OK) goto fail;

    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (c->epfd < 0 || c->wakefd < 0 || c->timerfd < 0) {
        st = nxc__err(NXC_ERR_SYSTEM, "connector: epoll/eventfd/timerfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wakefd, &ev);
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->timerfd, &ev);

    st = start_transports(c, tops, ntops);
    if (st != NXC_OK) goto fail;

    if (c->use_thread) {
        int err = pthread_create(&c->thread, NULL, nxc__progress_thread, c);
        if (err) {
            st = nxc__err(NXC_ERR_SYSTEM, "connector: progress thread: %s", strerror(err));
            goto fail;
        }
    }
    NXC_LOG_I("connector %s created (transports %s, progress thread %s)", c->name,
              c->transports_text, c->use_thread ? "on" : "off");
    *connector_p = c;
    return NXC_OK;
fail:
    destroy_connector(c);
    return st;
}

nxc_status_t nxc_connector_create(const nxc_connector_params_t *params,
                                  nxc_connector_t **connector_p) {
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc_status_t st = connector_create(params, connector_p);
    nxc__err_guard_end(&guard, st != NXC_OK);
    return st;
}

/* Let threads blocked in nxc_op_wait() leave (their ops are terminal or the
 * connector is destroying, so they return at once once woken). Lock not
 * held: a waiter without a progress thread needs it to finish. */
static void wait_for_waiters(nxc_connector_t *c) {
    pthread_mutex_lock(&c->done_lock);
    while (atomic_load(&c->in_wait) > 0) {
        pthread_cond_broadcast(&c->done_cond);
        nxc__wake(c); /* waiters asleep in epoll (no progress thread) */
        struct timespec ts = nxc__clock_kernel(nxc__now_ns() + 10000000u);
        pthread_cond_timedwait(&c->done_cond, &c->done_lock, &ts);
    }
    pthread_mutex_unlock(&c->done_lock);
}

void nxc_connector_destroy(nxc_connector_t *c) {
    if (!c) return;
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc__lock(c);
    pthread_mutex_lock(&c->done_lock);
    c->destroying = true;
    pthread_cond_broadcast(&c->done_cond);
    pthread_mutex_unlock(&c->done_lock);
    nxc__wake_sleepers(c);
    /* Release what the user left: every op stopped together, one bound. */
    nxc__stop_all(c);
    nxc__unlock(c);
    wait_for_waiters(c);
    nxc__lock(c);
    c->destroying = false; /* no waiter is left: reaping is safe again */
    nxc__reap(c);
    c->stopping = true;
    nxc__unlock(c);
    nxc__wake(c);
    if (c->use_thread) pthread_join(c->thread, NULL);
    nxc__lock(c);
    nxc__reap(c);
    nxc__cq_destroy_all(c); /* detaches any op that leaks below */
    nxc__mem_drop_all(c);
    for (nxc_op_t *op = c->ops; op; op = op->next)
        NXC_LOG_E("connector %s: an op is still in flight at destroy; leaking it rather than "
                  "freeing memory a transport may still use",
                  c->name);
    c->ops = c->ops_tail = NULL;
    nxc__unlock(c);
    NXC_LOG_I("connector %s destroyed", c->name);
    destroy_connector(c);
    nxc__err_guard_end(&guard, false);
}

const char *nxc_connector_name(const nxc_connector_t *c) {
    return c ? c->name : "";
}

const char *nxc_connector_transports(const nxc_connector_t *c) {
    return c ? c->transports_text : "";
}

int nxc_connector_progress(nxc_connector_t *c) {
    if (!c) return nxc__err(NXC_ERR_INVALID_PARAM, "connector_progress: NULL connector");
    nxc__err_guard_t guard;
    nxc__err_guard_begin(&guard);
    nxc__lock(c);
    nxc__loop_drain(c); /* what woke the fd is handled by this pass */
    int n = nxc__progress_locked(c);
    /* Idle: arm so that nxc_connector_fd() reports what comes next. */
    if (n == 0 && !nxc__loop_arm(c)) n = 1;
    c->app_armed = n == 0; /* armed: the application may sleep on the fd */
    nxc__unlock(c);
    nxc__err_guard_end(&guard, n < 0);
    return n;
}

int nxc_connector_arm(nxc_connector_t *c) {
    if (!c) return nxc__err(NXC_ERR_INVALID_PARAM, "connector_arm: NULL connector");
    nxc__lock(c);
    int result = nxc__loop_arm(c) ? NXC_OK : NXC_INPROGRESS;
    if (result == NXC_OK) c->app_armed = true;
    nxc__unlock(c);
    return result;
}

int nxc_connector_timeout(nxc_connector_t *c) {
    if (!c) return nxc__err(NXC_ERR_INVALID_PARAM, "connector_timeout: NULL connector");
    nxc__lock(c);
    uint64_t due = nxc__next_due(c);
    nxc__unlock(c);
    if (due == UINT64_MAX) return -1;
    return nxc__ms_until(due, INT32_MAX);
}

int nxc_connector_fd(nxc_connector_t *c) {
    if (!c) {
        nxc__err(NXC_ERR_INVALID_PARAM, "connector_fd: NULL connector");
        return -1;
    }
    return c->epfd;
}

/* --- what transports read (transport/transport.h) ---------------------------- */

const char *nxc__connector_name(const nxc_connector_t *c) {
    return c->name;
}
const uint8_t *nxc__connector_instance(const nxc_connector_t *c) {
    return c->instance;
}
const char *nxc__connector_host(const nxc_connector_t *c) {
    return c->host;
}
