/* SPDX-License-Identifier: Apache-2.0 */
/* Explicit registration: ops over registered pools never register again,
 * deregistering memory a live op uses is deferred until it ends, bad
 * arguments are refused, and registrations left at destroy go with it.
 * Memory from nxc_mem_alloc() is zeroed whole pages that ops of every
 * transport read and write, from both sides. */
#include "core/mem.h"
#include "core/connector.h"
#include "nxt.h"

#define POOL (8u << 20)
#define SLICE (64u << 10)
#define OPS 100

/* Registrations made so far by c's transports (only ucx makes any). */
static uint64_t made(nxc_connector_t *c) {
    uint64_t m, r;
    nxc__lock(c);
    nxc__reg_stats(c, &m, &r);
    nxc__unlock(c);
    return m;
}

/* 100 reads between two registered pools: after the registrations, not one
 * more is made, on either side. */
static void test_pools(void) {
    nxc_connector_t *owner = nxt_connector("pool-owner", 1), *reader = nxt_connector("pool-rd", 1);
    char *src = nxt_alloc(POOL), *dst = nxt_alloc(POOL);
    nxt_fill(src, POOL, 5);
    nxc_desc_t ps = nxt_desc(src, POOL), pd = nxt_desc(dst, POOL);
    nxc_mem_t *ms, *md;
    NXT_PASS(nxc_mem_register(owner, &ps, 1, NULL, &ms));
    NXT_PASS(nxc_mem_register(reader, &pd, 1, NULL, &md));
    uint64_t owner0 = made(owner), reader0 = made(reader);
    for (int i = 0; i < OPS; i++) {
        size_t off = (size_t)i * SLICE % POOL;
        nxc_desc_t s = nxt_desc(src + off, SLICE), d = nxt_desc(dst + off, SLICE);
        nxc_op_t *readable, *read;
        NXT_PASS(nxc_create_readable(owner, &s, 1, NULL, &readable));
        const char *text;
        NXT_PASS(nxc_op_metadata(readable, &text, NULL));
        NXT_PASS(nxc_begin_read(reader, text, 0, &d, 1, NULL, &read));
        NXT_PASS(nxc_op_wait(read, 30000));
        NXT_PASS(nxc_op_wait(readable, 30000));
        nxc_op_release(read);
        nxc_op_release(readable);
    }
    NXT_EQ_INT(nxt_verify(dst, (size_t)OPS * SLICE, 5), SIZE_MAX);
    printf("  %d reads between registered pools: registrations made %llu+%llu at register, "
           "%llu+%llu after\n",
           OPS, (unsigned long long)owner0, (unsigned long long)reader0,
           (unsigned long long)made(owner), (unsigned long long)made(reader));
    NXT_EQ_INT(made(owner), owner0);
    NXT_EQ_INT(made(reader), reader0);
    nxc_mem_deregister(ms);
    nxc_mem_deregister(md);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
    free(src);
    free(dst);
}

/* Deregistering memory an op still exposes is deferred: the op is read
 * afterwards all the same. */
static void test_deregister_in_use(void) {
    nxc_connector_t *owner = nxt_connector("dereg-owner", 1),
                    *reader = nxt_connector("dereg-rd", 1);
    static char src[1 << 16], dst[1 << 16];
    nxt_fill(src, sizeof src, 8);
    nxc_desc_t s = nxt_desc(src, sizeof src), d = nxt_desc(dst, sizeof dst);
    nxc_mem_t *m;
    NXT_PASS(nxc_mem_register(owner, &s, 1, NULL, &m));
    nxc_op_t *readable, *read;
    NXT_PASS(nxc_create_readable(owner, &s, 1, NULL, &readable));
    nxc_mem_deregister(m);
    const char *text;
    NXT_PASS(nxc_op_metadata(readable, &text, NULL));
    NXT_PASS(nxc_begin_read(reader, text, 0, &d, 1, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 30000));
    NXT_EQ_INT(nxt_verify(dst, sizeof dst, 8), SIZE_MAX);
    nxc_op_release(read);
    nxc_op_release(readable);
    nxc_connector_destroy(reader);
    nxc_connector_destroy(owner);
}

/* Reads and writes of allocated memory on the passive side (and on the
 * active side, with plain memory on the other), one op of a few buffers
 * inside the pool among them. */
static void test_alloc_read_write(void) {
    nxc_connector_t *owner = nxt_connector("alloc-owner", 1),
                    *peer = nxt_connector("alloc-peer", 1);
    const size_t size = 5 * 4096 + 100; /* rounded up to six pages */
    char *pool, *mine;
    nxc_mem_t *m, *mp;
    NXT_PASS(nxc_mem_alloc(owner, size, NULL, (void **)&pool, &m));
    NXT_PASS(nxc_mem_alloc(peer, 4096, NULL, (void **)&mine, &mp));
    NXT_CHECK(((uintptr_t)pool & 4095) == 0);
    for (size_t i = 0; i < 6 * 4096; i++)
        NXT_CHECK(pool[i] == 0);
    char *plain = nxt_alloc(8192);
    nxt_fill(pool, 8192, 3);
    /* read two buffers of the pool into plain memory */
    nxc_desc_t two[2] = {nxt_desc(pool, 4096), nxt_desc(pool + 4096, 4096)};
    nxc_desc_t d = nxt_desc(plain, 8192);
    nxc_op_t *passive, *active;
    const char *text;
    NXT_PASS(nxc_create_readable(owner, two, 2, NULL, &passive));
    NXT_PASS(nxc_op_metadata(passive, &text, NULL));
    NXT_PASS(nxc_begin_read(peer, text, 0, &d, 1, NULL, &active));
    NXT_PASS(nxc_op_wait(active, 30000));
    NXT_PASS(nxc_op_wait(passive, 30000));
    NXT_EQ_INT(nxt_verify(plain, 8192, 3), SIZE_MAX);
    nxc_op_release(active);
    nxc_op_release(passive);
    /* write into the pool's last (partly asked for) page */
    nxt_fill(plain, 4096, 4);
    nxc_desc_t last = nxt_desc(pool + 5 * 4096, 4096), src = nxt_desc(plain, 4096);
    NXT_PASS(nxc_create_writable(owner, &last, 1, NULL, &passive));
    NXT_PASS(nxc_op_metadata(passive, &text, NULL));
    NXT_PASS(nxc_begin_write(peer, &src, 1, text, 0, NULL, &active));
    NXT_PASS(nxc_op_wait(active, 30000));
    NXT_PASS(nxc_op_wait(passive, 30000));
    NXT_EQ_INT(nxt_verify(pool + 5 * 4096, 4096, 4), SIZE_MAX);
    nxc_op_release(active);
    nxc_op_release(passive);
    /* allocated memory on the active side, plain on the passive one */
    nxc_desc_t dm = nxt_desc(mine, 4096), dp = nxt_desc(plain + 4096, 4096);
    nxt_fill(plain + 4096, 4096, 6);
    NXT_PASS(nxc_create_readable(owner, &dp, 1, NULL, &passive));
    NXT_PASS(nxc_op_metadata(passive, &text, NULL));
    NXT_PASS(nxc_begin_read(peer, text, 0, &dm, 1, NULL, &active));
    NXT_PASS(nxc_op_wait(active, 30000));
    NXT_EQ_INT(nxt_verify(mine, 4096, 6), SIZE_MAX);
    nxc_op_release(active);
    nxc_op_release(passive);
    nxc_mem_deregister(m);
    /* mp outlives its connector: still mapped, deregistered afterwards
     * (ASan: nothing leaks) */
    nxc_connector_destroy(peer);
    nxt_fill(mine, 4096, 7);
    NXT_EQ_INT(nxt_verify(mine, 4096, 7), SIZE_MAX);
    nxc_mem_deregister(mp);
    nxc_connector_destroy(owner);
    free(plain);
}

static void test_bad_arguments(void) {
    nxc_connector_t *c = nxt_connector("mem-errors", 1);
    static char buf[4096];
    nxc_desc_t d = nxt_desc(buf, sizeof buf), zero = nxt_desc(buf, 0);
    nxc_mem_t *m = NULL;
    NXT_FAIL(nxc_mem_register(NULL, &d, 1, NULL, &m), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_register(c, &d, 1, NULL, NULL), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_register(c, &d, 0, NULL, &m), NXC_ERR_EMPTY_LIST);
    NXT_FAIL(nxc_mem_register(c, &zero, 1, NULL, &m), NXC_ERR_INVALID_DESCRIPTOR);
    nxc_desc_t gpu = nxt_desc(buf, sizeof buf);
    gpu.device = (nxc_device_t){NXC_DEVICE_CUDA, 0};
    nxc_status_t st = nxc_mem_register(c, &gpu, 1, NULL, &m);
    NXT_CHECK(st == NXC_ERR_NOT_SUPPORTED || st == NXC_OK); /* ucx with CUDA support: OK */
    if (st == NXC_OK) nxc_mem_deregister(m);
    nxc_mem_params_t p = {.field_mask = 1u << 5};
    NXT_FAIL(nxc_mem_register(c, &d, 1, &p, &m), NXC_ERR_INVALID_PARAM);
    NXT_CHECK(strstr(nxc_last_error(), "bit 5"));
    nxc_mem_deregister(NULL);
    void *ptr = NULL;
    NXT_FAIL(nxc_mem_alloc(NULL, 4096, NULL, &ptr, &m), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_alloc(c, 4096, NULL, NULL, &m), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_alloc(c, 4096, NULL, &ptr, NULL), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_alloc(c, 0, NULL, &ptr, &m), NXC_ERR_INVALID_PARAM);
    NXT_CHECK(strstr(nxc_last_error(), "size 0"));
    NXT_FAIL(nxc_mem_alloc(c, SIZE_MAX, NULL, &ptr, &m), NXC_ERR_INVALID_PARAM);
    NXT_FAIL(nxc_mem_alloc(c, 4096, &p, &ptr, &m), NXC_ERR_INVALID_PARAM);
    NXT_CHECK(ptr == NULL);
    /* left registered: goes with the connector (ASan: nothing leaks) */
    NXT_PASS(nxc_mem_register(c, &d, 1, NULL, &m));
    nxc_connector_destroy(c);
}

static const nxt_test_t nxt_tests[] = {
    {"pools", test_pools, 120},
    {"deregister_in_use", test_deregister_in_use, 60},
    {"alloc_read_write", test_alloc_read_write, 60},
    {"bad_arguments", test_bad_arguments, 60},
};
NXT_MAIN(nxt_tests)
