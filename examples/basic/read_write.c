/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shortest complete nxc program: one process, one connector, talking
 * to itself. It shows both directions of the model:
 *   read:  a passive READABLE op publishes `src`; an active READ pulls it
 *          into `dst` using only the metadata text.
 *   write: a passive WRITABLE op offers `dst`; an active WRITE pushes `src`
 *          into it.
 * Between processes the metadata text would travel over any channel (an
 * RPC, a socket); here it is just passed along.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nxc/nxc.h"

#define SIZE (1u << 20)

/* Print the failed call and nxc's reason, then stop. */
static void check(nxc_status_t st, const char *what) {
    if (st == NXC_OK) return;
    fprintf(stderr, "%s: %s: %s\n", what, nxc_status_string(st), nxc_last_error());
    exit(1);
}

static nxc_desc_t host(void *ptr) {
    return (nxc_desc_t){ptr, SIZE, {NXC_DEVICE_HOST, 0}};
}

/* READABLE + READ: the reader pulls the bytes. */
static void demo_read(nxc_connector_t *c, char *src, char *dst) {
    nxc_desc_t s = host(src), d = host(dst);
    nxc_op_t *readable, *read;
    const char *md;
    check(nxc_create_readable(c, &s, 1, NULL, &readable), "create_readable");
    check(nxc_op_metadata(readable, &md, NULL), "op_metadata");
    check(nxc_begin_read(c, md, 0, &d, 1, NULL, &read), "begin_read");
    check(nxc_op_wait(read, 5000), "wait for the read");         /* bytes are in dst */
    check(nxc_op_wait(readable, 5000), "wait for the readable"); /* reader is done with src */
    printf("read:  %u bytes %s via %s\n", SIZE, memcmp(src, dst, SIZE) ? "DIFFER" : "match",
           nxc_op_transport(read));
    nxc_op_release(read);
    nxc_op_release(readable);
}

/* WRITABLE + WRITE: the writer pushes the bytes. */
static void demo_write(nxc_connector_t *c, char *src, char *dst) {
    nxc_desc_t s = host(src), d = host(dst);
    nxc_op_t *writable, *write;
    const char *md;
    check(nxc_create_writable(c, &d, 1, NULL, &writable), "create_writable");
    check(nxc_op_metadata(writable, &md, NULL), "op_metadata");
    check(nxc_begin_write(c, &s, 1, md, 0, NULL, &write), "begin_write");
    check(nxc_op_wait(write, 5000), "wait for the write");
    check(nxc_op_wait(writable, 5000), "wait for the writable"); /* bytes are in dst */
    printf("write: %u bytes %s via %s\n", SIZE, memcmp(src, dst, SIZE) ? "DIFFER" : "match",
           nxc_op_transport(writable));
    nxc_op_release(write);
    nxc_op_release(writable);
}

int main(void) {
    char *src = malloc(SIZE), *dst = malloc(SIZE);
    nxc_connector_t *c;
    if (!src || !dst) return 1;
    for (size_t i = 0; i < SIZE; i++)
        src[i] = (char)(i * 31 + 7);
    check(nxc_connector_create(NULL, &c), "connector_create");

    memset(dst, 0, SIZE);
    demo_read(c, src, dst);
    int ok = memcmp(src, dst, SIZE) == 0;
    memset(dst, 0, SIZE);
    demo_write(c, src, dst);
    ok = ok && memcmp(src, dst, SIZE) == 0;

    nxc_connector_destroy(c);
    free(src);
    free(dst);
    return ok ? 0 : 1;
}
