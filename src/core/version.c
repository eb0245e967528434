/* SPDX-License-Identifier: Apache-2.0 */
/* The library's version, and whether a header's version is compatible. */
#include "nxc/nxc.h"

const char *nxc_version(void) {
    return NXC_VERSION_STRING;
}

int nxc_version_number(void) {
    return NXC_VERSION_NUMBER;
}

int nxc_version_compatible(int header_version) {
    int major = header_version / 10000, minor = header_version / 100 % 100;
    if (header_version < 0 || major != NXC_VERSION_MAJOR || header_version > NXC_VERSION_NUMBER)
        return 0;
    return major > 0 || minor == NXC_VERSION_MINOR;
}
