"""Rejected rows (``shardpay.rejects``): the one record type, its two spool formats, reading
a spool in whole batches from an offset, and the merge of every spool by line."""

from __future__ import annotations

from array import array
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shardpay.rejects as rejects_mod

from shardpay.codes import (
    ACCOUNT_LOCKED,
    ALREADY_DISPUTED,
    CHARGED_BACK,
    DEPOSIT,
    DISPUTE,
    DISPUTED,
    DUPLICATE_TX,
    INSUFFICIENT_FUNDS,
    NOT_DISPUTABLE,
    NOT_DISPUTED,
    OVERFLOW,
    REASONS,
    RESOLVE,
    UNKNOWN_TX,
    WITHDRAWAL,
    WITHDRAWN,
)
from shardpay.rejects import (
    Reject,
    close_spools,
    csv_rows,
    merge,
    merged_csv,
    open_spools,
    read_spool,
    rejects_batch,
    render,
    unpack_rejects,
)


def ledger_bytes(*records):
    return array("q", [x for r in records for x in r]).tobytes()


@pytest.fixture
def spools():
    made = []
    yield lambda *kinds: (open_spools(made, kinds), made)[1]
    close_spools(made)


@pytest.mark.parametrize("record, want", [
    ((3, DUPLICATE_TX, DEPOSIT, 1, 7, 15000, 0),
     ("deposit", "1.5000", "duplicate_tx", "tx 7 was already used by an earlier deposit or withdrawal")),
    ((3, ACCOUNT_LOCKED, DISPUTE, 1, 7, 0, 0), ("dispute", "", "account_locked", "account 1 is locked by a chargeback")),
    ((3, INSUFFICIENT_FUNDS, WITHDRAWAL, 1, 7, 30000, -5),
     ("withdrawal", "3.0000", "insufficient_funds", "available -0.0005 is less than 3.0000")),
    ((3, UNKNOWN_TX, RESOLVE, 1, 7, 0, 0),
     ("resolve", "", "unknown_tx", "client 1 has no accepted deposit or withdrawal with tx 7 before this line")),
    ((3, NOT_DISPUTABLE, DISPUTE, 1, 7, 0, WITHDRAWN),
     ("dispute", "", "not_disputable", "tx 7 is a withdrawal; only deposits can be disputed")),
    ((3, ALREADY_DISPUTED, DISPUTE, 1, 7, 0, DISPUTED), ("dispute", "", "already_disputed", "tx 7 is already under dispute")),
    ((3, ALREADY_DISPUTED, DISPUTE, 1, 7, 0, CHARGED_BACK), ("dispute", "", "already_disputed", "tx 7 was charged back")),
    ((3, NOT_DISPUTED, RESOLVE, 1, 7, 0, WITHDRAWN), ("resolve", "", "not_disputed", "tx 7 is a withdrawal")),
    ((3, NOT_DISPUTED, RESOLVE, 1, 7, 0, 0), ("resolve", "", "not_disputed", "tx 7 is not under dispute")),
    ((3, OVERFLOW, DEPOSIT, 1, 7, 1, 0),
     ("deposit", "0.0001", "overflow", "a balance would leave the signed 64-bit range of 1/10,000 units")),
])
def test_render_names_the_row_and_the_reason(record, want):
    r = render(*record)
    assert (r.line, r.client, r.tx) == (3, "1", "7")
    assert (r.type, r.amount, r.reason, r.detail) == want
    assert str(r) == f"line 3: {want[2]}: {want[3]}"
    assert r.fields == (want[0], "1", "7", want[1])


def test_every_reason_but_invalid_row_has_a_detail():
    for reason in range(1, len(REASONS)):
        assert render(1, reason, DEPOSIT, 0, 0, 1, 0).detail


def test_a_reader_spool_reads_back_in_batches_from_an_offset(spools):
    (spool,) = spools(False)
    first = [Reject(2, "deposit", "x", "1", "1", "invalid_row", "client 'x' is not an integer 0..65535")]
    second = [Reject(5, "bogus", "", "", "", "invalid_row", "expected 4 fields (type,client,tx,amount), got 1"),
              Reject(9, "dépôt", "1", "1", "1", "invalid_row", "type 'dépôt' is not one of ...")]
    spool.file.write(rejects_batch(first))
    spool.file.flush()
    got, offset = read_spool(spool)
    assert got == first
    spool.file.write(rejects_batch(second))
    spool.file.write(b"\xff\x00\x00\x00partial")  # a batch still being written: left for the next call
    spool.file.flush()
    got, offset2 = read_spool(spool, offset)
    assert got == second and offset2 > offset
    assert read_spool(spool, offset2) == ([], offset2)


def test_a_ledger_spool_reads_whole_records_only(spools):
    (spool,) = spools(True)
    records = [(4, UNKNOWN_TX, DISPUTE, 1, 9, 0, 0), (8, INSUFFICIENT_FUNDS, WITHDRAWAL, 2, 10, 5, 1)]
    data = ledger_bytes(*records)
    spool.file.write(data[:70])  # one whole record and part of the next
    spool.file.flush()
    got, offset = read_spool(spool)
    assert got == [render(*records[0])] and offset == 56
    spool.file.write(data[70:])
    spool.file.flush()
    got, offset = read_spool(spool, offset)
    assert got == [render(*records[1])] and offset == 112


def test_merge_orders_every_spool_by_line(spools):
    reader, w0, w1 = spools(False, True, True)
    reader.file.write(rejects_batch([Reject(3, "x", "", "", "", "invalid_row", "d"),
                                     Reject(10, "y", "", "", "", "invalid_row", "d")]))
    w0.file.write(ledger_bytes((2, UNKNOWN_TX, DISPUTE, 1, 1, 0, 0), (11, UNKNOWN_TX, DISPUTE, 1, 2, 0, 0)))
    w1.file.write(ledger_bytes((5, UNKNOWN_TX, RESOLVE, 2, 3, 0, 0)))
    for s in (reader, w0, w1):
        s.file.flush()
    assert [r.line for r in merge([reader, w0, w1])] == [2, 3, 5, 10, 11]
    assert [r.line for r in merge([w1])] == [5]
    empty = spools(True)[-1]
    assert list(merge([empty])) == []


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=300), st.integers(1, 3),
       st.sampled_from([2, 5, 4096]))
def test_the_merged_csv_is_the_merge_written_as_csv(owners, workers, block):
    """Any lines spread over a reader's spool (invalid rows, in batches) and workers'
    spools (ledger records), read in blocks of any size: the merged CSV is what
    csv_rows writes for merge()."""
    made: list = []
    with mock.patch.object(rejects_mod, "_CSV_BATCH", block), \
         mock.patch.object(rejects_mod, "_READ_BYTES", 56 * block):  # ledger spools in small reads too
        try:
            open_spools(made, [False] + [True] * workers)
            batch: list[Reject] = []
            for line, (owner, cut) in enumerate(owners, start=2):
                if owner == 0:
                    batch.append(Reject(line, "de,posit", '"1', "", "", "invalid_row", "type 'x' is not one of a, b"))
                    if cut:
                        made[0].file.write(rejects_batch(batch))
                        batch = []
                else:
                    kind = line % 5
                    made[1 + (owner - 1) % workers].file.write(
                        ledger_bytes((line, INSUFFICIENT_FUNDS if line % 2 else OVERFLOW, kind, 1, line, 15000, 0)))
            if batch:
                made[0].file.write(rejects_batch(batch))
            for spool in made:
                spool.file.flush()
            want = csv_rows(list(merge(made))).encode()
            assert b"".join(merged_csv(made)) == want
        finally:
            close_spools(made)


def test_a_batch_unpacks_to_its_rejects():
    rows = [Reject(2, "a", "b", "c", "d", "invalid_row", "e"), Reject(3, "", "", "", "", "invalid_row", "f")]
    assert unpack_rejects(rejects_batch(rows)) == rows
    assert unpack_rejects(rejects_batch(rows[:1]) + rejects_batch(rows[1:])) == rows
    assert unpack_rejects(b"") == []
