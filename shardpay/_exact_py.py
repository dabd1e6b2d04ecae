"""The exact path in pure Python: one line, every check in SPEC's order, and its reject detail.

The reference that the fast path (:func:`shardpay.decode.decode_chunk`) is
tested against, and the twin of :mod:`shardpay._exact` (``_exact.pyx``),
which checks the invalid rows met most in C and gives the same result for
every line (a property test compares them). :mod:`shardpay.decode` picks
the compiled twin unless it failed to build or ``SHARDPAY_EXACT=python``.

Only the lines the normaliser does not vouch for take this path: invalid
rows, RFC 4180 escapes (a quote or comma inside a quoted field), other
whitespace (VT, NO-BREAK SPACE...) and non-ASCII bytes. A line is split
with the ``csv`` module when it holds a quote, and its amount parsed by
:func:`shardpay.money.parse_amount`; the detail is built only for the check
that fails.
"""

from __future__ import annotations

import csv
import re
import threading

from .codes import KIND_NAMES, WITHDRAWAL
from .fields import ROW_CLASSES, Row
from .money import clip, parse_amount
from .rejects import Reject

__all__ = ["BAD_CLIENT", "BAD_TX", "BAD_TYPE", "CONTROL", "FIELD_COUNT", "KIND_OF", "count_and_type", "decode_line",
           "split_fields"]

KIND_OF = {name: code for code, name in enumerate(KIND_NAMES)}
"""Type field -> kind code."""

# Whitespace around a quoted field is ignored (SPEC): drop it before the csv module sees it.
_SPACE_AROUND_QUOTES = re.compile(r'(?<=")\s+(?=,|$)|(?:(?<=,)|^)\s+(?=")')
FIELD_COUNT = "expected 4 fields (type,client,tx,amount), got {}"
BAD_TYPE = "type {!r} is not one of " + ", ".join(KIND_NAMES)
BAD_CLIENT = "client {!r} is not an integer 0..65535"
BAD_TX = "tx {!r} is not an integer 0..4294967295"
"""The details of an invalid row's field count, type, client and tx: templates over
the count or the field as read (a client or tx shortened by :func:`clip`); the
compiled twin words them the same."""


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
    kind, detail = count_and_type(fields)
    if kind is None:
        return _invalid(line, detail, fields, text)
    _, client, tx, amount = fields
    client_id = _plain_int(client, 65535, 5)
    if client_id is None:
        return _invalid(line, BAD_CLIENT.format(clip(client)), fields, text)
    tx_id = _plain_int(tx, 2**32 - 1, 10)
    if tx_id is None:
        return _invalid(line, BAD_TX.format(clip(tx)), fields, text)
    if kind <= WITHDRAWAL:
        try:
            units = parse_amount(amount)
        except ValueError as err:
            return _invalid(line, str(err), fields, text)
        return ROW_CLASSES[kind](client_id, tx_id, units)  # type: ignore[arg-type]
    return ROW_CLASSES[kind](client_id, tx_id, amount)  # type: ignore[arg-type]


def count_and_type(fields: list[str]) -> tuple[int | None, str]:
    """SPEC's field count and type checks on a line's fields (split, stripped), both twins'.

    A three-field row is made four (its amount empty), in place.

    Returns:
        ``(kind code, "")``, or ``(None, detail)`` for the first check that fails.
    """
    n = len(fields)
    if n != 4:
        if n != 3:
            return None, FIELD_COUNT.format(n)
        fields.append("")
    kind = KIND_OF.get(fields[0])
    if kind is None:
        return None, BAD_TYPE.format(fields[0])
    return kind, ""


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


CONTROL = str.maketrans({c: f"\\x{c:02x}" for c in [*range(32), 127]})
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
        fields = [f if f.isprintable() else f.translate(CONTROL) for f in fields]
    return _new_reject(Reject, (line, fields[0], fields[1], fields[2], fields[3], "invalid_row", detail))
