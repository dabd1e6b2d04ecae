"""The reader: input bytes -> decoded rows -> tx-id claim -> one frame per shard.

Runs in its own process (see :mod:`shardpay.engine`), but :class:`Reader` is
plain code over a binary stream and a list of frame sinks, testable alone.

Per input chunk (:data:`CHUNK_BYTES` of whole lines):

1. :func:`shardpay.decode.decode_chunk` decodes it (msgspec fast path, exact
   path for the lines that need it); invalid rows become rejects.
2. The rows become numpy columns of the whole chunk (line, kind, client, tx,
   amount; :func:`shardpay.columns.chunk_columns`), in line order.
3. The global tx-id claim (SPEC "Transactions": the first well-formed deposit
   or withdrawal with an id claims it): BitMap operations on the whole
   chunk; only the rows of a duplicated id are then visited one by one, in
   line order. A row whose id is already claimed is forwarded with kind
   ``+ DUPLICATE`` so its worker still creates the account and rejects it
   as ``duplicate_tx``.
4. Rows are hash-partitioned by client onto the shards: each shard's rows,
   gathered out of every column, go out as one frame of raw arrays
   (:func:`shardpay.columns.shard_frames`, the layout of :func:`pack_frame`).

The claim set is a ``pyroaring.BitMap`` (compressed u32 set): measured about
0.2 bytes a rising id where a Python ``set`` costs about 60, so a 20M-row file
keeps its claims in a few MB. For rising ids the block-wise set operations
keep it as fast as a ``set``. Ids spread over the u32 range (``sparse``) cost
roaring 0.4-0.55 µs an id, a cache miss or more in a container of its own:
a file whose claims start spread is claimed in a :class:`shardpay.claims.ClaimTable`
(table mode: a numpy hash table that claims a whole chunk in a few vector
passes, ~0.11 µs an id at 8-16 bytes an id) up to :data:`TABLE_CLAIMS` ids,
then in the BitMap (profiling/README.md has the figures).
"""

from __future__ import annotations

import struct
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from itertools import compress
from typing import TYPE_CHECKING, BinaryIO

from pyroaring import BitMap

from .decode import WITHDRAWAL, Reject, decode_chunk, parse_header
from .errors import InputError
from .ledger import DUPLICATE, U64

if TYPE_CHECKING:
    import numpy as np

    from .claims import ClaimTable
    from .columns import ChunkColumns

__all__ = ["CHUNK_BYTES", "FRAME_TAG", "MAX_LINE_BYTES", "Reader", "pack_frame", "shard_of", "unpack_frame"]

CHUNK_BYTES = 64 * 1024
"""Bytes read per chunk by default (``Reader(chunk_bytes=...)``): larger amortises
per-call costs, smaller keeps a chunk's JSON, row structs and columns in the
core's cache. 64 KiB (~2,400 rows) against 256 KiB: the reader alone 0.964x,
end to end with the ring's smaller slots 0.87-0.99x (``profiling/README.md``)."""
TABLE_CLAIMS = 1 << 25
"""Most tx ids claimed in table mode (for spread ids: ~4x faster than the BitMap,
4 bytes a slot at most half full, so at most 256 MiB, and 384 while it
doubles the last time). At a chunk that would pass it, or once the table is
crowded (:data:`shardpay.claims.CROWDED_ROUNDS`), the ids move to the BitMap
and the claim stays there for good. The move is sorted and bulk: at 2^25 ids
a review measured 0.93 s (~28 ns an id) and ~260 MiB more for a moment (the
sorted ids, their bytes and their ``array``)."""
TABLE_ENTRY = 1 << 16
"""Table mode starts at a spread chunk only if the BitMap then holds at most this many
ids and most of the chunk's ids are not above the largest one claimed (random
ids): a file of rising ids with a stray low id, or with spread chunks later
on, stays in the BitMap."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this is rejected (``invalid_row``) without being held in memory."""

_BOM = b"\xef\xbb\xbf"


def shard_of(workers: int) -> bytes:
    """The client -> shard table: ``table[client]`` is the shard owning that client.

    A multiplicative hash (Fibonacci hashing) spreads clients evenly even when
    their ids share a stride with the worker count.
    """
    return bytes(((c * 2654435761) & 0xFFFFFFFF) * workers >> 32 for c in range(65536))


FRAME_TAG = b"F"
"""First byte of a data frame (a mark frame starts with ``b"M"``, see :mod:`shardpay.worker`)."""
_COUNT = struct.Struct("<I")
_HEAD = len(FRAME_TAG) + _COUNT.size
# Column typecodes: u64 lines and amounts, u32 clients and tx ids. Unsigned
# codes store through PyLong_AsUnsigned*, not PyArg_Parse (see ledger.U64).
_WIDE, _NARROW = U64, "I"
_ROW_BYTES = 1 + 2 * array(_WIDE).itemsize + 2 * array(_NARROW).itemsize
_BIG_ENDIAN = sys.byteorder == "big"

def pack_frame(lines: Sequence[int], kinds: bytes, clients: Sequence[int], txs: Sequence[int],
               amounts: Sequence[int]) -> bytes:
    """Pack one shard's rows (n of them) as a frame of raw columns::

        b"F" | n (u32 LE) | lines u64[n] | kinds u8[n] | clients u32[n] | txs u32[n] | amounts u64[n]

    Line numbers, kind codes (``+ DUPLICATE`` for a claimed id), client ids,
    tx ids, amounts in 1/10,000 units (0 for dispute, resolve, chargeback);
    little-endian on every machine (a Ray frame may cross machines).

    Raw arrays, not msgpack lists: packing costs the reader ~8 ns a row more,
    but the worker reads them with one copy and makes each int only as its
    loop takes it, ~50 ns a row less (``profiling/README.md``).

    Raises:
        OverflowError: a value does not fit its column (a bug upstream).
    """
    cols = [array(_WIDE, lines), array(_NARROW, clients), array(_NARROW, txs), array(_WIDE, amounts)]
    if _BIG_ENDIAN:
        for col in cols:
            col.byteswap()
    return b"".join((FRAME_TAG, _COUNT.pack(len(kinds)), cols[0], kinds, cols[1], cols[2], cols[3]))


def unpack_frame(frame: bytes) -> tuple[array, bytes, array, array, array]:
    """The five columns of a frame (see :func:`pack_frame`): ``(lines, kinds,
    clients, txs, amounts)``, arrays but ``kinds`` (bytes); iterating any gives ints.

    Raises:
        ValueError: the frame is not a shard frame (tag or length wrong).
    """
    if len(frame) < _HEAD or frame[:1] != FRAME_TAG:
        raise ValueError("not a shard frame: bad tag or header")
    n = _COUNT.unpack_from(frame, 1)[0]
    if len(frame) != _HEAD + n * _ROW_BYTES:
        raise ValueError(f"not a shard frame: {len(frame)} bytes for {n} rows")
    with memoryview(frame) as mv:
        lines, pos = _column(mv, _HEAD, _WIDE, n)
        kinds, pos = frame[pos : pos + n], pos + n
        clients, pos = _column(mv, pos, _NARROW, n)
        txs, pos = _column(mv, pos, _NARROW, n)
        amounts, _ = _column(mv, pos, _WIDE, n)
    return lines, kinds, clients, txs, amounts


def _column(mv: memoryview, pos: int, code: str, n: int) -> tuple[array, int]:
    """The ``n`` little-endian items of typecode ``code`` at byte ``pos`` of a frame, and the byte after them."""
    col = array(code)
    end = pos + n * col.itemsize
    col.frombytes(mv[pos:end])
    if _BIG_ENDIAN:
        col.byteswap()
    return col, end


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
        from . import columns  # numpy: loaded in the reader's process only, never in the parent

        self._columns = columns
        self._shard_map = columns.np.frombuffer(self.shard, columns.np.uint8)
        self.claimed = BitMap()
        self.table: ClaimTable | None = None  # table mode's claims (then ``claimed`` is empty)
        self._max_claimed = -1
        self._table_done = False  # table mode ended: it does not start again
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
            if len(data) < 3 and _BOM.startswith(data):
                self._pending = data  # maybe the start of a BOM: wait for more
                return
            self._first = False
            self._pending = b""
            if data.startswith(_BOM):
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
        self.on_rejects([Reject(line, "invalid_row", detail, (text + "...", "", "", ""))])

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
            cols = self._columns.chunk_columns(lines, rows)
            self._claim(cols)
            for s, frame in enumerate(self._columns.shard_frames(cols, self._shard_map, self.workers, FRAME_TAG, _COUNT)):
                if frame is not None:
                    self.shard_rows[s] += (len(frame) - _HEAD) // _ROW_BYTES
                    self.sinks[s](frame)
        t2 = time.perf_counter()
        self.decode_seconds += t1 - t0
        self.route_seconds += t2 - t1

    def _claim(self, cols: ChunkColumns) -> None:
        """Claim the tx ids of a chunk's deposits/withdrawals, in line order; mark duplicates.

        ``cols``: the chunk's rows as :class:`~shardpay.columns.ChunkColumns`,
        in line order, before they are split by shard. A row whose id was
        claimed before, by an earlier chunk or an earlier line, gets
        ``DUPLICATE`` added to its kind, in place.

        No Python step per id. Rising ids (the usual partner file) are all
        above the largest claimed one, so only the chunk itself can hold a
        duplicate, and one BitMap union claims them (~20 ns an id); ids
        clustered in a narrow range (a few out of order, ``messy``) are
        checked with one BitMap intersection, as cheap. Ids spread over the
        u32 range (``sparse``): if such a chunk comes while the BitMap holds
        at most :data:`TABLE_ENTRY` ids, and most of its ids are not above the
        largest claimed one, the claims move to a
        :class:`~shardpay.claims.ClaimTable` and every chunk from then on is
        claimed there (:meth:`_claim_in_table`: a few numpy passes a chunk,
        ~0.11 µs an id) until :data:`TABLE_CLAIMS` ids; otherwise they are claimed one by
        one in a C-level ``map`` of roaring's ``add_checked``, which stops at
        an id already there and resumes after it (:meth:`_add_checked`: one
        raised exception per id met again, ~1-2 µs; 0.35-0.6 µs an id
        otherwise, most of it roaring's container search). Only the rows of
        an id claimed before, or repeated inside the chunk, are then visited
        one by one (random u32 ids collide about once every few chunks at 2M
        rows: birthday collisions).
        """
        money = cols.kinds <= WITHDRAWAL
        ids = cols.txs[money]
        if not ids.size:
            return
        lo, hi = int(ids.min()), int(ids.max())
        rising = lo > self._max_claimed
        if self.table is not None:  # table mode: every chunk
            suspects, old = self._claim_in_table(ids)
        elif rising or hi - lo < ids.size << 6:  # rising, or clustered
            new = BitMap(array("I", ids.tobytes()))
            old = set() if rising else set(new & self.claimed)
            suspects = old if len(new) == ids.size else old | self._columns.distinct_ids(ids)[1]
            self.claimed |= new
        elif (not self._table_done and len(self.claimed) <= TABLE_ENTRY
              and 2 * int((ids <= self._max_claimed).sum()) > ids.size):
            # spread, early in the file, mostly below the largest claim: table mode from now on
            from .claims import ClaimTable

            self.table, self.claimed = ClaimTable(self.claimed.to_array()), BitMap()
            suspects, old = self._claim_in_table(ids)
        else:  # spread, in the BitMap: claimed as they come
            suspects, old = self._add_checked(ids.tolist())
        if suspects:
            self._columns.mark_duplicates(cols, money, suspects, old, DUPLICATE)
        if hi > self._max_claimed:
            self._max_claimed = hi

    def _claim_in_table(self, txs: np.ndarray) -> tuple[set[int], set[int]]:
        """Table mode: claim ``txs`` in :attr:`table`; return ``(suspects, old)`` as
        :meth:`_add_checked` does. Once the table is crowded, or if ``txs``
        would take it past :data:`TABLE_CLAIMS` ids (then ``txs`` are claimed
        in the BitMap), the ids move to the BitMap and table mode ends."""
        table = self.table
        full = len(table) + len(txs) > TABLE_CLAIMS  # checked first: the table never doubles past it
        if not full:
            suspects, old = table.claim(txs)
        if full or table.crowded:
            self.claimed = BitMap(array("I", table.ids().tobytes()))
            self.table = None
            self._table_done = True  # for good: crafted ids would crowd a new table again
        if full:
            suspects, old = self._add_checked(txs.tolist())
        return suspects, old

    def _add_checked(self, txs: list[int]) -> tuple[set[int], set[int]]:
        """Claim ``txs`` in their order with C-level passes of roaring's
        ``add_checked``; return ``(suspects, old)``: the ids met again (claimed
        before this chunk, or earlier in ``txs``), and of those the ones
        claimed before this chunk.

        ``add_checked`` raises ``KeyError(id)`` at an id already claimed; the
        next pass resumes after it on the same iterator, so each repeat costs
        one raised exception (~1-2 µs), not a pass over the chunk: a chunk
        whose ids were all claimed before (a file sent twice) costs about
        twice what a lookup pass then an ``update`` cost. An id met at every
        one of its occurrences in the chunk was claimed before it; an id new
        to the chunk is met at every occurrence but its first.
        """
        add = self.claimed.add_checked
        rest = iter(txs)
        met: list[int] = []
        while True:
            try:
                deque(map(add, rest), 0)
                break
            except KeyError as already:
                met.append(already.args[0])
        if not met:
            return set(), set()
        times_met = Counter(met)
        if len(times_met) <= 4:  # a count over the chunk per id
            times_in_chunk = {tx: txs.count(tx) for tx in times_met}
        else:  # one pass over the chunk
            times_in_chunk = Counter(compress(txs, map(times_met.__contains__, txs)))
        return set(times_met), {tx for tx, n in times_met.items() if n == times_in_chunk[tx]}


def run_reader(
    stream: BinaryIO | None,
    rings: Sequence,
    spool: int | str,
    stop,
    strict: bool,
    progress,
    alive: Callable[[], bool] = lambda: True,
    source=None,
    conn=None,
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
        source: instead of ``stream``, a :class:`shardpay.ring.Ring` of
            frames from an :class:`shardpay.engine.Engine`: ``b"D" + bytes``
            to feed (any chunking), ``b"M" + token`` to pass a mark to every
            worker (answered on ``conn`` as ``("mark", token, figures)``),
            end of stream to finish.
        conn: where to answer marks.

    Returns:
        The reader's figures (rows, invalid, bytes, stage seconds, shard rows).

    Raises:
        InputError: bad header or unreadable input.
        RingError: the parent died (or a ring's peer vanished).
    """
    from .errors import RingError
    from .rejects import write_reader_batch

    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:

        def on_rejects(rejects: list[Reject]) -> None:
            write_reader_batch(spool_file, rejects)
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
                    if frame[:1] == b"D":
                        reader.feed(frame[1:])
                        if should_stop():
                            break
                    else:  # a mark: everything fed before it is routed
                        spool_file.flush()
                        for ring in rings:
                            ring.send(frame)
                        conn.send(("mark", int.from_bytes(frame[1:9], "little"),
                                   {"rows": reader.rows, "invalid": reader.invalid}))
                else:
                    reader.finish()
        finally:
            progress[0], progress[1] = reader.bytes_read, reader.rows
        for ring in rings:
            ring.send_eos()
    return reader.figures(sum(r.blocked_seconds for r in rings))
