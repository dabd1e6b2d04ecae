"""Every fixture through the installed CLI: exact output and rejects for workers 1, 2, 3, 8."""

from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import FIXTURES, run_cli

CASES = sorted(p.name[: -len(".expected.csv")] for p in FIXTURES.glob("*.expected.csv"))


def test_there_are_fixtures():
    assert len(CASES) >= 20 and "spec_example" in CASES


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize("name", CASES)
def test_fixture(name, workers, tmp_path):
    rej = tmp_path / "rejects.csv"
    r = run_cli(str(FIXTURES / f"{name}.csv"), "--workers", str(workers), "-q", "--rejects", str(rej))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == (FIXTURES / f"{name}.expected.csv").read_bytes()
    got = [(int(row[0]), row[5]) for row in list(csv.reader(io.StringIO(rej.read_text())))[1:]]
    want = [(int(row[0]), row[1]) for row in list(csv.reader(io.StringIO((FIXTURES / f"{name}.rejects.csv").read_text())))[1:]]
    assert got == want


def test_bad_header_fixture_is_fatal():
    for bad in sorted((FIXTURES / "errors").glob("*.csv")):
        r = run_cli(str(bad), "-q")
        assert r.returncode == 1 and b"bad header" in r.stderr and r.stdout == b"", bad
