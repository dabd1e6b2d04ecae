"""The reference model (shardpay.testing.model) against the fixtures."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from shardpay.testing import model

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CASES = sorted(
    path.name.removesuffix(".csv")
    for path in FIXTURES.glob("*.csv")
    if not path.name.endswith((".expected.csv", ".rejects.csv"))
)
ERROR_CASES = sorted((FIXTURES / "errors").glob("*.csv"))
REASONS = {
    "invalid_row",
    "duplicate_tx",
    "account_locked",
    "insufficient_funds",
    "unknown_tx",
    "not_disputable",
    "already_disputed",
    "not_disputed",
    "overflow",
}
HEADER = "client,available,held,total,locked\n"
MAX = "922337203685477.5807"


def expected_rejects(name: str) -> list[tuple[int, str]]:
    with (FIXTURES / f"{name}.rejects.csv").open(newline="", encoding="ascii") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason"]
    return [(int(line), reason) for line, reason in rows[1:]]


def run_text(text: str) -> model.Result:
    return model.run(text.encode())


# --- fixtures ---------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_fixture(name: str) -> None:
    result = model.run((FIXTURES / f"{name}.csv").read_bytes())
    assert result.output == (FIXTURES / f"{name}.expected.csv").read_bytes().decode("ascii")
    assert result.rejects == expected_rejects(name)


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda path: path.stem)
def test_bad_header_is_fatal(path: Path) -> None:
    with pytest.raises(model.HeaderError) as err:
        model.run(path.read_bytes())
    message = str(err.value)
    assert "expected header 'type,client,tx,amount'" in message
    assert repr(path.read_bytes().split(b"\n")[0].decode()) in message


def test_fixture_set_covers_every_reason_and_has_all_files() -> None:
    assert len(CASES) >= 30 and "spec_example" in CASES and (FIXTURES / "errors" / "bad_header.csv").exists()
    for name in CASES:
        assert (FIXTURES / f"{name}.expected.csv").exists(), name
        assert (FIXTURES / f"{name}.rejects.csv").exists(), name
        assert f"`{name}`" in (FIXTURES / "README.md").read_text(encoding="utf-8"), f"{name} not in README"
    assert {reason for name in CASES for _, reason in expected_rejects(name)} == REASONS


# --- inline cases ---------------------------------------------------------------


def test_spec_worked_example() -> None:
    result = run_text(
        "type,client,tx,amount\n"
        "deposit,1,1,1.0\ndeposit,2,2,2.0\ndeposit,1,3,2.0\nwithdrawal,1,4,1.5\nwithdrawal,2,5,3.0\n"
        "dispute,1,1,\nresolve,1,1,\ndispute,1,3,\nchargeback,1,3,\ndeposit,1,6,10\n"
    )
    assert result.output == HEADER + "1,-0.5000,0.0000,-0.5000,true\n2,2.0000,0.0000,2.0000,false\n"
    assert result.rejects == [(6, "insufficient_funds"), (11, "account_locked")]


@pytest.mark.parametrize("data", [b"", b"\n", b"\xef\xbb\xbf", b" \r\n\t\n", b"type,client,tx\n"])
def test_no_rows_gives_the_header_alone(data: bytes) -> None:
    assert model.run(data) == model.Result(HEADER, [])


def test_line_numbers_are_physical() -> None:
    result = run_text("\n\r\nTYPE, Client ,tx,amount\r\n\nwithdrawal,1,1,1\r\n  \nbogus\n")
    assert result.rejects == [(5, "insufficient_funds"), (7, "invalid_row")]


def test_rejected_rows_change_nothing() -> None:
    result = run_text(
        "type,client,tx,amount\n"
        f"deposit,1,1,{MAX}\n"
        "deposit,1,2,1\n"  # overflow
        "dispute,1,1,\n"
        "dispute,1,1,\n"  # already_disputed
        "withdrawal,1,3,0.0001\n"  # insufficient_funds: all of it is held
        "resolve,1,1,\n"
    )
    assert result.output == HEADER + f"1,{MAX},0.0000,{MAX},false\n"
    assert result.rejects == [(3, "overflow"), (5, "already_disputed"), (6, "insufficient_funds")]


def test_header_error_is_a_value_error() -> None:
    assert issubclass(model.HeaderError, ValueError)
    with pytest.raises(ValueError, match=r"line 2: .*found 'deposit,1,1,1'"):
        run_text("\ndeposit,1,1,1\n")
    with pytest.raises(model.HeaderError):
        model.run(b"type,client,tx,amo\xffunt\n")


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", 10_000),
        ("1.5", 15_000),
        (".5", 5_000),
        ("5.", 50_000),
        ("0.0001", 1),
        ("1.23450", 12_345),
        ("1.000000000", 10_000),
        ("007.25", 72_500),
        (MAX, 2**63 - 1),
        (MAX + "000", 2**63 - 1),
        ("", None),
        (".", None),
        ("0", None),
        ("0.00004", None),
        ("1.23456", None),
        ("-1", None),
        ("+1", None),
        ("1e3", None),
        ("1_0", None),
        (" 1", None),
        ("\u0661", None),
        ("922337203685477.5808", None),
        ("9" * 5000, None),
        ("0" * 5000 + "1", 10_000),
    ],
)
def test_parse_amount(text: str, units: int | None) -> None:
    assert model.parse_amount(text) == units


@pytest.mark.parametrize(
    ("units", "text"),
    [(0, "0.0000"), (1, "0.0001"), (-5_000, "-0.5000"), (123_456_789, "12345.6789"), (-(2**63), "-922337203685477.5808")],
)
def test_format_units(units: int, text: str) -> None:
    assert model.format_units(units) == text


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("a,b , c", ["a", "b", "c"]),
        (' "1" ,"2"', ["1", "2"]),
        ('" 1 "', ["1"]),
        ('"a""b",c', ['a"b', "c"]),
        ('"x,y",z', ["x,y", "z"]),
        ('a"b,c', ['a"b', "c"]),
        ("a,", ["a", ""]),
        ('"a', None),
        ('a,"b', None),
        ('"a"b', None),
        ('"a" "b"', None),
    ],
)
def test_split_fields(line: str, fields: list[str] | None) -> None:
    assert model.split_fields(line) == fields


def test_main_prints_output_and_writes_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"type,client,tx,amount\ndeposit,2,1,1.5\nwithdrawal,2,2,9\n")
    rejects = tmp_path / "rejects.csv"
    assert model.main([str(src), "--rejects", str(rejects)]) == 0
    assert capsys.readouterr().out == HEADER + "2,1.5000,0.0000,1.5000,false\n"
    assert rejects.read_text() == "line,reason\n3,insufficient_funds\n"


def test_main_reads_stdin_and_reports_a_bad_header(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"type,client,tx,amount\ndeposit,1,1,1\n")))
    assert model.main(["-"]) == 0
    assert capsys.readouterr().out == HEADER + "1,1.0000,0.0000,1.0000,false\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"kind,client,tx,amount\n")))
    assert model.main(["-"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "expected header" in captured.err and "kind,client,tx,amount" in captured.err
