"""The server: one asyncio listener, one engine thread, one journal (see :mod:`shardpay.serve`).

A connection's life, each step bounded::

    accepted      more than --max-connections open: 'busy', closed
      | auth      with --token-file: 'auth NAME TOKEN' within --idle-timeout, or 'auth'/'timeout'
      v
    IDLE          waiting for 'batch ID SIZE' (--idle-timeout); SIGTERM closes it at once
      | batch     SIZE <= --max-batch-bytes, and room in the --max-buffer-bytes buffer
      v
    BATCH         SIZE bytes, then 'commit LINES CRC32', each read within --idle-timeout;
      |           anything else (EOF, a dead client, a wrong count or CRC): nothing applied
      v
    COMMIT        queued for the engine thread (:mod:`.committer`: group commit),
      |           then answered; back to IDLE
      v
    an error: the 'error' line, the rest of the input discarded briefly, closed

Errors of one connection (a reset, a failed TLS handshake, out of file
descriptors) end that connection only; those logged (refused tokens, dead
clients mid-batch, asyncio's own) come at most one line a second of each
kind. Only a failed engine or journal ends the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import ssl
from typing import Any

from ..errors import OutputError, ShardpayError
from .batches import Book, Outcome, prepare
from .committer import IN_DOUBT, Committer
from .config import ServeOptions
from .files import write_atomically
from .journal import Journal
from .limits import Buffer, RateLog, log
from .protocol import (
    MAX_REQUEST_LINE,
    Auth,
    Batch,
    Commit,
    ProtocolError,
    checksum,
    count_lines,
    error_line,
    parse_request,
)
from .security import Tokens

__all__ = ["READ_BYTES", "STREAM_LIMIT", "Server"]

READ_BYTES = 256 * 1024
"""Most bytes taken from a connection's stream at once while reading a batch."""
STREAM_LIMIT = 64 * 1024
"""A connection's stream buffer: reading pauses past twice this; a request line longer fails."""
BACKLOG = 1024
"""Listen backlog (the kernel caps it at ``somaxconn``); also the most connections accepted at once."""
LINGER_SECONDS = 1.0
"""After an error line, how long the rest of the input is read and dropped, so the client
reads the error instead of a reset."""
LINGER_BYTES = 1 << 20
"""... and how much of it, at most."""

AUTH, IDLE, BATCH, COMMIT = "auth", "idle", "batch", "commit"


class _Gone(Exception):
    """The client closed its side (or died) where a request was expected to go on."""


class _Conn:
    """One connection's state, for the drain (see the module docstring)."""

    __slots__ = ("task", "host", "state", "batch_id", "reserved")

    def __init__(self, task: asyncio.Task, host: str) -> None:
        self.task = task
        self.host = host
        self.state = AUTH
        self.batch_id: str | None = None
        self.reserved = 0


class Server:
    """``shardpay serve``: one engine and journal behind an asyncio listener.

    Args:
        opts: the options (see :class:`~shardpay.serve.config.ServeOptions`).
        journal: the opened, locked journal (not yet scanned).
        tokens: the accepted credentials, or None (no ``auth`` line).
        tls: the server's TLS context, or None (plain TCP).
        max_connections: the checked ``--max-connections``.
    """

    def __init__(self, opts: ServeOptions, journal: Journal, tokens: Tokens | None, tls: ssl.SSLContext | None,
                 max_connections: int) -> None:
        self.opts = opts
        self.journal = journal
        self.tokens = tokens
        self.tls = tls
        self.max_connections = max_connections
        self.conns: set[_Conn] = set()
        self.stopping = False
        self.failed: BaseException | None = None
        self.buffer = Buffer(opts.max_buffer_bytes)
        self.rate_log = RateLog()

    # -- the engine thread ---------------------------------------------------------------------

    async def _on_engine(self, fn: Any, *args: Any) -> Any:
        return await self.committer.call(fn, *args)

    def _write_snapshot(self, final: bool = False) -> None:
        data = self.book.close() if final else self.book.snapshot()
        if self.opts.snapshot:
            write_atomically(self.opts.snapshot, [data])
        self.accounts = data.count(b"\n") - 1

    async def _snapshots(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.hup.wait(), self.opts.snapshot_every)
            self.hup.clear()
            try:
                await self._on_engine(self._write_snapshot)
            except OutputError as err:  # the folder is not writable now: try again next time
                log(f"snapshot not written: {err}")
            except BaseException as err:
                self._fail(err)
                return

    def _fail(self, err: BaseException) -> None:
        if self.failed is None:
            self.failed = err
            self.stop.set()

    # -- the global buffer ----------------------------------------------------------------------

    async def _reserve(self, conn: _Conn, size: int) -> None:
        """Take ``size`` bytes of the global buffer for ``conn``'s batch.

        Raises:
            ProtocolError: ``busy``: no room within ``--idle-timeout``.
        """
        if not await self.buffer.take(size, self.opts.idle_timeout):
            raise ProtocolError("busy", f"no room for {size} bytes in the server's buffer within "
                                        f"{self.opts.idle_timeout:g} s; retry later")
        conn.reserved = size

    def _release(self, conn: _Conn) -> None:
        if conn.reserved:
            self.buffer.give(conn.reserved)
            conn.reserved = 0

    # -- one connection ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else "unix"
        if self.stopping or len(self.conns) >= self.max_connections:
            code, message = ("stopping", "the server is shutting down") if self.stopping else (
                "busy", f"{len(self.conns)} connections are open, the most this server takes; retry later")
            writer.write(error_line(None, code, message))
            writer.close()
            return
        conn = _Conn(asyncio.current_task(), host)  # type: ignore[arg-type]
        self.conns.add(conn)
        try:
            await self._serve(conn, reader, writer)
        except ProtocolError as err:
            await self._refuse(conn, reader, writer, err)
        except asyncio.CancelledError:  # a top-level task: ends here (asyncio 3.11 logs a cancelled handler)
            if self.stopping and conn.state != COMMIT:
                writer.write(error_line(conn.batch_id, "stopping", "the server is shutting down; "
                                        + ("this batch was not applied" if conn.batch_id else "closed")))
        except _Gone:
            if conn.batch_id is not None:
                self.rate_log("gone", f"{host} closed its connection inside batch {conn.batch_id!r}: "
                                      "nothing of it was applied")
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or stopped reading its answers
        except Exception as err:  # noqa: BLE001 - one connection's failure is logged, never the server's
            what = ("out of file descriptors" if getattr(err, "errno", None) in (errno.EMFILE, errno.ENFILE)
                    else f"{type(err).__name__}: {err}")
            self.rate_log(f"conn:{type(err).__name__}", f"connection from {host} failed: {what}")
        finally:
            self.conns.discard(conn)
            self._release(conn)
            writer.close()

    async def _refuse(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      err: ProtocolError) -> None:
        """Answer an error line, drop what the client still sends for a moment, then close."""
        if err.code == "auth":
            self.rate_log("auth", f"refused a connection from {conn.host}: {err.message}")
        writer.write(error_line(conn.batch_id, err.code, err.message))
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            dropped = 0
            async with asyncio.timeout(LINGER_SECONDS):
                await writer.drain()
                while dropped < LINGER_BYTES and (data := await reader.read(READ_BYTES)):
                    dropped += len(data)

    async def _line(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next request line, or None if the client closed its side before one.

        Raises:
            ProtocolError: ``timeout`` or ``protocol`` (a line too long).
            _Gone: the input ends inside a line.
        """
        try:
            async with asyncio.timeout(self.opts.idle_timeout):
                line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:
            if err.partial:
                raise _Gone from None
            return None
        except asyncio.LimitOverrunError:
            raise ProtocolError("protocol", f"a request line is longer than {MAX_REQUEST_LINE} bytes") from None
        except TimeoutError:
            raise ProtocolError("timeout", f"nothing received for {self.opts.idle_timeout:g} s") from None
        if len(line) > MAX_REQUEST_LINE:
            raise ProtocolError("protocol", f"a request line is longer than {MAX_REQUEST_LINE} bytes")
        return line

    async def _body(self, reader: asyncio.StreamReader, size: int) -> bytes:
        parts = []
        left = size
        try:
            while left:
                async with asyncio.timeout(self.opts.idle_timeout):
                    data = await reader.read(min(left, READ_BYTES))
                if not data:
                    raise _Gone
                parts.append(data)
                left -= len(data)
        except TimeoutError:
            raise ProtocolError("timeout", f"nothing received for {self.opts.idle_timeout:g} s, "
                                           f"{size - left} of {size} bytes in") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = "-"
        if self.tokens is not None:
            line = await self._line(reader)
            if line is None:
                return
            try:
                request = parse_request(line)
            except ProtocolError:
                request = None
            if not isinstance(request, Auth):
                raise ProtocolError("auth", "this server needs 'auth NAME TOKEN' first")
            if not self.tokens.verify(request.name, request.token):
                raise ProtocolError("auth", f"unknown name {request.name!r} or wrong token")
            name = request.name
        principal = f"{name}@{conn.host}"
        while not self.stopping:
            conn.state = IDLE
            line = await self._line(reader)
            if line is None:
                return
            conn.state = BATCH
            request = parse_request(line)
            if isinstance(request, Auth):
                raise ProtocolError("auth", "this server takes no token" if self.tokens is None
                                    else "'auth' comes once, first")
            if not isinstance(request, Batch):
                raise ProtocolError("protocol", "expected 'batch ID SIZE'")
            conn.batch_id = request.batch_id
            if request.size > self.opts.max_batch_bytes:
                raise ProtocolError("too_large", f"SIZE {request.size} is over this server's "
                                                 f"--max-batch-bytes {self.opts.max_batch_bytes}")
            await self._reserve(conn, request.size)
            try:
                outcome = await self._batch(conn, reader, request, principal)
            finally:
                self._release(conn)
            if outcome is IN_DOUBT:
                return
            writer.write(outcome.answer(request.batch_id))
            async with asyncio.timeout(self.opts.idle_timeout):
                await writer.drain()
            if outcome.status == "error":
                return
            conn.batch_id = None

    async def _batch(self, conn: _Conn, reader: asyncio.StreamReader, request: Batch, principal: str) -> Outcome:
        """Read one batch's bytes and commit line, check them, and have it committed."""
        body = await self._body(reader, request.size)
        line = await self._line(reader)
        if line is None:
            raise _Gone
        commit = parse_request(line) if line.startswith(b"commit ") else None
        if not isinstance(commit, Commit):
            shown = line[:40].decode("ascii", "backslashreplace").rstrip("\n")
            raise ProtocolError("protocol", f"expected 'commit LINES CRC32' after the batch's {request.size} bytes, "
                                            f"found {shown!r}")
        lines, crc = count_lines(body), checksum(body)
        if (commit.lines, commit.crc32) != (lines, crc):
            raise ProtocolError("checksum", f"the batch has {lines} lines and CRC32 {crc:08x}, the commit line "
                                            f"says {commit.lines} and {commit.crc32:08x}; nothing was applied")
        pending = prepare(request.batch_id, body, principal)
        del body
        conn.state = COMMIT
        return await self.committer.submit(pending)

    # -- start and stop ---------------------------------------------------------------------------

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors (a failed accept or TLS handshake): one line a second of each kind."""
        message = context.get("message", "asyncio error")
        err = context.get("exception")
        if self.stopping and isinstance(err, ValueError) and "_start_serving" in repr(context.get("handle")):
            return  # an accept retry asyncio scheduled after EMFILE, firing once the listener is closed
        if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
            self.rate_log("emfile", f"{message}: out of file descriptors; accepting again in a moment")
        else:
            self.rate_log(f"loop:{message}", f"{message}: {type(err).__name__}: {err}" if err else message)

    async def _drain(self, listener: asyncio.base_events.Server) -> None:
        """SIGTERM: no new batches; open ones get ``--drain-timeout`` to commit; then every
        connection is closed (see the module docstring)."""
        self.stopping = True
        listener.close()
        for c in list(self.conns):
            if c.state in (AUTH, IDLE):
                c.task.cancel()
        open_batches = [c.task for c in self.conns if c.state in (BATCH, COMMIT)]
        log(f"stopping: {len(open_batches)} open batches get {self.opts.drain_timeout:g} s to commit")
        if open_batches:
            await asyncio.wait(open_batches, timeout=self.opts.drain_timeout)
        dropped = [c for c in self.conns if c.state != COMMIT]
        for c in dropped:
            c.task.cancel()
        if dropped:
            log(f"dropped {len(dropped)} batches not committed within the drain timeout (not acknowledged)")
        while self.committer.in_flight and self.failed is None:
            await asyncio.sleep(0.01)
        rest = [c.task for c in self.conns]
        if rest:
            await asyncio.wait(rest, timeout=LINGER_SECONDS)
        for c in list(self.conns):
            c.task.cancel()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code.

        Raises:
            ShardpayError: a fatal error (cannot listen, the journal damaged or unwritable,
                the engine failed).
        """
        from ..engine import Engine

        opts = self.opts
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        # The engine forks first: before any thread exists, and before the listening
        # socket does (a child holding it would keep accepting after we stop).
        engine = Engine(workers=opts.workers, decoders=opts.decoders, backend=opts.backend,
                        ray_address=opts.ray_address)
        engine.start()
        self.book = Book(engine, self.journal)
        try:
            listener = await asyncio.start_server(
                self._handle, opts.host, opts.port, backlog=min(BACKLOG, self.max_connections),
                limit=STREAM_LIMIT, ssl=self.tls, ssl_handshake_timeout=opts.idle_timeout if self.tls else None,
                start_serving=False)
        except OSError as err:
            engine.abort()
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise ShardpayError(f"cannot listen on {opts.host}:{opts.port}: {reason}") from None
        self.committer = Committer(self.book, loop, self._fail)
        self.committer.start()
        self.stop, self.hup = asyncio.Event(), asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.hup.set)
        tasks: list[asyncio.Task] = []
        try:
            try:
                batches, rows = await self._on_engine(self.book.start)
            except OSError as err:
                raise ShardpayError(f"cannot write the journal {opts.journal!r}: {err.strerror or err}") from None
            if self.journal.torn:
                log(f"journal: cut a torn last batch ({self.journal.torn} bytes at offset {self.journal.end}; "
                    "it was never acknowledged)")
            await self._on_engine(self._write_snapshot)
            if opts.snapshot:
                tasks.append(asyncio.create_task(self._snapshots()))
            await listener.start_serving()
            host, port = listener.sockets[0].getsockname()[:2]
            guard = f"tokens: {len(self.tokens)} names" if self.tokens else "no tokens (loopback only)"
            log(f"listening on {host}:{port} (workers {opts.workers}, decoders {opts.decoders}, journal {opts.journal}: {batches:,} batches, "
                f"{rows:,} rows replayed; {guard}; TLS {'on' if self.tls else 'off'}; "
                f"max connections {self.max_connections})")
            await self.stop.wait()
            if self.failed is None:
                await self._drain(listener)
            if self.failed is not None:
                raise self.failed
            for t in tasks:
                t.cancel()
            await self._on_engine(self._write_snapshot, True)
            log(f"stopped: {self.book.batches:,} batches, {self.book.rows:,} rows, {self.accounts:,} accounts")
            return 0
        finally:
            for t in tasks:
                t.cancel()
            for c in list(self.conns):
                c.task.cancel()
            listener.close()
            self.committer.stop()
            engine.abort()
