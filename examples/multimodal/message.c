/* SPDX-License-Identifier: Apache-2.0 */
/* Request texts: one flat JSON object whose last field, when present, is
 * the nxc metadata ("serialized_request", as in the reference's request
 * models). Both workers are ours, so a fixed field order replaces a JSON
 * parser; the metadata is carried verbatim and only nxc parses it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

static const char MD_KEY[] = ",\"serialized_request\":";

char *msg_build(const char *metadata, const char *head_fmt, ...) {
    char head[1024];
    va_list ap;
    va_start(ap, head_fmt);
    vsnprintf(head, sizeof head, head_fmt, ap);
    va_end(ap);
    size_t len = strlen(head) + sizeof MD_KEY + (metadata ? strlen(metadata) : 0) + 3;
    char *msg = malloc(len);
    if (!msg) return NULL;
    if (metadata)
        snprintf(msg, len, "{%s%s%s}", head, MD_KEY, metadata);
    else
        snprintf(msg, len, "{%s}", head);
    return msg;
}

/* Length of the small fields, i.e. where the metadata starts (if any). */
static size_t head_len(const char *msg) {
    const char *md = strstr(msg, MD_KEY);
    return md ? (size_t)(md - msg) : strlen(msg);
}

/* Start of the value of "key" among the small fields, or NULL. */
static const char *find_value(const char *msg, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(msg, pat);
    if (!p || (size_t)(p - msg) >= head_len(msg)) return NULL;
    return p + strlen(pat);
}

int msg_long(const char *msg, const char *key, long *out) {
    const char *v = find_value(msg, key);
    char *end;
    if (!v) return -1;
    long x = strtol(v, &end, 10);
    if (end == v) return -1;
    *out = x;
    return 0;
}

int msg_str(const char *msg, const char *key, char *buf, size_t len) {
    const char *v = find_value(msg, key);
    if (!v || *v != '"') return -1;
    const char *end = strchr(v + 1, '"');
    if (!end || (size_t)(end - v - 1) >= len) return -1;
    memcpy(buf, v + 1, (size_t)(end - v - 1));
    buf[end - v - 1] = '\0';
    return 0;
}

const char *msg_metadata(const char *msg, size_t *len_p) {
    const char *md = strstr(msg, MD_KEY);
    const char *close = strrchr(msg, '}');
    if (!md || !close || close < md + sizeof MD_KEY - 1) return NULL;
    md += sizeof MD_KEY - 1;
    *len_p = (size_t)(close - md);
    return md;
}

/* Make free text (an error message) safe to embed as a JSON string here. */
void msg_sanitize(char *text) {
    for (char *p = text; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '\'';
        else if ((unsigned char)*p < 0x20)
            *p = ' ';
}
