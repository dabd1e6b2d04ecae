"""The pure ledger's store of out-of-order tx ids (ids lower than the last one stored).

Tests of the pure twin's internals (``shardpay._ledger_py``); the store's
behaviour through the public interface, for both twins, is in
``test_ledger_twins.py``. Such ids go to open-addressing hash tables (``Ledger.tables``, home position
``tx % size``, linear probing) with their amount, client and state in slot
arrays; ids that share a home position, probes that wrap past the end of a
table, ids at the u32 limits, lookups in older tables, in the same ``apply``
call as the store and in later calls must all behave exactly like the
rising store.
"""

import random
import sys

import pytest

from shardpay.testing import model
from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, KIND_NAMES, RESOLVE, WITHDRAWAL
from shardpay.codes import DUPLICATE, REASONS
from shardpay._ledger_py import TABLE_LOAD, TABLE_MIX, TABLE_SIZES, Ledger
from tests.ledger_helpers import apply_one

U = 10_000
U32_MAX = 2**32 - 1


def _rows(lines, kinds, clients, txs, amounts):
    return list(lines), list(kinds), list(clients), list(txs), list(amounts)


def test_out_of_order_deposits_then_dispute_resolve_chargeback_across_calls():
    lg = Ledger()
    apply_one(lg, 2, DEPOSIT, 1, 4_000_000_000, 5 * U)  # rising store: the largest id first
    # out of order, three of them at the last home position of the first
    # table (tx * TABLE_MIX % size == size - 1): their probes wrap to its start
    size = TABLE_SIZES[0]
    last = (size - 1) * pow(TABLE_MIX, -1, size) % size
    same_bucket = [7 * size + last, 3 * size + last, 11 * size + last]
    lg.apply(*_rows([3, 4, 5, 6], [DEPOSIT, DEPOSIT, WITHDRAWAL, DEPOSIT], [1, 2, 1, 1],
                    same_bucket + [0], [2 * U, 3 * U, U, 4 * U]))
    assert lg.rejects == []
    assert lg.stored() == 5
    (table,) = lg.tables
    # tx 0's home, position 0, was taken by the wrapped probes: it goes next
    assert [k >> 32 for k in table[-1:] + table[:3]] == same_bucket + [0]
    assert sum(1 for k in table if k) == 4
    assert apply_one(lg, 7, DISPUTE, 1, same_bucket[0]) is None
    assert (lg.available[1], lg.held[1]) == (8 * U, 2 * U)
    assert apply_one(lg, 8, DISPUTE, 1, same_bucket[0]) == "already_disputed"
    assert apply_one(lg, 9, DISPUTE, 1, same_bucket[2]) == "not_disputable"  # a withdrawal
    assert apply_one(lg, 10, DISPUTE, 2, same_bucket[0]) == "unknown_tx"  # another client's deposit
    assert apply_one(lg, 11, DISPUTE, 1, 5 * size + last) == "unknown_tx"  # same home, never stored
    assert apply_one(lg, 12, RESOLVE, 1, same_bucket[0]) is None
    assert apply_one(lg, 13, RESOLVE, 1, same_bucket[0]) == "not_disputed"
    assert apply_one(lg, 14, DISPUTE, 2, same_bucket[1]) is None
    assert apply_one(lg, 15, CHARGEBACK, 2, same_bucket[1]) is None
    assert (lg.available[2], lg.held[2], lg.locked[2]) == (0, 0, 1)
    assert apply_one(lg, 16, DISPUTE, 1, 0) is None  # tx 0, the lowest id
    assert apply_one(lg, 17, CHARGEBACK, 1, 0) is None
    assert (lg.available[1], lg.held[1], lg.locked[1]) == (6 * U, 0, 1)


def test_lookup_in_the_same_call_as_the_store():
    lg = Ledger()
    apply_one(lg, 2, DEPOSIT, 1, 1000, U)
    lg.apply(*_rows(range(3, 8), [DEPOSIT, DISPUTE, RESOLVE, DISPUTE, CHARGEBACK],
                    [1, 1, 1, 1, 1], [500, 500, 500, 500, 500], [2 * U, 0, 0, 0, 0]))
    assert lg.rejects == []
    assert (lg.available[1], lg.held[1], lg.locked[1]) == (U, 0, 1)


def test_u32_limit_ids_and_ids_that_share_their_low_bits():
    lg = Ledger()
    apply_one(lg, 2, DEPOSIT, 3, U32_MAX, U)
    ids = [k << 16 for k in range(1000)]  # the same low 16 bits, stored in random order
    random.Random(1).shuffle(ids)
    lg.apply(*_rows(range(3, 1003), [DEPOSIT] * 1000, [3] * 1000, ids, [1] * 1000))
    homes = {tx * TABLE_MIX % TABLE_SIZES[0] for tx in ids}
    assert len(homes) == 1000  # a prime size spreads them over the table
    for line, tx in enumerate(ids[::7], 2000):
        assert apply_one(lg, line, DISPUTE, 3, tx) is None
    assert apply_one(lg, 3000, DISPUTE, 3, U32_MAX) is None
    assert lg.held[3] == len(ids[::7]) + U


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_model_with_out_of_order_ids(seed):
    """Random rows over ids that collide in buckets, fed in calls of random size; every reason and balance as the model."""
    r = random.Random(seed)
    pool = [r.randrange(64) << 16 | r.choice([0, 1, 65535]) for _ in range(150)] + [0, U32_MAX]
    pool += [r.randrange(2**32) for _ in range(100)]
    clients = [0, 1, 2, 3, 4, 5, 6, 65535]
    oracle = model.Ledger()
    lg = Ledger()
    claimed: set[int] = set()
    stored: list[tuple[int, int]] = []
    rows, want = [], {}
    for line in range(2, 3000):
        kind = r.choice([DEPOSIT] * 4 + [WITHDRAWAL] * 2 + [DISPUTE] * 3 + [RESOLVE] * 2 + [CHARGEBACK])
        if kind <= WITHDRAWAL:
            client, tx = r.choice(clients), r.choice(pool)
            amount = r.choice([1, U, 7 * U, 123_456])
        else:
            client, tx = r.choice(stored) if stored and r.random() < 0.8 else (r.choice(clients), r.choice(pool))
            amount = 0
        reason = oracle.apply(KIND_NAMES[kind], client, tx, amount)
        want[line] = reason
        code = kind
        if kind <= WITHDRAWAL:
            if tx in claimed:
                code = kind + DUPLICATE
            claimed.add(tx)
            if reason is None:
                stored.append((client, tx))
        rows.append((line, code, client, tx, amount))
    i = 0
    while i < len(rows):
        n = r.choice([1, 2, 17, 200])
        lg.apply(*map(list, zip(*rows[i : i + n])))
        i += n
    got = dict.fromkeys(want)
    for rec in lg.rejects:
        got[rec[0]] = REASONS[rec[1]]
    assert got == want
    assert any(v is None for v in want.values()) and lg.stored() - len(lg.tx_ids) > 20
    clients_, available, held, locked = lg.snapshot()
    assert list(clients_) == sorted(oracle.accounts)
    for c, a, h, lk in zip(clients_, available, held, locked):
        acct = oracle.accounts[c]
        assert (a, h, bool(lk)) == (acct.available, acct.held, acct.locked)


def _store_bytes(lg: Ledger) -> int:
    parts = [lg.o_amounts, lg.o_clients, lg.o_states]
    return sum(map(sys.getsizeof, parts)) + sum(map(sys.getsizeof, lg.tables))


def test_out_of_order_store_grows_by_at_most_40_bytes_a_transaction():
    """issue 9: <= 40 bytes per stored deposit; lookups reach every table, the oldest included."""
    r = random.Random(2)
    lg = Ledger()
    apply_one(lg, 1, DEPOSIT, 1, U32_MAX, 1)
    n = 100_000
    txs = r.sample(range(U32_MAX), 3 * n)  # distinct, as the reader's claim makes them
    clients = [r.randrange(65536) for _ in range(3 * n)]
    amounts = [r.randrange(1, 10**6) for _ in range(3 * n)]
    sizes = []
    for step in range(3):
        part = slice(step * n, (step + 1) * n)
        lg.apply(range(n), [DEPOSIT] * n, clients[part], txs[part], amounts[part])
        sizes.append((lg.stored(), _store_bytes(lg)))
    (n1, b1), (n2, b2) = sizes[0], sizes[-1]
    per_tx = (b2 - b1) / (n2 - n1)
    assert per_tx <= 40, per_tx
    assert len(lg.tables) > 5
    # ones stored all along (every table, slots past 2**16, 2**17) are found with their own amount
    seen = set()
    for i in range(0, 3 * n, 997):
        if clients[i] in seen:
            continue
        seen.add(clients[i])
        held = lg.held[clients[i]]
        assert apply_one(lg, 3 * n + i, DISPUTE, clients[i], txs[i]) is None
        assert lg.held[clients[i]] == held + amounts[i]


@pytest.mark.parametrize("first_call", [1, 31, 32, 33, 100])
def test_rising_store_lookups_across_stride_blocks_and_calls(first_call):
    """Rising ids are found through the list of every STRIDE-th id, whatever the call sizes; gaps are unknown."""
    r = random.Random(first_call)
    ids, tx = [], 100
    for _ in range(700):
        tx += r.choice([1, 1, 2, 5, 1000])
        ids.append(tx)
    lg = Ledger()
    done = 0
    for n in [first_call] + [r.randrange(1, 80) for _ in range(100)]:
        part = ids[done : done + n]
        lg.apply(*_rows(range(done, done + len(part)), [DEPOSIT] * len(part), [4] * len(part), part, [U] * len(part)))
        done += len(part)
    assert done == len(ids) and lg.tables == [] and lg.stored() == len(ids)
    stored = set(ids)
    line = 10_000
    for tx in ids[::3]:  # each one a deposit of U: a dispute moves U to held
        line += 1
        assert apply_one(lg, line, DISPUTE, 4, tx) is None
    assert lg.held[4] == len(ids[::3]) * U
    for tx in [0, 99, 100, ids[-1] + 1] + [t + 1 for t in ids[::5] if t + 1 not in stored]:
        line += 1
        assert apply_one(lg, line, DISPUTE, 4, tx) == "unknown_tx"


def test_older_tables_when_the_rising_store_holds_most():
    """Out-of-order ids past the first table's limit: found in the older table through the
    rising store's miss (the rising store is searched first), in this call and later ones."""
    lg = Ledger()
    rising = list(range(10**6, 10**6 + 3 * TABLE_SIZES[0]))
    lg.apply(*_rows(range(len(rising)), [DEPOSIT] * len(rising), [5] * len(rising), rising, [U] * len(rising)))
    limit = TABLE_SIZES[0] * TABLE_LOAD[0] // TABLE_LOAD[1]
    low = list(range(1, limit + 100))  # past the first table's limit: a second table
    random.Random(3).shuffle(low)
    line = len(rising)
    rows = [(line + i, DEPOSIT, 6, tx, 2) for i, tx in enumerate(low)]
    rows.append((line + len(low), DISPUTE, 6, low[0]))  # in the first table, same call
    lg.apply(*zip(*[r + (0,) * (5 - len(r)) for r in rows]))
    assert lg.rejects == [] and len(lg.tables) == 2 and lg.stored() == len(rising) + len(low)
    assert lg.held[6] == 2
    line += len(low) + 1
    for tx in (low[1], low[limit - 1], low[limit], low[-1]):  # both tables, their edges
        line += 1
        assert apply_one(lg, line, DISPUTE, 6, tx) is None
    assert lg.held[6] == 10
    assert apply_one(lg, line + 1, DISPUTE, 6, limit + 100) == "unknown_tx"  # in neither
    assert apply_one(lg, line + 2, DISPUTE, 5, low[2]) == "unknown_tx"  # another client's


def test_table_sizes_are_rising_primes_within_the_u32_range():
    def prime(n: int) -> bool:
        return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))

    assert all(prime(n) for n in TABLE_SIZES)
    assert list(TABLE_SIZES) == sorted(set(TABLE_SIZES)) and TABLE_SIZES[-1] < 2**32
    # a table takes at least as many keys as all the older ones together
    limits = [n * TABLE_LOAD[0] // TABLE_LOAD[1] for n in TABLE_SIZES]
    assert all(limits[i] >= sum(limits[:i]) for i in range(len(limits)))
    assert sum(limits) >= 2**32


def _longest_run(table) -> int:
    """The most consecutive occupied slots (a miss scans up to this many)."""
    longest = run = 0
    for k in table:
        run = run + 1 if k else 0
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize("order", ["rising", "falling", "two sources"])
def test_consecutive_out_of_order_ids_do_not_make_long_probe_runs(order):
    """A run of consecutive ids (an old batch replayed below the largest id, or a
    second rising source) is spread over the table: misses stay short."""
    lg = Ledger()
    apply_one(lg, 1, DEPOSIT, 1, U32_MAX, 1)
    limit = TABLE_SIZES[0] * TABLE_LOAD[0] // TABLE_LOAD[1]
    if order == "two sources":
        ids = [tx for pair in zip(range(1000, 1000 + limit // 2), range(10**9, 10**9 + limit // 2)) for tx in pair]
    else:
        ids = list(range(1000, 1000 + limit))[:: 1 if order == "rising" else -1]
    lg.apply(range(len(ids)), [DEPOSIT] * len(ids), [2] * len(ids), ids, [1] * len(ids))
    assert lg.rejects == [] and len(lg.tables) == 1
    assert _longest_run(lg.tables[0]) < 100  # tx % size alone: one run of ~5,000
    assert apply_one(lg, 10**6, DISPUTE, 2, ids[len(ids) // 2]) is None
    assert apply_one(lg, 10**6 + 1, DISPUTE, 2, 999) == "unknown_tx"
