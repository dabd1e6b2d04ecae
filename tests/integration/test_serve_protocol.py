"""``shardpay serve`` end to end, the protocol: batches answered row by row, several on one
connection, refusals that apply nothing, ``shardpay send`` and ``shardpay.Client``, the journal's
export, snapshots, and load (every answer and the final balances against the reference model)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import time

import pytest

import shardpay
from shardpay.errors import ServeError
from shardpay.serve.protocol import batch_request, default_batch_id
from shardpay.testing import model
from tests.conftest import FIXTURES, run_cli, shardpay_cmd
from tests.integration.serve_harness import (
    HEADER,
    Serve,
    close,
    conn_rows,
    load,
    raise_nofile_limit,
    read_answer,
    send,
    wait_for,
)

SPEC = (FIXTURES / "spec_example.csv").read_bytes()


def cli_answer(status: str, batch_id: str, body: bytes, tmp_path) -> bytes:
    """The answer a batch should get: the batch CLI's rejects of the same bytes, as answer lines."""
    path, rejects, stats = tmp_path / "batch.csv", tmp_path / "rejects.csv", tmp_path / "stats.json"
    path.write_bytes(body)
    r = run_cli(str(path), "-q", "--rejects", str(rejects), "--stats", str(stats))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(rejects.read_text())))[1:]
    accepted = json.loads(stats.read_text())["rows_accepted"]
    return (f"{status} {batch_id} accepted={accepted} rejected={len(rows)}\n".encode()
            + b"".join(f"{r[0]},{r[5]},{r[6]}\n".encode() for r in rows))


@pytest.fixture
def server(tmp_path):
    s = Serve(tmp_path, "--workers", "2", "--snapshot-every", "3600")
    yield s
    assert s.stop() == 0, s.stderr()


def test_a_batch_is_answered_row_by_row_in_its_own_line_numbers(server, tmp_path):
    assert send(server.port, "spec", SPEC) == cli_answer("ok", "spec", SPEC, tmp_path)
    messy = (b"\xef\xbb\xbf\r\n Type, CLIENT ,tx,amount\r\ndeposit,7,101,1.0\r\n\r\n  \n"
             b"deposit,8,102,2.0\nwithdrawal,8,105,3.0\nbogus\ndeposit,7,103,2")  # last line without LF
    answer = send(server.port, "messy", messy)
    assert answer.startswith(b"ok messy accepted=3 rejected=2\n7,insufficient_funds,available 2.0000 is less than "
                             b"3.0000\n8,invalid_row,")
    assert answer == cli_answer("ok", "messy", messy, tmp_path)
    assert send(server.port, "empty", b"") == b"ok empty accepted=0 rejected=0\n"
    assert send(server.port, "three-fields", b"type,client,tx\ndispute,7,101\n") == (
        b"ok three-fields accepted=1 rejected=0\n")


def test_several_batches_on_one_connection_then_an_error_closes_it(server):
    async def session() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        answers = []
        for i in range(3):
            writer.write(batch_request(f"b{i}", HEADER + b"deposit,%d,%d,1\n" % (i, 500 + i)))
            answers.append(await read_answer(reader))
        writer.write(batch_request("bad", b"client,type,tx\n1,deposit,1\n"))
        answers.append(await read_answer(reader))
        answers.append(await reader.read())  # closed by the server
        await close(writer)
        return answers

    assert asyncio.run(session()) == [
        b"ok b0 accepted=1 rejected=0\n", b"ok b1 accepted=1 rejected=0\n", b"ok b2 accepted=1 rejected=0\n",
        b"error bad bad_header: line 1: bad header: expected 'type,client,tx,amount', found 'client,type,tx'\n", b""]


@pytest.mark.parametrize(("request_bytes", "answer"), [
    (b"batch c1 5\nabcdecommit 1 00000000\n", b"error c1 checksum: the batch has 1 lines and CRC32 8587d865, "
                                               b"the commit line says 1 and 00000000; nothing was applied\n"),
    (b"batch c2 5\nabcde\n", b"error c2 protocol: expected 'commit LINES CRC32' after the batch's 5 bytes, found ''\n"),
    (b"hello\n", b"error - protocol: expected 'auth NAME TOKEN', 'batch ID SIZE' or 'commit LINES CRC32', "
                 b"found 'hello'\n"),
    (b"auth alice 0123456789abcdef\n", b"error - auth: this server takes no token\n"),
    (b"commit 1 00000000\n", b"error - protocol: expected 'batch ID SIZE'\n"),
])
def test_refusals_apply_nothing(server, request_bytes, answer):
    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        got = await reader.read()
        await close(writer)
        return got

    assert asyncio.run(one()) == answer
    assert send(server.port, "after", HEADER) == b"ok after accepted=0 rejected=0\n"
    records = run_cli("journal", "list", str(server.journal)).stdout.decode().splitlines()
    assert [r.split(",")[1] for r in records[1:]] == ["after"]


def test_the_client_class_and_retries(server):
    with shardpay.Client(f"127.0.0.1:{server.port}") as client:
        first = client.send(SPEC, "spec")
        assert (first.status, first.accepted, first.rejected) == ("ok", 8, 2)
        assert [str(r) for r in first.rejects] == ["line 6: insufficient_funds: available 2.0000 is less than 3.0000",
                                                   "line 11: account_locked: account 1 is locked by a chargeback"]
        again = client.send(SPEC, "spec")  # the same connection
        assert again.status == "already" and again.rejects == first.rejects
        with pytest.raises(ServeError) as err:
            client.send(SPEC + b"deposit,1,99,1\n", "spec")
        assert err.value.code == "conflict" and str(err.value).startswith("batch 'spec' not applied: conflict:")
        assert client.send(HEADER + b"deposit,9,900,1\n").batch_id == default_batch_id(HEADER + b"deposit,9,900,1\n")
    with pytest.raises(ServeError, match="cannot connect to 127.0.0.1:1: Connection refused"):
        shardpay.Client("127.0.0.1:1").send(SPEC)


def test_shardpay_send(server, tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes(SPEC)
    to = f"127.0.0.1:{server.port}"
    sent = run_cli("send", str(path), "--to", to)
    batch_id = default_batch_id(SPEC)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.decode() == (
        f"batch {batch_id}: applied (accepted 8, rejected 2)\n"
        "line 6: insufficient_funds: available 2.0000 is less than 3.0000\n"
        "line 11: account_locked: account 1 is locked by a chargeback\n")
    again = run_cli("send", "-", "--to", to, input=SPEC)
    assert again.returncode == 0
    assert again.stdout.decode().splitlines()[0] == (
        f"batch {batch_id}: already applied before; nothing applied now (accepted 8, rejected 2)")
    other = run_cli("send", "-", "--to", to, "--batch-id", batch_id, input=SPEC + b"deposit,3,30,1\n")
    assert other.returncode == 1 and other.stdout == b""
    assert other.stderr.decode() == (f"shardpay: error: batch '{batch_id}' not applied: conflict: batch id "
                                     f"'{batch_id}' was committed before with other bytes; nothing was applied\n")
    assert run_cli("send", "-", "--to", to, "--batch-id", "a b", input=SPEC).returncode == 2
    missing = run_cli("send", str(tmp_path / "none.csv"), "--to", to)
    assert missing.returncode == 1 and b"cannot read" in missing.stderr


def test_export_reproduces_the_servers_balances(server, tmp_path):
    for i in range(5):
        assert send(server.port, f"b{i}", HEADER + conn_rows(i, 50)).startswith(b"ok ")
    send(server.port, "spec", SPEC)
    # SIGHUP writes the snapshot now
    before = server.snapshot.stat().st_mtime_ns
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.snapshot.stat().st_mtime_ns != before, what="the snapshot after SIGHUP")
    out = tmp_path / "tx.csv"
    assert run_cli("journal", "export", str(server.journal), "-o", str(out)).returncode == 0
    replay = run_cli(str(out), "--quiet")
    assert replay.returncode == 0
    assert replay.stdout == server.snapshot.read_bytes()
    assert replay.stdout.decode() == model.run(out.read_bytes()).output


def test_help_default_listen_and_port_in_use(server, tmp_path):
    out = run_cli("serve", "--help")
    assert out.returncode == 0 and b"127.0.0.1:7878" in out.stdout and b"--token-file" in out.stdout
    assert run_cli("send", "--help").returncode == 0
    assert run_cli("journal", "--help").returncode == 0
    assert run_cli("serve").returncode == 2  # --journal is required
    busy = subprocess.run(shardpay_cmd() + ["serve", "--listen", f"127.0.0.1:{server.port}",
                                            "--journal", str(tmp_path / "other")], capture_output=True, timeout=30)
    assert busy.returncode == 1
    assert busy.stderr.decode().endswith(
        f"shardpay: error: cannot listen on 127.0.0.1:{server.port}: address already in use\n")


def check_load(tmp_path, conns: int, rows: int, timeout: float, *server_args: str) -> None:
    raise_nofile_limit()
    bodies = [HEADER + conn_rows(i, rows) for i in range(conns)]
    server = Serve(tmp_path, "--workers", "1", *server_args)
    try:
        t0 = time.monotonic()
        answers = asyncio.run(asyncio.wait_for(load(server.port, [(f"c{i}", b) for i, b in enumerate(bodies)]),
                                               timeout))
        elapsed = time.monotonic() - t0
    finally:
        assert server.stop() == 0, server.stderr()
    for i, (body, answer) in enumerate(zip(bodies, answers)):  # each batch is independent of the others
        want = model.run(body)
        head = f"ok c{i} accepted={rows - len(want.rejects)} rejected={len(want.rejects)}\n".encode()
        assert answer.startswith(head), (i, answer[:200])
        assert [int(x.split(b",")[0]) for x in answer.splitlines()[1:]] == [line for line, _ in want.rejects]
        assert [x.split(b",")[1].decode() for x in answer.splitlines()[1:]] == [r for _, r in want.rejects]
    expected = model.run(HEADER + b"".join(b[len(HEADER):] for b in bodies)).output
    assert server.snapshot.read_text() == expected
    export = tmp_path / "tx.csv"
    assert run_cli("journal", "export", str(server.journal), "-o", str(export)).returncode == 0
    replay = run_cli(str(export), "--quiet", timeout=300)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.decode() == expected
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
    check_load(tmp_path, 2000, 500, 900, "--max-connections", "2000")
