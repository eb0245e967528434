/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private declarations of the multimodal demo: two worker processes (encode
 * and prefill) that move image embeddings with nxc and coordinate over a
 * plain socket. Only the launcher, the workers and their helpers use this.
 */
#ifndef NXC_DEMO_H
#define NXC_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "nxc/nxc.h"

enum { DEMO_PATTERN_READ = 1, DEMO_PATTERN_WRITE = 2 };

typedef struct demo_opts {
    int requests;          /* per pattern */
    size_t tokens, hidden; /* embeddings shape: tokens x hidden half-floats */
    int patterns;          /* DEMO_PATTERN_* bits */
    const char *transport; /* connector param `transports`; NULL = library default */
    int op_timeout_ms;     /* nxc_op_wait() limit and passive op deadline */
    int deadline_s;        /* launcher: kill the workers after this long */
    const char *role;      /* NULL = launcher, else "encode" or "prefill" */
    int fd;                /* worker: its end of the request channel */
} demo_opts_t;

static inline size_t demo_bytes(size_t tokens, size_t hidden) {
    return tokens * hidden * 2;
}

/* How long a worker waits for its peer's next message: one op wait on the
 * peer's side plus slack for computing and checking 4.5 MiB. */
static inline int demo_chan_timeout_ms(const demo_opts_t *o) {
    return 2 * o->op_timeout_ms + 5000;
}

/* main.c */
extern const char *demo_role; /* "launcher", "encode" or "prefill": prefixes messages */
int demo_parse_opts(int argc, char **argv, demo_opts_t *o);
double demo_now_us(void);

/* Workers: return the process exit status. */
int encode_worker_main(const demo_opts_t *o);
int prefill_worker_main(const demo_opts_t *o);
nxc_connector_t *demo_connector(const char *role, const char *transport);

/* channel.c: length-prefixed messages over a stream socket. */
int chan_send(int fd, const char *text);
/* A malloc'd NUL-terminated message, or NULL (EOF, error, timeout; printed). */
char *chan_recv(int fd, int timeout_ms);

/* message.c: the request texts. The metadata JSON, when present, is always
 * the last field ("serialized_request"), so the small fields before it can
 * be found without a JSON parser and the metadata is passed through as is. */
/* "{" head "}" or "{" head ",\"serialized_request\":" metadata "}"; NULL
 * metadata leaves the field out. malloc'd. */
char *msg_build(const char *metadata, const char *head_fmt, ...)
    __attribute__((format(printf, 2, 3)));
int msg_long(const char *msg, const char *key, long *out);
int msg_str(const char *msg, const char *key, char *buf, size_t len);
const char *msg_metadata(const char *msg, size_t *len_p);
void msg_sanitize(char *text);

/* embeddings.c: deterministic stand-in for a vision encoder's output. */
void embed_fill(uint16_t *dst, size_t count, uint64_t request_id);
/* Byte offset of the first byte that differs, or SIZE_MAX if all match. */
size_t embed_verify(const uint16_t *src, size_t count, uint64_t request_id);

#endif
