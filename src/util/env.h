/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NXC_* environment variables (internal): one parser, one behaviour.
 *
 * An unset or empty variable gives the default, silently. A set value that
 * does not parse, or lies outside its range, gives the default too, and a
 * warning, once per variable per process, naming the variable, the value and
 * what it accepts:
 *   [nxc 123 WARN] NXC_SHM_THREADS="abc" ignored: expected an integer in
 *   0..8; using 2
 * Every getenv("NXC_...") of the library goes through these functions, so
 * all variables behave alike (README.md, "Configuration").
 */
#ifndef NXC_UTIL_ENV_H
#define NXC_UTIL_ENV_H

#include <stdbool.h>
#include <stddef.h>

/* One accepted word of an enumeration and the value it stands for. */
typedef struct nxc__env_choice {
    const char *word;
    int value;
} nxc__env_choice_t;

/* The pure parsers, without the environment (true: parsed, *out set). */
/* A decimal integer (optional sign, no blanks, no suffix) in [lo, hi]. */
bool nxc__env_parse_int(const char *text, long long lo, long long hi, long long *out);
/* One of `choices`' words, case-insensitive. */
bool nxc__env_parse_enum(const char *text, const nxc__env_choice_t *choices, size_t n, int *out);
/* 1, true, yes, on / 0, false, no, off (case-insensitive). */
bool nxc__env_parse_bool(const char *text, bool *out);

/* The variable `name` read with those parsers; `def` when unset, empty or
 * invalid (then warned once). */
long long nxc__env_int(const char *name, long long def, long long lo, long long hi);
int nxc__env_enum(const char *name, int def, const nxc__env_choice_t *choices, size_t n);
bool nxc__env_bool(const char *name, bool def);
/* A text checked by `valid` (NULL: any non-empty text); `accepted` says what
 * it takes, for the warning. NULL when unset, empty or invalid. */
const char *nxc__env_text(const char *name, bool (*valid)(const char *text), const char *accepted);

#endif
