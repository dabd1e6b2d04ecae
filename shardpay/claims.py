"""The reader's claim table for tx ids spread over the u32 range (``sparse`` files).

SPEC "Transactions": the first well-formed deposit or withdrawal with an id
claims it; a later one with the same id is a ``duplicate_tx``. The reader
keeps rising ids (the usual partner file) in a ``pyroaring.BitMap``, a few
bytes per thousand ids. Ids drawn at random over the u32 range cost roaring
0.4-0.55 µs an id (an insert into a sorted container, a cache miss or more)
and a Python ``set`` 0.2-0.3 µs at 60-90 bytes an id. :class:`ClaimTable`
claims a whole chunk with numpy: an open-addressing hash table of u32 keys
with linear probing, where every probe step is one gather over the ids still
unplaced, so the cache misses of a chunk overlap instead of queueing behind
one another: ~0.11 µs an id at 4-8 bytes a slot (profiling/README.md,
"Eighth session").

Layout: ``table`` is a numpy u32 array of ``2**bits`` slots; 0 marks an empty
slot, so id 0 is a flag of its own (:attr:`ClaimTable.zero`). An id's home is
the top ``bits`` bits of ``id * 2654435769 mod 2**32`` (Fibonacci hashing:
consecutive and strided ids land far apart); a probe walks up from its home,
wrapping, to the id or to the first empty slot. Ids are never removed. The
table is at most half full: past that it doubles and every id is placed again.

The reader imports this module only when a file's claims turn out spread
(numpy itself it loads when a :class:`~shardpay.reader.Reader` is made, for
:mod:`shardpay.columns`).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from .columns import distinct_ids

__all__ = ["CROWDED_ROUNDS", "ClaimTable"]

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
average, 40 at the 99th percentile, 51 at most in 688 chunks). The reader
then moves the claims to the BitMap for good, whose cost does not depend on
the ids' pattern. So ids crafted to share homes cost at most ~128 rounds a
chunk until they crowd the table, not a round per id of a growing cluster:
chunks of 9 homes x 60-120 crafted ids plus random ones took 0.42-0.58 µs
an id until then, about the BitMap's 0.4-0.55."""


class ClaimTable:
    """The set of claimed tx ids (u32), claimed a chunk at a time.

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
            OverflowError: as :func:`shardpay.columns.distinct_ids`.
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
