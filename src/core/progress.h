/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loop and waiting (progress.c). It drives the transports; what it
 * does for the ops after each pass it reaches through c->after_pass, so
 * that this file needs nothing of op.c.
 */
#ifndef NXC_CORE_PROGRESS_H
#define NXC_CORE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/connector.h"
#include "nxc/nxc.h"

int nxc__progress_locked(nxc_connector_t *c);
/* Lock held, after work done outside a pass (an op posted, a transport's
 * thread finishing a copy): must the loop be woken? Not when `tp` is idle
 * (every fd it sleeps on will signal what comes next) and nothing comes
 * due before the timer the loop armed: a wake-up cost the caller a write
 * that interrupts the CPU the loop sleeps on (up to 9 us on the
 * development VM), and the loop a pass with nothing to do. */
bool nxc__loop_needs_wake(nxc_connector_t *c, nxc__tp_t *tp);
/* Lock held, work for the loop was posted outside a pass: true when a loop
 * may be asleep on epfd (write wakefd after unlocking). Else the work is
 * noted, and the next arm refuses until a pass has run: no write that no
 * one reads (an application polling its queues, a lingering thread). */
bool nxc__loop_wake_wanted(nxc_connector_t *c);
/* A pass run inside a call other than nxc_connector_progress() (lock
 * held): nxc_op_status(), nxc_cq_poll(), a wait. An application that
 * armed its loop (c->app_armed) sleeps on epfd after the call, so the pass
 * leaves the connector armed as it found it. */
int nxc__progress_in_call(nxc_connector_t *c);
/* Arm every transport for sleeping; false: work is pending, progress again. */
bool nxc__arm_all(nxc_connector_t *c);
/* The earliest monotonic ns at which progress must run (an op's deadline,
 * a transport's timer); UINT64_MAX: none. */
uint64_t nxc__next_due(nxc_connector_t *c);
/* Before sleeping on epfd: arm the transports and set the timerfd to the
 * next due time. false: work is pending or due, progress again. */
bool nxc__loop_arm(nxc_connector_t *c);
/* After waking: empty the wake eventfd and the timerfd. */
void nxc__loop_drain(nxc_connector_t *c);
/* Sleep until woken, due or timeout_ms (-1: no limit; lock held on entry and
 * exit). */
void nxc__sleep_locked(nxc_connector_t *c, int timeout_ms);
void *nxc__progress_thread(void *arg);
/* Does a thread want the lock the progress thread holds (blocked in
 * nxc__lock(), or woken in nxc__wait_locked() and not yet back)? The
 * progress thread steps aside between busy passes while one does. */
bool nxc__lock_wanted(nxc_connector_t *c);
/* A public wait begins / ends: nxc_connector_destroy() frees nothing while
 * any is inside (c->in_wait). Call enter before touching anything else. */
void nxc__waiter_enter(nxc_connector_t *c);
void nxc__waiter_leave(nxc_connector_t *c);
/* With a progress thread, lock not held: sleep on done_cond (broadcast when
 * any op ends) until pred(arg) (read without the lock: atomics only), the
 * connector is being destroyed, or the deadline. */
void nxc__sleep_until_done(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                           uint64_t deadline);
/* Wait (lock held) until pred(arg) or the deadline; drives progress when
 * the connector has no thread. Returns pred(arg). */
bool nxc__wait_locked(nxc_connector_t *c, bool (*pred)(const void *arg), const void *arg,
                      uint64_t deadline);

#endif
