"""The worker: one per shard; applies its rows to its :class:`~shardpay.ledger.Ledger`.

Runs in its own process (see :mod:`shardpay.engine`): receives frames from
its ring in file order until the end-of-stream mark, applies each to the
ledger, spools rejects to a file as it goes (memory stays bounded however
many rows are rejected), and finally sends the shard's snapshot and figures.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from operator import itemgetter
from typing import Any, BinaryIO

from .ledger import REASONS, Ledger
from .reader import unpack_frame
from .rejects import write_batch
from .ring import Ring

__all__ = ["MARK", "SPOOL_REJECTS", "run_worker"]

SPOOL_REJECTS = 32768
"""Rejects kept in memory before they are appended to the spool file (a tuple of 7 ints each)."""


MARK = b"M"
"""First byte of a mark frame (``MARK`` + 8-byte token); data frames are msgpack arrays."""


def run_worker(index: int, ring: Ring, spool: int | str, stop: Any, strict: bool, conn: Any = None) -> dict:
    """Drain ``ring`` into a fresh ledger; return the snapshot and figures.

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
        A dict with ``snapshot`` (see :meth:`Ledger.snapshot`), ``rows``,
        ``reject_counts`` (reason -> count), ``stored``, ``apply_seconds``,
        ``wait_seconds``.
    """
    fault = os.environ.get("SHARDPAY_TEST_FAULT", "")
    ledger = Ledger()
    counts: Counter[int] = Counter()
    apply_seconds = 0.0
    with open(spool, "wb", closefd=not isinstance(spool, int)) as spool_file:
        while True:
            frame = ring.recv()
            if frame is None:
                break
            if fault == f"worker-{index}-raise":
                raise RuntimeError(f"injected fault in worker {index}")
            if frame[:1] == MARK:
                _spool(spool_file, ledger.rejects, counts)
                ledger.rejects = []
                spool_file.flush()
                conn.send(("mark", int.from_bytes(frame[1:9], "little"), _figures(ledger, counts)))
                continue
            cols = unpack_frame(frame)
            t0 = time.perf_counter()
            rejected = ledger.apply(*cols)
            apply_seconds += time.perf_counter() - t0
            del cols
            if rejected:
                if strict:
                    stop.set()
                if len(ledger.rejects) >= SPOOL_REJECTS:
                    _spool(spool_file, ledger.rejects, counts)
                    ledger.rejects = []
        _spool(spool_file, ledger.rejects, counts)
    figures = _figures(ledger, counts)
    figures.update(apply_seconds=apply_seconds, wait_seconds=ring.blocked_seconds)
    return figures


def _figures(ledger: Ledger, counts: Counter[int]) -> dict:
    return {
        "snapshot": ledger.snapshot(),
        "rows": ledger.applied,
        "reject_counts": {REASONS[r]: n for r, n in counts.items()},
        "stored": ledger.stored(),
    }


def _spool(spool: BinaryIO, rejects: list[tuple[int, ...]], counts: Counter[int]) -> None:
    """Append ledger reject records to the spool (see :mod:`shardpay.rejects`)."""
    if rejects:
        counts.update(map(itemgetter(1), rejects))
        write_batch(spool, rejects)
