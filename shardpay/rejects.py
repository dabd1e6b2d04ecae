"""Rejected rows: the one record type, its spools, and the merge by line.

A rejected row is data, not an exception (SPEC "Transactions"): a
:class:`Reject` from the moment it is found to the moment it is written. Each
process spools its own rejects to an unnamed temporary file as it goes, in
line order; the parent merges the spools by line with a streaming k-way merge
(``heapq.merge``), so the report never depends on the worker count and memory
never holds every reject.

Two spool formats, one per kind of process:

* the sequencer's spool (invalid rows, found by the decoders): :class:`Reject`
  records in batches, each a u32 little-endian length and then msgpack;
* a worker's spool (rows its ledger rejected): raw ledger records of seven
  native-order i64 ``(line, reason, kind, client, tx, amount, aux)`` (see
  :meth:`shardpay.ledger.Ledger.take_rejects`), cheap to make in the hot
  loop and turned into a :class:`Reject` by :func:`render` only when read.
"""

from __future__ import annotations

import bisect
import heapq
import io
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO, NamedTuple

import msgspec
import numpy as np

from ._render_py import detail
from .codes import KIND_NAMES, REASONS, WITHDRAWAL
from .errors import OutputError
from .money import format_units
from .twins import pick

__all__ = [
    "REJECTS_CSV",
    "RENDER",
    "RawRejects",
    "Reject",
    "Spool",
    "answer_lines",
    "close_spools",
    "csv_rows",
    "merge",
    "merged_csv",
    "open_spools",
    "read_ledger_spool",
    "read_spool",
    "rejects_batch",
    "render",
    "unpack_rejects",
]

_twin, RENDER = pick("render", "SHARDPAY_RENDER")
"""Which twin of :func:`answer_lines` runs: ``"compiled"`` or ``"python"``."""
_csv_twin, REJECTS_CSV = pick("rejects_csv", "SHARDPAY_REJECTS_CSV")
csv_rows = _csv_twin.csv_rows
"""Rejects -> their ``--rejects`` CSV rows (``str``): the compiled :mod:`shardpay._rejects_csv`
(``REJECTS_CSV == "compiled"``) or its twin :mod:`shardpay._rejects_csv_py`."""
_LEN = struct.Struct("<I")
_ENC = msgspec.msgpack.Encoder()


class Reject(NamedTuple):
    """One rejected row: the columns of ``--rejects`` (SPEC reason codes).

    Attributes:
        line: the physical line number in the input, 1-based.
        type, client, tx, amount: the row's fields as text. For an invalid
            row, as read (control characters escaped); for a well-formed one,
            as decoded (``amount`` with four decimals for a deposit or
            withdrawal, empty otherwise).
        reason: the SPEC reason code, e.g. ``"insufficient_funds"``.
        detail: what was wrong, e.g. ``"client '70000' is not an integer 0..65535"``.
    """

    line: int
    type: str
    client: str
    tx: str
    amount: str
    reason: str
    detail: str

    def __str__(self) -> str:
        """``line N: REASON: detail``, as the CLI logs it."""
        return f"line {self.line}: {self.reason}: {self.detail}"

    @property
    def fields(self) -> tuple[str, str, str, str]:
        """``(type, client, tx, amount)``: the row's four fields."""
        return self[1:5]


_DEC_REJECTS = msgspec.msgpack.Decoder(list[Reject])  # msgspec builds the NamedTuples in C
_RECORD_BYTES = 7 * 8  # a ledger record: seven i64
_READ_BYTES = _RECORD_BYTES << 14  # whole records: only the last read of a spool may end inside one


def render(line: int, reason: int, kind: int, client: int, tx: int, amount: int, aux: int) -> Reject:
    """The :class:`Reject` of a ledger record (see :class:`shardpay.ledger.Ledger`).

    Args:
        line: physical line number. reason: index into :data:`shardpay.codes.REASONS`.
        kind: kind code (without ``DUPLICATE``). client, tx: ids.
        amount: 1/10,000 units (0 for dispute, resolve, chargeback).
        aux: the available balance for ``insufficient_funds`` (units), the
            stored state for ``already_disputed``/``not_disputed``, else 0.
    """
    amount_text = format_units(amount) if kind <= WITHDRAWAL else ""
    return Reject(line, KIND_NAMES[kind], str(client), str(tx), amount_text, REASONS[reason],
                  detail(reason, client, tx, amount, aux))


def answer_lines(records: np.ndarray, offset: int = 0) -> bytes:
    """Ledger records straight to the ``LINE,REASON,DETAIL`` lines of a ``shardpay serve``
    answer: the bytes :func:`shardpay.serve.protocol.reject_lines` gives for their
    :func:`render`, without a :class:`Reject` a record (compiled unless
    ``SHARDPAY_RENDER=python``; :data:`RENDER` says which).

    Args:
        records: int64 array of shape ``(n, 7)``, C-contiguous: ledger records, in the
            order wanted (see :class:`RawRejects`).
        offset: added to each line number (engine line to batch line).
    """
    return _twin.answer_lines(records, offset)


class RawRejects(NamedTuple):
    """Rejects as read from the spools, not yet rendered (see :meth:`shardpay.Engine.raw_rejects_since`).

    Attributes:
        records: the workers' ledger records, int64 of shape ``(n, 7)``, in line order.
        invalid: the reader's rejects (invalid rows), in line order.
    """

    records: np.ndarray
    invalid: list[Reject]

    @property
    def count(self) -> int:
        """How many rejects."""
        return len(self.records) + len(self.invalid)

    def rejects(self) -> list[Reject]:
        """Every reject as a :class:`Reject`, in line order."""
        ledger = [render(*r) for r in self.records.tolist()]
        if not self.invalid:
            return ledger
        return list(heapq.merge(ledger, self.invalid, key=_line)) if ledger else list(self.invalid)

    def split(self, firsts: list[int]) -> list[RawRejects]:
        """The rejects of consecutive ranges of lines: range ``i`` from ``firsts[i]`` up to
        ``firsts[i + 1]`` (the last: to the end). Rejects before ``firsts[0]`` are in none.

        Args:
            firsts: ascending line numbers.
        """
        starts = np.searchsorted(self.records[:, 0], firsts, side="left").tolist() + [len(self.records)]
        if self.invalid:
            lines = [r.line for r in self.invalid]
            cuts = [bisect.bisect_left(lines, f) for f in firsts] + [len(lines)]
        else:
            cuts = [0] * (len(firsts) + 1)
        return [RawRejects(self.records[starts[i]:starts[i + 1]], self.invalid[cuts[i]:cuts[i + 1]])
                for i in range(len(firsts))]


# -- spools -------------------------------------------------------------------------------


class Spool(NamedTuple):
    """One process's reject spool, as the parent holds it.

    Attributes:
        file: the unnamed temporary file (read through ``/proc/self/fd``).
        ledger: True for a worker's spool (ledger records), False for the
            reader's (:class:`Reject` records).
    """

    file: IO[bytes]
    ledger: bool

    @property
    def path(self) -> str:
        """A path this process can open the spool by (it has no name of its own)."""
        return f"/proc/self/fd/{self.file.fileno()}"


def open_spools(spools: list[Spool], ledger: Iterable[bool]) -> None:
    """Append one spool per item of ``ledger`` (True for a worker's) to ``spools``.

    Each is an unnamed temporary file (``O_TMPFILE``), so nothing is left to
    remove whoever dies, and is recorded as soon as it exists.

    Raises:
        OutputError: the temporary folder refuses them.
    """
    try:
        for is_ledger in ledger:
            spools.append(Spool(tempfile.TemporaryFile(prefix="shardpay-"), is_ledger))
    except OSError as err:
        raise OutputError(f"cannot create temporary files in {tempfile.gettempdir()!r}: "
                          f"{err.strerror or err}") from None


def close_spools(spools: list[Spool]) -> None:
    """Close (so free) every spool of ``spools``, emptying the list."""
    while spools:
        spools.pop().file.close()


def rejects_batch(rejects: list[Reject]) -> bytes:
    """Rejects (in line order) as one batch of a reader's spool: a u32 little-endian
    length, then msgpack."""
    data = _ENC.encode(rejects)
    return _LEN.pack(len(data)) + data


def unpack_rejects(batch: bytes) -> list[Reject]:
    """The rejects of one or more whole batches of a reader's spool (see :func:`rejects_batch`)."""
    return [r for rejects, _ in _reject_batches(io.BytesIO(batch)) for r in rejects]


def read_spool(spool: Spool, offset: int = 0) -> tuple[list[Reject], int]:
    """The rejects ``spool`` holds from byte ``offset`` on, in line order, and the
    offset to pass next time.

    Reads whole records only: a batch or record still being written is left
    for the next call.
    """
    rejects: list[Reject] = []
    with open(spool.path, "rb") as f:
        f.seek(offset)
        for batch, size in (_ledger_batches(f) if spool.ledger else _reject_batches(f)):
            rejects.extend(batch)
            offset += size
    return rejects, offset


def read_ledger_spool(spool: Spool, offset: int = 0) -> tuple[np.ndarray, int]:
    """The ledger records a worker's ``spool`` holds from byte ``offset`` on, not rendered,
    and the offset to pass next time.

    Returns:
        ``(records, offset)``: int64 of shape ``(n, 7)``, in line order; whole records only
        (one still being written is left for the next call).
    """
    with open(spool.path, "rb") as f:
        f.seek(offset)
        records = _whole_records(f.read())
    return records, offset + records.nbytes


def _whole_records(data: bytes) -> np.ndarray:
    """The whole ledger records at the start of ``data`` (a record still being written
    left out), int64 of shape ``(n, 7)``, read in place."""
    return np.frombuffer(data, np.int64, len(data) // _RECORD_BYTES * 7).reshape(-1, 7)


def _record_blocks(f: BinaryIO) -> Iterator[np.ndarray]:
    """The whole ledger records of a worker's spool from ``f``'s position, a read of
    :data:`_READ_BYTES` at a time (see :func:`_whole_records`)."""
    while data := f.read(_READ_BYTES):
        records = _whole_records(data)
        yield records
        if records.nbytes < len(data):
            return


def _reject_batches(f: BinaryIO) -> Iterator[tuple[list[Reject], int]]:
    """The whole msgpack batches of a reader's spool from ``f``'s position, and their sizes."""
    while len(head := f.read(4)) == 4:
        (n,) = _LEN.unpack(head)
        data = f.read(n)
        if len(data) < n:
            return
        yield _DEC_REJECTS.decode(data), 4 + n


def _ledger_batches(f: BinaryIO) -> Iterator[tuple[list[Reject], int]]:
    """The whole ledger records of a worker's spool from ``f``'s position, rendered, and their size."""
    for records in _record_blocks(f):
        yield [render(*r) for r in records.tolist()], records.nbytes


def _stream(spool: Spool) -> Iterator[Reject]:
    """Every reject of ``spool``, a batch in memory at a time."""
    with open(spool.path, "rb") as f:
        for batch, _ in (_ledger_batches(f) if spool.ledger else _reject_batches(f)):
            yield from batch


def merge(spools: Iterable[Spool]) -> Iterator[Reject]:
    """Every reject of a run, in line order (each line is rejected at most once)."""
    nonempty = [_stream(s) for s in spools if os.path.getsize(s.path)]
    if len(nonempty) <= 1:  # one spool holds every reject: it is in line order already
        return iter(nonempty[0]) if nonempty else iter(())
    return heapq.merge(*nonempty, key=_line)


def _line(r: Reject) -> int:
    return r.line


# -- the --rejects CSV, merged -------------------------------------------------------------

_CSV_BATCH = 1 << 12
"""Rows a spool hands the merge at least at a time (a reader's spool batches are a chunk's)."""


def merged_csv(spools: Iterable[Spool]) -> Iterator[bytes]:
    """Every reject of a run as ``--rejects`` CSV rows, in line order, a block at a time.

    The bytes (UTF-8, a row an LF) :func:`csv_rows` gives for :func:`merge`,
    without a :class:`Reject` a ledger record: a worker's records become rows
    in one call of the renderer (``csv_lines``), and the spools are merged a
    block at a time by their line numbers (numpy), not a row at a time.
    """
    streams = [_csv_batches(s) for s in spools if os.path.getsize(s.path)]
    if len(streams) == 1:  # one spool holds every reject: it is in line order already
        return (text for _, text in streams[0])
    return _merge_csv(streams)


def _csv_batches(spool: Spool) -> Iterator[tuple[np.ndarray, bytes]]:
    """``(lines, rows)`` of ``spool``'s whole batches in order: the line numbers (int64)
    and the CSV rows of at least :data:`_CSV_BATCH` rejects (fewer at the end)."""
    with open(spool.path, "rb") as f:
        if spool.ledger:
            for records in _record_blocks(f):
                yield records[:, 0], _twin.csv_lines(records)
            return
        held: list[Reject] = []
        for batch, _ in _reject_batches(f):
            held += batch
            if len(held) >= _CSV_BATCH:
                yield np.fromiter(map(_line, held), np.int64, len(held)), csv_rows(held).encode("utf-8")
                held = []
        if held:
            yield np.fromiter(map(_line, held), np.int64, len(held)), csv_rows(held).encode("utf-8")


class _Block:
    """One spool's rows in the merge: a batch, and how far it is taken."""

    __slots__ = ("batches", "lines", "rows", "taken")

    def __init__(self, batches: Iterator[tuple[np.ndarray, bytes]]) -> None:
        self.batches = batches
        self.lines: np.ndarray | None = None
        self.rows: list[bytes] = []
        self.taken = 0
        self.next()

    def next(self) -> None:
        """Hold the spool's next non-empty batch (``lines`` None at its end)."""
        self.lines, self.taken = None, 0
        for lines, text in self.batches:
            if len(lines):
                self.lines, self.rows = lines, text.split(b"\n")
                return


def _merge_csv(streams: list[Iterator[tuple[np.ndarray, bytes]]]) -> Iterator[bytes]:
    """The k-way merge by line of several spools' rows. Each round takes, from every
    spool, its rows up to the smallest last line of the batches held (so one batch at
    least is used up) and orders them by line."""
    blocks = [_Block(s) for s in streams]
    while live := [b for b in blocks if b.lines is not None]:
        bound = min(int(b.lines[-1]) for b in live)
        lines, rows = [], []
        for b in live:
            cut = b.taken + int(np.searchsorted(b.lines[b.taken:], bound, side="right"))
            lines.append(b.lines[b.taken:cut])
            rows += b.rows[b.taken:cut]
            if cut == len(b.lines):
                b.next()
            else:
                b.taken = cut
        order = np.argsort(np.concatenate(lines), kind="stable").tolist()
        yield b"\n".join([rows[i] for i in order]) + b"\n"
