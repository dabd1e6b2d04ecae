"""``shardpay serve`` end to end: the server as a subprocess, asyncio clients in the test process (loopback).

Each load connection streams its own clients and tx ids, so the final state does
not depend on how connections interleave: the model over all rows (in any
connection order) is the expected snapshot, and each connection's ``ok`` line
equals the model over that connection's rows alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from shardpay.testing import model
from shardpay.serve import raise_nofile_limit
from tests.conftest import run_cli, shardpay_cmd

HEADER = b"type,client,tx,amount\n"
OK = re.compile(rb"ok accepted=(\d+) rejected=(\d+)\n")


def conn_rows(i: int, rows: int, clients: int = 3) -> bytes:
    """Connection i's rows: clients i*clients.., tx ids i*rows.., every reason code now and then."""
    rng = random.Random(i)
    base_client, base_tx = i * clients, i * rows
    deposits: list[tuple[int, int]] = []
    out = []
    for j in range(rows):
        c = base_client + rng.randrange(clients)
        tx = base_tx + j
        r = rng.random()
        if r < 0.45 or not deposits:
            out.append(f"deposit,{c},{tx},{rng.randrange(1, 10**6) / 100}")
            deposits.append((c, tx))
        elif r < 0.75:
            out.append(f"withdrawal,{c},{tx},{rng.randrange(1, 10**5) / 100}")
        elif r < 0.85:
            dc, dtx = rng.choice(deposits)
            out.append(f"dispute,{dc},{dtx},")
        elif r < 0.92:
            dc, dtx = rng.choice(deposits)
            out.append(f"resolve,{dc},{dtx},")
        elif r < 0.94:
            dc, dtx = rng.choice(deposits)
            out.append(f"chargeback,{dc},{dtx},")
        elif r < 0.97:
            out.append(f"deposit,{c},{base_tx + rng.randrange(max(1, j))},1.0")  # duplicate_tx (own ids)
        else:
            out.append(f"deposit,{c},{tx},1.123456")  # invalid_row
    return ("\n".join(out) + "\n").encode()


class Serve:
    """A ``shardpay serve`` subprocess on a free loopback port."""

    def __init__(self, tmp: Path, *args: str, journal: Path | None = None) -> None:
        self.journal = journal or tmp / "journal.csv"
        self.snapshot = tmp / "snapshot.csv"
        self.log = open(tmp / f"serve-{time.monotonic_ns()}.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            shardpay_cmd() + ["serve", "--listen", "127.0.0.1:0", "--journal", str(self.journal),
                              "--snapshot", str(self.snapshot), *args],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            text = Path(self.log.name).read_text()
            m = re.search(r"listening on [\d.]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"server did not start: {text}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()

    def stderr(self) -> str:
        return Path(self.log.name).read_text()


async def send(port: int, data: bytes, piece: int = 4096, pause: float = 0.0) -> bytes:
    """Stream ``data`` in pieces (``pause`` seconds apart), close the write side, return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for k in range(0, len(data), piece):
            writer.write(data[k: k + piece])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()


async def load(port: int, payloads: list[bytes], acked: dict[int, bytes] | None = None,
               trickle: bool = False) -> list[bytes | None]:
    """All connections at once; with ``acked``, a failed connection gives None instead of raising.

    ``trickle``: each connection starts within 2 s and sends 1 KiB every 20 ms (a load that lasts).
    """

    async def one(i: int, data: bytes) -> bytes | None:
        try:
            if trickle:
                await asyncio.sleep(random.Random(i).random() * 2)
            answer = await send(port, data, piece=1024 if trickle else 4096, pause=0.02 if trickle else 0.0)
        except OSError:
            if acked is None:
                raise
            return None
        if acked is not None and OK.fullmatch(answer):
            acked[i] = answer
        return answer

    return await asyncio.gather(*(one(i, d) for i, d in enumerate(payloads)))


def check_load(tmp_path: Path, conns: int, rows: int, timeout: float, *server_args: str) -> None:
    raise_nofile_limit()
    bodies = [conn_rows(i, rows) for i in range(conns)]
    server = Serve(tmp_path, "--workers", "1", *server_args)
    try:
        t0 = time.monotonic()
        answers = asyncio.run(asyncio.wait_for(load(server.port, [HEADER + b for b in bodies]), timeout))
        elapsed = time.monotonic() - t0
    finally:
        assert server.stop() == 0, server.stderr()
    for body, answer in zip(bodies, answers):  # each connection is independent of the others
        want = model.run(HEADER + body)
        rejected = len(want.rejects)
        assert answer == f"ok accepted={rows - rejected} rejected={rejected}\n".encode()
    everything = HEADER + b"".join(bodies)
    expected = model.run(everything).output
    assert server.snapshot.read_text() == expected
    replay = run_cli(str(server.journal), "--quiet", timeout=300)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.decode() == expected
    journal = server.journal.read_bytes()
    assert journal.startswith(HEADER) and len(journal) == len(everything)
    print(f"{conns} connections x {rows} rows: {elapsed:.1f} s")


def test_load_small(tmp_path):
    check_load(tmp_path, conns=200, rows=100, timeout=120)


@pytest.mark.slow
def test_load_small_with_shards_on_ray(tmp_path):
    if not os.environ.get("CI"):
        pytest.importorskip("ray")
    check_load(tmp_path, 200, 100, 180, "--backend", "ray", "--workers", "2")


@pytest.mark.slow
def test_load_2000_connections_of_500_rows(tmp_path):
    check_load(tmp_path, conns=2000, rows=500, timeout=900)


def test_crash_loses_no_acknowledged_row(tmp_path):
    raise_nofile_limit()
    conns, rows = 400, 200
    bodies = [conn_rows(i, rows) for i in range(conns)]
    server = Serve(tmp_path, "--workers", "2")
    acked: dict[int, bytes] = {}

    async def crash_mid_load() -> None:
        task = asyncio.ensure_future(load(server.port, [HEADER + b for b in bodies], acked, trickle=True))
        while len(acked) < conns // 4:
            assert not task.done(), "the load ended before the crash"
            await asyncio.sleep(0.005)
        server.proc.kill()
        await asyncio.wait_for(task, 60)

    asyncio.run(crash_mid_load())
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert conns // 4 <= len(acked) < conns, "the crash came too late to test anything"
    journal = server.journal.read_bytes()
    by_conn: dict[int, list[bytes]] = {}
    for ln in journal.splitlines(keepends=True)[1:]:
        by_conn.setdefault(int(ln.split(b",")[1]) // 3, []).append(ln)  # connection i has clients 3i..3i+2
    # Every acknowledged connection's rows are in the journal, whole and in order.
    for i in acked:
        assert b"".join(by_conn[i]) == bodies[i], i
    # Restart on the same journal: it is replayed first, then new rows are appended.
    again = Serve(tmp_path, "--workers", "1", journal=server.journal)
    assert "rows replayed" in again.stderr()
    extra = conn_rows(conns, rows)
    assert asyncio.run(send(again.port, HEADER + extra)).startswith(b"ok accepted=")
    assert again.stop() == 0, again.stderr()
    final = again.journal.read_bytes()
    assert final.endswith(extra)
    assert again.snapshot.read_text() == model.run(final).output


def test_connection_protocol(tmp_path):
    server = Serve(tmp_path, "--workers", "2", "--snapshot-every", "3600")
    try:
        messy = (b"\xef\xbb\xbf\r\n Type, CLIENT ,tx,amount\r\ndeposit,1,1,1.0\r\n\r\n  \n"
                 b"deposit,2,2,2.0\nwithdrawal,2,5,3.0\nbogus\ndeposit,1,3,2")  # last line without LF
        assert asyncio.run(send(server.port, messy, piece=3)) == b"ok accepted=3 rejected=2\n"
        assert asyncio.run(send(server.port, b"client,type,tx\n1,deposit,1\n")) == (
            b"error bad header: expected 'type,client,tx,amount', found 'client,type,tx'\n")
        assert asyncio.run(send(server.port, b"")) == b"ok accepted=0 rejected=0\n"
        assert asyncio.run(send(server.port, b"type,client,tx\ndispute,1,1\n")) == b"ok accepted=1 rejected=0\n"
        # SIGHUP rewrites the snapshot now
        before = server.snapshot.stat().st_mtime_ns
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while server.snapshot.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.snapshot.read_text() == (
            "client,available,held,total,locked\n1,2.0000,1.0000,3.0000,false\n2,2.0000,0.0000,2.0000,false\n")
        # a second server on the same port: one clear line, exit 1
        busy = subprocess.run(shardpay_cmd() + ["serve", "--listen", f"127.0.0.1:{server.port}",
                                                "--journal", str(tmp_path / "other.csv")],
                              capture_output=True, timeout=30)
        assert busy.returncode == 1
        assert busy.stderr.decode().endswith(
            f"shardpay: error: cannot listen on 127.0.0.1:{server.port}: address already in use\n")
    finally:
        assert server.stop() == 0
    assert server.journal.read_bytes() == (
        b"type,client,tx,amount\ndeposit,1,1,1.0\n\n  \ndeposit,2,2,2.0\nwithdrawal,2,5,3.0\nbogus\n"
        b"deposit,1,3,2\ndispute,1,1\n")
    replay = run_cli(str(server.journal), "--quiet")
    assert replay.stdout.decode() == server.snapshot.read_text()


def test_sigterm_drains_open_connections(tmp_path):
    server = Serve(tmp_path, "--workers", "1")

    async def slow_client() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(HEADER + b"deposit,7,1,5\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)  # the open connection still finishes
        await asyncio.sleep(0.5)
        writer.write(b"deposit,7,2,5\n")
        writer.write_eof()
        answer = await reader.read()
        writer.close()
        with socket.socket() as s:  # no longer accepting
            assert s.connect_ex(("127.0.0.1", server.port)) != 0
        return answer

    assert asyncio.run(slow_client()) == b"ok accepted=2 rejected=0\n"
    assert server.proc.wait(30) == 0
    server.log.close()
    assert server.snapshot.read_text() == "client,available,held,total,locked\n7,10.0000,0.0000,10.0000,false\n"


def test_help_and_default_listen_is_loopback():
    out = run_cli("serve", "--help")
    assert out.returncode == 0 and b"127.0.0.1:7878" in out.stdout
    assert run_cli("--help").returncode == 0
    assert run_cli("serve").returncode == 2  # --journal is required


def test_restart_cuts_a_torn_last_line(tmp_path):
    journal = tmp_path / "journal.csv"
    journal.write_bytes(HEADER + b"deposit,1,1,5\ndeposit,1,2,3\nwithdr")  # killed mid-write: never acknowledged
    server = Serve(tmp_path, "--workers", "1", journal=journal)
    assert "cut a torn last line (6 bytes)" in server.stderr()
    assert "2 rows replayed" in server.stderr()
    assert asyncio.run(send(server.port, HEADER + b"withdrawal,1,3,1\n")) == b"ok accepted=1 rejected=0\n"
    assert server.stop() == 0
    assert journal.read_bytes() == HEADER + b"deposit,1,1,5\ndeposit,1,2,3\nwithdrawal,1,3,1\n"
    assert server.snapshot.read_text() == "client,available,held,total,locked\n1,7.0000,0.0000,7.0000,false\n"


def test_a_journal_with_a_bad_header_is_refused(tmp_path):
    journal = tmp_path / "journal.csv"
    journal.write_bytes(b"client,type\n1,deposit\n")
    out = subprocess.run(shardpay_cmd() + ["serve", "--listen", "127.0.0.1:0", "--journal", str(journal)],
                         capture_output=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.decode().endswith(
        "shardpay: error: bad header: expected 'type,client,tx,amount', found 'client,type'\n")
    assert journal.read_bytes() == b"client,type\n1,deposit\n"
