"""CSV rows in the common dialects -> canonical JSON columns for the msgspec fast path (pure Python).

The pure twin of the compiled :mod:`shardpay._normalize`: the same
interface and the same output bytes for every input (a property test
compares them); :mod:`shardpay.decode` uses it when the extension is
missing or ``SHARDPAY_NORMALIZE=python``.

:func:`normalize` reads a block of whole lines and writes the fields of each
line it can vouch for into canonical JSON columns; every other line is
marked for the exact path (:func:`shardpay.decode.decode_line`), which decides whether it
is valid and says why not. A line is vouched for when it is a valid row
(SPEC "Input") in this grammar:

* bytes: printable ASCII, spaces, tabs and CRs only. Any other byte sends
  the line to the exact path (it may be other whitespace, or not UTF-8).
* Fields split at commas. Spaces, tabs and CRs around a field are dropped,
  also just inside its quotes. A field may be wholly in double quotes when
  it holds no quote and no comma; any other quote (``""``, an open quote,
  text after a closing quote, a quote inside an unquoted field) sends the
  line to the exact path.
* Four fields, or three for ``dispute``, ``resolve`` and ``chargeback``.
* ``type``: one of the five names, exactly.
* ``client``: ASCII digits, at most 65535; ``tx``: ASCII digits, at most
  4294967295; leading zeros allowed.
* ``amount`` of a deposit or withdrawal: ASCII digits with at most one point
  and at least one digit (``1``, ``1.5``, ``.5``, ``5.``, ``007.50``), digits
  past the fourth decimal only if zeros, at most 15 digits before the point
  once leading zeros are gone, 1..MAX_UNITS in 1/10,000 units. A reference's
  amount is ignored, whatever printable text it holds (no quote inside it,
  no comma inside its quotes).

A line of spaces, tabs and CRs only is empty. The vouched lines, in line
order, become four JSON arrays of integers, one a field::

    [[<kind>,...],[<client>,...],[<tx>,...],[<units>,...]]

``kind`` the kind code (:mod:`shardpay.codes`: 0 deposit .. 4 chargeback),
``units`` the amount in 1/10,000 units (0 for a dispute, resolve or
chargeback), every number in plain decimal (no leading zero). msgspec then
decodes integers only, straight into one list a column: no string to
convert, no float, no object a row, nothing left to doubt.

Two ways to the same bytes: a block in the canonical dialect (the one
``shardpay generate`` writes: ``deposit,1,7,1.5``, LF or CRLF) is checked
and converted at C speed by ``bytes`` methods, a regex and msgspec itself
(:func:`_canonical`); any other block is read line by line with one regex
(:data:`_LINE`) that is the grammar above.
"""

from __future__ import annotations

import re
from array import array
from operator import attrgetter
from typing import Annotated, Union

import msgspec

from .codes import KIND_NAMES
from .fields import Client, Tx
from .frames import U64

__all__ = ["EMPTY", "EXACT", "FAST", "fast_offsets", "normalize"]

EMPTY, FAST, EXACT = 0, 1, 2
"""The marks, one a line: an empty line, a row in the JSON, a line for the exact path."""
KIND_CODES = {b"deposit": b"0", b"withdrawal": b"1", b"dispute": b"2", b"resolve": b"3", b"chargeback": b"4"}
"""A type name's kind code, as the JSON writes it (:mod:`shardpay.codes`)."""
NO_ROWS = b"[[],[],[],[]]"
"""The JSON of a block with no vouched line."""

MAX_UNITS = 2**63 - 1
_MAX_UNITS_TEXT = b"%d" % MAX_UNITS
_MAX_CLIENT, _MAX_TX = b"65535", b"4294967295"


def normalize(block: bytes) -> tuple[bytes, bytes, int, bytes]:
    """Rewrite whole CSV lines into one JSON array of canonical rows (see the module docstring).

    Args:
        block: data lines, each ending in LF (CR before it allowed), no header.

    Returns:
        ``(json, marks, fast, exact)``: the JSON columns of every line the
        fast path takes, in line order; one byte a line (:data:`EMPTY`,
        :data:`FAST`: in the JSON, :data:`EXACT`: the exact path); how many
        lines are in the JSON; and the lines marked :data:`EXACT`, as read,
        each with its LF, in line order (so the exact path never splits the
        whole block).

    Raises:
        ValueError: ``block`` is not empty and does not end in LF.
    """
    if not block:
        return NO_ROWS, b"", 0, b""
    if block[-1] != 10:
        raise ValueError("the block must end in LF")
    js = _canonical(block)
    if js is not None:
        n = block.count(b"\n")
        return js, b"\x01" * n, n, b""
    return _line_by_line(block)


# --- the grammar, one line at a time ---------------------------------------

_WS = rb"[ \t\r]*"
_TEXT = rb"[\t\r\x20\x21\x23-\x2b\x2d-\x7e]"
"""A byte of a reference's ignored amount: printable ASCII, tab or CR, not a quote or a comma."""


def _field(name: str, content: bytes) -> bytes:
    """A field: ``content`` with whitespace around it, optionally wholly quoted
    (whitespace just inside the quotes too); ``q_<name>`` is the opening quote."""
    return (_WS + b"(?P<q_%s>\")?" % name.encode() + _WS + content + _WS
            + b"(?(q_%s)\")" % name.encode() + _WS)


_ID = rb"0*(?P<%s>[0-9]{1,%d})"
"""An id's digits after its leading zeros (``0`` stays ``0``), at most ``%d`` of them."""
_LINE = re.compile(
    _field("k1", rb"(?P<money>deposit|withdrawal)") + b","
    + _field("c1", _ID % (b"c1", 5)) + b"," + _field("t1", _ID % (b"t1", 10)) + b","
    + _field("a", rb"0*(?P<whole>[0-9]{0,15})(?:\.(?P<frac>[0-9]{0,4})0*)?")
    + b"|"
    + _field("k2", rb"(?P<ref>dispute|resolve|chargeback)") + b","
    + _field("c2", _ID % (b"c2", 5)) + b"," + _field("t2", _ID % (b"t2", 10))
    + rb'(?:,' + _WS + rb'(?:"' + _TEXT + rb'*"' + _WS + b"|" + _TEXT + rb"*))?"
)
"""A line the fast path may take, up to the value checks :func:`_row` makes
(the id ranges, an amount of at least one unit and at most MAX_UNITS)."""
_PAD = (b"0000", b"000", b"00", b"0", b"")
"""Zeros that make ``frac`` four decimals, by its length."""
_BLANK = re.compile(rb"[ \t\r]*")


def _row(raw: bytes) -> tuple[bytes, bytes, bytes, bytes] | None:
    """The JSON fields ``(kind, client, tx, units)`` of one line (no LF), or None for the exact path."""
    m = _LINE.fullmatch(raw)
    if m is None:
        return None
    kind = m.group("money")
    if kind is None:
        kind, client, tx = m.group("ref", "c2", "t2")
        units = b"0"
    else:
        client, tx, whole, frac = m.group("c1", "t1", "whole", "frac")
        frac = frac or b""
        units = (whole + frac + _PAD[len(frac)]).lstrip(b"0")
        if not units or (len(units) == 19 and units > _MAX_UNITS_TEXT):
            return None  # zero (or no digit at all), or above MAX_UNITS
    if (len(client) == 5 and client > _MAX_CLIENT) or (len(tx) == 10 and tx > _MAX_TX):
        return None
    return KIND_CODES[kind], client, tx, units


def _line_by_line(block: bytes) -> tuple[bytes, bytes, int, bytes]:
    rows: list[tuple[bytes, bytes, bytes, bytes]] = []
    marks = bytearray()
    exact = bytearray()
    for raw in block.split(b"\n")[:-1]:
        row = _row(raw)
        if row is not None:
            rows.append(row)
            marks.append(FAST)
        elif _BLANK.fullmatch(raw):
            marks.append(EMPTY)
        else:
            marks.append(EXACT)
            exact += raw + b"\n"
    if not rows:
        return NO_ROWS, bytes(marks), 0, bytes(exact)
    return b"[[" + b"],[".join(b",".join(col) for col in zip(*rows)) + b"]]", bytes(marks), len(rows), bytes(exact)


# --- the canonical dialect at C speed --------------------------------------
# A block in the canonical dialect is checked by a skeleton (one translate),
# rewritten into msgspec's JSON with two bytes.replace passes, decoded by
# msgspec with strict=False (a numeric string becomes an int; an amount with
# "e4" appended comes out in 1/10,000 units), and its columns encoded back:
# the result is the JSON above, byte for byte, or the block goes line by line.

_table = bytearray(b"?" * 256)
for _b in b"e,.\n":
    _table[_b] = _b
_SKELETON = bytes(_table)
"""Digits and lowercase letters other than 'e' are deleted; 'e', ',', '.' and LF
stay; anything else (space, quote, upper case, sign, CR, non-ASCII) becomes '?'."""
_DROP = b"0123456789abcdfghijklmnopqrstuvwxyz"
_ROW_SKELETON = b",,,\n" * 16384
_FIVE_DECIMALS = re.compile(rb"\.[0-9]{5}")
"""A point and five digits: the float parse behind ``e4`` is exact only up to 4 decimals."""


_E4Amount = Annotated[int, msgspec.Meta(gt=0, lt=2**53)]


def _row_struct(kind: int, name: str) -> type[msgspec.Struct]:
    """The struct one kind's rows decode into, tagged with the type's name: a deposit
    or withdrawal has an ``amount`` (units, below 2**53: the ``e4`` parse is exact);
    a reference ignores its amount text, and its ``amount`` is 0."""
    last = ("amount", _E4Amount) if kind <= 1 else ("ignored", str)
    extra = {"kind": kind} if kind <= 1 else {"kind": kind, "amount": 0}
    return msgspec.defstruct(name.title(), [("client", Client), ("tx", Tx), last], tag=name,
                             namespace=extra, array_like=True, gc=False)


_FIELDS = tuple(attrgetter(name) for name in ("kind", "client", "tx", "amount"))
"""The columns of the JSON, read off each row."""
_E4_DECODER = msgspec.json.Decoder(
    list[Union[tuple(_row_struct(kind, name) for kind, name in enumerate(KIND_NAMES))]], strict=False  # type: ignore[misc]
)
_ENCODER = msgspec.json.Encoder()


def _canonical(block: bytes) -> bytes | None:
    """The JSON of a block whose every line is a valid row in the canonical dialect
    (``type,client,tx,amount``: no whitespace but a CR before the LF, no quotes, no
    leading zeros, no ``.5`` or ``5.``, at most 4 decimals, an empty amount for the
    reference kinds), or None.

    Safe because msgspec refuses every line the grammar above would treat
    otherwise: an unknown type (no tag), an empty, signed, hex or
    leading-zero number (not JSON), ``.5`` and ``5.`` (not JSON), an amount
    of zero or not below 2**53 units (the ranges below; below 2**53 a double
    holds every integer, so ``e4`` is exact), and an id out of range.
    Whatever the skeleton lets through is one of those or a valid row.
    """
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    skel = block.translate(_SKELETON, _DROP)
    if (
        b",e" in skel or b".e" in skel or b".," in skel  # an exponent; a point in type, client or tx
        or not _all_rows(skel.translate(None, b".e"))
        or _FIVE_DECIMALS.search(block) is not None
    ):
        return None
    try:
        rows = _E4_DECODER.decode(b'[["' + block[:-1].replace(b",", b'","').replace(b"\n", b'e4"],["') + b'e4"]]')
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if b'"]' in _ENCODER.encode(rows).replace(b',"e4"]', b"]"):
        return None  # a reference's amount held text: line by line
    return _ENCODER.encode([list(map(field, rows)) for field in _FIELDS])


def _all_rows(bare: bytes) -> bool:
    """True if ``bare`` is ``,,,\\n`` repeated: every line has exactly three commas and nothing odd."""
    step = len(_ROW_SKELETON)
    for start in range(0, len(bare), step):
        piece = bare[start : start + step]
        if piece != _ROW_SKELETON[: len(piece)]:
            return False
    return True


def fast_offsets(marks: bytes) -> array:
    """The offsets of the lines marked for the fast path.

    Args:
        marks: :func:`normalize`'s marks, one byte a line.

    Returns:
        A u64 ``array`` of the indexes ``i`` with ``marks[i] == FAST``, ascending.
    """
    return array(U64, (i for i, mark in enumerate(marks) if mark == FAST))
