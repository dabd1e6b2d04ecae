"""shardpay.serve.limits: the shared buffer serves first come first, times out, gives back what a
cancelled wait was granted; the log drops and counts a flood of lines."""

from __future__ import annotations

import asyncio

from shardpay.serve.limits import Buffer, RateLog


def test_the_buffer_serves_in_line_and_times_out():
    async def scenario() -> list:
        buf = Buffer(10)
        assert await buf.take(6, 1)
        big = asyncio.ensure_future(buf.take(8, 5))  # waits: 4 free
        await asyncio.sleep(0)
        small = asyncio.ensure_future(buf.take(2, 5))  # fits, but waits behind big: first come, first served
        await asyncio.sleep(0.01)
        assert not big.done() and not small.done()
        buf.give(6)  # 10 free: big gets 8, small 2
        got = [await big, await small, buf.free]
        assert not await buf.take(1, 0.05)  # nothing free: times out
        buf.give(8)
        buf.give(2)
        return got + [buf.free]

    assert asyncio.run(scenario()) == [True, True, 0, 10]


def test_a_cancelled_wait_gives_back_what_it_was_granted():
    async def scenario() -> int:
        buf = Buffer(4)
        assert await buf.take(4, 1)
        waiting = asyncio.ensure_future(buf.take(3, 5))
        await asyncio.sleep(0)
        buf.give(4)  # granted to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(waiting, return_exceptions=True)
        return buf.free

    assert asyncio.run(scenario()) == 4


def test_the_rate_log_counts_what_it_drops(capsys):
    log = RateLog()
    for i in range(1000):
        log("auth", f"refused {i}")
    log("other", "another kind")
    log.last["auth"][0] -= 2  # a second later
    log("auth", "refused again")
    assert capsys.readouterr().err.splitlines() == [
        "shardpay serve: refused 0", "shardpay serve: another kind",
        "shardpay serve: refused again (and 999 more like it)"]
