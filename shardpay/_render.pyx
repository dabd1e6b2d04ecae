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

# The reason codes' names, as C strings.
cdef char REASON_TEXT[16][24]


cdef void _load_reasons() except *:
    cdef bytes name
    cdef Py_ssize_t i
    if N_REASONS > 16:
        raise ImportError("more than 16 reason codes: widen REASON_TEXT")
    for i in range(N_REASONS):
        name = _REASONS[i].encode("ascii")
        if len(name) >= 24:
            raise ImportError(f"reason code {_REASONS[i]!r} is longer than 23: widen REASON_TEXT")
        memcpy(REASON_TEXT[i], <const char*>name, len(name) + 1)


_load_reasons()

cdef char KIND_TEXT[8][16]
cdef int64_t N_KINDS = len(_KIND_NAMES)
cdef int64_t C_WITHDRAWAL = _WITHDRAWAL


cdef void _load_kinds() except *:
    if N_KINDS > 8:
        raise ImportError("more than 8 kind codes: widen KIND_TEXT")
    for i in range(N_KINDS):
        name = _KIND_NAMES[i].encode("ascii")
        if len(name) >= 16:
            raise ImportError(f"kind {_KIND_NAMES[i]!r} is longer than 15: widen KIND_TEXT")
        memcpy(KIND_TEXT[i], <const char*>name, len(name) + 1)


_load_kinds()


cdef inline char* put(char* p, const char* s) noexcept nogil:
    cdef size_t n = strlen(s)
    memcpy(p, s, n)
    return p + n


cdef inline char* put_int(char* p, int64_t v) noexcept nogil:
    """``str(v)``: the digits of ``v``, ``-`` first if negative (INT64_MIN included)."""
    cdef char digits[20]
    cdef int n = 0
    cdef uint64_t u
    if v < 0:
        p[0] = b"-"
        p += 1
        u = <uint64_t>(-(v + 1)) + 1
    else:
        u = <uint64_t>v
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


cdef inline char* put_units(char* p, int64_t units) noexcept nogil:
    """``shardpay.money.format_units(units)``: ``-`` if negative, the whole units, ``.``, four digits."""
    cdef uint64_t u
    cdef uint64_t frac
    if units < 0:
        p[0] = b"-"
        p += 1
        u = <uint64_t>(-(units + 1)) + 1
    else:
        u = <uint64_t>units
    frac = u % 10000
    p = put_int(p, <int64_t>(u // 10000))
    p[0] = b"."
    p[1] = <char>(48 + frac // 1000)
    p[2] = <char>(48 + frac // 100 % 10)
    p[3] = <char>(48 + frac // 10 % 10)
    p[4] = <char>(48 + frac % 10)
    return p + 5


cdef char* put_detail(char* p, int64_t reason, int64_t client, int64_t tx, int64_t amount,
                      int64_t aux) noexcept nogil:
    """:func:`shardpay._render_py.detail`, written at ``p``."""
    if reason == C_DUPLICATE_TX:
        p = put(p, b"tx ")
        p = put_int(p, tx)
        p = put(p, b" was already used by an earlier deposit or withdrawal")
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
    elif reason == C_NOT_DISPUTABLE:
        p = put(p, b"tx ")
        p = put_int(p, tx)
        p = put(p, b" is a withdrawal; only deposits can be disputed")
    elif reason == C_ALREADY_DISPUTED:
        p = put(p, b"tx ")
        p = put_int(p, tx)
        p = put(p, b" was charged back" if aux == C_CHARGED_BACK else b" is already under dispute")
    elif reason == C_NOT_DISPUTED:
        p = put(p, b"tx ")
        p = put_int(p, tx)
        p = put(p, b" is a withdrawal" if aux == C_WITHDRAWN else b" is not under dispute")
    elif reason == C_OVERFLOW:
        p = put(p, b"a balance would leave the signed 64-bit range of 1/10,000 units")
    return p


def answer_lines(const int64_t[:, ::1] records, int64_t offset):
    """Ledger records as the reject lines of a ``shardpay serve`` answer
    (see :func:`shardpay._render_py.answer_lines`: same arguments, same bytes).

    Raises:
        ValueError: a record's reason is not an index of :data:`shardpay.codes.REASONS`
            (checked before anything is written).
    """
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
    if n == 0:
        return b""
    buf = <char*>malloc(n * C_MAX_LINE)
    if buf == NULL:
        raise MemoryError()
    try:
        p = buf
        with nogil:
            for i in range(n):
                p = put_int(p, records[i, 0] + offset)
                p[0] = b","
                p = put(p + 1, REASON_TEXT[records[i, 1]])
                p[0] = b","
                p = put_detail(p + 1, records[i, 1], records[i, 3], records[i, 4], records[i, 5], records[i, 6])
                p[0] = b"\n"
                p += 1
        return buf[:p - buf]
    finally:
        free(buf)


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
    cdef Py_ssize_t n = records.shape[0]
    cdef Py_ssize_t i
    cdef char* buf
    cdef char* p
    cdef char* d
    cdef char* c
    cdef bint comma
    if records.shape[1] != 7:
        raise ValueError(f"a ledger record has 7 fields, got {records.shape[1]}")
    for i in range(n):
        if not (0 <= records[i, 1] < N_REASONS and 0 <= records[i, 2] < N_KINDS):
            raise ValueError(f"line {records[i, 0]}: reason code {records[i, 1]} or kind code "
                             f"{records[i, 2]} out of range")
    if n == 0:
        return b""
    buf = <char*>malloc(n * (C_MAX_LINE + 128))
    if buf == NULL:
        raise MemoryError()
    try:
        p = buf
        with nogil:
            for i in range(n):
                p = put_int(p, records[i, 0])
                p[0] = b","
                p = put(p + 1, KIND_TEXT[records[i, 2]])
                p[0] = b","
                p = put_int(p + 1, records[i, 3])
                p[0] = b","
                p = put_int(p + 1, records[i, 4])
                p[0] = b","
                p += 1
                if records[i, 2] <= C_WITHDRAWAL:
                    p = put_units(p, records[i, 5])
                p[0] = b","
                p = put(p + 1, REASON_TEXT[records[i, 1]])
                p[0] = b","
                d = p + 1  # the detail, then quoted in place if it holds a comma
                p = put_detail(d, records[i, 1], records[i, 3], records[i, 4], records[i, 5], records[i, 6])
                comma = False
                c = d
                while c < p:
                    if c[0] == b",":
                        comma = True
                        break
                    c += 1
                if comma:
                    memmove(d + 1, d, p - d)
                    d[0] = b'"'
                    p += 1
                    p[0] = b'"'
                    p += 1
                p[0] = b"\n"
                p += 1
        return buf[:p - buf]
    finally:
        free(buf)
