/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scoped transport options (nxc_connector_params_t.options): every kind
 * of bad item is refused with NXC_ERR_INVALID_PARAM and a message naming
 * it, and a good one reaches its transport (tcp.port is the port tcp
 * listens on), before the environment and beside the tcp_* shorthands.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nxt.h"

static void says(const char *what) {
    if (!strstr(nxc_last_error(), what))
        nxt_failf(__FILE__, __LINE__, "last error \"%s\" does not mention \"%s\"", nxc_last_error(),
                  what);
}

static nxc_status_t create(uint64_t extra_fields, const char *options, int tcp_port,
                           nxc_connector_t **c_p) {
    nxc_connector_params_t p = {.field_mask = NXC_CONNECTOR_FIELD_TRANSPORTS |
                                              NXC_CONNECTOR_FIELD_OPTIONS | extra_fields,
                                .transports = "tcp",
                                .options = options,
                                .tcp_port = tcp_port};
    return nxc_connector_create(&p, c_p);
}

/* The call fails with INVALID_PARAM, leaves *c_p alone and names `what`. */
static void refused(uint64_t extra_fields, const char *options, int tcp_port, const char *what) {
    nxc_connector_t *c = (nxc_connector_t *)0x1;
    NXT_FAIL(create(extra_fields, options, tcp_port, &c), NXC_ERR_INVALID_PARAM);
    NXT_CHECK(c == (nxc_connector_t *)0x1);
    says(what);
}

/* Could this process bind 127.0.0.1:port now? (SO_REUSEADDR: connections
 * in TIME_WAIT do not count, a listener does.) */
static bool port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* A port nobody listens on (the kernel's pick, released). */
static int some_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    NXT_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    NXT_CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_unknown_scope(void) {
    refused(0, "pigeon.port=1", 0, "unknown scope \"pigeon\" in \"pigeon.port=1\"");
    refused(0, "tcp.port=1,nope.x=2", 0, "unknown scope \"nope\"");
}

static void test_unknown_key(void) {
    refused(0, "tcp.colour=blue", 0, "unknown key \"colour\" in \"tcp.colour=blue\"");
    says("tcp keys: address, port");
    refused(0, "shm.port=1", 0, "unknown key \"port\"");
}

static void test_bad_value(void) {
    refused(0, "tcp.port=70000", 0, "\"tcp.port=70000\": expected an integer in 0..65535");
    refused(0, "tcp.port=80x", 0, "tcp.port=80x");
    refused(0, "tcp.port=", 0, "bad value in \"tcp.port=\"");
    refused(0, "tcp.address=localhost", 0, "an IPv4 address");
    refused(0, "tcp.streams=0", 0, "1..16");
}

static void test_malformed(void) {
    refused(0, "tcp.port", 0, "\"tcp.port\" is not <transport>.<key>=<value>");
    refused(0, "port=1", 0, "\"port=1\" is not");
    refused(0, ".port=1", 0, "is not");
    refused(0, "tcp.=1", 0, "is not");
    refused(0, "tcp.port=1,tcp.port=2", 0, "tcp.port is set twice");
    refused(NXC_CONNECTOR_FIELD_TCP_PORT, "tcp.port=1", 2, "tcp_port and option tcp.port");
    refused(NXC_CONNECTOR_FIELD_TCP_PORT, "", 70000, "tcp_port");
    nxc_connector_t *c = (nxc_connector_t *)0x1;
    nxc_connector_params_t p = {.field_mask = NXC_CONNECTOR_FIELD_OPTIONS, .options = NULL};
    NXT_FAIL(nxc_connector_create(&p, &c), NXC_ERR_INVALID_PARAM);
    says("options: NULL");
}

/* tcp listens on the port the option names, and moves bytes through it. */
static void test_port_honoured(void) {
    int port = some_free_port();
    char opt[80];
    snprintf(opt, sizeof opt, "tcp.address=127.0.0.1,,tcp.port=%d,tcp.streams=1,", port);
    nxc_connector_t *c;
    NXT_PASS(create(0, opt, 0, &c));
    NXT_CHECK(!port_free(port));
    size_t n = 1 << 20;
    char *src = nxt_alloc(n), *dst = nxt_alloc(n);
    nxt_fill(src, n, 7);
    nxc_desc_t s = nxt_desc(src, n), d = nxt_desc(dst, n);
    nxc_op_t *readable, *read;
    const char *md;
    NXT_PASS(nxc_create_readable(c, &s, 1, NULL, &readable));
    NXT_PASS(nxc_op_metadata(readable, &md, NULL));
    NXT_PASS(nxc_begin_read(c, md, 0, &d, 1, NULL, &read));
    NXT_PASS(nxc_op_wait(read, 10000));
    NXT_EQ_STR(nxc_op_transport(read), "tcp");
    NXT_CHECK(nxt_verify(dst, n, 7) == SIZE_MAX);
    nxc_op_release(read);
    nxc_op_release(readable);
    nxc_connector_destroy(c);
    NXT_CHECK(port_free(port));
    free(src);
    free(dst);
}

/* The shorthand field and the environment still set the port; an option
 * wins over the environment. */
static void test_shorthand_and_environment(void) {
    int port = some_free_port();
    nxc_connector_t *c;
    NXT_PASS(create(NXC_CONNECTOR_FIELD_TCP_PORT, "tcp.address=127.0.0.1", port, &c));
    NXT_CHECK(!port_free(port));
    nxc_connector_destroy(c);

    int env_port = some_free_port(), opt_port = env_port + 1;
    char text[16], opt[64];
    snprintf(text, sizeof text, "%d", env_port);
    setenv("NXC_TCP_PORT", text, 1);
    NXT_PASS(create(0, "tcp.address=127.0.0.1", 0, &c));
    NXT_CHECK(!port_free(env_port));
    nxc_connector_destroy(c);
    if (port_free(opt_port)) {
        snprintf(opt, sizeof opt, "tcp.address=127.0.0.1,tcp.port=%d", opt_port);
        NXT_PASS(create(0, opt, 0, &c));
        NXT_CHECK(!port_free(opt_port));
        NXT_CHECK(port_free(env_port));
        nxc_connector_destroy(c);
    }
    unsetenv("NXC_TCP_PORT");
}

static const nxt_test_t nxt_tests[] = {
    {"unknown_scope", test_unknown_scope, 0},
    {"unknown_key", test_unknown_key, 0},
    {"bad_value", test_bad_value, 0},
    {"malformed", test_malformed, 0},
    {"port_honoured", test_port_honoured, 0},
    {"shorthand_and_environment", test_shorthand_and_environment, 0},
};
NXT_MAIN(nxt_tests)
