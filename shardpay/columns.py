"""A decoded chunk's rows as numpy columns, the form the claim and the split work on.

The reader process imports this module (and so numpy); the parent and the
workers never do. One C-level pass per column turns the chunk's row structs
(:mod:`shardpay.decode`) into a numpy array.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import NamedTuple

import numpy as np

__all__ = ["ChunkColumns", "chunk_columns"]

_KIND, _CLIENT, _TX, _AMOUNT = (attrgetter(name) for name in ("kind", "client", "tx", "amount"))
_U8, _U32, _U64 = np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.uint64)  # native


class ChunkColumns(NamedTuple):
    """A chunk's rows as numpy columns of equal length, in line order.

    ``lines`` u64 physical line numbers, ``kinds`` u8 kind codes (``+
    DUPLICATE`` once claimed, in place), ``clients`` u32, ``txs`` u32,
    ``amounts`` u64 in 1/10,000 units (0 for dispute, resolve, chargeback).
    Native byte order; :func:`shardpay.frames.shard_frames` makes the
    little-endian frames.
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
