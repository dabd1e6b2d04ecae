"""Rejected rows: spooled to files by each process, merged by line in the parent.

Each process sees its rows in file order, so each spool is already sorted by
line; :func:`merge` is a streaming k-way merge (``heapq.merge``), so output
never depends on the worker count and memory never holds every reject.

* the reader's spool: invalid rows, msgpack batches of :class:`RejectRow`
  records ``(line, type, client, tx, amount, reason, detail)``, each batch
  prefixed by its length (u32 little-endian);
* a worker's spool: msgpack batches of ledger records ``(line, reason, kind,
  client, tx, amount, aux)`` (ints), built into text only here, when a reject
  is shown or written.
"""

from __future__ import annotations

import heapq
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO, NamedTuple

import msgspec

from .decode import KIND_NAMES, WITHDRAWAL, Reject
from .ledger import (
    ACCOUNT_LOCKED,
    ALREADY_DISPUTED,
    CHARGED_BACK,
    DUPLICATE_TX,
    INSUFFICIENT_FUNDS,
    NOT_DISPUTABLE,
    NOT_DISPUTED,
    OVERFLOW,
    REASONS,
    UNKNOWN_TX,
    WITHDRAWN,
)
from .errors import OutputError
from .money import format_units

__all__ = ["RejectRow", "close_spools", "merge", "open_spools", "pack_batch", "read_lines", "render", "write_batch",
           "write_reader_batch"]

_LEN = struct.Struct("<I")
_ENC = msgspec.msgpack.Encoder()
_DEC_LEDGER = msgspec.msgpack.Decoder(list[tuple[int, int, int, int, int, int, int]])


class RejectRow(NamedTuple):
    """One rejected row as reported: the columns of ``--rejects`` (SPEC reason codes).

    ``line`` is the physical input line; ``amount`` is as read for invalid
    rows, four-decimal text for deposits/withdrawals, empty otherwise.
    """

    line: int
    type: str
    client: str
    tx: str
    amount: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


# The reader's records are RejectRow's fields, so msgspec builds the rows in C.
_DEC = msgspec.msgpack.Decoder(list[RejectRow])


def open_spools(spools: list[IO[bytes]], n: int) -> None:
    """Append ``n`` spools to ``spools``: unnamed temporary files (``O_TMPFILE``), so
    nothing is left to remove whoever dies. Each is recorded as soon as it exists.

    Raises:
        OutputError: the temporary folder refuses them.
    """
    try:
        spools.extend(tempfile.TemporaryFile(prefix="shardpay-") for _ in range(n))
    except OSError as err:
        raise OutputError(f"cannot create temporary files in {tempfile.gettempdir()!r}: "
                          f"{err.strerror or err}") from None


def close_spools(spools: list[IO[bytes]]) -> None:
    """Close (so free) every spool of ``spools``, emptying the list."""
    while spools:
        spools.pop().close()


def write_reader_batch(spool: BinaryIO, rejects: Iterable[Reject]) -> None:
    """Append invalid-row rejects (in line order) to the reader's spool."""
    write_batch(spool, [(r.line, *r.fields, r.reason, r.detail) for r in rejects])


def write_batch(spool: BinaryIO, records: list) -> None:
    """Append one length-prefixed msgpack batch of records to a spool."""
    spool.write(pack_batch(records))


def pack_batch(records: list) -> bytes:
    """One spool batch: the records as msgpack, prefixed by its length (u32 little-endian)."""
    data = _ENC.encode(records)
    return _LEN.pack(len(data)) + data


def _batches(path: str, decoder: msgspec.msgpack.Decoder) -> Iterator[list]:
    with open(path, "rb") as f:
        while head := f.read(4):
            (n,) = _LEN.unpack(head)
            yield decoder.decode(f.read(n))


_DEC_ANY = msgspec.msgpack.Decoder(list[list])  # either spool's records; the line is the first field


def read_lines(path: str, offset: int = 0) -> tuple[list[int], int]:
    """The line numbers of the rejects a spool (either kind) holds from byte ``offset`` on.

    Reads whole batches only: one still being written is left for the next
    call. Returns the lines (in order) and the offset to pass next time.
    """
    lines: list[int] = []
    with open(path, "rb") as f:
        f.seek(offset)
        while len(head := f.read(4)) == 4:
            (n,) = _LEN.unpack(head)
            data = f.read(n)
            if len(data) < n:
                break
            lines.extend(record[0] for record in _DEC_ANY.decode(data))
            offset += 4 + n
    return lines, offset


def _reader_rows(path: str) -> Iterator[RejectRow]:
    for batch in _batches(path, _DEC):
        yield from batch


def _worker_rows(path: str) -> Iterator[RejectRow]:
    for batch in _batches(path, _DEC_LEDGER):
        for record in batch:
            yield render(*record)


def render(line: int, reason: int, kind: int, client: int, tx: int, amount: int, aux: int) -> RejectRow:
    """Build the reported row of a ledger reject record (see :class:`shardpay.ledger.Ledger`)."""
    name = KIND_NAMES[kind]
    if reason == DUPLICATE_TX:
        detail = f"tx {tx} was already used by an earlier deposit or withdrawal"
    elif reason == ACCOUNT_LOCKED:
        detail = f"account {client} is locked by a chargeback"
    elif reason == INSUFFICIENT_FUNDS:
        detail = f"available {format_units(aux)} is less than {format_units(amount)}"
    elif reason == UNKNOWN_TX:
        detail = f"client {client} has no accepted deposit or withdrawal with tx {tx} before this line"
    elif reason == NOT_DISPUTABLE:
        detail = f"tx {tx} is a withdrawal; only deposits can be disputed"
    elif reason == ALREADY_DISPUTED:
        detail = f"tx {tx} was charged back" if aux == CHARGED_BACK else f"tx {tx} is already under dispute"
    elif reason == NOT_DISPUTED:
        detail = f"tx {tx} is a withdrawal" if aux == WITHDRAWN else f"tx {tx} is not under dispute"
    elif reason == OVERFLOW:
        detail = "a balance would leave the signed 64-bit range of 1/10,000 units"
    else:
        detail = ""
    amount_text = format_units(amount) if kind <= WITHDRAWAL else ""
    return RejectRow(line, name, str(client), str(tx), amount_text, REASONS[reason], detail)


def merge(reader_spool: str, worker_spools: Iterable[str]) -> Iterator[RejectRow]:
    """Every reject of a run, in line order (each line is rejected at most once)."""
    streams = [_reader_rows(reader_spool)] + [_worker_rows(p) for p in worker_spools]
    nonempty = [s for s, p in zip(streams, [reader_spool, *worker_spools]) if os.path.getsize(p)]
    if len(nonempty) <= 1:  # one spool holds every reject: it is in line order already
        return iter(nonempty[0]) if nonempty else iter(())
    return heapq.merge(*nonempty, key=_line)


def _line(r: RejectRow) -> int:
    return r.line
