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
* **Exact path** (:func:`decode_line`): one line, parsed with the ``csv``
  module and :func:`shardpay.money.parse_amount`; it builds the reject
  detail. Only the lines the normaliser does not vouch for take it: invalid
  rows, RFC 4180 escapes (a quote or comma inside a quoted field), other
  whitespace (VT, NO-BREAK SPACE...) and non-ASCII bytes.

Line numbers are physical line numbers (counted by LF) of the input file.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Sequence
from bisect import bisect_left
from itertools import compress
from typing import Annotated, ClassVar, NamedTuple, Union

import msgspec

from .codes import CHARGEBACK, DEPOSIT, DISPUTE, KIND_NAMES, RESOLVE, WITHDRAWAL
from .errors import InputError
from .fields import Client, Tx
from .money import MAX_UNITS, clip, parse_amount
from .rejects import Reject
from .twins import pick

__all__ = [
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
    "normalize",
    "parse_header",
    "split_fields",
]


_twin, NORMALIZER = pick("normalize", "SHARDPAY_NORMALIZE")
normalize = _twin.normalize
"""``normalize(block) -> (json, marks, fast, exact)``: see :mod:`shardpay._normalize_py`.
``NORMALIZER`` says which twin runs: ``"compiled"`` or ``"python"``."""

_KIND_OF = {name: code for code, name in enumerate(KIND_NAMES)}

_Amount = Annotated[int, msgspec.Meta(gt=0, le=MAX_UNITS)]


class _Money(msgspec.Struct, array_like=True, gc=False):
    """A deposit or withdrawal: ``amount`` in 1/10,000 units, > 0."""

    client: Client
    tx: Tx
    amount: _Amount


class _Reference(msgspec.Struct, array_like=True, gc=False):
    """A dispute, resolve or chargeback: its amount field is ignored (``amount`` is 0)."""

    client: Client
    tx: Tx
    ignored: str = ""
    amount: ClassVar[int] = 0


class Deposit(_Money, tag="deposit"):
    """A well-formed deposit row."""

    kind: ClassVar[int] = DEPOSIT


class Withdrawal(_Money, tag="withdrawal"):
    """A well-formed withdrawal row."""

    kind: ClassVar[int] = WITHDRAWAL


class Dispute(_Reference, tag="dispute"):
    """A well-formed dispute row."""

    kind: ClassVar[int] = DISPUTE


class Resolve(_Reference, tag="resolve"):
    """A well-formed resolve row."""

    kind: ClassVar[int] = RESOLVE


class Chargeback(_Reference, tag="chargeback"):
    """A well-formed chargeback row."""

    kind: ClassVar[int] = CHARGEBACK


Row = Union[Deposit, Withdrawal, Dispute, Resolve, Chargeback]
"""A decoded, well-formed row. ``row.kind`` is its kind code."""
_ROW_CLASSES = (Deposit, Withdrawal, Dispute, Resolve, Chargeback)

_Kind = Annotated[int, msgspec.Meta(ge=DEPOSIT, le=CHARGEBACK)]
_Units = Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)]
_DECODER = msgspec.json.Decoder(tuple[list[_Kind], list[Client], list[Tx], list[_Units]])
"""The normaliser's JSON columns -> four lists of ints. Strict: integers only, and
the ranges checked once more (the normaliser already has; an amount of 0 is
a reference's)."""

_FAST_ONLY = bytes([0, 1, 0]) + bytes(253)
_EXACT_ONLY = bytes([0, 0, 1]) + bytes(253)
"""``marks.translate`` tables: 1 where a line's mark is in the JSON (resp. for the exact path)."""


class Columns(NamedTuple):
    """A chunk's well-formed rows as columns of equal length, in line order.

    ``lines`` physical line numbers (a ``range`` or a list), ``kinds`` kind
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
    js, marks, fast, exact = normalize(block)
    n = len(marks)
    try:
        kinds, clients, txs, amounts = _DECODER.decode(js)
    except (msgspec.ValidationError, msgspec.DecodeError):
        # The normaliser vouched for a line msgspec refuses: never by design,
        # so the whole chunk takes the reference path rather than be trusted.
        return _decode_exactly(block, first_line)
    if fast == n:
        return Columns(range(first_line, first_line + n), bytes(kinds), clients, txs, amounts), []
    columns = Columns(list(compress(range(first_line, first_line + n), marks.translate(_FAST_ONLY))),
                      bytearray(kinds), clients, txs, amounts)
    rejects: list[Reject] = []
    if fast + marks.count(0) < n:
        for i, raw in zip(compress(range(n), marks.translate(_EXACT_ONLY)), exact.split(b"\n")):
            row = decode_line(raw, first_line + i)
            if isinstance(row, Reject):
                rejects.append(row)
            elif row is not None:  # a valid row the normaliser left to the exact path: in its place
                _insert(columns, first_line + i, row)
    return columns, rejects


def _insert(columns: Columns, line: int, row: Row) -> None:
    """Put ``row`` of ``line`` into ``columns`` (lists) where its line belongs."""
    at = bisect_left(columns.lines, line)
    for column, value in zip(columns, (line, row.kind, row.client, row.tx, row.amount)):
        column.insert(at, value)  # type: ignore[union-attr]


def _decode_exactly(block: bytes, first_line: int) -> tuple[Columns, list[Reject]]:
    """Every line of ``block`` through :func:`decode_line`."""
    columns = Columns([], bytearray(), [], [], [])
    rejects: list[Reject] = []
    for i, raw in enumerate(block.split(b"\n")[:-1]):
        row = decode_line(raw, first_line + i)
        if isinstance(row, Reject):
            rejects.append(row)
        elif row is not None:
            _insert(columns, first_line + i, row)
    return columns, rejects


# Whitespace around a quoted field is ignored (SPEC): drop it before the csv module sees it.
_SPACE_AROUND_QUOTES = re.compile(r'(?<=")\s+(?=,|$)|(?:(?<=,)|^)\s+(?=")')
_TYPE_LIST = ", ".join(KIND_NAMES)
_FIELD_COUNT = "expected 4 fields (type,client,tx,amount), got {}"


class _OneLine:
    """The input of a csv reader kept for reuse (making one costs ~0.7 us): the line
    put in ``line``, once, then the end (so a quote left open is an error)."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line = self.line
        if line is None:
            raise StopIteration
        self.line = None
        return line


_CSV = threading.local()
"""``.reader``: this thread's ``(_OneLine, csv reader)`` pair."""


def split_fields(text: str) -> list[str]:
    """Split one stripped line into its stripped fields, RFC 4180 quoting.

    Raises:
        ValueError: malformed quoting (e.g. an unterminated quote); the
            message is the reject detail.
    """
    fields = _fields(text)
    if isinstance(fields, str):
        raise ValueError(fields)
    return fields


def _fields(text: str) -> list[str] | str:
    """:func:`split_fields`, with the detail returned instead of raised."""
    if '"' not in text:
        return list(map(str.strip, text.split(",")))
    # A CR is whitespace (SPEC ignores it around fields; str.strip drops it),
    # but the csv module refuses it in an unquoted field: make it a space.
    # (Whitespace other than a space is never printable: most lines skip the regex.)
    if " " in text or not text.isprintable():
        text = _SPACE_AROUND_QUOTES.sub("", text.replace("\r", " "))
    try:
        feed, reader = _CSV.reader
    except AttributeError:  # this thread's first quoted line
        feed = _OneLine()
        reader = csv.reader(feed, strict=True)
        _CSV.reader = feed, reader
    feed.line = text
    try:
        return list(map(str.strip, next(reader)))
    except csv.Error as err:
        return f"malformed quoting: {err}"




def decode_line(raw: bytes, line: int) -> Row | Reject | None:
    """Decode one data line exactly (SPEC "Input"): the reference for the fast path.

    Checks in SPEC's order (UTF-8, quoting, field count, type, client, tx,
    amount) and builds the reject's detail only for the check that fails.

    Args:
        raw: the line's bytes without its LF.
        line: its physical line number.

    Returns:
        A row struct, a :class:`Reject` with reason ``invalid_row``, or None
        for an empty (whitespace-only) line.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        text = raw.decode("utf-8", "backslashreplace").strip()
        return _invalid(line, f"row is not valid UTF-8 (byte {err.start + 1})", text.split(","), text)
    text = text.strip()
    if not text:
        return None
    fields = _fields(text)
    if isinstance(fields, str):
        return _invalid(line, fields, text.split(","), text)
    n = len(fields)
    if n != 4:
        if n != 3:
            return _invalid(line, _FIELD_COUNT.format(n), fields, text)
        fields.append("")
    type_, client, tx, amount = fields
    kind = _KIND_OF.get(type_)
    if kind is None:
        return _invalid(line, f"type {type_!r} is not one of {_TYPE_LIST}", fields, text)
    client_id = _plain_int(client, 65535, 5)
    if client_id is None:
        return _invalid(line, f"client {clip(client)!r} is not an integer 0..65535", fields, text)
    tx_id = _plain_int(tx, 2**32 - 1, 10)
    if tx_id is None:
        return _invalid(line, f"tx {clip(tx)!r} is not an integer 0..4294967295", fields, text)
    if kind <= WITHDRAWAL:
        try:
            units = parse_amount(amount)
        except ValueError as err:
            return _invalid(line, str(err), fields, text)
        return _ROW_CLASSES[kind](client_id, tx_id, units)  # type: ignore[arg-type]
    return _ROW_CLASSES[kind](client_id, tx_id, amount)  # type: ignore[arg-type]


def _plain_int(text: str, limit: int, width: int) -> int | None:
    """``text`` as an int if it is plain ASCII digits (leading zeros allowed) <= ``limit``,
    which has ``width`` digits."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if len(digits) > width:  # also keeps int() below its 4300-digit limit
        return None
    value = int(digits) if digits else 0
    return value if value <= limit else None


_CONTROL = str.maketrans({c: f"\\x{c:02x}" for c in [*range(32), 127]})
_new_reject = tuple.__new__
"""``Reject(...)`` without the named tuple's Python-level ``__new__`` (what its ``_make`` does)."""


def _invalid(line: int, detail: str, fields: list[str], text: str) -> Reject:
    """The reject of an invalid row: ``fields`` as read (split from ``text``, the line),
    made four (more are joined into the amount), control characters shown escaped."""
    n = len(fields)
    if n > 4:
        fields = [fields[0], fields[1], fields[2], ",".join(fields[3:])]
    elif n < 4:
        fields = (fields + ["", "", "", ""])[:4]
    # Control characters (a stray CR, NUL) are shown escaped: the rejects CSV stays one line a row.
    # A field holds one only if the line does, and a string that holds one is not printable.
    if not text.isprintable():
        fields = [f if f.isprintable() else f.translate(_CONTROL) for f in fields]
    return _new_reject(Reject, (line, fields[0], fields[1], fields[2], fields[3], "invalid_row", detail))


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
