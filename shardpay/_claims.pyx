# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The claim table, compiled: one plain pass over a chunk's rows in line order.

The compiled twin of :mod:`shardpay._claims_py`: same interface, same marks,
same claimed ids (a property test compares them). Picked by
:mod:`shardpay.claims` for table mode unless it failed to build or
``SHARDPAY_CLAIMS=python``.

The rule (SPEC "Transactions"): the first well-formed deposit or withdrawal
with a tx id claims it; every later deposit or withdrawal with the same id,
for any client, is a ``duplicate_tx``, marked by adding ``DUPLICATE`` to its
kind. :meth:`ClaimTable.claim` applies it row by row: each deposit or
withdrawal looks its id up in the table; found, the row is a duplicate; an
empty slot, the row claims the id there. Rows are visited in line order, so
an id claimed earlier in the same chunk is found like one claimed chunks
before.

The table's layout is :class:`shardpay._claims_py.ClaimTable`'s: u32 slots, 0
for empty (id 0 is a flag of its own), an id's home the top ``bits`` bits of
``id * 2654435769 mod 2**32``, linear probing up from it, at most half full.
"""

from libc.stdint cimport uint8_t, uint32_t

import numpy as np

from .codes import DUPLICATE as _DUPLICATE, WITHDRAWAL as _WITHDRAWAL

__all__ = ["CROWDED_FLOOR", "CROWDED_STEPS", "ClaimTable", "mark_duplicates"]

cdef enum:
    FIRST_BITS = 16  # the first table: 2**16 slots
    WITHDRAWAL = 1  # shardpay.codes: kind <= WITHDRAWAL carries money and claims its id
    DUPLICATE = 8  # shardpay.codes: added to the kind of a duplicate
    CROWDED_STEPS_ = 16
    CROWDED_FLOOR_ = 256

if (WITHDRAWAL, DUPLICATE) != (_WITHDRAWAL, _DUPLICATE):
    raise ImportError("shardpay._claims was built with other kind codes than shardpay.codes")

CROWDED_STEPS = CROWDED_STEPS_
"""A chunk whose probes stepped past their homes more than this many times an id
(over at least :data:`CROWDED_FLOOR` ids) marks the table
:attr:`~ClaimTable.crowded`: its ids met runs of taken slots far longer than
random ids make (chunks of 1,900 random ids at 45-50% load: 1.3 steps an id on
average, 1.65 at most in 880 chunks). The claims then move to the BitMap for
good, whose cost does not depend on the ids' pattern. So ids crafted to share
homes cost at most ~16 steps an id until they crowd the table, not a step per
id of a growing cluster: chunks of 1,900 ids, 9 homes x 40 of them crafted,
took 149 ns an id until the 497th crowded the table (the move included); 9 x
20 took 85 ns an id and never crowded it in 3,000 chunks (random ids: ~40)."""
CROWDED_FLOOR = CROWDED_FLOOR_
"""A chunk of fewer ids is allowed the steps of this many: one random id can
meet a long run by chance (single ids at 27% load: 11 steps at most in 20,000)."""

cdef inline uint32_t home(uint32_t tx, int bits) nogil:
    """The slot where ``tx``'s probe starts: Fibonacci hashing, mod 2**32 by the u32 type."""
    return <uint32_t>(tx * <uint32_t>2654435769) >> (32 - bits)  # 2**32 / golden ratio, odd


cdef class ClaimTable:
    """Claimed tx ids (u32) in an open-addressing table, claimed a chunk at a time.

    Args and attributes as the pure twin's :class:`shardpay._claims_py.ClaimTable`
    (``ids``: ids claimed before, any order; ``table``, ``bits``, ``count``,
    ``zero``), but for ``crowded``: set once a :meth:`claim` stepped past its
    ids' homes more than :data:`CROWDED_STEPS` times an id.
    """

    cdef readonly object table
    cdef readonly int bits
    cdef readonly Py_ssize_t count
    cdef readonly bint zero
    cdef readonly bint crowded
    cdef uint32_t[::1] slots  # the table's memory

    def __init__(self, ids=()):
        self.bits = FIRST_BITS
        self.table = np.zeros(1 << self.bits, np.uint32)
        self.slots = self.table
        self.count = 0
        self.zero = False
        self.crowded = False
        start = np.unique(np.array(ids, np.uint32))
        if start.size:
            if start[0] == 0:
                self.zero, start = True, start[1:]
            self._make_room(start.size)
            self._place_all(start)

    def __len__(self):
        """How many ids are claimed."""
        return self.count + self.zero

    def __contains__(self, tx):
        """Whether ``tx`` (an int 0..2**32-1) is claimed; a plain probe, for tests and checks."""
        if tx == 0:
            return self.zero
        cdef uint32_t key = tx
        cdef uint32_t mask = (1 << self.bits) - 1
        cdef uint32_t slot = home(key, self.bits)
        while self.slots[slot] != 0:
            if self.slots[slot] == key:
                return True
            slot = (slot + 1) & mask
        return False

    def ids(self):
        """The claimed ids as a sorted numpy u32 array (``len(self)`` of them)."""
        held = np.sort(self.table[self.table != 0])
        return np.concatenate((np.zeros(1, np.uint32), held)) if self.zero else held

    def claim(self, uint8_t[::1] kinds not None, const uint32_t[::1] txs not None):
        """Claim a chunk's tx ids in line order; mark its duplicates in ``kinds``; return
        how many rows it marked (SPEC "Transactions").

        Args:
            kinds: the chunk's kind codes (contiguous, writable numpy u8, line
                order), changed in place: a deposit or withdrawal (``kind <=
                WITHDRAWAL``) whose id was claimed before, by an earlier chunk
                or an earlier line, gets ``DUPLICATE`` added. Other rows claim
                nothing.
            txs: the chunk's tx ids (contiguous numpy u32, same length and order).

        Raises:
            ValueError: ``kinds`` and ``txs`` differ in length, or are not
                contiguous u8 and u32 (``kinds`` writable).
        """
        cdef Py_ssize_t n = kinds.shape[0]
        if txs.shape[0] != n:
            raise ValueError(f"{n} kinds but {txs.shape[0]} tx ids")
        self._make_room(n)  # at most every row claims a new id
        cdef uint32_t* table = &self.slots[0]
        cdef uint32_t mask = (1 << self.bits) - 1
        cdef int bits = self.bits
        cdef Py_ssize_t i, marked = 0, new = 0, ids = 0, steps = 0
        cdef uint32_t tx, slot
        for i in range(n):
            if kinds[i] > WITHDRAWAL:  # a dispute, resolve or chargeback claims nothing
                continue
            ids += 1
            tx = txs[i]
            if tx == 0:  # 0 marks an empty slot: id 0 is a flag
                if self.zero:
                    kinds[i] += DUPLICATE
                    marked += 1
                else:
                    self.zero = True
                continue
            slot = home(tx, bits)
            while True:
                if table[slot] == tx:  # claimed before: a duplicate
                    kinds[i] += DUPLICATE
                    marked += 1
                    break
                if table[slot] == 0:  # first seen: this row claims it
                    table[slot] = tx
                    new += 1
                    break
                slot = (slot + 1) & mask
                steps += 1
        self.count += new
        if steps > CROWDED_STEPS_ * max(ids, CROWDED_FLOOR_):
            self.crowded = True
        return marked

    cdef int _make_room(self, Py_ssize_t more) except -1:
        """Double the table until ``more`` new ids keep it at most half full; place every id
        again, in the old table's order (the peak is the two tables)."""
        if (self.count + more) * 2 <= (<Py_ssize_t>1) << self.bits:
            return 0
        old = self.table
        while (self.count + more) * 2 > (<Py_ssize_t>1) << self.bits:
            self.bits += 1
        self.table = np.zeros((<Py_ssize_t>1) << self.bits, np.uint32)
        self.slots = self.table
        self.count = 0
        self._place_all(old)
        return 0

    cdef int _place_all(self, const uint32_t[::1] keys) except -1:
        """Put ``keys`` (distinct ids, 0 for none) in the table, which has room for them all."""
        cdef uint32_t* table = &self.slots[0]
        cdef uint32_t mask = (1 << self.bits) - 1
        cdef Py_ssize_t i
        cdef uint32_t tx, slot
        for i in range(keys.shape[0]):
            tx = keys[i]
            if tx == 0:
                continue
            slot = home(tx, self.bits)
            while table[slot] != 0:
                slot = (slot + 1) & mask
            table[slot] = tx
            self.count += 1
        return 0


def mark_duplicates(uint8_t[::1] kinds not None, const uint32_t[::1] txs not None, money, suspects, old):
    """Mark the rows of ids met again, for the BitMap modes: see
    :func:`shardpay._claims_py.mark_duplicates` (same arguments, same marks).

    One pass over the chunk's rows in line order: a deposit or withdrawal
    whose id is a suspect (found by binary search in the suspects, sorted) is
    a duplicate if its id was claimed before the chunk or met on an earlier
    line; else it is the first, and its id is now met.
    """
    cdef const uint8_t[::1] is_money = money.view(np.uint8)
    cdef uint32_t[::1] ids = np.sort(np.fromiter(suspects, np.uint32, len(suspects)))
    cdef uint8_t[::1] met = np.array([tx in old for tx in ids], np.uint8)  # claimed before: met already
    cdef Py_ssize_t n = kinds.shape[0], k = ids.shape[0], i, lo, hi, mid, marked = 0
    cdef uint32_t tx
    for i in range(n):
        if not is_money[i]:
            continue
        tx = txs[i]
        lo, hi = 0, k
        while lo < hi:  # the first suspect >= tx
            mid = (lo + hi) // 2
            if ids[mid] < tx:
                lo = mid + 1
            else:
                hi = mid
        if lo == k or ids[lo] != tx:
            continue  # not a suspect: claimed by this row, once
        if met[lo]:
            kinds[i] += DUPLICATE
            marked += 1
        else:
            met[lo] = 1
    return marked
