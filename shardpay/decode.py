"""CSV bytes to typed, validated transaction rows (SPEC "Input").

Two paths give the same result for every line:

* **Fast path** (:func:`decode_chunk`): the normaliser (:func:`normalize`,
  compiled in :mod:`shardpay._normalize`, pure twin in
  :mod:`shardpay._normalize_py`) reads a chunk of whole lines once and
  writes the fields of each line it can vouch for into canonical JSON
  columns, every number an integer (the kind as its code, the amount in
  1/10,000 units); msgspec decodes them in one C call into one list a
  column, with range checks: the columns of a frame, no object a row::

      " deposit" , "007", 7 ,1.5\r\n  ->  [[0],[7],[7],[15000]]  ->  Columns(kinds=b"\\x00", clients=[7], ...)

  It vouches for valid rows in every common dialect, mixed line by line:
  spaces and tabs around fields, fields wholly in double quotes, three-field
  disputes, resolves and chargebacks, CRLF, leading zeros, ``.5`` and
  ``5.``, zeros past the fourth decimal (the grammar is in
  :mod:`shardpay._normalize_py`'s docstring). No string is converted and no
  float is parsed: what msgspec reads is exact by construction.
* **Exact path** (:func:`decode_line`): one line, every check in SPEC's
  order, and the reject detail; the reference is
  :mod:`shardpay._exact_py` (the ``csv`` module and
  :func:`shardpay.money.parse_amount`), its compiled twin
  :mod:`shardpay._exact` checks lines of ASCII in C. Only the
  lines the normaliser does not vouch for take it: invalid rows, RFC 4180
  escapes (a quote or comma inside a quoted field), other whitespace (VT,
  NO-BREAK SPACE...) and non-ASCII bytes.

Line numbers are physical line numbers (counted by LF) of the input file.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Annotated, NamedTuple

import msgspec

from ._exact_py import split_fields
from ._normalize_py import EXACT as EXACT_MARK
from .codes import CHARGEBACK, DEPOSIT
from .errors import InputError
from .fields import Chargeback, Client, Deposit, Dispute, Resolve, Row, Tx, Withdrawal
from .frames import U64
from .money import MAX_UNITS
from .rejects import Reject
from .twins import pick

__all__ = [
    "EXACT",
    "NORMALIZER",
    "Chargeback",
    "Columns",
    "Deposit",
    "Dispute",
    "Resolve",
    "Row",
    "Withdrawal",
    "decode_chunk",
    "decode_line",
    "decode_offsets",
    "normalize",
    "offsets",
    "parse_header",
    "split_fields",
]


_twin, NORMALIZER = pick("normalize", "SHARDPAY_NORMALIZE")
normalize = _twin.normalize
fast_offsets = _twin.fast_offsets
"""``normalize(block) -> (json, marks, fast, exact)``: see :mod:`shardpay._normalize_py`.
``NORMALIZER`` says which twin runs: ``"compiled"`` or ``"python"``."""

_exact, EXACT = pick("exact", "SHARDPAY_EXACT")
decode_line = _exact.decode_line
"""``decode_line(raw, line) -> Row | Reject | None``: the exact path for one line
(:func:`shardpay._exact_py.decode_line`). ``EXACT`` says which twin runs."""

_Kind = Annotated[int, msgspec.Meta(ge=DEPOSIT, le=CHARGEBACK)]
_Units = Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)]
_DECODER = msgspec.json.Decoder(tuple[list[_Kind], list[Client], list[Tx], list[_Units]])
"""The normaliser's JSON columns -> four lists of ints. Strict: integers only, and
the ranges checked once more (the normaliser already has; an amount of 0 is
a reference's)."""

class Columns(NamedTuple):
    """A chunk's well-formed rows as columns of equal length, in line order.

    ``lines`` physical line numbers (a ``range`` or a list; offsets from the
    chunk's first line, a ``range`` or a u64 ``array``, from
    :func:`decode_offsets`), ``kinds`` kind
    codes (:mod:`shardpay.codes`; bytes or a bytearray), ``clients``,
    ``txs``, ``amounts`` lists of ints, the amounts in 1/10,000 units (0 for
    dispute, resolve and chargeback): the columns of a data frame
    (:func:`shardpay.frames.pack_frame`).
    """

    lines: Sequence[int]
    kinds: bytes | bytearray
    clients: list[int]
    txs: list[int]
    amounts: list[int]


def decode_chunk(block: bytes, first_line: int) -> tuple[Columns, list[Reject]]:
    """Decode whole lines of CSV data rows (SPEC "Input").

    Args:
        block: bytes holding whole lines, each ending in LF (CRLF allowed),
            with no header.
        first_line: the physical line number of the block's first line.

    Returns:
        ``(columns, rejects)``: the well-formed rows as :class:`Columns` in
        line order, and the invalid rows as :class:`Reject` records (reason
        ``invalid_row``) in line order. Empty lines are skipped.

    Raises:
        ValueError: ``block`` is not empty and does not end in LF.
    """
    columns, rejects = decode_offsets(block, first_line)
    offsets = columns.lines
    if isinstance(offsets, range):
        lines: Sequence[int] = range(first_line, first_line + len(offsets))
    else:
        lines = [first_line + offset for offset in offsets]
    return columns._replace(lines=lines), rejects


def decode_offsets(block: bytes, first_line: int) -> tuple[Columns, list[Reject]]:
    """:func:`decode_chunk` with each row's line as its offset from ``first_line``
    (``range(n)`` when every line is a plain row, else a u64 ``array``), as a
    data frame carries them; the rejects carry their lines.

    The offsets are written by the normaliser's twin (``fast_offsets``), not
    made an int a row.
    """
    js, marks, fast, exact = normalize(block)
    n = len(marks)
    try:
        kinds, clients, txs, amounts = _DECODER.decode(js)
    except (msgspec.ValidationError, msgspec.DecodeError):
        # The normaliser vouched for a line msgspec refuses: never by design,
        # so the whole chunk takes the reference path rather than be trusted.
        return _decode_exactly(block, first_line)
    if fast == n:
        return Columns(range(n), bytes(kinds), clients, txs, amounts), []
    columns = Columns(fast_offsets(marks), bytearray(kinds), clients, txs, amounts)
    rejects: list[Reject] = []
    if fast + marks.count(0) < n:
        for i, raw in zip(_exact_lines(marks), exact.split(b"\n")):
            row = decode_line(raw, first_line + i)
            if isinstance(row, Reject):
                rejects.append(row)
            elif row is not None:  # a valid row the normaliser left to the exact path: in its place
                _insert(columns, i, row)
    return columns, rejects


def _exact_lines(marks: bytes) -> Iterator[int]:
    """The indexes of the lines marked for the exact path, ascending: one ``find`` a
    line, so the plain rows between them cost nothing here."""
    i = marks.find(EXACT_MARK)
    while i >= 0:
        yield i
        i = marks.find(EXACT_MARK, i + 1)


_OFFSETS = array(U64)


def offsets(n: int) -> array:
    """``0, 1, ..., n - 1`` as a u64 array: a slice of one kept array (a copy of
    bytes, where building it from a ``range`` makes an int a row)."""
    if n > len(_OFFSETS):
        _OFFSETS.extend(range(len(_OFFSETS), n))
    return _OFFSETS[:n]


def _insert(columns: Columns, offset: int, row: Row) -> None:
    """Put ``row`` of line ``offset`` (in the chunk) into ``columns`` (a u64 array and lists)
    where its line belongs."""
    at = bisect_left(columns.lines, offset)
    for column, value in zip(columns, (offset, row.kind, row.client, row.tx, row.amount)):
        column.insert(at, value)  # type: ignore[union-attr]


def _decode_exactly(block: bytes, first_line: int) -> tuple[Columns, list[Reject]]:
    """Every line of ``block`` through :func:`decode_line` (lines as offsets)."""
    columns = Columns(array(U64), bytearray(), [], [], [])
    rejects: list[Reject] = []
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        row = decode_line(raw, first_line + i)
        if isinstance(row, Reject):
            rejects.append(row)
        elif row is not None:
            _insert(columns, i, row)
    return columns, rejects


def parse_header(raw: bytes) -> bool:
    """Check the header line (SPEC "Input": the first non-empty line).

    Args:
        raw: the header line's bytes without LF (a leading BOM already removed).

    Returns:
        True if it has the amount column, False for ``type,client,tx``.

    Raises:
        InputError: it is not ``type,client,tx,amount`` (trimmed, any case).
    """
    try:
        text = raw.decode("utf-8").strip()
        names = [n.lower() for n in split_fields(text)]
    except (UnicodeDecodeError, ValueError):
        names = None
    if names == ["type", "client", "tx", "amount"]:
        return True
    if names == ["type", "client", "tx"]:
        return False
    found = raw.decode("utf-8", "backslashreplace").strip()
    if len(found) > 80:
        found = found[:77] + "..."
    raise InputError(f"bad header: expected 'type,client,tx,amount', found {found!r}")
