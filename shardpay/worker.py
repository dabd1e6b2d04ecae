"""The worker: one per shard; applies its rows to its :class:`~shardpay.ledger.Ledger`.

:class:`Shard` is the shard's whole state and work, whatever carries its
frames: :func:`run_worker` drives one from a shared-memory ring in a local
worker process (see :mod:`shardpay.local`), and
:class:`shardpay.ray_backend.ShardActor` from Ray actor calls. Frames come in
file order until the end of the stream; rejects leave in line order as raw
ledger records appended to the shard's spool (:mod:`shardpay.rejects` reads
them), so memory stays bounded however many rows are rejected; at the end
the shard's snapshot and figures go back.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from typing import TYPE_CHECKING, Any

from .codes import REASONS
from .frames import MARK_TAG, mark_token
from .ledger import LEDGER, REJECT_FIELDS, Ledger

if TYPE_CHECKING:
    from .ring import Ring

__all__ = ["SPOOL_REJECTS", "Shard", "run_worker"]

SPOOL_REJECTS = 32768
"""Rejects held in memory before they are appended to the spool (56 bytes each):
fewer writes against a bounded buffer."""


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
        """Apply one data frame (:mod:`shardpay.frames`); return the rows it rejected.

        Raises:
            ValueError: the frame is malformed.
        """
        t0 = time.perf_counter()
        rejected = self.ledger.apply_frame(frame)
        self.apply_seconds += time.perf_counter() - t0
        return rejected

    def take_rejects(self, at_least: int = 1) -> bytes:
        """The rejects held, as raw ledger records (see :meth:`Ledger.take_rejects`), if
        there are ``at_least`` of them; else ``b""``. Taken rejects are counted."""
        if self.ledger.rejects_held() < max(at_least, 1):
            return b""
        records = self.ledger.take_rejects()
        self.counts.update(array("q", records)[1::REJECT_FIELDS])
        return records

    def final_figures(self, wait_seconds: float) -> dict:
        """:meth:`figures` at the end of the stream, plus ``apply_seconds``,
        ``wait_seconds`` (time spent waiting for frames) and ``ledger`` (which
        ledger ran: ``"compiled"`` or ``"python"``, :data:`shardpay.ledger.LEDGER`)."""
        figures = self.figures()
        figures.update(apply_seconds=self.apply_seconds, wait_seconds=wait_seconds, ledger=LEDGER)
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


def run_worker(ring: Ring, spool: int | str, stop: Any, strict: bool, conn: Any = None) -> dict:
    """Drain ``ring`` into a fresh :class:`Shard`; return the snapshot and figures.

    Args:
        ring: the ring to consume (this process is its only consumer).
        spool: where to append rejects, raw ledger records in line order: an
            open file descriptor (left open; the engine passes unnamed
            temporary files) or a path.
        stop: an Event set on the first reject when ``strict``.
        strict: ``--strict``.
        conn: where to answer a mark frame (:class:`shardpay.engine.Engine`
            snapshots): ``("mark", token, figures with the snapshot)``, after
            flushing the spool, so the state answered is exactly the rows
            before the mark.

    Returns:
        :meth:`Shard.final_figures`.

    Raises:
        ValueError: a malformed frame. RingError: the reader is gone.
    """
    shard = Shard()
    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:
        while (frame := ring.recv()) is not None:
            if frame[:1] == MARK_TAG:
                spool_file.write(shard.take_rejects())
                spool_file.flush()
                conn.send(("mark", mark_token(frame), shard.figures()))
            elif shard.apply(frame):
                if strict:
                    stop.set()
                spool_file.write(shard.take_rejects(SPOOL_REJECTS))
        spool_file.write(shard.take_rejects())
    return shard.final_figures(ring.blocked_seconds)
