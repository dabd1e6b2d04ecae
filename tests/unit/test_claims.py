"""The reader's claim table for spread tx ids (``shardpay.claims.ClaimTable``).

A numpy open-addressing table of u32 ids, 0 for empty (id 0 is a flag),
placed a chunk at a time in vector probe rounds. Whatever the ids (repeated
inside a chunk, claimed chunks before, 0 and 2**32-1, sharing a home slot,
probing past the table's end, enough to double the table), each chunk's
answer must be a plain set's: ``old`` the ids claimed before it, ``suspects``
those plus the ids it repeats.
"""

from array import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardpay import claims
from shardpay.claims import CROWDED_ROUNDS, ClaimTable

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
