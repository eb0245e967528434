#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Where a 4 KiB read's time goes in the Python layer, step by step, in
one process (no rendezvous, no second interpreter):

  PYTHONPATH=python /usr/bin/python3 bench/python/nxc_py_steps.py [--transport shm] [--ops 5000] [--repeat 3]

An owner connector creates --ops readables of one registered 4 KiB buffer
(outside the timing); their metadata comes back as RdmaMetadata validated
from JSON, as a worker's request model would carry it. A reader connector
then reads each once, and time.perf_counter_ns() is read between the
steps of a read: `await begin_read(...)`, `await wait_for_completion()`,
the `status` property, `release()`. Prints the median of each per repeat,
in microseconds. On shm a 4 KiB read ends inside begin_read, so "begin"
holds the C call's copy too (nxc-micro-op's begin is that call alone)."""

import argparse
import asyncio
import mmap
import statistics
import time

import nxc.nixl_connect as connect


async def one_repeat(owner, reader, src, dst, n):
    readables = [await owner.create_readable(src) for _ in range(n)]
    mds = [connect.RdmaMetadata.model_validate_json(r.metadata().model_dump_json())
           for r in readables]
    steps = {"begin": [], "wait": [], "status": [], "release": []}
    clock = time.perf_counter_ns
    for md in mds:
        t0 = clock()
        op = await reader.begin_read(md, dst, timeout=60)
        t1 = clock()
        await op.wait_for_completion(timeout=60)
        t2 = clock()
        if op.status != connect.OperationStatus.COMPLETE:
            raise RuntimeError(f"read ended {op.status}")
        t3 = clock()
        op.release()
        t4 = clock()
        for k, a, b in zip(steps, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            steps[k].append(b - a)
    for r in readables:
        r.release()
    return {k: statistics.median(v) / 1e3 for k, v in steps.items()}


async def main(args):
    owner = connect.Connector(transports=args.transport)
    reader = connect.Connector(transports=args.transport)
    bufs = [mmap.mmap(-1, 4096) for _ in range(2)]
    src, dst = (connect.Descriptor(b) for b in bufs)
    src.register_with_connector(owner)
    dst.register_with_connector(reader)
    for rep in range(args.repeat):
        med = await one_repeat(owner, reader, src, dst, args.ops)
        print(f"{args.transport} repeat {rep + 1}: " +
              "  ".join(f"{k} {v:.1f}" for k, v in med.items()) + "  (p50 us)")
    dst.deregister_with_connector(reader)
    src.deregister_with_connector(owner)
    reader.close()
    owner.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", default="shm")
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(ap.parse_args()))
