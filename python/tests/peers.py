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


def recv(conn, timeout=WAIT):
    if not conn.poll(timeout):
        raise TimeoutError(f"no message from the peer within {timeout} s")
    return conn.recv()


async def arecv(conn, timeout=WAIT):
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
