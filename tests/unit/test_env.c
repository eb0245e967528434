/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the environment parser (src/util/env.c): the pure parsers,
 * and the one behaviour of every NXC_* variable: a bad value warns once,
 * naming the variable, the value and what is accepted, then the default. */
#include <unistd.h>

#include "nxt.h"
#include "util/env.h"

static void test_parse_int(void) {
    long long v = -7;
    NXT_CHECK(nxc__env_parse_int("0", 0, 10, &v) && v == 0);
    NXT_CHECK(nxc__env_parse_int("10", 0, 10, &v) && v == 10);
    NXT_CHECK(nxc__env_parse_int("-3", -5, 5, &v) && v == -3);
    NXT_CHECK(nxc__env_parse_int("+4", 0, 5, &v) && v == 4);
    NXT_CHECK(nxc__env_parse_int("9223372036854775807", 0, INT64_MAX, &v) && v == INT64_MAX);
    static const char *bad[] = {"",   "abc", "1x",  "11", " 1",  "1 ",
                                "-1", "0x",  "1.5", "+",  "--1", "9223372036854775808"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = -7;
        if (nxc__env_parse_int(bad[i], 0, 10, &v))
            nxt_failf(__FILE__, __LINE__, "\"%s\" parsed as %lld", bad[i], v);
        NXT_EQ_INT(v, -7);
    }
    NXT_CHECK(!nxc__env_parse_int(NULL, 0, 10, &v));
}

static const nxc__env_choice_t colours[] = {{"red", 1}, {"green", 2}, {"blue", 3}};

static void test_parse_enum_bool(void) {
    int v = 0;
    NXT_CHECK(nxc__env_parse_enum("green", colours, 3, &v) && v == 2);
    NXT_CHECK(nxc__env_parse_enum("BLUE", colours, 3, &v) && v == 3);
    NXT_CHECK(!nxc__env_parse_enum("gren", colours, 3, &v));
    NXT_CHECK(!nxc__env_parse_enum(" red", colours, 3, &v));
    NXT_CHECK(!nxc__env_parse_enum("", colours, 3, &v));
    bool b = false;
    static const char *yes[] = {"1", "true", "YES", "On"}, *no[] = {"0", "false", "no", "OFF"};
    for (int i = 0; i < 4; i++) {
        NXT_CHECK(nxc__env_parse_bool(yes[i], &b) && b);
        NXT_CHECK(nxc__env_parse_bool(no[i], &b) && !b);
    }
    NXT_CHECK(!nxc__env_parse_bool("2", &b));
    NXT_CHECK(!nxc__env_parse_bool("y", &b));
}

/* Run fn with stderr captured; return what it wrote (malloc'd). */
static char *captured(void (*fn)(void)) {
    fflush(stderr);
    FILE *tmp = tmpfile();
    NXT_CHECK(tmp);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    rewind(tmp);
    char *out = calloc(1, (size_t)n + 1);
    NXT_CHECK(out && fread(out, 1, (size_t)n, tmp) == (size_t)n);
    fclose(tmp);
    return out;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void read_bad_values(void) {
    setenv("NXT_ENV_INT", "abc", 1);
    NXT_EQ_INT(nxc__env_int("NXT_ENV_INT", 2, 0, 8), 2);
    NXT_EQ_INT(nxc__env_int("NXT_ENV_INT", 2, 0, 8), 2); /* warned once only */
    setenv("NXT_ENV_INT", "5", 1);
    NXT_EQ_INT(nxc__env_int("NXT_ENV_INT", 2, 0, 8), 5);
    setenv("NXT_ENV_ENUM", "purple", 1);
    NXT_EQ_INT(nxc__env_enum("NXT_ENV_ENUM", 2, colours, 3), 2);
    setenv("NXT_ENV_BOOL", "maybe", 1);
    NXT_EQ_INT(nxc__env_bool("NXT_ENV_BOOL", true), true);
    setenv("NXT_ENV_EMPTY", "", 1);
    NXT_EQ_INT(nxc__env_int("NXT_ENV_EMPTY", 3, 0, 8), 3); /* empty: unset, silent */
    unsetenv("NXT_ENV_UNSET");
    NXT_EQ_INT(nxc__env_enum("NXT_ENV_UNSET", 1, colours, 3), 1);
}

static void test_warn_once(void) {
    char *out = captured(read_bad_values);
    printf("%s", out);
    NXT_EQ_INT(count(out, "NXT_ENV_INT=\"abc\" ignored: expected an integer in 0..8; using 2"), 1);
    NXT_EQ_INT(count(out, "NXT_ENV_INT"), 1);
    NXT_EQ_INT(count(out, "NXT_ENV_ENUM=\"purple\" ignored: expected red, green or blue; using "
                          "green"),
               1);
    NXT_EQ_INT(count(out, "NXT_ENV_BOOL=\"maybe\" ignored: expected 1, true, yes, on, 0, false, "
                          "no or off; using true"),
               1);
    NXT_EQ_INT(count(out, "NXT_ENV_EMPTY"), 0);
    NXT_EQ_INT(count(out, "NXT_ENV_UNSET"), 0);
    free(out);
}

/* The library's own variables go through the parser: NXC_LOG_LEVEL=bogus
 * used to be silent, NXC_TCP_PORT took atoi's reading, NXC_TRANSPORTS
 * failed connector creation while the others fell back to defaults. */
static void make_connectors(void) {
    setenv("NXC_LOG_LEVEL", "bogus", 1);
    setenv("NXC_TCP_PORT", "80x", 1);
    setenv("NXC_TRANSPORTS", "tcp,pigeon", 1);
    setenv("NXC_TCP_TIMEOUT_MS", "-5", 1);
    for (int i = 0; i < 2; i++) {
        nxc_connector_t *c = NULL;
        NXT_PASS(nxc_connector_create(NULL, &c));
        NXT_CHECK(strcmp(nxc_connector_transports(c), "tcp") != 0); /* the default list */
        nxc_connector_destroy(c);
    }
}

static void test_library_variables(void) {
    char *out = captured(make_connectors);
    printf("%s", out);
    NXT_EQ_INT(count(out, "NXC_LOG_LEVEL=\"bogus\" ignored: expected error, warn, info or debug; "
                          "using warn"),
               1);
    NXT_EQ_INT(count(out, "NXC_TCP_PORT=\"80x\" ignored: expected an integer in 0..65535"), 1);
    NXT_EQ_INT(count(out, "NXC_TRANSPORTS=\"tcp,pigeon\" ignored"), 1);
    NXT_EQ_INT(count(out, "NXC_TCP_TIMEOUT_MS=\"-5\" ignored"), 1);
    free(out);
}

static const nxt_test_t nxt_tests[] = {
    {"parse_int", test_parse_int, 0},
    {"parse_enum_bool", test_parse_enum_bool, 0},
    {"warn_once", test_warn_once, 0},
    {"library_variables", test_library_variables, 0},
};
NXT_MAIN(nxt_tests)
