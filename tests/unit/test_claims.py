"""The global tx-id claim (``shardpay.claims``).

``Claims`` claims chunk-sized blocks in line order: with BitMap operations,
or in the numpy claim table in table mode (spread ids early in a file, up to
``TABLE_CLAIMS`` ids); only the rows of an id claimed earlier, or repeated
inside the block, are visited one by one. Whatever the mix, whichever mode,
and however the block is split into shards, the marks must equal a plain
set's, in file order.

``ClaimTable`` is a numpy open-addressing table of u32 ids, 0 for empty (id 0
is a flag), placed a chunk at a time in vector probe rounds. Whatever the ids
(repeated inside a chunk, claimed chunks before, 0 and 2**32-1, sharing a
home slot, probing past the table's end, enough to double the table), each
chunk's answer must be a plain set's: ``old`` the ids claimed before it,
``suspects`` those plus the ids it repeats.
"""

import random
from array import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardpay import claims
from shardpay.claims import CROWDED_ROUNDS, Claims, ClaimTable, mark_duplicates
from shardpay.codes import DEPOSIT, DISPUTE, DUPLICATE
from tests.frame_helpers import columns_of
from shardpay.decode import Deposit, Dispute, Withdrawal
from shardpay.frames import shard_frames, unpack_frame

U32_MAX = 2**32 - 1
FIBONACCI = 2654435769
INVERSE = pow(FIBONACCI, -1, 2**32)


def home_at(bits, slot, n):
    """``n`` distinct nonzero ids whose home is ``slot`` in a table of ``2**bits`` slots."""
    base = slot << (32 - bits)
    return [(base + j) * INVERSE % 2**32 for j in range(1, n + 1)]


def check(table, model, chunk):
    """Claim ``chunk`` in ``table`` and in the set ``model``; the answers must agree."""
    old = {tx for tx in chunk if tx in model}
    repeated = {tx for tx in chunk if chunk.count(tx) > 1}
    assert table.claim(chunk) == (old | repeated, old)
    model.update(chunk)
    assert len(table) == len(model)
    assert 2 * table.count <= table.table.size  # at most half full


ids = st.one_of(
    st.integers(0, 40),  # collide often, and 0
    st.integers(0, U32_MAX),
    st.sampled_from([U32_MAX, U32_MAX - 1, 1, 2**31]),
    st.sampled_from(home_at(16, 0, 30) + home_at(16, 2**16 - 1, 30)),  # one home, and the last slot
)


@given(st.lists(st.lists(ids, min_size=1, max_size=60), min_size=1, max_size=30),
       st.lists(st.integers(0, U32_MAX), max_size=50, unique=True))
def test_claims_agree_with_a_plain_set(chunks, start):
    table, model = ClaimTable(array("I", start)), set(start)
    assert len(table) == len(model)
    for chunk in chunks:
        check(table, model, chunk)
    assert table.ids().tolist() == sorted(model)
    assert all(tx in table for tx in model)
    assert not any(tx in table for tx in (3, 2**32 - 3, 123456789) if tx not in model)


def test_ids_sharing_a_home_probe_past_the_end_and_wrap():
    """Ids whose home is the last slot fill it and wrap to the first slots; every
    one is found again, in vector rounds (a chunk of them) and one by one (a few)."""
    table, model = ClaimTable(), set()
    last = home_at(table.bits, (1 << table.bits) - 1, 40)
    check(table, model, last[:30])  # vector rounds, then the loose ones
    # one kept its home, the last slot; the 29 others wrapped to the first slots
    assert set(table.table[:29].tolist()) | {int(table.table[-1])} == set(last[:30])
    check(table, model, last[25:] + last[:3])  # met again, both ways, and new ones
    check(table, model, [last[4]])
    assert not table.crowded


@pytest.mark.parametrize("rehash_slots", [1 << 20, 4096])
def test_random_chunks_grow_the_table_and_stay_exact(rehash_slots, monkeypatch):
    """Growth places every id again, the old table read whole or in slices."""
    monkeypatch.setattr(claims, "_REHASH_SLOTS", rehash_slots)
    rng = np.random.default_rng(7)
    table, model = ClaimTable(), set()
    for _ in range(60):
        chunk = rng.integers(0, 2**32, 2400, dtype=np.uint32).tolist()
        chunk += chunk[:3]  # repeated inside the chunk
        chunk += rng.choice(sorted(model), 5).tolist() if model else []  # claimed before
        check(table, model, chunk)
    assert table.bits == 19  # 144,000 ids: doubled three times, never more than half full
    assert not table.crowded
    assert np.array_equal(table.ids(), np.array(sorted(model), np.uint32))


def test_a_chunk_of_ids_sharing_a_home_marks_the_table_crowded():
    """More ids with one home than CROWDED_ROUNDS take a round each: the table says
    so (the reader then leaves table mode) and its answers stay exact."""
    table, model = ClaimTable(), set()
    check(table, model, home_at(16, 5, CROWDED_ROUNDS // 2))
    assert not table.crowded
    check(table, model, home_at(16, 5, CROWDED_ROUNDS + 20))
    assert table.crowded


def test_id_zero_is_a_flag_of_its_own():
    table = ClaimTable(array("I", [0, 9]))
    assert len(table) == 2 and 0 in table and table.ids().tolist() == [0, 9]
    assert table.claim([0, 5, 0]) == ({0}, {0})
    assert table.claim([U32_MAX, U32_MAX]) == ({U32_MAX}, set())
    assert table.ids().tolist() == [0, 5, 9, U32_MAX]


MODES = ["table", "bitmap", "table-then-bitmap"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Which claim set spread ids meet: table mode (the default early in a file), the
    BitMap only (as after ``TABLE_ENTRY`` rising ids), or table mode that moves to
    the BitMap after a few hundred ids (``TABLE_CLAIMS``)."""
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
    reader = _check([first, second], shards)
    assert reader._max_claimed == max(spread)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_spread_chunk_sent_twice_is_all_duplicates(shards, mode):
    """Every id of the second chunk was claimed by the first (the first id
    fails, the last fails, every one fails), some of them twice over."""
    rng = random.Random(5)
    first = [Deposit(rng.randrange(65536), rng.randrange(2**32), 1) for _ in range(300)]
    again = first + [Withdrawal(r.client, r.tx, 1) for r in first[::7]]
    reader = _check([first, again], shards)
    assert claimed(reader) == {r.tx for r in first}


def test_table_mode_only_when_spread_ids_come_early(monkeypatch):
    """A spread chunk after more than TABLE_ENTRY rising ids stays in the BitMap, and
    so does a mostly rising chunk with one stray low id; a chunk of random ids
    early moves the claims to the table, the earlier ones too, and a chunk after
    it is claimed in the table."""
    monkeypatch.setattr(claims, "TABLE_ENTRY", 100)
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


def test_a_crowded_table_hands_the_claims_to_the_bitmap():
    """Ids crafted to share one home slot in the claim table (more than
    CROWDED_ROUNDS of them in a chunk) end table mode: every claim so far moves to
    the BitMap, and the marks stay exact before, at and after the move."""
    rng = random.Random(9)
    spread = [Deposit(1, rng.randrange(2**32), 1) for _ in range(200)]
    inverse = pow(2654435769, -1, 2**32)
    crafted = [(7 << 16 | j) * inverse % 2**32 for j in range(1, CROWDED_ROUNDS + 50)]  # home 7 of 2**16
    crowd = [Deposit(2, tx, 1) for tx in crafted] + [Withdrawal(3, spread[0].tx, 1)]
    reader = _check([spread[:100], spread[100:], crowd])
    assert reader.table is None and len(reader.claimed) == 200 + len(crafted)
    again = [Deposit(4, crafted[5], 1), Deposit(4, spread[150].tx, 1), Deposit(4, 12345, 1)]
    assert claim(reader, again) == [DEPOSIT + DUPLICATE, DEPOSIT + DUPLICATE, DEPOSIT]
    # for good: a spread chunk, with few enough claims to enter table mode, stays
    # in the BitMap (a new table would be crowded by the same ids again)
    assert len(reader.claimed) <= claims.TABLE_ENTRY
    later = [Deposit(5, rng.randrange(2**32), 1) for _ in range(100)] + [Deposit(5, spread[7].tx, 1)]
    assert claim(reader, later) == [DEPOSIT] * 100 + [DEPOSIT + DUPLICATE]
    assert reader.table is None


def test_the_table_never_holds_more_than_table_claims(monkeypatch):
    """A chunk that would take the table past TABLE_CLAIMS ids is claimed in the
    BitMap, after every earlier id moved there: the table never grows past it."""
    monkeypatch.setattr(claims, "TABLE_CLAIMS", 250)
    sizes = []
    real_claim = ClaimTable.claim

    def claim_and_measure(table, txs):
        answer = real_claim(table, txs)
        sizes.append(len(table))
        return answer

    monkeypatch.setattr(ClaimTable, "claim", claim_and_measure)
    rng = random.Random(11)
    blocks = [[Deposit(1, rng.randrange(2**32), 1) for _ in range(100)] for _ in range(4)]
    blocks.append([Withdrawal(2, blocks[1][3].tx, 1), Deposit(2, blocks[3][0].tx, 1)])
    reader = _check(blocks)
    assert sizes == [200] and reader.table is None  # the first chunk is claimed as rising


def test_duplicates_are_marked_in_line_order_on_money_rows_only():
    rows = [Deposit(1, 9, 5), Dispute(1, 9), Withdrawal(2, 9, 5), Deposit(3, 4, 5), Deposit(3, 7, 5),
            Deposit(3, 7, 5)]
    cols = columns_of(range(len(rows)), rows)
    money = cols.kinds <= 1
    mark_duplicates(cols.kinds, cols.txs, money, suspects={9, 4, 7}, old={4})
    assert cols.kinds.tolist() == [0, 2, 1 + DUPLICATE, DUPLICATE, 0, DUPLICATE]


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
