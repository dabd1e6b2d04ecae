"""The worker: one per shard; applies its rows to its :class:`~shardpay.ledger.Ledger`.

:class:`Shard` is the shard's whole state and work, whatever carries its
frames: :func:`run_worker` drives one from a shared-memory ring in a local
worker process (see :mod:`shardpay.engine`), and
:class:`shardpay.ray_backend.ShardActor` from Ray actor calls. Frames come in
file order until the end of the stream; rejects leave in line order as
msgpack batches (:mod:`shardpay.rejects`), so memory stays bounded however
many rows are rejected; at the end the shard's snapshot and figures go back.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from operator import itemgetter
from typing import Any

from .ledger import REASONS, Ledger
from .reader import unpack_frame
from .rejects import pack_batch
from .ring import Ring

__all__ = ["MARK", "SPOOL_REJECTS", "Shard", "run_worker"]

SPOOL_REJECTS = 32768
"""Rejects kept in memory before they are appended to the spool file (a tuple of 7 ints each)."""


MARK = b"M"
"""First byte of a mark frame (``MARK`` + 8-byte token); data frames start with
:data:`shardpay.reader.FRAME_TAG`."""


class Shard:
    """One shard: a fresh :class:`Ledger`, its reject counts and its stage figures.

    The same code for every transport (SPEC "Transactions" through the ledger).

    Attributes:
        ledger: the shard's accounts and stored transactions.
        apply_seconds: time spent in :meth:`apply`.
    """

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.counts: Counter[int] = Counter()
        self.apply_seconds = 0.0

    def apply(self, frame: bytes) -> int:
        """Apply one data frame (see :func:`shardpay.reader.pack_frame`); return the rows it rejected.

        Raises:
            ValueError: the frame is malformed.
        """
        cols = unpack_frame(frame)
        t0 = time.perf_counter()
        rejected = self.ledger.apply(*cols)
        self.apply_seconds += time.perf_counter() - t0
        return rejected

    def take_rejects(self, at_least: int = 1) -> bytes:
        """The rejects held, as one spool batch (:func:`shardpay.rejects.pack_batch`), if there are
        ``at_least`` of them; else ``b""``. Taken rejects are counted and released."""
        rejects = self.ledger.rejects
        if not rejects or len(rejects) < at_least:
            return b""
        self.counts.update(map(itemgetter(1), rejects))
        self.ledger.rejects = []
        return pack_batch(rejects)

    def final_figures(self, wait_seconds: float) -> dict:
        """:meth:`figures` at the end of the stream, plus ``apply_seconds`` and
        ``wait_seconds`` (time spent waiting for frames)."""
        figures = self.figures()
        figures.update(apply_seconds=self.apply_seconds, wait_seconds=wait_seconds)
        return figures

    def figures(self) -> dict:
        """The snapshot and counts: ``snapshot`` (see :meth:`Ledger.snapshot`), ``rows``,
        ``reject_counts`` (reason -> count of rejects taken so far), ``stored``."""
        ledger = self.ledger
        return {
            "snapshot": ledger.snapshot(),
            "rows": ledger.applied,
            "reject_counts": {REASONS[r]: n for r, n in self.counts.items()},
            "stored": ledger.stored(),
        }


def run_worker(index: int, ring: Ring, spool: int | str, stop: Any, strict: bool, conn: Any = None) -> dict:
    """Drain ``ring`` into a fresh :class:`Shard`; return the snapshot and figures.

    Args:
        index: this worker's shard number.
        ring: the ring to consume (this process is its only consumer).
        spool: where to write rejects, msgpack batches of ledger reject
            records in line order (:mod:`shardpay.rejects`): an open file
            descriptor (left open; the engine passes unnamed temporary
            files) or a path.
        stop: an Event set on the first reject when ``strict``.
        strict: ``--strict``.
        conn: where to answer a mark frame (:class:`shardpay.engine.Engine`
            snapshots): ``("mark", token, figures with the snapshot)``, after
            flushing the spool, so the state answered is exactly the rows
            before the mark.

    Returns:
        :meth:`Shard.final_figures`.
    """
    fault = os.environ.get("SHARDPAY_TEST_FAULT", "")
    shard = Shard()
    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:
        while True:
            frame = ring.recv()
            if frame is None:
                break
            if fault == f"worker-{index}-raise":
                raise RuntimeError(f"injected fault in worker {index}")
            if frame[:1] == MARK:
                spool_file.write(shard.take_rejects())
                spool_file.flush()
                conn.send(("mark", int.from_bytes(frame[1:9], "little"), shard.figures()))
                continue
            if shard.apply(frame):
                if strict:
                    stop.set()
                if batch := shard.take_rejects(SPOOL_REJECTS):
                    spool_file.write(batch)
        spool_file.write(shard.take_rejects())
    return shard.final_figures(ring.blocked_seconds)
