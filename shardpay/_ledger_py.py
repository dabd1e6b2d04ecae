"""The SPEC state machine of one shard in pure Python: accounts, stored deposits, rejects.

The pure twin of the compiled :mod:`shardpay._ledger` (whose module docstring
has the rules as one table): the same interface, the same rejects, the same
bytes out; the fallback where the extension is not built, and
``SHARDPAY_LEDGER=python`` (:mod:`shardpay.ledger` picks one). A plain module
with no processes in it (SPEC "Accounts", "Transactions"). The stages
before it have already dropped invalid rows (the decoders) and marked
``duplicate_tx`` rows (the sequencer, which owns the global tx-id claim); a
:class:`Ledger` applies every other rule, in file order, to the rows of the
clients it owns.

Data layout, chosen for speed and compactness (client ids are u16):

* balances: two ``array('q')`` of 65,536 signed 64-bit ints indexed by
  client (``available``, ``held``); ``locked`` and ``exists`` are
  bytearrays of 65,536 flags. An array, not a list of ints: a list's slot
  points to an int object somewhere on the heap (two cache misses for a
  random client), an array holds the value itself (one). Measured 7-10%
  less apply time (``profiling/README.md``), although every store goes
  through ``PyArg_Parse``. Every stored balance is within int64: the SPEC
  overflow checks run before the store (an array would raise
  ``OverflowError``, never wrap).
  ``max_held`` bounds every held balance from above (it only rises, with
  disputes), so a deposit reads ``held[c]`` for its overflow check only when
  available passes ``MAX_UNITS - max_held``: never in ordinary files, every
  time after a dispute of an amount near the maximum (still correct, slower).
* stored transactions (accepted deposits, and accepted withdrawals so a
  dispute of one is ``not_disputable``): rising tx ids, the usual case, go to
  four parallel arrays (tx u32, amount u64, client u32, state u8: 17 bytes
  a transaction plus array slack; amounts of stored transactions are always
  positive, and the unsigned typecodes store without ``PyArg_Parse``),
  plus every :data:`STRIDE`-th id in a list (~1.3 bytes a transaction). A
  lookup bisects that list, then :data:`STRIDE` ids of the array.
* a tx id lower than the last stored one (out of order: ``sparse`` files)
  is stored by slot (insertion order) in three arrays (amount u64, client
  u32, state u8) and indexed in open-addressing hash tables: u64 arrays of
  keys ``tx << 32 | slot + 1`` (0: empty), home position
  ``tx * TABLE_MIX % size`` (sizes are the primes of :data:`TABLE_SIZES`),
  linear probing. A table takes keys up to :data:`TABLE_LOAD` of its size;
  then a new table of about twice the size takes the next ones, and the
  full ones are only read (no rehash). A lookup probes the newest table
  first, where recent transactions are, the ones disputes name. 13 bytes a
  transaction plus 12.8-25.6 bytes of table (the newest table is between
  empty and full): 27-39 bytes in all, measured. When this store holds most
  transactions, lookups try it first. (Measured against the alternatives in
  ``profiling/README.md``: sorted buckets chosen by the id's low 16 bits,
  ``bisect`` and ``insert`` (~22 bytes a transaction), took 1.28-1.48x
  these tables' apply time on ``sparse``; a dict (~115 bytes) 1.09x; sorted
  runs merged LSM-style cost more time in sorting and merging than they save.)
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import chain

from .codes import (
    ACCOUNT_LOCKED,
    ALREADY_DISPUTED,
    CHARGEBACK,
    CHARGED_BACK,
    DEPOSIT,
    DISPUTE,
    DISPUTED,
    DUPLICATE,
    DUPLICATE_TX,
    INSUFFICIENT_FUNDS,
    NOT_DISPUTABLE,
    NOT_DISPUTED,
    OVERFLOW,
    REASONS,
    RESOLVE,
    SETTLED,
    UNKNOWN_TX,
    WITHDRAWAL,
    WITHDRAWN,
)
from .frames import FRAME_TAG, U64, unpack_frame
from .money import MAX_UNITS, MIN_UNITS

__all__ = ["REJECT_FIELDS", "Ledger", "check_frame"]

STRIDE = 32
"""Every STRIDE-th rising id is kept in a list too: a lookup bisects that list
(cheap probes), then STRIDE ids of the array (each probe there makes an int)."""
TABLE_SIZES = (
    8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573, 2097143, 4194301,
    8388593, 16777213, 33554393, 67108859, 134217689, 268435399, 536870909,
    1073741789, 2147483647, 4294967291,
)
"""Sizes of the out-of-order store's hash tables, in order: the largest prime below
each power of two from 2**13 to 2**32. A prime size spreads ids that share
their low bits (multiples of 2**16, say) over the whole table."""
TABLE_MIX = 40503
"""Multiplier of a tx id before ``% size`` (2**16 / golden ratio): consecutive ids
(a second rising source, an old batch replayed) land far apart instead of in one
run of slots that every miss, and every random id homed inside it, would have
to scan to its end (the longest run of 5/8-full tables stays under 10 slots for
consecutive, interleaved and stride-7 ids). A 16-bit multiplier keeps the
product small: ~17 ns a hash, against ~26 for a 32-bit one. A literal in the hot
loop of :meth:`Ledger.apply`."""
TABLE_LOAD = 5, 8
"""A table takes keys up to 5/8 of its size (then a new one is made): measured
against 1/2 and 3/4 on ``sparse`` (``profiling/README.md``). Linear probing
then averages under 2 probes an insert, for random ids and, through
:data:`TABLE_MIX`, for runs of consecutive ones."""

REJECT_FIELDS = 7
"""A reject is a tuple of 7 ints: line, reason, kind, client, tx, amount, aux (see :meth:`Ledger.apply`)."""

_KIND_CODES = bytes([DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK, DUPLICATE + DEPOSIT, DUPLICATE + WITHDRAWAL])
_BELOW_128 = bytes(range(128))


def check_frame(frame: bytes) -> int:
    """Check a data frame whole (:mod:`shardpay.frames`); return its row count.

    Byte operations on the raw columns (no int made a row), so the check
    costs a few ns a row.

    Raises:
        ValueError: not a data frame: tag or length wrong, or a row whose kind
            is not a kind code (``DEPOSIT``..``CHARGEBACK``, ``DUPLICATE`` +
            ``DEPOSIT``/``WITHDRAWAL``), whose client is above 65535, or
            whose amount or line is above 2**63 - 1. Checked column by
            column (kinds, clients, amounts, lines); the message names the
            first bad row of the first bad column.
    """
    frame = bytes(frame)
    if len(frame) < 5 or frame[:1] != FRAME_TAG:
        raise ValueError("not a shard frame: bad tag or header")
    n = int.from_bytes(frame[1:5], "little")
    if len(frame) != 5 + 25 * n:
        raise ValueError(f"not a shard frame: {len(frame)} bytes for {n} rows")
    lines, kinds, clients, amounts = 5, 5 + 8 * n, 5 + 9 * n, 5 + 17 * n
    column = frame[kinds : kinds + n]
    if bad := column.translate(None, _KIND_CODES):
        i = column.index(bad[:1])  # every byte of that value is bad: its first is the first bad row
        raise ValueError(f"not a shard frame: row {i} has kind code {bad[0]}")
    high = [frame[clients + k : clients + 4 * n : 4] for k in (2, 3)]  # a client's two high bytes
    if any(b.strip(b"\0") for b in high):
        i = min(n - len(b.lstrip(b"\0")) for b in high)
        client = int.from_bytes(frame[clients + 4 * i : clients + 4 * i + 4], "little")
        raise ValueError(f"not a shard frame: row {i} has client {client}, above 65535")
    for start, name in ((amounts, "amount"), (lines, "line")):
        top = frame[start + 7 : start + 8 * n : 8]  # an i64's top byte: below 128
        if bad := top.translate(None, _BELOW_128):
            i = top.index(bad[:1])
            value = int.from_bytes(frame[start + 8 * i : start + 8 * i + 8], "little")
            raise ValueError(f"not a shard frame: row {i} has {name} {value}, above 2**63 - 1")
    return n


class Ledger:
    """Accounts and stored transactions of one shard (SPEC "Accounts", "Transactions").

    Rejects are appended to :attr:`rejects`, a list of tuples of
    :data:`REJECT_FIELDS` ints: ``(line, reason, kind, client, tx, amount,
    aux)`` where ``reason`` indexes :data:`REASONS` and ``aux`` is the
    available balance for ``insufficient_funds``, the stored state for
    ``already_disputed``/``not_disputed``, else 0.
    """

    def __init__(self) -> None:
        self.available = array("q", bytes(8 * 65536))
        self.held = array("q", bytes(8 * 65536))
        self.locked = bytearray(65536)
        self.exists = bytearray(65536)
        # rising tx ids: parallel arrays
        self.tx_ids = array("I")
        self.amounts = array(U64)
        self.clients = array("I")
        self.starts: list[int] = []  # tx_ids[::STRIDE], to bisect a list first (no int made per probe)
        self.states = bytearray()
        # out-of-order tx ids: amount, client and state by slot (insertion
        # order), and hash tables of keys tx << 32 | slot + 1, newest last;
        # only the newest takes keys, up to o_cap of them (it holds o_fill)
        self.o_amounts = array(U64)
        self.o_clients = array("I")
        self.o_states = bytearray()
        self.tables: list[array] = []
        self.o_fill = 0
        self.o_cap = 0
        self.rejects: list[tuple[int, int, int, int, int, int, int]] = []
        self.applied = 0
        self.max_held = 0  # an upper bound of every held balance (held grows only by disputes)

    def stored(self) -> int:
        """Number of stored transactions (accepted deposits and withdrawals)."""
        return len(self.tx_ids) + len(self.o_states)

    def apply(self, lines, kinds, clients, txs, amounts) -> int:
        """Apply rows in file order (SPEC "Transactions" table).

        Args:
            lines, kinds, clients, txs, amounts: equal-length sequences of
                ints (``kinds`` may be ``bytes``, as frames carry it), one
                element per row: physical line number, kind code
                (``shardpay.decode.DEPOSIT``..``CHARGEBACK``, plus
                :data:`DUPLICATE` for a deposit/withdrawal whose tx id was
                already claimed), client id, tx id, amount in 1/10,000 units
                (0 for dispute, resolve, chargeback).

        Returns:
            The number of rows rejected by this call.
        """
        available, held, locked, exists = self.available, self.held, self.locked, self.exists
        tx_ids, st_amounts, st_clients, states = self.tx_ids, self.amounts, self.clients, self.states
        starts, n_old = self.starts, len(self.tx_ids)
        others_first = len(self.o_states) > n_old
        tables = self.tables
        table = tables[-1] if tables else None
        size, fill, cap = len(table or ()), self.o_fill, self.o_cap
        o_amounts, o_clients, o_states = self.o_amounts, self.o_clients, self.o_states
        o_add_amount, o_add_client, o_add_state = o_amounts.append, o_clients.append, o_states.append
        max_units, min_units = MAX_UNITS, MIN_UNITS
        rejects = self.rejects
        reject = rejects.append
        before = len(rejects)
        # This call's new stored transactions go to plain lists first (cheap
        # appends, cheap bisect) and into the compact arrays once, at the end.
        new_ids: list[int] = []
        new_amounts: list[int] = []
        new_clients: list[int] = []
        new_states = bytearray()
        add_id, add_amount, add_client, add_state = (
            new_ids.append, new_amounts.append, new_clients.append, new_states.append,
        )
        max_held = self.max_held
        # A deposit leaving available at or below the headroom cannot push a
        # total past the maximum, so held[c] is read only above it: measured
        # 7-12% less apply time on the 10M file (a random load saved a deposit).
        headroom = max_units - max_held
        last_old = tx_ids[-1] if tx_ids else -1
        last_tx = last_old
        for line, kind, c, tx, amt in zip(lines, kinds, clients, txs, amounts):
            exists[c] = 1
            if kind >= DUPLICATE or locked[c]:
                if kind >= DUPLICATE:
                    reject((line, DUPLICATE_TX, kind - DUPLICATE, c, tx, amt, 0))
                else:
                    reject((line, ACCOUNT_LOCKED, kind, c, tx, amt, 0))
                continue
            if kind == DEPOSIT:
                a = available[c] + amt
                if a > headroom and a + held[c] > max_units:
                    reject((line, OVERFLOW, kind, c, tx, amt, 0))
                    continue
                available[c] = a
                state = SETTLED
            elif kind == WITHDRAWAL:
                a = available[c]
                if a < amt:
                    reject((line, INSUFFICIENT_FUNDS, kind, c, tx, amt, a))
                    continue
                available[c] = a - amt
                state = WITHDRAWN
            if kind <= WITHDRAWAL:  # store the accepted deposit or withdrawal
                if tx > last_tx:
                    add_id(tx)
                    add_amount(amt)
                    add_client(c)
                    add_state(state)
                    last_tx = tx
                else:  # out of order: payload in the slot arrays, key in the newest table
                    if fill >= cap:
                        table, cap = self._new_table()
                        size, fill = len(table), 0
                    h = tx * 40503 % size  # TABLE_MIX
                    while table[h]:
                        h += 1
                        if h == size:
                            h = 0
                    table[h] = tx << 32 | len(o_states) + 1
                    fill += 1
                    o_add_amount(amt)
                    o_add_client(c)
                    o_add_state(state)
                continue
            # dispute, resolve, chargeback: find the stored tx (in the
            # out-of-order store first when it holds most transactions)
            slot = -1
            if others_first:  # the newest table here, the older ones in _find
                h = tx * 40503 % size  # TABLE_MIX
                while k := table[h]:
                    if k >> 32 == tx:
                        slot = (k & 0xFFFFFFFF) - 1
                        break
                    h += 1
                    if h == size:
                        h = 0
                else:
                    if len(tables) > 1:
                        slot = self._find(tx, tables[-2::-1])
            if slot < 0:
                if tx > last_old:  # stored by this call, or unknown
                    ids, amts, cls, sts = new_ids, new_amounts, new_clients, new_states
                    i = bisect_left(ids, tx)
                else:  # a list of every STRIDE-th id, then STRIDE ids of the array
                    ids, amts, cls, sts = tx_ids, st_amounts, st_clients, states
                    lo = (bisect_right(starts, tx) - 1) * STRIDE
                    if lo < 0:
                        lo = 0
                    hi = lo + STRIDE
                    i = bisect_left(ids, tx, lo, hi if hi < n_old else n_old)
                if i == len(ids) or ids[i] != tx:
                    if others_first or (slot := self._find(tx, tables[::-1])) < 0:
                        reject((line, UNKNOWN_TX, kind, c, tx, 0, 0))
                        continue
            if slot >= 0:
                i = slot
                amts, cls, sts = o_amounts, o_clients, o_states
            if cls[i] != c:
                reject((line, UNKNOWN_TX, kind, c, tx, 0, 0))
                continue
            st = sts[i]
            stored_amt = amts[i]
            if kind == DISPUTE:
                if st != SETTLED:
                    reason = NOT_DISPUTABLE if st == WITHDRAWN else ALREADY_DISPUTED
                    reject((line, reason, kind, c, tx, 0, st))
                    continue
                a = available[c] - stored_amt
                h = held[c] + stored_amt
                if a < min_units or h > max_units:
                    reject((line, OVERFLOW, kind, c, tx, 0, 0))
                    continue
                available[c] = a
                held[c] = h
                if h > max_held:
                    max_held = h
                    headroom = max_units - h
                st = DISPUTED
            else:
                if st != DISPUTED:
                    reject((line, NOT_DISPUTED, kind, c, tx, 0, st))
                    continue
                h = held[c] - stored_amt
                if kind == RESOLVE:
                    a = available[c] + stored_amt
                    if a > max_units:
                        reject((line, OVERFLOW, kind, c, tx, 0, 0))
                        continue
                    available[c] = a
                    st = SETTLED
                else:  # CHARGEBACK: total falls, the account locks
                    if available[c] + h < min_units:
                        reject((line, OVERFLOW, kind, c, tx, 0, 0))
                        continue
                    locked[c] = 1
                    st = CHARGED_BACK
                held[c] = h
            sts[i] = st
        self.max_held = max_held
        self.o_fill = fill
        if new_ids:
            tx_ids.extend(new_ids)
            starts.extend(tx_ids[len(starts) * STRIDE :: STRIDE])
            st_amounts.extend(new_amounts)
            st_clients.extend(new_clients)
            states.extend(new_states)
        self.applied += len(lines)
        return len(rejects) - before

    def _new_table(self) -> tuple[array, int]:
        """Start the next out-of-order hash table (:data:`TABLE_SIZES`); return it and its key limit."""
        size = TABLE_SIZES[len(self.tables)]
        table = array(U64, [0]) * size  # not from bytes: no second copy at the peak
        self.tables.append(table)
        self.o_cap = size * TABLE_LOAD[0] // TABLE_LOAD[1]
        return table, self.o_cap

    @staticmethod
    def _find(tx: int, tables: list[array]) -> int:
        """The slot of out-of-order ``tx`` in the first of ``tables`` (u64 hash tables) that holds it, or -1."""
        for table in tables:
            size = len(table)
            h = tx * TABLE_MIX % size
            while k := table[h]:
                if k >> 32 == tx:
                    return (k & 0xFFFFFFFF) - 1
                h += 1
                if h == size:
                    h = 0
        return -1

    def apply_frame(self, frame: bytes) -> int:
        """Apply a data frame's rows (:mod:`shardpay.frames`); return how many it rejected.

        Raises:
            ValueError: the frame is malformed (:func:`check_frame`); no row is applied.
        """
        check_frame(frame)
        return self.apply(*unpack_frame(frame))

    def take_rejects(self) -> bytes:
        """The rejects held, in line order, as raw records (:data:`REJECT_FIELDS`
        native-order i64 each); they are released."""
        records = array("q", chain.from_iterable(self.rejects))
        self.rejects = []
        return records.tobytes()

    def rejects_held(self) -> int:
        """How many rejects :meth:`take_rejects` would return now."""
        return len(self.rejects)

    def account(self, client: int) -> tuple[int, int, bool] | None:
        """``(available, held, locked)`` of ``client`` (amounts in 1/10,000 units), or None
        if no row has named it yet (or it is not a client id, 0..65535)."""
        if not 0 <= client < 65536 or not self.exists[client]:
            return None
        return self.available[client], self.held[client], bool(self.locked[client])

    def snapshot(self) -> tuple[array, array, array, bytes]:
        """The shard's accounts, sorted by client (SPEC "Output").

        Returns:
            ``(clients u16, available i64, held i64, locked bytes)``, one
            element per account, amounts in 1/10,000 units.
        """
        clients = array("H", [c for c in range(65536) if self.exists[c]])
        available, held, locked = self.available, self.held, self.locked
        return (
            clients,
            array("q", [available[c] for c in clients]),
            array("q", [held[c] for c in clients]),
            bytes(locked[c] for c in clients),
        )
