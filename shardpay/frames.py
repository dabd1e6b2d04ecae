"""Frames: what travels to a shard, byte for byte, and how rows find their shard.

A **data frame** carries one shard's rows of one input chunk, in line order,
as raw little-endian columns (little-endian on every machine: a Ray frame may
cross machines)::

    b"F" | n (u32) | lines u64[n] | kinds u8[n] | clients u32[n] | txs u32[n] | amounts u64[n]

``lines`` are physical line numbers; ``kinds`` kind codes
(:mod:`shardpay.codes`, plus ``DUPLICATE`` for a deposit or withdrawal whose
tx id an earlier row claimed); ``amounts`` 1/10,000 units (0 for dispute,
resolve, chargeback). 25 bytes a row: the worker copies each column once and
makes each int only as its loop reads it.

A **mark frame** is ``b"M"`` and an 8-byte token (u64): it passes through
every process of the pipeline behind the rows sent before it, and each
process answers it with its state at that point (``Engine.snapshot``).

A **feed frame** is ``b"D"`` and input bytes, in any chunking: what an
:class:`~shardpay.engine.Engine` hands its reader over the input ring
(marks travel there too).

**Shards.** A client belongs to exactly one shard, ``shard_of(workers)[client]``:
a multiplicative (Fibonacci) hash, so clients spread evenly even when their
ids share a stride with the worker count.

This module loads no numpy: :func:`shard_frames` takes numpy columns from its
caller (the reader process) and uses only their methods, so the parent and
the workers never load numpy.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

__all__ = [
    "FEED_TAG",
    "FRAME_TAG",
    "MARK_TAG",
    "ROW_BYTES",
    "U64",
    "frame_rows",
    "mark_frame",
    "mark_token",
    "pack_frame",
    "shard_frames",
    "shard_of",
    "unpack_frame",
]

FRAME_TAG = b"F"
"""First byte of a data frame."""
MARK_TAG = b"M"
"""First byte of a mark frame."""
FEED_TAG = b"D"
"""First byte of a feed frame (input bytes for a fed reader)."""

U64 = "L" if array("L").itemsize == 8 else "Q"
"""Typecode of unsigned 64-bit arrays: ``L`` where long is 64-bit (stores through
``PyLong_AsUnsignedLong``, several times cheaper than ``Q``'s byte-array path
and than the ``PyArg_Parse`` of the signed types ``q`` and ``H``)."""
_U32 = "I"
_COUNT = struct.Struct("<I")
_HEAD = len(FRAME_TAG) + _COUNT.size
_TOKEN = struct.Struct("<Q")
_COLUMNS = (U64, None, _U32, _U32, U64)  # typecodes; kinds are bytes
_LITTLE = ("<u8", "u1", "<u4", "<u4", "<u8")  # the same columns as numpy dtypes
ROW_BYTES = 1 + 2 * 8 + 2 * 4
"""Bytes a row takes in a data frame."""
_BIG_ENDIAN = sys.byteorder == "big"


def shard_of(workers: int) -> bytes:
    """The client -> shard table: ``table[client]`` is the shard (0..workers-1) owning that client."""
    return bytes(((c * 2654435761) & 0xFFFFFFFF) * workers >> 32 for c in range(65536))


def pack_frame(lines: Sequence[int], kinds: bytes, clients: Sequence[int], txs: Sequence[int],
               amounts: Sequence[int]) -> bytes:
    """One data frame of ``len(kinds)`` rows, from five equal-length columns of ints.

    Raises:
        OverflowError: a value does not fit its column.
    """
    cols = [array(code, col) for code, col in zip(_COLUMNS, (lines, None, clients, txs, amounts)) if code]
    if _BIG_ENDIAN:
        for col in cols:
            col.byteswap()
    return b"".join((FRAME_TAG, _COUNT.pack(len(kinds)), cols[0], kinds, *cols[1:]))


def shard_frames(columns: Sequence[Any], shard: Any, workers: int) -> list[bytes | None]:
    """Each shard's data frame of one chunk: the rows of its clients, in line order.

    Args:
        columns: the chunk's rows as five numpy arrays of equal length, in
            line order: lines, kinds, clients, txs, amounts (any integer
            dtype that holds their values).
        shard: numpy u8 array, :func:`shard_of` as an array.
        workers: shards.

    Returns:
        One frame per shard, ``None`` for a shard with no rows.
    """
    if workers == 1:
        return [_frame(columns)]
    of_row = shard[columns[2]]
    frames: list[bytes | None] = []
    for s in range(workers):
        picked = (of_row == s).nonzero()[0]
        frames.append(_frame([col[picked] for col in columns]) if picked.size else None)
    return frames


def _frame(columns: Sequence[Any]) -> bytes:
    return b"".join((FRAME_TAG, _COUNT.pack(columns[1].size),
                     *(col.astype(little, copy=False).tobytes() for col, little in zip(columns, _LITTLE))))


def frame_rows(frame: bytes) -> int:
    """How many rows a data frame carries (its header's count)."""
    return _COUNT.unpack_from(frame, 1)[0]


def unpack_frame(frame: bytes) -> tuple[array, bytes, array, array, array]:
    """The five columns of a data frame: ``(lines, kinds, clients, txs, amounts)``,
    arrays but ``kinds`` (bytes); iterating any of them gives ints.

    Raises:
        ValueError: not a data frame (tag or length wrong).
    """
    if len(frame) < _HEAD or frame[:1] != FRAME_TAG:
        raise ValueError("not a shard frame: bad tag or header")
    n = _COUNT.unpack_from(frame, 1)[0]
    if len(frame) != _HEAD + n * ROW_BYTES:
        raise ValueError(f"not a shard frame: {len(frame)} bytes for {n} rows")
    columns: list = []
    pos = _HEAD
    with memoryview(frame) as mv:
        for code in _COLUMNS:
            if code is None:
                columns.append(frame[pos : pos + n])
                pos += n
                continue
            col = array(code)
            end = pos + n * col.itemsize
            col.frombytes(mv[pos:end])
            if _BIG_ENDIAN:
                col.byteswap()
            columns.append(col)
            pos = end
    return tuple(columns)  # type: ignore[return-value]


def mark_frame(token: int) -> bytes:
    """A mark frame carrying ``token`` (0..2**64-1)."""
    return MARK_TAG + _TOKEN.pack(token)


def mark_token(frame: bytes) -> int:
    """The token of a mark frame."""
    return _TOKEN.unpack_from(frame, 1)[0]
