"""The ledger alone, one test per row of SPEC's transaction table and rule; each test
runs against both twins (the compiled ledger and the pure one)."""

import pytest

from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, DUPLICATE, REASONS, RESOLVE, WITHDRAWAL
from shardpay.ledger import REJECT_FIELDS
from shardpay.money import MAX_UNITS
from tests.ledger_helpers import account, accounts, apply_rows, ledger_cls  # noqa: F401 - a fixture

U = 10_000  # one currency unit in 1/10,000 units


class Book:
    """A ledger fed one row at a time with rising line numbers."""

    def __init__(self, ledger_cls):
        self.ledger = ledger_cls()
        self.line = 1
        self.records = []  # every reject record so far

    def __call__(self, kind, client, tx, amount=0):
        self.line += 1
        records = apply_rows(self.ledger, [(self.line, kind, client, tx, amount)])
        self.records += records
        return REASONS[records[0][1]] if records else None

    def acct(self, client):
        return account(self.ledger, client)


@pytest.fixture
def book(ledger_cls):
    return Book(ledger_cls)


def test_deposit_credits_available(book):
    assert book(DEPOSIT, 1, 1, 5 * U) is None
    assert book.acct(1) == (5 * U, 0, False)


def test_withdrawal_debits_available(book):
    book(DEPOSIT, 1, 1, 5 * U)
    assert book(WITHDRAWAL, 1, 2, 2 * U) is None
    assert book.acct(1) == (3 * U, 0, False)


def test_withdrawal_insufficient_funds(book):
    book(DEPOSIT, 1, 1, 2 * U)
    assert book(WITHDRAWAL, 1, 2, 2 * U + 1) == "insufficient_funds"
    assert book.acct(1) == (2 * U, 0, False)
    assert book(WITHDRAWAL, 1, 3, 2 * U) is None  # exactly all of it is fine
    assert book.acct(1) == (0, 0, False)


def test_rejected_row_creates_account(book):
    assert book(WITHDRAWAL, 7, 1, U) == "insufficient_funds"
    assert 7 in accounts(book.ledger)
    clients, avail, held, locked = book.ledger.snapshot()
    assert list(clients) == [7] and list(avail) == [0] and list(held) == [0] and locked == b"\0"


def test_dispute_moves_available_to_held(book):
    book(DEPOSIT, 1, 1, 3 * U)
    assert book(DISPUTE, 1, 1) is None
    assert book.acct(1) == (0, 3 * U, False)


def test_dispute_can_make_available_negative(book):
    book(DEPOSIT, 1, 1, 3 * U)
    book(WITHDRAWAL, 1, 2, 2 * U)
    assert book(DISPUTE, 1, 1) is None
    assert book.acct(1) == (-2 * U, 3 * U, False)


def test_dispute_unknown_tx(book):
    assert book(DISPUTE, 1, 99) == "unknown_tx"
    book(DEPOSIT, 2, 5, U)
    assert book(DISPUTE, 1, 5) == "unknown_tx"  # another client's deposit
    assert book.acct(2) == (U, 0, False)


def test_dispute_of_later_tx_is_unknown(book):
    assert book(DISPUTE, 1, 9) == "unknown_tx"
    assert book(DEPOSIT, 1, 9, U) is None
    assert book(DISPUTE, 1, 9) is None


def test_dispute_of_withdrawal_not_disputable(book):
    book(DEPOSIT, 1, 1, 5 * U)
    book(WITHDRAWAL, 1, 2, U)
    assert book(DISPUTE, 1, 2) == "not_disputable"
    assert book(RESOLVE, 1, 2) == "not_disputed"
    assert book(CHARGEBACK, 1, 2) == "not_disputed"
    assert book.acct(1) == (4 * U, 0, False)


def test_dispute_of_rejected_withdrawal_is_unknown(book):
    assert book(WITHDRAWAL, 1, 2, U) == "insufficient_funds"
    assert book(DISPUTE, 1, 2) == "unknown_tx"


def test_already_disputed(book):
    book(DEPOSIT, 1, 1, U)
    book(DISPUTE, 1, 1)
    assert book(DISPUTE, 1, 1) == "already_disputed"
    assert book.acct(1) == (0, U, False)


def test_resolve_returns_held(book):
    book(DEPOSIT, 1, 1, U)
    book(DISPUTE, 1, 1)
    assert book(RESOLVE, 1, 1) is None
    assert book.acct(1) == (U, 0, False)
    assert book(RESOLVE, 1, 1) == "not_disputed"
    assert book(DISPUTE, 1, 1) is None  # settled again: may be disputed again
    assert book.acct(1) == (0, U, False)


def test_resolve_unknown_and_not_disputed(book):
    assert book(RESOLVE, 1, 1) == "unknown_tx"
    book(DEPOSIT, 1, 1, U)
    assert book(RESOLVE, 1, 1) == "not_disputed"
    assert book(CHARGEBACK, 1, 1) == "not_disputed"
    assert book(CHARGEBACK, 2, 1) == "unknown_tx"


def test_chargeback_removes_held_and_locks(book):
    book(DEPOSIT, 1, 1, 3 * U)
    book(DEPOSIT, 1, 2, 2 * U)
    book(DISPUTE, 1, 2)
    assert book(CHARGEBACK, 1, 2) is None
    assert book.acct(1) == (3 * U, 0, True)


def test_locked_account_rejects_every_type(book):
    book(DEPOSIT, 1, 1, 3 * U)
    book(DEPOSIT, 1, 2, 2 * U)
    book(DISPUTE, 1, 1)
    book(CHARGEBACK, 1, 1)
    before = book.acct(1)
    assert book(DEPOSIT, 1, 3, U) == "account_locked"
    assert book(WITHDRAWAL, 1, 4, U) == "account_locked"
    assert book(DISPUTE, 1, 2) == "account_locked"
    assert book(RESOLVE, 1, 1) == "account_locked"
    assert book(CHARGEBACK, 1, 1) == "account_locked"
    assert book(DISPUTE, 1, 1) == "account_locked"  # a charged-back deposit is never disputed again
    assert book.acct(1) == before


def test_duplicate_marked_by_reader_precedes_locked(book):
    book(DEPOSIT, 1, 1, U)
    book(DISPUTE, 1, 1)
    book(CHARGEBACK, 1, 1)
    assert book(DEPOSIT + DUPLICATE, 1, 1, U) == "duplicate_tx"
    assert book(WITHDRAWAL + DUPLICATE, 3, 1, U) == "duplicate_tx"
    assert 3 in accounts(book.ledger)  # a well-formed duplicate still creates its account


def test_deposit_overflow(book):
    assert book(DEPOSIT, 1, 1, MAX_UNITS) is None
    assert book(DEPOSIT, 1, 2, 1) == "overflow"
    assert book.acct(1) == (MAX_UNITS, 0, False)


def test_deposit_overflow_counts_held(book):
    book(DEPOSIT, 1, 1, MAX_UNITS - 5)
    book(DISPUTE, 1, 1)
    assert book(DEPOSIT, 1, 2, 6) == "overflow"  # total would pass the maximum
    assert book(DEPOSIT, 1, 3, 5) is None


def test_deposit_overflow_counts_held_raised_earlier_in_the_same_call(ledger_cls):
    """held grows inside one apply call (the shard's bound on held must follow at once)."""
    ledger = ledger_cls()
    rows = [(2, DEPOSIT, 1, 1, MAX_UNITS - 5), (3, DISPUTE, 1, 1, 0), (4, DEPOSIT, 1, 2, 6),
            (5, DEPOSIT, 1, 3, 5), (6, DEPOSIT, 2, 4, MAX_UNITS), (7, RESOLVE, 1, 1, 0), (8, DEPOSIT, 1, 5, 1)]
    records = apply_rows(ledger, rows)
    assert [(r[0], REASONS[r[1]]) for r in records] == [(4, "overflow"), (8, "overflow")]
    assert account(ledger, 1)[:2] == (MAX_UNITS, 0) and account(ledger, 2)[0] == MAX_UNITS


def test_dispute_overflow_of_held(book):
    book(DEPOSIT, 1, 1, MAX_UNITS)
    book(WITHDRAWAL, 1, 2, MAX_UNITS)
    book(DISPUTE, 1, 1)  # available -MAX, held MAX
    book(DEPOSIT, 1, 3, 10)
    assert book(DISPUTE, 1, 3) == "overflow"
    assert book.acct(1) == (10 - MAX_UNITS, MAX_UNITS, False)


def test_out_of_order_tx_ids_use_the_other_store(book):
    book(DEPOSIT, 1, 100, U)
    book(DEPOSIT, 1, 5, 2 * U)  # lower id than the last stored one
    book(WITHDRAWAL, 1, 3, U)
    assert book(DISPUTE, 1, 5) is None
    assert book(DISPUTE, 1, 3) == "not_disputable"
    assert book(DISPUTE, 2, 5) == "unknown_tx"
    assert book(CHARGEBACK, 1, 5) is None
    assert book.acct(1) == (0, 0, True)
    assert book.ledger.stored() == 3


def test_reject_records_carry_line_and_fields(book):
    book(WITHDRAWAL, 4, 9, 3 * U)
    rec = book.records[0]
    assert len(rec) == REJECT_FIELDS
    assert rec == (2, REASONS.index("insufficient_funds"), WITHDRAWAL, 4, 9, 3 * U, 0)


def test_invariants_hold_over_a_sequence(book):
    import random

    r = random.Random(5)
    deposits = []
    for tx in range(1, 3000):
        c = r.randrange(5)
        kind = r.choice([DEPOSIT, DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK])
        if kind <= WITHDRAWAL:
            book(kind, c, tx, r.randrange(1, 5 * U))
            deposits.append((c, tx))
        elif deposits:
            book(kind, *r.choice(deposits))
        if tx % 100 == 0:
            assert all(held >= 0 for _, held, _ in accounts(book.ledger).values())
    assert all(held >= 0 for _, held, _ in accounts(book.ledger).values())
