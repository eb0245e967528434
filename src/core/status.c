/* SPDX-License-Identifier: Apache-2.0 */
#include "nxc/nxc.h"

const char *nxc_status_string(nxc_status_t status) {
    switch (status) {
    case NXC_OK: return "success";
    case NXC_INPROGRESS: return "in progress";
    case NXC_ERR_INVALID_PARAM: return "invalid parameter";
    case NXC_ERR_NO_MEMORY: return "out of memory";
    case NXC_ERR_INVALID_DEVICE: return "invalid device";
    case NXC_ERR_INVALID_DESCRIPTOR: return "invalid descriptor";
    case NXC_ERR_EMPTY_LIST: return "empty descriptor list";
    case NXC_ERR_MIXED_DEVICES: return "descriptors on different devices";
    case NXC_ERR_SIZE_MISMATCH: return "size mismatch";
    case NXC_ERR_WRONG_OPERATION: return "operation does not match the metadata";
    case NXC_ERR_METADATA_MALFORMED: return "malformed metadata";
    case NXC_ERR_METADATA_TOO_LARGE: return "metadata too large";
    case NXC_ERR_METADATA_VERSION: return "unsupported metadata version";
    case NXC_ERR_NOT_SUPPORTED: return "not supported";
    case NXC_ERR_NO_TRANSPORT: return "no usable transport";
    case NXC_ERR_UNREACHABLE: return "peer unreachable";
    case NXC_ERR_PEER_FAILED: return "peer failed";
    case NXC_ERR_REFUSED: return "refused by peer";
    case NXC_ERR_TIMED_OUT: return "timed out";
    case NXC_ERR_CANCELED: return "cancelled";
    case NXC_ERR_TRANSPORT: return "transport error";
    case NXC_ERR_INVALID_STATE: return "invalid state";
    case NXC_ERR_SYSTEM: return "system error";
    }
    return "unknown status";
}
