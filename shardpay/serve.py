"""``shardpay serve``: CSV transactions over TCP into one long-lived :class:`~shardpay.engine.Engine`.

::

    client 1 ──TCP──┐   asyncio event loop (one thread)
    client 2 ──TCP──┤    per connection: header check, cut at LF, count rows
      ...           ├──> queue of whole-line batches (one pending per connection)
    client N ──TCP──┘          │  group commit: join the queued batches
                               v
                        engine thread (one, so order is kept)
                         1. append to the journal, flush, fsync
                         2. Engine.feed(the same bytes)  (blocks when the engine is behind)
                               │
                               v
                        Engine: reader -> rings -> workers (see shardpay.engine)

**The journal** is one CSV stream: the header ``type,client,tx,amount``, then
every accepted line of every connection in arrival order, each ending in LF
(CRLF becomes LF; a connection's last line without LF gets one). The engine
is fed exactly the journal's bytes, so engine line numbers are journal line
numbers and ``shardpay JOURNAL`` (the batch CLI) gives the server's balances
and rejects, byte for byte. A batch is written, flushed and ``fsync``\\ ed
before it is fed, and a connection is acknowledged only after all of its
batches are: an acknowledged row is always on disk.

**A connection** sends its own CSV: its first non-empty line is its header
(SPEC "Input"; a BOM at its start is ignored). A bad header is answered with
one line ``error bad header: ...`` and the connection is closed; nothing of
it is journaled. Later lines are cut at LF and queued as one batch per read;
while a batch is queued or being written, nothing more is read from that
connection (asyncio then stops reading its socket: backpressure, no
unbounded buffer; at most one read, :data:`READ_BYTES`, plus one partial line
per connection). When the client closes its write side the server answers
``ok accepted=N rejected=M``: N + M is the connection's non-empty data
rows; M counts the rejected lines (invalid rows included) in its journal
line ranges, read incrementally with ``Engine.rejects_since`` (only what the
reject spools gained since the last call; lines below every open
connection's are forgotten). A line longer than
:data:`~shardpay.reader.MAX_LINE_BYTES` is answered with ``error ...`` and
the connection closed (the lines before it stay journaled and applied).

**Group commit.** One commit at a time runs on the engine thread; batches
queued meanwhile are joined into the next one (up to :data:`COMMIT_BYTES`), so
one ``fsync`` serves every connection that was waiting. Reject counts for
closing connections are likewise served together by one ``Engine.rejects_since`` call.

**Snapshot.** With ``--snapshot OUT``, OUT holds ``client,available,held,
total,locked`` (the batch CLI's bytes), rewritten atomically after start-up,
every ``--snapshot-every`` seconds, on SIGHUP and at shutdown.

**Signals.** SIGTERM (or SIGINT): stop accepting, let open connections finish
(each still gets its ``ok``), write the final snapshot, close the engine, exit
0. SIGHUP: write the snapshot now. SIGKILL loses nothing acknowledged.

**Restart.** If the journal exists it is fed to the engine first (a torn last
line, never acknowledged, is cut off), then new lines are appended to it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import errno
import os
import re
import resource
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .decode import parse_header
from .errors import InputError, OutputError, ShardpayError
from .options import add_backend_options, add_workers_option, check_backend_options
from .reader import MAX_LINE_BYTES

__all__ = ["COMMIT_BYTES", "JOURNAL_HEADER", "READ_BYTES", "ServeOptions", "Server", "main", "parse_args"]

JOURNAL_HEADER = b"type,client,tx,amount\n"
"""The journal's first line."""
READ_BYTES = 64 * 1024
"""Bytes read from a connection per step (one batch at most). Larger: fewer batches, more memory per connection."""
COMMIT_BYTES = 4 * 1024 * 1024
"""Most bytes joined into one commit (one write + fsync + feed). Larger: fewer fsyncs, longer waits."""
DEFAULT_LISTEN = "127.0.0.1:7878"
"""Loopback by default: a payment journal is not for the network unless asked."""
BACKLOG = 4096
"""Listen backlog: many clients may connect at once (the kernel caps it at ``somaxconn``)."""

_BOM = b"\xef\xbb\xbf"
_NO_COMMA = re.compile(rb"^[^,\n]*\n", re.M)  # only such lines can be empty
_NOT_COMMA_LF = bytes(b for b in range(256) if b not in b",\n")
_EOF = object()


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """``shardpay serve``'s command line, parsed."""

    host: str
    port: int
    workers: int
    journal: str
    snapshot: str | None
    snapshot_every: float
    fsync: bool = True
    backend: str = "local"
    ray_address: str | None = None


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 0..65535)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not s > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return s


def parse_args(argv: list[str]) -> ServeOptions:
    """Parse ``shardpay serve``'s arguments; argparse exits 2 on a usage error."""
    from .engine import default_workers

    p = argparse.ArgumentParser(
        prog="shardpay serve",
        description=(
            "Serve the engine over TCP. Each connection streams a transactions CSV (its own\n"
            "header first); every line is appended to the journal (flushed, fsynced) before it\n"
            "is applied, and a connection that closes its write side gets one line\n"
            "'ok accepted=N rejected=M'. 'shardpay JOURNAL' replays the journal to exactly\n"
            "the server's balances."
        ),
        epilog=(
            "examples:\n"
            "  shardpay serve --journal tx.journal.csv --snapshot accounts.csv --snapshot-every 5\n"
            "  (printf 'type,client,tx,amount\\ndeposit,1,1,5\\n') | nc -N 127.0.0.1 7878\n\n"
            "Signals: SIGHUP writes the snapshot now; SIGTERM/SIGINT stop accepting, let open\n"
            "connections finish, write the snapshot and exit 0. Restarting on the same journal\n"
            "replays it first: no acknowledged row is lost. Exit 1: fatal error (port in use, ...)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", type=_listen, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}, loopback; port 0 picks a free one)")
    add_workers_option(p, default_workers())
    p.add_argument("--journal", required=True, metavar="FILE",
                   help="the journal CSV: replayed at start if it exists, then appended to")
    p.add_argument("--snapshot", metavar="OUT", help="accounts CSV rewritten atomically every --snapshot-every "
                   "seconds, on SIGHUP and at shutdown")
    p.add_argument("--snapshot-every", type=_seconds, default=10.0, metavar="SECONDS",
                   help="seconds between snapshots (default 10)")
    p.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="flush the journal but do not fsync it (survives a server crash, not a power cut)")
    add_backend_options(p)
    a = p.parse_args(argv)
    check_backend_options(p, a)
    return ServeOptions(host=a.listen[0], port=a.listen[1], workers=a.workers or default_workers(),
                        journal=a.journal, snapshot=a.snapshot, snapshot_every=a.snapshot_every, fsync=a.fsync,
                        backend=a.backend, ray_address=a.ray_address)


@dataclass(eq=False)
class _Conn:
    """One connection's bookkeeping: its journal line ranges and row counts."""

    ranges: list[tuple[int, int]] = field(default_factory=list)  # [start, end) journal lines
    rows: int = 0  # non-empty data lines journaled


def count_lines(batch: bytes) -> tuple[int, int]:
    """``(lines, non-empty lines)`` of whole LF-terminated lines (SPEC: empty after trimming)."""
    lines = batch.count(b"\n")
    if b"\n\n" not in b"\n" + batch.translate(None, _NOT_COMMA_LF):  # every line has a comma: none is empty
        return lines, lines
    empty = 0
    for m in _NO_COMMA.finditer(batch):  # a line with a comma is never empty
        if not m.group()[:-1].decode("utf-8", "replace").strip():
            empty += 1
    return lines, lines - empty


def raise_nofile_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _log(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"shardpay serve: {message}\n")
        sys.stderr.flush()


class Server:
    """The server: one engine, one journal, one asyncio listener (see the module docstring)."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.next_line = 1  # journal line number of the next line appended
        self.queue: list[tuple[bytes, asyncio.Future]] = []
        self.closing: list[tuple[_Conn, asyncio.Future]] = []
        self.handlers: set[asyncio.Task] = set()
        self.open_from: dict[_Conn, int] = {}  # open connection -> lowest journal line it can own
        self.reject_cursor: list[int] | None = None
        self.reject_lines: list[int] = []  # rejected journal lines at or above the lowest open connection's
        self.failed: BaseException | None = None

    # -- engine thread work (run one at a time, in order) ---------------------------------

    def _commit(self, data: bytes) -> None:
        self.journal.write(data)
        self.journal.flush()
        if self.opts.fsync:
            os.fsync(self.journal.fileno())
        self.engine.feed(data)

    def _write_snapshot(self) -> None:
        from .report import HEADER, atomic_output

        accounts = self.engine.snapshot()
        if self.opts.snapshot:
            with atomic_output(self.opts.snapshot) as f:
                f.write(HEADER)
                f.writelines(a.csv_line() for a in accounts)

    def _final_snapshot(self) -> int:
        """Close the engine (every row applied) and write the snapshot from its result; return the accounts."""
        from .report import atomic_output, write_accounts

        with self.engine.close() as result:
            if self.opts.snapshot:
                with atomic_output(self.opts.snapshot) as f:
                    write_accounts(f, result.accounts)
            return len(result.accounts[0])

    def _new_reject_lines(self) -> list[int]:
        rejects, self.reject_cursor = self.engine.rejects_since(self.reject_cursor)
        return [r.line for r in rejects]

    def _open_journal(self) -> int:
        """Open the journal, feed what it holds to the engine; return the rows replayed."""
        path = self.opts.journal
        self.journal = open(path, "a+b")  # noqa: SIM115 - lives as long as the server
        size = os.fstat(self.journal.fileno()).st_size
        replayed = 0
        if size:
            self.journal.seek(0)
            lines = 0
            end = 0  # offset just past the last LF
            pos = 0
            while data := self.journal.read(1 << 20):
                nl = data.rfind(b"\n")
                if nl >= 0:
                    end = pos + nl + 1
                lines += data.count(b"\n")
                pos += len(data)
            if end < size:  # a torn last line: written, never acknowledged
                self.journal.truncate(end)
                _log(f"journal: cut a torn last line ({size - end} bytes)")
            self.journal.seek(0)
            left = end
            while left:
                data = self.journal.read(min(1 << 20, left))
                left -= len(data)
                self.engine.feed(data)
            self.journal.seek(0, os.SEEK_END)
            self.next_line = lines + 1
            replayed = max(0, lines - 1)
        if not size or not end:
            self.journal.truncate(0)
            self._commit(JOURNAL_HEADER)
            self.next_line = 2
        return replayed

    # -- event loop side --------------------------------------------------------------------

    async def _run_engine(self, fn, *args):  # noqa: ANN001, ANN202
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _committer(self) -> None:
        """Group commit: write + fsync + feed every queued batch, then wake their connections."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                size = 0
                n = 0
                while n < len(self.queue) and (n == 0 or size + len(self.queue[n][0]) <= COMMIT_BYTES):
                    size += len(self.queue[n][0])
                    n += 1
                items, self.queue = self.queue[:n], self.queue[n:]
                data = items[0][0] if n == 1 else b"".join(b for b, _ in items)
                try:
                    await self._run_engine(self._commit, data)
                except BaseException as err:
                    self._fail(err)
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(ConnectionAbortedError("server failed"))
                    return
                for _, fut in items:
                    if not fut.done():
                        fut.set_result(None)
            if self.closing:
                items, self.closing = self.closing, []
                try:
                    new = await self._run_engine(self._new_reject_lines)
                except BaseException as err:
                    self._fail(err)
                    return
                lines = self.reject_lines
                lines.extend(new)  # each call's lines are above every earlier call's: stays sorted
                for conn, fut in items:
                    rejected = sum(bisect.bisect_left(lines, b) - bisect.bisect_left(lines, a)
                                   for a, b in conn.ranges)
                    if not fut.done():
                        fut.set_result(rejected)
                    self.open_from.pop(conn, None)
                # Forget rejects below every open connection's lines: memory stays bounded.
                low = min(self.open_from.values(), default=self.next_line)
                del lines[: bisect.bisect_left(lines, low)]

    async def _submit(self, conn: _Conn, lines: bytes) -> None:
        if b"\r" in lines:
            lines = lines.replace(b"\r\n", b"\n")
        n, rows = count_lines(lines)
        conn.ranges.append((self.next_line, self.next_line + n))
        conn.rows += rows
        self.next_line += n
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((lines, fut))
        self.wake.set()
        await fut

    async def _rejected(self, conn: _Conn) -> int:
        fut = asyncio.get_running_loop().create_future()
        self.closing.append((conn, fut))
        self.wake.set()
        return await fut

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.handlers.add(task)
        try:
            reply = await self._serve_connection(reader)
            writer.write(reply.encode())
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away; its journaled rows stay
        finally:
            self.handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader) -> str:
        conn = _Conn()
        self.open_from[conn] = self.next_line
        try:
            return await self._serve_lines(conn, reader)
        finally:
            self.open_from.pop(conn, None)

    async def _serve_lines(self, conn: _Conn, reader: asyncio.StreamReader) -> str:
        buf = b""
        header = False
        line = 1  # the connection's own line number of buf's first line
        while True:
            data = await reader.read(READ_BYTES)
            eof = not data
            buf = buf + data if buf else data
            if not header:
                if line == 1 and buf.startswith(_BOM):
                    buf = buf[3:]
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0 and not (eof and buf):
                        break
                    raw, buf = (buf[:nl], buf[nl + 1:]) if nl >= 0 else (buf, b"")
                    line += 1
                    if raw.decode("utf-8", "replace").strip():
                        try:
                            parse_header(raw.removesuffix(b"\r"))
                        except InputError as err:
                            return f"error {err}\n"
                        header = True
                        break
                if not header and len(buf) > MAX_LINE_BYTES:
                    return f"error bad header: the first line is longer than {MAX_LINE_BYTES} bytes\n"
            if header:
                cut = buf.rfind(b"\n") + 1
                if eof and buf and cut < len(buf):
                    buf += b"\n"
                    cut = len(buf)
                if cut:
                    lines, buf = (buf, b"") if cut == len(buf) else (buf[:cut], buf[cut:])
                    line += lines.count(b"\n")
                    await self._submit(conn, lines)
                if len(buf) > MAX_LINE_BYTES:
                    return f"error line {line} is longer than {MAX_LINE_BYTES} bytes; connection closed\n"
            if eof:
                break
        rejected = await self._rejected(conn) if conn.rows else 0
        return f"ok accepted={conn.rows - rejected} rejected={rejected}\n"

    def _fail(self, err: BaseException) -> None:
        if self.failed is None:
            self.failed = err
            self.stop.set()

    async def _snapshots(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.hup.wait(), self.opts.snapshot_every)
            self.hup.clear()
            try:
                await self._run_engine(self._write_snapshot)
            except OutputError as err:  # the folder is not writable now: try again next time
                _log(f"snapshot not written: {err}")
            except BaseException as err:
                self._fail(err)
                return

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code."""
        from .engine import Engine

        opts = self.opts
        loop = asyncio.get_running_loop()
        raise_nofile_limit()
        # The engine forks first: before any thread exists, and before the listening
        # socket does (a child holding it would keep accepting after we stop).
        self.engine = Engine(workers=opts.workers, backend=opts.backend, ray_address=opts.ray_address)
        self.engine.start()
        try:
            server = await asyncio.start_server(self._handle, opts.host, opts.port, backlog=BACKLOG,
                                                limit=READ_BYTES, start_serving=False)
        except OSError as err:
            self.engine.abort()
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise ShardpayError(f"cannot listen on {opts.host}:{opts.port}: {reason}") from None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shardpay-engine")
        self.stop = asyncio.Event()
        self.hup = asyncio.Event()
        self.wake = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.hup.set)
        tasks: list[asyncio.Task] = []
        try:
            try:
                replayed = await self._run_engine(self._open_journal)
                await self._run_engine(self._write_snapshot)  # checks the journal's header too
            except OSError as err:
                raise ShardpayError(f"cannot use the journal {opts.journal!r}: {err.strerror or err}") from None
            tasks.append(asyncio.create_task(self._committer()))
            if opts.snapshot:
                tasks.append(asyncio.create_task(self._snapshots()))
            await server.start_serving()
            host, port = server.sockets[0].getsockname()[:2]
            _log(f"listening on {host}:{port} (workers {opts.workers}, journal {opts.journal}: "
                 f"{replayed:,} rows replayed)")
            await self.stop.wait()
            server.close()
            if self.failed is None:
                _log(f"stopping: waiting for {len(self.handlers)} open connections")
                while self.handlers and self.failed is None:
                    await asyncio.wait(list(self.handlers) + [tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            if self.failed is not None:
                raise self.failed
            for t in tasks:
                t.cancel()
            accounts = await self._run_engine(self._final_snapshot)
            _log(f"stopped: {self.next_line - 2:,} journal lines, {accounts:,} accounts")
            return 0
        finally:
            for t in tasks:
                t.cancel()
            for t in list(self.handlers):
                t.cancel()
            server.close()
            self.engine.abort()
            self.pool.shutdown(wait=False)
            if hasattr(self, "journal"):
                self.journal.close()


def main(argv: list[str]) -> int:
    """``shardpay serve ...``: run the server; return the exit code.

    Raises:
        ShardpayError: a fatal error (port in use, journal unusable, ...); the
            CLI prints its one line and exits with its code.
    """
    opts = parse_args(argv)
    try:
        return asyncio.run(Server(opts).run())
    except OSError as err:
        message = f"{err.strerror or err}" + (f": {err.filename!r}" if err.filename else "")
        raise ShardpayError(message) from None
