"""The merge (``shardpay.result``): shards' snapshots into one client-sorted table, every
row accounted for, and the run's figures."""

from __future__ import annotations

import os
import time
from array import array

import pytest

from shardpay.errors import RingError
from shardpay.result import Account, merge_results, merge_snapshots


def shard(clients, available, held, locked, rows=0, counts=None, stored=0):
    return {"snapshot": (array("H", clients), array("q", available), array("q", held), bytes(locked)),
            "rows": rows, "reject_counts": counts or {}, "stored": stored, "pid": 1, "cpu_seconds": 0.5,
            "peak_rss_bytes": 100, "apply_seconds": 0.25, "wait_seconds": 0.0, "ledger": "python"}


def stages(rows, invalid, decoded=None):
    """The reader's, one decoder's and the sequencer's figures."""
    process = {"cpu_seconds": 1.0, "peak_rss_bytes": 200}
    return {"reader": {"bytes": 1000, "chunks": 3, "read_seconds": 0.01, "blocked_seconds": 0.0},
            "decoder 0": {**process, "pid": 3, "rows": rows if decoded is None else decoded, "invalid": invalid,
                          "chunks": 3, "decode_seconds": 0.5, "waiting_seconds": 0.0, "blocked_seconds": 0.0},
            "sequencer": {**process, "pid": 2, "rows": rows, "invalid": invalid, "duplicates": 0, "claims": "python",
                          "shard_rows": [3, 4], "route_seconds": 0.25, "waiting_seconds": 0.0,
                          "blocked_seconds": 0.0}}


def test_snapshots_merge_sorted_by_client_as_numbers():
    merged = merge_snapshots([shard([10, 300], [1, 2], [0, 0], [0, 1]), shard([2], [5], [7], [0])])
    assert merged == ([2, 10, 300], [5, 1, 2], [7, 0, 0], [False, False, True])


def test_a_run_accounts_for_every_row():
    results = {**stages(rows=8, invalid=1),
               "worker 0": shard([1], [5], [0], [0], rows=3, counts={"unknown_tx": 1}, stored=2),
               "worker 1": shard([2], [0], [0], [0], rows=4, counts={"insufficient_funds": 2}, stored=1)}
    with merge_results(results, 2, 1, [], time.perf_counter(), 0.0) as result:
        stats = result.stats
        assert result.reject_counts == {"unknown_tx": 1, "insufficient_funds": 2, "invalid_row": 1}
        assert (stats["rows_read"], stats["rows_accepted"], stats["rows_rejected"]) == (8, 4, 4)
        assert stats["accounts"] == 2 and stats["stored_transactions_per_shard"] == [2, 1]
        assert stats["parent"]["pid"] == os.getpid()
        assert stats["cpu_seconds_total"] == pytest.approx(stats["parent"]["cpu_seconds"] + 3.0)
        assert stats["decoders"] == 1 and stats["decoders_detail"][0]["decode_rows_per_second"] == 16
        assert stats["ledger"] == "python" and stats["sequencer"]["claims"] == "python"
        assert result.account_list() == [Account(1, 5, 0, False), Account(2, 0, 0, False)]
        assert result.account_list()[0].csv_line() == "1,0.0005,0.0000,0.0005,false\n"
        assert list(result.rejects()) == []


def test_rows_lost_between_two_stages_fail_the_run():
    results = {**stages(rows=8, invalid=1), "worker 0": shard([], [], [], [], rows=6)}
    with pytest.raises(RingError, match="7 sent, 6 applied"):
        merge_results(results, 1, 1, [], time.perf_counter(), 0.0)
    results = {**stages(rows=8, invalid=1, decoded=9), "worker 0": shard([], [], [], [], rows=7)}
    with pytest.raises(RingError, match="9 decoded, 8 sequenced"):
        merge_results(results, 1, 1, [], time.perf_counter(), 0.0)
