"""The reader: input bytes -> decoded rows -> tx-id claim -> one frame per shard.

Runs in its own process (see :mod:`shardpay.engine`), but :class:`Reader` is
plain code over a binary stream and a list of frame sinks, testable alone.

The input is cut into chunks of whole lines (:data:`CHUNK_BYTES`); the
header (the first non-empty line, SPEC "Input") is checked, a BOM at the very
start dropped, and a line longer than :data:`MAX_LINE_BYTES` rejected without
being held in memory. Then per chunk:

1. :func:`shardpay.decode.decode_chunk` decodes it (msgspec fast path, exact
   path for the lines that need it); invalid rows become rejects.
2. The rows become numpy columns (:func:`shardpay.columns.chunk_columns`),
   in line order.
3. :class:`shardpay.claims.Claims` claims the tx ids and marks the
   duplicates (SPEC "Transactions").
4. Each shard's rows go out as one data frame
   (:func:`shardpay.frames.shard_frames`) to that shard's sink.

numpy (for steps 2-4) is loaded when a :class:`Reader` is made, in the
reader's own process: the parent and the workers never load it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from .decode import decode_chunk, parse_header
from .errors import InputError, RingError
from .frames import FEED_TAG, frame_rows, mark_token, shard_frames, shard_of
from .rejects import Reject, write_rejects_batch

if TYPE_CHECKING:
    from .ring import Ring

__all__ = ["BOM", "CHUNK_BYTES", "MAX_LINE_BYTES", "Reader", "run_reader"]

CHUNK_BYTES = 64 * 1024
"""Bytes read per chunk by default (``Reader(chunk_bytes=...)``): larger amortises
per-call costs, smaller keeps a chunk's JSON, row structs and columns in the
core's cache. 64 KiB (~2,400 rows) against 256 KiB: the reader alone 0.964x,
end to end 0.87-0.99x."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this is rejected (``invalid_row``) without being held in memory."""
BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark, ignored at the very start of an input (SPEC "Input")."""


class Reader:
    """Decode, claim and route one input stream.

    Feed it with :meth:`feed` / :meth:`finish` (bytes in any chunking), or
    let :meth:`run` read ``stream`` to its end.

    Args:
        stream: a binary stream (file, pipe) for :meth:`run`; None if fed.
        sinks: one callable per shard taking a frame (``bytes``).
        on_rejects: called with each list of invalid-row :class:`Reject` records, in line order.
        should_stop: polled once per chunk; True ends the stream early (``--strict``).
        chunk_bytes: bytes read per chunk by :meth:`run`, and the largest piece
            :meth:`feed` decodes at once; default :data:`CHUNK_BYTES`.

    Attributes (the stage figures):
        rows: non-empty data rows read; ``invalid``: of which invalid.
        bytes_read, decode_seconds, route_seconds, shard_rows.
    """

    def __init__(
        self,
        stream: BinaryIO | None,
        sinks: Sequence[Callable[[bytes], None]],
        on_rejects: Callable[[list[Reject]], None],
        should_stop: Callable[[], bool] = lambda: False,
        chunk_bytes: int | None = None,
    ) -> None:
        self.stream = stream
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self.sinks = sinks
        self.on_rejects = on_rejects
        self.should_stop = should_stop
        self.workers = len(sinks)
        self.shard = shard_of(self.workers)
        # numpy: loaded here, in the reader's own process, never in the parent or the workers
        import numpy as np

        from . import claims, columns

        self._chunk_columns = columns.chunk_columns
        self._shard_map = np.frombuffer(self.shard, np.uint8)
        self.claims = claims.Claims()
        self.rows = 0
        self.invalid = 0
        self.bytes_read = 0
        self.decode_seconds = 0.0
        self.route_seconds = 0.0
        self.shard_rows = [0] * self.workers
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

        Complete lines are decoded, claimed and sent at once; a trailing
        partial line waits for the next call or :meth:`finish`. Memory stays
        bounded: a line is held only up to :data:`MAX_LINE_BYTES`; past that
        the reader skips to its end and rejects it.

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
                    self._head, self._pending = self._pending[:40], b""
                if nl < 0:
                    self._skipping = size
                    return
                self._reject_long(self._line, self._head, size)
                self._line += 1
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
            self._head, self._skipping, self._pending = self._pending[:40], len(self._pending), b""

    def finish(self) -> None:
        """End of input: decode a last line that has no LF."""
        if self._skipping:
            self._reject_long(self._line, self._head, self._skipping)
            self._skipping = 0
        elif self._pending:
            pending, self._pending = self._pending, b""
            self._lines(pending + b"\n", self._line)
            self._line += 1

    def _reject_long(self, line: int, head: bytes, size: int) -> None:
        if not self.header_seen:
            raise InputError(f"bad header: the first line is longer than {MAX_LINE_BYTES} bytes")
        self.rows += 1
        self.invalid += 1
        text = head.decode("utf-8", "backslashreplace")
        detail = f"line is {size} bytes, longer than the {MAX_LINE_BYTES}-byte limit"
        self.on_rejects([Reject(line, text + "...", "", "", "", "invalid_row", detail)])

    def figures(self, blocked_seconds: float) -> dict:
        """The reader's stage figures, as ``--stats`` takes them (see
        :func:`shardpay.report.stats_dict`); ``blocked_seconds``: time its sinks waited."""
        return {
            "rows": self.rows,
            "invalid": self.invalid,
            "bytes": self.bytes_read,
            "decode_seconds": self.decode_seconds,
            "route_seconds": self.route_seconds,
            "blocked_seconds": blocked_seconds,
            "shard_rows": self.shard_rows,
        }

    def run(self) -> None:
        """Read the whole stream (``chunk_bytes`` at a time) through :meth:`feed` and :meth:`finish`.

        Stops early when ``should_stop()`` says so (checked once per chunk).

        Raises:
            InputError: the header is wrong (SPEC "Input"), or reading fails.
        """
        try:
            while data := self.stream.read(self.chunk_bytes):
                self.feed(data)
                if self.should_stop():
                    return
        except OSError as err:
            raise InputError(f"cannot read the input: {err.strerror or err}") from err
        self.finish()

    def _lines(self, chunk: bytes, line: int) -> None:
        """Whole lines (ending in LF) starting at physical line ``line``."""
        if not self.header_seen:
            chunk, line = self._header(chunk, line)
            if not chunk:
                return
        self._chunk(chunk, line)

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

    def _chunk(self, chunk: bytes, first_line: int) -> None:
        t0 = time.perf_counter()
        lines, rows, rejects = decode_chunk(chunk, first_line)
        t1 = time.perf_counter()
        if rejects:
            self.invalid += len(rejects)
            self.rows += len(rejects)
            self.on_rejects(rejects)
        if rows:
            self.rows += len(rows)
            cols = self._chunk_columns(lines, rows)
            self.claims.claim(cols.kinds, cols.txs)
            for s, frame in enumerate(shard_frames(cols, self._shard_map, self.workers)):
                if frame is not None:
                    self.shard_rows[s] += frame_rows(frame)
                    self.sinks[s](frame)
        t2 = time.perf_counter()
        self.decode_seconds += t1 - t0
        self.route_seconds += t2 - t1


def run_reader(
    stream: BinaryIO | None,
    rings: Sequence[Ring],
    spool: int | str,
    stop: Any,
    strict: bool,
    progress: Any,
    alive: Callable[[], bool] = lambda: True,
    source: Ring | None = None,
    conn: Any = None,
) -> dict:
    """The reader process's body: read ``stream``, feed ``rings``, spool invalid rows.

    Args:
        stream: the input, binary; None when fed through ``source``.
        rings: one :class:`shardpay.ring.Ring` per shard (this process produces).
        spool: where to write invalid-row rejects (:mod:`shardpay.rejects`):
            an open file descriptor (left open; the engine passes unnamed
            temporary files) or a path.
        stop: an Event; set means stop reading (``--strict`` saw a reject).
        strict: ``--strict``: the first invalid row also stops reading.
        progress: two shared ints the reader keeps at the bytes and rows read so far.
        alive: False once the parent is gone; asked once per chunk, so the
            reader stops within a chunk of its parent's death even when no
            ring is full.
        source: instead of ``stream``, a ring of feed and mark frames
            (:mod:`shardpay.frames`) from an :class:`shardpay.engine.Engine`,
            then the end of the stream. A mark is passed to every worker
            behind the rows fed before it and answered on ``conn`` as
            ``("mark", token, figures)``.
        conn: where to answer marks.

    Returns:
        The reader's figures (rows, invalid, bytes, stage seconds, shard rows).

    Raises:
        InputError: bad header or unreadable input.
        RingError: the parent died (or a ring's peer vanished).
    """
    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:

        def on_rejects(rejects: list[Reject]) -> None:
            write_rejects_batch(spool_file, rejects)
            if strict:
                stop.set()

        def should_stop() -> bool:
            progress[0], progress[1] = reader.bytes_read, reader.rows
            if not alive():
                raise RingError("the parent process is gone")
            return stop.is_set()

        reader = Reader(stream, [r.send for r in rings], on_rejects, should_stop)
        try:
            if source is None:
                reader.run()
            else:
                while (frame := source.recv()) is not None:
                    if frame[:1] == FEED_TAG:
                        reader.feed(frame[1:])
                        if should_stop():
                            break
                    else:  # a mark: everything fed before it is routed
                        spool_file.flush()
                        for ring in rings:
                            ring.send(frame)
                        conn.send(("mark", mark_token(frame), {"rows": reader.rows, "invalid": reader.invalid}))
                else:
                    reader.finish()
        finally:
            progress[0], progress[1] = reader.bytes_read, reader.rows
        for ring in rings:
            ring.send_eos()
    return reader.figures(sum(r.blocked_seconds for r in rings))
