"""shardpay.serve.batches: a batch's header found and its rows counted as the engine counts them;
the book applies each id once, answers repeats with the first result, refuses other bytes under
a used id, maps the engine's line numbers back to the batch's, survives a failed journal write,
and rebuilds all of it from the journal.

The engine here is the reference model behind :class:`shardpay.engine.Engine`'s interface, so the
book's logic is tested without processes (the integration tests run the real one).
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from shardpay.codes import DEPOSIT, REASONS
from shardpay.rejects import RawRejects, Reject, render
from shardpay.serve.batches import Book, count_rows, prepare, split_body
from shardpay.serve.journal import Journal
from shardpay.serve.protocol import ProtocolError, reject_lines
from shardpay.testing import model

HEADER = b"type,client,tx,amount\n"


class ModelEngine:
    """``feed``/``raw_rejects_since``/``snapshot``/``close`` over the reference model.

    Args:
        ledger: give the rejects of the rows the ledger rejects as ledger records
            ``(line, reason, DEPOSIT, 1, line, 0, 0)``, as the engine does (else every
            reject is a :class:`Reject` with detail ``detail of LINE``, as for invalid rows).
    """

    def __init__(self, ledger: bool = False) -> None:
        self.data = b""
        self.ledger = ledger

    def feed(self, data: bytes) -> None:
        self.data += data

    def raw_rejects_since(self, cursor):
        last = cursor[0] if cursor else 0
        new = [(line, reason) for line, reason in model.run(self.data).rejects if line > last]
        as_records = [(line, REASONS.index(reason), DEPOSIT, 1, line, 0, 0) for line, reason in new
                      if self.ledger and reason != "invalid_row"]
        invalid = [Reject(line, "", "", "", "", reason, f"detail of {line}") for line, reason in new
                   if not (self.ledger and reason != "invalid_row")]
        records = np.array(as_records, dtype=np.int64).reshape(-1, 7)
        return RawRejects(records, invalid), [new[-1][0] if new else last]


def book_on(tmp_path, ledger: bool = False) -> tuple[Book, ModelEngine]:
    engine = ModelEngine(ledger)
    book = Book(engine, Journal(str(tmp_path / "j")))  # type: ignore[arg-type]
    book.start()
    return book, engine


@pytest.mark.parametrize(("body", "header_line", "rows"), [
    (HEADER + b"deposit,1,1,5\n", 1, b"deposit,1,1,5\n"),
    (HEADER + b"deposit,1,1,5", 1, b"deposit,1,1,5\n"),
    (b"\xef\xbb\xbf\r\n  \n Type ,Client,TX\r\ndispute,1,1\r\n", 3, b"dispute,1,1\r\n"),
    (HEADER[:-1], 1, b""),
    (b"", 0, b""),
    (b"\n \n", 0, b""),
])
def test_split_body_finds_the_header_as_the_engine_does(body, header_line, rows):
    assert split_body(body) == (header_line, rows)


def test_a_bad_header_is_refused_naming_its_line():
    with pytest.raises(ProtocolError) as err:
        split_body(b"\nclient,type,tx\n1,deposit,1\n")
    assert err.value.code == "bad_header"
    assert err.value.message == "line 2: bad header: expected 'type,client,tx,amount', found 'client,type,tx'"


def test_rows_are_the_non_empty_lines():
    assert count_rows(b"deposit,1,1,5\n\n  \r\n\t\nx\n") == (2, 5)
    assert count_rows(b"a,b\nc,d\n") == (2, 2)
    assert count_rows(b"\xff\n") == (1, 1)  # not UTF-8: a row (rejected as invalid_row), not an empty line


def test_prepare_keys_ids_by_token_name():
    p = prepare("b1", HEADER + b"deposit,1,1,5\n\n", "alice@10.0.0.7")
    assert p.key == ("alice", "b1") and p.rows == 1 and p.lines == 2 and p.header_line == 1
    assert prepare("b1", HEADER, "-@127.0.0.1").key == ("-", "b1")


def test_commit_applies_once_and_answers_a_repeat_with_the_first_result(tmp_path):
    book, engine = book_on(tmp_path)
    first = HEADER + b"deposit,1,1,10\n\nwithdrawal,1,2,50\ndeposit,1,1,3\n"
    [ok] = book.commit([prepare("b1", first, "-@h")])
    assert ok.status == "ok" and (ok.accepted, ok.rejected) == (1, 2)
    assert ok.reject_lines == b"4,insufficient_funds,detail of 4\n5,duplicate_tx,detail of 5\n"
    fed = engine.data
    again, other = book.commit([prepare("b1", first, "-@other-host"), prepare("b1", first + b"\n", "-@h")])
    assert again == ok._replace(status="already")
    assert other.status == "error" and other.code == "conflict"
    assert engine.data == fed  # nothing fed for either
    [ok2] = book.commit([prepare("b1", first, "bob@h")])  # another token name: another namespace
    assert ok2.status == "ok" and ok2.rejected == 3


def test_line_numbers_are_the_batchs_own(tmp_path):
    book, _ = book_on(tmp_path)
    book.commit([prepare("a", HEADER + b"deposit,1,1,10\n", "-@h")])
    [o] = book.commit([prepare("b", b"\n\n" + HEADER + b"withdrawal,1,2,50\n", "-@h")])
    assert o.reject_lines == b"4,insufficient_funds,detail of 3\n"  # engine line 3, line 4 of batch b


@pytest.mark.parametrize("lazy", [True, False])
def test_ledger_records_answer_as_their_rendered_rejects(tmp_path, lazy):
    """The ledger's records go straight to answer lines (rejects.answer_lines), alone or merged
    by line with invalid rows: the bytes of protocol.reject_lines over their rendered Rejects."""
    book, engine = book_on(tmp_path, ledger=True)
    bodies = [HEADER + b"deposit,1,1,10\nwithdrawal,1,2,50\ndeposit,1,1,3\n",
              b"\n" + HEADER + b"bogus\nwithdrawal,1,3,50\n\nx,y\nresolve,1,1\n",
              HEADER + b"deposit,1,4,1\n"]
    if lazy:
        outcomes = book.commit([prepare(f"b{i}", b, "-@h") for i, b in enumerate(bodies)])
    else:  # replayed: formatted at once
        book.commit([prepare(f"b{i}", b, "-@h") for i, b in enumerate(bodies)])
        book.journal.close()
        book, engine = book_on(tmp_path, ledger=True)
        outcomes = book.commit([prepare(f"b{i}", b, "-@h") for i, b in enumerate(bodies)])
    first_lines = [2, 5, 10]  # engine lines of each batch's first row
    offsets = [1 + 1 - 2, 2 + 1 - 5, 1 + 1 - 10]  # header line + 1 - first engine line
    model_rejects = model.run(engine.data).rejects
    for i, o in enumerate(outcomes):
        end = first_lines[i + 1] if i + 1 < len(first_lines) else 10**9
        mine = [(line, reason) for line, reason in model_rejects if first_lines[i] <= line < end]
        want = [render(line, REASONS.index(reason), DEPOSIT, 1, line, 0, 0) if reason != "invalid_row"
                else Reject(line, "", "", "", "", reason, f"detail of {line}") for line, reason in mine]
        assert o.rejected == len(want)
        assert o.reject_lines == reject_lines(want, offsets[i])
    assert outcomes[1].reject_lines.startswith(b"3,invalid_row,detail of 5\n4,insufficient_funds,")


def test_one_group_with_the_same_id_twice(tmp_path):
    book, engine = book_on(tmp_path)
    body = HEADER + b"deposit,2,7,1\n"
    first, second, third = book.commit([prepare("x", body, "-@h"), prepare("x", body, "-@h"),
                                        prepare("x", body + b"\n", "-@h")])
    assert (first.status, second.status, third.status) == ("ok", "already", "error")
    assert engine.data.count(b"deposit,2,7,1") == 1


def test_a_failed_journal_write_applies_nothing_of_the_group(tmp_path, monkeypatch):
    book, engine = book_on(tmp_path)

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(book.journal, "append", full)
    outcomes = book.commit([prepare("a", HEADER + b"deposit,1,1,1\n", "-@h"), prepare("b", HEADER, "-@h")])
    assert {(o.status, o.code) for o in outcomes} == {("error", "journal")}
    assert "No space left on device" in outcomes[0].message
    assert engine.data == HEADER and book.applied == {}
    monkeypatch.undo()
    assert book.commit([prepare("a", HEADER + b"deposit,1,1,1\n", "-@h")])[0].status == "ok"


def test_a_restart_rebuilds_ids_and_results_from_the_journal(tmp_path):
    book, engine = book_on(tmp_path)
    bodies = {"a": HEADER + b"deposit,1,1,10\nwithdrawal,1,2,50\n", "b": b"\n" + HEADER + b"dispute,1,1\nbogus\n"}
    answers = {k: book.commit([prepare(k, v, "alice@h")])[0] for k, v in bodies.items()}
    book.journal.close()
    again, engine2 = book_on(tmp_path)
    assert engine2.data == engine.data
    assert (again.batches, again.rows) == (2, 4)
    for k, v in bodies.items():
        [o] = again.commit([prepare(k, v, "alice@elsewhere")])
        assert o.answer(k) == answers[k].answer(k).replace(b"ok ", b"already ", 1)
    assert again.commit([prepare("a", bodies["b"], "alice@h")])[0].code == "conflict"
    again.journal.close()
