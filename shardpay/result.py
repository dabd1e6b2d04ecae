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
from .rejects import Reject, Spool, close_spools, merge, merged_csv

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

    def rejects_csv(self) -> Iterator[bytes]:
        """Every rejected row as ``--rejects`` CSV rows, in line order, a block of
        UTF-8 bytes at a time (:func:`shardpay.rejects.merged_csv`): the rows
        :meth:`rejects` gives, written as the csv module would. Not after :meth:`close`."""
        return merged_csv(self._spools)

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


def merge_results(results: dict[str, dict], workers: int, decoders: int, spools: list[Spool], t_start: float,
                  cpu_start: float) -> RunResult:
    """Merge a finished run's process figures into a :class:`RunResult`.

    Also checks that nothing was lost: the rows the decoders decoded are the
    rows the sequencer saw, and the rows it routed are the rows the workers
    applied, so accepted + rejected = rows read.

    Args:
        results: each stage's final figures, by name (``"reader"``,
            ``"decoder 0"``, ..., ``"sequencer"``, ``"worker 0"``, ...).
        workers, decoders: the number of shards and of decoders.
        spools: the run's reject spools; the result owns them from now on.
        t_start: ``time.perf_counter()`` when the run started.
        cpu_start: this process's CPU seconds (:func:`shardpay.proc.cpu_seconds`) then.

    Raises:
        RingError: rows went missing between two stages.
    """
    shards = [results[f"worker {i}"] for i in range(workers)]
    seq = results["sequencer"]
    decoded = sum(results[f"decoder {k}"]["rows"] for k in range(decoders))
    if decoded != seq["rows"]:
        raise RingError(f"rows lost between the decoders and the sequencer: {decoded:,} decoded, "
                        f"{seq['rows']:,} sequenced")
    routed = seq["rows"] - seq["invalid"]
    received = sum(w["rows"] for w in shards)
    if routed != received:
        raise RingError(f"rows lost between the sequencer and the workers: {routed:,} sent, {received:,} applied")
    counts: Counter[str] = Counter()
    for w in shards:
        counts.update(w["reject_counts"])
    if seq["invalid"]:
        counts["invalid_row"] += seq["invalid"]
    accounts = merge_snapshots(shards)
    stats = stats_dict(results, workers, decoders, counts, len(accounts[0]), t_start, cpu_start)
    return RunResult(accounts, dict(counts), stats, list(spools))


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds) if seconds > 0 else 0.0


def _process(figures: dict) -> dict[str, Any]:
    return {"pid": figures["pid"], "cpu_seconds": round(figures["cpu_seconds"], 3),
            "peak_rss_bytes": figures["peak_rss_bytes"]}


def ledger_kind(workers: list[dict]) -> str:
    """Which ledger the workers ran (their ``ledger`` figure): ``"compiled"`` or ``"python"``,
    or ``"mixed"`` if they differ (Ray workers on machines with and without the build)."""
    kinds = {w["ledger"] for w in workers}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def stats_dict(results: dict[str, dict], workers: int, decoders: int, counts: dict[str, int], accounts: int,
               t_start: float, cpu_start: float) -> dict[str, Any]:
    """The run's figures as a JSON-ready dict (``--stats``; the summary shows the same).

    Counts are counted where they happen, not derived: the workers count the
    rows they applied, the sequencer the invalid rows and the workers the rows
    they rejected. Per stage: CPU and peak RSS of its process, the seconds of
    its own work and its rows/s over them, and the seconds it waited on its
    input (``waiting``) and was held up by a full output (``blocked``).
    Seconds are rounded to milliseconds. The parent runs the reader; where a
    stage ran in the parent too (Ray's sequencer), its CPU is its own and the
    parent's is the rest.
    """
    rd, seq = results["reader"], results["sequencer"]
    rows = seq["rows"]
    rejected = sum(counts.values())
    ws = [results[f"worker {i}"] for i in range(workers)]
    ds = [results[f"decoder {k}"] for k in range(decoders)]
    wall = time.perf_counter() - t_start
    parent_cpu = cpu_seconds() - cpu_start
    for stage in (seq, *ds):
        if stage["pid"] == os.getpid():
            parent_cpu = max(0.0, parent_cpu - stage["cpu_seconds"])
    accepted = sum(w["rows"] for w in ws) - (rejected - counts.get("invalid_row", 0))
    stats: dict[str, Any] = {
        "ledger": ledger_kind(ws),
        "rows_read": rows,
        "rows_accepted": accepted,
        "rows_rejected": rejected,
        "rejected_by_reason": dict(sorted(counts.items())),
        "accounts": accounts,
        "workers": workers,
        "decoders": decoders,
        "bytes_read": rd["bytes"],
        "wall_seconds": round(wall, 3),
        "rows_per_second": _rate(rows, wall),
        "rows_per_shard": seq["shard_rows"],
        "stored_transactions_per_shard": [w["stored"] for w in ws],
        "parent": {"pid": os.getpid(), "cpu_seconds": round(parent_cpu, 3), "peak_rss_bytes": peak_rss_bytes(),
                   "chunks": rd["chunks"], "read_seconds": round(rd["read_seconds"], 3),
                   "blocked_on_full_decoder_rings_seconds": round(rd["blocked_seconds"], 3)},
        "decoders_detail": [
            {"decoder": k, **_process(d), "rows": d["rows"], "chunks": d["chunks"],
             "decode_seconds": round(d["decode_seconds"], 3), "decode_rows_per_second": _rate(d["rows"], d["decode_seconds"]),
             "waiting_on_empty_ring_seconds": round(d["waiting_seconds"], 3),
             "blocked_on_full_ring_seconds": round(d["blocked_seconds"], 3)}
            for k, d in enumerate(ds)
        ],
        "sequencer": {
            **_process(seq), "rows": rows, "duplicates": seq["duplicates"], "claims": seq["claims"],
            "route_seconds": round(seq["route_seconds"], 3),
            "route_rows_per_second": _rate(rows - seq["invalid"], seq["route_seconds"]),
            "waiting_on_decoders_seconds": round(seq["waiting_seconds"], 3),
            "blocked_on_full_rings_seconds": round(seq["blocked_seconds"], 3),
        },
        "workers_detail": [
            {"shard": i, **_process(w), "rows": w["rows"], "apply_seconds": round(w["apply_seconds"], 3),
             "apply_rows_per_second": _rate(w["rows"], w["apply_seconds"]),
             "waiting_on_empty_ring_seconds": round(w["wait_seconds"], 3)}
            for i, w in enumerate(ws)
        ],
    }
    procs = [stats["parent"], *stats["decoders_detail"], stats["sequencer"], *stats["workers_detail"]]
    stats["cpu_seconds_total"] = round(sum(p["cpu_seconds"] for p in procs), 3)
    stats["peak_rss_bytes_sum"] = sum({p["pid"]: p["peak_rss_bytes"] for p in procs}.values())
    return stats
