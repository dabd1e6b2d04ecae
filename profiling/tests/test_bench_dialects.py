"""profiling/bench.py --dialects on a small file: every dialect's row, its ratio to clean
from the same rounds, and the check that every dialect's run equals the clean file's."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

TOOL = ROOT / "profiling" / "bench.py"


def test_every_dialect_against_clean_with_the_same_outputs(tmp_path):
    r = subprocess.run([sys.executable, str(TOOL), "--rows", "5K", "--repeat", "2", "--dialects", "quoted,three-field",
                        "--no-model", "--name", "t", "--data", str(tmp_path / "data"),
                        "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "results" / "t.json").read_text())
    md = (tmp_path / "results" / "t.md").read_text()
    assert md in r.stdout and report["identical"] is True
    rows = {q["dialect"]: q for q in report["dialects"]}
    assert list(rows) == ["clean", "quoted", "three-field"]
    assert rows["clean"]["x_clean"] == 1.0
    for q in rows.values():
        assert len(q["wall_runs_s"]) == 2
        assert abs(q["x_clean"] - q["wall_median_s"] / rows["clean"]["wall_median_s"]) < 0.01
        assert f"| {q['dialect']} | `{q['example']}` | {q['wall_median_s']:.2f} | {q['x_clean']:.2f} |" in md
    assert rows["quoted"]["example"].startswith('"withdrawal","')
    assert rows["three-field"]["example"].startswith("dispute,") and rows["three-field"]["example"].count(",") == 2
    assert "equal the clean file's: yes." in md
    assert (tmp_path / "data" / "uniform-5000-s1-quoted.csv").exists()


def test_a_dialect_file_with_other_rows_fails_the_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "uniform-2000-s1-spaced.csv").write_text("type, client, tx, amount\ndeposit, 1, 1, 1.5\n")
    r = subprocess.run([sys.executable, str(TOOL), "--rows", "2K", "--repeat", "1", "--dialects", "spaced",
                        "--no-model", "--name", "t", "--data", str(data), "--results", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "equal the clean file's: **NO**: round 1, spaced." in (tmp_path / "results" / "t.md").read_text()
