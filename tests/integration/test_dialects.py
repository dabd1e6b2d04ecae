"""The same rows in every CSV dialect give the same run: output, rejects and counts byte
for byte (``shardpay generate --dialect``), with either normaliser twin."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from shardpay.testing import model
from shardpay.testing.generate import DIALECTS, generate
from tests.conftest import shardpay_cmd

ROWS = 30_000
COUNTS = ("rows_read", "rows_accepted", "rows_rejected", "rejected_by_reason", "accounts", "rows_per_shard",
          "stored_transactions_per_shard")
"""The ``--stats`` figures that count rows; the rest are bytes and seconds."""


def run(path, tmp_path, env=None) -> tuple[bytes, bytes, dict]:
    out, rej, st = tmp_path / "out.csv", tmp_path / "rej.csv", tmp_path / "stats.json"
    r = subprocess.run([*shardpay_cmd(), str(path), "--workers", "2", "-q", "-o", str(out), "--rejects", str(rej),
                        "--stats", str(st)], capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads(st.read_text())
    return out.read_bytes(), rej.read_bytes(), {k: stats[k] for k in COUNTS}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dialects")
    paths = {}
    for dialect in DIALECTS:
        paths[dialect] = tmp / f"{dialect}.csv"
        with open(paths[dialect], "wb") as f:
            generate(ROWS, f, seed=7, scenario="disputes", clients=500, dialect=dialect)
    return paths


@pytest.fixture(scope="module")
def clean_run(files, tmp_path_factory):
    return run(files["clean"], tmp_path_factory.mktemp("clean"))


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d != "clean"])
def test_every_dialect_gives_the_clean_files_run(files, clean_run, tmp_path, dialect):
    assert files[dialect].read_bytes() != files["clean"].read_bytes()
    assert run(files[dialect], tmp_path) == clean_run


def test_the_clean_run_is_the_models(files, clean_run):
    want = model.run(files["mixed"].read_bytes())
    output, rejects, counts = clean_run
    assert output.decode() == want.output
    assert counts["rows_rejected"] == len(want.rejects) > 0
    assert [int(line.split(b",", 1)[0]) for line in rejects.splitlines()[1:]] == [line for line, _ in want.rejects]


def test_the_pure_normaliser_gives_the_same_run(files, clean_run, tmp_path):
    env = dict(os.environ, SHARDPAY_NORMALIZE="python")
    assert run(files["mixed"], tmp_path, env) == clean_run


def test_messy_takes_only_the_clean_dialect(tmp_path):
    with open(tmp_path / "x.csv", "wb") as f, pytest.raises(ValueError, match="messy"):
        generate(10, f, scenario="messy", dialect="quoted")
