"""``shardpay serve``, bounded: idle connections time out, lines without an end and batches over
the bounds are refused without being held, connections past the limit are told to come back,
SIGTERM ends within the drain timeout whatever the clients do, and running out of file
descriptors costs a few log lines, not the server."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time

from shardpay.serve.protocol import batch_request
from tests.integration.serve_harness import HEADER, Serve, close, raise_nofile_limit, read_answer, send, send_batch

MiB = 1 << 20


async def connect(port: int, first: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def closed_with(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """What the server sends before closing the connection (within ``timeout`` s)."""
    return await asyncio.wait_for(reader.read(), timeout)


def test_300_idle_connections_while_a_batch_is_served(tmp_path):
    raise_nofile_limit()
    server = Serve(tmp_path, "--workers", "1", "--idle-timeout", "3")
    base = server.rss()

    async def scenario() -> tuple[list[bytes], bytes, float]:
        silent = [await connect(server.port) for _ in range(100)]
        stalled = [await connect(server.port, b"batch s%d 1000\ntype,client" % i) for i in range(100)]
        halfline = [await connect(server.port, b"batch h%d 10" % i) for i in range(100)]
        t0 = time.monotonic()
        answer = await send_batch(server.port, "real", HEADER + b"deposit,1,1,5\n")
        served = time.monotonic() - t0
        answers = await asyncio.gather(*(closed_with(r, 10) for r, _ in silent + stalled + halfline))
        for _, w in silent + stalled + halfline:
            await close(w)
        return answers, answer, served

    try:
        answers, answer, served = asyncio.run(scenario())
        assert answer == b"ok real accepted=1 rejected=0\n" and served < 2
        assert answers[:100] == [b"error - timeout: nothing received for 3 s\n"] * 100
        assert answers[100:200] == [b"error s%d timeout: nothing received for 3 s, 11 of 1000 bytes in\n" % i
                                    for i in range(100)]
        assert answers[200:] == [b"error - timeout: nothing received for 3 s\n"] * 100
        assert server.rss() - base < 30 * MiB
        assert send(server.port, "after", HEADER) == b"ok after accepted=0 rejected=0\n"
    finally:
        assert server.stop() == 0, server.stderr()


def test_lines_without_an_end_are_refused_not_held(tmp_path):
    server = Serve(tmp_path, "--workers", "1")
    base = server.rss()

    async def flood() -> list[bytes]:
        async def one() -> bytes:
            reader, writer = await connect(server.port)
            try:
                for _ in range(16):
                    writer.write(b"x" * (64 * 1024))  # 1 MiB, no LF
                    await writer.drain()
            except ConnectionError:
                pass
            answer = await closed_with(reader, 10)
            await close(writer)
            return answer

        return await asyncio.gather(*(one() for _ in range(60)))

    try:
        answers = asyncio.run(flood())
        assert set(answers) == {b"error - protocol: a request line is longer than 1024 bytes\n"}
        assert server.rss() - base < 30 * MiB
    finally:
        assert server.stop() == 0, server.stderr()


def test_batches_over_the_bounds(tmp_path):
    server = Serve(tmp_path, "--workers", "1", "--max-batch-bytes", "4K", "--max-buffer-bytes", "8K",
                   "--idle-timeout", "2")
    body = HEADER + b"".join(b"deposit,2,%d,1\n" % tx for tx in range(1000, 1200))  # ~3.3 KB
    assert len(body) <= 4096

    async def scenario() -> list[bytes]:
        big = HEADER + b"x" * 5000
        too_large = await send_batch(server.port, "big", big)  # the client sends it all, then reads the error
        request_a, request_b = batch_request("a", body), batch_request("b", body)
        a = await connect(server.port, request_a[:100])  # two slow batches hold the whole buffer
        b = await connect(server.port, request_b[:100])

        async def trickle() -> None:  # a byte every 0.4 s: slow, not idle
            for k in range(100, 112):
                await asyncio.sleep(0.4)
                a[1].write(request_a[k: k + 1])
                b[1].write(request_b[k: k + 1])

        slow = asyncio.ensure_future(trickle())
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        busy = await send_batch(server.port, "c", body)
        waited = time.monotonic() - t0
        await slow
        a[1].write(request_a[112:])  # a finishes: room again
        done_a = await read_answer(a[0])
        ok_c = await send_batch(server.port, "c", body)
        await close(b[1])
        await close(a[1])
        return [too_large, busy, done_a, ok_c, b"%.1f" % waited]

    try:
        too_large, busy, done_a, ok_c, waited = asyncio.run(scenario())
        assert too_large == b"error big too_large: SIZE 5022 is over this server's --max-batch-bytes 4096\n"
        assert busy == (b"error c busy: no room for %d bytes in the server's buffer within 2 s; retry later\n"
                        % len(body))
        assert 1.5 < float(waited) < 5
        assert done_a == b"ok a accepted=200 rejected=0\n"
        assert ok_c.startswith(b"ok c accepted=0 rejected=200\n2,duplicate_tx,")  # the same tx ids as a
    finally:
        assert server.stop() == 0, server.stderr()


def test_connections_past_the_limit_are_told_to_come_back(tmp_path):
    server = Serve(tmp_path, "--workers", "1", "--max-connections", "3")

    async def scenario() -> tuple[bytes, bytes]:
        held = [await connect(server.port) for _ in range(3)]
        await asyncio.sleep(0.2)
        refused = await send_batch(server.port, "x", HEADER)
        await close(held[0][1])
        await asyncio.sleep(0.2)
        answer = await send_batch(server.port, "x", HEADER)
        for _, w in held[1:]:
            await close(w)
        return refused, answer

    try:
        refused, answer = asyncio.run(scenario())
        assert refused == b"error - busy: 3 connections are open, the most this server takes; retry later\n"
        assert answer == b"ok x accepted=0 rejected=0\n"
    finally:
        assert server.stop() == 0, server.stderr()


def test_sigterm_drains_within_the_timeout_whatever_the_clients_do(tmp_path):
    server = Serve(tmp_path, "--workers", "1", "--drain-timeout", "2")
    finishing = batch_request("finishing", HEADER + b"deposit,7,1,5\n")
    never = batch_request("never", HEADER + b"deposit,7,2,5\n")

    async def scenario() -> tuple[bytes, bytes, bytes, bytes, float]:
        idle = await connect(server.port)
        assert await send_batch(server.port, "first", HEADER + b"deposit,7,3,1\n") == (
            b"ok first accepted=1 rejected=0\n")
        slow = await connect(server.port, finishing[:30])
        stuck = await connect(server.port, never[:30])
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        idle_answer = await closed_with(idle[0], 1)  # at once
        try:  # a closed connection cannot send a batch any more
            idle[1].write(batch_request("late", HEADER + b"deposit,7,4,5\n"))
            await idle[1].drain()
        except ConnectionError:
            pass
        await asyncio.sleep(0.5)
        slow[1].write(finishing[30:])  # within the drain timeout: committed and answered
        slow_answer = await read_answer(slow[0])
        stuck_answer = await closed_with(stuck[0], 5)  # never finished: dropped at the deadline
        for _, w in (idle, slow, stuck):
            await close(w)
        return idle_answer, slow_answer, stuck_answer, b"", time.monotonic() - t0

    idle_answer, slow_answer, stuck_answer, _, took = asyncio.run(scenario())
    assert server.proc.wait(10) == 0, server.stderr()
    server.log.close()
    assert idle_answer == b"error - stopping: the server is shutting down; closed\n"
    assert slow_answer == b"ok finishing accepted=1 rejected=0\n"
    assert stuck_answer == b"error never stopping: the server is shutting down; this batch was not applied\n"
    assert took < 4
    assert "dropped 1 batches not committed within the drain timeout" in server.stderr()
    assert server.snapshot.read_text() == "client,available,held,total,locked\n7,6.0000,0.0000,6.0000,false\n"


def test_out_of_file_descriptors_costs_log_lines_not_the_server(tmp_path):
    raise_nofile_limit()
    server = Serve(tmp_path, "--workers", "1")
    pid = server.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(f"/proc/{pid}/fd"))

    async def flood() -> tuple[list[bytes | BaseException], bytes]:
        async def one(i: int) -> bytes:
            return await send_batch(server.port, f"f{i}", HEADER + b"deposit,%d,%d,1\n" % (i, i))

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # connected before
        await asyncio.sleep(0.2)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 8, hard))
        tasks = [asyncio.ensure_future(one(i)) for i in range(200)]
        await asyncio.sleep(0.5)
        # Its commit reads the engine's reject spools (a descriptor each) while none is left:
        # the server waits for one instead of failing.
        writer.write(batch_request("early", HEADER + b"withdrawal,9999,9999,1\n"))
        await asyncio.sleep(2.5)  # accept fails for want of descriptors, again and again
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        early = await asyncio.wait_for(read_answer(reader), 30)
        await close(writer)
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60), early

    try:
        answers, early = asyncio.run(flood())
        assert early.startswith(b"ok early accepted=0 rejected=1\n2,insufficient_funds,")
        assert send(server.port, "after", HEADER) == b"ok after accepted=0 rejected=0\n"
        ok = [a for a in answers if isinstance(a, bytes) and a.startswith(b"ok ")]
        assert len(ok) >= 150, answers[:5]  # most were served once descriptors were back
    finally:
        assert server.stop() == 0, server.stderr()
    log = server.stderr()
    assert "accept() out of system resource: out of file descriptors" in log
    assert "out of file descriptors reading the engine's rejects: the rows are applied" in log
    assert "Exception in callback" not in log
    assert len(log.splitlines()) < 20, log
    assert "Traceback" not in log
