/* SPDX-License-Identifier: Apache-2.0 */
/* Transport selection across real processes: shm on the same host, the
 * user's order winning, tcp when the peer looks remote, the fallback when the
 * kernel forbids cross-process access, and nxc-info explaining the choice. */
#include <pwd.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/metadata.h"
#include "nxt.h"
#include "transport/transport.h"

#define SIZE (1u << 20)

/* Peer: a readable with pattern 5; sends its metadata, waits for "bye". */
static void readable_peer(int fd, void *arg) {
    (void)arg;
    nxc_connector_t *c = nxt_connector("owner", 1);
    char *buf = nxt_alloc(SIZE);
    nxt_fill(buf, SIZE, 5);
    nxc_desc_t d = nxt_desc(buf, SIZE);
    nxc_op_t *op;
    NXT_PASS(nxc_create_readable(c, &d, 1, NULL, &op));
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(op, &md, &len));
    nxt_send(fd, md, len);
    free(nxt_recv(fd, NULL, 60000));
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

/* Read the peer's buffer with a connector running `transports` (NULL: the
 * default); returns the transport the op used (static storage). */
static const char *read_with(const char *transports, const char *md) {
    nxc_connector_params_t p = {.field_mask = transports ? NXC_CONNECTOR_FIELD_TRANSPORTS : 0,
                                .transports = transports};
    nxc_connector_t *c;
    NXT_PASS(nxc_connector_create(&p, &c));
    char *buf = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(buf, SIZE);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &op));
    NXT_PASS(nxc_op_wait(op, 30000));
    NXT_EQ_INT(nxt_verify(buf, SIZE, 5), SIZE_MAX);
    static char used[16];
    snprintf(used, sizeof used, "%s", nxc_op_transport(op));
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
    return used;
}

typedef struct peer {
    pid_t pid;
    int fd;
    char *md;
} peer_t;

static peer_t start_peer(void) {
    static nxt_chan_t ch;
    nxt_chan_init(&ch);
    peer_t p;
    p.pid = nxt_spawn(&ch, readable_peer, NULL);
    p.fd = nxt_chan_parent(&ch);
    p.md = nxt_recv(p.fd, NULL, 30000);
    return p;
}

static void stop_peer(peer_t *p) {
    nxt_send_str(p->fd, "bye");
    nxt_join(p->pid, 30000);
    free(p->md);
}

static void test_same_host_uses_shm(void) {
    unsetenv("NXC_TRANSPORTS");
    peer_t p = start_peer();
    NXT_EQ_STR(read_with(NULL, p.md), "shm");
    stop_peer(&p);
}

/* A readable completes once read: one peer per read. */
static void expect(const char *transports, const char *want) {
    peer_t p = start_peer();
    NXT_EQ_STR(read_with(transports, p.md), want);
    stop_peer(&p);
}

static void test_user_order_wins(void) {
    expect("tcp,shm", "tcp");
    if (nxc__transport_find("ucx", 3)) /* built only where UCX was found */
        expect("ucx,tcp", "ucx");      /* ordered by the user: ucx is not demoted */
    setenv("NXC_TRANSPORTS", "tcp", 1);
    expect(NULL, "tcp");
    unsetenv("NXC_TRANSPORTS");
}

/* The same metadata, claiming another host: shm steps aside for tcp. */
static void test_remote_looking_peer_uses_tcp(void) {
    peer_t p = start_peer();
    nxc__metadata_t md;
    NXT_PASS(nxc__md_decode(p.md, strlen(p.md), &md));
    snprintf(md.host, sizeof md.host, "elsewhere/00000000-0000-0000-0000-000000000000");
    char *forged;
    size_t len;
    NXT_PASS(nxc__md_encode(&md, &forged, &len));
    nxc__md_free(&md);
    NXT_EQ_STR(read_with(NULL, forged), "tcp");
    /* with shm alone there is nothing left, and the message says why */
    nxc_connector_params_t prm = {.field_mask = NXC_CONNECTOR_FIELD_TRANSPORTS,
                                  .transports = "shm"};
    nxc_connector_t *c;
    NXT_PASS(nxc_connector_create(&prm, &c));
    char *buf = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(buf, SIZE);
    nxc_op_t *op;
    NXT_FAIL(nxc_begin_read(c, forged, len, &d, 1, NULL, &op), NXC_ERR_NO_TRANSPORT);
    free(buf);
    printf("  shm alone: %s\n", nxc_last_error());
    NXT_CHECK(strstr(nxc_last_error(), "another host") != NULL);
    nxc_connector_destroy(c);
    free(forged);
    stop_peer(&p);
}

/* An active process of another user may not read our memory: the kernel
 * says EPERM, shm steps aside, tcp moves the bytes. Needs root (to become
 * that user); skipped otherwise. */
static void unprivileged_reader(int fd, void *arg) {
    char *md = nxt_recv(fd, NULL, 30000);
    struct passwd *pw = getpwnam("nobody");
    NXT_CHECK(pw != NULL);
    NXT_CHECK(setgid(pw->pw_gid) == 0 && setuid(pw->pw_uid) == 0);
    NXT_EQ_STR(read_with(NULL, md), "tcp");
    nxt_send_str(fd, "ok");
    free(md);
}

static void test_ptrace_denied_falls_back(void) {
    if (geteuid() != 0 || !getpwnam("nobody"))
        nxt_skip("needs root and a 'nobody' user to run a reader as another user");
    peer_t p = start_peer();
    pid_t r;
    int fd = nxt_spawn_peer(unprivileged_reader, NULL, &r);
    nxt_send_str(fd, p.md);
    free(nxt_recv(fd, NULL, 60000));
    nxt_join(r, 30000);
    stop_peer(&p);
}

/* Run nxc-info with `args` (stdout and stderr into out); its exit status. */
static int nxc_info(const char *args, char *out, size_t len) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", getenv("NXC_INFO"), args);
    FILE *f = popen(cmd, "r");
    NXT_CHECK(f != NULL);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    int rc = pclose(f);
    printf("$ nxc-info %s\n%s", args, out);
    NXT_CHECK(WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

/* nxc-info on the metadata `md`, written to a file. */
static int nxc_info_md(const char *md, char *out, size_t len) {
    char path[] = "/tmp/nxc-info-md-XXXXXX";
    int mfd = mkstemp(path);
    NXT_CHECK(mfd >= 0);
    NXT_CHECK(write(mfd, md, strlen(md)) == (ssize_t)strlen(md));
    close(mfd);
    int rc = nxc_info(path, out, len);
    unlink(path);
    return rc;
}

/* nxc-info names the choice and the reasons for the others, and contacts
 * the peer as a transfer would. */
static void test_nxc_info_explains(void) {
    if (!getenv("NXC_INFO")) nxt_skip("NXC_INFO (path of nxc-info) not set");
    peer_t p = start_peer();
    static char out[16384];
    NXT_EQ_INT(nxc_info_md(p.md, out, sizeof out), 0);
    NXT_CHECK(strstr(out, "shm   CHOSEN") != NULL);
    NXT_CHECK(strstr(out, "tcp   not used: reachable, but shm comes first") != NULL);
    NXT_CHECK(strstr(out, "this host") != NULL);
    NXT_CHECK(strstr(out, "over shm") && strstr(out, "the peer answered"));
    char *md = strdup(p.md);
    stop_peer(&p);
    /* its owner has exited: what a real read would get, not "CHOSEN" alone */
    NXT_EQ_INT(nxc_info_md(md, out, sizeof out), 1);
    NXT_CHECK(strstr(out, "a transfer would fail: peer unreachable") != NULL);
    nxc_connector_t *c = nxt_connector("reader", 1);
    char *buf = nxt_alloc(SIZE);
    nxc_desc_t d = nxt_desc(buf, SIZE);
    nxc_op_t *op;
    nxc_status_t st = nxc_begin_read(c, md, 0, &d, 1, NULL, &op);
    if (st == NXC_OK) {
        st = nxc_op_wait(op, 30000);
        nxc_op_release(op);
    }
    NXT_EQ_INT(st, NXC_ERR_UNREACHABLE);
    nxc_connector_destroy(c);
    free(buf);
    free(md);
}

/* Its command line: options are options, not files. */
static void test_nxc_info_command_line(void) {
    if (!getenv("NXC_INFO")) nxt_skip("NXC_INFO (path of nxc-info) not set");
    static char out[16384];
    NXT_EQ_INT(nxc_info("--help", out, sizeof out), 0);
    NXT_CHECK(!strncmp(out, "usage: nxc-info", 15) && !strstr(out, "transports built in"));
    NXT_EQ_INT(nxc_info("--version", out, sizeof out), 0);
    NXT_CHECK(strstr(out, nxc_version()) && !strstr(out, "transports built in"));
    NXT_EQ_INT(nxc_info("--foo", out, sizeof out), 2);
    NXT_CHECK(strstr(out, "unknown option '--foo'") && strstr(out, "usage: nxc-info"));
    NXT_CHECK(!strstr(out, "cannot read"));
    NXT_EQ_INT(nxc_info("a b", out, sizeof out), 2);
    NXT_EQ_INT(nxc_info("/nonexistent/md.txt", out, sizeof out), 1);
    NXT_CHECK(strstr(out, "cannot read /nonexistent/md.txt: No such file or directory"));
    NXT_EQ_INT(nxc_info("/", out, sizeof out), 1);
    NXT_CHECK(strstr(out, "cannot read /: Is a directory"));
}

static const nxt_test_t nxt_tests[] = {
    {"same_host_uses_shm", test_same_host_uses_shm, 0},
    {"user_order_wins", test_user_order_wins, 0},
    {"remote_looking_peer_uses_tcp", test_remote_looking_peer_uses_tcp, 0},
    {"ptrace_denied_falls_back", test_ptrace_denied_falls_back, 0},
    {"nxc_info_explains", test_nxc_info_explains, 0},
    {"nxc_info_command_line", test_nxc_info_command_line, 0},
};
NXT_MAIN(nxt_tests)
