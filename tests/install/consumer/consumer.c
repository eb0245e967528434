/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program outside the nxc tree, built against an installed nxc (by
 * tests/install/test_install.sh, once with pkg-config and once with
 * find_package). It checks that the header and the loaded library agree,
 * then reads one buffer of its own through a connector.
 */
#include <stdio.h>
#include <string.h>

#include <nxc/nxc.h>

#define SIZE 4096

static int fail(const char *what, nxc_status_t st) {
    fprintf(stderr, "consumer: %s: %s: %s\n", what, nxc_status_string(st), nxc_last_error());
    return 1;
}

int main(void) {
    static unsigned char src[SIZE], dst[SIZE];
    nxc_connector_t *c;
    nxc_op_t *readable, *read;
    const char *md;
    nxc_status_t st;

    if (strcmp(nxc_version(), NXC_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header says %s, library says %s\n", NXC_VERSION_STRING,
                nxc_version());
        return 1;
    }
    for (size_t i = 0; i < SIZE; i++)
        src[i] = (unsigned char)(i * 7 + 1);

    if ((st = nxc_connector_create(NULL, &c)) != NXC_OK) return fail("connector_create", st);
    nxc_desc_t s = {src, SIZE, {NXC_DEVICE_HOST, 0}}, d = {dst, SIZE, {NXC_DEVICE_HOST, 0}};
    if ((st = nxc_create_readable(c, &s, 1, NULL, &readable)) != NXC_OK)
        return fail("create_readable", st);
    if ((st = nxc_op_metadata(readable, &md, NULL)) != NXC_OK) return fail("op_metadata", st);
    if ((st = nxc_begin_read(c, md, 0, &d, 1, NULL, &read)) != NXC_OK)
        return fail("begin_read", st);
    if ((st = nxc_op_wait(read, 10000)) != NXC_OK) return fail("wait for the read", st);
    if ((st = nxc_op_wait(readable, 10000)) != NXC_OK) return fail("wait for the readable", st);
    int same = memcmp(src, dst, SIZE) == 0;
    printf("consumer: nxc %s, read %d bytes via %s: %s\n", nxc_version(), SIZE,
           nxc_op_transport(read), same ? "match" : "DIFFER");
    nxc_op_release(read);
    nxc_op_release(readable);
    nxc_connector_destroy(c);
    return same ? 0 : 1;
}
