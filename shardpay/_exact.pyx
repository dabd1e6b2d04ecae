# cython: language_level=3, boundscheck=False, wraparound=False
"""The exact path, compiled, for the invalid rows met most.

The compiled twin of :mod:`shardpay._exact_py`: the same ``decode_line``, the
same result for every line (a property test compares them). Picked by
:mod:`shardpay.decode` unless it failed to build or ``SHARDPAY_EXACT=python``.

A line of ASCII without a double quote or whitespace other than the space
(control characters such as NUL allowed) is checked here, in SPEC's order
(field count, type, client, tx, amount), each check in C, and the first
that fails gives the reject, its detail in the twin's words and its fields
with control characters shown escaped. Every other line is handed to the
twin: a valid row (the twin builds it), a quote (the csv module splits it),
a tab, CR or other whitespace, non-ASCII or non-UTF-8 bytes. So this file
holds only the checks; the twin stays the reference.

The checks, on the line's fields split at commas, spaces around each dropped:

=========  =========================================================
field      valid
=========  =========================================================
count      4, or 3 (the amount empty)
type       deposit, withdrawal, dispute, resolve or chargeback
client     digits (leading zeros allowed), 0..65535
tx         digits (leading zeros allowed), 0..4294967295
amount     deposit, withdrawal: digits, an optional ``.`` and digits,
           at most 4 decimals past which only zeros, > 0, at most
           922337203685477.5807; dispute, resolve, chargeback: anything
=========  =========================================================
"""

from ._exact_py import BAD_CLIENT, BAD_TX, CONTROL, count_and_type, decode_line as _twin_line
from .money import AMOUNT_DETAILS, clip
from .rejects import Reject

__all__ = ["decode_line"]

cdef enum:
    WITHDRAWAL = 1  # shardpay.codes: kind <= WITHDRAWAL carries an amount
    MAX_WHOLE_DIGITS = 15  # 922337203685477 has 15 digits

cdef unsigned long long MAX_UNITS = 9223372036854775807  # 2**63 - 1: shardpay.money.MAX_UNITS
_new_reject = tuple.__new__


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL


def decode_line(bytes raw not None, line):
    """Decode one data line exactly (SPEC "Input"): see :func:`shardpay._exact_py.decode_line`.

    Args:
        raw: the line's bytes without its LF.
        line: its physical line number.

    Returns:
        A row struct, a :class:`~shardpay.rejects.Reject` with reason
        ``invalid_row``, or None for an empty (whitespace-only) line.
    """
    cdef const unsigned char* s = raw
    cdef Py_ssize_t i
    cdef str text, field, client, tx, amount
    cdef list fields
    cdef bint controls = False
    for i in range(len(raw)):
        if s[i] == b'"' or s[i] > 0x7f or is_other_space(s[i]):
            return _twin_line(raw, line)
        if s[i] < 0x20 or s[i] == 0x7f:
            controls = True
    # The space is the line's only whitespace, so strip() is strip(" ").
    text = raw.decode("ascii").strip()
    if not text:
        return None
    fields = [field.strip() for field in text.split(",")]
    kind, detail = count_and_type(fields)
    if kind is None:
        return invalid(line, detail, fields, controls)
    client, tx, amount = fields[1], fields[2], fields[3]
    if not plain_int(client, 65535):
        return invalid(line, BAD_CLIENT.format(clip(client)), fields, controls)
    if not plain_int(tx, 4294967295):
        return invalid(line, BAD_TX.format(clip(tx)), fields, controls)
    if kind <= WITHDRAWAL:
        detail = amount_error(amount)
        if detail is not None:
            return invalid(line, detail, fields, controls)
    return _twin_line(raw, line)  # a valid row


cdef inline bint is_other_space(unsigned char c):
    """Whitespace other than the space (``str.strip`` drops it): TAB, LF, VT, FF, CR, 0x1c-0x1f."""
    return 0x09 <= c <= 0x0d or 0x1c <= c <= 0x1f


cdef invalid(line, str detail, list fields, bint controls):
    """The reject of an invalid row: its fields made four (more are joined into the
    amount), control characters shown escaped if the line has any."""
    cdef Py_ssize_t n = len(fields)
    if n > 4:
        fields = [fields[0], fields[1], fields[2], ",".join(fields[3:])]
    while len(fields) < 4:
        fields.append("")
    if controls:
        fields = [f if f.isprintable() else f.translate(CONTROL) for f in fields]
    return _new_reject(Reject, (line, fields[0], fields[1], fields[2], fields[3], "invalid_row", detail))


cdef bint plain_int(str text, unsigned long long limit) except -1:
    """True if ``text`` is ASCII digits (leading zeros allowed) making at most ``limit``
    (a limit of at most 10 digits)."""
    cdef Py_ssize_t n, i
    cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
    cdef unsigned long long value = 0
    cdef int digits = 0
    if n == 0:
        return False
    for i in range(n):
        if s[i] < b'0' or s[i] > b'9':
            return False
        if digits or s[i] != b'0':
            digits += 1
            if digits > 10:
                return False
            value = value * 10 + (s[i] - c'0')
    return value <= limit


cdef amount_error(str text):
    """The detail :func:`shardpay.money.parse_amount` raises for ``text`` (printable
    ASCII, stripped), or None if it is an exact amount in 1..MAX_UNITS."""
    cdef Py_ssize_t n, i, point = -1
    cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
    cdef unsigned long long whole = 0, frac = 0, units
    cdef int whole_digits = 0, frac_digits = 0
    if n == 0:
        return AMOUNT_DETAILS["missing"]
    for i in range(n):  # digits, at most one point, digits
        if s[i] == b'.' and point < 0:
            point = i
        elif s[i] < b'0' or s[i] > b'9':
            return AMOUNT_DETAILS["not a number"].format(clip(text))
    if n == 1 and point == 0:
        return AMOUNT_DETAILS["not a number"].format(clip(text))
    if point >= 0:
        for i in range(point + 1, n):
            if frac_digits < 4:
                frac = frac * 10 + (s[i] - c'0')
                frac_digits += 1
            elif s[i] != b'0':
                return AMOUNT_DETAILS["decimals"].format(clip(text))
    for i in range(point if point >= 0 else n):
        if whole_digits or s[i] != b'0':
            whole_digits += 1
            if whole_digits > MAX_WHOLE_DIGITS:
                return AMOUNT_DETAILS["too large"].format(clip(text))
            whole = whole * 10 + (s[i] - c'0')
    while frac_digits < 4:
        frac *= 10
        frac_digits += 1
    units = whole * 10000 + frac
    if units == 0:
        return AMOUNT_DETAILS["not positive"].format(clip(text))
    if units > MAX_UNITS:
        return AMOUNT_DETAILS["too large"].format(clip(text))
    return None
