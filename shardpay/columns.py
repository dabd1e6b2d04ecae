"""A decoded chunk as numpy columns: its tx-id marks and its frames per shard.

The reader's routing in whole-chunk vector steps (:class:`shardpay.reader.Reader`
imports this module in its own process, so numpy is never loaded in the
parent or the workers): one C-level pass per column turns the chunk's row
structs into numpy arrays, duplicates are marked on them in line order, and
each shard's frame is the rows of its clients gathered out of every column.
Measured against a Python step a row (append a row and its line to its
shard's lists, then build the shard's columns and pack them): 140 against
193 ns a row (profiling/README.md, "Eighth session").

The frame layout is :func:`shardpay.reader.pack_frame`'s, byte for byte.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import NamedTuple

import numpy as np

__all__ = ["ChunkColumns", "chunk_columns", "distinct_ids", "mark_duplicates", "shard_frames"]

_KIND, _CLIENT, _TX, _AMOUNT = (attrgetter(name) for name in ("kind", "client", "tx", "amount"))
_U8, _U32, _U64 = np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.uint64)  # native
_LITTLE = [np.dtype(code) for code in ("<u8", "u1", "<u4", "<u4", "<u8")]  # a frame's columns


class ChunkColumns(NamedTuple):
    """A chunk's rows as numpy columns of equal length, in line order.

    ``lines`` u64 physical line numbers, ``kinds`` u8 kind codes (``+
    DUPLICATE`` once marked, in place), ``clients`` u32, ``txs`` u32,
    ``amounts`` u64 in 1/10,000 units (0 for dispute, resolve, chargeback).
    Native byte order; frames are little-endian.
    """

    lines: np.ndarray
    kinds: np.ndarray
    clients: np.ndarray
    txs: np.ndarray
    amounts: np.ndarray


def chunk_columns(lines: Sequence[int], rows: Sequence) -> ChunkColumns:
    """Rows (decoded structs, see :mod:`shardpay.decode`) and their line numbers
    (a ``range`` or a list) as :class:`ChunkColumns`.

    Raises:
        OverflowError: a value does not fit its column (decode's range checks prevent it).
    """
    n = len(rows)
    if isinstance(lines, range):
        line_col = np.arange(lines.start, lines.stop, lines.step, dtype=_U64)
    else:
        line_col = np.array(lines, _U64)
    return ChunkColumns(line_col, np.fromiter(map(_KIND, rows), _U8, n), np.fromiter(map(_CLIENT, rows), _U32, n),
                        np.fromiter(map(_TX, rows), _U32, n), np.fromiter(map(_AMOUNT, rows), _U64, n))


def distinct_ids(ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, set[int]]:
    """``(distinct, repeated)`` of ``ids`` (tx ids 0..2**32-1, any order): the ids
    sorted, each once, as a new u32 array; and the ids that occur more than once.

    Raises:
        OverflowError: an id outside 0..2**32-1, with numpy 2 (numpy 1.24-1.26
            warns and wraps it); decode never lets one through.
    """
    distinct = np.array(ids, _U32)
    distinct.sort()
    first = np.empty(distinct.size, bool)  # first occurrence of each id in sorted order
    first[:1] = True
    np.not_equal(distinct[1:], distinct[:-1], out=first[1:])
    if first.all():
        return distinct, set()
    return distinct[first], set(distinct[1:][~first[1:]].tolist())


def mark_duplicates(cols: ChunkColumns, money: np.ndarray, suspects: Collection[int], old: Collection[int],
                    duplicate: int) -> None:
    """Add ``duplicate`` to the kind of each deposit/withdrawal (``money``: bool a
    row) whose id is in ``old`` (claimed before the chunk), or is in
    ``suspects`` and met on an earlier line of the chunk (SPEC "Transactions":
    the first claims it). Visits only the rows of suspect ids, in line order."""
    kinds, txs = cols.kinds, cols.txs
    rows = np.flatnonzero(money & np.isin(txs, np.fromiter(suspects, _U32, len(suspects))))
    seen: set[int] = set()
    for i, tx in zip(rows.tolist(), txs[rows].tolist()):
        if tx in old or tx in seen:
            kinds[i] += duplicate
        else:
            seen.add(tx)


def shard_frames(cols: ChunkColumns, shard: np.ndarray, workers: int, tag: bytes, count) -> list[bytes | None]:
    """Each shard's frame of the chunk: the rows whose client's shard (``shard``:
    u8 a client id, from :func:`shardpay.reader.shard_of`) it is, in line order,
    laid out as :func:`shardpay.reader.pack_frame` does (``tag``, then
    ``count.pack(n)``, then the five columns); ``None`` for a shard with no
    rows."""
    if workers == 1:
        return [_frame(cols, tag, count)]
    of_row = shard[cols.clients]
    frames: list[bytes | None] = []
    for s in range(workers):
        picked = np.flatnonzero(of_row == s)
        frames.append(_frame(ChunkColumns(*(col[picked] for col in cols)), tag, count) if picked.size else None)
    return frames


def _frame(cols: ChunkColumns, tag: bytes, count) -> bytes:
    return b"".join((tag, count.pack(cols.kinds.size),
                     *(col.astype(little, copy=False).tobytes() for col, little in zip(cols, _LITTLE))))
