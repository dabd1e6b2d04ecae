"""What a run produces: the accounts, the rejects, the figures; and the merge that makes them.

Each shard owns a disjoint set of clients, so the merge sorts the shards'
snapshots into one client-sorted table; the rejects stay in their spools
and are merged by line when read (:func:`shardpay.rejects.merge`). Either
way the result does not depend on the worker count (SPEC "Output").
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import RingError
from .proc import cpu_seconds, peak_rss_bytes
from .report import account_line
from .rejects import Reject, Spool, close_spools, merge

__all__ = ["Account", "Accounts", "RunResult", "merge_results", "merge_snapshots"]

Accounts = tuple[list[int], list[int], list[int], list[bool]]
"""``(clients, available, held, locked)``: one element per account, sorted by
client, amounts in 1/10,000 units."""


@dataclass(frozen=True, slots=True)
class Account:
    """One client account (SPEC "Accounts"); amounts are ints in 1/10,000 units."""

    client: int
    available: int
    held: int
    locked: bool

    @property
    def total(self) -> int:
        """``available + held`` in 1/10,000 units."""
        return self.available + self.held

    def csv_line(self) -> str:
        """The account's output row, ``client,available,held,total,locked`` (SPEC "Output")."""
        return account_line(self.client, self.available, self.held, self.locked)


@dataclass
class RunResult:
    """What a finished run produced. Use as a context manager: it owns temp files.

    Attributes:
        accounts: the :data:`Accounts` columns.
        reject_counts: reason code -> number of rows rejected for it.
        stats: the run's figures, as ``--stats`` writes them (see :func:`stats_dict`).
    """

    accounts: Accounts
    reject_counts: dict[str, int]
    stats: dict[str, Any]
    _spools: list[Spool] = field(repr=False, default_factory=list)

    def account_list(self) -> list[Account]:
        """The accounts as :class:`Account` records, sorted by client."""
        return [Account(*a) for a in zip(*self.accounts)]

    def rejects(self) -> Iterator[Reject]:
        """Every rejected row in line order, streamed from the spools.

        Each call reads the spools afresh, so it may be called again; not after :meth:`close`.
        """
        return merge(self._spools)

    def close(self) -> None:
        """Free the temporary reject spools."""
        close_spools(self._spools)

    def __enter__(self) -> RunResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_snapshots(shards: list[dict]) -> Accounts:
    """The shards' account snapshots (disjoint clients) as one client-sorted :data:`Accounts`."""
    available: dict[int, int] = {}
    held: dict[int, int] = {}
    locked: dict[int, bool] = {}
    for w in shards:
        clients, avail, hold, lock = w["snapshot"]
        available.update(zip(clients, avail))
        held.update(zip(clients, hold))
        locked.update(zip(clients, map(bool, lock)))
    order = sorted(available)
    return order, [available[c] for c in order], [held[c] for c in order], [locked[c] for c in order]


def merge_results(results: dict[str, dict], workers: int, spools: list[Spool], t_start: float,
                  cpu_start: float) -> RunResult:
    """Merge a finished run's process figures into a :class:`RunResult`.

    Also checks that nothing was lost: the rows the reader routed are the rows
    the workers applied, so accepted + rejected = rows read.

    Args:
        results: each process's final figures, by name (``"reader"``, ``"worker 0"``, ...).
        workers: the number of shards.
        spools: the run's reject spools; the result owns them from now on.
        t_start: ``time.perf_counter()`` when the run started.
        cpu_start: this process's CPU seconds (:func:`shardpay.proc.cpu_seconds`) then.

    Raises:
        RingError: the workers did not receive exactly the rows the reader sent.
    """
    shards = [results[f"worker {i}"] for i in range(workers)]
    counts: Counter[str] = Counter()
    for w in shards:
        counts.update(w["reject_counts"])
    rd = results["reader"]
    routed = rd["rows"] - rd["invalid"]
    received = sum(w["rows"] for w in shards)
    if routed != received:
        raise RingError(f"rows lost between the reader and the workers: {routed:,} sent, {received:,} applied")
    if rd["invalid"]:
        counts["invalid_row"] += rd["invalid"]
    accounts = merge_snapshots(shards)
    stats = stats_dict(results, workers, counts, len(accounts[0]), t_start, cpu_start)
    return RunResult(accounts, dict(counts), stats, list(spools))


def ledger_kind(workers: list[dict]) -> str:
    """Which ledger the workers ran (their ``ledger`` figure): ``"compiled"`` or ``"python"``,
    or ``"mixed"`` if they differ (Ray workers on machines with and without the build)."""
    kinds = {w["ledger"] for w in workers}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def stats_dict(results: dict[str, dict], workers: int, counts: dict[str, int], accounts: int,
               t_start: float, cpu_start: float) -> dict[str, Any]:
    """The run's figures as a JSON-ready dict (``--stats``; the summary shows the same).

    Counts are counted where they happen, not derived: the workers count the
    rows they applied, the reader and the workers the rows they rejected.
    Seconds are rounded to milliseconds; the parent's CPU is this process's
    since ``cpu_start`` (less the reader's when the reader ran in this
    process, as with Ray).
    """
    rd = results["reader"]
    rows = rd["rows"]
    rejected = sum(counts.values())
    ws = [results[f"worker {i}"] for i in range(workers)]
    wall = time.perf_counter() - t_start
    parent_cpu = cpu_seconds() - cpu_start
    if rd["pid"] == os.getpid():  # the reader ran in this process (Ray)
        parent_cpu = max(0.0, parent_cpu - rd["cpu_seconds"])

    def rate(n: int, seconds: float) -> float:
        return round(n / seconds) if seconds > 0 else 0.0

    valid = rows - rd["invalid"]
    accepted = sum(w["rows"] for w in ws) - (rejected - counts.get("invalid_row", 0))
    stats: dict[str, Any] = {
        "ledger": ledger_kind(ws),
        "rows_read": rows,
        "rows_accepted": accepted,
        "rows_rejected": rejected,
        "rejected_by_reason": dict(sorted(counts.items())),
        "accounts": accounts,
        "workers": workers,
        "bytes_read": rd["bytes"],
        "wall_seconds": round(wall, 3),
        "rows_per_second": rate(rows, wall),
        "rows_per_shard": rd["shard_rows"],
        "stored_transactions_per_shard": [w["stored"] for w in ws],
        "parent": {"pid": os.getpid(), "cpu_seconds": round(parent_cpu, 3),
                   "peak_rss_bytes": peak_rss_bytes()},
        "reader": {
            "pid": rd["pid"],
            "cpu_seconds": round(rd["cpu_seconds"], 3),
            "peak_rss_bytes": rd["peak_rss_bytes"],
            "decode_seconds": round(rd["decode_seconds"], 3),
            "decode_rows_per_second": rate(rows, rd["decode_seconds"]),
            "route_seconds": round(rd["route_seconds"], 3),
            "route_rows_per_second": rate(valid, rd["route_seconds"]),
            "blocked_on_full_rings_seconds": round(rd["blocked_seconds"], 3),
        },
        "workers_detail": [
            {
                "shard": i,
                "pid": w["pid"],
                "rows": w["rows"],
                "cpu_seconds": round(w["cpu_seconds"], 3),
                "peak_rss_bytes": w["peak_rss_bytes"],
                "apply_seconds": round(w["apply_seconds"], 3),
                "apply_rows_per_second": rate(w["rows"], w["apply_seconds"]),
                "waiting_on_empty_ring_seconds": round(w["wait_seconds"], 3),
            }
            for i, w in enumerate(ws)
        ],
    }
    procs = [stats["parent"], stats["reader"], *stats["workers_detail"]]
    stats["cpu_seconds_total"] = round(sum(p["cpu_seconds"] for p in procs), 3)
    stats["peak_rss_bytes_sum"] = sum(p["peak_rss_bytes"] for p in procs)
    return stats
