/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of shm's choice between copying a large direct op whole and
 * splitting it with a copier thread (direct.c): size classes, trying each
 * way first, following the cheaper one, probing the other, and outliers. */
#include <math.h>

#include "nxt.h"
#include "transport/shm/shm_internal.h"

static void test_classes(void) {
    NXT_EQ_INT(nxc__shm_split_class(512u << 10), 0);
    NXT_EQ_INT(nxc__shm_split_class((1u << 20) - 1), 0);
    NXT_EQ_INT(nxc__shm_split_class(1u << 20), 1);
    NXT_EQ_INT(nxc__shm_split_class((2u << 20) + 1), 2);
    NXT_EQ_INT(nxc__shm_split_class(32u << 20), 6);
    NXT_EQ_INT(nxc__shm_split_class(64u << 20), SPLIT_CLASSES - 1);
    NXT_EQ_INT(nxc__shm_split_class(1ull << 40), SPLIT_CLASSES - 1);
}

/* Of `n` choices, how many split, each copy recorded at the cost given. */
static int splits_of(split_cost_t *c, int n, double whole_ns, double split_ns) {
    int splits = 0;
    for (int i = 0; i < n; i++) {
        bool split = nxc__shm_split_choose(c);
        splits += split;
        nxc__shm_split_record(c, split, 1u << 20, (uint64_t)((split ? split_ns : whole_ns)));
    }
    return splits;
}

static void test_follows_the_cheaper_way(void) {
    split_cost_t c = {0};
    /* each way once, split first */
    NXT_CHECK(nxc__shm_split_choose(&c));
    nxc__shm_split_record(&c, true, 1u << 20, 80000);
    NXT_CHECK(!nxc__shm_split_choose(&c));
    nxc__shm_split_record(&c, false, 1u << 20, 50000);
    /* whole is cheaper: one copy in SPLIT_PROBE still splits */
    NXT_EQ_INT(splits_of(&c, 14 * SPLIT_PROBE, 50000, 80000), 14);
    /* the host changes: splitting becomes cheaper, and the probes see it */
    int splits = splits_of(&c, 20 * SPLIT_PROBE, 50000, 30000);
    printf("  after the change, %d of %d copies split\n", splits, 20 * SPLIT_PROBE);
    /* within 8 probes the average crosses; then all but one in SPLIT_PROBE split */
    NXT_CHECK(splits >= 12 * (SPLIT_PROBE - 1));
    NXT_CHECK(c.ns_per_byte[1] < c.ns_per_byte[0]);
}

/* One copy held up 100x moves the average by at most 3/8 of it. */
static void test_outlier_is_bounded(void) {
    split_cost_t c = {0};
    nxc__shm_split_record(&c, false, 1000, 1000);
    NXT_CHECK(fabs(c.ns_per_byte[0] - 1.0) < 1e-9);
    nxc__shm_split_record(&c, false, 1000, 100000);
    NXT_CHECK(fabs(c.ns_per_byte[0] - 1.375) < 1e-9);
    NXT_CHECK(c.ns_per_byte[1] == 0);
}

static const nxt_test_t nxt_tests[] = {
    {"classes", test_classes, 0},
    {"follows_the_cheaper_way", test_follows_the_cheaper_way, 0},
    {"outlier_is_bounded", test_outlier_is_bounded, 0},
};
NXT_MAIN(nxt_tests)
