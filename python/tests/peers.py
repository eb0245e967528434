# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the tests and the child processes they spawn.

Children are started with multiprocessing's "spawn" method (a fresh
interpreter: no inherited nxc threads), get their half of a Pipe, and run
one asyncio coroutine. Every wait is bounded; the tests kill children that
outlive them."""

import asyncio
import contextlib
import multiprocessing
import os
import signal
from typing import List, Optional

import pydantic

import nxc.nixl_connect as connect

CTX = multiprocessing.get_context("spawn")
WAIT = 20.0  # seconds: bound on every wait in the tests
# seconds: bound on waiting for a child's answer; its first answer includes
# starting an interpreter and importing torch, slow on a loaded CI machine
ANSWER = 60.0


class MyRequest(pydantic.BaseModel):
    """A caller's own request model carrying the metadata as a field."""

    request_id: str
    shape: List[int]
    dtype: str = "float32"
    serialized_request: Optional[connect.RdmaMetadata] = None


def dump_json(model):
    return model.model_dump_json() if hasattr(model, "model_dump_json") else model.json()


def parse_json(cls, text):
    return cls.model_validate_json(text) if hasattr(cls, "model_validate_json") else cls.parse_raw(text)


def recv(conn, timeout=ANSWER):
    if not conn.poll(timeout):
        raise TimeoutError(f"no message from the peer within {timeout} s")
    return conn.recv()


async def arecv(conn, timeout=ANSWER):
    """Receive without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, recv, conn, timeout)


@contextlib.contextmanager
def peer(target, *args):
    """Start target(conn, *args) in a child; always kill it at the end."""
    here, there = CTX.Pipe()
    p = CTX.Process(target=target, args=(there, *args), daemon=True)
    p.start()
    there.close()
    try:
        yield here, p
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        here.close()


def _outcome(coro_fn, conn, *args):
    try:
        result = asyncio.run(coro_fn(conn, *args))
        conn.send(("ok", result))
    except BaseException as e:  # report everything to the parent
        conn.send(("error", type(e).__name__, getattr(e, "status", None), str(e)))


# ---------------------------------------------------------------- child roles


async def _reader(conn):
    """Receive a MyRequest, read the tensor it names into our own, report."""
    import torch

    text = recv(conn)
    req = parse_json(MyRequest, text)
    dst = torch.zeros(req.shape, dtype=getattr(torch, req.dtype))
    c = connect.Connector()
    op = await c.begin_read(req.serialized_request, connect.Descriptor(dst))
    with op:
        await op.wait_for_completion(timeout=WAIT)
        transport = op.transport
        status = str(op.status)
    return (status, transport, dst.numpy().tobytes())


def reader(conn):
    _outcome(_reader, conn)


async def _writer(conn):
    """Receive a writable's metadata (as a pydantic dict), write a pattern."""
    data = recv(conn)
    md = connect.RdmaMetadata.model_validate(data["md"])
    payload = bytes((i * 7 + 3) % 251 for i in range(data["size"]))  # read-only bytes: fine to write from
    c = connect.Connector()
    op = await c.begin_write(connect.Descriptor(payload), md)
    with op:
        await op.wait_for_completion(timeout=WAIT)
        return (str(op.status), op.transport, payload)


def writer(conn):
    _outcome(_writer, conn)


async def _reads_in_turn(conn):
    """Read each metadata text as it comes, say "read" after each; None ends."""
    c = connect.Connector()
    dst = bytearray(4096)
    n = 0
    while (text := recv(conn)) is not None:
        with await c.begin_read(text, connect.Descriptor(dst)) as op:
            await op.wait_for_completion(timeout=WAIT)
        conn.send(("read", bytes(dst[:8])))
        n += 1
    c.close()
    return n


def reads_in_turn(conn):
    _outcome(_reads_in_turn, conn)


async def _owner_then_die(conn):
    """Create a readable, send its metadata, then wait to be killed."""
    buf = bytearray(b"x" * 65536)
    c = connect.Connector()
    r = await c.create_readable(connect.Descriptor(buf))
    conn.send(r.metadata().model_dump_json())
    await asyncio.sleep(60)


def owner_then_die(conn):
    _outcome(_owner_then_die, conn)


async def _slow_reader(conn):
    """Start reading a large readable, tell the parent, then wait to be killed."""
    text = recv(conn)
    dst = bytearray(len_ := 256 << 20)
    c = connect.Connector()
    op = await c.begin_read(text, connect.Descriptor(dst))
    conn.send(("started", len_))
    await asyncio.sleep(60)


def slow_reader(conn):
    _outcome(_slow_reader, conn)


async def _owner_with_deadline(conn):
    """A 256 MiB readable with a 3 s deadline; report how it ended and when."""
    import time

    src = bytearray(256 << 20)
    c = connect.Connector()
    t0 = time.monotonic()
    with await c.create_readable(connect.Descriptor(src), timeout=3) as r:
        conn.send(r.metadata().model_dump_json())
        try:
            await r.wait_for_completion(timeout=WAIT)
            err = None
        except connect.NxcError as e:
            err = e.status_name
        return (str(r.status), err, time.monotonic() - t0)


def owner_with_deadline(conn):
    _outcome(_owner_with_deadline, conn)


# ---------------------------------------------------------------- a served owner
#
# One child that owns memory on the parent's command, so that a test can
# drive several steps against one peer: ("readable" | "writable", size[,
# timeout]) makes a passive op over a fresh buffer (a readable's holds
# pattern(size)) and answers its metadata text; ("wait", seconds) waits for
# it and answers (status, error name, pattern verified); ("release",)
# leaves its `with` early; ("prepare", size) makes the buffers of the next
# ("peer_read" | "peer_write", text) ahead, which reads or writes
# pattern(size) against the parent's metadata text and answers (status,
# error name, pattern verified; status "n/a" when begin raised); ("readables", n, size) makes n readables over one
# buffer and answers their texts, ("wait_all", seconds) waits for them all,
# releases them and answers how many completed; ("stats",) answers (open
# fds, RSS bytes); ("exit",) ends.


def pattern(size):
    """size bytes of a position-dependent pattern (a torch uint8 tensor)."""
    import torch

    n = (size + 3) // 4
    return torch.arange(n, dtype=torch.int32).mul_(2654435761 & 0x7FFFFFFF).view(torch.uint8)[:size]


def fds():
    return len(os.listdir("/proc/self/fd"))


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _served(conn):
    import torch

    torch.set_num_threads(1)  # no OpenMP workers spinning beside the transfer
    c = connect.Connector()
    op = buf = expect = ready = None
    many = []
    while True:
        cmd = await arecv(conn, 120)
        what = cmd[0]
        if what in ("readable", "writable"):
            size = cmd[1]
            timeout = cmd[2] if len(cmd) > 2 else None
            if what == "readable":
                buf = expect = pattern(size).clone()
                op = await c.create_readable(connect.Descriptor(buf), timeout=timeout)
            else:
                buf, expect = torch.zeros(size, dtype=torch.uint8), pattern(size)
                op = await c.create_writable(connect.Descriptor(buf), timeout=timeout)
            conn.send(op.metadata().model_dump_json())
        elif what == "wait":
            err = None
            try:
                await op.wait_for_completion(timeout=cmd[1])
            except connect.NxcError as e:
                err = e.status_name
            except asyncio.TimeoutError:
                err = "wait timed out"
            conn.send((str(op.status), err, bool(torch.equal(buf, expect))))
        elif what == "prepare":
            size = cmd[1]
            expect = pattern(size)
            ready = torch.zeros(size, dtype=torch.uint8), expect.clone()
            conn.send("prepared")
        elif what in ("peer_read", "peer_write"):
            md = connect.RdmaMetadata.model_validate_json(cmd[1])
            size = sum(d.size for d in md.descriptors)
            if ready is None or ready[0].numel() != size:
                expect = pattern(size)
                ready = torch.zeros(size, dtype=torch.uint8), expect.clone()
            buf = ready[0] if what == "peer_read" else ready[1]
            ready = None
            try:
                if what == "peer_read":
                    active = await c.begin_read(md, connect.Descriptor(buf), timeout=60)
                else:
                    active = await c.begin_write(connect.Descriptor(buf), md, timeout=60)
            except connect.NxcError as e:  # refused at begin
                conn.send(("n/a", e.status_name, False))
                continue
            err = None
            with active:
                try:
                    await active.wait_for_completion(timeout=60)
                except connect.NxcError as e:
                    err = e.status_name
            conn.send((str(active.status), err, bool(torch.equal(buf, expect))))
        elif what == "release":
            op.release()
            conn.send(str(op.status))
        elif what == "readables":
            n, size = cmd[1], cmd[2]
            buf = pattern(size).clone()
            d = connect.Descriptor(buf)
            many = [await c.create_readable(d) for _ in range(n)]
            conn.send([r.metadata().model_dump_json() for r in many])
        elif what == "wait_all":
            done = 0
            for r in many:
                with r:
                    try:
                        await r.wait_for_completion(timeout=cmd[1])
                    except (connect.NxcError, asyncio.TimeoutError):
                        pass
                    done += r.status == connect.OperationStatus.COMPLETE
            many = []
            conn.send(done)
        elif what == "stats":
            import gc

            gc.collect()
            conn.send((fds(), rss()))
        elif what == "exit":
            if op is not None:
                op.release()
            c.close()
            return "bye"


def served(conn):
    _outcome(_served, conn)
