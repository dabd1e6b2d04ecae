"""The input generator (``shardpay.testing.generate``): deterministic by seed, each scenario
shaped as documented, the same bytes from the function, ``shardpay generate`` and
``python -m``."""

from __future__ import annotations

import collections
import io
import subprocess
import sys
from pathlib import Path

import pytest

from shardpay import cli
from shardpay.testing import generate, model

ROOT = Path(__file__).resolve().parents[2]


def generated(rows: int, seed: int = 1, scenario: str = "uniform", clients: int = 65536) -> bytes:
    out = io.BytesIO()
    generate.generate(rows, out, seed, scenario, clients)
    return out.getvalue()


@pytest.mark.parametrize(("text", "count"), [("2000000", 2_000_000), ("2M", 2_000_000), ("200K", 200_000), ("1.5m", 1_500_000), ("0", 0)])
def test_parse_count(text: str, count: int) -> None:
    assert generate.parse_count(text) == count


@pytest.mark.parametrize("scenario", generate.SCENARIOS)
def test_generator_is_deterministic(scenario: str) -> None:
    first = generated(3000, 5, scenario)
    assert first == generated(3000, 5, scenario)
    assert first != generated(3000, 6, scenario)
    assert first.startswith(b"type,client,tx,amount\n")
    if scenario != "messy":  # messy adds empty lines
        assert first.count(b"\n") == 3001


def test_generator_uniform_is_mostly_accepted() -> None:
    rows = 20_000
    result = model.run(generated(rows, 3))
    reasons = collections.Counter(reason for _, reason in result.rejects)
    assert len(result.rejects) < 0.1 * rows, reasons
    assert "invalid_row" not in reasons and "duplicate_tx" not in reasons
    assert result.output.count("\n") > 5000  # many accounts


def test_generator_messy_has_odd_and_invalid_rows() -> None:
    rows = 20_000
    data = generated(rows, 3, "messy")
    for odd in (b"\r\n", b'"', b"\t", b"\xff", b"\n\n", b"4294967296"):
        assert odd in data, odd
    reasons = collections.Counter(reason for _, reason in model.run(data).rejects)
    assert 0.01 * rows < reasons["invalid_row"] < 0.05 * rows, reasons
    assert reasons["duplicate_tx"] > 0


def test_generator_scenarios_shape_the_data() -> None:
    def clients_and_ids(data: bytes) -> tuple[collections.Counter[str], list[int]]:
        rows = [line.split(",") for line in data.decode().splitlines()[1:]]
        return collections.Counter(row[1] for row in rows), [int(row[2]) for row in rows if row[0] == "deposit"]

    hot, _ = clients_and_ids(generated(20_000, 2, "hot"))
    assert sum(count for _, count in hot.most_common(20)) > 0.3 * 20_000
    _, sparse_ids = clients_and_ids(generated(20_000, 2, "sparse"))
    assert max(sparse_ids) > 2**31
    few, _ = clients_and_ids(generated(2_000, 2, "uniform", clients=10))
    assert set(few) <= {str(client) for client in range(10)}
    disputes = generated(20_000, 2, "disputes")
    assert disputes.count(b"\ndispute,") > 0.25 * 20_000


def test_generator_cli_matches_the_function(tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    assert generate.main(["2K", str(out), "--seed", "4", "--scenario", "messy"]) == 0
    assert out.read_bytes() == generated(2000, 4, "messy")
    piped = subprocess.run(
        [sys.executable, "-m", "shardpay.testing.generate", "2000", "-", "--seed", "4", "--clients", "100"],
        capture_output=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert piped.stdout == generated(2000, 4, "uniform", clients=100)


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scenario"):
        generated(10, scenario="nope")
    with pytest.raises(ValueError, match="clients"):
        generated(10, clients=0)
    with pytest.raises(ValueError):
        generate.parse_count("lots")


def test_shardpay_generate_is_the_same_generator(tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    assert cli.main(["generate", "1500", str(out), "--seed", "9", "--scenario", "sparse"]) == 0
    assert out.read_bytes() == generated(1500, 9, "sparse")
