"""CSV bytes to typed, validated transaction rows (SPEC "Input").

Two paths give the same result for every line:

* **Fast path** (:func:`decode_block`): a block of whole lines whose bytes pass
  a cheap guard is rewritten into JSON with two ``bytes.replace`` passes and
  decoded by msgspec in one C call into typed row structs, with range checks::

      deposit,1,7,1.5\\n  ->  ["deposit","1","7","1.5e4"]  ->  Deposit(client=1, tx=7, amount=15000)

  msgspec has no CSV decoder; every field becomes a JSON string and the
  decoder runs with ``strict=False``, which turns numeric strings into ints
  following JSON's number grammar. Appending ``e4`` to the amount makes the
  amount come out in 1/10,000 units, exactly: the guard sends to the exact
  path every line where that trick could be wrong (see :func:`_is_clean`).
* **Exact path** (:func:`decode_line`): one line, parsed with the ``csv``
  module and :func:`shardpay.money.parse_amount`; it handles quotes,
  whitespace, three-field rows, invalid UTF-8 and every invalid row, and builds
  the reject detail. Only lines that fail the guard, or blocks msgspec refuses,
  take it.

Line numbers are physical line numbers (counted by LF) of the input file.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from itertools import accumulate, compress, repeat
from operator import add, is_not, not_
from typing import Annotated, ClassVar, Union

import msgspec

from .codes import CHARGEBACK, DEPOSIT, DISPUTE, KIND_NAMES, RESOLVE, WITHDRAWAL
from .errors import InputError
from .money import clip, parse_amount
from .rejects import Reject

__all__ = [
    "Chargeback",
    "Deposit",
    "Dispute",
    "Resolve",
    "Row",
    "Withdrawal",
    "decode_chunk",
    "decode_line",
    "parse_header",
    "split_fields",
]

_KIND_OF = {name: code for code, name in enumerate(KIND_NAMES)}

_Client = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Tx = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
# Below 2**53 units a double holds every integer exactly, so a guarded amount
# (at most 4 decimals) decodes exactly; larger ones take the exact path.
_FastAmount = Annotated[int, msgspec.Meta(gt=0, lt=2**53)]


class _Money(msgspec.Struct, array_like=True, gc=False):
    """A deposit or withdrawal: ``amount`` in 1/10,000 units, > 0."""

    client: _Client
    tx: _Tx
    amount: int


class _Reference(msgspec.Struct, array_like=True, gc=False):
    """A dispute, resolve or chargeback: its amount field is ignored (``amount`` is 0)."""

    client: _Client
    tx: _Tx
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


# The fast decoder's amount field is range-checked; the classes above are
# reused with a stricter field type through subclassing.
class _FastDeposit(Deposit, tag="deposit"):
    amount: _FastAmount


class _FastWithdrawal(Withdrawal, tag="withdrawal"):
    amount: _FastAmount


_FAST_DECODER = msgspec.json.Decoder(
    list[Union[_FastDeposit, _FastWithdrawal, Dispute, Resolve, Chargeback]], strict=False
)


# --- the guard ------------------------------------------------------------
# The skeleton of a block: digits and lowercase letters other than 'e' are
# deleted; 'e', ',', '.' and LF stay; anything else (space, quote, upper case,
# '-', '+', '\r', non-ASCII, ...) becomes '?'. One bytes.translate pass.
_SKELETON = bytearray(b"?" * 256)
for _b in b"e,.\n":
    _SKELETON[_b] = _b
_SKELETON = bytes(_SKELETON)
_DROP = b"0123456789abcdfghijklmnopqrstuvwxyz"
_FIVE_DECIMALS = re.compile(rb"\.[0-9]{5}")
"""A point followed by five digits: the float parse behind ``e4`` is exact only up to 4 decimals."""
_ROW_SKELETON = b",,,\n" * 16384


def _is_clean(block: bytes) -> bool:
    """True if every line of ``block`` (whole lines, ending in LF) is safe for the fast path.

    Safe means: only ``[a-z0-9,.]`` bytes; exactly three commas; no ``.`` in the
    type, client or tx field (msgspec would read ``1.0`` as 1); no exponent
    (``1e3`` would be 1000); no run of five or more digits after a point (the
    float parse behind ``e4`` is exact only up to 4 decimals). What the guard
    lets through, msgspec either decodes exactly as the exact path would, or
    refuses (leading zeros, ``5.``, ``.5``, unknown type, out-of-range numbers).
    :func:`decode_chunk` applies the same test to a whole chunk, then per line.
    """
    return _guard(block)[1]


def _guard(block: bytes) -> tuple[bytes, bool]:
    """``(skeleton, clean)`` of ``block``: the per-line skeleton (the type's e's,
    then ``,,,.\n`` or ``,,,\n`` when clean), and :func:`_is_clean`'s answer.

    About 85 ns a row here: one ``translate`` pass, one regex search for a
    point and five digits, and a few substring tests on the short skeleton.
    """
    skel = block.translate(_SKELETON, _DROP)
    clean = (
        b",e" not in skel and b".e" not in skel and b".," not in skel
        and _all_rows(skel.translate(None, b".e"))
        and _FIVE_DECIMALS.search(block) is None
    )
    return skel, clean


def _to_json(block: bytes) -> bytes:
    """``a,b,c,d\\n...`` -> ``[["a","b","c","de4"],...]`` (block ends in LF)."""
    return b'[["' + block[:-1].replace(b",", b'","').replace(b"\n", b'e4"],["') + b'e4"]]'


_ERR_INDEX = re.compile(r"\$\[(\d+)\]")


def decode_chunk(block: bytes, first_line: int) -> tuple[Sequence[int], list, list[Reject]]:
    """Decode whole lines of CSV data rows (SPEC "Input").

    Args:
        block: bytes holding whole lines, each ending in LF (CRLF allowed),
            with no header.
        first_line: the physical line number of the block's first line.

    Returns:
        ``(lines, rows, rejects)``: the well-formed rows in line order with
        their line numbers (``rows[i]`` is on line ``lines[i]``), and the
        invalid rows as :class:`Reject` records (reason ``invalid_row``) in
        line order. Empty lines are skipped.
    """
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    skel, clean = _guard(block)
    if clean:
        return _decode_run(block, first_line)
    # Some line needs the exact path: find them from the skeleton (one set
    # lookup a line, at C level) and decode all the others with msgspec.
    raws = block.split(b"\n")
    raws.pop()  # the block ends in LF
    n = len(raws)
    fast = list(map(_CLEAN_SKELETONS.__contains__, skel.split(b"\n")))
    fast.pop()  # the empty piece after the last LF
    line, counted = 0, 0
    for m in _FIVE_DECIMALS.finditer(block):  # five or more decimals: exact path (fifth-decimal zeros, rounding)
        line += block.count(b"\n", counted, m.start())
        counted = m.start()
        fast[line] = False
    slots: list = [None] * n
    rejects: list[Reject] = []
    good = list(compress(range(n), fast))
    if good:
        _decode_lines(list(compress(raws, fast)), good, slots, first_line, rejects)
    for i in compress(range(n), map(not_, fast)):
        row = decode_line(raws[i], first_line + i)
        if isinstance(row, Reject):
            rejects.append(row)
        else:
            slots[i] = row
    rejects.sort(key=_line_of)
    return _gather(slots, first_line) + (rejects,)


def _gather(slots: list, first_line: int) -> tuple[list[int], list]:
    """``(lines, rows)`` of the filled slots (a row struct is always true; empty slots are None)."""
    return list(compress(range(first_line, first_line + len(slots)), map(is_not, slots, repeat(None)))), \
        list(filter(None, slots))


def _line_of(r: Reject) -> int:
    return r.line


# Skeleton of a line the fast path may take: 0, 1 or 2 'e's from the type
# (withdrawal; deposit, dispute, chargeback; resolve), three commas, at most
# one point (in the amount).
_CLEAN_SKELETONS = frozenset(e + b",,," + p for e in (b"", b"e", b"ee") for p in (b"", b"."))


def _all_rows(bare: bytes) -> bool:
    """True if ``bare`` is ``,,,\\n`` repeated: every line has exactly three commas and nothing odd."""
    step = len(_ROW_SKELETON)
    for start in range(0, len(bare), step):
        piece = bare[start : start + step]
        if piece != _ROW_SKELETON[: len(piece)]:
            return False
    return True


def _decode_run(block: bytes, first_line: int) -> tuple[Sequence[int], list, list[Reject]]:
    """Fast-decode guarded consecutive lines; a line msgspec refuses takes the exact path."""
    try:
        rows = _FAST_DECODER.decode(_to_json(block))
        return range(first_line, first_line + len(rows)), rows, []
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    raws = block.split(b"\n")
    raws.pop()
    slots: list = [None] * len(raws)
    rejects: list[Reject] = []
    _decode_lines(raws, range(len(raws)), slots, first_line, rejects)
    return _gather(slots, first_line) + (rejects,)


SPAN_AFTER_REFUSAL = 64
"""Rows per msgspec call once a call was refused in a chunk: a refused call loses
the rows it decoded before the bad one, so a chunk with many bad lines (``messy``)
decodes in short spans; one refusal alone costs one re-decode of a prefix."""


def _decode_lines(raws: list[bytes], where: Sequence[int], slots: list, first_line: int,
                  rejects: list[Reject]) -> None:
    """Decode guard-clean lines (exactly 3 commas each) with as few msgspec calls as it takes.

    ``raws[j]`` is the line at index ``where[j]`` of the chunk; its row goes to
    ``slots[where[j]]``. A line msgspec refuses (out of range, unknown type,
    leading zeros, zero amount) takes the exact path; the lines before it in
    the same call are decoded again alone, and decoding resumes after it in
    the same JSON text, in spans of :data:`SPAN_AFTER_REFUSAL` rows from then
    on (so msgspec decodes a line at most twice, and usually once).
    """
    js = bytearray(_to_json(b"\n".join(raws) + b"\n"))
    # A guard-clean line of length L becomes L + 12 bytes of JSON, plus a comma;
    # row j starts at starts[j], after a "[" (j = 0) or a ",".
    starts = list(accumulate(map(add, map(len, raws), repeat(13)), initial=1))
    i0, n, span = 0, len(raws), len(raws)
    with memoryview(js) as mv:
        while i0 < n:
            # Decode rows i0..end-1 in place: a "[" over the separator before
            # row i0, a "]" over the one after row end-1 (restored after).
            end = i0 + span if i0 + span < n else n
            js[starts[i0] - 1] = 0x5B
            if end < n:
                js[starts[end] - 1] = 0x5D
            try:
                rows = _FAST_DECODER.decode(mv[starts[i0] - 1 : starts[end]])
                k = end
            except (msgspec.ValidationError, msgspec.DecodeError) as err:
                m = _ERR_INDEX.search(str(err))
                k = i0 + int(m.group(1)) if m else i0
                last = k + 1 if m else end  # unexpected error text: the whole span exactly
                rows = None
                span = SPAN_AFTER_REFUSAL
            if end < n:
                js[starts[end] - 1] = 0x2C
            if rows is None and k > i0:  # rows i0..k-1 are fine: decode them alone
                js[starts[k] - 1] = 0x5D
                rows = _FAST_DECODER.decode(mv[starts[i0] - 1 : starts[k]])
                js[starts[k] - 1] = 0x2C
            if rows:
                for w, r in zip(where[i0:k], rows):
                    slots[w] = r
            if k == end:
                i0 = end
                continue
            for j in range(k, last):
                row = decode_line(raws[j], first_line + where[j])
                if isinstance(row, Reject):
                    rejects.append(row)
                elif row is not None:
                    slots[where[j]] = row
            i0 = last


_DIGITS = re.compile(r"[0-9]+")
# Whitespace around a quoted field is ignored (SPEC): drop it before the csv module sees it.
_SPACE_AROUND_QUOTES = re.compile(r'"\s+(?=,|$)|(?:(?<=,)|^)\s+(?=")')
_TYPE_LIST = ", ".join(KIND_NAMES)


def split_fields(text: str) -> list[str]:
    """Split one stripped line into its stripped fields, RFC 4180 quoting.

    Raises:
        ValueError: malformed quoting (e.g. an unterminated quote); the
            message is the reject detail.
    """
    if '"' not in text:
        return [f.strip() for f in text.split(",")]
    # A CR is whitespace (SPEC ignores it around fields; str.strip drops it),
    # but the csv module refuses it in an unquoted field: make it a space.
    text = _SPACE_AROUND_QUOTES.sub(lambda m: m.group()[:1] if m.group()[:1] == '"' else "", text.replace("\r", " "))
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as err:
        raise ValueError(f"malformed quoting: {err}") from None
    return [f.strip() for f in fields]


def decode_line(raw: bytes, line: int) -> Row | Reject | None:
    """Decode one data line exactly (SPEC "Input"): the reference for the fast path.

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
        return _invalid(line, f"row is not valid UTF-8 (byte {err.start + 1})", text.split(","))
    text = text.strip()
    if not text:
        return None
    try:
        fields = split_fields(text)
    except ValueError as err:
        return _invalid(line, str(err), text.split(","))
    if len(fields) == 3:
        fields.append("")
    if len(fields) != 4:
        return _invalid(line, f"expected 4 fields (type,client,tx,amount), got {len(fields)}", fields)
    type_, client, tx, amount = fields
    kind = _KIND_OF.get(type_)
    if kind is None:
        return _invalid(line, f"type {type_!r} is not one of {_TYPE_LIST}", fields)
    client_id = _plain_int(client, 65535)
    if client_id is None:
        return _invalid(line, f"client {clip(client)!r} is not an integer 0..65535", fields)
    tx_id = _plain_int(tx, 2**32 - 1)
    if tx_id is None:
        return _invalid(line, f"tx {clip(tx)!r} is not an integer 0..4294967295", fields)
    if kind <= WITHDRAWAL:
        try:
            units = parse_amount(amount)
        except ValueError as err:
            return _invalid(line, str(err), fields)
        return _ROW_CLASSES[kind](client_id, tx_id, units)
    return _ROW_CLASSES[kind](client_id, tx_id, amount)


def _plain_int(text: str, limit: int) -> int | None:
    """``text`` as an int if it is plain ASCII digits (leading zeros allowed) <= ``limit``."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0")
    if len(digits) > len(str(limit)):  # also keeps int() below its 4300-digit limit
        return None
    value = int(digits or "0")
    return value if value <= limit else None


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]}
_HAS_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _invalid(line: int, detail: str, fields: list[str]) -> Reject:
    n = len(fields)
    if n == 4:
        f = tuple(fields)
    elif n > 4:
        f = (fields[0], fields[1], fields[2], ",".join(fields[3:]))
    else:
        f = (*fields, "", "", "", "")[:4]
    # Control characters (a stray CR, NUL) are shown escaped: the rejects CSV stays one line a row.
    if _HAS_CONTROL.search(f[0]) or _HAS_CONTROL.search(f[1]) or _HAS_CONTROL.search(f[2]) or _HAS_CONTROL.search(f[3]):
        f = tuple(x.translate(_CONTROL) for x in f)
    return Reject(line, *f, "invalid_row", detail)


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
