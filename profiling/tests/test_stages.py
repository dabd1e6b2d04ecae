"""profiling/stages.py: the pipeline's stages alone, and the digest of their frames.

The digest is what says two trees made the same frames, so it must be the
same for the same tree run twice and change when the frames change.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys

from shardpay.testing.generate import generate

from conftest import ROOT

TOOL = ROOT / "profiling" / "stages.py"


def _stage(tmp_path, *args: str) -> str:
    data = tmp_path / "tx.csv"
    if not data.exists():
        with open(data, "wb") as f:
            generate(6_000, f, seed=4, scenario="messy", clients=200)
    r = subprocess.run([sys.executable, str(TOOL), str(data), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _digests(out: str) -> list[str]:
    return re.findall(r"digest ([0-9a-f]{12})", out)


def test_the_same_tree_twice_makes_the_same_frames_and_keeps_its_own_runs(tmp_path):
    out = _stage(tmp_path, "--tree", str(ROOT), "--tree", str(ROOT), "--workers", "2", "--repeat", "3")
    assert len(_digests(out)) == 6 and len(set(_digests(out))) == 1
    runs = {t: [int(n) for n in re.findall(rf"run \d, tree {t}: cut \d+, decode (\d+)", out)] for t in (1, 2)}
    medians = {t: int(re.search(rf"median tree {t} \(.*?\): cut \d+, decode (\d+)", out).group(1)) for t in (1, 2)}
    for t in (1, 2):  # each tree's median is of its own three runs (not of both trees' six)
        assert len(runs[t]) == 3 and min(runs[t]) > 0
        assert abs(medians[t] - statistics.median(runs[t])) <= 1
    ratio = float(re.search(r"median tree 2 .*?decode (\d+\.\d+)x", out).group(1))
    assert abs(ratio - medians[2] / medians[1]) < 0.01


def test_without_a_tree_it_imports_the_installed_package_wherever_it_runs(tmp_path):
    out = _stage(tmp_path, "--workers", "1", "--repeat", "1")
    assert "median tree 1 (installed)" in out and len(_digests(out)) == 1  # one run line


def test_other_shard_counts_make_other_frames(tmp_path):
    out = _stage(tmp_path, "--workers", "1,3", "--repeat", "1")
    one, three = _digests(out)
    assert one != three
    frames = [int(n) for n in re.findall(r"(\d+) frames", out)]
    assert frames[1] > frames[0]  # three shards: up to three frames a chunk
