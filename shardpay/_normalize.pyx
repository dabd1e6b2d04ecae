# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""CSV rows in the common dialects -> canonical JSON columns for the msgspec fast path (compiled).

The compiled twin of :mod:`shardpay._normalize_py`: same interface, same
output bytes for every input (a property test compares them). Picked by
:mod:`shardpay.decode` unless it failed to build or ``SHARDPAY_NORMALIZE=python``.
The grammar a line must follow to be vouched for, and the output, are in
:mod:`shardpay._normalize_py`'s docstring. This module reads each line once,
field by field, each field with its own grammar (type letters, id digits,
amount digits and point, the ignored amount's text), appending each field to
its column as it goes and dropping the row at the first byte that does not
fit; the LF that ends every line stops every scan, so no scan needs a bounds
check.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Realloc
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy

import array as _array

from .frames import U64

__all__ = ["fast_offsets", "normalize"]

cdef enum:
    EMPTY = 0  # marks: an empty line
    FAST = 1  # a row in the JSON
    EXACT = 2  # a line for the exact path

# Byte classes, one table lookup a byte.
cdef enum:
    C_OTHER = 0  # control (LF included), DEL, non-ASCII: the line takes the exact path
    C_WS = 1  # space, tab, CR: whitespace around a field
    C_TEXT = 2  # any other printable ASCII byte
cdef unsigned char CLASS[256]
cdef int _b
for _b in range(256):
    CLASS[_b] = C_OTHER
for _b in range(0x21, 0x7F):
    CLASS[_b] = C_TEXT
CLASS[0x20] = C_WS
CLASS[0x09] = C_WS
CLASS[0x0D] = C_WS

cdef uint64_t MAX_UNITS = 9223372036854775807ULL

ctypedef const unsigned char* cursor


cdef struct At:
    cursor p  # where reading goes on (NULL: the line takes the exact path)
    unsigned char* w  # where writing goes on


cdef struct Columns:
    unsigned char* kind  # where each column's next field goes
    unsigned char* client
    unsigned char* tx
    unsigned char* units


cdef enum:
    # The most bytes a row adds to each column, its comma included.
    KIND_BYTES = 2
    CLIENT_BYTES = 6
    TX_BYTES = 11
    UNITS_BYTES = 20
    ROW_BYTES = KIND_BYTES + CLIENT_BYTES + TX_BYTES + UNITS_BYTES
    SHORTEST_ROW = 12  # "dispute,1,1\n": no vouched line is shorter


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return <unsigned char>(c - 48) < 10


cdef inline cursor skip_ws(cursor p) noexcept nogil:
    while CLASS[p[0]] == C_WS:
        p += 1
    return p


cdef inline cursor open_field(cursor p, bint* quoted) noexcept nogil:
    """Skip the whitespace before a field, and its opening quote with the whitespace
    just inside it (``*quoted`` says whether there was one): the cursor is then on
    the field's content."""
    p = skip_ws(p)
    quoted[0] = p[0] == 34
    if quoted[0]:
        p = skip_ws(p + 1)
    return p


cdef inline cursor close_field(cursor p, bint quoted) noexcept nogil:
    """Skip the whitespace after a field's content, its closing quote and the whitespace
    after that: the cursor is then on the separator (NULL: no closing quote)."""
    p = skip_ws(p)
    if quoted:
        if p[0] != 34:
            return NULL
        p = skip_ws(p + 1)
    return p


cdef inline int kind_of(cursor s, Py_ssize_t n) noexcept nogil:
    """The kind code of the name ``s[:n]`` (0..4), or -1."""
    if n == 7:
        if s[0] == 100:  # d
            if memcmp(s, b"deposit", 7) == 0:
                return 0
            if memcmp(s, b"dispute", 7) == 0:
                return 2
        elif memcmp(s, b"resolve", 7) == 0:
            return 3
    elif n == 10:
        if memcmp(s, b"withdrawal", 10) == 0:
            return 1
        if memcmp(s, b"chargeback", 10) == 0:
            return 4
    return -1


cdef inline cursor digits(cursor p, unsigned char* w, Py_ssize_t width, uint64_t* value,
                          Py_ssize_t* n) noexcept nogil:
    """Skip leading zeros at ``p``, then read the digits after them: their value into
    ``*value``, their text at ``w`` (``*n`` of them); the cursor after the last one
    (NULL: more than ``width`` digits)."""
    cdef unsigned char c
    while p[0] == 48:
        p += 1
    c = p[0]
    while is_digit(c):
        if n[0] == width:
            return NULL
        value[0] = value[0] * 10 + (c - 48)
        w[n[0]] = c
        n[0] += 1
        p += 1
        c = p[0]
    return p


cdef inline At plain_id(cursor p, unsigned char* w, uint64_t limit, Py_ssize_t width) noexcept nogil:
    """Read an id's digits at ``p`` (leading zeros allowed) and write its canonical
    digits at ``w``; ``.p`` NULL if there is no digit or it is above ``limit``."""
    cdef At at
    cdef cursor z = p
    cdef uint64_t value = 0
    cdef Py_ssize_t n = 0
    at.p = NULL
    p = digits(p, w, width, &value, &n)
    if p == NULL:
        return at
    if n == 0:
        if p == z:
            return at  # no digit at all
        w[0] = 48
        n = 1
    elif value > limit:
        return at
    at.p = p
    at.w = w + n
    return at


cdef inline cursor number_field(cursor p, unsigned char** column, bint is_amount, uint64_t limit,
                                Py_ssize_t width) noexcept nogil:
    """Read the number field at ``p`` (whitespace around it, whole-field quotes
    allowed): an amount if ``is_amount``, else an id of at most ``width`` digits up
    to ``limit``. Append its canonical digits and a comma to ``*column`` and move
    ``*column`` past them; the cursor after the field, or NULL for the exact path."""
    cdef bint quoted
    cdef At at
    p = open_field(p, &quoted)
    at = amount(p, column[0]) if is_amount else plain_id(p, column[0], limit, width)
    if at.p == NULL:
        return NULL
    p = close_field(at.p, quoted)
    if p == NULL:
        return NULL
    at.w[0] = 44
    column[0] = at.w + 1
    return p


cdef inline At amount(cursor p, unsigned char* w) noexcept nogil:
    """Read an amount at ``p`` (``1``, ``1.5``, ``.5``, ``5.``, ``007.50000``) and write
    its count of 1/10,000 units in decimal at ``w``; ``.p`` NULL if it is not an exact
    amount in 1..MAX_UNITS (the exact path says why)."""
    cdef At at
    cdef cursor z = p
    cdef uint64_t units = 0
    cdef Py_ssize_t n = 0, decimals = 0
    cdef unsigned char c
    at.p = NULL
    p = digits(p, w, 15, &units, &n)  # the whole part
    if p == NULL:
        return at
    c = p[0]
    if c == 46:  # '.'
        p += 1
        c = p[0]
        while is_digit(c) and decimals < 4:
            units = units * 10 + (c - 48)
            if n or c != 48:  # no leading zeros when the whole part is 0
                w[n] = c
                n += 1
            decimals += 1
            p += 1
            c = p[0]
        while c == 48:  # zeros past the fourth decimal
            p += 1
            c = p[0]
        if is_digit(c) or p - z == 1:
            return at  # a non-zero digit past the fourth decimal, or '.' alone
    elif p == z:
        return at  # no digit
    while decimals < 4:
        units *= 10
        if n:
            w[n] = 48
            n += 1
        decimals += 1
    if units == 0 or units > MAX_UNITS:
        return at
    at.p = p
    at.w = w + n
    return at


cdef inline cursor ignored(cursor p) noexcept nogil:
    """Skip a reference's ignored amount field: any printable ASCII text, unquoted with
    no quote, or wholly quoted; the cursor ends on the LF (NULL: the exact path)."""
    cdef bint quoted
    cdef unsigned char c
    p = skip_ws(p)
    quoted = p[0] == 34
    if quoted:
        p += 1
    while True:
        c = p[0]
        if c == 34:
            if not quoted:
                return NULL  # a quote inside an unquoted field is data
            break
        if c == 44 or CLASS[c] == C_OTHER:  # a fifth field, or the LF
            break
        p += 1
    if quoted:
        if c != 34:
            return NULL  # a comma inside quotes, or an open quote
        p = skip_ws(p + 1)
    return p


cdef inline bint row_columns(cursor p, Columns* out, cursor* eol) noexcept nogil:
    """Append the fields of the line at ``p`` to the columns at ``out`` (each field
    followed by a comma) and put the line's LF at ``*eol``; False for the exact
    path, when part of the row may be written: the caller puts ``out`` back."""
    cdef cursor s
    cdef bint quoted
    cdef int kind
    # type
    p = open_field(p, &quoted)
    s = p
    while <unsigned char>(p[0] - 97) < 26:  # a-z
        p += 1
    kind = kind_of(s, p - s)
    if kind < 0:
        return False
    p = close_field(p, quoted)
    if p == NULL or p[0] != 44:
        return False
    # client
    p = number_field(p + 1, &out.client, False, 65535, 5)
    if p == NULL or p[0] != 44:
        return False
    # tx
    p = number_field(p + 1, &out.tx, False, 4294967295, 10)
    if p == NULL:
        return False
    # amount
    if kind <= 1:  # deposit, withdrawal: four fields
        if p[0] != 44:
            return False
        p = number_field(p + 1, &out.units, True, 0, 0)
        if p == NULL:
            return False
    else:  # a reference: its amount is 0, its ignored amount field (or three fields) skipped
        if p[0] == 44:
            p = ignored(p + 1)
            if p == NULL:
                return False
        out.units[0] = 48
        out.units[1] = 44
        out.units += 2
    if p[0] != 10:
        return False
    eol[0] = p
    out.kind[0] = 48 + kind
    out.kind[1] = 44
    out.kind += 2
    return True


cdef unsigned char* _buf = NULL
cdef Py_ssize_t _cap = 0
"""The columns and the marks are written here, then copied into bytes objects; kept
between calls (the GIL is held throughout: one call at a time)."""


cdef inline unsigned char* put(unsigned char* w, const char* text, Py_ssize_t n) noexcept nogil:
    memcpy(w, text, n)
    return w + n


def normalize(bytes block not None):
    """Rewrite whole CSV lines into canonical JSON columns; see :mod:`shardpay._normalize_py`.

    Args:
        block: data lines, each ending in LF (CR before it allowed), no header.

    Returns:
        ``(json, marks, fast, exact)``: the JSON columns of every line the
        fast path takes, in line order; one byte a line (0 empty, 1 in the
        JSON, 2 the exact path); how many lines are in the JSON; and the
        lines for the exact path, as read, each with its LF, in line order.

    Raises:
        ValueError: ``block`` is not empty and does not end in LF.
    """
    global _buf, _cap
    cdef Py_ssize_t size = PyBytes_GET_SIZE(block)
    cdef cursor p = <cursor> PyBytes_AS_STRING(block)
    cdef cursor stop = p + size
    cdef cursor q
    cdef Py_ssize_t fast = 0, rows, need, n
    cdef unsigned char* m
    cdef unsigned char* m0
    cdef unsigned char* w
    cdef unsigned char* x
    cdef unsigned char* x0
    cdef void* grown
    cdef Columns out, start, kept
    if size and p[size - 1] != 10:
        raise ValueError("the block must end in LF")
    # Room for every vouched row (each at least SHORTEST_ROW bytes of the block) and
    # the one being read when it is dropped, each column its widest; then the marks,
    # one byte a line; then the JSON, as long as the columns with its brackets; then
    # the lines for the exact path, at most the block.
    rows = size // SHORTEST_ROW + 2
    need = 2 * rows * ROW_BYTES + 2 * size + 16
    if need > _cap:
        grown = PyMem_Realloc(_buf, need)
        if grown == NULL:
            raise MemoryError()
        _buf, _cap = <unsigned char*> grown, need
    start.kind = _buf
    start.client = start.kind + rows * KIND_BYTES
    start.tx = start.client + rows * CLIENT_BYTES
    start.units = start.tx + rows * TX_BYTES
    m0 = m = start.units + rows * UNITS_BYTES
    x0 = x = _buf + (2 * rows * ROW_BYTES + size + 16)
    out = start
    while p < stop:
        q = skip_ws(p)
        if q[0] == 10:
            m[0] = EMPTY
            p = q + 1
        else:
            kept = out
            if row_columns(p, &out, &q):
                fast += 1
                m[0] = FAST
                p = q + 1
            else:
                out = kept
                m[0] = EXACT
                q = <cursor> memchr(q, 10, stop - q) + 1
                x = put(x, <char*> p, q - p)  # the line as read, LF included
                p = q
        m += 1
    marks = PyBytes_FromStringAndSize(<char*> m0, m - m0)
    exact = PyBytes_FromStringAndSize(<char*> x0, x - x0)
    if not fast:
        return b"[[],[],[],[]]", marks, 0, exact
    # [[kinds],[clients],[txs],[units]]: each column without its last comma
    w = m
    w = put(w, b"[[", 2)
    w = put(w, <char*> start.kind, out.kind - start.kind - 1)
    w = put(w, b"],[", 3)
    w = put(w, <char*> start.client, out.client - start.client - 1)
    w = put(w, b"],[", 3)
    w = put(w, <char*> start.tx, out.tx - start.tx - 1)
    w = put(w, b"],[", 3)
    w = put(w, <char*> start.units, out.units - start.units - 1)
    w = put(w, b"]]", 2)
    return PyBytes_FromStringAndSize(<char*> m, w - m), marks, fast, exact


cdef array.array _U64S = _array.array(U64)


def fast_offsets(bytes marks not None):
    """The offsets of the lines marked for the fast path; see :mod:`shardpay._normalize_py`.

    Args:
        marks: :func:`normalize`'s marks, one byte a line.

    Returns:
        A u64 ``array`` of the indexes ``i`` with ``marks[i] == FAST``, ascending.
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(marks), i, k = 0
    cdef const unsigned char* m = <const unsigned char*> PyBytes_AS_STRING(marks)
    cdef array.array out = array.clone(_U64S, n, zero=False)
    cdef uint64_t* o = <uint64_t*> out.data.as_voidptr
    for i in range(n):
        if m[i] == FAST:
            o[k] = i
            k += 1
    array.resize(out, k)
    return out
