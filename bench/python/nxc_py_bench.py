#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""What the Python layer costs over C: the same measurement as
`nxc-bench --self` (a target process publishes readables over one buffer,
the initiator times begin_read -> completion of each), through
nxc.nixl_connect and asyncio, beside nxc-bench's own figures.

  PYTHONPATH=python /usr/bin/python3 bench/python/nxc_py_bench.py [--transport shm] [--iters 2000]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

import nxc.nixl_connect as connect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POINTS = [("4K", 4096), ("256M", 256 << 20)]


def target(conn, block, n):
    async def main():
        c = connect.Connector()
        buf = bytearray(b"\x5a") * block  # touched: no first-use page faults in the timing
        ops = [await c.create_readable(connect.Descriptor(buf)) for _ in range(n)]
        conn.send([o.metadata().model_dump_json() for o in ops])
        conn.recv()  # done
        for o in ops:
            o.release()
        c.close()

    asyncio.run(main())


async def initiator(mds, block):
    c = connect.Connector()
    dst = connect.Descriptor(bytearray(b"\x00") * block)
    lat = []
    t_first = None
    for md in mds:
        t0 = time.perf_counter()
        if t_first is None:
            t_first = t0
        op = await c.begin_read(md, dst, timeout=60)
        await op.wait_for_completion(timeout=60)
        lat.append(time.perf_counter() - t0)
        op.release()
    span = time.perf_counter() - t_first
    c.close()
    return lat, span


def measure(block, n):
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=target, args=(there, block, n), daemon=True)
    p.start()
    try:
        if not here.poll(120):
            raise TimeoutError("target did not answer")
        mds = here.recv()
        warm = max(1, min(10, n // 10))
        lat, span = asyncio.run(initiator(mds, block))
        here.send("done")
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()
    lat = lat[warm:]
    return {"gbps": block * len(lat) / sum(lat) / 1e9, "p50_us": statistics.median(lat) * 1e6}


def c_figures(transport, iters):
    exe = os.path.join(ROOT, "build", "release", "tools", "nxc-bench")
    if not os.path.exists(exe):
        return {}
    out = subprocess.run([exe, "--self", "--transport", transport, "--block-sizes",
                          ",".join(p[0] for p in POINTS), "--iters", str(iters), "--json", "-q"],
                         capture_output=True, text=True, timeout=600)
    rows = {}
    for line in out.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        for row in r if isinstance(r, list) else [r]:
            if isinstance(row, dict) and "block" in row:
                rows[int(row["block"])] = row
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="shm")
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args()
    os.environ["NXC_TRANSPORTS"] = args.transport
    crow = c_figures(args.transport, args.iters)
    print(f"# transport {args.transport}; Python {sys.version.split()[0]}; nxc {connect.__name__}")
    print(f"{'block':>6} {'py p50 us':>10} {'C p50 us':>9} {'py GB/s':>8} {'C GB/s':>7} {'py/C':>5}")
    for name, block in POINTS:
        n = args.iters if block <= (1 << 20) else 9
        py = measure(block, n)
        c = crow.get(block, {})
        cg = c.get("gbps")
        cl = c.get("lat_p50_us")
        ratio = f"{py['gbps'] / cg:5.2f}" if cg else "  n/a"
        print(f"{name:>6} {py['p50_us']:10.1f} {cl if cl is not None else 'n/a':>9} "
              f"{py['gbps']:8.3f} {cg if cg is not None else 'n/a':>7} {ratio}")


if __name__ == "__main__":
    main()
