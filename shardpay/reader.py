"""The reader: input bytes -> chunks of whole lines, numbered in file order.

The first stage of the pipeline (see :mod:`shardpay.engine`), and the only
one that sees the input: it runs in the parent, reading a file or a pipe as
the bytes arrive, or fed by an :class:`~shardpay.engine.Engine`. It drops a
byte-order mark at the very start, finds and checks the header (the first
non-empty line, SPEC "Input"), cuts the rest at line ends into chunks of
about :data:`CHUNK_BYTES` and numbers each with the physical line of its
first byte (it counts the LFs as it cuts), so that every decoder can decode
any chunk on its own and still name each row's line. A line longer than
:data:`MAX_LINE_BYTES` is never held: it is skipped to its end and handed on
as a long-line message, to be rejected (``invalid_row``) in its place.

Every message goes to one sink, in file order (:mod:`shardpay.frames` has
their layout); the session deals them out to the decoders.
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections.abc import Callable
from typing import BinaryIO

from .decode import parse_header
from .errors import InputError
from .frames import chunk_message, long_line_message, mark_frame

__all__ = ["BOM", "CHUNK_BYTES", "MAX_LINE_BYTES", "Reader"]

CHUNK_BYTES = 64 * 1024
"""Bytes a chunk holds (more when a line runs past its end): larger amortises a
message's fixed cost, smaller keeps a chunk's JSON, row structs and columns
in a core's cache and the pipeline's stages busy together. 64 KiB is about
2,400 rows; against 256 KiB the single-reader engine measured 0.87-0.99x of
the wall."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this is rejected (``invalid_row``) without being held in memory."""
BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark, ignored at the very start of an input (SPEC "Input")."""
LONG_LINE_HEAD = 40
"""Bytes of an overlong line kept for its reject record."""
IDLE_SECONDS = 0.1
"""How long :meth:`Reader.run` waits for a quiet pipe before it ticks (checks the
engine's processes) and waits again."""


class Reader:
    """Cut one input stream into numbered chunks of whole lines.

    Feed it bytes in any chunking with :meth:`feed` and end with
    :meth:`finish`, or let :meth:`run` read a stream to its end.

    Args:
        sink: takes each message (chunk, long line, mark) in file order; it may
            block (backpressure).
        chunk_bytes: bytes a chunk holds, and the largest piece :meth:`run`
            reads at once; default :data:`CHUNK_BYTES`.

    Attributes:
        bytes_read: input bytes taken so far.
        chunks: messages sent so far.
        read_seconds: time spent reading the stream in :meth:`run`.
    """

    def __init__(self, sink: Callable[[bytes], None], chunk_bytes: int | None = None) -> None:
        self.sink = sink
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self.bytes_read = 0
        self.chunks = 0
        self.read_seconds = 0.0
        self.header_seen = False
        # feed() state: a partial last line, the next line number, BOM check,
        # and an overlong line being skipped (its size so far and first bytes)
        self._pending = b""
        self._line = 1
        self._first = True
        self._skipping = 0
        self._head = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the input, in any chunking (a row may be split).

        Complete lines go out at once, a chunk at a time; a trailing partial
        line waits for the next call or :meth:`finish`. Memory stays bounded:
        a line is held only up to :data:`MAX_LINE_BYTES`.

        Raises:
            InputError: the header is wrong (SPEC "Input").
        """
        if not data:
            return
        self.bytes_read += len(data)
        piece = min(self.chunk_bytes, MAX_LINE_BYTES)
        if len(data) <= piece:
            self._feed(data)
            return
        # A piece no longer than the line limit holds no whole overlong line,
        # so every overlong line is caught, whatever the caller's chunking.
        with memoryview(data) as mv:
            for i in range(0, len(data), piece):
                self._feed(bytes(mv[i : i + piece]))

    def _feed(self, data: bytes) -> None:
        if self._first:
            data = self._pending + data
            if len(data) < 3 and BOM.startswith(data):
                self._pending = data  # maybe the start of a BOM: wait for more
                return
            self._first = False
            self._pending = b""
            if data.startswith(BOM):
                data = data[3:]
        if self._skipping or self._pending:
            nl = data.find(b"\n")
            size = self._skipping + len(self._pending) + (nl if nl >= 0 else len(data))
            if nl < 0 and size <= MAX_LINE_BYTES:
                self._pending += data
                return
            if size > MAX_LINE_BYTES:
                if not self._skipping:
                    self._head, self._pending = self._pending[:LONG_LINE_HEAD], b""
                if nl < 0:
                    self._skipping = size
                    return
                self._long_line(size)
                self._skipping = 0
                data = data[nl + 1 :]
            else:
                data = self._pending + data
                self._pending = b""
        cut = data.rfind(b"\n") + 1
        if cut:
            self._lines(data[:cut] if cut < len(data) else data, self._line)
            self._line += data.count(b"\n", 0, cut)
        self._pending = data[cut:]
        if len(self._pending) > MAX_LINE_BYTES:
            self._head, self._skipping, self._pending = self._pending[:LONG_LINE_HEAD], len(self._pending), b""

    def finish(self) -> None:
        """End of input: send a last line that has no LF.

        Raises:
            InputError: the only line is an overlong header.
        """
        if self._skipping:
            self._long_line(self._skipping)
            self._skipping = 0
        elif self._pending:
            pending, self._pending = self._pending, b""
            self._lines(pending + b"\n", self._line)
            self._line += 1

    def mark(self, token: int) -> None:
        """Send a mark behind every complete line fed so far (see :mod:`shardpay.frames`)."""
        self._send(mark_frame(token))

    def run(self, stream: BinaryIO, tick: Callable[[], bool] = lambda: False) -> None:
        """Read ``stream`` to its end (``chunk_bytes`` at a time) through :meth:`feed`
        and :meth:`finish`.

        Args:
            stream: the input, binary. From a pipe or a socket (anything but a
                regular file), it is read as the bytes arrive: unbuffered, a
                read returns what is there.
            tick: called after every read, and every :data:`IDLE_SECONDS`
                while a pipe has nothing to read; True ends the stream early
                (``--strict``). It may raise (a dead child process).

        Raises:
            InputError: the header is wrong (SPEC "Input"), or reading fails.
        """
        waiting = _waiting(stream)
        try:
            while True:
                if waiting is not None:
                    while not waiting.poll(IDLE_SECONDS * 1000):
                        if tick():
                            return
                t0 = time.perf_counter()
                data = stream.read(self.chunk_bytes)
                self.read_seconds += time.perf_counter() - t0
                if not data:
                    break
                self.feed(data)
                if tick():
                    return
        except OSError as err:
            raise InputError(f"cannot read the input: {err.strerror or err}") from err
        self.finish()

    def _long_line(self, size: int) -> None:
        if not self.header_seen:
            raise InputError(f"bad header: the first line is longer than {MAX_LINE_BYTES} bytes")
        self._send(long_line_message(self._line, size, self._head))
        self._line += 1

    def _lines(self, chunk: bytes, line: int) -> None:
        """Whole lines (ending in LF) starting at physical line ``line``."""
        if not self.header_seen:
            chunk, line = self._header(chunk, line)
            if not chunk:
                return
        self._send(chunk_message(line, chunk))

    def _send(self, message: bytes) -> None:
        self.chunks += 1
        self.sink(message)

    def _header(self, chunk: bytes, line: int) -> tuple[bytes, int]:
        """Find and check the header (the first non-empty line); return what follows it."""
        pos = 0
        while pos < len(chunk):
            end = chunk.index(b"\n", pos)
            raw = chunk[pos:end]
            if raw.decode("utf-8", "replace").strip():  # the same "empty" as data rows
                parse_header(raw)
                self.header_seen = True
                return chunk[end + 1 :], line + 1
            pos = end + 1
            line += 1
        return b"", line


def _waiting(stream: BinaryIO) -> select.poll | None:
    """A poll of ``stream``'s descriptor for input, or None when reading it never
    waits long (a regular file) or it has no descriptor."""
    try:
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return None
    except (OSError, AttributeError, ValueError):
        return None
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    return waiting
