"""What the user sees (``shardpay.report``): the accounts and rejects CSVs, outputs that
appear all together or not at all, the progress bar's columns, the summary."""

from __future__ import annotations

import csv
import io
import os

import pytest
from rich.console import Console

from shardpay.errors import OutputError
from shardpay.rejects import Reject
from shardpay.report import (
    HEADER,
    REJECTS_HEADER,
    PendingOutputs,
    account_line,
    atomic_output,
    make_progress,
    print_summary,
    write_accounts,
    write_rejects,
)


def test_account_lines_have_four_decimals_and_lf():
    assert account_line(7, 15000, 0, False) == "7,1.5000,0.0000,1.5000,false\n"
    assert account_line(1, -5000, 2500, True) == "1,-0.5000,0.2500,-0.2500,true\n"
    out = io.StringIO()
    write_accounts(out, ([1, 2], [10000, 0], [0, 1], [False, True]))
    assert out.getvalue() == HEADER + "1,1.0000,0.0000,1.0000,false\n2,0.0000,0.0001,0.0001,true\n"


def test_rejects_csv_quotes_what_needs_it_and_counts_rows():
    rows = [Reject(3, "deposit", "1", "2", "1,5", "invalid_row", "expected 4 fields, got 5"),
            Reject(9, 'a"b', "", "", "", "invalid_row", "type 'a\"b' is not one of ...")]
    out = io.StringIO()
    assert write_rejects(out, iter(rows)) == 2
    back = list(csv.reader(io.StringIO(out.getvalue())))
    assert back[0] == list(REJECTS_HEADER)
    assert back[1:] == [[str(r.line), *r[1:]] for r in rows]


def test_pending_outputs_appear_together_on_commit(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.json"
    with PendingOutputs() as pending:
        with pending.open(str(a)) as f:
            f.write("one\n")
        with pending.open(str(b)) as f:
            f.write("two\n")
        assert not a.exists() and not b.exists()  # nothing has a name before the commit
        pending.commit()
    assert a.read_text() == "one\n" and b.read_text() == "two\n"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.json"]  # no temporary file left


def test_pending_outputs_left_without_commit_leave_nothing(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with PendingOutputs() as pending:
            with pending.open(str(target)) as f:
                f.write("new\n")
            raise RuntimeError("the run failed")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        with atomic_output(str(tmp_path / "missing" / "out.csv")) as f:
            f.write("x")


def _columns(total):
    progress = make_progress(Console(file=io.StringIO(), force_terminal=True, width=200))
    task = progress.add_task("read", total=total)
    progress.update(task, completed=100, rows_per_second=12345)
    return [str(col.render(progress.tasks[0])) for col in progress.columns]


def test_the_progress_bar_shows_rows_per_second_and_an_eta_only_with_a_size():
    known, unknown = _columns(1000), _columns(None)
    assert "12,345 rows/s" in known and "12,345 rows/s" in unknown
    assert any(text.startswith("ETA ") for text in known)
    assert not any(text.startswith("ETA") for text in unknown)  # a pipe: no estimate


def test_the_summary_accounts_for_every_row():
    stats = {
        "rows_read": 10, "rows_accepted": 8, "rows_rejected": 2,
        "rejected_by_reason": {"insufficient_funds": 1, "invalid_row": 1}, "accounts": 2,
        "wall_seconds": 0.1, "rows_per_second": 100, "rows_per_shard": [4, 5], "workers": 2, "decoders": 1, "ledger": "compiled",
        "parent": {"cpu_seconds": 0.1, "peak_rss_bytes": 2**20},
        "decoders_detail": [{"decoder": 0, "cpu_seconds": 0.2, "peak_rss_bytes": 2**21, "decode_rows_per_second": 50}],
        "sequencer": {"cpu_seconds": 0.1, "peak_rss_bytes": 2**21, "route_rows_per_second": 90},
        "workers_detail": [{"shard": 0, "cpu_seconds": 0.01, "peak_rss_bytes": 2**20, "apply_rows_per_second": 400},
                           {"shard": 1, "cpu_seconds": 0.01, "peak_rss_bytes": 2**20, "apply_rows_per_second": 500}],
    }
    console = Console(file=io.StringIO(), width=120)
    print_summary(console, stats, [Reject(4, "x", "", "", "", "invalid_row", "d")])
    text = console.file.getvalue()
    assert "accepted + rejected = 10 = 10 rows read" in text
    assert "insufficient_funds" in text and "worker 1" in text and "decoder 0" in text
    assert "1 decoder, 1 sequencer, 2 workers" in text and "500 rows/s" in text and "compiled" in text
    assert "first 1 rejects are shown above" in text
