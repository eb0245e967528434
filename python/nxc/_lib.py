# SPDX-License-Identifier: Apache-2.0
"""Load libnxc and declare its prototypes (ctypes, standard library only).

Where the library comes from, first match wins:
  1. the NXC_LIBRARY environment variable (a path to libnxc.so*);
  2. the build tree of the checkout this package sits in
     (build/release/src/libnxc.so.0, as made by scripts/build.sh release);
  3. the installed library: ctypes.util.find_library("nxc"), then the
     soname libnxc.so.0 through the dynamic loader's search path.

ctypes releases the GIL around every foreign call (CDLL, not PyDLL), so the
blocking calls (nxc_op_wait, nxc_cq_wait, nxc_op_cancel) never stall other
Python threads.
"""

import ctypes
import ctypes.util
import os
from pathlib import Path

# Numbers of include/nxc/nxc.h.
NXC_OK = 0
NXC_INPROGRESS = 1

STATUS_NAMES = {
    0: "NXC_OK",
    1: "NXC_INPROGRESS",
    -1: "NXC_ERR_INVALID_PARAM",
    -2: "NXC_ERR_NO_MEMORY",
    -3: "NXC_ERR_INVALID_DEVICE",
    -4: "NXC_ERR_INVALID_DESCRIPTOR",
    -5: "NXC_ERR_EMPTY_LIST",
    -6: "NXC_ERR_MIXED_DEVICES",
    -7: "NXC_ERR_SIZE_MISMATCH",
    -8: "NXC_ERR_WRONG_OPERATION",
    -20: "NXC_ERR_METADATA_MALFORMED",
    -21: "NXC_ERR_METADATA_TOO_LARGE",
    -22: "NXC_ERR_METADATA_VERSION",
    -30: "NXC_ERR_NOT_SUPPORTED",
    -31: "NXC_ERR_NO_TRANSPORT",
    -40: "NXC_ERR_UNREACHABLE",
    -41: "NXC_ERR_PEER_FAILED",
    -42: "NXC_ERR_REFUSED",
    -43: "NXC_ERR_TIMED_OUT",
    -44: "NXC_ERR_CANCELED",
    -45: "NXC_ERR_TRANSPORT",
    -50: "NXC_ERR_INVALID_STATE",
    -51: "NXC_ERR_SYSTEM",
}

NXC_CONNECTOR_FIELD_NAME = 1 << 0
NXC_CONNECTOR_FIELD_TRANSPORTS = 1 << 1
NXC_CONNECTOR_FIELD_PROGRESS_THREAD = 1 << 2

NXC_OP_FIELD_TIMEOUT = 1 << 0
NXC_OP_FIELD_NOTIFICATION_KEY = 1 << 1
NXC_OP_FIELD_USER_DATA = 1 << 2
NXC_OP_FIELD_CQ = 1 << 3

# The major.minor this binding was written against (0.x: minor must match).
BINDING_VERSION_NUMBER = 100  # 0.1.0


class Device(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("id", ctypes.c_int)]


class Desc(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("device", Device)]


class ConnectorParams(ctypes.Structure):
    _fields_ = [
        ("field_mask", ctypes.c_uint64),
        ("name", ctypes.c_char_p),
        ("transports", ctypes.c_char_p),
        ("progress_thread", ctypes.c_int),
        ("log_level", ctypes.c_int),
        ("tcp_address", ctypes.c_char_p),
        ("tcp_port", ctypes.c_int),
        ("options", ctypes.c_char_p),  # NXC_CONNECTOR_FIELD_OPTIONS (1 << 6)
    ]


class OpParams(ctypes.Structure):
    _fields_ = [
        ("field_mask", ctypes.c_uint64),
        ("timeout_ms", ctypes.c_int),
        ("notification_key", ctypes.c_char_p),
        ("user_data", ctypes.c_void_p),
        ("cq", ctypes.c_void_p),
    ]


class CqEntry(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_void_p),
        ("user_data", ctypes.c_void_p),
        ("result", ctypes.c_int),
        ("kind", ctypes.c_int),
    ]


def _candidates():
    env = os.environ.get("NXC_LIBRARY")
    if env:
        return [env], True
    out = []
    root = Path(__file__).resolve().parent.parent.parent
    for name in ("libnxc.so.0", "libnxc.so"):
        p = root / "build" / "release" / "src" / name
        if p.exists():
            out.append(str(p))
            break
    found = ctypes.util.find_library("nxc")
    if found:
        out.append(found)
    out.append("libnxc.so.0")
    return out, False


def _load():
    cands, from_env = _candidates()
    errors = []
    for c in cands:
        try:
            return ctypes.CDLL(c), c
        except OSError as e:
            errors.append(f"{c}: {e}")
            if from_env:
                break
    raise ImportError(
        "nxc: cannot load libnxc (set NXC_LIBRARY, build with scripts/build.sh release, "
        "or install the library): " + "; ".join(errors)
    )


lib, path = _load()

_vp = ctypes.c_void_p
_P = ctypes.POINTER


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_proto("nxc_status_string", ctypes.c_char_p, ctypes.c_int)
_proto("nxc_last_error", ctypes.c_char_p)
_proto("nxc_version", ctypes.c_char_p)
_proto("nxc_version_number", ctypes.c_int)
_proto("nxc_version_compatible", ctypes.c_int, ctypes.c_int)
_proto("nxc_device_parse", ctypes.c_int, ctypes.c_char_p, _P(Device))
_proto("nxc_device_format", ctypes.c_int, Device, ctypes.c_char_p, ctypes.c_size_t)
_proto("nxc_connector_create", ctypes.c_int, _P(ConnectorParams), _P(_vp))
_proto("nxc_connector_destroy", None, _vp)
_proto("nxc_connector_name", ctypes.c_char_p, _vp)
_proto("nxc_connector_transports", ctypes.c_char_p, _vp)
_proto("nxc_connector_progress", ctypes.c_int, _vp)
_proto("nxc_connector_fd", ctypes.c_int, _vp)
_proto("nxc_create_readable", ctypes.c_int, _vp, _P(Desc), ctypes.c_size_t, _P(OpParams), _P(_vp))
_proto("nxc_create_writable", ctypes.c_int, _vp, _P(Desc), ctypes.c_size_t, _P(OpParams), _P(_vp))
_proto("nxc_op_metadata", ctypes.c_int, _vp, _P(ctypes.c_char_p), _P(ctypes.c_size_t))
_proto("nxc_begin_read", ctypes.c_int, _vp, ctypes.c_char_p, ctypes.c_size_t, _P(Desc),
       ctypes.c_size_t, _P(OpParams), _P(_vp))
_proto("nxc_begin_write", ctypes.c_int, _vp, _P(Desc), ctypes.c_size_t, ctypes.c_char_p,
       ctypes.c_size_t, _P(OpParams), _P(_vp))
_proto("nxc_op_status", ctypes.c_int, _vp)
_proto("nxc_op_result", ctypes.c_int, _vp)
_proto("nxc_op_message", ctypes.c_char_p, _vp)
_proto("nxc_op_wait", ctypes.c_int, _vp, ctypes.c_int)
_proto("nxc_op_cancel", ctypes.c_int, _vp)
_proto("nxc_op_release", None, _vp)
_proto("nxc_op_kind", ctypes.c_int, _vp)
_proto("nxc_op_size", ctypes.c_size_t, _vp)
_proto("nxc_op_notification_key", ctypes.c_char_p, _vp)
_proto("nxc_op_transport", ctypes.c_char_p, _vp)
_proto("nxc_cq_create", ctypes.c_int, _vp, _vp, _P(_vp))
_proto("nxc_cq_destroy", None, _vp)
_proto("nxc_cq_poll", ctypes.c_int, _vp, _P(CqEntry), ctypes.c_int)
_proto("nxc_cq_wait", ctypes.c_int, _vp, _P(CqEntry), ctypes.c_int, ctypes.c_int)
_proto("nxc_cq_fd", ctypes.c_int, _vp)
_proto("nxc_mem_register", ctypes.c_int, _vp, _P(Desc), ctypes.c_size_t, _vp, _P(_vp))
_proto("nxc_mem_deregister", None, _vp)
_proto("nxc_mem_alloc", ctypes.c_int, _vp, ctypes.c_size_t, _vp, _P(_vp), _P(_vp))

if not lib.nxc_version_compatible(BINDING_VERSION_NUMBER):
    raise ImportError(
        f"nxc: {path} is version {lib.nxc_version().decode()}, "
        f"not compatible with this binding (written for 0.1)"
    )


def status_name(status):
    return STATUS_NAMES.get(int(status), f"NXC_STATUS_{int(status)}")


def last_error():
    return (lib.nxc_last_error() or b"").decode("utf-8", "replace")
