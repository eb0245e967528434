# SPDX-License-Identifier: Apache-2.0
"""nxc with the names and semantics of Dynamo's `dynamo.nixl_connect`.

Switch with one line:  import nxc.nixl_connect as connect

Differences from the reference (all deliberate): transfers are posted when
begin_read/begin_write return; wait_for_completion() is driven by nxc's
completion-queue fd through the running event loop (no polling) and takes a
`timeout`; an ERRORED op, passive or active, raises NxcError (a RuntimeError);
cancel() on a terminal op changes nothing; non-contiguous tensors are
refused (never silently copied); CUDA memory raises NotSupportedError (no GPU
transport in this build). nxc does not talk to NIXL peers.
"""

import asyncio
import ctypes
import enum
import json
import math
import os
import socket
import sys
import threading
import uuid
import weakref

from . import _lib
from ._lib import lib
from ._models import RdmaMetadata, SerializedDescriptor, from_nxc_text, metadata_text
from .errors import MetadataError, NotSupportedError, NxcError, NxcTimeoutError, check, error_for

__all__ = [
    "Connector",
    "Descriptor",
    "Device",
    "DeviceKind",
    "OperationKind",
    "OperationStatus",
    "ReadableOperation",
    "WritableOperation",
    "ReadOperation",
    "WriteOperation",
    "RdmaMetadata",
    "SerializedDescriptor",
    "NxcError",
    "NotSupportedError",
    "MetadataError",
    "NxcTimeoutError",
]


# --------------------------------------------------------------------------- enums


class _StrEnumMixin:
    def __format__(self, spec):
        return format(str(self), spec)


class DeviceKind(_StrEnumMixin, enum.IntEnum):
    UNSPECIFIED = 0
    HOST = 1
    CUDA = 2

    def __str__(self):
        return {1: "cpu", 2: "cuda"}.get(int(self), "<invalid>")


class OperationKind(_StrEnumMixin, enum.IntEnum):
    UNSPECIFIED = 0
    READ = 1
    WRITE = 2

    def __str__(self):
        return {1: "READ", 2: "WRITE"}.get(int(self), "<invalid>")


class OperationStatus(_StrEnumMixin, enum.IntEnum):
    UNINITIALIZED = 0
    INITIALIZED = 1
    IN_PROGRESS = 2
    COMPLETE = 3
    CANCELLED = 4
    ERRORED = 5

    def __str__(self):
        return {1: "INIT", 2: "PROC", 3: "DONE", 4: "STOP", 5: "ERR"}.get(int(self), "<invalid>")


_TERMINAL = (OperationStatus.COMPLETE, OperationStatus.CANCELLED, OperationStatus.ERRORED)
_TERMINAL_INTS = frozenset(int(s) for s in _TERMINAL)
_ERRORED_INT = int(OperationStatus.ERRORED)
_COMPLETE_INT = int(OperationStatus.COMPLETE)
# OperationStatus by value, without Enum's call (a third of a microsecond)
_STATUS_OF = {int(s): s for s in OperationStatus}

# Bumped in a forked child: a loop attached before the fork is not running
# there, whatever its thread id says (Connector._running_loop).
_fork_epoch = 0


def _after_fork_in_child():
    global _fork_epoch
    _fork_epoch += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def _expire(fut):
    """wait_for_completion()'s timeout: end that one wait, not the op."""
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


# --------------------------------------------------------------------------- memory nxc allocates


class _Allocation:
    """One nxc_mem_alloc() block, kept by the ctypes array over it (and so by
    every memoryview, array or tensor made from that): unmapped
    (nxc_mem_deregister) when the last of them is gone, even after its
    connector closed. Not in a forked child, whose copy of the connector's
    lock may be held: the block goes with the child."""

    __slots__ = ("_h", "_pid")

    def __init__(self, handle):
        self._h = handle
        self._pid = os.getpid()

    def __del__(self):
        h, self._h = self._h, None
        if h is not None and self._pid == os.getpid() and lib is not None:
            lib.nxc_mem_deregister(h)


# --------------------------------------------------------------------------- Device


class Device:
    """A memory kind and ordinal: Device("cpu"), Device("cuda:1"),
    Device((DeviceKind.CUDA, 1)). Texts are parsed by nxc_device_parse."""

    def __init__(self, metadata):
        if metadata is None:
            raise ValueError("Device: metadata is None")
        if isinstance(metadata, Device):
            self._kind, self._id = metadata._kind, metadata._id
        elif (
            isinstance(metadata, tuple)
            and len(metadata) == 2
            and isinstance(metadata[0], DeviceKind)
            and isinstance(metadata[1], int)
        ):
            self._kind, self._id = metadata
        elif isinstance(metadata, str):
            d = _lib.Device()
            st = lib.nxc_device_parse(metadata.encode("utf-8", "replace"), ctypes.byref(d))
            if st < 0:
                raise ValueError(f"Device: {metadata!r}: {_lib.last_error()}")
            self._kind, self._id = DeviceKind(d.kind), d.id
        else:
            raise TypeError(f"Device: expected str or (DeviceKind, int), got {type(metadata).__name__}")

    @property
    def kind(self):
        return self._kind

    @property
    def id(self):
        return self._id

    def __str__(self):
        return f"cuda:{self._id}" if self._kind == DeviceKind.CUDA else "cpu"

    def __repr__(self):
        return f"Device({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, Device) and (self._kind, self._id) == (other._kind, other._id)

    def __hash__(self):
        return hash((self._kind, self._id))


_HOST = Device((DeviceKind.HOST, 0))


# --------------------------------------------------------------------------- buffers


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_GetBuffer.restype = ctypes.c_int
_ReleaseBuffer = ctypes.pythonapi.PyBuffer_Release
_ReleaseBuffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_ReleaseBuffer.restype = None


class _BufferExport:
    """Holds a buffer-protocol export (PyBUF_SIMPLE: contiguous bytes) for as
    long as it lives: the exporter cannot resize or free the memory meanwhile."""

    def __init__(self, obj):
        self._view = _PyBuffer()
        try:
            _GetBuffer(obj, ctypes.byref(self._view), 0)  # PyBUF_SIMPLE
        except BufferError as e:
            raise ValueError(
                f"Descriptor: {type(obj).__name__} is not one contiguous buffer ({e}); "
                "pass a contiguous copy and keep it alive"
            ) from None
        self._held = True
        self.ptr = self._view.buf or 0
        self.size = self._view.len
        self.readonly = bool(self._view.readonly)

    def release(self):
        if getattr(self, "_held", False):
            self._held = False
            _ReleaseBuffer(ctypes.byref(self._view))

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass


def _is_tensor(data):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(data, torch.Tensor)


# --------------------------------------------------------------------------- Descriptor


class Descriptor:
    """A region of memory: a CPU torch tensor, (numpy_array, device),
    a bytes-like object (bytes, bytearray, memoryview, any buffer), or
    (ptr, size[, device[, keepalive]]). The Descriptor (and every op using
    it) keeps the object it points into alive."""

    def __init__(self, data):
        self._keep = None
        self._readonly = False
        self._c_one = None  # this descriptor as a one-entry nxc_desc_t array, once built
        if data is None:
            raise ValueError("Descriptor: data is None")
        if _is_tensor(data):
            if not data.is_contiguous():
                raise ValueError(
                    "Descriptor: the tensor is not contiguous; nxc does not copy it (the data "
                    "would land in the copy): pass t.contiguous() and keep that tensor"
                )
            dev = data.device
            if dev.type == "cuda":
                self._device = Device((DeviceKind.CUDA, dev.index or 0))
            elif dev.type == "cpu":
                self._device = _HOST
            else:
                raise NotSupportedError(-30, f"tensor device '{dev}' is not supported by nxc",
                                        "Descriptor")
            self._ptr = data.data_ptr()
            self._size = data.numel() * data.element_size()
            self._keep = data
        elif isinstance(data, tuple):
            self._from_tuple(data)
        else:
            try:
                exp = _BufferExport(data)
            except TypeError:
                raise TypeError(
                    f"Descriptor: unsupported type {type(data).__name__} (expected a torch tensor, "
                    "(ndarray, device), a bytes-like object or (ptr, size[, device[, keepalive]]))"
                ) from None
            self._ptr, self._size, self._readonly = exp.ptr, exp.size, exp.readonly
            self._device = _HOST
            self._keep = (data, exp)
        self._metadata = None
        self._reg = None  # (connector, nxc_mem_t handle) while registered

    def _from_tuple(self, data):
        if len(data) == 2 and not isinstance(data[0], int):
            arr, dev = data
            self._device = dev if isinstance(dev, Device) else Device(dev)
            if hasattr(arr, "__array_interface__"):
                iface = arr.__array_interface__
            elif hasattr(arr, "__cuda_array_interface__"):
                iface = arr.__cuda_array_interface__
            else:
                raise TypeError(f"Descriptor: {type(arr).__name__} has no array interface")
            flags = getattr(arr, "flags", None)
            if flags is not None and not flags["C_CONTIGUOUS"]:
                raise ValueError("Descriptor: the array is not C-contiguous; nxc does not copy it")
            self._ptr = iface["data"][0]
            self._readonly = bool(iface["data"][1])
            self._size = int(arr.nbytes)
            self._keep = arr
        elif 2 <= len(data) <= 4 and isinstance(data[0], int) and isinstance(data[1], int):
            self._ptr, self._size = data[0], data[1]
            dev = data[2] if len(data) > 2 else None
            if dev is None:
                self._device = _HOST
            elif isinstance(dev, (Device, str)):
                self._device = Device(dev)
            else:
                raise TypeError(f"Descriptor: device must be Device or str, got {type(dev).__name__}")
            self._keep = data[3] if len(data) > 3 else None
        else:
            raise TypeError("Descriptor: a tuple must be (ndarray, device) or (ptr, size[, device[, keepalive]])")

    @property
    def device(self):
        return self._device

    @property
    def ptr(self):
        return self._ptr

    @property
    def size(self):
        return self._size

    @property
    def is_registered(self):
        return self._reg is not None

    def register_with_connector(self, connector):
        """Register this memory with `connector` once (nxc_mem_register): ops
        over it then never register again. A no-op if already registered with
        the same connector; RuntimeError if with another one."""
        if not isinstance(connector, Connector):
            raise TypeError("register_with_connector: expected a Connector")
        if self._ptr == 0:
            raise ValueError("Cannot register memory with a null pointer.")
        if self._reg is not None:
            if self._reg[0] is connector:
                return
            raise RuntimeError(f"Descriptor is already registered with connector {self._reg[0].name}")
        self._reg = (connector, connector._register_memory(self))

    def deregister_with_connector(self, connector):
        """Drop the registration (ops still using the memory keep theirs until
        they end). RuntimeError if not registered with `connector`."""
        if not isinstance(connector, Connector):
            raise TypeError("deregister_with_connector: expected a Connector")
        if self._reg is None or self._reg[0] is not connector:
            raise RuntimeError(f"Descriptor is not registered with connector {connector.name}")
        reg, self._reg = self._reg, None
        connector._deregister_memory(self, reg[1])

    def __del__(self):
        reg = getattr(self, "_reg", None)
        if reg is not None:
            try:
                reg[0]._deregister_memory(self, reg[1])
            except Exception:
                pass

    @property
    def metadata(self):
        if self._metadata is None:
            self._metadata = SerializedDescriptor(device=str(self._device), ptr=self._ptr, size=self._size)
        return self._metadata

    @staticmethod
    def from_serialized(sd):
        if not isinstance(sd, SerializedDescriptor):
            raise TypeError("from_serialized: expected a SerializedDescriptor")
        return Descriptor((sd.ptr, sd.size, sd.device, None))

    def __repr__(self):
        return f"Descriptor(ptr=0x{self._ptr:x}, size={self._size}, device={str(self._device)!r})"


def _c_descs(items):
    arr = (_lib.Desc * max(1, len(items)))()
    for i, d in enumerate(items):
        arr[i].ptr = d.ptr
        arr[i].size = d.size
        arr[i].device.kind = int(d.device.kind)
        arr[i].device.id = d.device.id
    return arr


def _desc_list(local, writable_needed, what):
    if isinstance(local, Descriptor):
        items = [local]
    elif isinstance(local, (list, tuple)) and all(isinstance(d, Descriptor) for d in local):
        items = list(local)
    else:
        raise TypeError(f"{what}: expected a Descriptor or a list of Descriptors")
    if writable_needed:
        for i, d in enumerate(items):
            if d._readonly:
                raise ValueError(f"{what}: descriptor {i} is read-only memory (e.g. bytes); "
                                 "it cannot receive data (use bytearray)")
    if len(items) != 1:
        return items, _c_descs(items)
    # A Descriptor's fields never change and nxc copies the array it is
    # given, so one array serves all its ops: a fifth of building it anew.
    one = items[0]
    if one._c_one is None:
        one._c_one = _c_descs(items)
    return items, one._c_one


def _metadata_bytes(md, what):
    if isinstance(md, RdmaMetadata):
        return metadata_text(md).encode()
    if isinstance(md, str):
        return md.encode("utf-8")
    if isinstance(md, (bytes, bytearray)):
        return bytes(md)
    if isinstance(md, dict):
        return json.dumps(md, separators=(",", ":")).encode()
    raise TypeError(f"{what}: remote metadata must be RdmaMetadata (or its JSON text), "
                    f"got {type(md).__name__}")


# --------------------------------------------------------------------------- operations


class _Operation:
    _kind_name = "operation"

    def __init__(self, connector, handle, key, descs):
        self._connector = connector
        self._op = handle  # nxc_op_t*, None once released
        self._handle_value = handle.value  # its key in the connector's index, kept past release
        self._key = key
        self._descs = descs  # keeps the memory alive until release
        self._waiters = []  # one future per wait_for_completion() in progress
        self._last_status = OperationStatus.INITIALIZED
        self._result = None
        self._message = ""
        self._ended = None  # the terminal status seen, as an int: it never changes

    def _live(self):
        """The nxc op, or None once it is released: by release(), or by
        nxc_connector_destroy() with its connector. The garbage collector
        may finalize a connector before the ops that refer to it (it clears
        the connector's weak list of ops first, so close() cannot release
        them one by one): their handles are then freed memory, and the op
        takes the state release() would have left."""
        op = self._op
        if op is not None and self._connector._c is None:
            self._op = op = None
            self._released_as(_STATUS_OF.get(self._ended, OperationStatus.CANCELLED))
        return op

    def _released_as(self, st):
        """The state a released op keeps: its terminal status, else CANCELLED
        (NXC_ERR_CANCELED); waiters wake."""
        self._last_status = st if st in _TERMINAL else OperationStatus.CANCELLED
        if self._last_status == OperationStatus.CANCELLED and (self._result or 0) >= 0:
            self._result = -44
        self._on_end()

    def _keep_result(self, op):
        """Keep the op's result, and its message if it failed, beyond its
        handle (each ctypes call is a third of a microsecond, in every op)."""
        self._result = lib.nxc_op_result(op)
        if self._result < 0:
            self._message = (lib.nxc_op_message(op) or b"").decode("utf-8", "replace")

    @property
    def status(self):
        if self._live() is None:
            return self._last_status
        return _STATUS_OF[self._raw_status()]

    @property
    def transport(self):
        """"shm", "tcp" or "ucx" once known (nxc extension)."""
        op = self._live()
        if op is None:
            return None
        t = lib.nxc_op_transport(op)
        return t.decode() if t else None

    @property
    def size(self):
        return sum(d.size for d in self._descs)

    def _error(self):
        # only after ERRORED was seen, which kept the result (_raw_status)
        return error_for(self._result, self._message, f"{self._kind_name} failed")

    def _finish(self, raw=None):
        if (self._raw_status() if raw is None else raw) == _ERRORED_INT:
            raise self._error()
        return None

    def _raw_status(self):
        op = self._live()
        if op is None:
            return int(self._last_status)
        if self._ended is None:
            raw = lib.nxc_op_status(op)
            if raw in _TERMINAL_INTS:
                self._ended = raw
                if raw == _ERRORED_INT:  # kept: the handle may go with its connector
                    self._keep_result(op)
            return raw
        return self._ended

    def _on_end(self):
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for_completion(self, timeout=None):
        """Wait until the op ends: returns when COMPLETE (or CANCELLED),
        raises NxcError when it ERRORED, TimeoutError (asyncio's) when
        `timeout` seconds pass first (the op goes on). Never blocks the loop."""
        raw = self._raw_status()
        if raw in _TERMINAL_INTS:  # ended already, as a small shm read has by now
            return self._finish(raw)
        loop = self._connector._running_loop()
        # One future per wait, woken by the completion queue's entry
        # (Connector._drain) or by release(), and a timer of our own for
        # the timeout: the task resumes one loop iteration after the
        # fd fires (asyncio.wait_for and shield would add three).
        fut = loop.create_future()
        self._waiters.append(fut)
        timer = None
        try:
            # An entry drained before the future existed is caught by
            # the status check; drain now in case the fd fired while we
            # were away.
            self._connector._drain()
            if self._raw_status() not in _TERMINAL_INTS:
                if timeout is not None:
                    timer = loop.call_later(timeout, _expire, fut)
                await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._waiters.remove(fut)
        return self._finish()

    def cancel(self):
        """Cancel a running op (CANCELLED); a terminal op is left as it is."""
        op = self._live()
        if op is not None:
            check(lib.nxc_op_cancel(op), f"{self._kind_name}.cancel")

    def release(self):
        """Release the op: a running op is cancelled first; a passive op's
        memory is unreachable by peers when this returns."""
        op = self._live()
        if op is None:
            return
        raw = self._raw_status()
        st = _STATUS_OF[raw]
        if raw == _COMPLETE_INT:
            self._result = 0  # nxc_op_result() is NXC_OK once COMPLETE: no call
        else:
            self._keep_result(op)
        self._op = None
        self._connector._forget(self)
        lib.nxc_op_release(op)
        self._released_as(st)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass

    def __repr__(self):
        return f"{type(self).__name__}(status={self.status!s}, size={self.size})"


class _PassiveOperation(_Operation):
    _cached_md = None

    def metadata(self):
        """The RdmaMetadata a peer needs (passive: reading it changes nothing)."""
        op = self._live()
        if op is None:
            raise NxcError(-50, "the operation was released: its metadata is refused by nxc",
                           f"{self._kind_name}.metadata")
        if self._cached_md is None:
            text = ctypes.c_char_p()
            n = ctypes.c_size_t()
            check(lib.nxc_op_metadata(op, ctypes.byref(text), ctypes.byref(n)),
                  f"{self._kind_name}.metadata")
            self._cached_md = from_nxc_text(ctypes.string_at(text, n.value))
        return self._cached_md

    @property
    def notification_key(self):
        return self._key


class ReadableOperation(_PassiveOperation):
    """Passive: a peer may read these buffers (it calls begin_read)."""

    _kind_name = "readable"


class WritableOperation(_PassiveOperation):
    """Passive: a peer may write into these buffers (it calls begin_write)."""

    _kind_name = "writable"


class ReadOperation(_Operation):
    """Active: reads a peer's readable buffers into local ones."""

    _kind_name = "read"

    def results(self):
        if self.status != OperationStatus.COMPLETE:
            raise RuntimeError(f"read operation is {self.status!s}, not complete")
        return list(self._descs)


class WriteOperation(_Operation):
    """Active: writes local buffers into a peer's writable buffers."""

    _kind_name = "write"


# --------------------------------------------------------------------------- Connector


class Connector:
    """One per process: owns nxc's connector (transports, progress thread)
    and one completion queue whose fd drives wait_for_completion().

    progress_thread=False (an nxc extension) runs the connector without
    its progress thread: the asyncio loop that uses it drives it through
    nxc's connector fd, so a completion reaches a waiting task with one
    wake-up instead of two (the progress thread's, then the loop's). The
    price: nothing moves while that loop does not run, so a peer reading
    this process's readables over tcp or ucx waits while the loop is busy
    or stopped (shm peers copy without the owner; its notification waits).
    """

    def __init__(self, worker_id=None, *, transports=None, progress_thread=True):
        if worker_id is None:
            worker_id = uuid.uuid4().hex
        elif not isinstance(worker_id, str) or not worker_id:
            raise TypeError("Connector: worker_id must be a non-empty str")
        self._worker_id = worker_id
        self._hostname = socket.gethostname()
        params = _lib.ConnectorParams()
        params.field_mask = _lib.NXC_CONNECTOR_FIELD_NAME
        params.name = worker_id.encode()
        if transports is not None:
            params.field_mask |= _lib.NXC_CONNECTOR_FIELD_TRANSPORTS
            params.transports = transports.encode()
        if not isinstance(progress_thread, bool):
            raise TypeError("Connector: progress_thread must be a bool")
        params.field_mask |= _lib.NXC_CONNECTOR_FIELD_PROGRESS_THREAD
        params.progress_thread = int(progress_thread)
        c = ctypes.c_void_p()
        check(lib.nxc_connector_create(ctypes.byref(params), ctypes.byref(c)), "Connector")
        self._c = c
        cq = ctypes.c_void_p()
        st = lib.nxc_cq_create(c, None, ctypes.byref(cq))
        if st < 0:
            err = error_for(st, _lib.last_error(), "Connector")
            lib.nxc_connector_destroy(c)
            raise err
        self._cq = cq
        self._fd = lib.nxc_cq_fd(cq)
        # without the thread, the loop also watches the connector's own fd
        self._loop_fd = None if progress_thread else lib.nxc_connector_fd(c)
        # A weak reference to each op not yet released, by its nxc handle (the
        # completion entry's op). Released and finalized ops take theirs out
        # (_forget); a plain dict of refs costs a third of a
        # WeakValueDictionary's insert and pop (1.1 us an op here).
        self._ops = {}
        self._op_params = {}  # by timeout, see _params
        self._loop = None
        self._loop_epoch = _fork_epoch
        self._entries = (_lib.CqEntry * 64)()
        self._registered = weakref.WeakSet()  # Descriptors registered here

    # -- explicit registration (Descriptor.register_with_connector)
    def _register_memory(self, desc):
        if self._c is None:
            raise RuntimeError("Connector is closed")
        _, arr = _desc_list(desc, False, "register_with_connector")
        h = ctypes.c_void_p()
        check(lib.nxc_mem_register(self._c, arr, 1, None, ctypes.byref(h)),
              "register_with_connector")
        self._registered.add(desc)
        return h

    def _deregister_memory(self, desc, handle):
        self._registered.discard(desc)
        if self._c is not None:  # a closed connector dropped every registration
            lib.nxc_mem_deregister(handle)

    # -- memory nxc allocates (nxc_mem_alloc)
    def alloc_buffer(self, nbytes):
        """`nbytes` of zeroed host memory that nxc allocates: shm peers on this
        host map it once and read or write the ops over it with memcpy,
        without a system call per op (the fast path for small transfers;
        ops over other memory, and tcp and ucx, are unchanged). Returns a
        writable memoryview (format "B"). The memory is freed when the last
        view, array or tensor over it is gone, even after this connector
        closed. A peer that mapped it could reach all of it, as one allowed
        process_vm_readv (the same user) can reach all of this process:
        allocate here only what peers may see. The mapping is shared: a
        child forked afterwards shares the memory with this process (fork
        copies other memory)."""
        if self._c is None:
            raise RuntimeError("Connector is closed")
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes <= 0:
            raise ValueError(f"alloc_buffer: nbytes must be a positive int, not {nbytes!r}")
        ptr, h = ctypes.c_void_p(), ctypes.c_void_p()
        check(lib.nxc_mem_alloc(self._c, nbytes, None, ctypes.byref(ptr), ctypes.byref(h)),
              "alloc_buffer")
        arr = (ctypes.c_uint8 * nbytes).from_address(ptr.value)
        arr._allocation = _Allocation(h)
        return memoryview(arr).cast("B")

    def alloc_tensor(self, shape, dtype=None):
        """A zeroed CPU torch tensor of `shape` and `dtype` (default
        torch.uint8) in memory from alloc_buffer(): the same fast path and
        lifetime (freed with the last tensor or view over it)."""
        import torch

        dtype = torch.uint8 if dtype is None else dtype
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shape)
        if count <= 0 or any(not isinstance(n, int) or n < 0 for n in shape):
            raise ValueError(f"alloc_tensor: shape {shape!r} holds no element")
        itemsize = torch.empty((), dtype=dtype).element_size()
        buf = self.alloc_buffer(count * itemsize)
        return torch.frombuffer(buf, dtype=dtype, count=count).view(shape)

    # -- properties
    @property
    def name(self):
        return self._worker_id

    @property
    def hostname(self):
        return self._hostname

    @property
    def transports(self):
        return lib.nxc_connector_transports(self._c).decode() if self._c else ""

    def __str__(self):
        return self._worker_id

    def __eq__(self, other):
        return isinstance(other, Connector) and other._worker_id == self._worker_id

    def __hash__(self):
        return hash(self._worker_id)

    async def initialize(self):
        """No-op, for callers written for the reference's first version."""
        return None

    # -- event loop glue
    def _running_loop(self):
        """asyncio.get_running_loop(), attached. The loop attached last is
        known to be the running one when it runs on the calling thread (an
        asyncio loop records its thread while it runs); that check skips
        get_running_loop's getpid() system call, 1.3 us here, paid twice an
        op before. Any other case asks asyncio."""
        loop = self._loop
        if (loop is not None and self._c is not None and self._loop_epoch == _fork_epoch
                and getattr(loop, "_thread_id", None) == threading.get_ident()):
            return loop
        return self._attach(asyncio.get_running_loop())

    def _attach(self, loop):
        if self._c is None:
            raise NxcError(-50, "the connector was closed", "Connector")
        self._loop_epoch = _fork_epoch
        if self._loop is not loop:
            self._detach()
            loop.add_reader(self._fd, self._drain)
            self._loop = loop
            if self._loop_fd is not None:
                loop.add_reader(self._loop_fd, self._pump)
                # A first pass arms the fd: until then work posted (the
                # caller's op, next) is noted without a wake-up.
                loop.call_soon(self._pump)
        return loop

    def _detach(self):
        old, self._loop = self._loop, None
        if old is None or old.is_closed():
            return
        for fd in (self._fd, self._loop_fd):
            if fd is not None:
                try:
                    old.remove_reader(fd)
                except Exception:
                    pass

    # Passes per callback before the rest is left to the loop's next turn,
    # so that a long transfer does not starve the application's tasks.
    _PASSES = 64

    def _pump(self):
        """Without the progress thread: nxc.h's loop, one turn. Progress
        until a pass finds nothing (which arms the fd for what comes next),
        then hand the completions to their waiters."""
        if self._c is None:
            return
        for _ in range(self._PASSES):
            if lib.nxc_connector_progress(self._c) <= 0:
                break
        else:  # still busy, and the fd is not armed: come back next turn
            self._loop.call_soon(self._pump)
        # nxc_cq_poll's own pass leaves the connector armed (nxc.h)
        self._drain()

    def _drain(self):
        if self._cq is None:
            return
        while True:
            n = lib.nxc_cq_poll(self._cq, self._entries, 64)
            if n <= 0:
                return
            for i in range(n):
                ref = self._ops.get(self._entries[i].op or 0)
                op = ref() if ref is not None else None
                # Woken only if it has ended: an entry polled here while
                # another thread released its op and made a new one at the
                # same address would otherwise end the new op's waits. (nxc
                # publishes the state before the entry; the waiter then
                # reads the state kept here, no second call.)
                if op is not None and op._waiters and op._raw_status() in _TERMINAL_INTS:
                    op._on_end()

    def _forget(self, op):
        self._ops.pop(op._handle_value, None)

    # Distinct timeouts whose params are kept (an application uses a few).
    _PARAMS_KEPT = 16

    def _params(self, timeout, key=None):
        """An op's params: its queue, timeout and key. nxc reads them during
        the call only, so the params of a timeout are built once and shared
        by every op (building them per op was a tenth of begin_read's
        Python time); ops are told apart by their handle, not user_data."""
        if key is None:
            p = self._op_params.get(timeout)
            if p is not None:
                return p
        p = _lib.OpParams()
        p.field_mask = _lib.NXC_OP_FIELD_CQ
        p.cq = self._cq
        if timeout is not None:
            p.field_mask |= _lib.NXC_OP_FIELD_TIMEOUT
            p.timeout_ms = max(1, int(timeout * 1000))
        if key is not None:
            p.field_mask |= _lib.NXC_OP_FIELD_NOTIFICATION_KEY
            p.notification_key = key.encode()
        elif len(self._op_params) < self._PARAMS_KEPT:
            self._op_params[timeout] = p
        return p

    def _register(self, cls, handle, key, descs):
        op = cls(self, handle, key, descs)
        self._ops[op._handle_value] = weakref.ref(op)
        return op

    def _create(self, cls, fn, local, timeout, key, writable):
        self._running_loop()
        items, arr = _desc_list(local, writable, f"create_{cls._kind_name}")
        params = self._params(timeout, key)
        h = ctypes.c_void_p()
        check(fn(self._c, arr, len(items), ctypes.byref(params), ctypes.byref(h)),
              f"create_{cls._kind_name}")
        k = (lib.nxc_op_notification_key(h) or b"").decode()
        return self._register(cls, h, k, items)

    async def create_readable(self, local_descriptors, *, timeout=None, notification_key=None):
        """Let a peer read these buffers; hand it `op.metadata()`."""
        return self._create(ReadableOperation, lib.nxc_create_readable, local_descriptors,
                            timeout, notification_key, False)

    async def create_writable(self, local_descriptors, *, timeout=None, notification_key=None):
        """Let a peer write into these buffers; hand it `op.metadata()`."""
        return self._create(WritableOperation, lib.nxc_create_writable, local_descriptors,
                            timeout, notification_key, True)

    async def begin_read(self, remote_metadata, local_descriptors, *, timeout=None):
        """Read the peer's readable buffers into `local_descriptors` (posted now)."""
        if remote_metadata is None:
            raise TypeError("begin_read: remote_metadata is None")
        md = _metadata_bytes(remote_metadata, "begin_read")
        self._running_loop()
        items, arr = _desc_list(local_descriptors, True, "begin_read")
        params = self._params(timeout)
        h = ctypes.c_void_p()
        check(lib.nxc_begin_read(self._c, md, len(md), arr, len(items), ctypes.byref(params),
                                 ctypes.byref(h)), "begin_read")
        # an active op shows no key: no call to fetch it (a third of a µs)
        return self._register(ReadOperation, h, None, items)

    async def begin_write(self, local_descriptors, remote_metadata, *, timeout=None):
        """Write `local_descriptors` into the peer's writable buffers (posted now)."""
        if remote_metadata is None:
            raise TypeError("begin_write: remote_metadata is None")
        md = _metadata_bytes(remote_metadata, "begin_write")
        self._running_loop()
        items, arr = _desc_list(local_descriptors, False, "begin_write")
        params = self._params(timeout)
        h = ctypes.c_void_p()
        check(lib.nxc_begin_write(self._c, arr, len(items), md, len(md), ctypes.byref(params),
                                  ctypes.byref(h)), "begin_write")
        return self._register(WriteOperation, h, None, items)

    def close(self):
        """Release every op of this connector, then destroy it."""
        if self._c is None:
            return
        for ref in list(self._ops.values()):
            op = ref()
            if op is not None:
                op.release()
        self._ops.clear()
        for desc in list(self._registered):  # nxc_connector_destroy drops them
            desc._reg = None
        self._registered = weakref.WeakSet()
        self._detach()
        self._op_params.clear()  # they name the queue
        cq, c = self._cq, self._c
        self._cq = self._c = None
        lib.nxc_cq_destroy(cq)
        lib.nxc_connector_destroy(c)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
