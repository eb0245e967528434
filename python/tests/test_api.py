# SPDX-License-Identifier: Apache-2.0
"""One-process tests of the binding: types, errors, lifetimes, the event loop."""

import asyncio
import gc
import json
import time
import weakref

import numpy as np
import pytest
import torch

import nxc
import nxc.nixl_connect as connect
from peers import MyRequest, dump_json, parse_json


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(params=[True, False], ids=["thread", "loop"])
def connector(request):
    """A connector with its progress thread, and one driven by the loop."""
    c = connect.Connector(progress_thread=request.param)
    yield c
    c.close()


# ---------------------------------------------------------------- names and types


def test_reexported_from_nxc():
    assert nxc.Connector is connect.Connector
    assert nxc.RdmaMetadata is connect.RdmaMetadata
    assert nxc.__version__


def test_enums_numbers_and_str():
    assert [int(k) for k in connect.DeviceKind] == [0, 1, 2]
    assert [str(k) for k in connect.DeviceKind] == ["<invalid>", "cpu", "cuda"]
    assert [str(k) for k in connect.OperationKind] == ["<invalid>", "READ", "WRITE"]
    assert [int(s) for s in connect.OperationStatus] == [0, 1, 2, 3, 4, 5]
    assert [str(s) for s in connect.OperationStatus] == ["<invalid>", "INIT", "PROC", "DONE", "STOP", "ERR"]
    assert f"{connect.OperationStatus.COMPLETE}" == "DONE"


def test_device():
    assert str(connect.Device("gpu:1")) == "cuda:1"
    assert str(connect.Device(" CPU ")) == "cpu"
    d = connect.Device((connect.DeviceKind.CUDA, 3))
    assert (d.kind, d.id) == (connect.DeviceKind.CUDA, 3)
    with pytest.raises(ValueError):
        connect.Device(None)
    with pytest.raises(ValueError):
        connect.Device("tpu")
    with pytest.raises(TypeError):
        connect.Device(3)


def test_descriptor_forms():
    t = torch.arange(10, dtype=torch.int64)
    d = connect.Descriptor(t)
    assert (d.ptr, d.size, str(d.device)) == (t.data_ptr(), 80, "cpu")
    a = np.ones(7, dtype=np.float32)
    d = connect.Descriptor((a, "cpu"))
    assert (d.ptr, d.size) == (a.__array_interface__["data"][0], 28)
    b = bytearray(b"hello")
    assert connect.Descriptor(b).size == 5
    assert connect.Descriptor(memoryview(b)[1:]).size == 4
    assert connect.Descriptor(b"abc").size == 3
    d = connect.Descriptor((12345, 10, "cuda:1", None))
    assert (d.ptr, d.size, str(d.device)) == (12345, 10, "cuda:1")
    sd = d.metadata
    assert connect.Descriptor.from_serialized(sd).ptr == 12345
    with pytest.raises(ValueError):
        connect.Descriptor(None)
    with pytest.raises(TypeError):
        connect.Descriptor(1.5)


def test_descriptor_keeps_bytearray_pinned():
    b = bytearray(100)
    d = connect.Descriptor(b)
    with pytest.raises(BufferError):
        b.extend(b"x")  # the export blocks a resize that would move the memory
    del d
    gc.collect()
    b.extend(b"x")


def test_non_contiguous_refused():
    t = torch.arange(100, dtype=torch.float32).reshape(10, 10).t()
    with pytest.raises(ValueError, match="contiguous"):
        connect.Descriptor(t)
    with pytest.raises(ValueError, match="contiguous"):
        connect.Descriptor((np.arange(100).reshape(10, 10).T, "cpu"))
    with pytest.raises(ValueError, match="contiguous"):
        connect.Descriptor(memoryview(bytearray(100))[::2])


def test_cuda_not_supported(connector):
    async def main():
        d = connect.Descriptor((0x10000, 4096, "cuda:0"))
        with pytest.raises(NotImplementedError) as info:
            await connector.create_readable(d)
        assert isinstance(info.value, connect.NotSupportedError)
        assert info.value.status_name == "NXC_ERR_NOT_SUPPORTED"

    run(main())


def test_readonly_memory_cannot_receive(connector):
    async def main():
        ro = connect.Descriptor(b"read only")
        with pytest.raises(ValueError, match="read-only"):
            await connector.create_writable(ro)
        r = await connector.create_readable(connect.Descriptor(bytearray(9)))
        with r, pytest.raises(ValueError, match="read-only"):
            await connector.begin_read(r.metadata(), ro)

    run(main())


# ---------------------------------------------------------------- metadata


def test_metadata_json_is_nxc_text(connector):
    async def main():
        src = bytearray(range(256)) * 16
        with await connector.create_readable(connect.Descriptor(src)) as r:
            md = r.metadata()
            assert md is r.metadata()  # cached, passive
            assert isinstance(md, connect.RdmaMetadata)
            assert md.operation_kind == 1 and md.descriptors[0].size == len(src)
            text = md.model_dump_json()
            assert json.loads(text) == md.model_dump()
            assert connect.RdmaMetadata.model_validate_json(text) == md
            assert connect.RdmaMetadata.model_validate(md.model_dump()) == md
            # carried as a field of the caller's own pydantic model, and back
            req = MyRequest(request_id="x", shape=[4096], serialized_request=md)
            back = parse_json(MyRequest, dump_json(req))
            assert back.serialized_request == md
            assert back.serialized_request.model_dump_json() == text
            dst = bytearray(len(src))
            op = await connector.begin_read(back.serialized_request, connect.Descriptor(dst))
            with op:
                await op.wait_for_completion(timeout=10)
            assert dst == src and isinstance(op.results(), list)

    run(main())


def test_metadata_text_identical_to_c(connector):
    from nxc._lib import lib
    import ctypes

    async def main():
        with await connector.create_writable(connect.Descriptor(bytearray(64))) as w:
            text = ctypes.c_char_p()
            lib.nxc_op_metadata(w._op, ctypes.byref(text), None)
            assert w.metadata().model_dump_json() == text.value.decode()
            # metadata() keeps nxc's own text; a model validated anew encodes it again
            fresh = connect.RdmaMetadata.model_validate(w.metadata().model_dump())
            assert fresh == w.metadata() and fresh.model_dump_json() == text.value.decode()

    run(main())


def test_bad_metadata_raises(connector):
    async def main():
        dst = connect.Descriptor(bytearray(64))
        with pytest.raises(connect.MetadataError) as info:
            await connector.begin_read("{not json", dst)
        assert info.value.status == -20 and "NXC_ERR_METADATA_MALFORMED" in str(info.value)
        with await connector.create_readable(connect.Descriptor(bytearray(64))) as r:
            d = r.metadata().model_dump()
            d["nixl_metadata"] = "b64:AAAA" + d["nixl_metadata"][8:]
            with pytest.raises(connect.MetadataError):
                await connector.begin_read(connect.RdmaMetadata.model_validate(d), dst)
            # wrong pairing: WRITE on readable metadata
            with pytest.raises(RuntimeError) as info:
                await connector.begin_write(dst, r.metadata())
            assert info.value.status_name == "NXC_ERR_WRONG_OPERATION"
        with pytest.raises(TypeError):
            await connector.begin_read(None, dst)
        with pytest.raises(TypeError):
            await connector.begin_read(12, dst)

    run(main())


def test_size_mismatch(connector):
    async def main():
        with await connector.create_readable(connect.Descriptor(bytearray(100))) as r:
            with pytest.raises(connect.NxcError) as info:
                await connector.begin_read(r.metadata(), connect.Descriptor(bytearray(99)))
            assert info.value.status_name == "NXC_ERR_SIZE_MISMATCH"
            assert r.status == connect.OperationStatus.INITIALIZED

    run(main())


# ---------------------------------------------------------------- lifetimes


def test_released_op(connector):
    async def main():
        src = bytearray(b"s" * 4096)
        with await connector.create_readable(connect.Descriptor(src)) as r:
            md = r.metadata().model_dump_json()
        assert r.status == connect.OperationStatus.CANCELLED
        await r.wait_for_completion(timeout=1)  # ended: returns at once
        with pytest.raises(connect.NxcError, match="released"):
            r.metadata()
        # metadata handed out before the release is refused from then on
        with pytest.raises(connect.NxcError) as info:
            op = await connector.begin_read(md, connect.Descriptor(bytearray(4096)))
            with op:
                await op.wait_for_completion(timeout=10)
        assert info.value.status_name in ("NXC_ERR_REFUSED", "NXC_ERR_UNREACHABLE")

    run(main())


def test_wait_timeout_then_cancel(connector):
    async def main():
        r = await connector.create_readable(connect.Descriptor(bytearray(16)))
        with pytest.raises(asyncio.TimeoutError):
            await r.wait_for_completion(timeout=0.05)
        assert r.status == connect.OperationStatus.INITIALIZED  # goes on
        waiter = asyncio.ensure_future(r.wait_for_completion(timeout=10))
        await asyncio.sleep(0.01)
        r.cancel()
        await waiter  # CANCELLED returns, as in the reference
        assert r.status == connect.OperationStatus.CANCELLED
        r.cancel()  # terminal: nothing changes
        assert r.status == connect.OperationStatus.CANCELLED
        r.release()

    run(main())


def test_cancel_after_complete_changes_nothing(connector):
    async def main():
        src, dst = bytearray(b"a" * 1000), bytearray(1000)
        with await connector.create_readable(connect.Descriptor(src)) as r:
            op = await connector.begin_read(r.metadata(), connect.Descriptor(dst))
            await op.wait_for_completion(timeout=10)
            op.cancel()
            assert op.status == connect.OperationStatus.COMPLETE
            op.release()
            assert op.status == connect.OperationStatus.COMPLETE

    run(main())


def test_passive_deadline_errors(connector):
    async def main():
        r = await connector.create_readable(connect.Descriptor(bytearray(16)), timeout=0.1)
        with r, pytest.raises(connect.NxcTimeoutError) as info:
            await r.wait_for_completion(timeout=10)
        assert isinstance(info.value, RuntimeError) and info.value.status == -43
        assert r.status == connect.OperationStatus.ERRORED
        # released, it still says why it failed (the message kept at release)
        with pytest.raises(connect.NxcTimeoutError) as again:
            await r.wait_for_completion(timeout=1)
        assert again.value.message and again.value.message == info.value.message

    run(main())


def test_ops_of_other_timeouts_and_keys_keep_theirs(connector):
    """Ops share one params struct per timeout: interleaved ops with and
    without a deadline, and with keys of their own, each keep theirs, and
    each deadline wakes the right waiter."""

    async def main():
        d = connect.Descriptor(bytearray(16))
        ops = []
        for i in range(6):
            ops.append(await connector.create_readable(d, timeout=0.1 if i % 2 else None))
        keyed = [await connector.create_readable(d, timeout=0.1, notification_key=f"k-{i}")
                 for i in range(2)]
        assert [k.notification_key for k in keyed] == ["k-0", "k-1"]
        for op in ops[1::2] + keyed:
            with pytest.raises(connect.NxcTimeoutError):
                await op.wait_for_completion(timeout=10)
        await asyncio.sleep(0.2)
        assert [op.status for op in ops] == [connect.OperationStatus.INITIALIZED,
                                             connect.OperationStatus.ERRORED] * 3
        for op in ops + keyed:
            op.release()

    run(main())


def test_stale_entry_does_not_end_another_op(connector):
    """A completion entry that names an op's handle after another op took it
    (one thread released the first and made the second at its address
    while the loop's thread drained) must not end the second op's wait:
    simulated by pointing the first op's handle at the second before the
    connector drains the first op's entry."""

    async def main():
        peer = connect.Connector()
        r1 = await connector.create_readable(connect.Descriptor(bytearray(b"1" * 4096)))
        r2 = await connector.create_readable(connect.Descriptor(bytearray(b"2" * 4096)))
        waiter = asyncio.ensure_future(r2.wait_for_completion(timeout=10))
        await asyncio.sleep(0.01)
        read = await peer.begin_read(r1.metadata(), connect.Descriptor(bytearray(4096)))
        # without yielding to the loop, which would drain the entry itself
        deadline = time.monotonic() + 10
        while r1.status != connect.OperationStatus.COMPLETE and time.monotonic() < deadline:
            time.sleep(0.001)
        assert r1.status == connect.OperationStatus.COMPLETE
        time.sleep(0.01)  # the entry is pushed just after the state
        connector._ops[r1._handle_value] = weakref.ref(r2)
        connector._drain()
        await asyncio.sleep(0.05)
        assert not waiter.done()
        assert r2.status == connect.OperationStatus.INITIALIZED
        connector._ops[r1._handle_value] = weakref.ref(r1)
        r2.release()
        assert await asyncio.wait_for(waiter, 5) is None  # CANCELLED
        for op in (read, r1):
            op.release()
        peer.close()

    run(main())


def test_release_while_waiting_wakes_waiter(connector):
    async def main():
        r = await connector.create_readable(connect.Descriptor(bytearray(16)))
        waiter = asyncio.ensure_future(r.wait_for_completion(timeout=10))
        await asyncio.sleep(0.01)
        r.release()
        await asyncio.wait_for(waiter, 5)
        assert r.status == connect.OperationStatus.CANCELLED

    run(main())


def test_many_concurrent_ops_one_fd(connector):
    """Hundreds of ops awaited at once through the one completion-queue fd,
    while another task keeps running on the loop."""

    async def main():
        n = 300
        srcs = [bytearray([i % 256]) * 512 for i in range(n)]
        dsts = [bytearray(512) for _ in range(n)]
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        readables = [await connector.create_readable(connect.Descriptor(s)) for s in srcs]
        reads = [await connector.begin_read(r.metadata(), connect.Descriptor(d))
                 for r, d in zip(readables, dsts)]
        await asyncio.wait_for(asyncio.gather(*(o.wait_for_completion() for o in reads + readables)), 30)
        t.cancel()
        assert ticks > 0
        assert all(s == d for s, d in zip(srcs, dsts))
        for o in reads + readables:
            o.release()

    run(main())


def test_connector_name_and_initialize():
    c = connect.Connector("worker-1")
    try:
        assert c.name == "worker-1" and str(c) == "worker-1" and c.hostname
        run(c.initialize())
    finally:
        c.close()
    with pytest.raises(TypeError):
        connect.Connector("")
    with pytest.raises(connect.NxcError):
        connect.Connector("has space")
    with pytest.raises(TypeError):
        connect.Connector(progress_thread=0)


def test_op_keeps_memory_alive(connector):
    """The op keeps the objects it points into alive: nothing else holds the
    source tensor while the peer reads it."""

    async def main():
        r = await connector.create_readable(connect.Descriptor(torch.full((4096,), 7, dtype=torch.int32)))
        gc.collect()
        junk = [torch.zeros(4096, dtype=torch.int32) for _ in range(50)]  # reuse freed memory, if any
        dst = torch.zeros(4096, dtype=torch.int32)
        with r:
            op = await connector.begin_read(r.metadata(), connect.Descriptor(dst))
            with op:
                await op.wait_for_completion(timeout=10)
        assert torch.all(dst == 7) and len(junk) == 50

    run(main())


def _fds():
    import os

    return len(os.listdir("/proc/self/fd"))


def test_many_ops_no_fd_growth(connector):
    async def main():
        src, dst = bytearray(b"q" * 4096), bytearray(4096)

        async def one():
            with await connector.create_readable(connect.Descriptor(src)) as r:
                op = await connector.begin_read(r.metadata(), connect.Descriptor(dst))
                with op:
                    await op.wait_for_completion(timeout=10)
                await r.wait_for_completion(timeout=10)

        for _ in range(50):  # warm up connections and caches
            await one()
        before = _fds()
        for _ in range(1000):
            await one()
        assert _fds() <= before + 2
        assert len(connector._ops) == 0

    run(main())


def test_loop_stays_live_during_large_transfer(connector):
    async def main():
        size = 64 << 20
        src = torch.ones(size // 4, dtype=torch.float32)
        dst = torch.zeros(size // 4, dtype=torch.float32)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        with await connector.create_readable(connect.Descriptor(src)) as r:
            op = await connector.begin_read(r.metadata(), connect.Descriptor(dst))
            with op:
                await op.wait_for_completion(timeout=60)
        t.cancel()
        assert torch.equal(src, dst)
        assert ticks >= 1  # the loop ran other tasks while the bytes moved

    run(main())


def test_descriptor_lists_scatter_gather(connector):
    async def main():
        a = torch.arange(1000, dtype=torch.int32)
        b = torch.arange(1000, 3000, dtype=torch.int32)
        dst = torch.zeros(3000, dtype=torch.int32)
        with await connector.create_readable([connect.Descriptor(a), connect.Descriptor(b)]) as r:
            assert len(r.metadata().descriptors) == 2
            op = await connector.begin_read(r.metadata(), connect.Descriptor(dst))
            with op:
                await op.wait_for_completion(timeout=10)
        assert torch.equal(dst, torch.arange(3000, dtype=torch.int32))
        with pytest.raises(TypeError):
            await connector.create_readable([a])

    run(main())


def test_without_pydantic():
    """Plain classes with the same methods when pydantic is not importable."""
    import os
    import subprocess
    import sys

    code = r"""
import sys, asyncio
sys.modules["pydantic"] = None
import nxc.nixl_connect as connect
from nxc import _models
assert not _models.HAVE_PYDANTIC
async def main():
    c = connect.Connector()
    src, dst = bytearray(b"p" * 100), bytearray(100)
    with await c.create_readable(connect.Descriptor(src)) as r:
        md = r.metadata()
        text = md.model_dump_json()
        back = connect.RdmaMetadata.model_validate_json(text)
        assert back == md and back.model_dump_json() == text
        assert connect.RdmaMetadata.model_validate(md.model_dump()) == md
        op = await c.begin_read(back, connect.Descriptor(dst))
        with op:
            await op.wait_for_completion(timeout=10)
    assert dst == src
    c.close()
asyncio.run(main())
print("ok")
"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------- explicit registration


async def _read_slices(owner, reader, src, dst, n):
    """Read the first n 1024-element slices of src (owner's) into dst's."""
    for i in range(n):
        s = connect.Descriptor(src[i * 1024:(i + 1) * 1024])
        d = connect.Descriptor(dst[i * 1024:(i + 1) * 1024])
        with await owner.create_readable(s) as readable:
            with await reader.begin_read(readable.metadata(), d) as read:
                await read.wait_for_completion(timeout=30)
            await readable.wait_for_completion(timeout=30)


@pytest.mark.parametrize("transports", ["shm", "tcp", "ucx"])
def test_register_with_connector(transports):
    """A registered pool serves many ops; the reference's rules for
    registering twice, with another connector, and deregistering."""
    owner = connect.Connector(transports=transports)
    reader = connect.Connector(transports=transports)
    other = connect.Connector(transports=transports)
    try:
        src = torch.arange(1 << 18, dtype=torch.int32)  # 1 MiB
        dst = torch.zeros_like(src)
        pool_src, pool_dst = connect.Descriptor(src), connect.Descriptor(dst)
        assert not pool_src.is_registered
        pool_src.register_with_connector(owner)
        pool_src.register_with_connector(owner)  # same connector: no-op
        pool_dst.register_with_connector(reader)
        assert pool_src.is_registered and pool_dst.is_registered
        with pytest.raises(RuntimeError):
            pool_src.register_with_connector(other)
        with pytest.raises(RuntimeError):
            pool_src.deregister_with_connector(other)
        with pytest.raises(TypeError):
            pool_src.register_with_connector("owner")
        with pytest.raises(ValueError):
            connect.Descriptor((0, 16)).register_with_connector(owner)

        run(_read_slices(owner, reader, src, dst, 8))  # slices of the registered pools
        assert torch.equal(dst[:8 * 1024], src[:8 * 1024])
        pool_src.deregister_with_connector(owner)
        assert not pool_src.is_registered
        with pytest.raises(RuntimeError):  # not registered any more
            pool_src.deregister_with_connector(owner)
        reader.close()  # drops pool_dst's registration with it
        assert not pool_dst.is_registered
        del pool_dst
        gc.collect()
    finally:
        for c in (owner, reader, other):
            c.close()


# ---------------------------------------------------------------- memory nxc allocates


def _pool_mappings():
    with open("/proc/self/maps") as f:
        return sum("memfd:nxc-mem" in line for line in f)


def test_alloc_refuses_bad_sizes(connector):
    for bad in (0, -1, True, 1.5, "8"):
        with pytest.raises(ValueError):
            connector.alloc_buffer(bad)
    for bad in (0, (4, 0), (-1,)):
        with pytest.raises(ValueError):
            connector.alloc_tensor(bad)
    closed = connect.Connector()
    closed.close()
    with pytest.raises(RuntimeError):
        closed.alloc_buffer(4096)


def test_alloc_lifetime():
    """Zeroed, page-aligned memory that outlives its connector and is
    unmapped with the last view and tensor over it."""
    c = connect.Connector()
    before = _pool_mappings()
    buf = c.alloc_buffer(5000)
    t = c.alloc_tensor((3, 256), torch.float32)
    assert len(buf) == 5000 and bytes(buf) == bytes(5000)
    assert t.shape == (3, 256) and t.dtype == torch.float32 and not t.any()
    assert t.data_ptr() % 4096 == 0
    assert _pool_mappings() == before + 2
    view = t[1]
    c.close()
    buf[4999] = 9  # still mapped after the close
    view += 1.5
    assert buf[4999] == 9 and float(t.sum()) == 1.5 * 256
    del buf
    gc.collect()
    assert _pool_mappings() == before + 1
    del t
    gc.collect()
    assert _pool_mappings() == before + 1  # `view` keeps the memory
    del view
    gc.collect()
    assert _pool_mappings() == before


@pytest.mark.parametrize("transports", ["shm", "tcp", "ucx"])
def test_alloc_read_write(transports):
    """Ops over allocated tensors, as owner and as peer, on each transport."""
    try:
        owner = connect.Connector(transports=transports)
        peer = connect.Connector(transports=transports)
    except connect.NotSupportedError as e:
        pytest.skip(f"{transports} cannot start here: {e}")
    try:
        src = owner.alloc_tensor(8192, torch.int32)
        src.copy_(torch.arange(8192, dtype=torch.int32))
        dst = peer.alloc_tensor(8192, torch.int32)

        async def main():
            await _read_slices(owner, peer, src, dst, 4)  # 4 KiB slices: shm's direct path
            back = torch.full((1024,), -7, dtype=torch.int32)
            w = connect.Descriptor(src[4096:5120])
            with await owner.create_writable(w) as writable:
                with await peer.begin_write(connect.Descriptor(back), writable.metadata()) as write:
                    await write.wait_for_completion(timeout=30)
                await writable.wait_for_completion(timeout=30)

        run(main())
        assert torch.equal(dst[:4096], torch.arange(4096, dtype=torch.int32))
        assert bool((src[4096:5120] == -7).all())
    finally:
        owner.close()
        peer.close()


def test_metadata_text_formatting_matches_the_encoder():
    """metadata_text() formats plain fields itself; its text must be the JSON
    encoder's, byte for byte, and anything else must go to the encoder."""
    import enum
    from types import SimpleNamespace as NS

    from nxc import _models

    class Kind(enum.IntEnum):
        READ = 1

    def md(descs, nm="abc", key="k", kind=1):
        return NS(descriptors=[NS(device=d, ptr=p, size=s) for d, p, s in descs],
                  nixl_metadata=nm, notification_key=key, operation_kind=kind)

    strings = ["", "cpu", "cuda:1", "a b", 'q"uote', "back\\slash", "tab\t", "nl\n", "\x7f", "\x1f",
               "é", "名", "\U0001f600", "~!@#$%^&*()_+{}|:<>?`-=[];',./", "x" * 700]
    ints = [0, 1, -1, 2**63 - 1, 2**64, -(2**70), True, False, Kind.READ]
    cases = [md([]), md([("cpu", 1, 2)] * 3)]
    cases += [md([(s, 4096, 8)]) for s in strings]
    cases += [md([("cpu", 1, 2)], nm=s) for s in strings]
    cases += [md([("cpu", 1, 2)], key=s) for s in strings]
    cases += [md([("cpu", i, 2)]) for i in ints] + [md([("cpu", 1, i)]) for i in ints]
    cases += [md([("cpu", 1, 2)], kind=i) for i in ints]
    formatted = 0
    for m in cases:
        want = _models._compact(_models._md_dict(m))
        assert _models.metadata_text(m) == want
        formatted += _models._plain_text(m) is not None
    # the formatting path is really taken, and really refused where it must be
    assert 20 < formatted < len(cases) - 20
    assert _models._plain_text(md([("cpu", True, 2)])) is None
    assert _models._plain_text(md([("cpu", 1, 2)], nm='q"')) is None


@pytest.mark.parametrize("threaded", [True, False], ids=["thread", "loop"])
def test_connector_follows_the_running_loop(monkeypatch, threaded):
    """One connector used from successive loops and from a loop in another
    thread: each wait is woken through the loop it runs in (tcp, so that no
    read ends inside begin_read), and within one loop the connector asks
    asyncio for the running loop only once (its getpid() is the cost)."""
    import threading

    owner = connect.Connector(transports="tcp", progress_thread=threaded)
    reader = connect.Connector(transports="tcp", progress_thread=threaded)
    asks = []
    real = asyncio.get_running_loop

    def counted():
        asks.append(1)
        return real()

    monkeypatch.setattr(connect.asyncio, "get_running_loop", counted)

    async def reads(n):
        for i in range(n):
            src, dst = bytearray(bytes([i + 1]) * 4096), bytearray(4096)
            with await owner.create_readable(connect.Descriptor(src)) as r:
                with await reader.begin_read(r.metadata(), connect.Descriptor(dst)) as op:
                    await op.wait_for_completion(timeout=10)
                    await r.wait_for_completion(timeout=10)
            assert dst == src

    try:
        for _ in range(2):  # a new loop each time
            del asks[:]
            run(reads(4))
            assert len(asks) <= 2  # one per connector, on the first call in this loop
        done = []
        t = threading.Thread(target=lambda: done.append(run(reads(2)) is None))
        t.start()
        t.join(30)
        assert done == [True]
        run(reads(2))  # and back on this thread
    finally:
        reader.close()
        owner.close()


# ---------------------------------------------------------------- garbage collection


def test_cycle_with_connector_collected():
    """A connector and its ops in one reference cycle: the garbage collector
    clears the connector's weak list of ops before it runs any finalizer,
    and may destroy the connector (and, with it, every op in nxc) before an
    op's finalizer runs. That op must then know its handle is gone, not use
    it (it used to lock a freed mutex: glibc aborted the process, or memory
    was silently corrupted). Run in a child, with freed memory scribbled
    over (MALLOC_PERTURB_), so that a use after free shows and an abort
    fails only this test."""
    import os
    import subprocess
    import sys

    code = r"""
import asyncio, gc, weakref
import nxc.nixl_connect as connect
async def cycle():
    c = connect.Connector(transports="shm")
    peer = connect.Connector(transports="shm")
    src, dst = bytearray(b"g" * 4096), bytearray(4096)
    readable = await c.create_readable(connect.Descriptor(src))
    writable = await c.create_writable(connect.Descriptor(dst))
    read = await peer.begin_read(readable.metadata(), connect.Descriptor(bytearray(4096)))
    await read.wait_for_completion(timeout=10)
    # made before the ops, the connectors come first in the collector's
    # list: their finalizers run first
    c.keep = [readable, writable]
    peer.keep = [read]
    return [weakref.ref(c), weakref.ref(peer)]
for _ in range(20):
    gc.disable()
    gone = asyncio.run(cycle())  # the closed loop lets go of the connectors' fds
    gc.enable()
    gc.collect()
    assert not any(w() for w in gone)
print("ok")
"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["MALLOC_PERTURB_"] = "165"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


def test_released_with_connector():
    """An op whose connector was destroyed without releasing it (as the
    garbage collector can) reads as released: its last status, no transport,
    no metadata, and no call into nxc with its freed handle."""
    async def main():
        c = connect.Connector(transports="shm")
        peer = connect.Connector(transports="shm")
        src = bytearray(b"r" * 4096)
        readable = await c.create_readable(connect.Descriptor(src))
        writable = await c.create_writable(connect.Descriptor(bytearray(4096)))
        read = await peer.begin_read(readable.metadata(), connect.Descriptor(bytearray(4096)))
        await read.wait_for_completion(timeout=10)
        gone = await c.create_readable(connect.Descriptor(bytearray(64)))
        stale = gone.metadata()
        gone.release()
        refused = await peer.begin_read(stale, connect.Descriptor(bytearray(64)))
        with pytest.raises(connect.NxcError):
            await refused.wait_for_completion(timeout=10)
        # what a collection that finalizes the connectors first leaves: their
        # weak lists of ops emptied, then close()
        for conn in (c, peer):
            conn._ops.clear()
            conn.close()
        assert read.status == connect.OperationStatus.COMPLETE
        assert writable.status == connect.OperationStatus.CANCELLED
        for op in (readable, writable, read):
            assert op.transport is None
            op.cancel()
            op.release()
        with pytest.raises(connect.NxcError):
            writable.metadata()
        waiting = asyncio.ensure_future(writable.wait_for_completion(timeout=10))
        assert await waiting is None  # CANCELLED: returns
        assert refused.status == connect.OperationStatus.ERRORED
        with pytest.raises(connect.NxcError) as e:  # still its own error
            await refused.wait_for_completion(timeout=10)
        assert e.value.status_name == "NXC_ERR_REFUSED", e.value

    run(main())
