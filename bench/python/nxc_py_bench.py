#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""What the Python layer costs over C: the measurement of `nxc-bench --self`
through nxc.nixl_connect and asyncio, run beside nxc-bench itself, in turns,
and the ratios Python/C.

  PYTHONPATH=python /usr/bin/python3 bench/python/nxc_py_bench.py [--transports shm,tcp] [--repeat 3]

Both sides measure the same thing the same way (tools/nxc-bench.c):
a target process publishes readables in rounds of up to 256 (made between
rounds, outside the timing); the initiator reads them one at a time
(concurrency 1) into one buffer. An op's latency runs from just before
begin_read to the moment its completion is seen; GB/s is the bytes of the
timed ops over the time from the first timed begin to the last completion
of each round. Buffers are page-aligned, touched before the timing, and
registered for the whole point (nxc-bench's default --prereg); 10 untimed
ops (1 at 256 MiB) come first. nxc-bench runs 2000 timed ops at 4 KiB and
5 at 256 MiB (--max-bytes 1280M); so does this.

The Python initiator passes each readable's metadata as an RdmaMetadata
(parsed before the timing, as a worker parses its request) and awaits
wait_for_completion(); the target is Python too. Each repeat runs C and
Python back to back, alternating which goes first, so that a change in the
machine's load falls on both; the summary gives the median and the range
of the per-repeat ratios.

ntf is the owner's side: from just before begin_read to the moment the
target's own wait_for_completion() returned (nxc-bench's ntf p50 beside
it). --owner loop runs the target's connector without its progress thread
(progress_thread=False: its asyncio loop drives it) and nxc-bench with
--loop, the C equivalent.

--buffers bytearray uses bytearray buffers (malloc'd, not page-aligned)
instead, to see what alignment costs; --buffers alloc gives the target
memory from Connector.alloc_buffer() (nxc_mem_alloc, which shm readers
map and copy with memcpy) and runs nxc-bench with --alloc to match.
"""

import argparse
import asyncio
import json
import mmap
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

import ctypes

import nxc.nixl_connect as connect
from nxc import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL, BIG = 4096, 256 << 20
ROUND = 256  # readables per round, as nxc-bench


def points(iters, big_iters):
    """(block, warm-up ops, timed ops), as nxc-bench picks them."""
    return [(SMALL, min(10, max(1, iters // 5)), iters),
            (BIG, min(10, max(1, big_iters // 5)), big_iters)]


def make_buffer(size, kind, fill, owner=None):
    """The buffer of a point: `owner` is the target's connector, which
    allocates it for --buffers alloc (the initiator's is then mmap'd)."""
    if kind == "bytearray":
        return bytearray(bytes([fill])) * size  # touched
    if kind == "alloc" and owner is not None:
        m = owner.alloc_buffer(size)
    else:
        m = mmap.mmap(-1, size)  # page-aligned, like nxc-bench's buf_alloc
    chunk = bytes([fill]) * min(size, 1 << 20)
    for off in range(0, size, len(chunk)):
        m[off:off + len(chunk)] = chunk[:size - off]
    return m


# ---------------------------------------------------------------- target


async def _completed_at(op):
    """When the owner's wait for `op` returned (perf_counter_ns, the
    system's monotonic clock, as the initiator's), None if it failed."""
    try:
        await op.wait_for_completion(timeout=30)
    except Exception:
        return None
    return time.perf_counter_ns()


def target(conn, block, kind, owner):
    async def main():
        c = connect.Connector(progress_thread=owner == "thread")
        buf = make_buffer(block, kind, 0x5A, owner=c)
        pool = connect.Descriptor(buf)
        pool.register_with_connector(c)
        loop = asyncio.get_running_loop()
        conn.send("ready")
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            if msg[0] == "round":
                ops = [await c.create_readable(pool) for _ in range(msg[1])]
                waits = [asyncio.ensure_future(_completed_at(o)) for o in ops]
                conn.send([o.metadata().model_dump_json() for o in ops])
                await loop.run_in_executor(None, conn.recv)  # round over
                times = await asyncio.gather(*waits)
                for o in ops:
                    o.release()
                conn.send(times)
            else:
                break
        pool.deregister_with_connector(c)
        c.close()

    asyncio.run(main())


# ---------------------------------------------------------------- initiator


async def run_point(conn, block, warm, iters, kind):
    c = connect.Connector()
    buf = make_buffer(block, kind, 0)
    dst = connect.Descriptor(buf)
    dst.register_with_connector(c)
    lat, ntf, span_ns, timed = [], [], 0, 0
    loop = asyncio.get_running_loop()
    for timed_round in (False, True):
        left = iters if timed_round else warm
        while left:
            n = min(left, ROUND)
            conn.send(("round", n))
            texts = await loop.run_in_executor(None, conn.recv)
            mds = [connect.RdmaMetadata.model_validate_json(t) for t in texts]
            first = last = None
            begun = []
            for md in mds:
                t0 = time.perf_counter_ns()
                op = await c.begin_read(md, dst, timeout=60)
                await op.wait_for_completion(timeout=60)
                t1 = time.perf_counter_ns()
                if op.status != connect.OperationStatus.COMPLETE:
                    raise RuntimeError(f"read ended {op.status}")
                op.release()
                if first is None:
                    first = t0
                last = t1
                begun.append(t0)
                if timed_round:
                    lat.append((t1 - t0) / 1e3)
            conn.send(("end",))
            times = await loop.run_in_executor(None, conn.recv)
            bad = sum(t is None for t in times)
            if bad:
                raise RuntimeError(f"{bad} readables of the target failed")
            if timed_round:
                span_ns += last - first
                timed += n
                ntf += [(t - t0) / 1e3 for t, t0 in zip(times, begun)]
            left -= n
    dst.deregister_with_connector(c)
    c.close()
    lat.sort()
    ntf.sort()
    return {"gbps": block * timed / span_ns, "p50_us": lat[(len(lat) - 1) // 2],
            "ntf_us": ntf[(len(ntf) - 1) // 2]}


def _raw_read(c, md_text, dst):
    """One read through libnxc directly (ctypes, GIL released while it
    waits): nxc-bench's own calls, on the same connector, buffers and peer."""
    arr = (_lib.Desc * 1)()
    arr[0].ptr, arr[0].size = dst.ptr, dst.size
    arr[0].device.kind, arr[0].device.id = 1, 0
    prm = _lib.OpParams()
    prm.field_mask = _lib.NXC_OP_FIELD_TIMEOUT
    prm.timeout_ms = 60000
    h = ctypes.c_void_p()
    t0 = time.perf_counter_ns()
    st = _lib.lib.nxc_begin_read(c._c, md_text, len(md_text), arr, 1, ctypes.byref(prm),
                                 ctypes.byref(h))
    if st < 0:
        raise RuntimeError(f"begin_read: {_lib.status_name(st)}: {_lib.last_error()}")
    st = _lib.lib.nxc_op_wait(h, 60000)
    t1 = time.perf_counter_ns()
    res = _lib.lib.nxc_op_result(h)
    _lib.lib.nxc_op_release(h)
    if st < 0 or res < 0:
        raise RuntimeError(f"read: {_lib.status_name(min(st, res))}")
    return t1 - t0


async def run_paired(conn, block, warm, pairs, kind):
    """Ops alternate between the Python layer and direct C calls, op by op:
    a change in the machine's load falls on both alike."""
    c = connect.Connector()
    buf = make_buffer(block, kind, 0)
    dst = connect.Descriptor(buf)
    dst.register_with_connector(c)
    loop = asyncio.get_running_loop()
    py, raw = [], []
    for timed_round in (False, True):
        left = 2 * (pairs if timed_round else warm)
        while left:
            n = min(left, ROUND)
            conn.send(("round", n))
            texts = await loop.run_in_executor(None, conn.recv)
            for i, text in enumerate(texts):
                if i % 2 == 0:
                    md = connect.RdmaMetadata.model_validate_json(text)
                    t0 = time.perf_counter_ns()
                    op = await c.begin_read(md, dst, timeout=60)
                    await op.wait_for_completion(timeout=60)
                    t1 = time.perf_counter_ns()
                    op.release()
                    ns = t1 - t0
                else:
                    ns = _raw_read(c, text.encode(), dst)
                if timed_round:
                    (py if i % 2 == 0 else raw).append(ns)
            conn.send(("end",))
            bad = sum(t is None for t in await loop.run_in_executor(None, conn.recv))
            if bad:
                raise RuntimeError(f"{bad} readables of the target failed")
            left -= n
    dst.deregister_with_connector(c)
    c.close()
    # bandwidth ratio of each pair of neighbouring ops: load that changes
    # over seconds falls on both ops of a pair
    out = {"pair_ratios": [c_ns / py_ns for py_ns, c_ns in zip(py, raw)]}
    for name, v in (("py", py), ("c", raw)):
        v.sort()
        out[name] = {"gbps": block * len(v) / sum(v), "p50_us": v[(len(v) - 1) // 2] / 1e3}
    return out


def python_point(block, warm, iters, kind, paired=False, owner="thread"):
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=target, args=(there, block, kind, owner), daemon=True)
    p.start()
    try:
        if not here.poll(120) or here.recv() != "ready":
            raise TimeoutError("the target did not start")
        if paired:
            return asyncio.run(run_paired(here, block, warm, iters, kind))
        return asyncio.run(run_point(here, block, warm, iters, kind))
    finally:
        try:
            here.send(("exit",))
        except OSError:
            pass
        p.join(30)
        if p.is_alive():
            p.kill()


def python_figures(iters, big_iters, kind, owner):
    return {block: python_point(block, warm, n, kind, owner=owner)
            for block, warm, n in points(iters, big_iters)}


def c_figures(transport, iters, big_iters, exe, kind, owner):
    if not os.path.exists(exe):
        raise SystemExit(f"{exe} not built (scripts/build.sh release)")
    # --max-bytes makes nxc-bench run big_iters ops at 256 MiB, iters at 4 KiB
    out = subprocess.run([exe, "--self", "--transport", transport, "--block-sizes", "4K,256M",
                          "--iters", str(iters), "--min-iters", str(big_iters),
                          "--max-bytes", str(big_iters * BIG), "--json", "-q"]
                         + (["--alloc"] if kind == "alloc" else [])
                         + (["--loop"] if owner == "loop" else []),
                         capture_output=True, text=True, timeout=600)
    rows = {}
    for line in out.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        for row in r if isinstance(r, list) else [r]:
            if isinstance(row, dict) and "block" in row:
                rows[int(row["block"])] = {"gbps": row["gbps"], "p50_us": row["lat_p50_us"],
                                           "ntf_us": row["notify_p50_us"], "iters": row["iters"]}
    if set(rows) != {SMALL, BIG}:
        raise RuntimeError(f"nxc-bench gave no figures: {out.stderr.strip()[-500:]}")
    return rows


def rng(v, fmt):
    v = sorted(v)
    if len(v) == 1:
        return format(v[0], fmt)
    return f"{format(statistics.median(v), fmt)} [{format(v[0], fmt)}-{format(v[-1], fmt)}]"


def paired_main(args, transports):
    print(f"# paired: Python layer and direct C calls alternating op by op in one process; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"buffers {args.buffers}; {args.iters} pairs at 4 KiB, {args.big_iters} at 256 MiB; "
          f"{args.repeat} repeats")
    print(f"{'run':>3} {'tr':>3} {'4K p50 us py':>12} {'C':>7} {'py-C':>6} "
          f"{'256M GB/s py':>12} {'C':>6} {'py/C':>5} {'pairs p50':>9}")
    res = {t: [] for t in transports}
    for r in range(args.repeat):
        for t in transports:
            os.environ["NXC_TRANSPORTS"] = t
            small = python_point(SMALL, 10, args.iters, args.buffers, paired=True)
            big = python_point(BIG, 1, args.big_iters, args.buffers, paired=True)
            row = {"lat_py": small["py"]["p50_us"], "lat_c": small["c"]["p50_us"],
                   "bw_py": big["py"]["gbps"], "bw_c": big["c"]["gbps"],
                   "pairs": big["pair_ratios"]}
            res[t].append(row)
            print(f"{r + 1:>3} {t:>3} {row['lat_py']:12.1f} {row['lat_c']:7.1f} "
                  f"{row['lat_py'] - row['lat_c']:6.1f} {row['bw_py']:12.2f} {row['bw_c']:6.2f} "
                  f"{row['bw_py'] / row['bw_c']:5.2f} {statistics.median(row['pairs']):9.3f}",
                  flush=True)
    print(f"# median [range] over {args.repeat} repeats; pairs: median [quartiles] of every "
          f"256 MiB pair's ratio; load now {os.getloadavg()[0]:.1f}")
    print(f"{'tr':>3} {'4K p50 py-C us':>20} {'256M GB/s py/C':>20} {'pairs py/C':>20}")
    for t in transports:
        rows = res[t]
        pairs = sorted(p for x in rows for p in x["pairs"])
        q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
        print(f"{t:>3} {rng([x['lat_py'] - x['lat_c'] for x in rows], '.1f'):>20} "
              f"{rng([x['bw_py'] / x['bw_c'] for x in rows], '.2f'):>20} "
              f"{f'{q[1]:.3f} [{q[0]:.3f}-{q[2]:.3f}]':>20}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transports", "--transport", default="shm,tcp")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2000, help="timed 4 KiB ops")
    ap.add_argument("--big-iters", type=int, default=5, help="timed 256 MiB ops")
    ap.add_argument("--buffers", choices=["aligned", "bytearray", "alloc"], default="aligned")
    ap.add_argument("--nxc-bench", default=os.path.join(ROOT, "build", "release", "tools", "nxc-bench"),
                    help="the nxc-bench to compare with (default: the release build's)")
    ap.add_argument("--owner", choices=["thread", "loop"], default="thread",
                    help="the target's connector: its progress thread, or driven by its asyncio "
                         "loop (progress_thread=False; nxc-bench then runs with --loop)")
    ap.add_argument("--paired", action="store_true",
                    help="instead: one process pair, ops alternating between the Python layer "
                         "and direct C calls (ctypes)")
    args = ap.parse_args()
    transports = args.transports.split(",")
    if args.paired:
        return paired_main(args, transports)
    print(f"# Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"buffers {args.buffers}; {args.iters} ops at 4 KiB, {args.big_iters} at 256 MiB; "
          f"{args.repeat} repeats; owner {args.owner}")
    print(f"{'run':>3} {'tr':>3} {'4K p50 us py':>12} {'C':>7} {'py-C':>6} {'py/C':>5} "
          f"{'ntf us py':>10} {'C':>7} {'256M GB/s py':>12} {'C':>6} {'py/C':>5}")
    res = {t: [] for t in transports}
    for r in range(args.repeat):
        for t in transports:
            os.environ["NXC_TRANSPORTS"] = t
            c_args = (t, args.iters, args.big_iters, args.nxc_bench, args.buffers, args.owner)
            py_args = (args.iters, args.big_iters, args.buffers, args.owner)
            if r % 2 == 0:
                cf = c_figures(*c_args)
                pf = python_figures(*py_args)
            else:
                pf = python_figures(*py_args)
                cf = c_figures(*c_args)
            row = {
                "lat_py": pf[SMALL]["p50_us"], "lat_c": cf[SMALL]["p50_us"],
                "ntf_py": pf[SMALL]["ntf_us"], "ntf_c": cf[SMALL]["ntf_us"],
                "bw_py": pf[BIG]["gbps"], "bw_c": cf[BIG]["gbps"],
            }
            res[t].append(row)
            print(f"{r + 1:>3} {t:>3} {row['lat_py']:12.1f} {row['lat_c']:7.1f} "
                  f"{row['lat_py'] - row['lat_c']:6.1f} {row['lat_py'] / row['lat_c']:5.2f} "
                  f"{row['ntf_py']:10.1f} {row['ntf_c']:7.1f} "
                  f"{row['bw_py']:12.2f} {row['bw_c']:6.2f} {row['bw_py'] / row['bw_c']:5.2f}",
                  flush=True)
    print(f"# median [range] over {args.repeat} repeats; load now {os.getloadavg()[0]:.1f}")
    print(f"{'tr':>3} {'4K p50 py-C us':>20} {'4K p50 py/C':>20} {'4K ntf py us':>20} "
          f"{'256M GB/s py/C':>20}")
    for t in transports:
        rows = res[t]
        print(f"{t:>3} {rng([x['lat_py'] - x['lat_c'] for x in rows], '.1f'):>20} "
              f"{rng([x['lat_py'] / x['lat_c'] for x in rows], '.2f'):>20} "
              f"{rng([x['ntf_py'] for x in rows], '.1f'):>20} "
              f"{rng([x['bw_py'] / x['bw_c'] for x in rows], '.2f'):>20}")


if __name__ == "__main__":
    main()
