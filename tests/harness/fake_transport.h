/* SPDX-License-Identifier: Apache-2.0 */
/*
 * "fake": a transport that exists only in the tests, so that the core's
 * state machine (grants, deadlines, cancel and drain, destroy) can be
 * tested step by step, without sockets or sleeps.
 *
 * Its peers are the other connectors of the same process. What a real
 * transport would send goes into the receiving connector's inbox, and that
 * connector handles it in its own progress pass. Every fake connector runs
 * with its progress thread off, so the test decides which side moves when:
 * each ordering is reached on purpose, and every run takes the same path.
 * Time passes only with nxc__clock_skip() (util/time.h), or with a
 * connector's idle skip (fake_idle_skip()).
 *
 * A read or write goes like a stream transport's:
 *   post()            the initiator sends REQ (key, secret, the whole op's ranges)
 *   owner's pass      nxc__grant_open(): GRANT back, or REFUSED with the reason
 *   initiator's pass  copies the bytes (memcpy: one address space), finishes
 *                     its op, sends DONE
 *   owner's pass      nxc__grant_close(complete): the passive op is COMPLETE
 *
 * Every call the core makes on a fake transport, and every message it
 * handles, is appended to one log ("<connector>.<event>" words), which the
 * tests read to check the order things happened in.
 */
#ifndef NXT_FAKE_TRANSPORT_H
#define NXT_FAKE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "nxc/nxc.h"

typedef struct fake fake_t;

/* A connector named `name` on the fake transport alone, progress thread off. */
nxc_connector_t *fake_connector(const char *name);
/* Its fake transport. */
fake_t *fake_of(nxc_connector_t *c);

/* Drive each connector's progress `passes` times, in the order given
 * (NULL-terminated). */
void fake_pass(int passes, ...);

/* hold: this connector's passes leave its inbox alone (messages wait). */
void fake_hold(fake_t *f, bool hold);
/* stall: this connector's granted transfers do not move, and a cancel does
 * not end them (what is in flight stays in flight) until it is lifted. */
void fake_stall(fake_t *f, bool stall);
/* deaf: abort_io() on this connector changes nothing (a transport that
 * cannot confirm an abort). */
void fake_deaf(fake_t *f, bool deaf);
/* Every passive op of this connector has a grant-free access in flight
 * (direct_busy(), as shm's direct writes) for `passes` more passes of it;
 * -1: until changed. */
void fake_direct(fake_t *f, int passes);
/* A pass of this connector that finds nothing to do lets `ns` pass on nxc's
 * clock and counts as work, so that a wait inside nxc (a drain) reaches its
 * bound at once instead of sleeping. 0 (default): idle passes are idle. */
void fake_idle_skip(fake_t *f, uint64_t ns);

/* Messages waiting in this connector's inbox. */
int fake_inbox(fake_t *f);

/* The log since the last fake_log_clear(): space-separated events. */
const char *fake_log(void);
void fake_log_clear(void);
/* Fail the test (printing the log) unless it holds these events
 * (NULL-terminated) in this order, possibly with others between them. */
void fake_expect_log(const char *file, int line, const char *first, ...);

#endif
