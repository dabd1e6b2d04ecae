# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Ledger reject records to answer lines, compiled: one plain pass writing bytes.

The compiled twin of :mod:`shardpay._render_py`: same interface, same bytes
(a differential test compares them over every reason and extreme values).
Picked by :mod:`shardpay.rejects` unless it failed to build or
``SHARDPAY_RENDER=python``.

:func:`answer_lines` writes each record's ``LINE,REASON,DETAIL`` line into
one C buffer (at most :data:`MAX_LINE` bytes a record), with the wording of
:func:`shardpay._render_py.detail` spelled out below, and makes one
``bytes`` of it: no Python object a record, where the twin makes several.
"""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, strlen

from .codes import (
    ACCOUNT_LOCKED as _ACCOUNT_LOCKED,
    ALREADY_DISPUTED as _ALREADY_DISPUTED,
    CHARGED_BACK as _CHARGED_BACK,
    DUPLICATE_TX as _DUPLICATE_TX,
    INSUFFICIENT_FUNDS as _INSUFFICIENT_FUNDS,
    NOT_DISPUTABLE as _NOT_DISPUTABLE,
    NOT_DISPUTED as _NOT_DISPUTED,
    OVERFLOW as _OVERFLOW,
    KIND_NAMES as _KIND_NAMES,
    REASONS as _REASONS,
    UNKNOWN_TX as _UNKNOWN_TX,
    WITHDRAWAL as _WITHDRAWAL,
    WITHDRAWN as _WITHDRAWN,
)
from ._render_py import detail

__all__ = ["answer_lines", "csv_lines", "detail"]

cdef Py_ssize_t C_MAX_LINE = 192
MAX_LINE = C_MAX_LINE
cdef Py_ssize_t C_MAX_CSV_ROW = 320  # 7 fields of up to 20 digits, a detail of two, quotes
"""Bytes a record's line can take at most: a 20-digit line, the longest reason
(18), the longest detail (71 characters and two 20-digit ids), commas, LF."""

cdef int64_t C_DUPLICATE_TX = _DUPLICATE_TX
cdef int64_t C_ACCOUNT_LOCKED = _ACCOUNT_LOCKED
cdef int64_t C_INSUFFICIENT_FUNDS = _INSUFFICIENT_FUNDS
cdef int64_t C_UNKNOWN_TX = _UNKNOWN_TX
cdef int64_t C_NOT_DISPUTABLE = _NOT_DISPUTABLE
cdef int64_t C_ALREADY_DISPUTED = _ALREADY_DISPUTED
cdef int64_t C_NOT_DISPUTED = _NOT_DISPUTED
cdef int64_t C_OVERFLOW = _OVERFLOW
cdef int64_t C_CHARGED_BACK = _CHARGED_BACK
cdef int64_t C_WITHDRAWN = _WITHDRAWN
cdef int64_t N_REASONS = len(_REASONS)

# The names of the reason codes and of the kind codes, as C strings.
cdef char REASON_TEXT[16][24]
cdef char KIND_TEXT[8][16]
cdef int64_t N_KINDS = len(_KIND_NAMES)
cdef int64_t C_WITHDRAWAL = _WITHDRAWAL


cdef void _load_names(names, char* table, Py_ssize_t rows, Py_ssize_t width) except *:
    """Copy ``names`` into ``table``: ``rows`` C strings of ``width`` bytes each."""
    cdef bytes name
    cdef Py_ssize_t i
    if len(names) > rows:
        raise ImportError(f"more than {rows} names in {names!r}: widen its table")
    for i in range(len(names)):
        name = names[i].encode("ascii")
        if len(name) >= width:
            raise ImportError(f"{names[i]!r} is longer than {width - 1}: widen its table")
        memcpy(table + i * width, <const char*>name, len(name) + 1)


_load_names(_REASONS, &REASON_TEXT[0][0], 16, 24)
_load_names(_KIND_NAMES, &KIND_TEXT[0][0], 8, 16)


cdef inline char* put(char* p, const char* s) noexcept nogil:
    cdef size_t n = strlen(s)
    memcpy(p, s, n)
    return p + n


cdef inline char* put_sign(char* p, int64_t v, uint64_t* magnitude) noexcept nogil:
    """``-`` at ``p`` if ``v`` is negative, and ``|v|`` into ``magnitude`` (INT64_MIN included)."""
    if v < 0:
        p[0] = b"-"
        magnitude[0] = <uint64_t>(-(v + 1)) + 1
        return p + 1
    magnitude[0] = <uint64_t>v
    return p


cdef inline char* put_digits(char* p, uint64_t u) noexcept nogil:
    """The decimal digits of ``u``."""
    cdef char digits[20]
    cdef int n = 0
    while True:
        digits[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n:
        n -= 1
        p[0] = digits[n]
        p += 1
    return p


cdef inline char* put_int(char* p, int64_t v) noexcept nogil:
    """``str(v)``."""
    cdef uint64_t u
    p = put_sign(p, v, &u)
    return put_digits(p, u)


cdef inline char* put_units(char* p, int64_t units) noexcept nogil:
    """``shardpay.money.format_units(units)``: ``-`` if negative, the whole units, ``.``, four digits."""
    cdef uint64_t u
    cdef uint64_t frac
    p = put_sign(p, units, &u)
    frac = u % 10000
    p = put_digits(p, u // 10000)
    p[0] = b"."
    p[1] = <char>(48 + frac // 1000)
    p[2] = <char>(48 + frac // 100 % 10)
    p[3] = <char>(48 + frac // 10 % 10)
    p[4] = <char>(48 + frac % 10)
    return p + 5


cdef const char* tx_words(int64_t reason, int64_t aux) noexcept nogil:
    """What a detail about the row's tx says after ``tx N``; NULL for the other reasons."""
    if reason == C_DUPLICATE_TX:
        return b" was already used by an earlier deposit or withdrawal"
    if reason == C_NOT_DISPUTABLE:
        return b" is a withdrawal; only deposits can be disputed"
    if reason == C_ALREADY_DISPUTED:
        return b" was charged back" if aux == C_CHARGED_BACK else b" is already under dispute"
    if reason == C_NOT_DISPUTED:
        return b" is a withdrawal" if aux == C_WITHDRAWN else b" is not under dispute"
    return NULL


cdef char* put_detail(char* p, int64_t reason, int64_t client, int64_t tx, int64_t amount,
                      int64_t aux) noexcept nogil:
    """:func:`shardpay._render_py.detail`, written at ``p``."""
    cdef const char* words = tx_words(reason, aux)
    if words != NULL:
        p = put(p, b"tx ")
        p = put_int(p, tx)
        p = put(p, words)
    elif reason == C_ACCOUNT_LOCKED:
        p = put(p, b"account ")
        p = put_int(p, client)
        p = put(p, b" is locked by a chargeback")
    elif reason == C_INSUFFICIENT_FUNDS:
        p = put(p, b"available ")
        p = put_units(p, aux)
        p = put(p, b" is less than ")
        p = put_units(p, amount)
    elif reason == C_UNKNOWN_TX:
        p = put(p, b"client ")
        p = put_int(p, client)
        p = put(p, b" has no accepted deposit or withdrawal with tx ")
        p = put_int(p, tx)
        p = put(p, b" before this line")
    elif reason == C_OVERFLOW:
        p = put(p, b"a balance would leave the signed 64-bit range of 1/10,000 units")
    return p


cdef char* put_answer_line(char* p, const int64_t* r, int64_t offset) noexcept nogil:
    """Record ``r``'s ``LINE,REASON,DETAIL`` and an LF (its line plus ``offset``)."""
    p = put_int(p, r[0] + offset)
    p[0] = b","
    p = put(p + 1, REASON_TEXT[r[1]])
    p[0] = b","
    p = put_detail(p + 1, r[1], r[3], r[4], r[5], r[6])
    p[0] = b"\n"
    return p + 1


cdef char* put_csv_row(char* p, const int64_t* r) noexcept nogil:
    """Record ``r``'s ``line,type,client,tx,amount,reason,detail`` and an LF."""
    cdef char* detail
    cdef char* c
    p = put_int(p, r[0])
    p[0] = b","
    p = put(p + 1, KIND_TEXT[r[2]])
    p[0] = b","
    p = put_int(p + 1, r[3])
    p[0] = b","
    p = put_int(p + 1, r[4])
    p[0] = b","
    p += 1
    if r[2] <= C_WITHDRAWAL:
        p = put_units(p, r[5])
    p[0] = b","
    p = put(p + 1, REASON_TEXT[r[1]])
    p[0] = b","
    detail = p + 1
    p = put_detail(detail, r[1], r[3], r[4], r[5], r[6])
    c = detail
    while c < p and c[0] != b",":
        c += 1
    if c < p:  # a comma: the detail in double quotes (no detail holds one)
        memmove(detail + 1, detail, p - detail)
        detail[0] = b'"'
        p[1] = b'"'
        p += 2
    p[0] = b"\n"
    return p + 1


cdef bytes write_records(const int64_t[:, ::1] records, int64_t offset, bint csv_rows):
    """Every record written by :func:`put_csv_row` (``csv_rows``) or :func:`put_answer_line`,
    in one C buffer; the codes are checked before anything is written."""
    cdef Py_ssize_t n = records.shape[0]
    cdef Py_ssize_t i
    cdef char* buf
    cdef char* p
    if records.shape[1] != 7:
        raise ValueError(f"a ledger record has 7 fields, got {records.shape[1]}")
    for i in range(n):
        if not 0 <= records[i, 1] < N_REASONS:
            raise ValueError(f"line {records[i, 0]}: reason code {records[i, 1]} is not one of "
                             f"0..{N_REASONS - 1}")
        if csv_rows and not 0 <= records[i, 2] < N_KINDS:
            raise ValueError(f"line {records[i, 0]}: kind code {records[i, 2]} is not one of "
                             f"0..{N_KINDS - 1}")
    if n == 0:
        return b""
    buf = <char*>malloc(n * (C_MAX_CSV_ROW if csv_rows else C_MAX_LINE))
    if buf == NULL:
        raise MemoryError()
    try:
        p = buf
        with nogil:
            for i in range(n):
                if csv_rows:
                    p = put_csv_row(p, &records[i, 0])
                else:
                    p = put_answer_line(p, &records[i, 0], offset)
        return buf[:p - buf]
    finally:
        free(buf)


def answer_lines(const int64_t[:, ::1] records, int64_t offset):
    """Ledger records as the reject lines of a ``shardpay serve`` answer
    (see :func:`shardpay._render_py.answer_lines`: same arguments, same bytes).

    Raises:
        ValueError: a record's reason is not an index of :data:`shardpay.codes.REASONS`
            (checked before anything is written).
    """
    return write_records(records, offset, False)


def csv_lines(const int64_t[:, ::1] records):
    """Ledger records as rows of the ``--rejects`` CSV (see
    :func:`shardpay._render_py.csv_lines`: same argument, same bytes).

    A row: line, kind, client, tx, the amount (a deposit's or withdrawal's,
    else empty), reason, detail; the detail in double quotes if it holds a
    comma (no detail holds a double quote).

    Raises:
        ValueError: a record's reason or kind code is out of range (checked
            before anything is written).
    """
    return write_records(records, 0, True)
