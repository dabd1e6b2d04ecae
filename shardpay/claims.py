"""The global tx-id claim: which deposit or withdrawal rows are ``duplicate_tx``.

SPEC "Transactions": the first well-formed deposit or withdrawal with an id
claims it, whatever its outcome; every later one with the same id, for any
client, is a ``duplicate_tx``. :class:`Claims` applies the rule to whole
chunks of rows in line order, before they are split by shard, and marks each
duplicate by adding :data:`~shardpay.codes.DUPLICATE` to its kind (its worker
then rejects it, after creating the account).

No Python step per id. Per chunk, the ids of its deposits and withdrawals
are claimed in one of three ways:

* **Rising or clustered ids** (the usual partner file; a few out of order, as
  in ``messy``): one ``pyroaring.BitMap`` union claims them, one intersection
  finds the ids claimed before. Roaring keeps rising ids in a few bytes per
  thousand.
* **Spread ids early in a file** (random over the u32 range, ``sparse``):
  roaring costs 0.4-0.55 µs an id there (a sorted insert, a cache miss or
  more) and a Python ``set`` 60-90 bytes an id. :class:`ClaimTable` claims a
  whole chunk with numpy: an open-addressing hash table of u32 ids where each
  probe step is one gather over the ids still unplaced, so a chunk's cache
  misses overlap: ~0.11 µs an id at 4-8 bytes a slot. Up to
  :data:`TABLE_CLAIMS` ids, or until crafted ids crowd it; then the ids move
  to the BitMap for good.
* **Spread ids in the BitMap** (late in a file, or after the table): one
  C-level pass of roaring's ``add_checked`` a chunk, stopping only at an id
  met again.

Only the rows of an id claimed before the chunk, or repeated inside it, are
then visited one by one, in line order (:func:`mark_duplicates`).
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from collections.abc import Collection, Sequence
from itertools import compress

import numpy as np
from pyroaring import BitMap

from .codes import DUPLICATE, WITHDRAWAL

__all__ = ["CROWDED_ROUNDS", "TABLE_CLAIMS", "TABLE_ENTRY", "ClaimTable", "Claims", "distinct_ids", "mark_duplicates"]

TABLE_CLAIMS = 1 << 25
"""Most tx ids claimed in the table (4 bytes a slot, at most half full: at most
256 MiB, 384 while it doubles the last time). At a chunk that would pass it,
or once the table is crowded (:data:`CROWDED_ROUNDS`), the ids move to the
BitMap: sorted and bulk, ~28 ns an id and ~260 MiB more for a moment at 2^25
ids (the sorted ids, their bytes and their ``array``)."""
TABLE_ENTRY = 1 << 16
"""Table mode starts at a spread chunk only if the BitMap then holds at most this many
ids and most of the chunk's ids are not above the largest one claimed (random
ids): a file of rising ids with a stray low id, or with spread chunks later
on, stays in the BitMap."""

_U32 = np.uint32
_FIBONACCI = np.uint32(2654435769)  # 2**32 / golden ratio, odd
_FIRST_BITS = 16
_LOOSE = 8
"""Below this many ids still unplaced, a probe round finishes them one by one in
Python (a numpy round costs ~10 µs whatever its size)."""
_REHASH_SLOTS = 1 << 20
CROWDED_ROUNDS = 128
"""A chunk whose ids needed more probe rounds than this marks the table
:attr:`~ClaimTable.crowded`: its ids met a run of taken slots far longer than
random ids make (chunks of 2,400 random ids at 45-50% load: 24 rounds on
average, 40 at the 99th percentile, 51 at most in 688 chunks). The claims
then move to the BitMap for good, whose cost does not depend on the ids'
pattern. So ids crafted to share homes cost at most ~128 rounds a chunk
until they crowd the table, not a round per id of a growing cluster: chunks
of 9 homes x 60-120 crafted ids plus random ones took 0.42-0.58 µs an id
until then, about the BitMap's 0.4-0.55."""


class Claims:
    """The set of claimed tx ids of one input, claimed a chunk at a time in line order.

    Attributes:
        claimed: the BitMap of claimed ids (empty while the table holds them).
        table: the :class:`ClaimTable` in table mode, else None.
    """

    def __init__(self) -> None:
        self.claimed = BitMap()
        self.table: ClaimTable | None = None
        self._max_claimed = -1
        self._table_done = False  # table mode ended: it does not start again

    def __len__(self) -> int:
        """How many ids are claimed."""
        return len(self.claimed) + (len(self.table) if self.table is not None else 0)

    def ids(self) -> set[int]:
        """Every claimed id (for tests and checks)."""
        return set(self.claimed) | (set(self.table.ids().tolist()) if self.table is not None else set())

    def claim(self, kinds: np.ndarray, txs: np.ndarray) -> int:
        """Claim a chunk's tx ids in line order; mark its duplicates in ``kinds``; return
        how many rows it marked.

        Args:
            kinds: the chunk's kind codes (numpy u8, line order), changed in
                place: a deposit or withdrawal whose id was claimed before, by
                an earlier chunk or an earlier line, gets ``DUPLICATE`` added.
            txs: the chunk's tx ids (numpy u32, same length and order).
        """
        money = kinds <= WITHDRAWAL
        ids = txs[money]
        if not ids.size:
            return 0
        lo, hi = int(ids.min()), int(ids.max())
        rising = lo > self._max_claimed
        if self.table is not None:  # table mode: every chunk
            suspects, old = self._claim_in_table(ids)
        elif rising or hi - lo < ids.size << 6:  # rising, or clustered
            new = BitMap(array("I", ids.tobytes()))
            old = set() if rising else set(new & self.claimed)
            suspects = old if len(new) == ids.size else old | distinct_ids(ids)[1]
            self.claimed |= new
        elif (not self._table_done and len(self.claimed) <= TABLE_ENTRY
              and 2 * int((ids <= self._max_claimed).sum()) > ids.size):
            # spread, early in the file, mostly below the largest claim: table mode from now on
            self.table, self.claimed = ClaimTable(self.claimed.to_array()), BitMap()
            suspects, old = self._claim_in_table(ids)
        else:  # spread, in the BitMap: claimed as they come
            suspects, old = self._add_checked(ids.tolist())
        marked = mark_duplicates(kinds, txs, money, suspects, old) if suspects else 0
        if hi > self._max_claimed:
            self._max_claimed = hi
        return marked

    def _claim_in_table(self, txs: np.ndarray) -> tuple[set[int], set[int]]:
        """Table mode: claim ``txs`` in :attr:`table`; return ``(suspects, old)`` as
        :meth:`_add_checked` does. Once the table is crowded, or if ``txs``
        would take it past :data:`TABLE_CLAIMS` ids (then ``txs`` are claimed
        in the BitMap), the ids move to the BitMap and table mode ends."""
        table = self.table
        full = len(table) + len(txs) > TABLE_CLAIMS  # checked first: the table never doubles past it
        if not full:
            suspects, old = table.claim(txs)
        if full or table.crowded:
            self.claimed = BitMap(array("I", table.ids().tobytes()))
            self.table = None
            self._table_done = True  # for good: crafted ids would crowd a new table again
        if full:
            suspects, old = self._add_checked(txs.tolist())
        return suspects, old

    def _add_checked(self, txs: list[int]) -> tuple[set[int], set[int]]:
        """Claim ``txs`` in their order with C-level passes of roaring's
        ``add_checked``; return ``(suspects, old)``: the ids met again (claimed
        before this chunk, or earlier in ``txs``), and of those the ones
        claimed before this chunk.

        ``add_checked`` raises ``KeyError(id)`` at an id already claimed; the
        next pass resumes after it on the same iterator, so each repeat costs
        one raised exception (~1-2 µs), not a pass over the chunk. An id met at
        every one of its occurrences in the chunk was claimed before it; an id
        new to the chunk is met at every occurrence but its first.
        """
        add = self.claimed.add_checked
        rest = iter(txs)
        met: list[int] = []
        while True:
            try:
                deque(map(add, rest), 0)
                break
            except KeyError as already:
                met.append(already.args[0])
        if not met:
            return set(), set()
        times_met = Counter(met)
        if len(times_met) <= 4:  # a count over the chunk per id
            times_in_chunk = {tx: txs.count(tx) for tx in times_met}
        else:  # one pass over the chunk
            times_in_chunk = Counter(compress(txs, map(times_met.__contains__, txs)))
        return set(times_met), {tx for tx, n in times_met.items() if n == times_in_chunk[tx]}


def distinct_ids(ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, set[int]]:
    """``(distinct, repeated)`` of ``ids`` (tx ids 0..2**32-1, any order): the ids
    sorted, each once, as a new u32 array; and the ids that occur more than once.

    Raises:
        OverflowError: an id outside 0..2**32-1, with numpy 2 (numpy 1.24-1.26
            warns and wraps it); decode never lets one through.
    """
    distinct = np.array(ids, _U32)
    distinct.sort()
    first = np.empty(distinct.size, bool)  # first occurrence of each id in sorted order
    first[:1] = True
    np.not_equal(distinct[1:], distinct[:-1], out=first[1:])
    if first.all():
        return distinct, set()
    return distinct[first], set(distinct[1:][~first[1:]].tolist())


def mark_duplicates(kinds: np.ndarray, txs: np.ndarray, money: np.ndarray, suspects: Collection[int],
                    old: Collection[int]) -> int:
    """Add ``DUPLICATE`` to the kind of each deposit/withdrawal (``money``: bool a
    row) whose id is in ``old`` (claimed before the chunk), or is in
    ``suspects`` and met on an earlier line of the chunk (SPEC "Transactions":
    the first claims it); return how many it marked. Visits only the rows of
    suspect ids, in line order."""
    rows = np.flatnonzero(money & np.isin(txs, np.fromiter(suspects, _U32, len(suspects))))
    seen: set[int] = set()
    marked = 0
    for i, tx in zip(rows.tolist(), txs[rows].tolist()):
        if tx in old or tx in seen:
            kinds[i] += DUPLICATE
            marked += 1
        else:
            seen.add(tx)
    return marked


class ClaimTable:
    """Claimed tx ids (u32) in a numpy open-addressing table, claimed a chunk at a time.

    Layout: :attr:`table` is a numpy u32 array of ``2**bits`` slots; 0 marks an
    empty slot, so id 0 is a flag of its own (:attr:`zero`). An id's home is
    the top ``bits`` bits of ``id * 2654435769 mod 2**32`` (Fibonacci hashing:
    consecutive and strided ids land far apart); a probe walks up from its
    home, wrapping, to the id or to the first empty slot. Ids are never
    removed. The table is at most half full: past that it doubles and every
    id is placed again.

    Args:
        ids: ids claimed before: ints 0..2**32-1 in any order, e.g. a BitMap's
            ``to_array()`` (an ``array('I')``, read as a buffer).

    Attributes:
        table: numpy u32 array of ``2**bits`` slots, 0 for empty.
        zero: whether id 0 is claimed.
        crowded: set once a :meth:`claim` needed more than
            :data:`CROWDED_ROUNDS` probe rounds.
    """

    def __init__(self, ids: Sequence[int] | array = ()) -> None:
        self.bits = _FIRST_BITS
        self.table = np.zeros(1 << self.bits, _U32)
        self.count = 0  # nonzero ids in the table
        self.zero = False
        self.crowded = False
        start = np.unique(np.array(ids, _U32))
        if start.size:
            if start[0] == 0:
                self.zero, start = True, start[1:]
            self._make_room(start.size)
            self._place(start)

    def __len__(self) -> int:
        """How many ids are claimed."""
        return self.count + self.zero

    def __contains__(self, tx: int) -> bool:
        """Whether ``tx`` (an int 0..2**32-1) is claimed; a plain probe, for tests and checks."""
        if tx == 0:
            return self.zero
        table, mask = self.table, (1 << self.bits) - 1
        slot = (tx * int(_FIBONACCI) & 0xFFFFFFFF) >> (32 - self.bits)
        while True:
            held = int(table[slot])
            if held == tx:
                return True
            if held == 0:
                return False
            slot = (slot + 1) & mask

    def ids(self) -> np.ndarray:
        """The claimed ids as a sorted numpy u32 array (``len(self)`` of them)."""
        held = np.sort(self.table[self.table != 0])
        return np.concatenate((np.zeros(1, _U32), held)) if self.zero else held

    def claim(self, txs: Sequence[int] | np.ndarray) -> tuple[set[int], set[int]]:
        """Claim a chunk's ids; say which were met again.

        Args:
            txs: the chunk's deposit/withdrawal ids in line order (ints
                0..2**32-1, decode has checked the range; at least one).

        Returns:
            ``(suspects, old)``: ``old``, the ids claimed before this chunk;
            ``suspects``, those and every id repeated inside ``txs``. The
            reader marks the duplicate rows from them (SPEC "Transactions").

        Raises:
            OverflowError: as :func:`distinct_ids`.
        """
        chunk, repeated = distinct_ids(txs)
        old: set[int] = set()
        if chunk[0] == 0:
            if self.zero:
                old.add(0)
            self.zero, chunk = True, chunk[1:]
        self._make_room(chunk.size)
        met, rounds = self._place(chunk)
        if rounds > CROWDED_ROUNDS:
            self.crowded = True
        old.update(met)
        return (old | repeated if repeated else old), old

    def _make_room(self, more: int) -> None:
        """Double the table until ``more`` new ids keep it at most half full; place every id again.

        The old table is read a slice of :data:`_REHASH_SLOTS` at a time, so
        the peak is the two tables and a few MB of probe state (placing 4M
        ids at once held ~20 bytes an id more)."""
        if (self.count + more) * 2 <= 1 << self.bits:
            return
        old = self.table
        while (self.count + more) * 2 > 1 << self.bits:
            self.bits += 1
        self.table = np.zeros(1 << self.bits, _U32)
        self.count = 0
        for start in range(0, old.size, _REHASH_SLOTS):
            piece = old[start:start + _REHASH_SLOTS]
            self._place(piece[piece != 0])

    def _place(self, keys: np.ndarray) -> tuple[list[int], int]:
        """Put ``keys`` (distinct nonzero u32) in the table; return the ones it
        already held and how many probe rounds it took.

        Each round gathers the slot of every key still unplaced: a key that
        finds itself is met; keys that find an empty slot all write to it and
        read back, and the one whose write stayed (numpy keeps one of them) is placed;
        the rest step one slot on. Room for them all was made beforehand.
        """
        table, mask = self.table, (1 << self.bits) - 1
        slots = ((keys * _FIBONACCI) >> _U32(32 - self.bits)).astype(np.intp)
        met: list[int] = []
        placed = keys.size
        rounds = 0
        while keys.size >= _LOOSE:
            rounds += 1
            held = table[slots]
            done = held == keys
            if done.any():
                met += keys[done].tolist()
            empty = held == 0
            targets, wanting = slots[empty], keys[empty]
            table[targets] = wanting
            done[empty] = table[targets] == wanting
            unplaced = ~done
            keys, slots = keys[unplaced], slots[unplaced]
            slots += 1
            slots &= mask
        longest = 0
        for key, slot in zip(keys.tolist(), slots.tolist()):
            steps = 0
            while True:
                held = int(table[slot])
                if held == key:
                    met.append(key)
                    break
                if held == 0:
                    table[slot] = key
                    break
                slot = (slot + 1) & mask
                steps += 1
            longest = max(longest, steps)
        self.count += placed - len(met)
        return met, rounds + longest
