/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "transport/transport.h"

/* Default preference order. */
const nxc__transport_ops_t *const nxc__transports_builtin[] = {
    &nxc__transport_shm, &nxc__transport_ucx, &nxc__transport_tcp};
const size_t nxc__transports_builtin_count =
    sizeof nxc__transports_builtin / sizeof nxc__transports_builtin[0];

const nxc__transport_ops_t *nxc__transport_find(const char *name, size_t len) {
    for (size_t i = 0; i < nxc__transports_builtin_count; i++) {
        const char *n = nxc__transports_builtin[i]->name;
        if (strlen(n) == len && !strncmp(n, name, len)) return nxc__transports_builtin[i];
    }
    return NULL;
}
