#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The multimodal embeddings hand-off in Python, with nxc.nixl_connect.

Two processes: a prefill worker sends encode requests; an encode worker
computes image embeddings (a CPU torch tensor) and hands them over without
sending them through the request channel. Only a pydantic request model,
carrying the nxc metadata as an RdmaMetadata field, travels as JSON.

  read  pattern: the encoder publishes a readable; the prefill worker reads.
  write pattern: the prefill worker offers a writable; the encoder writes.

Every byte is checked against the embeddings recomputed from the request's
seed. Run from a checkout built with scripts/build.sh release:

  PYTHONPATH=python /usr/bin/python3 examples/python/multimodal.py \
      [--pattern read|write] [--requests 8] [--transport shm|tcp|ucx]
"""

import argparse
import asyncio
import multiprocessing
import os
import sys
from typing import Optional

import pydantic
import torch

import nxc.nixl_connect as connect

TOKENS, HIDDEN = 576, 4096  # LLaVA-like: 576 tokens x 4096 fp16 = 4.5 MiB per image
TIMEOUT = 30.0


class EncodeRequest(pydantic.BaseModel):
    request_id: int
    image_seed: int
    pattern: str
    serialized_request: Optional[connect.RdmaMetadata] = None  # nxc metadata rides here


def to_json(model):
    return model.model_dump_json() if hasattr(model, "model_dump_json") else model.json()


def from_json(cls, text):
    return cls.model_validate_json(text) if hasattr(cls, "model_validate_json") else cls.parse_raw(text)


def embeddings(seed):
    """Stand-in for the vision encoder: deterministic per image."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(TOKENS, HIDDEN, generator=g).to(torch.float16)


class Channel:
    """The request plane: a pipe, read off the event loop's thread."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = asyncio.Lock()

    async def send(self, msg):
        async with self.lock:
            self.conn.send(msg)

    async def recv(self):
        def get():
            if not self.conn.poll(TIMEOUT):
                raise TimeoutError("request channel: nothing for %.0f s" % TIMEOUT)
            return self.conn.recv()

        return await asyncio.get_running_loop().run_in_executor(None, get)


# ------------------------------------------------------------------ encode worker


async def encode_worker(conn):
    ch = Channel(conn)
    connector = connect.Connector("encoder")
    pending = set()

    async def serve(req):
        emb = embeddings(req.image_seed)
        if req.pattern == "read":
            with await connector.create_readable(connect.Descriptor(emb), timeout=TIMEOUT) as readable:
                req.serialized_request = readable.metadata()
                await ch.send(("embeddings", to_json(req)))
                await readable.wait_for_completion(timeout=TIMEOUT)
                transport = readable.transport
        else:
            write_op = await connector.begin_write(connect.Descriptor(emb), req.serialized_request,
                                                   timeout=TIMEOUT)
            with write_op:
                await write_op.wait_for_completion(timeout=TIMEOUT)
                transport = write_op.transport
            await ch.send(("written", to_json(req)))
        await ch.send(("done", req.request_id, transport))

    while True:
        msg = await ch.recv()
        if msg[0] == "stop":
            break
        t = asyncio.ensure_future(serve(from_json(EncodeRequest, msg[1])))
        pending.add(t)
        t.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    connector.close()


# ------------------------------------------------------------------ prefill worker


async def prefill_worker(ch, pattern, n):
    connector = connect.Connector("prefill")
    landing = {}  # request id -> (tensor, writable op) for the write pattern
    for i in range(n):
        req = EncodeRequest(request_id=i, image_seed=1000 + i, pattern=pattern)
        if pattern == "write":
            buf = torch.empty(TOKENS, HIDDEN, dtype=torch.float16)
            w = await connector.create_writable(connect.Descriptor(buf), timeout=TIMEOUT)
            landing[i] = (buf, w)
            req.serialized_request = w.metadata()
        await ch.send(("encode", to_json(req)))

    verified, transports = 0, set()
    done = 0
    while done < n:
        msg = await ch.recv()
        if msg[0] == "embeddings":  # read pattern: pull them
            req = from_json(EncodeRequest, msg[1])
            buf = torch.empty(TOKENS, HIDDEN, dtype=torch.float16)
            read_op = await connector.begin_read(req.serialized_request, connect.Descriptor(buf),
                                                 timeout=TIMEOUT)
            with read_op:
                await read_op.wait_for_completion(timeout=TIMEOUT)
            verified += torch.equal(buf, embeddings(req.image_seed))
        elif msg[0] == "written":  # write pattern: they were pushed
            req = from_json(EncodeRequest, msg[1])
            buf, w = landing.pop(req.request_id)
            with w:
                await w.wait_for_completion(timeout=TIMEOUT)
            verified += torch.equal(buf, embeddings(req.image_seed))
        elif msg[0] == "done":
            done += 1
            transports.add(msg[2])
        elif msg[0] == "error":
            raise RuntimeError(f"encode worker: {msg[1]}")
    await ch.send(("stop",))
    connector.close()
    return verified, transports


def run_encoder(conn):
    try:
        asyncio.run(encode_worker(conn))
    except BaseException as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pattern", choices=("read", "write"), default="read")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--transport", choices=("shm", "tcp", "ucx"))
    args = ap.parse_args()
    if args.transport:
        os.environ["NXC_TRANSPORTS"] = args.transport  # both processes
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    encoder = ctx.Process(target=run_encoder, args=(there,), daemon=True)
    encoder.start()
    try:
        verified, transports = asyncio.run(prefill_worker(Channel(here), args.pattern, args.requests))
        encoder.join(TIMEOUT)
    finally:
        if encoder.is_alive():
            encoder.kill()
    mib = args.requests * TOKENS * HIDDEN * 2 / (1 << 20)
    print(f"{args.pattern}: {verified}/{args.requests} requests verified byte for byte "
          f"({mib:.1f} MiB of embeddings), transport: {', '.join(sorted(transports))}")
    return 0 if verified == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
