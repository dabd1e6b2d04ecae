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
  of a withdrawal is ``not_disputable``): the store, in
  ``_ledger_store.pxi`` (included below: one compiled module);
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
# The store of accepted deposits and withdrawals: _ledger_store.pxi (Store, store_find, store_put)
# ---------------------------------------------------------------------------------------

include "_ledger_store.pxi"


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
        ValueError: not a data frame (tag or length wrong, or a kind, client,
            amount or line out of range), as the pure twin's
            :func:`shardpay._ledger_py.check_frame` lists them; the message
            names the first bad row of the first bad column.
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
