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
  more) and a Python ``set`` 60-90 bytes an id. A :class:`ClaimTable`, an
  open-addressing hash table of u32 ids at 4-8 bytes a slot, claims the
  chunk (compiled: ~40 ns an id, 9.5M random ids; numpy: ~0.11 µs): up to
  :data:`TABLE_CLAIMS` ids, or until crafted ids crowd it; then the ids move
  to the BitMap for good.
* **Spread ids in the BitMap** (late in a file, or after the table): one
  C-level pass of roaring's ``add_checked`` a chunk, stopping only at an id
  met again.

In the BitMap modes only the rows of an id claimed before the chunk, or
repeated inside it, are then visited one by one, in line order
(:func:`mark_duplicates`). The table marks the rows itself.

The table has two twins with one interface and the same results:

* :mod:`shardpay._claims` (``_claims.pyx``, Cython): one pass over the
  chunk's rows in line order, a probe a deposit or withdrawal;
* :mod:`shardpay._claims_py`: numpy, the chunk's ids placed in vector probe
  rounds; the fallback and the readable twin.

``SHARDPAY_CLAIMS=python`` (or ``SHARDPAY_NO_EXTENSIONS`` set) picks the pure
twin, ``SHARDPAY_CLAIMS=compiled`` the compiled one (an ``ImportError`` if it
was not built); unset or empty, the compiled one if it imports, else the pure
one. :data:`CLAIMS` says which.
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from itertools import compress

import numpy as np
from pyroaring import BitMap

from ._claims_py import distinct_ids
from .codes import WITHDRAWAL
from .twins import pick

__all__ = ["CLAIMS", "ENV", "TABLE_CLAIMS", "TABLE_ENTRY", "ClaimTable", "Claims", "distinct_ids",
           "mark_duplicates"]

ENV = "SHARDPAY_CLAIMS"
"""The environment variable that picks the claim table: ``python``, ``compiled``, or unset."""


_twin, CLAIMS = pick("claims", ENV)
ClaimTable = _twin.ClaimTable
"""The claim table of table mode (see :class:`shardpay._claims_py.ClaimTable`).
``CLAIMS`` says which twin runs: ``"compiled"`` or ``"python"``."""
mark_duplicates = _twin.mark_duplicates
"""The marks of the BitMap modes (see :func:`shardpay._claims_py.mark_duplicates`), from the same twin."""

TABLE_CLAIMS = 1 << 25
"""Most tx ids claimed in the table (4 bytes a slot, at most half full: at most
256 MiB, 384 while it doubles the last time). At a chunk with more rows than
the table has room for below it, or once the table is crowded, the ids move
to the BitMap: sorted and bulk, ~28 ns an id and ~260 MiB more for a moment
at 2^25 ids (the sorted ids, their bytes and their ``array``)."""
TABLE_ENTRY = 1 << 16
"""Table mode starts at a spread chunk only if the BitMap then holds at most this many
ids and most of the chunk's ids are not above the largest one claimed (random
ids): a file of rising ids with a stray low id, or with spread chunks later
on, stays in the BitMap."""


class Claims:
    """The set of claimed tx ids of one input, claimed a chunk at a time in line order.

    Attributes:
        claimed: the BitMap of claimed ids (empty while the table holds them).
        table: the :class:`ClaimTable` in table mode, else None.
    """

    def __init__(self) -> None:
        self.claimed = BitMap()
        self.table: ClaimTable | None = None
        self._max_claimed = -1  # the largest id claimed (not kept up in table mode: set on leaving it)
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
            kinds: the chunk's kind codes (numpy u8, contiguous, line order),
                changed in place: a deposit or withdrawal whose id was claimed
                before, by an earlier chunk or an earlier line, gets
                ``DUPLICATE`` added.
            txs: the chunk's tx ids (numpy u32, contiguous, same length and order).
        """
        if self.table is not None:  # table mode: every chunk
            return self._claim_in_table(kinds, txs)
        money = kinds <= WITHDRAWAL
        ids = txs[money]
        if not ids.size:
            return 0
        lo, hi = int(ids.min()), int(ids.max())
        rising = lo > self._max_claimed
        if rising or hi - lo < ids.size << 6:  # rising, or clustered
            new = BitMap(array("I", ids.tobytes()))
            old = set() if rising else set(new & self.claimed)
            suspects = old if len(new) == ids.size else old | distinct_ids(ids)[1]
            self.claimed |= new
        elif (not self._table_done and len(self.claimed) <= TABLE_ENTRY
              and 2 * int((ids <= self._max_claimed).sum()) > ids.size):
            # spread, early in the file, mostly below the largest claim: table mode from now on
            self.table, self.claimed = ClaimTable(self.claimed.to_array()), BitMap()
            return self._claim_in_table(kinds, txs)
        else:  # spread, in the BitMap: claimed as they come
            suspects, old = self._add_checked(ids.tolist())
        marked = mark_duplicates(kinds, txs, money, suspects, old) if suspects else 0
        if hi > self._max_claimed:
            self._max_claimed = hi
        return marked

    def _claim_in_table(self, kinds: np.ndarray, txs: np.ndarray) -> int:
        """Table mode: claim the chunk in :attr:`table`, as :meth:`claim`. Once the
        table is crowded, or if the chunk's rows could take it past
        :data:`TABLE_CLAIMS` ids (then the chunk is claimed in the BitMap), the
        ids move to the BitMap and table mode ends."""
        table = self.table
        full = len(table) + len(txs) > TABLE_CLAIMS  # checked first: the table never doubles past it
        marked = 0 if full else table.claim(kinds, txs)
        if full or table.crowded:
            held = table.ids()
            self.claimed = BitMap(array("I", held.tobytes()))
            self._max_claimed = int(held[-1]) if held.size else -1
            self.table = None
            self._table_done = True  # for good: crafted ids would crowd a new table again
        if full:
            marked = self.claim(kinds, txs)
        return marked

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
