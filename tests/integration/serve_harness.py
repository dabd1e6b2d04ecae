"""Helpers of the ``shardpay serve`` tests: the server as a subprocess, asyncio clients (loopback).

The clients speak the protocol through :mod:`shardpay.serve.protocol` alone, as a
client in another language would; ``shardpay.Client`` and ``shardpay send`` are
tested through their own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shardpay.serve.protocol import auth_line, batch_request
from tests.conftest import shardpay_cmd

HEADER = b"type,client,tx,amount\n"
STATUS = re.compile(rb"(ok|already) (\S+) accepted=(\d+) rejected=(\d+)\n")


def conn_rows(i: int, rows: int, clients: int = 3) -> bytes:
    """Batch i's rows: clients i*clients.., tx ids i*rows.., every reason code now and then.

    Batches touch disjoint clients and tx ids, so the final state does not depend on how
    they interleave, and each batch's answer equals the model over its rows alone.
    """
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
    """A ``shardpay serve`` subprocess on a free loopback port (its stderr in a file).

    Args:
        tmp: a folder for the journal, snapshot and log.
        args: more ``shardpay serve`` arguments.
        journal: the journal (default ``tmp/journal``).
        preexec: run in the child before exec (resource limits).
        expect_start: False when the server is expected to fail at start.
    """

    def __init__(self, tmp: Path, *args: str, journal: Path | None = None, preexec: Callable[[], None] | None = None,
                 expect_start: bool = True, host: str = "127.0.0.1") -> None:
        self.journal = journal or tmp / "journal"
        self.snapshot = tmp / "snapshot.csv"
        self.log = open(tmp / f"serve-{time.monotonic_ns()}.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            shardpay_cmd() + ["serve", "--listen", f"{host}:0", "--journal", str(self.journal),
                              "--snapshot", str(self.snapshot), *args],
            stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=preexec)
        self.port = 0
        if expect_start:
            self.wait_listening()

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(r"listening on [\d.:a-f]+:(\d+) ", self.stderr())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                pytest.fail(f"server did not start: {self.stderr()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server (its pid only) and wait for its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    def stderr(self) -> str:
        return Path(self.log.name).read_text()

    def rss(self) -> int:
        """The server process's resident memory now, bytes."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer: the status line and its reject lines, or an error line ("" at EOF)."""
    line = await reader.readline()
    m = STATUS.fullmatch(line)
    if m:
        for _ in range(int(m[4])):
            line += await reader.readline()
    return line


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client's connection and wait until it is closed (so no transport outlives its loop)."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def send_batch(port: int, batch_id: str, body: bytes, *, credentials: tuple[str, str] | None = None,
                     tls: ssl.SSLContext | None = None, piece: int = 0, pause: float = 0.0) -> bytes:
    """Connect, (authenticate), send one batch (in ``piece``-byte writes ``pause`` s apart), return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        data = (auth_line(*credentials) if credentials else b"") + batch_request(batch_id, body)
        step = piece or len(data) or 1
        for k in range(0, len(data), step):
            writer.write(data[k: k + step])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        return await read_answer(reader)
    finally:
        await close(writer)


def send(port: int, batch_id: str, body: bytes, **kw: object) -> bytes:
    """:func:`send_batch` from synchronous code."""
    return asyncio.run(send_batch(port, batch_id, body, **kw))  # type: ignore[arg-type]


async def load(port: int, batches: list[tuple[str, bytes]], acked: dict[str, bytes] | None = None,
               trickle: bool = False, credentials: tuple[str, str] | None = None) -> list[bytes | None]:
    """Every batch on its own connection, all at once; with ``acked``, a failed connection gives
    None instead of raising, and each acknowledged answer is recorded by batch id.

    ``trickle``: each connection starts within 2 s and sends 1 KiB every 20 ms (a load that lasts).
    """

    async def one(i: int, batch_id: str, body: bytes) -> bytes | None:
        try:
            if trickle:
                await asyncio.sleep(random.Random(i).random() * 2)
            answer = await send_batch(port, batch_id, body, credentials=credentials,
                                      piece=1024 if trickle else 0, pause=0.02 if trickle else 0.0)
        except OSError:
            if acked is None:
                raise
            return None
        if acked is not None and STATUS.match(answer):
            acked[batch_id] = answer
        return answer

    return await asyncio.gather(*(one(i, b, d) for i, (b, d) in enumerate(batches)))


def token_file(path: Path, *entries: tuple[str, str]) -> Path:
    """Write a token file (mode 0600)."""
    path.write_text("".join(f"{n} {t}\n" for n, t in entries))
    path.chmod(0o600)
    return path


def raise_nofile_limit() -> None:
    """Let this test process open as many sockets as its hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


__all__ = ["HEADER", "STATUS", "Serve", "conn_rows", "load", "raise_nofile_limit", "read_answer", "send", "send_batch",
           "token_file", "wait_for"]
