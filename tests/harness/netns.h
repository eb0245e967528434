/* SPDX-License-Identifier: Apache-2.0 */
/* Two "hosts" on one machine for tests: two Linux network namespaces joined
 * by a veth pair, so peers forked into them can reach each other only over
 * that link (which a test can cut). Needs root and iproute2's `ip`.
 *
 *   nxt_netns_t ns;
 *   int rc = nxt_netns_pair(&ns);          // in the test process
 *   if (rc == NXT_NETNS_UNSUPPORTED) nxt_skip("%s", ns.why);
 *   NXT_CHECK(rc == 0);
 *   ... fork peers; each calls nxt_netns_enter(&ns, 0 or 1) first ...
 *   nxt_netns_link(&ns, false);            // cut the link (both ends down)
 *   nxt_netns_destroy(&ns);
 *
 * Names carry the creating process's pid, so parallel runs do not clash
 * (the addresses live inside the pair's own namespaces and could not clash
 * anyway; they still vary with the pid, which makes logs easier to tell
 * apart). Call nxt_netns_pair() before the process starts threads.
 *
 * Removal is robust: nxt_netns_pair() starts a small detached reaper that
 * removes both namespaces as soon as the creating process is gone, however
 * it ends (a failed check's _exit, the harness's SIGKILL of the test's
 * process group on timeout). Before creating anything, nxt_netns_pair()
 * also removes namespaces of the same names, and those of earlier runs
 * whose creating process no longer exists.
 */
#ifndef NXT_NETNS_H
#define NXT_NETNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* nxt_netns_pair() results. */
enum {
    NXT_NETNS_UNSUPPORTED = -1, /* this machine or user cannot: skip (see why) */
    NXT_NETNS_FAILED = -2       /* could have, but a step failed: a real error */
};

typedef struct nxt_netns {
    char name[2][32]; /* namespaces: "nxcA<pid>", "nxcB<pid>" */
    char veth[2][16]; /* the veth end inside each: "nxa<pid>", "nxb<pid>" */
    char addr[2][16]; /* IPv4 of each end: "10.211.<x>.1", "10.211.<x>.2" (/24) */
    pid_t owner;      /* the process that created them; only it destroys them */
    pid_t reaper;     /* the detached process that removes them if the owner dies */
    bool live;
    char why[512]; /* the reason when nxt_netns_pair() failed */
} nxt_netns_t;

/* Create namespaces A (side 0) and B (side 1) and the veth pair between
 * them, with addresses, loopback and both veth ends up. Returns 0,
 * NXT_NETNS_UNSUPPORTED (not root, no `ip`, no netns or veth support: the
 * caller skips) or NXT_NETNS_FAILED; on failure `why` says what and the
 * message is also printed on stderr, and nothing is left behind. */
int nxt_netns_pair(nxt_netns_t *out);

/* Move the calling process into side 0 (A) or 1 (B): setns() on
 * /run/netns/<name>, then, as `ip netns exec` does, a private mount
 * namespace with /sys remounted, so that software listing
 * /sys/class/net (UCX does) sees this namespace's interfaces. Call it in a
 * forked, still single-threaded child, before creating any connector.
 * Returns 0, or -1 with a message on stderr. */
int nxt_netns_enter(const nxt_netns_t *ns, int side);

/* Set both veth ends down (up = false) or up. Returns 0, or -1 with a
 * message on stderr. */
int nxt_netns_link(const nxt_netns_t *ns, bool up);

/* Bytes received and sent so far by side's veth end (from `ip -s`), to
 * check that a transfer really crossed the link. Returns 0, or -1 with a
 * message on stderr. */
int nxt_netns_counters(const nxt_netns_t *ns, int side, uint64_t *rx, uint64_t *tx);

/* Remove both namespaces (peers still inside keep theirs until they exit)
 * and stop the reaper. No-op unless called by the owner of a live pair. */
void nxt_netns_destroy(nxt_netns_t *ns);

#endif
