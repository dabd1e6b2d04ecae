"""The output and rejects do not depend on the worker or decoder count, and equal the reference model."""

from __future__ import annotations

import csv
import io

from shardpay.testing import model
from shardpay.testing.generate import generate
from tests.conftest import run_cli


def test_generated_messy_file_same_bytes_for_every_worker_and_decoder_count(tmp_path):
    src = tmp_path / "messy.csv"
    with open(src, "wb") as f:
        generate(200_000, f, seed=11, scenario="messy", clients=2000)
    data = src.read_bytes()
    want = model.run(data)
    outputs, rejects = {}, {}
    for w, d in ((1, 1), (2, 2), (3, 1), (8, 3), (1, 4)):
        rej = tmp_path / f"rej{w}-{d}.csv"
        r = run_cli(str(src), "--workers", str(w), "--decoders", str(d), "-q", "--rejects", str(rej), timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        outputs[w, d], rejects[w, d] = r.stdout, rej.read_bytes()
    assert all(outputs[k] == outputs[1, 1] for k in outputs)
    assert all(rejects[k] == rejects[1, 1] for k in rejects)
    assert outputs[1, 1].decode() == want.output
    got = [(int(row[0]), row[5]) for row in list(csv.reader(io.StringIO(rejects[1, 1].decode())))[1:]]
    assert got == want.rejects
    assert len(got) > 1000 and any(reason == "invalid_row" for _, reason in got)
