/* SPDX-License-Identifier: Apache-2.0 */
#include "util/sys.h"

#include <sodium.h>
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

uint64_t nxc__process_start_time_of(int pid) {
    char stat[1024], path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    /* The command name (field 2) may hold spaces: count from its last ')'. */
    char *p = strrchr(stat, ')');
    if (!p) return 0;
    unsigned long long start = 0;
    /* fields 3..21 skipped, field 22 read */
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
               "%*d %llu",
               &start) != 1)
        return 0;
    return start;
}

uint64_t nxc__process_start_time(void) {
    return nxc__process_start_time_of(0);
}

void nxc__random(void *buf, size_t len) {
    if (sodium_init() < 0) {
        /* sodium_init only fails without an entropy source; fall back loudly
         * to the kernel call libsodium would use anyway. */
        abort();
    }
    randombytes_buf(buf, len);
}

void nxc__uuid4(char out[37]) {
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}
