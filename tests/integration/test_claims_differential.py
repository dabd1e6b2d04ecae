"""Differential: the installed CLI with the compiled claim table and with the pure one.

On generated ``sparse`` files (ids over the whole u32 range: the claims run in
table mode) with duplicate ids crafted in, and on a ``messy`` one (rising ids
with strays: the BitMap modes, which both runs share), the output and the
``--rejects`` file are byte for byte the same with ``SHARDPAY_CLAIMS=compiled``
and ``SHARDPAY_CLAIMS=python``, the duplicates are the model's, and
``--stats`` names the claim table that ran.
"""

from __future__ import annotations

import csv
import io
import random

import pytest

from shardpay.testing import model
from shardpay.testing.generate import generate
from tests.conftest import run_cli_with_files
from tests.unit.test_claims import TWINS, twin


def _with_repeats(data: bytes, seed: int) -> bytes:
    """``data`` with some deposit/withdrawal lines copied to later places (other
    clients): ids claimed chunks before, and repeated inside one chunk."""
    header, *lines = data.splitlines(keepends=True)
    rng = random.Random(seed)
    money = [i for i, line in enumerate(lines)
             if line.startswith((b"deposit,", b"withdrawal,")) and line.count(b",") == 3]
    for i in sorted(rng.sample(money, len(money) // 50), reverse=True):
        kind, _, tx, amount = lines[i].split(b",")
        copy = b",".join((kind, str(rng.randrange(65536)).encode(), tx, amount))
        lines.insert(min(len(lines), i + rng.choice([1, 7, 900, 40_000])), copy)
    return header + b"".join(lines)


@pytest.mark.parametrize(("scenario", "rows", "workers"), [("sparse", 120_000, 2), ("messy", 30_000, 3)])
def test_compiled_claims_equal_python_claims(tmp_path, scenario, rows, workers):
    twin("compiled")  # skips (fails under CI) when the extension was not built
    buf = io.BytesIO()
    generate(rows, buf, seed=7, scenario=scenario, clients=3000)
    src = tmp_path / f"{scenario}.csv"
    src.write_bytes(_with_repeats(buf.getvalue(), 8))
    want = model.run(src.read_bytes())
    runs = {table: run_cli_with_files(src, workers, {"SHARDPAY_CLAIMS": table}, tmp_path)[:3]
            for table in TWINS}
    for table, (output, rejects, stats) in runs.items():
        assert stats["sequencer"]["claims"] == table
        assert output.decode() == want.output, table
        got = [(int(row[0]), row[5]) for row in list(csv.reader(io.StringIO(rejects.decode())))[1:]]
        assert got == want.rejects, table
    assert runs["compiled"][:2] == runs["python"][:2]  # output and every reject detail, byte for byte
    if scenario == "sparse":
        assert runs["compiled"][2]["rejected_by_reason"]["duplicate_tx"] > rows // 100
