"""The sequencer: decoded chunks back in file order, the tx-id claim, one frame per shard.

The pipeline's ordering stage (see :mod:`shardpay.engine`): one process that
takes the decoders' output strictly in file order (chunk ``i`` from decoder
``i mod K``, as the reader dealt them), appends each chunk's invalid-row
rejects to its spool, claims the chunk's tx ids (SPEC "Transactions": the
first well-formed deposit or withdrawal with an id claims it;
:class:`shardpay.claims.Claims`) and splits its rows by shard into data
frames (:func:`shardpay.frames.shard_frames`). It works on whole columns with
numpy, never a Python step a row, so that it stays far from being the bound:
the decoders and the workers do the per-row work.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .errors import RingError
from .frames import (
    DECODED_TAG,
    MARK_TAG,
    frame_layout,
    frame_rows,
    mark_token,
    read_decoded,
    shard_frames,
    shard_of,
)

if TYPE_CHECKING:
    from .ring import Ring

__all__ = ["Sequencer", "run_sequencer"]


class Sequencer:
    """Claim and split decoded chunks given in file order.

    numpy (and the claim sets) are loaded when one is made, in the
    sequencer's own process.

    Args:
        workers: shards.

    Attributes (the stage figures):
        rows: non-empty data rows seen (invalid ones included); ``invalid``: of which invalid.
        shard_rows: rows sent to each shard. duplicates: rows marked ``duplicate_tx``.
        route_seconds: time spent claiming and splitting.
    """

    def __init__(self, workers: int) -> None:
        import numpy as np

        from .claims import CLAIMS, Claims

        self._np = np
        self._claims_twin = CLAIMS
        self.workers = workers
        self._shard_map = np.frombuffer(shard_of(workers), np.uint8)
        self.claims = Claims()
        self.rows = 0
        self.invalid = 0
        self.duplicates = 0
        self.shard_rows = [0] * workers
        self.route_seconds = 0.0

    def sequence(self, message: bytes) -> tuple[bytes, list[bytes | None]]:
        """A decoded-chunk message's reject batch (for the spool; ``b""`` if none) and
        its rows as one frame per shard (see :meth:`route`).

        Raises:
            ValueError: the message or its frame is malformed.
        """
        invalid, frame, rejects, base = read_decoded(message)
        self.rows += invalid
        self.invalid += invalid
        return rejects, self.route(frame, base)

    def route(self, frame: bytes, base: int = 0) -> list[bytes | None]:
        """One chunk's data frame (every shard's rows, kinds without ``DUPLICATE``, line
        numbers less ``base``) as one frame per shard, line numbers whole, duplicates
        marked; ``None`` for a shard with no rows.

        Raises:
            ValueError: the frame is malformed.
        """
        t0 = time.perf_counter()
        n, layout = frame_layout(frame)
        np = self._np
        columns = [np.frombuffer(frame, dtype, n, offset) for offset, dtype in layout]
        columns[1] = columns[1].copy()  # kinds: marked in place
        if base:
            columns[0] = columns[0] + np.uint64(base)
        marked = self.claims.claim(columns[1], columns[3])
        if self.workers == 1:
            frames: list[bytes | None] = [frame if not (marked or base) else shard_frames(columns, self._shard_map, 1)[0]]
            self.shard_rows[0] += n
        else:
            frames = shard_frames(columns, self._shard_map, self.workers)
            for s, f in enumerate(frames):
                if f is not None:
                    self.shard_rows[s] += frame_rows(f)
        self.rows += n
        self.duplicates += marked
        self.route_seconds += time.perf_counter() - t0
        return frames

    def figures(self, waiting_seconds: float, blocked_seconds: float) -> dict:
        """The sequencer's stage figures, as ``--stats`` takes them (:func:`shardpay.result.stats_dict`);
        ``claims`` names the claim table's twin that ran (:data:`shardpay.claims.CLAIMS`)."""
        return {"rows": self.rows, "invalid": self.invalid, "duplicates": self.duplicates, "claims": self._claims_twin,
                "shard_rows": self.shard_rows, "route_seconds": self.route_seconds,
                "waiting_seconds": waiting_seconds, "blocked_seconds": blocked_seconds}


def run_sequencer(decoded: list[Ring], shards: list[Ring], spool: int | str, stop: Any, strict: bool,
                  progress: Any, conn: Any) -> dict:
    """The sequencer process's body: the decoders' rings in, in file order, onto the shards' rings.

    Args:
        decoded: one ring per decoder (this process consumes), in the order
            the reader dealt chunks to them.
        shards: one ring per worker (this process produces).
        spool: where to append invalid-row rejects (:mod:`shardpay.rejects`):
            an open file descriptor (left open) or a path.
        stop: an Event; set at the first invalid row when ``strict``.
        strict: ``--strict``.
        progress: two shared ints; this process keeps ``progress[1]`` at the rows read so far.
        conn: where to answer a mark: ``("mark", token, {"rows", "invalid"})``,
            after passing it to every worker and flushing the spool.

    Returns:
        :meth:`Sequencer.figures`.

    Raises:
        RingError: the parent is gone, or the decoders' streams do not end together.
    """
    sequencer = Sequencer(len(shards))
    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:
        turn = 0
        while (message := decoded[turn].recv()) is not None:
            turn = (turn + 1) % len(decoded)
            if message[:1] == DECODED_TAG:
                rejects, frames = sequencer.sequence(message)
                spool_file.write(rejects)
                for ring, frame in zip(shards, frames):
                    if frame is not None:
                        ring.send(frame)
                progress[1] = sequencer.rows
                if strict and sequencer.invalid:
                    stop.set()
            elif message[:1] == MARK_TAG:
                spool_file.flush()
                for ring in shards:
                    ring.send(message)
                conn.send(("mark", mark_token(message), {"rows": sequencer.rows, "invalid": sequencer.invalid}))
            else:
                raise RingError(f"the sequencer got an unknown message (tag {message[:1]!r})")
        for k in range(1, len(decoded)):  # every decoder ends here: the reader ended them all
            if decoded[(turn + k) % len(decoded)].recv() is not None:
                raise RingError("a decoder's stream went on after another's ended")
        for ring in shards:
            ring.send_eos()
    return sequencer.figures(sum(r.blocked_seconds for r in decoded), sum(r.blocked_seconds for r in shards))
