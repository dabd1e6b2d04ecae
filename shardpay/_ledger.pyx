# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The SPEC state machine of one shard, compiled: accounts, stored transactions, rejects.

The compiled twin of :mod:`shardpay._ledger_py`: the same interface, the same
rejects and the same bytes out (:mod:`shardpay.ledger` picks one; the test
suite runs against both). No processes here. The stages before it have
already dropped invalid rows (the decoders) and marked the rows whose tx id
an earlier row claimed (``kind + DUPLICATE``: the sequencer, which owns the
global tx-id claim); a :class:`Ledger` applies every other rule of SPEC
"Accounts" and "Transactions", in file order, to the rows of its clients.

The rules, row by row, as :meth:`Ledger.apply_frame` applies them (the first
check that fires is the row's reason; every check comes before any change)::

    any row        the client's account exists from now on, whatever the outcome
    kind+DUPLICATE duplicate_tx
    locked account account_locked
    deposit        available + held + amount > MAX          overflow
                   available += amount; store (tx, client, amount, SETTLED)
    withdrawal     available < amount                       insufficient_funds  aux = available
                   available -= amount; store (tx, client, amount, WITHDRAWN)
    dispute        tx not stored, or stored for another client  unknown_tx
                   WITHDRAWN                                not_disputable      aux = state
                   DISPUTED or CHARGED_BACK                 already_disputed    aux = state
                   available - amount < MIN or held + amount > MAX  overflow
                   available -= amount, held += amount; DISPUTED
    resolve        unknown_tx as for a dispute
                   not DISPUTED                             not_disputed        aux = state
                   available + amount > MAX                 overflow
                   held -= amount, available += amount; SETTLED
    chargeback     unknown_tx as for a dispute
                   not DISPUTED                             not_disputed        aux = state
                   available + held - amount < MIN          overflow
                   held -= amount; the account locks; CHARGED_BACK

``amount`` of a dispute, resolve or chargeback is the stored deposit's.
MIN and MAX are the signed 64-bit range of 1/10,000 units
(:data:`shardpay.money.MIN_UNITS`, :data:`~shardpay.money.MAX_UNITS`). Every
overflow check is written so that it cannot overflow itself (a bound minus
a positive amount, never a sum past the range): ``available + held`` is a
balance (the total) and stays within the range, so it is computed as is.

Data layout:

* accounts: one C array of 65,536 ``(available, held)`` pairs of int64,
  indexed by client, and one byte of flags a client (exists, locked);
* stored transactions (accepted deposits and withdrawals, so that a dispute
  of a withdrawal is ``not_disputable``): the store, in its own section
  below;
* rejects: 56-byte records ``(line, reason, kind, client, tx, amount, aux)``
  of native int64, appended to a growable C buffer, off the hot path;
  :meth:`Ledger.take_rejects` hands them over as bytes.

A frame's columns are read in place: pointers into the frame's bytes, one
little-endian load a field (``memcpy``, so unaligned and portable). The
whole frame is checked before any row is applied (:func:`check_frame`): a
malformed one raises ``ValueError`` and changes nothing.
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from array import array

from . import codes
from .frames import FRAME_TAG, ROW_BYTES as _ROW_BYTES
from .money import MAX_UNITS, MIN_UNITS

__all__ = ["REJECT_FIELDS", "Ledger", "check_frame"]

cdef enum:
    FIELDS = 7
REJECT_FIELDS = FIELDS
"""A reject record is 7 native int64: line, reason, kind, client, tx, amount, aux."""

# ---------------------------------------------------------------------------------------
# Codes (shardpay.codes, by name) and limits
# ---------------------------------------------------------------------------------------

cdef int DEPOSIT = codes.DEPOSIT
cdef int WITHDRAWAL = codes.WITHDRAWAL
cdef int DISPUTE = codes.DISPUTE
cdef int RESOLVE = codes.RESOLVE
cdef int CHARGEBACK = codes.CHARGEBACK
cdef int DUPLICATE = codes.DUPLICATE
cdef int DUPLICATE_TX = codes.DUPLICATE_TX
cdef int ACCOUNT_LOCKED = codes.ACCOUNT_LOCKED
cdef int INSUFFICIENT_FUNDS = codes.INSUFFICIENT_FUNDS
cdef int UNKNOWN_TX = codes.UNKNOWN_TX
cdef int NOT_DISPUTABLE = codes.NOT_DISPUTABLE
cdef int ALREADY_DISPUTED = codes.ALREADY_DISPUTED
cdef int NOT_DISPUTED = codes.NOT_DISPUTED
cdef int OVERFLOW = codes.OVERFLOW
cdef int SETTLED = codes.SETTLED
cdef int DISPUTED = codes.DISPUTED
cdef int CHARGED_BACK = codes.CHARGED_BACK
cdef int WITHDRAWN = codes.WITHDRAWN
if max(codes.SETTLED, codes.DISPUTED, codes.CHARGED_BACK, codes.WITHDRAWN) > 3:
    raise ImportError("shardpay._ledger stores a state in 2 bits: shardpay.codes has states above 3")

if _ROW_BYTES != ROW_BYTES:
    raise ImportError(f"shardpay._ledger reads frames of {ROW_BYTES} bytes a row; shardpay.frames has {_ROW_BYTES}")

cdef unsigned char TAG = FRAME_TAG[0]
cdef int64_t MAX = MAX_UNITS
cdef int64_t MIN = MIN_UNITS

cdef enum:
    CLIENTS = 65536   # client ids are u16
    EXISTS = 1        # flags of an account
    LOCKED = 2
    HEAD = 5          # a data frame: b"F" | n (u32) | lines u64[n] | kinds u8[n] | clients u32[n] | txs u32[n] | amounts u64[n]
    ROW_BYTES = 25

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Little-endian loads from any address (frames are little-endian on every machine). */
    static inline uint32_t sp_le32(const unsigned char *p) {
        uint32_t v; memcpy(&v, p, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        return v;
    }
    static inline uint64_t sp_le64(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    """
    uint32_t sp_le32(const unsigned char *p) noexcept nogil
    uint64_t sp_le64(const unsigned char *p) noexcept nogil


ctypedef struct Balance:
    int64_t available
    int64_t held


# ---------------------------------------------------------------------------------------
# The store of accepted deposits and withdrawals
# ---------------------------------------------------------------------------------------
#
# A stored transaction is a tx id (u32) and a record (u64) packing its
# client (bits 0-15), its state (bits 16-17) and its amount (bits 18-63):
# 12 bytes. An amount that does not fit 46 bits (or is 0, which no valid row
# has) is stored as AMOUNT_ESCAPE, and the amount itself in the `big` table:
# a record is never 0.
#
# * Rising ids (tx above the largest stored one: the usual file) are
#   appended to two arrays sorted by tx, `tx` and `rec`, grown by realloc
#   (glibc moves large blocks with mremap: capacity not yet written is not
#   resident). A lookup bisects `fence` (every FENCE-th id: 1/16 byte a
#   transaction, small enough to stay in cache), then one block of FENCE ids.
# * Other ids (`sparse` files) go to `side`, an open-addressing table
#   (linear probing, Fibonacci hashing) of tx -> record at most half full,
#   holding between 1/32 and 1/16 of the sorted arrays. When it is full its
#   entries are sorted (radix sort) and merged into the sorted arrays from
#   the back, in place; then a fresh, empty side table is made.
#
# A lookup (`store_find`) returns a pointer to the record (in `rec` or in
# `side`), valid until the next insert.

cdef enum:
    # Ids a fence entry covers: a lookup bisects n / FENCE fence entries, then
    # FENCE ids. 32 and 128 measured within 1% of 64 (profiling/README.md).
    FENCE = 64
    # The side table merges at SIDE_MIN entries, or at 1/SIDE_SHARE to 1/SIDE_SHARE * 2
    # of the sorted arrays if more. Every merge rewrites the sorted arrays, so a
    # larger share merges less often but holds more: on 10M `sparse` rows 16
    # gives 0.92x the apply time and 1.3 bytes more a stored transaction, 64
    # 1.13x and 0.4 bytes less (profiling/README.md).
    SIDE_MIN = 4096
    SIDE_SHARE = 32
    STATE_SHIFT = 16           # a record: client (bits 0-15), state (16-17), amount (18-63)
    AMOUNT_SHIFT = 18

cdef uint64_t AMOUNT_ESCAPE = (<uint64_t>1 << 46) - 1
cdef uint64_t BIG_MARK = <uint64_t>1 << 63   # `big` values: amount | BIG_MARK, never 0


ctypedef struct Table:
    # open addressing: keys[i] is a tx id where values[i] != 0 (0: an empty slot)
    uint32_t *keys
    uint64_t *values
    size_t mask                # slots - 1; slots is a power of two
    int shift                  # 64 - log2(slots): a hash's top bits pick the home slot
    size_t count


ctypedef struct Store:
    uint32_t *tx               # sorted ids, n of them, room for cap
    uint64_t *rec              # their records
    size_t n
    size_t cap
    uint32_t *fence            # tx[0], tx[FENCE], tx[2 * FENCE], ...
    size_t fence_cap
    Table side                 # ids below tx[n - 1] when they were stored
    size_t side_limit          # merge when side holds this many
    Table big                  # tx -> amount | BIG_MARK, for records holding AMOUNT_ESCAPE


cdef inline size_t table_home(const Table *t, uint32_t tx) noexcept nogil:
    return <size_t>((<uint64_t>tx * <uint64_t>0x9E3779B97F4A7C15ULL) >> t.shift)


cdef int table_init(Table *t, size_t slots) except -1:
    """An empty table of ``slots`` (a power of two) slots."""
    cdef int bits = 0
    while (<size_t>1 << bits) < slots:
        bits += 1
    t.keys = <uint32_t *>malloc(slots * sizeof(uint32_t))
    t.values = <uint64_t *>calloc(slots, sizeof(uint64_t))
    if t.keys == NULL or t.values == NULL:
        free(t.keys)
        free(t.values)
        t.keys = NULL
        t.values = NULL
        raise MemoryError()
    t.mask = slots - 1
    t.shift = 64 - bits
    t.count = 0
    return 0


cdef void table_free(Table *t) noexcept nogil:
    free(t.keys)
    free(t.values)
    t.keys = NULL
    t.values = NULL
    t.count = 0


cdef inline uint64_t *table_find(const Table *t, uint32_t tx) noexcept nogil:
    """The value slot of ``tx``, or NULL."""
    cdef size_t i = table_home(t, tx)
    while t.values[i]:
        if t.keys[i] == tx:
            return &t.values[i]
        i = (i + 1) & t.mask
    return NULL


cdef inline uint64_t *table_put(Table *t, uint32_t tx, uint64_t value) noexcept nogil:
    """Insert ``tx`` -> ``value`` (``value`` != 0; the table has room); return its value slot."""
    cdef size_t i = table_home(t, tx)
    while t.values[i]:
        i = (i + 1) & t.mask
    t.keys[i] = tx
    t.values[i] = value
    t.count += 1
    return &t.values[i]


cdef int big_put(Store *s, uint32_t tx, int64_t amount) except -1:
    """Keep ``amount`` of ``tx`` in the big table (doubling it when half full)."""
    cdef Table old
    cdef size_t i
    if s.big.values == NULL:
        table_init(&s.big, 64)
    elif 2 * (s.big.count + 1) > s.big.mask + 1:
        old = s.big
        table_init(&s.big, 2 * (old.mask + 1))
        for i in range(old.mask + 1):
            if old.values[i]:
                table_put(&s.big, old.keys[i], old.values[i])
        table_free(&old)
    table_put(&s.big, tx, <uint64_t>amount | BIG_MARK)
    return 0


cdef inline int64_t rec_amount(const Store *s, uint32_t tx, uint64_t rec) noexcept nogil:
    """The stored amount of the record ``rec`` of ``tx``."""
    cdef uint64_t field = rec >> AMOUNT_SHIFT
    cdef uint64_t *big
    if field != AMOUNT_ESCAPE:
        return <int64_t>field
    big = table_find(&s.big, tx)
    return <int64_t>(big[0] & ~BIG_MARK) if big != NULL else 0


cdef int grow(void **block, size_t *cap, size_t need, size_t item) except -1:
    """Grow ``*block`` (``*cap`` items of ``item`` bytes) to at least ``need`` items, doubling."""
    cdef size_t new_cap = cap[0] * 2 if cap[0] else 1024
    cdef void *p
    while new_cap < need:
        new_cap *= 2
    p = realloc(block[0], new_cap * item)
    if p == NULL:
        raise MemoryError()
    block[0] = p
    cap[0] = new_cap
    return 0


cdef int store_grow(Store *s, size_t need) except -1:
    """Room for ``need`` ids in the sorted arrays."""
    cdef size_t cap = s.cap
    if need <= cap:
        return 0
    grow(<void **>&s.tx, &cap, need, sizeof(uint32_t))
    cap = s.cap
    grow(<void **>&s.rec, &cap, need, sizeof(uint64_t))
    s.cap = cap
    return 0


cdef int store_fence(Store *s, size_t start) except -1:
    """Set the fence entries of ids ``start`` (a multiple of FENCE) to ``n - 1``."""
    cdef size_t need = (s.n + FENCE - 1) // FENCE
    cdef size_t k
    if need > s.fence_cap:
        grow(<void **>&s.fence, &s.fence_cap, need, sizeof(uint32_t))
    for k in range(start // FENCE, need):
        s.fence[k] = s.tx[k * FENCE]
    return 0


cdef int store_side_reset(Store *s) except -1:
    """A fresh, empty side table for the sorted arrays' present size."""
    cdef size_t target = s.n // SIDE_SHARE
    cdef size_t slots = 2 * SIDE_MIN
    if target < SIDE_MIN:
        target = SIDE_MIN
    while slots < 2 * target:
        slots *= 2
    table_free(&s.side)
    table_init(&s.side, slots)
    s.side_limit = slots // 2
    return 0


cdef inline uint64_t *store_find(const Store *s, uint32_t tx) noexcept nogil:
    """The record of stored ``tx``, or NULL: the side table, then fence and block."""
    cdef size_t n = s.n, lo, hi, mid
    cdef uint64_t *found
    if s.side.count:
        found = table_find(&s.side, tx)
        if found != NULL:
            return found
    if n == 0 or tx > s.tx[n - 1] or tx < s.tx[0]:
        return NULL
    lo = 0  # the last fence entry <= tx: fence[lo] <= tx < fence[hi]
    hi = (n + FENCE - 1) // FENCE
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if s.fence[mid] <= tx:
            lo = mid
        else:
            hi = mid
    lo *= FENCE  # then the first id >= tx in its block
    hi = lo + FENCE if lo + FENCE < n else n
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.tx[mid] < tx:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and s.tx[lo] == tx:
        return &s.rec[lo]
    return NULL


cdef int store_put(Store *s, uint32_t tx, int client, int state, int64_t amount) except -1:
    """Store an accepted deposit or withdrawal (``tx`` not stored yet)."""
    cdef uint64_t field = <uint64_t>amount
    cdef uint64_t rec
    cdef size_t n = s.n
    if field == 0 or field >= AMOUNT_ESCAPE:
        field = AMOUNT_ESCAPE
        big_put(s, tx, amount)
    rec = field << AMOUNT_SHIFT | <uint64_t>state << STATE_SHIFT | <uint64_t>client
    if n == 0 or tx > s.tx[n - 1]:
        if n == s.cap:
            store_grow(s, n + 1)
        s.tx[n] = tx
        s.rec[n] = rec
        s.n = n + 1
        if n % FENCE == 0:
            store_fence(s, n)
        return 0
    if s.side.values == NULL:
        store_side_reset(s)
    table_put(&s.side, tx, rec)
    if s.side.count >= s.side_limit:
        store_merge(s)
    return 0


cdef void radix_sort(uint32_t *tx, uint64_t *rec, uint32_t *tx_tmp, uint64_t *rec_tmp, size_t m) noexcept nogil:
    """Sort ``m`` (tx, rec) pairs by tx: four stable passes of 8 bits; the result ends in ``tx``/``rec``."""
    cdef size_t counts[256]
    cdef size_t i, total, c
    cdef int shift
    cdef uint32_t *src_tx = tx
    cdef uint64_t *src_rec = rec
    cdef uint32_t *dst_tx = tx_tmp
    cdef uint64_t *dst_rec = rec_tmp
    cdef uint32_t *swap_tx
    cdef uint64_t *swap_rec
    for shift in range(0, 32, 8):
        memset(counts, 0, sizeof(counts))
        for i in range(m):
            counts[(src_tx[i] >> shift) & 255] += 1
        total = 0
        for i in range(256):
            c = counts[i]
            counts[i] = total
            total += c
        for i in range(m):
            c = counts[(src_tx[i] >> shift) & 255]
            counts[(src_tx[i] >> shift) & 255] = c + 1
            dst_tx[c] = src_tx[i]
            dst_rec[c] = src_rec[i]
        swap_tx = src_tx
        src_tx = dst_tx
        dst_tx = swap_tx
        swap_rec = src_rec
        src_rec = dst_rec
        dst_rec = swap_rec
    # four passes: the sorted pairs are back in tx/rec


cdef int store_merge(Store *s) except -1:
    """Move the side table's entries into the sorted arrays; leave an empty side table."""
    cdef size_t m = s.side.count, i, j, k, first
    store_grow(s, s.n + m)
    cdef uint32_t *side_tx = <uint32_t *>malloc(2 * m * sizeof(uint32_t) + 1)
    cdef uint64_t *side_rec = <uint64_t *>malloc(2 * m * sizeof(uint64_t) + 1)
    if side_tx == NULL or side_rec == NULL:
        free(side_tx)
        free(side_rec)
        raise MemoryError()
    j = 0
    for i in range(s.side.mask + 1):
        if s.side.values[i]:
            side_tx[j] = s.side.keys[i]
            side_rec[j] = s.side.values[i]
            j += 1
    table_free(&s.side)
    radix_sort(side_tx, side_rec, side_tx + m, side_rec + m, m)
    # from the back: the largest of the two remaining goes to the last free place
    i = s.n
    j = m
    k = s.n + m
    while j:
        k -= 1
        if i and s.tx[i - 1] > side_tx[j - 1]:
            i -= 1
            s.tx[k] = s.tx[i]
            s.rec[k] = s.rec[i]
        else:
            j -= 1
            s.tx[k] = side_tx[j]
            s.rec[k] = side_rec[j]
    first = k - k % FENCE  # fence entries from the first moved id on
    s.n += m
    free(side_tx)
    free(side_rec)
    store_fence(s, first)
    store_side_reset(s)
    return 0


cdef void store_free(Store *s) noexcept nogil:
    free(s.tx)
    free(s.rec)
    free(s.fence)
    table_free(&s.side)
    table_free(&s.big)
    memset(s, 0, sizeof(Store))


# ---------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------

def check_frame(frame not None) -> int:
    """Check a data frame whole (:mod:`shardpay.frames`); return its row count.

    Args:
        frame: the frame's bytes (any contiguous buffer).

    Returns:
        n, the rows it carries.

    Raises:
        ValueError: not a data frame: tag or length wrong, or a row whose kind
            is not a kind code (``DEPOSIT``..``CHARGEBACK``, ``DUPLICATE`` +
            ``DEPOSIT``/``WITHDRAWAL``), whose client is above 65535, or
            whose amount or line is above 2**63 - 1. Checked column by
            column (kinds, clients, amounts, lines); the message names the
            first bad row of the first bad column.
    """
    return checked_rows(frame)


cdef Py_ssize_t checked_rows(const unsigned char[::1] frame) except -1:
    """:func:`check_frame` on a typed view."""
    cdef size_t size = frame.shape[0], n, i
    cdef const unsigned char *p
    cdef const unsigned char *col
    cdef uint32_t kind, client
    cdef uint64_t value
    if size < HEAD or frame[0] != TAG:
        raise ValueError("not a shard frame: bad tag or header")
    p = &frame[0]
    n = sp_le32(p + 1)
    if <uint64_t>size != <uint64_t>HEAD + <uint64_t>n * ROW_BYTES:
        raise ValueError(f"not a shard frame: {size} bytes for {n} rows")
    col = p + HEAD + 8 * n
    for i in range(n):
        kind = col[i]
        if kind > <uint32_t>CHARGEBACK and kind != <uint32_t>(DUPLICATE + DEPOSIT) \
                and kind != <uint32_t>(DUPLICATE + WITHDRAWAL):
            raise ValueError(f"not a shard frame: row {i} has kind code {kind}")
    col = p + HEAD + 9 * n
    for i in range(n):
        client = sp_le32(col + 4 * i)
        if client >= CLIENTS:
            raise ValueError(f"not a shard frame: row {i} has client {client}, above 65535")
    col = p + HEAD + 17 * n
    for i in range(n):
        value = sp_le64(col + 8 * i)
        if value >> 63:
            raise ValueError(f"not a shard frame: row {i} has amount {value}, above 2**63 - 1")
    col = p + HEAD
    for i in range(n):
        value = sp_le64(col + 8 * i)
        if value >> 63:
            raise ValueError(f"not a shard frame: row {i} has line {value}, above 2**63 - 1")
    return n


# ---------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------

cdef class Ledger:
    """Accounts and stored transactions of one shard (SPEC "Accounts", "Transactions").

    Attributes:
        applied: rows applied so far (accepted or rejected).
    """

    cdef Balance *balances     # by client
    cdef uint8_t *flags        # by client: EXISTS | LOCKED
    cdef Store store
    cdef int64_t *rejects      # FIELDS int64 a record
    cdef size_t n_rejects
    cdef size_t rejects_cap    # records
    cdef readonly int64_t applied

    def __cinit__(self):
        self.balances = <Balance *>calloc(CLIENTS, sizeof(Balance))
        self.flags = <uint8_t *>calloc(CLIENTS, 1)
        if self.balances == NULL or self.flags == NULL:
            raise MemoryError()
        memset(&self.store, 0, sizeof(Store))

    def __dealloc__(self):
        free(self.balances)
        free(self.flags)
        free(self.rejects)
        store_free(&self.store)

    cdef int reject(self, const unsigned char *lines, size_t i, int reason, int kind, uint32_t client,
                    uint32_t tx, int64_t amount, int64_t aux) except -1:
        """Append the reject record of row ``i``."""
        cdef int64_t *r
        if self.n_rejects == self.rejects_cap:
            grow(<void **>&self.rejects, &self.rejects_cap, self.n_rejects + 1, FIELDS * sizeof(int64_t))
        r = self.rejects + FIELDS * self.n_rejects
        r[0] = <int64_t>sp_le64(lines + 8 * i)
        r[1] = reason
        r[2] = kind
        r[3] = client
        r[4] = tx
        r[5] = amount
        r[6] = aux
        self.n_rejects += 1
        return 0

    def apply_frame(self, frame not None) -> int:
        """Apply a data frame's rows in order (SPEC "Transactions"; the table atop this module).

        Args:
            frame: a data frame (:mod:`shardpay.frames`): ``bytes`` or any
                contiguous buffer, read in place.

        Returns:
            The number of rows of the frame rejected.

        Raises:
            ValueError: the frame is malformed (:func:`check_frame`); no row is applied.
        """
        cdef const unsigned char[::1] buf = frame
        cdef size_t n = checked_rows(buf), i
        if n == 0:
            return 0
        cdef const unsigned char *p = &buf[0]
        cdef const unsigned char *lines = p + HEAD
        cdef const unsigned char *kinds = lines + 8 * n
        cdef const unsigned char *clients = kinds + n
        cdef const unsigned char *txs = clients + 4 * n
        cdef const unsigned char *amounts = txs + 4 * n
        cdef size_t before = self.n_rejects
        cdef Balance *b
        cdef uint8_t *flag
        cdef uint64_t *found
        cdef uint64_t rec
        cdef int kind, state
        cdef uint32_t c, tx
        cdef int64_t amt, a
        for i in range(n):
            kind = kinds[i]
            c = sp_le32(clients + 4 * i)
            tx = sp_le32(txs + 4 * i)
            amt = <int64_t>sp_le64(amounts + 8 * i)
            b = &self.balances[c]
            flag = &self.flags[c]
            flag[0] |= EXISTS
            if kind >= DUPLICATE:
                self.reject(lines, i, DUPLICATE_TX, kind - DUPLICATE, c, tx, amt, 0)
                continue
            if flag[0] & LOCKED:
                self.reject(lines, i, ACCOUNT_LOCKED, kind, c, tx, amt, 0)
                continue
            if kind == DEPOSIT:
                if b.available + b.held > MAX - amt:
                    self.reject(lines, i, OVERFLOW, kind, c, tx, amt, 0)
                    continue
                b.available += amt
                store_put(&self.store, tx, c, SETTLED, amt)
                continue
            if kind == WITHDRAWAL:
                if b.available < amt:
                    self.reject(lines, i, INSUFFICIENT_FUNDS, kind, c, tx, amt, b.available)
                    continue
                b.available -= amt
                store_put(&self.store, tx, c, WITHDRAWN, amt)
                continue
            # dispute, resolve, chargeback: the stored transaction they name
            found = store_find(&self.store, tx)
            if found == NULL or (found[0] & 0xFFFF) != c:
                self.reject(lines, i, UNKNOWN_TX, kind, c, tx, 0, 0)
                continue
            rec = found[0]
            state = (rec >> STATE_SHIFT) & 3
            amt = rec_amount(&self.store, tx, rec)
            if kind == DISPUTE:
                if state != SETTLED:
                    self.reject(lines, i, NOT_DISPUTABLE if state == WITHDRAWN else ALREADY_DISPUTED,
                                kind, c, tx, 0, state)
                    continue
                if b.available < MIN + amt or b.held > MAX - amt:
                    self.reject(lines, i, OVERFLOW, kind, c, tx, 0, 0)
                    continue
                b.available -= amt
                b.held += amt
                state = DISPUTED
            else:
                if state != DISPUTED:
                    self.reject(lines, i, NOT_DISPUTED, kind, c, tx, 0, state)
                    continue
                if kind == RESOLVE:
                    if b.available > MAX - amt:
                        self.reject(lines, i, OVERFLOW, kind, c, tx, 0, 0)
                        continue
                    b.available += amt
                    state = SETTLED
                else:  # chargeback: the total falls, the account locks
                    if b.available + b.held < MIN + amt:
                        self.reject(lines, i, OVERFLOW, kind, c, tx, 0, 0)
                        continue
                    flag[0] |= LOCKED
                    state = CHARGED_BACK
                b.held -= amt
            found[0] = (rec & ~(<uint64_t>3 << STATE_SHIFT)) | (<uint64_t>state << STATE_SHIFT)
        self.applied += n
        return self.n_rejects - before

    def take_rejects(self) -> bytes:
        """The rejects held, in line order, as raw records (:data:`REJECT_FIELDS`
        native-order int64 each); they are released."""
        data = PyBytes_FromStringAndSize(<char *>self.rejects, self.n_rejects * FIELDS * sizeof(int64_t))
        self.n_rejects = 0
        return data

    def rejects_held(self) -> int:
        """How many rejects :meth:`take_rejects` would return now."""
        return self.n_rejects

    def stored(self) -> int:
        """Number of stored transactions (accepted deposits and withdrawals)."""
        return self.store.n + self.store.side.count

    def account(self, client) -> tuple | None:
        """``(available, held, locked)`` of ``client`` (amounts in 1/10,000 units), or None
        if no row has named it yet (or it is not a client id, 0..65535)."""
        if not 0 <= client < CLIENTS:
            return None
        cdef uint32_t c = client
        if not self.flags[c] & EXISTS:
            return None
        return self.balances[c].available, self.balances[c].held, bool(self.flags[c] & LOCKED)

    def snapshot(self) -> tuple:
        """The shard's accounts, sorted by client (SPEC "Output").

        Returns:
            ``(clients u16, available i64, held i64, locked bytes)``, one
            element per account (``array`` but ``locked``), amounts in
            1/10,000 units.
        """
        cdef size_t m = 0, c
        for c in range(<size_t>CLIENTS):
            if self.flags[c] & EXISTS:
                m += 1
        clients = PyBytes_FromStringAndSize(NULL, m * sizeof(uint16_t))
        available = PyBytes_FromStringAndSize(NULL, m * sizeof(int64_t))
        held = PyBytes_FromStringAndSize(NULL, m * sizeof(int64_t))
        locked = PyBytes_FromStringAndSize(NULL, m)
        cdef uint16_t *cl = <uint16_t *>PyBytes_AS_STRING(clients)
        cdef int64_t *av = <int64_t *>PyBytes_AS_STRING(available)
        cdef int64_t *hd = <int64_t *>PyBytes_AS_STRING(held)
        cdef char *lk = PyBytes_AS_STRING(locked)
        cdef size_t j = 0
        for c in range(<size_t>CLIENTS):
            if self.flags[c] & EXISTS:
                cl[j] = <uint16_t>c
                av[j] = self.balances[c].available
                hd[j] = self.balances[c].held
                lk[j] = 1 if self.flags[c] & LOCKED else 0
                j += 1
        return array("H", clients), array("q", available), array("q", held), locked
