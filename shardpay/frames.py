"""Frames: every message of the pipeline, byte for byte, and how rows find their shard.

::

    reader --chunk--> decoder k --decoded chunk--> sequencer --data frame--> worker s
           --long line-->                                     (one per shard)
           --mark----------------------------------------------------------------->

All integers are little-endian on every machine (a Ray frame may cross
machines). Each message starts with a tag byte:

* **chunk** ``b"C" | first line (u64) | whole lines``: a piece of the input
  cut at line ends, numbered in file order, for a decoder. ``first line`` is
  the physical line number (from 1) of its first byte.
* **long line** ``b"L" | line (u64) | size (u64) | first bytes``: a line longer
  than the reader holds, for a decoder to reject.
* **decoded chunk** ``b"R" | invalid (u32) | frame length (u32) | base (u64) |
  data frame | rejects``: a chunk's well-formed rows as one data frame (every
  shard's, kinds without ``DUPLICATE`` yet, each line number less ``base``:
  the chunk's first line, so a decoder writes a chunk of plain rows' lines
  as a copy of ``0, 1, 2, ...``), the count of its invalid rows, and those
  rows as one reject spool batch (:func:`shardpay.rejects.rejects_batch`;
  empty when there are none).
* **data frame** ``b"F" | n (u32) | lines u64[n] | kinds u8[n] | clients u32[n] |
  txs u32[n] | amounts u64[n]``: rows in line order as raw columns, 25 bytes
  a row. ``kinds`` are kind codes (:mod:`shardpay.codes`, plus ``DUPLICATE``
  for a deposit or withdrawal whose tx id an earlier row claimed);
  ``amounts`` 1/10,000 units (0 for dispute, resolve, chargeback). The
  worker copies each column once and makes each int only as its loop reads it.
* **mark** ``b"M" | token (u64)``: passes through every process behind the
  rows sent before it; the sequencer and each worker answer it with their
  state at that point (``Engine.snapshot``).

**Shards.** A client belongs to exactly one shard, ``shard_of(workers)[client]``:
a multiplicative (Fibonacci) hash, so clients spread evenly even when their
ids share a stride with the worker count.

This module loads no numpy: :func:`shard_frames` takes numpy columns from its
caller (the sequencer) and uses only their methods, so the parent, the
decoders and the workers never load numpy.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CHUNK_TAG",
    "DECODED_TAG",
    "FRAME_TAG",
    "LONG_LINE_TAG",
    "MARK_TAG",
    "ROW_BYTES",
    "U64",
    "chunk_message",
    "decoded_message",
    "frame_layout",
    "frame_rows",
    "long_line_message",
    "mark_frame",
    "mark_token",
    "pack_frame",
    "read_chunk",
    "read_decoded",
    "read_long_line",
    "shard_frames",
    "shard_of",
    "unpack_frame",
]

CHUNK_TAG = b"C"
LONG_LINE_TAG = b"L"
DECODED_TAG = b"R"
FRAME_TAG = b"F"
MARK_TAG = b"M"

U64 = "L" if array("L").itemsize == 8 else "Q"
"""Typecode of unsigned 64-bit arrays: ``L`` where long is 64-bit (stores through
``PyLong_AsUnsignedLong``, several times cheaper than ``Q``'s byte-array path
and than the ``PyArg_Parse`` of the signed types ``q`` and ``H``)."""
_U32 = "I"
_COUNT = struct.Struct("<I")
_HEAD = len(FRAME_TAG) + _COUNT.size
_U64 = struct.Struct("<Q")
_LONG = struct.Struct("<QQ")
_DECODED = struct.Struct("<IIQ")
_COLUMNS = (U64, None, _U32, _U32, U64)  # typecodes; kinds are bytes
_LITTLE = ("<u8", "u1", "<u4", "<u4", "<u8")  # the same columns as numpy dtypes
ROW_BYTES = 1 + 2 * 8 + 2 * 4
"""Bytes a row takes in a data frame."""
_BIG_ENDIAN = sys.byteorder == "big"


def shard_of(workers: int) -> bytes:
    """The client -> shard table: ``table[client]`` is the shard (0..workers-1) owning that client."""
    return bytes(((c * 2654435761) & 0xFFFFFFFF) * workers >> 32 for c in range(65536))


# -- data frames ------------------------------------------------------------------------


def pack_frame(lines: Iterable[int], kinds: bytes, clients: Iterable[int], txs: Iterable[int],
               amounts: Iterable[int]) -> bytes:
    """One data frame of ``len(kinds)`` rows, from five columns of ints (any iterables
    of that length; ``kinds`` as bytes).

    Raises:
        OverflowError: a value does not fit its column.
    """
    cols = [array(code, col) for code, col in zip(_COLUMNS, (lines, None, clients, txs, amounts)) if code]
    if _BIG_ENDIAN:
        for col in cols:
            col.byteswap()
    return b"".join((FRAME_TAG, _COUNT.pack(len(kinds)), cols[0], kinds, *cols[1:]))


def frame_rows(frame: bytes) -> int:
    """How many rows a data frame carries (its header's count)."""
    return _COUNT.unpack_from(frame, 1)[0]


def frame_layout(frame: bytes) -> tuple[int, list[tuple[int, str]]]:
    """``(n, [(byte offset, numpy dtype), ...])`` of a data frame's five columns, for
    reading them in place (``numpy.frombuffer(frame, dtype, n, offset)``).

    Raises:
        ValueError: not a data frame (tag or length wrong).
    """
    n = _checked_rows(frame)
    layout = []
    pos = _HEAD
    for code, dtype in zip(_COLUMNS, _LITTLE):
        layout.append((pos, dtype))
        pos += n * (array(code).itemsize if code else 1)
    return n, layout


def _checked_rows(frame: bytes) -> int:
    if len(frame) < _HEAD or frame[:1] != FRAME_TAG:
        raise ValueError("not a shard frame: bad tag or header")
    n = _COUNT.unpack_from(frame, 1)[0]
    if len(frame) != _HEAD + n * ROW_BYTES:
        raise ValueError(f"not a shard frame: {len(frame)} bytes for {n} rows")
    return n


def unpack_frame(frame: bytes) -> tuple[array, bytes, array, array, array]:
    """The five columns of a data frame: ``(lines, kinds, clients, txs, amounts)``,
    arrays but ``kinds`` (bytes); iterating any of them gives ints.

    Raises:
        ValueError: not a data frame (tag or length wrong).
    """
    n = _checked_rows(frame)
    columns: list = []
    pos = _HEAD
    with memoryview(frame) as mv:
        for code in _COLUMNS:
            if code is None:
                columns.append(bytes(mv[pos : pos + n]))
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


# -- the other messages -----------------------------------------------------------------


def chunk_message(first_line: int, lines: bytes) -> bytes:
    """A chunk for a decoder: whole lines (each ending in LF) from physical line ``first_line``."""
    return CHUNK_TAG + _U64.pack(first_line) + lines


def read_chunk(message: bytes) -> tuple[int, bytes]:
    """``(first line, whole lines)`` of a chunk message."""
    return _U64.unpack_from(message, 1)[0], message[9:]


def long_line_message(line: int, size: int, head: bytes) -> bytes:
    """A line of ``size`` bytes, too long to hold, for a decoder to reject; ``head``: its first bytes."""
    return LONG_LINE_TAG + _LONG.pack(line, size) + head


def read_long_line(message: bytes) -> tuple[int, int, bytes]:
    """``(line, size, first bytes)`` of a long-line message."""
    line, size = _LONG.unpack_from(message, 1)
    return line, size, message[17:]


def decoded_message(invalid: int, frame: bytes, rejects: bytes, base: int = 0) -> bytes:
    """A decoded chunk: its data frame (line numbers less ``base``), its invalid-row
    count and those rows' reject batch."""
    return b"".join((DECODED_TAG, _DECODED.pack(invalid, len(frame), base), frame, rejects))


def read_decoded(message: bytes) -> tuple[int, bytes, bytes, int]:
    """``(invalid rows, data frame, reject batch, base)`` of a decoded-chunk message: the
    frame's line numbers plus ``base`` are the physical ones."""
    invalid, size, base = _DECODED.unpack_from(message, 1)
    start = 1 + _DECODED.size
    return invalid, message[start : start + size], message[start + size :], base


def mark_frame(token: int) -> bytes:
    """A mark carrying ``token`` (0..2**64-1)."""
    return MARK_TAG + _U64.pack(token)


def mark_token(frame: bytes) -> int:
    """The token of a mark."""
    return _U64.unpack_from(frame, 1)[0]
