"""profiling/worker_stage.py: the worker stage alone and its A/B digest check.

The tool is what ledger changes are judged by, so its digest must catch a
variant that changes results, and must not flag one that only renumbers its
internal stored states.
"""

from __future__ import annotations

import re
import subprocess
import sys

from shardpay.testing.generate import generate

from conftest import ROOT

TOOL = ROOT / "profiling" / "worker_stage.py"
LEDGER = ROOT / "shardpay" / "_ledger_py.py"


def _stage(tmp_path, *variants: str):
    data = tmp_path / "tx.csv"
    with open(data, "wb") as f:
        generate(6_000, f, seed=4, scenario="disputes", clients=200)
    return subprocess.run(
        [sys.executable, str(TOOL), str(data), "--workers", "2", "--shard", "1", "--repeat", "1",
         *[a for v in variants for a in ("--ledger", v)]],
        capture_output=True, text=True, timeout=120,
    )


def _variant(tmp_path, name: str, old: str, new: str) -> str:
    text = LEDGER.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return str(path)


def test_renumbered_states_give_the_same_digest(tmp_path):
    renumbered = _variant(tmp_path, "renumbered.py", "from .money import MAX_UNITS, MIN_UNITS\n",
                          "from .money import MAX_UNITS, MIN_UNITS\n\nCHARGED_BACK, WITHDRAWN, SETTLED, DISPUTED = range(4)\n")
    r = _stage(tmp_path, str(LEDGER), renumbered)
    assert r.returncode == 0, r.stderr
    assert "shard 1 of 2" in r.stdout and "digests equal" in r.stdout
    assert r.stdout.count("apply ") == 2 + 2  # one line a run, one median line a module


def test_a_variant_with_other_results_fails(tmp_path):
    # resolve no longer gives the held money back: balances and later rejects change
    broken = _variant(tmp_path, "broken.py", "available[c] = a\n                    st = SETTLED",
                      "st = SETTLED")
    r = _stage(tmp_path, str(LEDGER), broken)
    assert r.returncode == 1
    assert "DIGESTS DIFFER" in r.stdout


def test_the_same_module_twice_keeps_each_its_own_runs(tmp_path):
    r = _stage(tmp_path, str(LEDGER), str(LEDGER))
    assert r.returncode == 0, r.stderr
    medians = re.findall(r"median \S+ \(python ledger\): apply ([\d.]+) ns/row", r.stdout)
    runs = re.findall(r"run 1 \S+: apply ([\d.]+) ns/row", r.stdout)
    assert len(medians) == 2 and len(runs) == 2
    assert medians == runs  # one run each: each median is its own run, not the pair's


def test_the_compiled_and_the_pure_ledger_give_the_same_digest(tmp_path):
    """The default A/B of this change: each names its ledger, the digests agree."""
    from tests.ledger_helpers import twin

    twin("compiled")  # skips (fails under CI) when the extension was not built
    r = _stage(tmp_path, "compiled", "python")
    assert r.returncode == 0, r.stderr
    assert "(compiled ledger)" in r.stdout and "(python ledger)" in r.stdout and "digests equal" in r.stdout
