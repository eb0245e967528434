/* SPDX-License-Identifier: Apache-2.0 */
#include "util/env.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

bool nxc__env_parse_int(const char *text, long long lo, long long hi, long long *out) {
    if (!text || !*text) return false;
    const char *p = text;
    if (*p == '+' || *p == '-') p++;
    if (*p < '0' || *p > '9') return false; /* no blanks, no empty digits */
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool nxc__env_parse_enum(const char *text, const nxc__env_choice_t *choices, size_t n, int *out) {
    if (!text) return false;
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(text, choices[i].word)) {
            *out = choices[i].value;
            return true;
        }
    return false;
}

static const nxc__env_choice_t bool_words[] = {{"1", 1}, {"true", 1},  {"yes", 1}, {"on", 1},
                                               {"0", 0}, {"false", 0}, {"no", 0},  {"off", 0}};

bool nxc__env_parse_bool(const char *text, bool *out) {
    int v;
    if (!nxc__env_parse_enum(text, bool_words, sizeof bool_words / sizeof bool_words[0], &v))
        return false;
    *out = v != 0;
    return true;
}

/* Variables already warned about (a handful exist; more are not tracked,
 * and then warn again, which is harmless). */
static pthread_mutex_t warned_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *warned[32];

static void warn_once(const char *name, const char *value, const char *accepted,
                      const char *fallback) {
    pthread_mutex_lock(&warned_lock);
    size_t i = 0;
    while (i < sizeof warned / sizeof warned[0] && warned[i] && strcmp(warned[i], name))
        i++;
    bool first = i == sizeof warned / sizeof warned[0] || !warned[i];
    if (first && i < sizeof warned / sizeof warned[0]) warned[i] = name;
    pthread_mutex_unlock(&warned_lock);
    if (first)
        NXC_LOG_W("%s=\"%.64s\" ignored: expected %s; using %s", name, value, accepted, fallback);
}

/* The value of `name`, or NULL when unset or empty. */
static const char *get(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

long long nxc__env_int(const char *name, long long def, long long lo, long long hi) {
    const char *v = get(name);
    long long out;
    if (!v) return def;
    if (nxc__env_parse_int(v, lo, hi, &out)) return out;
    char accepted[80], fallback[24];
    snprintf(accepted, sizeof accepted, "an integer in %lld..%lld", lo, hi);
    snprintf(fallback, sizeof fallback, "%lld", def);
    warn_once(name, v, accepted, fallback);
    return def;
}

static void list_words(char *buf, size_t len, const nxc__env_choice_t *choices, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 i == 0       ? ""
                                 : i + 1 == n ? " or "
                                              : ", ",
                                 choices[i].word);
}

int nxc__env_enum(const char *name, int def, const nxc__env_choice_t *choices, size_t n) {
    const char *v = get(name);
    int out;
    if (!v) return def;
    if (nxc__env_parse_enum(v, choices, n, &out)) return out;
    char accepted[160];
    list_words(accepted, sizeof accepted, choices, n);
    const char *fallback = "the default";
    for (size_t i = 0; i < n; i++)
        if (choices[i].value == def) {
            fallback = choices[i].word;
            break;
        }
    warn_once(name, v, accepted, fallback);
    return def;
}

bool nxc__env_bool(const char *name, bool def) {
    const char *v = get(name);
    bool out;
    if (!v) return def;
    if (nxc__env_parse_bool(v, &out)) return out;
    warn_once(name, v, "1, true, yes, on, 0, false, no or off", def ? "true" : "false");
    return def;
}

const char *nxc__env_text(const char *name, bool (*valid)(const char *text), const char *accepted) {
    const char *v = get(name);
    if (!v || !valid || valid(v)) return v;
    warn_once(name, v, accepted, "the default");
    return NULL;
}
