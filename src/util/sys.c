/* SPDX-License-Identifier: Apache-2.0 */
#include "util/sys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

static void read_line(const char *path, char *buf, size_t len) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(buf, (int)len, f)) buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

void nxc__host_identity(char *buf, size_t len) {
    char host[64] = "unknown", boot[40];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    read_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
    snprintf(buf, len, "%s/%s", host, boot[0] ? boot : "noboot");
}

/* The fields of /proc/<pid>/stat after the command name (from field 3, the
 * state), NUL-terminated in buf; NULL when the process does not exist. */
static const char *stat_fields(int pid, char *buf, size_t len) {
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces: count from its last ')'. */
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p + 2 : NULL;
}

/* What /proc/<pid>/stat says of a process: its state (field 3), start
 * time (field 22) and virtual memory size (field 23). */
typedef struct {
    char state;
    unsigned long long start, vsize;
} proc_stat_t;

static bool read_stat(int pid, proc_stat_t *s) {
    char stat[1024];
    const char *fields = stat_fields(pid, stat, sizeof stat);
    /* field 3 read, 4..21 skipped, 22 and 23 read */
    return fields && sscanf(fields,
                            "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                            "%*d %*d %llu %llu",
                            &s->state, &s->start, &s->vsize) == 3;
}

uint64_t nxc__process_start_time_of(int pid) {
    proc_stat_t s;
    return read_stat(pid, &s) ? s.start : 0;
}

/* An exiting process drops its memory before it closes its files, and long
 * before it is a zombie: without one it can no longer touch ours. */
static bool has_address_space(const proc_stat_t *s) {
    return s->state != 'Z' && s->state != 'X' && s->vsize > 0;
}

bool nxc__process_alive(int pid) {
    proc_stat_t s;
    return pid > 0 && read_stat(pid, &s) && has_address_space(&s);
}

bool nxc__process_can_run(int pid, uint64_t start_time) {
    proc_stat_t s;
    return pid > 0 && read_stat(pid, &s) && s.start == start_time && has_address_space(&s) &&
           s.state != 'T' && s.state != 't';
}

uint64_t nxc__process_start_time(void) {
    return nxc__process_start_time_of(0);
}

/* Random bytes come from a ChaCha20 keystream per thread, keyed from the
 * kernel (libsodium's randombytes) once per thread and again in a child
 * after fork, so that parent and child never share a stream. A kernel call
 * per op key and secret cost three getrandom() calls per op, more than the
 * rest of creating one. Each request takes a fresh nonce; the key is
 * replaced after 2^32 requests. */
typedef struct rng {
    uint8_t key[crypto_stream_chacha20_KEYBYTES];
    uint64_t nonce;
    unsigned generation; /* of fork_generation when keyed */
    bool keyed;
} rng_t;

static _Thread_local rng_t thread_rng;
static atomic_uint fork_generation;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void) {
    atomic_fetch_add(&fork_generation, 1);
}

static void install_fork_hook(void) {
    /* sodium_init() fails only without an entropy source: with nothing safe
     * to key the streams from, stop rather than hand out guessable bytes. */
    if (sodium_init() < 0) abort();
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

void nxc__random(void *buf, size_t len) {
    pthread_once(&fork_hook_once, install_fork_hook);
    rng_t *r = &thread_rng;
    unsigned gen = atomic_load(&fork_generation);
    if (!r->keyed || r->generation != gen || r->nonce >= (1ull << 32)) {
        randombytes_buf(r->key, sizeof r->key);
        r->nonce = 0;
        r->generation = gen;
        r->keyed = true;
    }
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint64_t n = r->nonce++;
    memcpy(nonce, &n, sizeof nonce < sizeof n ? sizeof nonce : sizeof n);
    memset(buf, 0, len);
    crypto_stream_chacha20_xor(buf, buf, len, nonce, r->key);
}

void nxc__uuid4(char out[37]) {
    uuid_t u;
    nxc__random(u, sizeof u);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    uuid_unparse_lower(u, out);
}

void *nxc__thread_value(pthread_key_t key, size_t size) {
    void *v = pthread_getspecific(key);
    if (v) return v;
    v = calloc(1, size);
    if (v && pthread_setspecific(key, v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}
