# SPDX-License-Identifier: Apache-2.0
"""Two processes per test, on each transport: the event loop keeps running
while 256 MiB move, and 10,000 ops leave no fds or memory behind.

These are liveness and leak checks, not timing benchmarks: the bounds are
generous, because CI machines are small and loaded."""

import asyncio
import time

import pytest
import torch

import nxc.nixl_connect as connect
import peers
from peers import WAIT, arecv, fds, pattern, peer, rss

BIG = 256 << 20
TICK = 0.001  # the ticker's period, seconds
MAX_GAP = 0.25  # longest the loop may go without running the ticker, seconds


def _runq_wait():
    """Seconds this thread has spent runnable but waiting for a CPU
    (/proc/thread-self/schedstat, second field), or 0 where unavailable."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def now():
    return (time.monotonic(), _runq_wait())


class Ticker:
    """A task that wakes every TICK and notes when it ran, and how long the
    loop's thread had waited for a CPU by then."""

    def __init__(self):
        self.stamps = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        while True:
            self.stamps.append((time.monotonic(), _runq_wait()))
            await asyncio.sleep(TICK)

    async def stop(self):
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def check(self, t0, t1, what):
        """The ticker ran all through [t0, t1] (two now()s): never a gap
        over MAX_GAP and, on average, at least one tick per 20 ms (it asks
        for one per ms).

        Time the loop's thread spent waiting for a CPU is not counted: on a
        loaded machine the scheduler may hold a runnable thread back for
        hundreds of milliseconds, which says nothing about the loop. What is
        left is the time the loop was blocked or busy: that is what nxc must
        not cause."""
        inside = [s for s in self.stamps if t0[0] < s[0] < t1[0]]
        edges = [t0] + inside + [t1]
        worst = (0.0, 0.0, 0.0)  # (stall, gap, waited)
        all_waited = 0.0
        for (a, wa), (b, wb) in zip(edges, edges[1:]):
            waited = wb - wa
            all_waited += waited
            stall = (b - a) - waited
            if stall > worst[0]:
                worst = (stall, b - a, waited)
        stall, gap, waited = worst
        span = t1[0] - t0[0]
        print(f"{what}: {len(inside)} ticks in {span * 1e3:.0f} ms, longest stall "
              f"{stall * 1e3:.1f} ms (a gap of {gap * 1e3:.1f} ms, {waited * 1e3:.1f} ms of it "
              f"waiting for a CPU)")
        assert stall < MAX_GAP, (
            f"{what}: the loop stalled {stall * 1e3:.0f} ms (a gap of {gap * 1e3:.0f} ms, "
            f"{waited * 1e3:.0f} ms of it waiting for a CPU) in {span * 1e3:.0f} ms")
        assert len(inside) >= int((span - all_waited) / 0.020), (
            f"{what}: {len(inside)} ticks in {span * 1e3:.0f} ms, "
            f"{all_waited * 1e3:.0f} ms of it waiting for a CPU")


@pytest.mark.parametrize("role", ["read", "write", "readable", "writable"])
def test_loop_live_during_256mib(transport, role):
    """256 MiB between two processes while a task on this process's loop
    ticks every millisecond: this process is the active side (read, write)
    or the passive one (readable, writable); the ticker keeps running from
    the moment the op is created or begun until its wait returns, and every
    byte arrives."""

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP workers of ours spinning beside the transfer

    async def main():
        c = connect.Connector()
        ticker = None
        try:
            with peer(peers.served) as (conn, proc):
                if role in ("read", "write"):
                    conn.send(("readable" if role == "read" else "writable", BIG))
                    md = await arecv(conn)
                    if role == "read":
                        local = torch.zeros(BIG, dtype=torch.uint8)
                    else:
                        local = pattern(BIG).clone()
                    ticker = Ticker()
                    await asyncio.sleep(0.02)
                    t0 = now()
                    if role == "read":
                        op = await c.begin_read(md, connect.Descriptor(local), timeout=60)
                    else:
                        op = await c.begin_write(connect.Descriptor(local), md, timeout=60)
                    with op:
                        if role == "read":
                            with pytest.raises(RuntimeError):
                                op.results()  # not complete yet: 256 MiB do not move in microseconds
                        await op.wait_for_completion(timeout=60)
                        t1 = now()
                        assert op.status == connect.OperationStatus.COMPLETE
                        assert op.transport == transport
                        if role == "read":
                            assert [d.ptr for d in op.results()] == [local.data_ptr()]
                    await ticker.stop()
                    conn.send(("wait", WAIT))
                    status, err, verified = await arecv(conn)
                    assert (status, err) == ("DONE", None)
                    if role == "read":
                        assert torch.equal(local, pattern(BIG))
                    else:
                        assert verified, "the peer's writable did not receive the pattern"
                else:
                    conn.send(("prepare", BIG))  # the peer's buffers, made before the clock starts
                    assert await arecv(conn) == "prepared"
                    if role == "readable":
                        local = pattern(BIG).clone()
                        fn = c.create_readable
                    else:
                        local = torch.zeros(BIG, dtype=torch.uint8)
                        fn = c.create_writable
                    ticker = Ticker()
                    await asyncio.sleep(0.02)
                    t0 = now()
                    with await fn(connect.Descriptor(local), timeout=60) as op:
                        what = "peer_read" if role == "readable" else "peer_write"
                        conn.send((what, op.metadata().model_dump_json()))
                        await op.wait_for_completion(timeout=60)
                        t1 = now()
                        assert op.status == connect.OperationStatus.COMPLETE
                        assert op.transport == transport
                    await ticker.stop()
                    status, err, verified = await arecv(conn)
                    assert (status, err, verified) == ("DONE", None, True)
                    if role == "writable":
                        assert torch.equal(local, pattern(BIG))
                conn.send(("exit",))
                assert (await arecv(conn))[0] == "ok"
            ticker.check(t0, t1, f"{role} of 256 MiB over {transport}")
        finally:
            if ticker is not None:
                await ticker.stop()
            c.close()

    try:
        asyncio.run(main())
    finally:
        torch.set_num_threads(threads)


OPS = 10_000
WARM = 1_000
BATCH = 250  # readables the peer publishes at once
SMALL = 4096
BUDGET = 50.0  # seconds: the whole loop, however loaded the machine


def test_10000_ops_no_growth(transport):
    """10,000 reads of a peer's 4 KiB readables (a fresh Descriptor, op and
    release each time, as a request handler does): after a warm-up of 1,000,
    neither this process nor the peer opens more fds or grows by more than
    16 MiB of RSS."""

    async def main():
        c = connect.Connector()
        dst = torch.zeros(SMALL, dtype=torch.uint8)
        expect = pattern(SMALL)
        deadline = time.monotonic() + BUDGET
        marks = {}
        try:
            with peer(peers.served) as (conn, proc):
                done = 0
                while done < OPS:
                    assert time.monotonic() < deadline, f"only {done} ops in {BUDGET} s"
                    conn.send(("readables", BATCH, SMALL))
                    mds = await arecv(conn)
                    for md in mds:
                        dst.zero_()
                        with await c.begin_read(md, connect.Descriptor(dst), timeout=WAIT) as op:
                            await op.wait_for_completion(timeout=WAIT)
                        assert torch.equal(dst, expect), f"op {done}: wrong bytes"
                        done += 1
                    conn.send(("wait_all", WAIT))
                    assert await arecv(conn) == BATCH
                    if done in (WARM, OPS):
                        import gc

                        gc.collect()
                        conn.send(("stats",))
                        marks[done] = ((fds(), rss()), await arecv(conn))
                conn.send(("exit",))
                assert (await arecv(conn))[0] == "ok"
        finally:
            c.close()
        for who, i in (("this process", 0), ("the peer", 1)):
            (fd0, rss0), (fd1, rss1) = marks[WARM][i], marks[OPS][i]
            print(f"{transport}, {who}: fds {fd0} -> {fd1}, RSS {rss0 >> 10} -> {rss1 >> 10} KiB")
            assert fd1 == fd0, f"{who}: {fd0} fds after {WARM} ops, {fd1} after {OPS}"
            assert rss1 - rss0 < 16 << 20, (
                f"{who}: RSS grew {(rss1 - rss0) >> 10} KiB from op {WARM} to op {OPS}")
        assert len(c._ops) == 0

    asyncio.run(main())
