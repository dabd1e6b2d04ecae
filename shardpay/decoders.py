"""The decoders: chunks of CSV in, decoded chunks (raw columns and rejects) out.

The pipeline's parallel stage (see :mod:`shardpay.engine`): K processes, each
taking whole chunks from the reader, round robin, and doing all of a chunk's
decoding on its own: the guard, the rewrite, msgspec, the exact path for odd
lines, the reject of every invalid row with its exact line number
(:func:`shardpay.decode.decode_offsets`; the reader numbered the chunk). A
chunk's rows leave as one data frame of raw columns (every shard's, in line
order) and its invalid rows as one reject spool batch, in one decoded-chunk
message (:mod:`shardpay.frames`). Nothing here depends on another chunk, so
decoders never wait on each other; the sequencer puts their output back in
file order.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .decode import decode_offsets, offsets
from .frames import (
    CHUNK_TAG,
    LONG_LINE_TAG,
    decoded_message,
    pack_frame,
    read_chunk,
    read_long_line,
)
from . import reader
from .rejects import Reject, rejects_batch

if TYPE_CHECKING:
    from .ring import Ring

__all__ = ["Decoder", "run_decoder"]

class Decoder:
    """One decoder's work and figures, whatever carries its messages.

    Attributes:
        rows: non-empty data rows decoded (invalid ones included); ``invalid``: of which invalid.
        chunks: chunks decoded. decode_seconds: time spent in :meth:`decode`.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.invalid = 0
        self.chunks = 0
        self.decode_seconds = 0.0

    def decode(self, message: bytes) -> bytes:
        """The decoded-chunk message of a chunk or long-line message; any other message
        (a mark) passes through unchanged."""
        tag = message[:1]
        if tag == CHUNK_TAG:
            return self._chunk(*read_chunk(message))
        if tag == LONG_LINE_TAG:
            return self._long_line(*read_long_line(message))
        return message

    def _chunk(self, first_line: int, block: bytes) -> bytes:
        t0 = time.perf_counter()
        columns, rejects = decode_offsets(block, first_line)
        lines = columns.lines
        if isinstance(lines, range):  # every line a plain row: 0, 1, 2, ...
            lines = offsets(len(lines))
        frame = pack_frame(lines, bytes(columns.kinds), columns.clients, columns.txs, columns.amounts)
        out = decoded_message(len(rejects), frame, rejects_batch(rejects) if rejects else b"", first_line)
        self.decode_seconds += time.perf_counter() - t0
        self._count(len(columns.kinds) + len(rejects), len(rejects))
        return out

    def _long_line(self, line: int, size: int, head: bytes) -> bytes:
        detail = f"line is {size} bytes, longer than the {reader.MAX_LINE_BYTES}-byte limit"
        text = head.decode("utf-8", "backslashreplace") + "..."
        self._count(1, 1)
        return decoded_message(1, pack_frame((), b"", (), (), ()),
                               rejects_batch([Reject(line, text, "", "", "", "invalid_row", detail)]))

    def _count(self, rows: int, invalid: int) -> None:
        self.chunks += 1
        self.rows += rows
        self.invalid += invalid

    def figures(self, waiting_seconds: float, blocked_seconds: float) -> dict:
        """This decoder's stage figures, as ``--stats`` takes them
        (:func:`shardpay.result.stats_dict`)."""
        return {"rows": self.rows, "invalid": self.invalid, "chunks": self.chunks,
                "decode_seconds": self.decode_seconds, "waiting_seconds": waiting_seconds,
                "blocked_seconds": blocked_seconds}


def run_decoder(chunks: Ring, decoded: Ring, stop: Any, strict: bool) -> dict:
    """A decoder process's body: decode every message of ``chunks`` onto ``decoded``, in order.

    Args:
        chunks: the ring the reader deals this decoder's chunks onto (this process consumes).
        decoded: the ring to the sequencer (this process produces).
        stop: an Event; set at the first invalid row when ``strict``.
        strict: ``--strict``.

    Returns:
        :meth:`Decoder.figures`.

    Raises:
        RingError: the parent is gone.
    """
    decoder = Decoder()
    while (message := chunks.recv()) is not None:
        invalid = decoder.invalid
        decoded.send(decoder.decode(message))
        if strict and decoder.invalid > invalid:
            stop.set()
    decoded.send_eos()
    return decoder.figures(chunks.blocked_seconds, decoded.blocked_seconds)
