/* SPDX-License-Identifier: Apache-2.0 */
/* The shm transport against forged metadata. shm copies straight between
 * two processes' memory (process_vm_readv/writev), so the one question that
 * matters is *whose* memory: it must always be the process that granted the
 * access on the control socket, as the kernel names it, never a pid written
 * in the metadata text.
 *
 * The buffers are allocated before any fork, so the owner, a bystander
 * ("victim") and the writer (this process) all have a buffer at the same
 * address, each with its own pattern. A metadata text edited to name the
 * victim's pid (or the writer's own) must not move a byte into those
 * processes, whether or not a connection to the owner already exists.
 *
 * Direct writes (no grant: a claim in the owner's arena) go only into a
 * writable, and an owner ending its op waits for a claimed write to end,
 * unless the claiming process is gone, which fails the op.
 *
 * Also here: a direct read (no grant round trip) of metadata whose
 * notification key was edited must be refused as tcp refuses it, not
 * complete on the reader while the owner's op never does; and a copy whose
 * control connection the owner cuts in the middle ends PEER_FAILED, never
 * CANCELLED (nobody cancelled it).
 *
 * Memory from nxc_mem_alloc(): a peer maps it and copies with memcpy, and
 * still only through live ops; an fd number the owner reuses for new
 * memory is never mistaken for the old mapping; and a record whose memory
 * fields were forged is never followed outside the mapping. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/metadata.h"
#include "mdtool.h"
#include "nxt.h"
#include "transport/shm/shm_internal.h"
#include "util/sys.h"

#define SIZE (256u << 10)
#define WAIT_MS 10000

enum { SEED_VICTIM = 11, SEED_OWNER = 22, SEED_DATA = 33, SEED_WRITER = 44 };

static char *buf_a, *buf_b; /* same address in every process of the test */

static nxc_connector_t *shm_connector(const char *name) {
    return nxt_connector_on(name, "shm");
}

/* --- the bystander and the owner -------------------------------------------------- */

/* Answers "check" with whether its buffers still hold their own pattern. */
static void victim(int fd, void *arg) {
    nxt_fill(buf_a, SIZE, SEED_VICTIM);
    nxt_fill(buf_b, SIZE, SEED_VICTIM + 1);
    nxt_send_str(fd, "ready");
    for (;;) {
        char *m = nxt_recv(fd, NULL, 60000);
        bool quit = !strcmp(m, "quit");
        free(m);
        if (quit) return;
        bool intact = nxt_verify(buf_a, SIZE, SEED_VICTIM) == SIZE_MAX &&
                      nxt_verify(buf_b, SIZE, SEED_VICTIM + 1) == SIZE_MAX;
        nxt_send_str(fd, intact ? "intact" : "touched");
    }
}

/* The test's next question to a peer serving it; NULL at "quit". */
static char *next_question(int fd) {
    char *m = nxt_recv(fd, NULL, 60000);
    if (strcmp(m, "quit")) return m;
    free(m);
    return NULL;
}

/* Exposes writable A and writable B; answers "A?"/"B?" with the op's status
 * and whether the buffer holds the writer's data. */
static void owner(int fd, void *arg) {
    nxt_fill(buf_a, SIZE, SEED_OWNER);
    nxt_fill(buf_b, SIZE, SEED_OWNER);
    nxc_connector_t *c = shm_connector("owner");
    nxc_desc_t da = nxt_desc(buf_a, SIZE), db = nxt_desc(buf_b, SIZE);
    nxc_op_t *wa, *wb;
    NXT_PASS(nxc_create_writable(c, &da, 1, NULL, &wa));
    NXT_PASS(nxc_create_writable(c, &db, 1, NULL, &wb));
    const char *md;
    NXT_PASS(nxc_op_metadata(wa, &md, NULL));
    nxt_send_str(fd, md);
    NXT_PASS(nxc_op_metadata(wb, &md, NULL));
    nxt_send_str(fd, md);
    for (char *m; (m = next_question(fd));) {
        nxc_op_t *op = m[0] == 'A' ? wa : wb;
        char *b = m[0] == 'A' ? buf_a : buf_b;
        /* A direct write lands its bytes, then tells the owner (doorbell or
         * WRITE_DONE): with the bytes here, the end is on its way. */
        bool data = nxt_verify(b, SIZE, SEED_DATA) == SIZE_MAX;
        nxc_op_status_t now = nxc_op_status(op);
        if (now == NXC_OP_IN_PROGRESS || (data && now == NXC_OP_INITIALIZED))
            nxc_op_wait(op, WAIT_MS);
        char reply[64];
        snprintf(reply, sizeof reply, "%d %s", (int)nxc_op_status(op), data ? "data" : "nodata");
        nxt_send_str(fd, reply);
        free(m);
    }
    nxc_op_release(wa);
    nxc_op_release(wb);
    nxc_connector_destroy(c);
}

/* --- forging ------------------------------------------------------------------------- */

typedef struct who {
    uint32_t pid;
    uint64_t start_time;
} who_t;

/* The blob's pid (LE32 at 48) and start time (LE64 at 52): docs/metadata.md. */
static void patch_pid(uint8_t *blob, size_t len, void *arg) {
    const who_t *w = arg;
    NXT_CHECK(len > 60);
    for (int i = 0; i < 4; i++)
        blob[48 + i] = (uint8_t)(w->pid >> (8 * i));
    for (int i = 0; i < 8; i++)
        blob[52 + i] = (uint8_t)(w->start_time >> (8 * i));
}

static char *forge_pid(const char *md, pid_t pid) {
    who_t w = {(uint32_t)pid, nxc__process_start_time_of(pid)};
    NXT_CHECK(w.start_time != 0);
    return nxt_md_patch_blob(md, patch_pid, &w);
}

static void ask(int fd, const char *q, char *out, size_t len) {
    nxt_send_str(fd, q);
    char *r = nxt_recv(fd, NULL, 30000);
    snprintf(out, len, "%s", r);
    free(r);
}

/* Write buf_a's twin (src) with `md`; returns how the op ended. */
static nxc_status_t write_with(nxc_connector_t *c, const char *md, char *src) {
    nxc_desc_t d = nxt_desc(src, SIZE);
    nxc_op_t *op;
    nxc_status_t st = nxc_begin_write(c, &d, 1, md, 0, NULL, &op);
    if (st != NXC_OK) return st;
    st = nxc_op_wait(op, WAIT_MS);
    printf("    write ended: %s (%s) via %s\n", nxc_status_string(st), nxc_op_message(op),
           nxc_op_transport(op) ? nxc_op_transport(op) : "-");
    nxc_op_release(op);
    return st;
}

static void expect_untouched(int vfd, const char *what) {
    char r[32];
    ask(vfd, "check", r, sizeof r);
    printf("    victim after %s: %s\n", what, r);
    NXT_EQ_STR(r, "intact");
    NXT_CHECK(nxt_verify(buf_a, SIZE, SEED_WRITER) == SIZE_MAX);
    NXT_CHECK(nxt_verify(buf_b, SIZE, SEED_WRITER + 1) == SIZE_MAX);
}

static void test_forged_pid(void) {
    buf_a = nxt_alloc(SIZE);
    buf_b = nxt_alloc(SIZE);
    nxt_chan_t vch, och;
    nxt_chan_init(&vch);
    pid_t vpid = nxt_spawn(&vch, victim, NULL);
    int vfd = nxt_chan_parent(&vch);
    free(nxt_recv(vfd, NULL, 30000));
    nxt_chan_init(&och);
    pid_t opid = nxt_spawn(&och, owner, NULL);
    int ofd = nxt_chan_parent(&och);
    char *md_a = nxt_recv(ofd, NULL, 30000), *md_b = nxt_recv(ofd, NULL, 30000);

    /* The writer's own buffers at the same addresses, and its source. */
    nxt_fill(buf_a, SIZE, SEED_WRITER);
    nxt_fill(buf_b, SIZE, SEED_WRITER + 1);
    char *src = nxt_alloc(SIZE);
    nxt_fill(src, SIZE, SEED_DATA);
    nxc_connector_t *c = shm_connector("writer");
    char r[64];

    printf("  first contact, metadata naming a bystander process\n");
    char *forged = forge_pid(md_a, vpid);
    NXT_CHECK(write_with(c, forged, src) != NXC_OK);
    free(forged);
    expect_untouched(vfd, "a forged first contact");

    printf("  first contact, metadata naming the writer itself\n");
    forged = forge_pid(md_a, getpid());
    NXT_CHECK(write_with(c, forged, src) != NXC_OK);
    free(forged);
    expect_untouched(vfd, "a self-naming first contact");
    ask(ofd, "A?", r, sizeof r);
    printf("    owner's A: %s\n", r);
    NXT_CHECK(strstr(r, "nodata") != NULL);

    printf("  the real metadata: completes in the owner\n");
    NXT_PASS(write_with(c, md_a, src));
    ask(ofd, "A?", r, sizeof r);
    printf("    owner's A: %s\n", r);
    NXT_CHECK(atoi(r) == NXC_OP_COMPLETE && strstr(r, " data"));

    printf("  connected, metadata naming the bystander: the owner's memory or nothing\n");
    forged = forge_pid(md_b, vpid);
    nxc_status_t st = write_with(c, forged, src);
    free(forged);
    expect_untouched(vfd, "a forged op on a live connection");
    ask(ofd, "B?", r, sizeof r);
    printf("    owner's B: %s\n", r);
    if (st == NXC_OK) NXT_CHECK(atoi(r) == NXC_OP_COMPLETE && strstr(r, " data"));

    nxt_send_str(vfd, "quit");
    nxt_send_str(ofd, "quit");
    nxt_join(vpid, 30000);
    nxt_join(opid, 30000);
    nxc_connector_destroy(c);
    free(md_a);
    free(md_b);
    free(src);
    free(buf_a);
    free(buf_b);
}

/* A first read by `c` of the readable of `size` bytes behind `md`: it makes
 * the connection that direct access needs. */
static void read_to_connect(nxc_connector_t *c, const char *md, size_t size) {
    char *dst = nxt_alloc(size);
    nxc_desc_t d = nxt_desc(dst, size);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &op));
    NXT_PASS(nxc_op_wait(op, WAIT_MS));
    nxc_op_release(op);
    free(dst);
}

/* --- direct reads and the notification key ----------------------------------------- */

static void readables(int fd, void *arg) {
    nxc_connector_t *c = shm_connector("owner");
    char *b0 = nxt_alloc(4096), *b1 = nxt_alloc(4096);
    nxt_fill(b0, 4096, 1);
    nxt_fill(b1, 4096, 2);
    nxc_desc_t d0 = nxt_desc(b0, 4096), d1 = nxt_desc(b1, 4096);
    nxc_op_t *r0, *r1;
    NXT_PASS(nxc_create_readable(c, &d0, 1, NULL, &r0));
    NXT_PASS(nxc_create_readable(c, &d1, 1, NULL, &r1));
    const char *md;
    NXT_PASS(nxc_op_metadata(r0, &md, NULL));
    nxt_send_str(fd, md);
    NXT_PASS(nxc_op_metadata(r1, &md, NULL));
    nxt_send_str(fd, md);
    free(nxt_recv(fd, NULL, 60000));
    nxc_op_wait(r1, WAIT_MS); /* the reader's READ_DONE may still be on its way */
    char reply[32];
    snprintf(reply, sizeof reply, "%d", (int)nxc_op_status(r1));
    nxt_send_str(fd, reply);
    free(nxt_recv(fd, NULL, 60000));
    nxc_op_release(r0);
    nxc_op_release(r1);
    nxc_connector_destroy(c);
    free(b0);
    free(b1);
}

/* Change the key's last character in the JSON and in the blob alike. */
static void patch_key(uint8_t *blob, size_t len, void *arg) {
    const char *key = arg;
    size_t n = strlen(key);
    uint8_t *p = memmem(blob, len, key, n);
    NXT_CHECK(p);
    p[n - 1] = p[n - 1] == 'a' ? 'b' : 'a';
}

static char *forge_key(const char *md) {
    char *key = NULL;
    const char *k = strstr(md, "\"notification_key\":\"");
    NXT_CHECK(k);
    k += strlen("\"notification_key\":\"");
    key = strndup(k, strcspn(k, "\""));
    char *text = nxt_md_patch_blob(md, patch_key, key);
    char *j = strstr(text, key);
    NXT_CHECK(j);
    j[strlen(key) - 1] = j[strlen(key) - 1] == 'a' ? 'b' : 'a';
    free(key);
    return text;
}

static void test_direct_read_key(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(readables, NULL, &pid);
    char *md0 = nxt_recv(fd, NULL, 30000), *md1 = nxt_recv(fd, NULL, 30000);
    nxc_connector_t *c = shm_connector("reader");
    read_to_connect(c, md0, 4096);
    char *dst = nxt_alloc(4096);
    nxc_desc_t d = nxt_desc(dst, 4096);
    nxc_op_t *op;

    char *forged = forge_key(md1);
    memset(dst, 0, 4096);
    NXT_PASS(nxc_begin_read(c, forged, 0, &d, 1, NULL, &op));
    nxc_status_t st = nxc_op_wait(op, WAIT_MS);
    printf("  read with an edited key: %s (%s)\n", nxc_status_string(st), nxc_op_message(op));
    NXT_EQ_INT(st, NXC_ERR_REFUSED);
    nxc_op_release(op);
    NXT_CHECK(nxt_verify(dst, 4096, 2) != SIZE_MAX); /* not read */

    /* the real text still works, and completes the owner's op */
    NXT_PASS(nxc_begin_read(c, md1, 0, &d, 1, NULL, &op));
    NXT_PASS(nxc_op_wait(op, WAIT_MS));
    nxc_op_release(op);
    NXT_CHECK(nxt_verify(dst, 4096, 2) == SIZE_MAX);
    nxt_send_str(fd, "status?");
    char *r = nxt_recv(fd, NULL, 30000);
    NXT_EQ_INT(atoi(r), NXC_OP_COMPLETE);
    free(r);
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(forged);
    free(md0);
    free(md1);
    free(dst);
}

/* --- the owner cuts the connection in the middle of a copy ------------------------------ */

/* 512 MiB; in a scaled (TSan) build no lower than 64 MiB, still tens of ms
 * of copying when the owner cuts, where 512 MiB took 13-15 s a round there
 * (the memset and the owner's page faults under TSan) against a 30 s
 * channel timeout, and failed it on a loaded host. */
#define BIG nxt_size(512u << 20, 64u << 20)

/* Shut down every accepted (not listening) shm control socket of this
 * process: what the owner's side does when it drops a peer, without dying. */
static int cut_shm_connections(void) {
    int cut = 0;
    for (int fd = 3; fd < 1024; fd++) {
        int listening = 0;
        socklen_t l = sizeof listening;
        struct sockaddr_un sa;
        socklen_t sl = sizeof sa;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) || listening ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) || sa.sun_family != AF_UNIX ||
            sl <= offsetof(struct sockaddr_un, sun_path) + 8 ||
            memcmp(sa.sun_path, "\0nxc-shm-", 9))
            continue;
        shutdown(fd, SHUT_RDWR);
        cut++;
    }
    return cut;
}

static void cutting_owner(int fd, void *arg) {
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc(BIG);
    nxc_op_t *op = nxt_offer(c, fd, NXC_OP_WRITABLE, buf, BIG);
    /* the writer has its grant: its copy is under way. Poll with a sleep:
     * nxc_op_status takes the connector's lock, and a tight loop on it can
     * starve the progress thread that must answer the writer's handshake. */
    for (int i = 0; i < 30000 && nxc_op_status(op) == NXC_OP_INITIALIZED; i++)
        usleep(1000);
    char reply[32];
    snprintf(reply, sizeof reply, "%d", cut_shm_connections());
    nxt_send_str(fd, reply);
    free(nxt_recv(fd, NULL, 60000));
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

static void test_cut_mid_copy(void) {
    char *src = nxt_alloc(BIG);
    memset(src, 0x5c, BIG);
    for (int round = 0; round < 3; round++) {
        pid_t pid;
        int fd = nxt_spawn_peer(cutting_owner, NULL, &pid);
        nxc_connector_t *c = shm_connector("writer"); /* after the fork: see nxt_spawn */
        char *md = nxt_recv(fd, NULL, 30000);
        nxc_desc_t d = nxt_desc(src, BIG);
        nxc_op_t *op;
        NXT_PASS(nxc_begin_write(c, &d, 1, md, 0, NULL, &op));
        char *cut = nxt_recv(fd, NULL, 30000);
        nxc_status_t st = nxc_op_wait(op, WAIT_MS);
        printf("  round %d: owner cut %s connection(s); write ended %s (%s)\n", round, cut,
               nxc_status_string(st), nxc_op_message(op));
        NXT_CHECK(atoi(cut) >= 1);
        /* the copy may have finished before the cut landed; otherwise the
         * peer failed: it was not cancelled */
        NXT_CHECK(st == NXC_OK || st == NXC_ERR_PEER_FAILED);
        nxt_send_str(fd, "quit");
        nxt_join(pid, 30000);
        nxc_op_release(op);
        nxc_connector_destroy(c);
        free(md);
        free(cut);
    }
    free(src);
}

/* --- direct writes ------------------------------------------------------------------------- */

/* Offers a writable and a readable of 4 KiB (and a writable for the first
 * contact); answers "W?"/"R?" with the op's status (after waiting for its
 * end) and whether its buffer holds the writer's data. */
static void small_owner(int fd, void *arg) {
    nxc_connector_t *c = shm_connector("owner");
    char *w = nxt_alloc(4096), *r = nxt_alloc(4096);
    nxt_fill(r, 4096, SEED_OWNER);
    nxc_desc_t dw = nxt_desc(w, 4096), dr = nxt_desc(r, 4096);
    nxc_op_t *ops[3];
    NXT_PASS(nxc_create_writable(c, &dw, 1, NULL, &ops[0])); /* for the first contact */
    NXT_PASS(nxc_create_writable(c, &dw, 1, NULL, &ops[1]));
    NXT_PASS(nxc_create_readable(c, &dr, 1, NULL, &ops[2]));
    const char *md;
    for (int i = 0; i < 3; i++) {
        NXT_PASS(nxc_op_metadata(ops[i], &md, NULL));
        nxt_send_str(fd, md);
    }
    for (char *m; (m = next_question(fd));) {
        bool writable = m[0] == 'W';
        nxc_op_t *op = writable ? ops[1] : ops[2];
        nxc_op_wait(op, writable ? WAIT_MS : 200);
        char reply[64];
        snprintf(reply, sizeof reply, "%d %s", (int)nxc_op_status(op),
                 nxt_verify(writable ? w : r, 4096, SEED_DATA) == SIZE_MAX ? "data" : "nodata");
        nxt_send_str(fd, reply);
        free(m);
    }
    for (int i = 0; i < 3; i++)
        nxc_op_release(ops[i]);
    nxc_connector_destroy(c);
    free(w);
    free(r);
}

/* operation_kind in the JSON and at byte 12 of the blob (docs/metadata.md). */
static void patch_kind(uint8_t *blob, size_t len, void *arg) {
    NXT_CHECK(len > 12 && blob[12] == 1);
    blob[12] = 2;
}

static char *forge_writable(const char *readable_md) {
    char *text = nxt_md_patch_blob(readable_md, patch_kind, NULL);
    char *k = strstr(text, "\"operation_kind\":1");
    NXT_CHECK(k);
    k[strlen("\"operation_kind\":")] = '2';
    return text;
}

static void test_direct_write(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(small_owner, NULL, &pid);
    char *md_first = nxt_recv(fd, NULL, 30000), *md_w = nxt_recv(fd, NULL, 30000),
         *md_r = nxt_recv(fd, NULL, 30000);
    nxc_connector_t *c = shm_connector("writer");
    char *src = nxt_alloc(4096);
    nxt_fill(src, 4096, SEED_DATA);
    nxc_desc_t d = nxt_desc(src, 4096);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_write(c, &d, 1, md_first, 0, NULL, &op)); /* makes the connection */
    NXT_PASS(nxc_op_wait(op, WAIT_MS));
    nxc_op_release(op);

    /* Direct: complete when begin returns, and the owner's op completes. */
    NXT_PASS(nxc_begin_write(c, &d, 1, md_w, 0, NULL, &op));
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_COMPLETE);
    NXT_EQ_STR(nxc_op_transport(op), "shm");
    nxc_op_release(op);
    char r[64];
    ask(fd, "W?", r, sizeof r);
    printf("  owner's writable after a direct write: %s\n", r);
    NXT_CHECK(atoi(r) == NXC_OP_COMPLETE && strstr(r, " data"));

    /* A readable's metadata edited to say writable: neither path writes. */
    char *forged = forge_writable(md_r);
    nxc_status_t st = nxc_begin_write(c, &d, 1, forged, 0, NULL, &op);
    if (st == NXC_OK) {
        st = nxc_op_wait(op, WAIT_MS);
        printf("  write to a readable: %s (%s)\n", nxc_status_string(st), nxc_op_message(op));
        nxc_op_release(op);
    }
    NXT_EQ_INT(st, NXC_ERR_REFUSED);
    ask(fd, "R?", r, sizeof r);
    printf("  owner's readable: %s\n", r);
    NXT_CHECK(atoi(r) == NXC_OP_INITIALIZED && strstr(r, "nodata"));

    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(forged);
    free(md_first);
    free(md_w);
    free(md_r);
    free(src);
}

/* The arena of process `owner` that holds the record behind `md` (whose
 * index goes to *slot_p), mapped in this process as a peer maps it. */
static arena_t *owner_arena(const char *md, pid_t owner, uint32_t *slot_p) {
    nxc__metadata_t m;
    NXT_PASS(nxc__md_decode(md, strlen(md), &m));
    const nxc__md_section_t *sec = nxc__md_section(&m, "shm");
    NXT_CHECK(sec && sec->keys[0].len == sizeof(record_key_t));
    record_key_t key;
    memcpy(&key, sec->keys[0].data, sizeof key);
    nxc__md_free(&m);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)owner, (int)key.arena_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    NXT_CHECK(fd >= 0);
    arena_t *a = mmap(NULL, sizeof(arena_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    NXT_CHECK(a != MAP_FAILED && a->magic == ARENA_MAGIC);
    *slot_p = key.slot;
    return a;
}

/* The state word of the arena record behind `md` (an op of `owner`). */
static _Atomic uint64_t *record_state(const char *md, pid_t owner) {
    uint32_t slot;
    arena_t *a = owner_arena(md, owner, &slot);
    return &a->records[slot].state;
}

/* Claims the writable whose metadata it is sent, as a direct write does
 * before it copies; then either dies (arg "die") or waits for "finish" and
 * marks the write done. */
static void claimer(int fd, void *arg) {
    char *md_r = nxt_recv(fd, NULL, 30000), *md_w = nxt_recv(fd, NULL, 30000);
    nxc_connector_t *c = shm_connector("claimer");
    read_to_connect(c, md_r, 64);
    _Atomic uint64_t *state = record_state(md_w, getppid());
    uint64_t live = atomic_load(state);
    NXT_EQ_INT(STATE_PHASE(live), PHASE_LIVE);
    uint64_t claimed = STATE(STATE_SEQ(live), PHASE_CLAIMED, getpid());
    NXT_CHECK(atomic_compare_exchange_strong(state, &live, claimed));
    nxt_send_str(fd, "claimed");
    if (arg) _exit(0); /* in the middle of its write, as far as the owner knows */
    free(nxt_recv(fd, NULL, 60000));
    uint64_t written = STATE(STATE_SEQ(claimed), PHASE_WRITTEN, getpid());
    NXT_CHECK(atomic_compare_exchange_strong(state, &claimed, written));
    nxt_send_str(fd, "written");
    free(nxt_recv(fd, NULL, 60000));
    nxc_connector_destroy(c);
    free(md_r);
    free(md_w);
}

typedef struct releaser {
    nxc_op_t *op;
    _Atomic bool done;
} releaser_t;

static void *release_in_thread(void *arg) {
    releaser_t *r = arg;
    nxc_op_release(r->op);
    atomic_store(&r->done, true);
    return NULL;
}

/* The owner's side of a claim: a readable to connect with, a writable to
 * be claimed; returns once it is. */
static void claim_setup(int fd, nxc_connector_t *c, nxc_op_t **rd, nxc_op_t **wr, char *buf) {
    nxc_desc_t d = nxt_desc(buf, 64);
    const char *md;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, rd));
    NXT_PASS(nxc_create_writable(c, &d, 1, NULL, wr));
    NXT_PASS(nxc_op_metadata(*rd, &md, NULL));
    nxt_send_str(fd, md);
    NXT_PASS(nxc_op_metadata(*wr, &md, NULL));
    nxt_send_str(fd, md);
    free(nxt_recv(fd, NULL, 30000)); /* "claimed" */
}

static void test_claim_holds_release(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(claimer, NULL, &pid);
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc(64);
    nxc_op_t *rd, *wr;
    claim_setup(fd, c, &rd, &wr, buf);
    releaser_t rel = {wr, false};
    pthread_t th;
    NXT_CHECK(pthread_create(&th, NULL, release_in_thread, &rel) == 0);
    usleep(300000);                     /* well inside the 2 s drain bound */
    NXT_CHECK(!atomic_load(&rel.done)); /* held back by the claim */
    nxt_send_str(fd, "finish");
    free(nxt_recv(fd, NULL, 30000)); /* "written" */
    pthread_join(th, NULL);
    NXT_CHECK(atomic_load(&rel.done));
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_op_release(rd);
    nxc_connector_destroy(c);
    free(buf);
}

static void test_dead_claimer_fails_op(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(claimer, "die", &pid);
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc(64);
    nxc_op_t *rd, *wr;
    claim_setup(fd, c, &rd, &wr, buf);
    nxc_status_t st = nxc_op_wait(wr, WAIT_MS); /* its connection closes as it dies */
    printf("  writable after its claimer died: %s (%s)\n", nxc_status_string(st),
           nxc_op_message(wr));
    NXT_EQ_INT(st, NXC_ERR_PEER_FAILED);
    NXT_CHECK(strstr(nxc_op_message(wr), "died while writing"));
    /* nothing to wait for: well under the 2 s a release waits for a live
     * writer, whatever the host stalls this process meanwhile */
    nxt_stall_watch_t *watch = nxt_stall_watch_start();
    uint64_t t0 = nxt_now_ms();
    nxc_op_release(wr);
    uint64_t took = nxt_now_ms() - t0;
    NXT_CHECK(took < 1000 + nxt_stall_watch_stop(watch));
    nxt_join(pid, 30000);
    nxc_op_release(rd);
    nxc_connector_destroy(c);
    free(buf);
}

/* --- the doorbell ------------------------------------------------------------------------ */

/* Reads the readable whose metadata comes first (making the connection),
 * then rings the owner's doorbell for the second as a reader does after
 * its copy: first with its record still LIVE (a bit for an op nobody
 * read), then, when told "next", after turning it READ. */
static void ringer(int fd, void *arg) {
    char *md_first = nxt_recv(fd, NULL, 30000), *md = nxt_recv(fd, NULL, 30000);
    nxc_connector_t *c = shm_connector("ringer");
    read_to_connect(c, md_first, 64);
    uint32_t slot;
    arena_t *a = owner_arena(md, getppid(), &slot);
    NXT_CHECK(a->notify_fd >= 0);
    int pidfd = pidfd_open(getppid(), 0), bell = pidfd_getfd(pidfd, a->notify_fd, 0);
    NXT_CHECK(pidfd >= 0 && bell >= 0);
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            free(nxt_recv(fd, NULL, 30000)); /* "next" */
            _Atomic uint64_t *state = &a->records[slot].state;
            uint64_t live = atomic_load(state);
            NXT_EQ_INT(STATE_PHASE(live), PHASE_LIVE);
            NXT_CHECK(atomic_compare_exchange_strong(state, &live,
                                                     STATE(STATE_SEQ(live), PHASE_READ, getpid())));
        }
        nxc__shm_mark_done(a, slot);
        atomic_store(&a->wake, 1);
        uint64_t one = 1;
        NXT_CHECK(write(bell, &one, sizeof one) == sizeof one);
        nxt_send_str(fd, "rang");
    }
    free(nxt_recv(fd, NULL, 30000)); /* "quit" */
    close(bell);
    close(pidfd);
    nxc_connector_destroy(c);
    free(md_first);
    free(md);
}

static void test_doorbell_checks_record(void) {
    const char *off = getenv("NXC_SHM_DOORBELL");
    if (off && !strcmp(off, "0")) nxt_skip("the doorbell is off (NXC_SHM_DOORBELL=0)");
    pid_t pid;
    int fd = nxt_spawn_peer(ringer, NULL, &pid);
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc(64);
    nxc_desc_t d = nxt_desc(buf, 64);
    nxc_op_t *first, *op;
    const char *md;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &first));
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op));
    NXT_PASS(nxc_op_metadata(first, &md, NULL));
    nxt_send_str(fd, md);
    NXT_PASS(nxc_op_metadata(op, &md, NULL));
    nxt_send_str(fd, md);
    free(nxt_recv(fd, NULL, 30000)); /* rang with the record LIVE */
    NXT_EQ_INT(nxc_op_wait(op, 300), NXC_INPROGRESS);
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_INITIALIZED);
    nxt_send_str(fd, "next");
    free(nxt_recv(fd, NULL, 30000)); /* rang with the record READ */
    NXT_PASS(nxc_op_wait(op, WAIT_MS));
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_op_release(op);
    nxc_op_release(first);
    nxc_connector_destroy(c);
    free(buf);
}

#define BURST 256

/* Reads the n readables whose metadata it is sent, in turn, each with the
 * owner's data (seed SEED_OWNER + its index); those from the second up to
 * `direct` (excluded) must be complete when their begin returns (the first
 * makes the connection direct access needs). Then says "read", and ends
 * when told "quit". */
static void read_in_turn(int fd, int n, int direct) {
    char **mds = calloc((size_t)n, sizeof *mds);
    NXT_CHECK(mds);
    for (int i = 0; i < n; i++)
        mds[i] = nxt_recv(fd, NULL, 60000);
    nxc_connector_t *c = shm_connector("reader");
    char *dst = nxt_alloc(4096);
    nxc_desc_t d = nxt_desc(dst, 4096);
    for (int i = 0; i < n; i++) {
        nxc_op_t *op;
        NXT_PASS(nxc_begin_read(c, mds[i], 0, &d, 1, NULL, &op));
        if (i > 0 && i < direct) NXT_EQ_INT(nxc_op_status(op), NXC_OP_COMPLETE);
        NXT_PASS(nxc_op_wait(op, WAIT_MS));
        NXT_CHECK(nxt_verify(dst, 4096, SEED_OWNER + (uint64_t)i) == SIZE_MAX);
        nxc_op_release(op);
        free(mds[i]);
    }
    nxt_send_str(fd, "read");
    free(nxt_recv(fd, NULL, 30000)); /* "quit" */
    nxc_connector_destroy(c);
    free(dst);
    free(mds);
}

/* Reads the BURST readables it is sent, each but the first directly. */
static void burst_reader(int fd, void *arg) {
    read_in_turn(fd, BURST, BURST);
}

/* Ops a peer reads directly one after the other, each told through one
 * ring or none (the doorbell), or a frame each (NXC_SHM_DOORBELL=0): the
 * owner sees every one complete. */
static void test_direct_burst(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(burst_reader, NULL, &pid);
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc((size_t)BURST * 4096);
    nxc_op_t *ops[BURST];
    for (int i = 0; i < BURST; i++) {
        nxt_fill(buf + (size_t)i * 4096, 4096, SEED_OWNER + (uint64_t)i);
        nxc_desc_t d = nxt_desc(buf + (size_t)i * 4096, 4096);
        const char *md;
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &ops[i]));
        NXT_PASS(nxc_op_metadata(ops[i], &md, NULL));
        nxt_send_str(fd, md);
    }
    free(nxt_recv(fd, NULL, 60000)); /* "read" */
    for (int i = 0; i < BURST; i++) {
        NXT_PASS(nxc_op_wait(ops[i], WAIT_MS));
        nxc_op_release(ops[i]);
    }
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(buf);
}

#define MANY_SENT 4

/* Reads the owner's first readable (the connection), two that have a
 * record (directly) and one that found none (through a grant). */
static void many_reader(int fd, void *arg) {
    read_in_turn(fd, MANY_SENT, MANY_SENT - 1);
}

/* A server keeps thousands of ops open: each one the arena has a record
 * for is read directly (there were 1024 records, and an op past them took
 * a grant, ten times slower for 4 KiB), and one past the last record still
 * moves, through a grant. */
static void test_direct_many_open(void) {
    enum { OPEN = ARENA_RECORDS + 1 };
    /* which ops the reader gets: the first, the 4000th, the last with a
     * record, the one past it; op sent[i] reads buffer i */
    const int sent[MANY_SENT] = {0, 3999, OPEN - 2, OPEN - 1};
    pid_t pid;
    int fd = nxt_spawn_peer(many_reader, NULL, &pid);
    nxc_connector_t *c = shm_connector("owner");
    char *buf = nxt_alloc(MANY_SENT * 4096);
    for (int b = 0; b < MANY_SENT; b++)
        nxt_fill(buf + (size_t)b * 4096, 4096, SEED_OWNER + (uint64_t)b);
    nxc_op_t **ops = calloc(OPEN, sizeof *ops);
    NXT_CHECK(ops);
    for (int i = 0, next = 0; i < OPEN; i++) {
        int b = next < MANY_SENT && i == sent[next] ? next++ : 0;
        nxc_desc_t d = nxt_desc(buf + (size_t)b * 4096, 4096);
        NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &ops[i]));
    }
    for (int i = 0; i < MANY_SENT; i++) {
        const char *md;
        NXT_PASS(nxc_op_metadata(ops[sent[i]], &md, NULL));
        nxt_send_str(fd, md);
    }
    free(nxt_recv(fd, NULL, 60000)); /* "read" */
    for (int i = 0; i < MANY_SENT; i++)
        NXT_PASS(nxc_op_wait(ops[sent[i]], WAIT_MS));
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    for (int i = 0; i < OPEN; i++)
        nxc_op_release(ops[i]);
    free(ops);
    nxc_connector_destroy(c);
    free(buf);
}

/* --- memory from nxc_mem_alloc() ----------------------------------------------------------- */

#define POOL_LEN (64u << 10)

/* Mappings of nxc_mem_alloc() memory in this process (the memfd's name
 * shows in /proc/self/maps). */
static int pool_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    NXT_CHECK(f);
    int n = 0;
    char line[512];
    while (fgets(line, sizeof line, f))
        n += strstr(line, "memfd:nxc-mem") != NULL;
    fclose(f);
    return n;
}

/* The fd number of this process's nxc_mem_alloc() memfd (-1: none). */
static int pool_fd(void) {
    for (int fd = 0; fd < 1024; fd++) {
        char path[64], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0 && (link[n] = 0, strstr(link, "memfd:nxc-mem"))) return fd;
    }
    return -1;
}

typedef struct pool_owner {
    nxc_connector_t *c;
    nxc_mem_t *mem;
    char *pool;
    nxc_op_t *rd, *wr; /* a readable of pool[0, 4K), a writable of pool[4K, 8K) */
} pool_owner_t;

static void pool_new(pool_owner_t *o, int seed) {
    NXT_PASS(nxc_mem_alloc(o->c, POOL_LEN, NULL, (void **)&o->pool, &o->mem));
    nxt_fill(o->pool, 4096, (uint64_t)seed);
}

static void pool_drop_ops(pool_owner_t *o) {
    nxc_op_release(o->rd);
    nxc_op_release(o->wr);
    o->rd = o->wr = NULL;
}

/* Serves ops over an nxc_mem_alloc() pool (after a plain readable to
 * connect with). Questions: "ops" (new ops, the writable's memory zeroed;
 * answers their two texts), "W?" (the writable's end and whether it holds
 * SEED_DATA), "zero?" (whether it is still all zero), "drop" (release the
 * ops), "swap" (a new pool in place of the old: answers whether its memfd
 * took the old one's fd number). */
static void pool_owner(int fd, void *arg) {
    pool_owner_t o = {.c = shm_connector("owner")};
    char *first = nxt_alloc(64);
    nxc_desc_t d = nxt_desc(first, 64);
    nxc_op_t *connect;
    const char *md;
    NXT_PASS(nxc_create_readable(o.c, &d, 1, NULL, &connect));
    NXT_PASS(nxc_op_metadata(connect, &md, NULL));
    nxt_send_str(fd, md);
    pool_new(&o, SEED_OWNER);
    for (char *m; (m = next_question(fd)); free(m)) {
        char reply[64] = "ok";
        if (!strcmp(m, "ops")) {
            pool_drop_ops(&o);
            memset(o.pool + 4096, 0, 4096);
            nxc_desc_t r = nxt_desc(o.pool, 4096), w = nxt_desc(o.pool + 4096, 4096);
            NXT_PASS(nxc_create_readable(o.c, &r, 1, NULL, &o.rd));
            NXT_PASS(nxc_create_writable(o.c, &w, 1, NULL, &o.wr));
            NXT_PASS(nxc_op_metadata(o.rd, &md, NULL));
            nxt_send_str(fd, md);
            NXT_PASS(nxc_op_metadata(o.wr, &md, NULL));
            nxt_send_str(fd, md);
            continue;
        } else if (!strcmp(m, "W?")) {
            nxc_op_wait(o.wr, WAIT_MS);
            snprintf(reply, sizeof reply, "%d %s", (int)nxc_op_status(o.wr),
                     nxt_verify(o.pool + 4096, 4096, SEED_DATA) == SIZE_MAX ? "data" : "nodata");
        } else if (!strcmp(m, "zero?")) {
            bool zero = true;
            for (int i = 4096; i < 8192; i++)
                zero &= o.pool[i] == 0;
            snprintf(reply, sizeof reply, "%s", zero ? "zero" : "written");
        } else if (!strcmp(m, "drop")) {
            pool_drop_ops(&o);
        } else if (!strcmp(m, "swap")) {
            pool_drop_ops(&o);
            int old = pool_fd();
            nxc_mem_deregister(o.mem);
            pool_new(&o, SEED_OWNER + 1);
            snprintf(reply, sizeof reply, "%s", pool_fd() == old ? "same fd" : "new fd");
        }
        nxt_send_str(fd, reply);
    }
    pool_drop_ops(&o);
    nxc_op_release(connect);
    nxc_connector_destroy(o.c);
    nxc_mem_deregister(o.mem); /* allocated memory outlives its connector */
    free(first);
}

/* A 4 KiB read of the pool behind `md` into plain memory: how it ended and
 * whether it was complete when begin returned; the bytes read must be the
 * pool's `seed`. */
static nxc_status_t pool_read(nxc_connector_t *c, const char *md, int seed, bool *at_begin) {
    char *dst = nxt_alloc(4096);
    nxc_desc_t d = nxt_desc(dst, 4096);
    nxc_op_t *op;
    nxc_status_t st = nxc_begin_read(c, md, 0, &d, 1, NULL, &op);
    if (st != NXC_OK) {
        free(dst);
        return st;
    }
    *at_begin = nxc_op_status(op) == NXC_OP_COMPLETE;
    st = nxc_op_wait(op, WAIT_MS);
    if (st == NXC_OK) NXT_EQ_INT(nxt_verify(dst, 4096, (uint64_t)seed), SIZE_MAX);
    nxc_op_release(op);
    free(dst);
    return st;
}

static nxc_status_t pool_write(nxc_connector_t *c, const char *md, bool *at_begin) {
    char *src = nxt_alloc(4096);
    nxt_fill(src, 4096, SEED_DATA);
    nxc_desc_t d = nxt_desc(src, 4096);
    nxc_op_t *op;
    nxc_status_t st = nxc_begin_write(c, &d, 1, md, 0, NULL, &op);
    if (st == NXC_OK) {
        *at_begin = nxc_op_status(op) == NXC_OP_COMPLETE;
        st = nxc_op_wait(op, WAIT_MS);
        nxc_op_release(op);
    }
    free(src);
    return st;
}

/* The next ops of the pool owner: their two texts. */
static void pool_ops(int fd, char **md_r, char **md_w) {
    nxt_send_str(fd, "ops");
    *md_r = nxt_recv(fd, NULL, 30000);
    *md_w = nxt_recv(fd, NULL, 30000);
}

static void test_pool_mapped(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(pool_owner, NULL, &pid);
    char *md_connect = nxt_recv(fd, NULL, 30000), *md_r, *md_w, r[64];
    nxc_connector_t *c = shm_connector("reader");
    read_to_connect(c, md_connect, 64);
    NXT_EQ_INT(pool_mappings(), 0);

    /* read and write straight through the mapping, complete at begin */
    bool at_begin = false;
    pool_ops(fd, &md_r, &md_w);
    NXT_PASS(pool_read(c, md_r, SEED_OWNER, &at_begin));
    NXT_CHECK(at_begin);
    printf("  pool mappings in the reader after a direct read: %d\n", pool_mappings());
    NXT_EQ_INT(pool_mappings(), 1);
    at_begin = false;
    NXT_PASS(pool_write(c, md_w, &at_begin));
    NXT_CHECK(at_begin);
    ask(fd, "W?", r, sizeof r);
    printf("  owner's writable after a mapped write: %s\n", r);
    NXT_CHECK(atoi(r) == NXC_OP_COMPLETE && strstr(r, " data"));
    free(md_r);
    free(md_w);

    /* released ops: the mapping stays, access does not */
    pool_ops(fd, &md_r, &md_w);
    ask(fd, "drop", r, sizeof r);
    nxc_status_t st = pool_read(c, md_r, SEED_OWNER, &at_begin);
    printf("  read of a released readable: %s\n", nxc_status_string(st));
    NXT_CHECK(st != NXC_OK);
    st = pool_write(c, md_w, &at_begin);
    printf("  write of a released writable: %s\n", nxc_status_string(st));
    NXT_CHECK(st != NXC_OK);
    ask(fd, "zero?", r, sizeof r);
    NXT_EQ_STR(r, "zero");

    /* new memory under the old fd number: read from the new memory (the
     * first read connects again: a refusal closed the connection) */
    ask(fd, "swap", r, sizeof r);
    printf("  the owner's new pool: %s\n", r);
    for (int i = 0; i < 2; i++) {
        free(md_r);
        free(md_w);
        pool_ops(fd, &md_r, &md_w);
        NXT_PASS(pool_read(c, md_r, SEED_OWNER + 1, &at_begin));
    }
    NXT_CHECK(at_begin);
    NXT_EQ_INT(pool_mappings(), 2); /* the old one stays cached until evicted */
    free(md_r);
    free(md_w);

    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    NXT_EQ_INT(pool_mappings(), 0);
    free(md_connect);
}

/* A record naming the pool at another address: the reader copies nothing
 * outside its mapping (the read takes the grant path instead, and moves
 * the right bytes: a copy through the forged address would not). A record
 * naming another file: the reader maps nothing (and copies with
 * process_vm_readv, still inside begin). Whether a read went the grant
 * path is not checked by its status after begin: the progress thread may
 * have completed it by then on a loaded host. */
static void test_pool_forged_record(void) {
    pid_t pid;
    int fd = nxt_spawn_peer(pool_owner, NULL, &pid);
    char *md_connect = nxt_recv(fd, NULL, 30000), *md_r, *md_w;
    nxc_connector_t *c = shm_connector("reader");
    read_to_connect(c, md_connect, 64);
    bool at_begin = true;
    for (int forge = 0; forge < 3; forge++) {
        pool_ops(fd, &md_r, &md_w);
        uint32_t slot;
        arena_t *a = owner_arena(md_r, pid, &slot);
        record_t *rec = &a->records[slot];
        NXT_CHECK(rec->mem_fd >= 0);
        if (forge == 0) rec->mem_base = rec->ranges[0].addr - POOL_LEN; /* past the end */
        if (forge == 1) rec->mem_base = rec->ranges[0].addr + 4096;     /* before the start */
        if (forge == 2) rec->mem_ino++;                                 /* another file */
        NXT_PASS(pool_read(c, md_r, SEED_OWNER, &at_begin));
        printf("  forged record %d: read complete at begin: %s, pool mappings %d\n", forge,
               at_begin ? "yes" : "no", pool_mappings());
        if (forge == 2) NXT_CHECK(at_begin);
        NXT_EQ_INT(pool_mappings(), 1); /* made by the first, and only by it */
        munmap(a, sizeof(arena_t));
        free(md_r);
        free(md_w);
    }
    nxt_send_str(fd, "quit");
    nxt_join(pid, 30000);
    nxc_connector_destroy(c);
    free(md_connect);
}

static const nxt_test_t nxt_tests[] = {
    {"doorbell_checks_record", test_doorbell_checks_record, 60},
    {"direct_burst", test_direct_burst, 60},
    {"direct_many_open", test_direct_many_open, 120},
    {"direct_write", test_direct_write, 60},
    {"claim_holds_release", test_claim_holds_release, 60},
    {"dead_claimer_fails_op", test_dead_claimer_fails_op, 60},
    {"forged_pid", test_forged_pid, 60},
    {"direct_read_key", test_direct_read_key, 60},
    {"cut_mid_copy", test_cut_mid_copy, 120},
    {"pool_mapped", test_pool_mapped, 60},
    {"pool_forged_record", test_pool_forged_record, 60},
};
NXT_MAIN(nxt_tests)
