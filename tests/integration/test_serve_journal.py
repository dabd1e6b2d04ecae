"""``shardpay serve``, exactly once and durable: a batch the client never finished applies nothing,
a retried batch applies once (across a crash and a restart), two servers never share a journal,
a failed journal write applies nothing and the server goes on, and a damaged journal stops the start.

Each test reruns one probe of issue 22 as a client (or a crash) would.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import stat
import subprocess
import sys
import time

from shardpay.serve.protocol import batch_request
from shardpay.testing import model
from tests.conftest import run_cli, shardpay_cmd
from tests.integration.serve_harness import (
    HEADER,
    STATUS,
    Serve,
    conn_rows,
    load,
    raise_nofile_limit,
    send,
    wait_for,
)

_CLIENT = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex(sys.argv[2]))
print("sent", flush=True)
time.sleep(120)
"""


def batch_ids(journal) -> list[str]:
    listing = run_cli("journal", "list", str(journal))
    assert listing.returncode == 0, listing.stderr
    return [line.split(",")[1] for line in listing.stdout.decode().splitlines()[1:]]


def killed_client(port: int, data: bytes) -> None:
    """A client process that sends ``data`` and is killed (SIGKILL: the kernel closes its socket with a FIN)."""
    with subprocess.Popen([sys.executable, "-c", _CLIENT, str(port), data.hex()], stdout=subprocess.PIPE) as proc:
        assert proc.stdout.readline() == b"sent\n"
        time.sleep(0.2)
        proc.kill()


def test_a_client_killed_mid_batch_applies_nothing(tmp_path):
    server = Serve(tmp_path, "--workers", "1")
    try:
        assert send(server.port, "d", HEADER + b"deposit,1,1,1000\n").startswith(b"ok ")
        meant = HEADER + b"withdrawal,1,2,250.00\n"
        whole = batch_request("w1", meant)
        cut_in_rows = whole.index(b"25") + 2  # "withdrawal,1,2,25": meant 250.00
        for end in (cut_in_rows, len(b"batch w1 00\n") + len(meant), len(whole) - 5):
            killed_client(server.port, whole[:end])
        wait_for(lambda: server.stderr().count("inside batch 'w1': nothing of it was applied") >= 1,
                 what="the server to notice the dead clients")
        assert batch_ids(server.journal) == ["d"]
        assert send(server.port, "w1", meant) == b"ok w1 accepted=1 rejected=0\n"  # not duplicate_tx
    finally:
        assert server.stop() == 0, server.stderr()
    assert server.snapshot.read_text() == "client,available,held,total,locked\n1,750.0000,0.0000,750.0000,false\n"


def test_a_retried_dispute_applies_once(tmp_path):
    server = Serve(tmp_path, "--workers", "2")
    try:
        assert send(server.port, "d", HEADER + b"deposit,1,1,100\n").startswith(b"ok ")

        async def unacknowledged() -> None:  # the client sends its dispute and dies before reading the answer
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(batch_request("dispute-a", HEADER + b"dispute,1,1,\n"))
            await writer.drain()
            writer.transport.abort()
            await asyncio.sleep(0)  # let the loop finish closing it

        asyncio.run(unacknowledged())
        wait_for(lambda: "dispute-a" in batch_ids(server.journal), what="the dispute to be committed")
        assert send(server.port, "resolve-b", HEADER + b"resolve,1,1,\n") == b"ok resolve-b accepted=1 rejected=0\n"
        assert send(server.port, "dispute-a", HEADER + b"dispute,1,1,\n") == (
            b"already dispute-a accepted=1 rejected=0\n")
    finally:
        assert server.stop() == 0, server.stderr()
    assert server.snapshot.read_text() == "client,available,held,total,locked\n1,100.0000,0.0000,100.0000,false\n"


def test_two_servers_on_one_journal(tmp_path):
    first = Serve(tmp_path, "--workers", "1")
    try:
        assert send(first.port, "a", HEADER + b"deposit,1,1,5\n").startswith(b"ok ")
        t0 = time.monotonic()
        second = subprocess.run(shardpay_cmd() + ["serve", "--listen", "127.0.0.1:0", "--journal", str(first.journal)],
                                capture_output=True, timeout=60)
        assert time.monotonic() - t0 < 5
        assert second.returncode == 1
        assert second.stderr.decode() == (f"shardpay: error: the journal '{first.journal}' is in use by another "
                                          "shardpay serve (it holds the file's lock)\n")
        assert send(first.port, "b", HEADER + b"deposit,1,2,5\n").startswith(b"ok ")
    finally:
        assert first.stop() == 0, first.stderr()
    assert batch_ids(first.journal) == ["a", "b"]
    again = Serve(tmp_path, "--workers", "1", journal=first.journal)  # restart: a and b are known, not duplicates
    try:
        assert send(again.port, "a", HEADER + b"deposit,1,1,5\n") == b"already a accepted=1 rejected=0\n"
    finally:
        assert again.stop() == 0


def test_a_write_error_mid_journal_applies_nothing_and_the_server_goes_on(tmp_path):
    server = Serve(tmp_path, "--workers", "1")
    # From now on the server process may not grow a file past 64 KiB (its engine's children,
    # already running, are not limited): a journal write that would is a full disk.
    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    acked = []
    try:
        for i in range(3):
            body = HEADER + conn_rows(i, 20)
            assert send(server.port, f"small{i}", body).startswith(b"ok "), server.stderr()
            acked.append(body)
        big = HEADER + b"".join(b"deposit,9,%d,1\n" % tx for tx in range(100_000, 106_000))  # ~100 KB: over the limit
        answer = send(server.port, "big", big)
        assert answer.startswith(b"error big journal: cannot write the journal: File too large; nothing was applied")
        body = HEADER + conn_rows(3, 20)
        assert send(server.port, "small3", body).startswith(b"ok ")  # the server goes on
        acked.append(body)
    finally:
        assert server.stop() == 0, server.stderr()
    assert batch_ids(server.journal) == ["small0", "small1", "small2", "small3"]
    expected = model.run(HEADER + b"".join(b[len(HEADER):] for b in acked)).output
    assert server.snapshot.read_text() == expected
    again = Serve(tmp_path, "--workers", "1", journal=server.journal)  # no limit now: the big batch is new
    try:
        assert send(again.port, "big", big).startswith(b"ok big accepted=6000 rejected=0")
    finally:
        assert again.stop() == 0


def _journal_of_three(tmp_path) -> tuple[Serve, list[bytes]]:
    bodies = [HEADER + conn_rows(i, 30) for i in range(3)]
    server = Serve(tmp_path, "--workers", "1")
    try:
        for i, body in enumerate(bodies):
            assert send(server.port, f"b{i}", body).startswith(b"ok ")
    finally:
        assert server.stop() == 0
    return server, bodies


def test_a_damaged_journal_stops_the_start_naming_the_offset(tmp_path):
    server, bodies = _journal_of_three(tmp_path)
    data = bytearray(server.journal.read_bytes())
    middle = data.index(b"batch b1 ")
    digit = data.index(b"deposit,", middle) + len("deposit,")
    data[digit] = ord("9") if data[digit] != ord("9") else ord("8")  # one digit of a client id
    server.journal.write_bytes(bytes(data))
    out = subprocess.run(shardpay_cmd() + ["serve", "--listen", "127.0.0.1:0", "--journal", str(server.journal)],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.decode() == (f"shardpay: error: the journal '{server.journal}' is damaged at offset {middle}: "
                                   "the CRC32 of the record does not match its bytes; nothing was written to it "
                                   "(see docs/serve.md, 'A damaged journal')\n")
    assert server.journal.read_bytes() == bytes(data)


def test_a_torn_tail_is_cut_and_its_batch_can_be_sent_again(tmp_path):
    server, bodies = _journal_of_three(tmp_path)
    data = server.journal.read_bytes()
    server.journal.write_bytes(data[:-7])  # killed while writing b2: never acknowledged
    again = Serve(tmp_path, "--workers", "1", journal=server.journal)
    try:
        assert f"journal: cut a torn last batch ({len(data) - 7 - data.index(b'batch b2 ')} bytes" in again.stderr()
        assert "2 batches, 60 rows replayed" in again.stderr()
        assert send(again.port, "b1", bodies[1]).startswith(b"already b1 ")
        assert send(again.port, "b2", bodies[2]).startswith(b"ok b2 ")
    finally:
        assert again.stop() == 0
    assert again.snapshot.read_text() == model.run(HEADER + b"".join(b[len(HEADER):] for b in bodies)).output


def test_the_wrong_file_as_journal_is_left_untouched(tmp_path):
    accounts = tmp_path / "accounts.csv"
    accounts.write_bytes(b"client,available,held,total,locked\n1,5.0000,0.0000,5.0000,false\n")
    out = subprocess.run(shardpay_cmd() + ["serve", "--listen", "127.0.0.1:0", "--journal", str(accounts)],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.decode() == (f"shardpay: error: '{accounts}' is not a shardpay journal (it starts with "
                                   "'client,available,held,total,locked', not 'shardpay journal 1'); nothing was "
                                   "written to it\n")
    assert accounts.read_bytes() == b"client,available,held,total,locked\n1,5.0000,0.0000,5.0000,false\n"


def test_journal_and_snapshot_are_private(tmp_path):
    server, _ = _journal_of_three(tmp_path)
    assert stat.S_IMODE(server.journal.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.snapshot.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_crash_loses_nothing_acknowledged_and_retries_apply_once(tmp_path):
    raise_nofile_limit()
    batches = [(f"c{i}", HEADER + conn_rows(i, 100)) for i in range(300)]
    server = Serve(tmp_path, "--workers", "2")
    acked: dict[str, bytes] = {}

    async def crash_mid_load() -> None:
        task = asyncio.ensure_future(load(server.port, batches, acked, trickle=True))
        while len(acked) < len(batches) // 4:
            assert not task.done(), "the load ended before the crash"
            await asyncio.sleep(0.005)
        server.proc.kill()
        await asyncio.wait_for(task, 60)

    asyncio.run(crash_mid_load())
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(batches) // 4 <= len(acked) < len(batches), "the crash came too late to test anything"
    assert set(acked) <= set(batch_ids(server.journal))  # every acknowledged batch is on disk
    again = Serve(tmp_path, "--workers", "1", journal=server.journal)
    try:
        answers = asyncio.run(load(again.port, batches))  # every client retries, whatever it was told
    finally:
        assert again.stop() == 0, again.stderr()
    for (batch_id, _), answer in zip(batches, answers):
        m = STATUS.match(answer)
        assert m, answer
        if batch_id in acked:  # the same answer as the first time, and nothing applied
            assert answer == acked[batch_id].replace(b"ok ", b"already ", 1)
    assert sorted(batch_ids(again.journal)) == sorted(b for b, _ in batches)  # each exactly once
    assert again.snapshot.read_text() == model.run(HEADER + b"".join(b[len(HEADER):] for _, b in batches)).output


def test_a_dead_worker_stops_the_server_and_leaves_batches_in_doubt_not_lost(tmp_path):
    import psutil

    server = Serve(tmp_path, "--workers", "2")
    assert send(server.port, "before", HEADER + b"deposit,1,1,5\n").startswith(b"ok ")
    for child in psutil.Process(server.proc.pid).children():
        if "resource_tracker" not in " ".join(child.cmdline()):
            child.kill()  # the engine's reader and workers
    answer = send(server.port, "in-doubt", HEADER + b"deposit,2,2,5\n")
    assert answer == b""  # no answer: the client cannot know, and sends it again
    assert server.proc.wait(30) == 1
    server.log.close()
    assert server.stderr().splitlines()[-1].startswith("shardpay: error: the "), server.stderr()
    assert "Traceback" not in server.stderr()
    again = Serve(tmp_path, "--workers", "1", journal=server.journal)
    try:
        assert send(again.port, "before", HEADER + b"deposit,1,1,5\n").startswith(b"already before ")
        assert send(again.port, "in-doubt", HEADER + b"deposit,2,2,5\n") in (
            b"ok in-doubt accepted=1 rejected=0\n", b"already in-doubt accepted=1 rejected=0\n")
    finally:
        assert again.stop() == 0
    assert again.snapshot.read_text() == (
        "client,available,held,total,locked\n1,5.0000,0.0000,5.0000,false\n2,5.0000,0.0000,5.0000,false\n")
