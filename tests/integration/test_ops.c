/* Multi-process tests of the four ops over the configured transport. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nxt.h"

/* Peer: create a readable over `size` bytes of pattern `seed`, send its
 * metadata, wait for completion, report. */
typedef struct passive_args {
    int writable;
    size_t size;
    size_t ndesc;
    uint64_t seed;
} passive_args_t;

static void passive_peer(int fd, void *arg)
{
    passive_args_t *pa = arg;
    nxc_connector_t *c = nxt_connector("passive", 1);
    char *buf = nxt_alloc(pa->size);
    if (!pa->writable) nxt_fill(buf, pa->size, pa->seed);
    nxc_desc_t d[1024];
    size_t chunk = pa->size / pa->ndesc;
    for (size_t i = 0; i < pa->ndesc; i++)
        d[i] = nxt_desc(buf + i * chunk, i + 1 == pa->ndesc ? pa->size - i * chunk : chunk);
    nxc_op_t *op;
    if (pa->writable) NXT_PASS(nxc_create_writable(c, d, pa->ndesc, NULL, &op));
    else NXT_PASS(nxc_create_readable(c, d, pa->ndesc, NULL, &op));
    const char *md;
    size_t len;
    NXT_PASS(nxc_op_metadata(op, &md, &len));
    nxt_send(fd, md, len);
    NXT_PASS(nxc_op_wait(op, 30000));
    NXT_EQ_INT(nxc_op_status(op), NXC_OP_COMPLETE);
    NXT_EQ_STR(nxc_op_transport(op), "ucx");
    if (pa->writable) NXT_EQ_INT(nxt_verify(buf, pa->size, pa->seed), SIZE_MAX);
    nxt_send_str(fd, "done");
    nxc_op_release(op);
    nxc_connector_destroy(c);
    free(buf);
}

static void read_case(size_t size, size_t ndesc_passive, size_t ndesc_active)
{
    nxt_chan_t ch;
    nxt_chan_init(&ch);
    passive_args_t pa = {0, size, ndesc_passive, 42};
    pid_t pid = nxt_spawn(&ch, passive_peer, &pa);
    int fd = nxt_chan_parent(&ch);
    nxc_connector_t *c = nxt_connector("active", 1);
    size_t mdlen;
    char *md = nxt_recv(fd, &mdlen, 20000);
    char *buf = nxt_alloc(size);
    nxc_desc_t d[1024];
    size_t chunk = size / ndesc_active;
    for (size_t i = 0; i < ndesc_active; i++)
        d[i] = nxt_desc(buf + i * chunk, i + 1 == ndesc_active ? size - i * chunk : chunk);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_read(c, md, mdlen, d, ndesc_active, NULL, &op));
    NXT_PASS(nxc_op_wait(op, 30000));
    NXT_EQ_INT(nxt_verify(buf, size, 42), SIZE_MAX);
    free(nxt_recv(fd, NULL, 20000));
    nxc_op_release(op);
    nxt_join(pid, 20000);
    nxc_connector_destroy(c);
    free(md);
    free(buf);
}

static void write_case(size_t size, size_t ndesc_passive, size_t ndesc_active)
{
    nxt_chan_t ch;
    nxt_chan_init(&ch);
    passive_args_t pa = {1, size, ndesc_passive, 7};
    pid_t pid = nxt_spawn(&ch, passive_peer, &pa);
    int fd = nxt_chan_parent(&ch);
    nxc_connector_t *c = nxt_connector("active", 1);
    size_t mdlen;
    char *md = nxt_recv(fd, &mdlen, 20000);
    char *buf = nxt_alloc(size);
    nxt_fill(buf, size, 7);
    nxc_desc_t d[1024];
    size_t chunk = size / ndesc_active;
    for (size_t i = 0; i < ndesc_active; i++)
        d[i] = nxt_desc(buf + i * chunk, i + 1 == ndesc_active ? size - i * chunk : chunk);
    nxc_op_t *op;
    NXT_PASS(nxc_begin_write(c, d, ndesc_active, md, mdlen, NULL, &op));
    NXT_PASS(nxc_op_wait(op, 30000));
    free(nxt_recv(fd, NULL, 20000));
    nxc_op_release(op);
    nxt_join(pid, 20000);
    nxc_connector_destroy(c);
    free(md);
    free(buf);
}

static void test_read_one(void) { read_case(1 << 20, 1, 1); }
static void test_write_one(void) { write_case(1 << 20, 1, 1); }

static const nxt_test_t nxt_tests[] = {
    {"read_one", test_read_one, 0},
    {"write_one", test_write_one, 0},
};
NXT_MAIN(nxt_tests)
