"""The global tx-id claim (``shardpay.claims``) and its claim table's twins.

``Claims`` claims chunk-sized blocks in line order: with BitMap operations,
or in the claim table in table mode (spread ids early in a file, up to
``TABLE_CLAIMS`` ids); only the rows of an id claimed earlier, or repeated
inside the block, are visited one by one. Whatever the mix, whichever mode,
whichever table twin, and however the block is split into shards, the marks
must equal a plain set's, in file order.

``ClaimTable`` is an open-addressing table of u32 ids, 0 for empty (id 0 is a
flag), with two twins: ``shardpay._claims`` (compiled, one pass over the
rows) and ``shardpay._claims_py`` (numpy, vector probe rounds). Whatever the
ids (repeated inside a chunk, claimed chunks before, 0 and 2**32-1, sharing a
home slot, probing past the table's end, enough to double the table), each
twin's marks must be a plain set's in line order, its claimed ids the set's,
and the two twins must agree with each other.
"""

import os
import random
import subprocess
import sys
from array import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardpay import _claims_py, claims
from shardpay._claims_py import CROWDED_ROUNDS
from shardpay.claims import Claims
from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, DUPLICATE, RESOLVE, WITHDRAWAL
from tests.conftest import import_compiled
from tests.frame_helpers import columns_of
from shardpay.decode import Deposit, Dispute, Withdrawal
from shardpay.frames import shard_frames, unpack_frame

U32_MAX = 2**32 - 1
FIBONACCI = 2654435769
INVERSE = pow(FIBONACCI, -1, 2**32)
TWINS = ("compiled", "python")


def twin(name):
    """The ``ClaimTable`` class of twin ``name``; skips (fails under CI) a compiled one not built."""
    if name == "python":
        return _claims_py.ClaimTable
    return import_compiled("_claims", "compiled claim table").ClaimTable


def twin_module(name):
    """Twin ``name``'s module (:func:`twin` skips or fails a compiled one not built)."""
    return sys.modules[twin(name).__module__]


@pytest.fixture(params=TWINS)
def table_cls(request):
    """Each twin's ``ClaimTable`` class in turn."""
    return twin(request.param)


def home_at(bits, slot, n):
    """``n`` distinct nonzero ids whose home is ``slot`` in a table of ``2**bits`` slots."""
    base = slot << (32 - bits)
    return [(base + j) * INVERSE % 2**32 for j in range(1, n + 1)]


def chunk_of(txs, kinds=None):
    """A chunk's ``(kinds, txs)`` columns (u8, u32), every row a deposit unless ``kinds`` says."""
    kinds = [DEPOSIT] * len(txs) if kinds is None else kinds
    return np.array(kinds, np.uint8), np.array(txs, np.uint32)


def check(table, model, txs, kinds=None):
    """Claim a chunk in ``table`` and in the set ``model`` in line order; the marks, the
    count marked, the claimed ids and how many are new must agree. Returns the marked kinds."""
    k, t = chunk_of(txs, kinds)
    want = k.copy()
    before = len(model)
    for i, (kind, tx) in enumerate(zip(k.tolist(), t.tolist())):
        if kind <= WITHDRAWAL:
            if tx in model:
                want[i] += DUPLICATE
            model.add(tx)
    length = len(table)
    assert table.claim(k, t) == int((want >= DUPLICATE).sum())
    assert k.tolist() == want.tolist()
    assert len(table) - length == len(model) - before  # the new ids
    assert len(table) == len(model)
    assert 2 * table.count <= table.table.size  # at most half full
    return k


ids = st.one_of(
    st.integers(0, 40),  # collide often, and 0
    st.integers(0, U32_MAX),
    st.sampled_from([U32_MAX, U32_MAX - 1, 1, 2**31]),
    st.sampled_from(home_at(16, 0, 30) + home_at(16, 2**16 - 1, 30)),  # one home, and the last slot
)
kinds = st.sampled_from([DEPOSIT, DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK])
chunks = st.lists(st.lists(st.tuples(kinds, ids), min_size=0, max_size=60), min_size=1, max_size=30)


@given(chunks, st.lists(st.integers(0, U32_MAX), max_size=50, unique=True))
def test_each_twin_agrees_with_a_plain_set(chunks, start):
    for name in TWINS:
        table_cls = twin(name)
        table, model = table_cls(array("I", start)), set(start)
        assert len(table) == len(model)
        for chunk in chunks:
            check(table, model, [tx for _, tx in chunk], [kind for kind, _ in chunk])
        assert table.ids().tolist() == sorted(model)
        assert all(tx in table for tx in model)
        assert not any(tx in table for tx in (3, 2**32 - 3, 123456789) if tx not in model)


@given(chunks)
def test_the_twins_agree_with_each_other(chunks):
    """Same marks, same claimed ids, same counts, chunk after chunk."""
    tables = [twin(name)() for name in TWINS]
    for chunk in chunks:
        answers = []
        for table in tables:
            k, t = chunk_of([tx for _, tx in chunk], [kind for kind, _ in chunk])
            answers.append((table.claim(k, t), k.tolist(), len(table), table.ids().tolist()))
        assert answers[0] == answers[1]


def test_ids_sharing_a_home_probe_past_the_end_and_wrap(table_cls):
    """Ids whose home is the last slot fill it and wrap to the first slots; every
    one is found again, whether met in the same chunk or chunks later."""
    table, model = table_cls(), set()
    last = home_at(table.bits, (1 << table.bits) - 1, 40)
    check(table, model, last[:30])
    # one kept its home, the last slot; the 29 others wrapped to the first slots
    assert set(table.table[:29].tolist()) | {int(table.table[-1])} == set(last[:30])
    check(table, model, last[25:] + last[:3])  # met again, both ways, and new ones
    check(table, model, [last[4]])
    assert not table.crowded


@pytest.mark.parametrize("rehash_slots", [1 << 20, 4096])
def test_random_chunks_grow_the_table_and_stay_exact(table_cls, rehash_slots, monkeypatch):
    """Growth places every id again (the pure twin reads the old table whole or in
    slices); random ids at up to half full never crowd the table."""
    monkeypatch.setattr(_claims_py, "_REHASH_SLOTS", rehash_slots)
    rng = np.random.default_rng(7)
    table, model = table_cls(), set()
    for _ in range(60):
        chunk = rng.integers(0, 2**32, 2400, dtype=np.uint32).tolist()
        chunk += chunk[:3]  # repeated inside the chunk
        chunk += rng.choice(sorted(model), 5).tolist() if model else []  # claimed before
        check(table, model, chunk)
    assert table.bits == 19  # 144,000 ids: doubled three times, never more than half full
    assert not table.crowded
    assert np.array_equal(table.ids(), np.array(sorted(model), np.uint32))


def test_a_chunk_of_ids_sharing_a_home_marks_the_table_crowded(table_cls):
    """Many ids with one home make a run of taken slots each new one walks: past the
    twin's bound (CROWDED_ROUNDS probe rounds for the pure twin, CROWDED_STEPS
    steps an id for the compiled one) the table says so (``Claims`` then leaves
    table mode), and its answers stay exact."""
    table, model = table_cls(), set()
    check(table, model, home_at(16, 5, CROWDED_ROUNDS // 2))
    assert not table.crowded
    repeat = home_at(16, 5, 3)
    check(table, model, home_at(16, 5, CROWDED_ROUNDS + 20) + repeat)
    assert table.crowded
    check(table, model, repeat + [7])  # still exact once crowded


def test_id_zero_is_a_flag_of_its_own(table_cls):
    table = table_cls(array("I", [0, 9]))
    assert len(table) == 2 and 0 in table and table.ids().tolist() == [0, 9]
    model = {0, 9}
    assert check(table, model, [0, 5, 0]).tolist() == [DEPOSIT + DUPLICATE, DEPOSIT, DEPOSIT + DUPLICATE]
    assert check(table, model, [U32_MAX, U32_MAX]).tolist() == [DEPOSIT, DEPOSIT + DUPLICATE]
    assert table.ids().tolist() == [0, 5, 9, U32_MAX]
    fresh = table_cls()
    assert check(fresh, set(), [5, 0, 0], [DISPUTE, DEPOSIT, WITHDRAWAL]).tolist() == [
        DISPUTE, DEPOSIT, WITHDRAWAL + DUPLICATE]
    assert 0 in fresh and 5 not in fresh  # a dispute claims nothing


def test_rows_that_claim_nothing_leave_the_table_unchanged(table_cls):
    """Disputes, resolves and chargebacks neither claim their id nor are marked."""
    table, model = table_cls(), set()
    check(table, model, [10, 10, 10], [DISPUTE, RESOLVE, CHARGEBACK])
    assert len(table) == 0
    check(table, model, [], [])
    check(table, model, [10, 10, 11], [DISPUTE, WITHDRAWAL, DISPUTE])
    assert len(table) == 1


def test_kinds_and_txs_of_unequal_length_are_refused(table_cls):
    table = table_cls()
    with pytest.raises(ValueError, match="3 kinds but 2 tx ids"):
        table.claim(np.zeros(3, np.uint8), np.ones(2, np.uint32))
    assert len(table) == 0


@pytest.mark.parametrize("env, picked", [({}, "compiled"), ({"SHARDPAY_CLAIMS": "python"}, "python"),
                                         ({"SHARDPAY_NO_EXTENSIONS": "1"}, "python"),
                                         ({"SHARDPAY_CLAIMS": "compiled"}, "compiled")])
def test_the_claims_pick_the_twin_the_environment_asks_for(env, picked):
    twin("compiled")
    clean = {k: v for k, v in os.environ.items() if k not in ("SHARDPAY_CLAIMS", "SHARDPAY_NO_EXTENSIONS")}
    r = subprocess.run([sys.executable, "-c", "import shardpay.claims as c; print(c.CLAIMS, c.ClaimTable.__module__)"],
                       capture_output=True, text=True, env={**clean, **env})
    assert r.stdout.split() == [picked, "shardpay._claims" if picked == "compiled" else "shardpay._claims_py"], r.stderr


def test_an_unknown_choice_is_refused():
    r = subprocess.run([sys.executable, "-c", "import shardpay.claims"], capture_output=True, text=True,
                       env={**os.environ, "SHARDPAY_CLAIMS": "fast"})
    assert r.returncode != 0 and "SHARDPAY_CLAIMS must be" in r.stderr


MODES = ["table", "bitmap", "table-then-bitmap"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch, table_cls):
    """Which claim set spread ids meet: table mode (the default early in a file), the
    BitMap only (as after ``TABLE_ENTRY`` rising ids), or table mode that moves to
    the BitMap after a few hundred ids (``TABLE_CLAIMS``); the table of each twin."""
    monkeypatch.setattr(claims, "ClaimTable", table_cls)
    if request.param == "bitmap":
        monkeypatch.setattr(claims, "TABLE_ENTRY", -1)
    elif request.param == "table-then-bitmap":
        monkeypatch.setattr(claims, "TABLE_CLAIMS", 300)
    return request.param


def claimed(reader):
    """Every id claimed, whichever set holds it."""
    return reader.ids()


def claim(reader, block, shards=1):
    """Claim ``block`` (rows in line order) as the reader does, then split it into
    ``shards`` frames by ``client % shards``; return the block's kinds, in line
    order, as the frames carry them."""
    cols = columns_of(range(len(block)), block)
    before = [col.copy() for j, col in enumerate(cols) if j != 1]
    reader.claim(cols.kinds, cols.txs)
    assert all(np.array_equal(a, b) for a, b in zip(before, (col for j, col in enumerate(cols) if j != 1)))
    kinds = [None] * len(block)
    shard_map = np.arange(65536) % shards
    for frame in shard_frames(cols, shard_map.astype(np.uint8), shards):
        if frame is not None:
            lines, part_kinds, *_ = unpack_frame(frame)
            for line, kind in zip(lines, part_kinds):
                kinds[line] = kind
    return kinds


def _check(blocks, shards=1):
    reader = Claims()
    seen: set[int] = set()
    for block in blocks:
        want = []
        for row in block:
            if isinstance(row, Dispute):
                want.append(row.kind)
            else:
                want.append(row.kind + DUPLICATE if row.tx in seen else row.kind)
                seen.add(row.tx)
        assert claim(reader, block, shards) == want
    assert claimed(reader) == seen
    return reader


def _row(rng, tx):
    cls = rng.choice([Deposit, Deposit, Withdrawal, Dispute])
    return cls(rng.randrange(65536), tx, 7) if cls is not Dispute else cls(rng.randrange(65536), tx)


@pytest.mark.parametrize(("seed", "shards"), [(0, 1), (1, 1), (2, 3), (3, 4)])
def test_random_u32_ids_in_big_blocks_with_collisions(seed, shards, mode):
    rng = random.Random(seed)
    claimed: list[int] = []
    blocks = []
    for _ in range(40):
        block = []
        for _ in range(rng.randrange(1, 3000)):
            p = rng.random()
            if p < 0.01 and claimed:
                tx = rng.choice(claimed)  # an id claimed by an earlier block
            elif p < 0.02 and block:
                tx = rng.choice(block).tx  # an id earlier in this block
            else:
                tx = rng.randrange(2**32)
            row = _row(rng, tx)
            block.append(row)
        claimed.extend(r.tx for r in block)
        blocks.append(block)
    reader = _check(blocks, shards)
    # the mode the test meant: table mode ended past TABLE_CLAIMS ids, or never began
    assert (reader.table is not None) == (mode == "table")
    assert (len(reader.claimed) > 0) == (mode != "table")


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_rising_blocks_with_repeats_inside_and_then_random_ids(shards, mode):
    rng = random.Random(9)
    blocks = [
        [Deposit(1, 10, 1), Deposit(2, 11, 1), Withdrawal(1, 11, 1), Dispute(1, 11), Deposit(3, 12, 1), Deposit(3, 11, 1)],
        [Deposit(1, 13, 1), Dispute(2, 13), Deposit(1, 14, 1)],  # rising, no repeat: the union path
        [Deposit(1, 5, 1), Deposit(1, 14, 1), Dispute(1, 5), Withdrawal(1, 5, 1)],  # below the largest claim
        [Deposit(1, 2**32 - 1, 1), Deposit(1, 0, 1), Deposit(1, 0, 1), Deposit(1, 2**32 - 1, 1)],
        [_row(rng, rng.randrange(2**32)) for _ in range(500)],
        [Dispute(1, 99), Dispute(1, 99)],  # references only: nothing to claim
    ]
    _check(blocks, shards)


def test_a_reference_row_with_a_claimed_id_is_never_marked():
    reader = Claims()
    assert claim(reader, [Deposit(1, 7, 1)]) == [DEPOSIT]
    block = [Dispute(1, 7), Deposit(2, 3, 1), Dispute(2, 3), Deposit(2, 7, 1), Dispute(1, 7)]
    assert claim(reader, block, 2) == [DISPUTE, DEPOSIT, DISPUTE, DEPOSIT + DUPLICATE, DISPUTE]


def test_the_first_line_claims_whichever_shard_it_went_to():
    """A repeated id in one chunk: the earlier line wins even when its shard comes later."""
    reader = Claims()
    # client 3 -> part 1, client 2 -> part 0 (client % 2); line 0 holds the first claim
    block = [Deposit(3, 50, 1), Deposit(2, 50, 1), Withdrawal(3, 51, 1), Deposit(2, 51, 1)]
    assert claim(reader, block, 2) == [DEPOSIT, DEPOSIT + DUPLICATE, 1, DEPOSIT + DUPLICATE]


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_spread_ids_claimed_before_and_repeated_in_one_chunk(shards, mode):
    """The ``sparse`` path (ids spread over the u32 range): an old id met twice,
    a new id met three times, in both orders across the shards."""
    spread = [k * 2**26 + 12345 for k in range(64)]  # far wider than the chunk: not "clustered"
    first = [Deposit(k, tx, 1) for k, tx in enumerate(spread[:32])]
    old, new = spread[5], spread[40]
    second = [Deposit(k, tx, 1) for k, tx in enumerate(spread[32:], start=100)]
    second[3:3] = [Withdrawal(7, new, 1), Deposit(8, old, 1), Dispute(9, old), Deposit(10, new, 1)]
    second += [Withdrawal(11, old, 1), Deposit(12, new, 1)]
    _check([first, second], shards)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_spread_chunk_sent_twice_is_all_duplicates(shards, mode):
    """Every id of the second chunk was claimed by the first (the first id
    fails, the last fails, every one fails), some of them twice over."""
    rng = random.Random(5)
    first = [Deposit(rng.randrange(65536), rng.randrange(2**32), 1) for _ in range(300)]
    again = first + [Withdrawal(r.client, r.tx, 1) for r in first[::7]]
    reader = _check([first, again], shards)
    assert claimed(reader) == {r.tx for r in first}


def test_table_mode_only_when_spread_ids_come_early(monkeypatch, table_cls):
    """A spread chunk after more than TABLE_ENTRY rising ids stays in the BitMap, and
    so does a mostly rising chunk with one stray low id; a chunk of random ids
    early moves the claims to the table, the earlier ones too, and a chunk after
    it is claimed in the table."""
    monkeypatch.setattr(claims, "TABLE_ENTRY", 100)
    monkeypatch.setattr(claims, "ClaimTable", table_cls)
    rng = random.Random(4)
    high = 4 * 10**9  # so that random ids are mostly below the largest claim
    rising = [Deposit(1, tx, 1) for tx in range(high, high + 101)]  # 101 ids: past TABLE_ENTRY
    spread = [Deposit(2, rng.randrange(2**32), 1) for _ in range(50)] + [Deposit(3, high + 50, 1)]
    reader = _check([rising, spread])
    assert reader.table is None and high + 50 in reader.claimed
    # rising ids with one stray low id, early: a spread chunk, but mostly rising
    stray = [Deposit(6, tx, 1) for tx in range(10**6, 10**6 + 50)] + [Deposit(6, 5, 1)]
    first = [Deposit(6, tx, 1) for tx in range(1000, 1010)]
    reader = _check([first, stray, [Deposit(6, 10**6 + 60, 1), Deposit(6, 5, 1)]])
    assert reader.table is None and len(reader.claimed) == 62
    # random ids from the start (the first chunk is claimed as rising): the
    # second one moves every claim to the table, the first chunk's ids too
    first = [Deposit(7, rng.randrange(2**32), 1) for _ in range(50)]
    early = _check([first, spread, [Deposit(4, 2**32 - 1, 1), Withdrawal(4, first[0].tx, 1)]])
    assert early.table is not None and len(early.claimed) == 0
    assert claim(early, [Deposit(5, first[1].tx, 1)]) == [DEPOSIT + DUPLICATE]


def test_a_crowded_table_hands_the_claims_to_the_bitmap(monkeypatch, table_cls):
    """Ids crafted to share one home slot in the claim table (more than
    CROWDED_ROUNDS of them in a chunk) end table mode: every claim so far moves to
    the BitMap, and the marks stay exact before, at and after the move."""
    monkeypatch.setattr(claims, "ClaimTable", table_cls)
    rng = random.Random(9)
    spread = [Deposit(1, rng.randrange(2**32), 1) for _ in range(200)]
    inverse = pow(2654435769, -1, 2**32)
    crafted = [(7 << 16 | j) * inverse % 2**32 for j in range(1, CROWDED_ROUNDS + 50)]  # home 7 of 2**16
    crowd = [Deposit(2, tx, 1) for tx in crafted] + [Withdrawal(3, spread[0].tx, 1)]
    reader = _check([spread[:100], spread[100:], crowd])
    assert reader.table is None and len(reader.claimed) == 200 + len(crafted)
    # the largest id claimed in the table, alone: not taken for a new rising id
    assert claim(reader, [Deposit(4, max(claimed(reader)), 1)]) == [DEPOSIT + DUPLICATE]
    again = [Deposit(4, crafted[5], 1), Deposit(4, spread[150].tx, 1), Deposit(4, 12345, 1)]
    assert claim(reader, again) == [DEPOSIT + DUPLICATE, DEPOSIT + DUPLICATE, DEPOSIT]
    # for good: a spread chunk, with few enough claims to enter table mode, stays
    # in the BitMap (a new table would be crowded by the same ids again)
    assert len(reader.claimed) <= claims.TABLE_ENTRY
    later = [Deposit(5, rng.randrange(2**32), 1) for _ in range(100)] + [Deposit(5, spread[7].tx, 1)]
    assert claim(reader, later) == [DEPOSIT] * 100 + [DEPOSIT + DUPLICATE]
    assert reader.table is None


def test_the_table_never_holds_more_than_table_claims(monkeypatch, table_cls):
    """A chunk whose rows could take the table past TABLE_CLAIMS ids is claimed in
    the BitMap, after every earlier id moved there: the table never grows past it."""
    monkeypatch.setattr(claims, "TABLE_CLAIMS", 250)
    monkeypatch.setattr(claims, "ClaimTable", table_cls)
    rng = random.Random(11)
    blocks = [[Deposit(1, rng.randrange(2**32), 1) for _ in range(100)] for _ in range(4)]
    blocks.append([Withdrawal(2, blocks[1][3].tx, 1), Deposit(2, blocks[3][0].tx, 1)])
    reader = Claims()
    sizes, seen = [], set()
    for block in blocks:
        want = [row.kind + DUPLICATE * (row.tx in seen) for row in block]
        seen.update(row.tx for row in block)
        assert claim(reader, block) == want
        sizes.append(None if reader.table is None else len(reader.table))
    assert sizes == [None, 200, None, None, None]  # the first chunk is claimed as rising
    assert claimed(reader) == seen


@pytest.mark.parametrize("name", TWINS)
def test_duplicates_are_marked_in_line_order_on_money_rows_only(name):
    rows = [Deposit(1, 9, 5), Dispute(1, 9), Withdrawal(2, 9, 5), Deposit(3, 4, 5), Deposit(3, 7, 5),
            Deposit(3, 7, 5)]
    cols = columns_of(range(len(rows)), rows)
    money = cols.kinds <= 1
    marked = twin_module(name).mark_duplicates(cols.kinds, cols.txs, money, suspects={9, 4, 7}, old={4})
    assert cols.kinds.tolist() == [0, 2, 1 + DUPLICATE, DUPLICATE, 0, DUPLICATE]
    assert marked == 3


@given(chunk=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 20)), max_size=60),
       old=st.sets(st.integers(0, 20), max_size=6), extra=st.sets(st.integers(0, 20), max_size=6))
def test_the_twins_mark_the_same_duplicates(chunk, old, extra):
    """Any suspects (ids met again, and some that are not), any ids claimed before: the same marks."""
    suspects = old | extra
    answers = []
    for name in TWINS:
        kinds, txs = chunk_of([tx for _, tx in chunk], [kind for kind, _ in chunk])
        marked = twin_module(name).mark_duplicates(kinds, txs, kinds <= 1, suspects, old)
        answers.append((marked, kinds.tolist()))
    assert answers[0] == answers[1]


def test_tx_claims_match_a_plain_set_rising_and_random():
    rng = random.Random(3)
    claims = Claims()
    seen: set[int] = set()
    next_tx = 0
    for _ in range(300):
        block, want = [], []
        for _ in range(rng.randrange(1, 25)):
            mode = rng.random()
            if mode < 0.5:
                next_tx += rng.randrange(1, 3)
                tx = next_tx  # rising
            elif mode < 0.8:
                tx = rng.randrange(2**32)  # sparse
            else:
                tx = rng.choice(sorted(seen)) if seen and rng.random() < 0.7 else rng.randrange(50)
            cls = rng.choice([Deposit, Withdrawal, Dispute])
            row = cls(1, tx, 5) if cls is not Dispute else cls(1, tx)
            block.append(row)
            if cls is Dispute:
                want.append(row.kind)
            else:
                want.append(row.kind + DUPLICATE if tx in seen else row.kind)
                seen.add(tx)
        cols = columns_of(range(len(block)), block)
        claims.claim(cols.kinds, cols.txs)
        assert cols.kinds.tolist() == want
    assert claims.ids() == seen and len(claims) == len(seen)
