"""Both ledger twins through their public interface: the store's edges, and hostile frames.

The compiled ledger keeps stored transactions in sorted arrays (rising ids),
a side table merged into them when full (other ids), packed records whose
amounts of 2**46 - 1 units and more (or 0) live in a table of their own; the
pure one keeps them otherwise. Whatever the store, each twin must give
exactly the reference model's reasons and balances, and the two must give
the same reject records byte for byte (``aux`` included).

A malformed frame raises ``ValueError`` with the same message in both, and
changes nothing: no row of it is applied.
"""

from __future__ import annotations

import random

import pytest

from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, DUPLICATE, KIND_NAMES, REASONS, RESOLVE, WITHDRAWAL
from shardpay.frames import pack_frame
from shardpay.money import MAX_UNITS
from shardpay.testing import model
from tests.ledger_helpers import TWINS, account, accounts, apply_one, apply_rows, ledger_cls, twin  # noqa: F401

U = 10_000
U32_MAX = 2**32 - 1
ESCAPE = 2**46 - 1  # the compiled store's packed amount field holds less than this


def _frame(rows) -> bytes:
    cols = [list(c) for c in zip(*rows)] if rows else [[]] * 5
    return pack_frame(cols[0], bytes(cols[1]), cols[2], cols[3], cols[4])


class Reader:
    """Plays the reader for a stream of ``(kind, client, tx, amount)``: numbers lines,
    marks duplicates, and runs the model alongside; ``want`` is each line's reason."""

    def __init__(self) -> None:
        self.oracle = model.Ledger()
        self.claimed: set[int] = set()
        self.line = 1
        self.want: dict[int, str | None] = {}

    def row(self, kind: int, client: int, tx: int, amount: int = 0) -> tuple[int, int, int, int, int]:
        self.line += 1
        self.want[self.line] = self.oracle.apply(KIND_NAMES[kind], client, tx, amount)
        if kind <= WITHDRAWAL:
            if tx in self.claimed:
                kind += DUPLICATE
            self.claimed.add(tx)
        return self.line, kind, client, tx, amount

    def check(self, ledger, records) -> None:
        got = dict.fromkeys(self.want)
        for rec in records:
            got[rec[0]] = REASONS[rec[1]]
        assert got == self.want
        want = {c: (a.available, a.held, a.locked) for c, a in self.oracle.accounts.items()}
        assert accounts(ledger) == want


def _run_both(rows, chunks) -> list[list[tuple[int, ...]]]:
    """Apply ``rows`` to each twin in frames of the sizes ``chunks`` gives; each twin's records."""
    out = []
    for name in TWINS:
        ledger = twin(name)()
        records, i = [], 0
        for n in chunks:
            records += apply_rows(ledger, rows[i : i + n])
            i += n
            if i >= len(rows):
                break
        out.append((ledger, records))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_twins_equal_the_model_and_each_other_on_out_of_order_ids(seed):
    """Rising ids, then ids below them past several side-table merges, ids that share
    low or high bits, the u32 limits, huge amounts; references to all of them."""
    r = random.Random(seed)
    rd = Reader()
    clients = [0, 1, 2, 3, 65535] + list(range(100, 140))
    pool = [r.randrange(2**31, 2**32) for _ in range(12_000)]  # below the first rising id at times
    pool += [k << 16 | r.choice([0, 1, 65535]) for k in range(2000)] + [0, U32_MAX, 1, U32_MAX - 1]
    r.shuffle(pool)
    rising = iter(range(3_000_000_000, 4_000_000_000, 3))
    stored: list[tuple[int, int]] = []
    rows = []
    for _ in range(40_000):
        kind = CHARGEBACK if r.random() < 0.002 else r.choice([DEPOSIT] * 4 + [WITHDRAWAL] * 2 + [DISPUTE] * 3
                                                                + [RESOLVE] * 2)
        if kind <= WITHDRAWAL:
            tx = next(rising) if r.random() < 0.3 else (pool.pop() if pool else next(rising))
            client = r.choice(clients)
            amount = r.choice([1, U, 123_456, ESCAPE - 1, ESCAPE, ESCAPE + 1, MAX_UNITS // 3])
            row = rd.row(kind, client, tx, amount)
            if rd.want[row[0]] is None:
                stored.append((client, tx))
        else:
            if stored and r.random() < 0.85:
                client, tx = stored[-1 - int(r.expovariate(1 / 300)) % len(stored)]
            else:
                client, tx = r.choice(clients), r.choice([0, U32_MAX, r.randrange(2**32)])
            row = rd.row(kind, client, tx)
        rows.append(row)
    chunks = [r.choice([1, 7, 64, 500, 3000]) for _ in range(len(rows))]
    (compiled, got_c), (pure, got_p) = _run_both(rows, chunks)
    assert got_c == got_p  # the same records, aux included
    rd.check(compiled, got_c)
    rd.check(pure, got_p)
    assert compiled.stored() == pure.stored() > 15_000
    assert compiled.applied == pure.applied == len(rows)


@pytest.mark.parametrize("order", ["random", "falling", "interleaved"])
def test_many_out_of_order_ids_are_all_found_after_merges(ledger_cls, order):
    """60,000 ids below the first one stored (several merges of the side table): each
    found with its own client and amount, in this frame and in later ones; ids
    between them, below and above them are unknown."""
    lg = ledger_cls()
    assert apply_one(lg, 1, DEPOSIT, 9, U32_MAX, 1) is None
    ids = list(range(10, 10 + 3 * 60_000, 3))
    if order == "random":
        random.Random(5).shuffle(ids)
    elif order == "falling":
        ids.reverse()
    else:
        ids = [x for pair in zip(ids[: len(ids) // 2], ids[len(ids) // 2 :][::-1]) for x in pair]
    rows = [(i + 2, DEPOSIT, tx % 7, tx, tx % 1000 + 1) for i, tx in enumerate(ids)]
    rows.append((len(ids) + 2, DISPUTE, ids[0] % 7, ids[0], 0))  # stored in this very frame
    assert apply_rows(lg, rows) == []
    assert lg.stored() == len(ids) + 1
    line = len(ids) + 3
    held = {c: account(lg, c)[1] for c in range(7)}
    assert sum(held.values()) == ids[0] % 1000 + 1
    for tx in {*sorted(ids)[1::97], min(ids), max(ids)} - {ids[0]}:
        line += 1
        assert apply_one(lg, line, DISPUTE, tx % 7, tx) is None, tx
        held[tx % 7] += tx % 1000 + 1
        assert account(lg, tx % 7)[1] == held[tx % 7]
    for tx in [0, 9, 11, 12, max(ids) + 1, max(ids) + 3, U32_MAX - 1]:
        line += 1
        assert apply_one(lg, line, DISPUTE, tx % 7, tx) == "unknown_tx", tx
    line += 1
    assert apply_one(lg, line, DISPUTE, (ids[5] + 1) % 7, ids[5]) == "unknown_tx"  # another client's


def test_rising_ids_at_every_position_of_a_block(ledger_cls):
    """Rising ids with gaps, fed one frame each and in big frames: every one found,
    every gap unknown (block and fence edges included)."""
    lg = ledger_cls()
    r = random.Random(3)
    ids, tx = [], 0
    for _ in range(1000):
        ids.append(tx)
        tx += r.choice([1, 2, 5, 1000])
    line = 1
    for start, n in ((0, 1), (1, 63), (64, 1), (65, 200), (265, 735)):
        rows = []
        for tx in ids[start : start + n]:
            line += 1
            rows.append((line, DEPOSIT, 4, tx, U))
        assert apply_rows(lg, rows) == []
    stored = set(ids)
    for tx in ids:
        line += 1
        assert apply_one(lg, line, DISPUTE, 4, tx) is None, tx
    assert account(lg, 4) == (0, len(ids) * U, False)
    for tx in [t + 1 for t in ids if t + 1 not in stored][:200] + [ids[-1] + 1, U32_MAX]:
        line += 1
        assert apply_one(lg, line, DISPUTE, 4, tx) == "unknown_tx"


@pytest.mark.parametrize("where", ["rising", "out of order", "merged"])
def test_huge_and_zero_amounts_are_stored_exactly(ledger_cls, where):
    """Amounts from 2**46 - 2 up to the maximum round-trip through dispute, resolve and
    chargeback exactly, wherever the store keeps them; so does a 0 (no valid row has one)."""
    amounts = [ESCAPE - 1, ESCAPE, ESCAPE + 1, 2**62, MAX_UNITS, 0, 1]
    lg = ledger_cls()
    base = 10**9 if where != "rising" else 0
    if where != "rising":
        assert apply_one(lg, 1, DEPOSIT, 60_000, U32_MAX, 1) is None
    line = 1
    txs = []
    for i, amount in enumerate(amounts):
        line += 1
        tx = base + 1000 * i
        txs.append(tx)
        assert apply_one(lg, line, DEPOSIT, i, tx, amount) is None
    if where == "merged":  # enough other ids to merge the side table into the sorted arrays
        rows = [(line + 1 + k, DEPOSIT, 60_000, 10 * k + 1, 1) for k in range(20_000)]
        assert apply_rows(lg, rows) == []
        line += len(rows)
    for i, (tx, amount) in enumerate(zip(txs, amounts)):
        assert account(lg, i) == (amount, 0, False)
        assert apply_one(lg, line + 1, DISPUTE, i, tx) is None
        assert account(lg, i) == (0, amount, False)
        assert apply_one(lg, line + 2, RESOLVE, i, tx) is None
        assert apply_one(lg, line + 3, DISPUTE, i, tx) is None
        assert apply_one(lg, line + 4, CHARGEBACK, i, tx) is None
        assert account(lg, i) == (0, 0, True)
        line += 4


def test_withdrawal_and_overflow_records_carry_aux_in_both_twins():
    rows = [(2, DEPOSIT, 1, 5, MAX_UNITS), (3, DEPOSIT, 1, 6, 1), (4, WITHDRAWAL, 2, 7, 3 * U),
            (5, DEPOSIT, 2, 8, U), (6, WITHDRAWAL, 2, 9, U), (7, DISPUTE, 2, 9, 0), (8, RESOLVE, 2, 8, 0),
            (9, DISPUTE, 2, 8, 0), (10, DISPUTE, 2, 8, 0), (11, CHARGEBACK, 2, 8, 0), (12, DISPUTE, 2, 8, 0),
            (13, DEPOSIT + DUPLICATE, 3, 8, 7), (14, WITHDRAWAL, 1, 10, MAX_UNITS), (15, DISPUTE, 1, 5, 0),
            (16, DEPOSIT, 1, 11, 1), (17, DISPUTE, 1, 11, 0), (18, DEPOSIT, 4, 12, 5), (19, WITHDRAWAL, 4, 13, 7)]
    (_, got_c), (_, got_p) = _run_both(rows, [len(rows)])
    assert got_c == got_p
    assert [(r[0], REASONS[r[1]], r[6]) for r in got_c] == [
        (3, "overflow", 0), (4, "insufficient_funds", 0), (7, "not_disputable", 3), (8, "not_disputed", 0),
        (10, "already_disputed", 1), (12, "account_locked", 0), (13, "duplicate_tx", 0),
        (17, "overflow", 0), (19, "insufficient_funds", 5)]


# -- hostile frames -----------------------------------------------------------------------

GOOD = _frame([(2, DEPOSIT, 1, 1, U), (3, WITHDRAWAL, 1, 2, U), (4, DISPUTE, 1, 1, 0)])


def _bad_frames() -> dict[str, bytes]:
    def one(kind=DEPOSIT, client=1, amount=U, line=2):
        return _frame([(2, DEPOSIT, 5, 5, U), (line, kind, client, 6, amount)])

    return {
        "empty": b"",
        "tag only": b"F",
        "header cut": GOOD[:3],
        "mark tag": b"M" + GOOD[1:],
        "one byte short": GOOD[:-1],
        "one byte long": GOOD + b"\0",
        "count too large": GOOD[:1] + (2**32 - 1).to_bytes(4, "little") + GOOD[5:],
        "count zero, rows left": GOOD[:1] + bytes(4) + GOOD[5:],
        "kind 5": one(kind=5),
        "kind 7": one(kind=7),
        "kind dispute + DUPLICATE": one(kind=DUPLICATE + DISPUTE),
        "kind 255": one(kind=255),
        "client 65536": one(client=65536),
        "client u32 max": one(client=U32_MAX),
        "amount 2**63": one(amount=2**63),
        "amount u64 max": one(amount=2**64 - 1),
        "line 2**63": one(line=2**63),
    }


@pytest.mark.parametrize("name", sorted(_bad_frames()))
def test_a_malformed_frame_raises_the_same_value_error_and_applies_nothing(name):
    frame = _bad_frames()[name]
    messages = []
    for which in TWINS:
        lg = twin(which)()
        assert apply_rows(lg, [(1, DEPOSIT, 9, 100, U)]) == []
        with pytest.raises(ValueError, match="not a shard frame") as err:
            lg.apply_frame(frame)
        messages.append(str(err.value))
        assert lg.applied == 1 and lg.rejects_held() == 0 and lg.stored() == 1
        assert accounts(lg) == {9: (U, 0, False)}  # the frame's first, good row was not applied
    assert messages[0] == messages[1], messages


def test_frames_of_any_buffer_type_and_empty_frames(ledger_cls):
    for frame in (GOOD, bytearray(GOOD), memoryview(GOOD), memoryview(b"xx" + GOOD)[2:]):
        lg = ledger_cls()
        assert lg.apply_frame(frame) == 0
        assert accounts(lg) == {1: (-U, U, False)} and lg.applied == 3
    lg = ledger_cls()
    assert lg.apply_frame(_frame([])) == 0 and lg.applied == 0 and lg.take_rejects() == b""
    assert lg.snapshot()[0].tolist() == [] and lg.account(1) is None
    assert lg.account(-1) is None and lg.account(65536) is None
