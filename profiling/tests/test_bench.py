"""profiling/bench.py on a small file: the tables the engine's targets are judged by.

Walls on 20,000 rows say nothing about speed; these tests check that every
command runs, the ratios are computed from the same run's medians, and the
Markdown and JSON agree.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

TOOL = ROOT / "profiling" / "bench.py"


def _ratio_close(got: float, num: float, den: float) -> bool:
    """``got`` is ``num / den`` (walls rounded to 1 ms, the ratio to 0.01), within that rounding."""
    want = num / den
    return abs(got - want) <= want * (0.0005 / num + 0.0005 / den) + 0.0051


def _bench(tmp_path, *args: str) -> tuple[dict, str]:
    r = subprocess.run([sys.executable, str(TOOL), "--rows", "20K", "--repeat", "2", "--name", "t",
                        "--data", str(tmp_path / "data"), "--results", str(tmp_path / "results"), *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "results" / "t.json").read_text())
    md = (tmp_path / "results" / "t.md").read_text()
    assert md in r.stdout
    return report, md


def test_the_table_has_every_command_and_ratios_from_the_same_run(tmp_path):
    report, md = _bench(tmp_path, "--workers", "default,1,2:3")
    assert (tmp_path / "data" / "uniform-20000-s1.csv").exists()
    (scenario,) = report["scenarios"]
    table = {row["command"]: row for row in scenario["table"]}
    names = ["shardpay (defaults)", "shardpay --workers 1", "shardpay --workers 2 --decoders 3"]
    assert list(table) == ["floor (wc -l)", "reference model", *names]
    ref = table["reference model"]["wall_median_s"]
    for name in names:
        row = table[name]
        assert len(row["wall_runs_s"]) == 2
        assert _ratio_close(row["x_faster_than_reference"], ref, row["wall_median_s"])
        assert row["rows_per_s"] == pytest.approx(20_000 / row["wall_median_s"], rel=0.01)
        assert sum(row["stages"]["rows_per_shard"]) == 20_000
        assert f"| {name} | {row['wall_median_s']:.2f} |" in md
    stages = table["shardpay --workers 2 --decoders 3"]["stages"]
    assert (stages["workers"], stages["decoders"]) == (2, 3)
    assert len(stages["worker_cpu_s"]) == 2 and set(stages["cpu_ns_per_row"]) == {"reader", "decoders",
                                                                                   "sequencer", "workers"}


def test_the_ceiling_runs_the_pipeline_without_the_ledger(tmp_path):
    report, md = _bench(tmp_path, "--ceiling", "--workers", "2:2")
    (scenario,) = report["scenarios"]
    assert scenario["ceiling"] is True and "the pipeline without the ledger" in md
    row = next(r for r in scenario["table"] if r["command"] == "shardpay --workers 2 --decoders 2")
    assert sum(row["stages"]["rows_per_shard"]) == 20_000  # every row reached a worker, none was applied
    assert _ratio_close(row["x_faster_than_reference"],
                        next(r for r in scenario["table"] if r["command"] == "reference model")["wall_median_s"],
                        row["wall_median_s"])


def test_scenarios_alternate_and_are_compared_with_the_first(tmp_path):
    report, md = _bench(tmp_path, "--workers", "2", "--no-model", "--scenario", "uniform,sparse")
    assert [s["scenario"] for s in report["scenarios"]] == ["uniform", "sparse"]
    walls = {s["scenario"]: {r["command"]: r["wall_median_s"] for r in s["table"]} for s in report["scenarios"]}
    (uniform, sparse) = report["against_first"]
    assert (uniform["scenario"], uniform["x_first"]) == ("uniform", 1.0)
    assert sparse["command"] == "shardpay --workers 2"
    assert _ratio_close(sparse["x_first"], walls["sparse"]["shardpay --workers 2"],
                        walls["uniform"]["shardpay --workers 2"])
    assert "### every scenario against uniform (same rounds, alternating)" in md
    assert all("reference model" not in s for s in walls.values())


def test_memory_fits_both_slopes_on_the_scenario_asked(tmp_path):
    report, md = _bench(tmp_path, "--memory", "--rows", "10K,20K,30K", "--scenario", "sparse")
    mem = report["memory"]
    assert mem["scenario"] == "sparse" and [p["rows"] for p in mem["points"]] == [10_000, 20_000, 30_000]
    assert (tmp_path / "data" / "sparse-30000-s1.csv").exists()
    for p in mem["points"]:
        assert 0 < p["peak_rss_workers_bytes"] < p["peak_rss_all_bytes"] and p["ledger"] in ("compiled", "python")
    assert f"**{mem['bytes_per_stored_deposit']} bytes per stored transaction**" in md
    assert f"the workers alone: **{mem['bytes_per_stored_deposit_workers']}**" in md
