/* SPDX-License-Identifier: Apache-2.0 */
/* Explicit registration: ops over registered pools never register again,
 * deregistering memory a live op uses is deferred until it ends, bad
 * arguments are refused, and registrations left at destroy go with it. */
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
    /* left registered: goes with the connector (ASan: nothing leaks) */
    NXT_PASS(nxc_mem_register(c, &d, 1, NULL, &m));
    nxc_connector_destroy(c);
}

static const nxt_test_t nxt_tests[] = {
    {"pools", test_pools, 120},
    {"deregister_in_use", test_deregister_in_use, 60},
    {"bad_arguments", test_bad_arguments, 60},
};
NXT_MAIN(nxt_tests)
