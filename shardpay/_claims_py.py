"""The claim table in pure Python with numpy: the fallback and the readable twin.

:mod:`shardpay.claims` uses this module's :class:`ClaimTable` in table mode
when the compiled twin (:mod:`shardpay._claims`, ``_claims.pyx``) is not built
or ``SHARDPAY_CLAIMS=python`` asks for it. Both twins have one interface and
give the same results for every chunk: the same ``DUPLICATE`` marks in
``kinds``, the same set of claimed ids, the same count of new ones.

The rule (SPEC "Transactions"): the first well-formed deposit or withdrawal
with a tx id claims it; every later deposit or withdrawal with the same id,
for any client, is a ``duplicate_tx``, marked by adding
:data:`~shardpay.codes.DUPLICATE` to its kind. This twin claims a chunk's
ids with numpy in vector probe rounds (each round one gather over the ids
still unplaced, so their cache misses overlap), then visits in line order
only the rows of an id met again (:func:`mark_duplicates`).

:func:`distinct_ids` and :func:`mark_duplicates` also serve the BitMap modes
of :mod:`shardpay.claims`, whichever twin runs.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Sequence

import numpy as np

from .codes import DUPLICATE, WITHDRAWAL

__all__ = ["CROWDED_ROUNDS", "ClaimTable", "distinct_ids", "mark_duplicates"]

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

    Layout (both twins): :attr:`table` is a numpy u32 array of ``2**bits``
    slots; 0 marks an empty slot, so id 0 is a flag of its own (:attr:`zero`).
    An id's home is the top ``bits`` bits of ``id * 2654435769 mod 2**32``
    (Fibonacci hashing: consecutive and strided ids land far apart); a probe
    walks up from its home, wrapping, to the id or to the first empty slot.
    Ids are never removed. The table is at most half full: before a chunk
    that could pass that, it doubles and every id is placed again.

    Args:
        ids: ids claimed before: ints 0..2**32-1 in any order, e.g. a BitMap's
            ``to_array()`` (an ``array('I')``, read as a buffer).

    Attributes:
        table: numpy u32 array of ``2**bits`` slots, 0 for empty.
        bits: log2 of the slots.
        count: nonzero ids in the table.
        zero: whether id 0 is claimed.
        crowded: set once a :meth:`claim` needed more than
            :data:`CROWDED_ROUNDS` probe rounds.
    """

    def __init__(self, ids: Sequence[int] | array = ()) -> None:
        self.bits = _FIRST_BITS
        self.table = np.zeros(1 << self.bits, _U32)
        self.count = 0
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

    def claim(self, kinds: np.ndarray, txs: np.ndarray) -> int:
        """Claim a chunk's tx ids in line order; mark its duplicates in ``kinds``; return
        how many rows it marked (SPEC "Transactions").

        Args:
            kinds: the chunk's kind codes (numpy u8, line order), changed in
                place: a deposit or withdrawal (``kind <= WITHDRAWAL``) whose
                id was claimed before, by an earlier chunk or an earlier line,
                gets ``DUPLICATE`` added. Other rows claim nothing.
            txs: the chunk's tx ids (numpy u32, same length and order).

        Raises:
            ValueError: ``kinds`` and ``txs`` differ in length.
        """
        if len(kinds) != len(txs):
            raise ValueError(f"{len(kinds)} kinds but {len(txs)} tx ids")
        money = kinds <= WITHDRAWAL
        ids = txs[money]
        if not ids.size:
            return 0
        suspects, old = self._claim_ids(ids)
        return mark_duplicates(kinds, txs, money, suspects, old) if suspects else 0

    def _claim_ids(self, txs: np.ndarray) -> tuple[set[int], set[int]]:
        """Claim ``txs`` (u32, at least one); return ``(suspects, old)``: ``old``, the
        ids claimed before this chunk; ``suspects``, those and every id
        repeated inside ``txs``."""
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
