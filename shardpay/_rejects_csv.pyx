# cython: language_level=3, boundscheck=False, wraparound=False
"""The ``--rejects`` CSV rows, compiled: one pass that copies each field once.

The compiled twin of :mod:`shardpay._rejects_csv_py`: the same text for the
same rows (a property test compares them). Picked by :mod:`shardpay.report`
unless it failed to build or ``SHARDPAY_REJECTS_CSV=python``.

The rule is the csv module's minimal quoting: a field is written as it is,
unless it holds a comma, a double quote, a CR or an LF; then it is written
in double quotes, each of its double quotes doubled. A row is its line
number, its six text fields, each after a comma, and an LF.
"""

from libc.string cimport memcpy


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

__all__ = ["csv_rows"]


cdef class _Text:
    """A growing UTF-8 buffer (a bytes object resized as it fills)."""

    cdef bytearray data
    cdef Py_ssize_t used

    def __cinit__(self):
        self.data = bytearray(1 << 16)
        self.used = 0

    cdef char* room(self, Py_ssize_t n) except NULL:
        """A pointer to ``n`` free bytes at the end (the buffer doubles when short)."""
        cdef Py_ssize_t size = len(self.data)
        if self.used + n > size:
            self.data.extend(bytes(max(size, n)))
        return <char*>self.data + self.used


cdef inline bint needs_quotes(const char* s, Py_ssize_t n):
    """True if the field holds a comma, a double quote, a CR or an LF."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] == b',' or s[i] == b'"' or s[i] == b'\r' or s[i] == b'\n':
            return True
    return False


cdef void add_number(_Text text, unsigned long long value) except *:
    """Append ``value`` in decimal digits."""
    cdef char digits[20]
    cdef int n = 0
    while True:
        digits[19 - n] = <char>(c'0' + value % 10)
        n += 1
        value //= 10
        if value == 0:
            break
    memcpy(text.room(n), digits + 20 - n, n)
    text.used += n


cdef void add_field(_Text text, str field) except *:
    """Append ``,`` and ``field``, in double quotes if it needs them."""
    cdef Py_ssize_t n, i
    cdef const char* s = PyUnicode_AsUTF8AndSize(field, &n)  # kept by the str: no copy
    cdef char* out
    if not needs_quotes(s, n):
        out = text.room(n + 1)
        out[0] = b','
        memcpy(out + 1, s, n)
        text.used += n + 1
        return
    out = text.room(2 * n + 3)  # every byte a doubled quote at worst
    out[0] = b','
    out[1] = b'"'
    out += 2
    for i in range(n):
        out[0] = s[i]
        out += 1
        if s[i] == b'"':
            out[0] = b'"'
            out += 1
    out[0] = b'"'
    text.used = out + 1 - <char*>text.data


def csv_rows(rows):
    """``rows`` as CSV text, one LF-terminated line each.

    Args:
        rows: a sequence of tuples of an int (the line number) and six ``str``
            fields: the columns of ``--rejects`` (:class:`shardpay.rejects.Reject`).

    Returns:
        The lines, joined (``str``).

    Raises:
        TypeError: a row is not a tuple of 7, or a field not a ``str``.
    """
    cdef _Text text = _Text()
    cdef tuple fields
    cdef int k
    cdef char* out
    for row in rows:
        if not isinstance(row, tuple) or len(row) != 7:
            raise TypeError(f"a rejects row is a tuple of 7 fields, got {row!r}")
        fields = <tuple>row  # a NamedTuple too: read as the tuple it is
        add_number(text, fields[0])
        for k in range(1, 7):
            add_field(text, fields[k])
        out = text.room(1)
        out[0] = b'\n'
        text.used += 1
    return text.data[:text.used].decode("utf-8")
