"""The output and rejects do not depend on the worker count, and equal the reference model."""

from __future__ import annotations

import csv
import io

from shardpay.testing import model
from shardpay.testing.generate import generate
from tests.conftest import run_cli


def test_generated_messy_file_same_bytes_for_every_worker_count(tmp_path):
    src = tmp_path / "messy.csv"
    with open(src, "wb") as f:
        generate(200_000, f, seed=11, scenario="messy", clients=2000)
    data = src.read_bytes()
    want = model.run(data)
    outputs, rejects = {}, {}
    for w in (1, 2, 3, 8):
        rej = tmp_path / f"rej{w}.csv"
        r = run_cli(str(src), "--workers", str(w), "-q", "--rejects", str(rej), timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        outputs[w], rejects[w] = r.stdout, rej.read_bytes()
    assert all(outputs[w] == outputs[1] for w in outputs)
    assert all(rejects[w] == rejects[1] for w in rejects)
    assert outputs[1].decode() == want.output
    got = [(int(row[0]), row[5]) for row in list(csv.reader(io.StringIO(rejects[1].decode())))[1:]]
    assert got == want.rejects
    assert len(got) > 1000 and any(reason == "invalid_row" for _, reason in got)
