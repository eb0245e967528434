/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scoped transport options. The connector parameter `options` holds
 * "<transport>.<key>=<value>" items; each is checked here against the table
 * its transport publishes (nxc__transport_ops_t.options) and kept in the
 * connector, and the transport reads it back in create() with
 * nxc__option_int()/nxc__option_text(), which fall back to the option's
 * environment variable (through util/env, like every NXC_* variable) and
 * then to the transport's default.
 */
#include <stdio.h>
#include <string.h>

#include "core/connector.h"
#include "core/options.h"
#include "util/env.h"
#include "util/error.h"

static const nxc__tp_option_t *option_of(const nxc__transport_ops_t *ops, const char *key,
                                         size_t len) {
    for (size_t i = 0; i < ops->noptions; i++)
        if (strlen(ops->options[i].key) == len && !strncmp(ops->options[i].key, key, len))
            return &ops->options[i];
    return NULL;
}

static void list_keys(const nxc__transport_ops_t *ops, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ops->noptions && used < len; i++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", ops->options[i].key);
    if (ops->noptions == 0) snprintf(buf, len, "none");
}

static bool value_ok(const nxc__tp_option_t *opt, const char *text) {
    long long n;
    return opt->valid ? opt->valid(text) : nxc__env_parse_int(text, opt->lo, opt->hi, &n);
}

/* What the user gave option `opt`; NULL: nothing. */
static const nxc__option_value_t *given(const nxc_connector_t *c, const nxc__tp_option_t *opt) {
    for (size_t i = 0; i < c->noptions; i++)
        if (c->options[i].opt == opt) return &c->options[i];
    return NULL;
}

/* Copy `value` into `out` (the size of a kept value) if `opt` accepts it. */
static nxc_status_t check_value(const nxc__tp_option_t *opt, const char *value, size_t vlen,
                                char *out, size_t out_size, const char *where, const char *shown) {
    bool fits = vlen < out_size;
    snprintf(out, out_size, "%.*s", (int)vlen, value);
    if (fits && value_ok(opt, out)) return NXC_OK;
    char accepted[96];
    if (opt->valid)
        snprintf(accepted, sizeof accepted, "%s", opt->accepted);
    else
        snprintf(accepted, sizeof accepted, "an integer in %lld..%lld", opt->lo, opt->hi);
    return nxc__err(NXC_ERR_INVALID_PARAM, "%s: bad value in \"%s\": expected %s", where, shown,
                    accepted);
}

/* Check one item's parts against its transport's table and keep it.
 * `where` (the parameter) and `shown` (the item as the user wrote it) are
 * for messages. */
static nxc_status_t set_one(nxc_connector_t *c, const char *scope, size_t slen, const char *key,
                            size_t klen, const char *value, size_t vlen, const char *where,
                            const char *shown) {
    const nxc__transport_ops_t *ops = nxc__transport_find(scope, slen);
    if (!ops)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "%s: unknown scope \"%.*s\" in \"%s\" (transports built in: %s)", where,
                        (int)slen, scope, shown, nxc__transports_builtin_names);
    const nxc__tp_option_t *opt = option_of(ops, key, klen);
    if (!opt) {
        char keys[160];
        list_keys(ops, keys, sizeof keys);
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s: unknown key \"%.*s\" in \"%s\" (%s keys: %s)",
                        where, (int)klen, key, shown, ops->name, keys);
    }
    if (given(c, opt))
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s: %s.%s is set twice (\"%s\")", where, ops->name,
                        opt->key, shown);
    if (c->noptions == NXC__MAX_OPTIONS)
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s: more than %d items", where, NXC__MAX_OPTIONS);
    nxc__option_value_t *kept = &c->options[c->noptions];
    nxc_status_t st = check_value(opt, value, vlen, kept->value, sizeof kept->value, where, shown);
    if (st != NXC_OK) return st;
    kept->opt = opt;
    c->noptions++;
    return NXC_OK;
}

/* One "<scope>.<key>=<value>" item of `len` bytes at `item`. */
static nxc_status_t parse_item(nxc_connector_t *c, const char *item, size_t len) {
    char shown[160];
    snprintf(shown, sizeof shown, "%.*s", (int)len, item);
    const char *eq = memchr(item, '=', len);
    const char *dot = eq ? memchr(item, '.', (size_t)(eq - item)) : NULL;
    if (!dot || dot == item || dot + 1 == eq)
        return nxc__err(NXC_ERR_INVALID_PARAM,
                        "options: \"%s\" is not <transport>.<key>=<value> (e.g. tcp.port=5000)",
                        shown);
    return set_one(c, item, (size_t)(dot - item), dot + 1, (size_t)(eq - dot - 1), eq + 1,
                   len - (size_t)(eq + 1 - item), "options", shown);
}

nxc_status_t nxc__options_parse(nxc_connector_t *c, const char *text) {
    const char *at = text;
    while (*at) {
        const char *end = strchr(at, ',');
        size_t len = end ? (size_t)(end - at) : strlen(at);
        if (len > 0) { /* "a=1,,b=2" and a trailing comma are tolerated */
            nxc_status_t st = parse_item(c, at, len);
            if (st != NXC_OK) return st;
        }
        at += len + (end != NULL);
    }
    return NXC_OK;
}

nxc_status_t nxc__option_shorthand(nxc_connector_t *c, const char *field, const char *scope,
                                   const char *key, const char *value) {
    const nxc__transport_ops_t *ops = nxc__transport_find(scope, strlen(scope));
    const nxc__tp_option_t *opt = ops ? option_of(ops, key, strlen(key)) : NULL;
    if (opt && given(c, opt))
        return nxc__err(NXC_ERR_INVALID_PARAM, "%s and option %s.%s are both set", field, scope,
                        key);
    return set_one(c, scope, strlen(scope), key, strlen(key), value, strlen(value), field, value);
}

/* The option `scope`.`key` and the value the user gave it (NULL: none). */
static const nxc__tp_option_t *lookup(const nxc_connector_t *c, const char *scope, const char *key,
                                      const char **value_p) {
    const nxc__transport_ops_t *ops = nxc__transport_find(scope, strlen(scope));
    const nxc__tp_option_t *opt = ops ? option_of(ops, key, strlen(key)) : NULL;
    const nxc__option_value_t *set = opt ? given(c, opt) : NULL;
    *value_p = set ? set->value : NULL;
    return opt;
}

long long nxc__option_int(const nxc_connector_t *c, const char *scope, const char *key,
                          long long def) {
    const char *value;
    const nxc__tp_option_t *opt = lookup(c, scope, key, &value);
    long long n;
    if (!opt) return def;
    if (value && nxc__env_parse_int(value, opt->lo, opt->hi, &n)) return n;
    return opt->env ? nxc__env_int(opt->env, def, opt->lo, opt->hi) : def;
}

const char *nxc__option_text(const nxc_connector_t *c, const char *scope, const char *key) {
    const char *value;
    const nxc__tp_option_t *opt = lookup(c, scope, key, &value);
    if (!opt || value) return value;
    return opt->env ? nxc__env_text(opt->env, opt->valid, opt->accepted) : NULL;
}
