"""The pipeline's stages in one process: reader -> decoder -> sequencer, no rings.

For tests and the profiling tools: the same code the engine's processes run
(:class:`shardpay.reader.Reader`, :class:`shardpay.decoders.Decoder`,
:class:`shardpay.sequencer.Sequencer`), called one after the other, so a
stage's output can be checked or timed without processes in between.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..decoders import Decoder
from ..frames import DECODED_TAG
from ..reader import Reader
from ..rejects import Reject, unpack_rejects
from ..sequencer import Sequencer

__all__ = ["Routed", "route"]


@dataclass
class Routed:
    """What the stages made of one input.

    Attributes:
        frames: each shard's data frames, in order.
        rejects: the invalid rows, in line order.
        reader, decoder, sequencer: the stages, with their figures.
    """

    frames: list[list[bytes]]
    rejects: list[Reject] = field(default_factory=list)
    reader: Reader | None = None
    decoder: Decoder | None = None
    sequencer: Sequencer | None = None


def route(source: bytes | BinaryIO, workers: int, chunk_bytes: int | None = None,
          feed: Callable[[Reader], None] | None = None) -> Routed:
    """Cut, decode, claim and split ``source`` into each shard's frames.

    Args:
        source: the whole input as bytes, or a binary stream to read.
        workers: shards.
        chunk_bytes: the reader's chunk size (default: the engine's).
        feed: instead of reading ``source``, call this with the reader (to
            feed it in pieces and finish it).

    Raises:
        InputError: the header is wrong.
    """
    decoder, sequencer = Decoder(), Sequencer(workers)
    routed = Routed([[] for _ in range(workers)], decoder=decoder, sequencer=sequencer)

    def sink(message: bytes) -> None:
        decoded = decoder.decode(message)
        if decoded[:1] != DECODED_TAG:
            return  # a mark
        rejects, frames = sequencer.sequence(decoded)
        if rejects:
            routed.rejects += unpack_rejects(rejects)
        for shard, frame in zip(routed.frames, frames):
            if frame is not None:
                shard.append(frame)

    routed.reader = Reader(sink, chunk_bytes)
    if feed is not None:
        feed(routed.reader)
    else:
        routed.reader.run(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    return routed
