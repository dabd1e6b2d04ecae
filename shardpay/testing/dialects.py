"""Hypothesis strategies for the CSV dialects the decoder's fast path takes, and their damage.

* :func:`dialect_row` -- a valid row in one of the common dialects (spaces,
  tabs and CRs around fields, whole-field quotes, leading zeros, three-field
  references);
* :func:`damage_row` -- the same row with one damage the fast path must
  leave to the exact path (a space inside a field, a quote or comma inside
  quotes, other whitespace, a byte that is not ASCII...);
* :func:`dialect_blocks` -- whole chunks of such lines, empty lines and
  broken rows mixed, as the reader hands them to a decoder.

The valid rows and their field texts come from :mod:`shardpay.testing.strategies`.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .strategies import BAD_BYTES, EMPTY_LINES, MONEY_KINDS, corrupt_row, field_texts, pick, plain_amount, valid_rows

__all__ = ["COMMON_WHITESPACE", "DAMAGES", "damage_row", "dialect_blocks", "dialect_row"]

COMMON_WHITESPACE = ("", "", "", " ", "  ", "\t", " \t", "\r")
"""Whitespace the fast path takes around a field: spaces, tabs, CRs (and none, most often)."""
_COMMON_WS = st.sampled_from(COMMON_WHITESPACE)
_QUOTE = st.integers(0, 3)  # 0: the field is wholly quoted
_PRINTABLE_IGNORED = st.sampled_from([None, None, "", "", "1.5", "abc", "x y", "-1", "1e3", "1.23456", "\\", "{]"])
"""A reference's amount as the fast path may take it (None: three fields)."""


def dialect_row(draw: st.DrawFn, row: tuple[str, int, int, int]) -> str:
    """A valid row in the common dialects, without line ending: every field plain or
    wholly quoted, spaces, tabs or CRs around it and inside its quotes, ids with
    leading zeros, any legal amount form, a reference with or without its amount:
    ``\t"deposit" , 007,"8 ",.5``."""
    out = []
    fields = field_texts(draw, row, _PRINTABLE_IGNORED)
    for field in fields:
        if draw(_QUOTE) == 0:
            field = '"' + draw(_COMMON_WS) + field + draw(_COMMON_WS) + '"'
        out.append(draw(_COMMON_WS) + field + draw(_COMMON_WS))
    return ",".join(out)


DAMAGES = ("inner space", "quote inside", "escaped quote", "comma in quotes", "other whitespace", "non-ascii",
           "bad byte", "fifth field", "bom", "nul", "open quote", "text after quote")
"""What :func:`damage_row` does to a row. Some leave it valid (other whitespace
around a field, a comma in a reference's quoted amount): the exact path decides."""
_OTHER_WS = ("\x0b", "\x0c", "\u00a0", "\u3000", "\u2028", "\x1f", "\x85")


def damage_row(draw: st.DrawFn, row: tuple[str, int, int, int]) -> bytes:
    """``row`` in a common dialect with one damage of :data:`DAMAGES` (bytes, no line ending)."""
    kind, client, tx, amount = row
    fields = [kind, str(client), str(tx), plain_amount(amount) if kind in MONEY_KINDS else pick(draw, ["", "ab"])]
    how = pick(draw, DAMAGES)
    j = draw(st.integers(0, 3))
    f = fields[j]
    cut = draw(st.integers(0, len(f)))
    if how == "inner space":  # de posit, 1 000: invalid unless in a reference's amount
        fields[j] = f[:cut] + pick(draw, [" ", "\t", "  "]) + f[cut:] if f else "1 0"
    elif how == "quote inside":  # 1"0: data in an unquoted field
        fields[j] = f[:cut] + '"' + f[cut:] if cut else "x" + '"' + f
    elif how == "escaped quote":  # "dis""pute"
        fields[j] = '"' + f[:cut] + '""' + f[cut:] + '"'
    elif how == "comma in quotes":  # "1,5"
        fields[j] = '"' + f[:cut] + "," + f[cut:] + '"'
    elif how == "other whitespace":  # around a field: valid, the exact path strips it
        ws = pick(draw, _OTHER_WS)
        fields[j] = ws + f if draw(st.booleans()) else f + ws
    elif how == "non-ascii":
        fields[j] = f[:cut] + pick(draw, ["é", "\u0661", "\uff11", "€"]) + f[cut:]
    elif how == "bad byte":
        data = [x.encode() for x in fields]
        data[j] = data[j][:cut] + pick(draw, BAD_BYTES) + data[j][cut:]
        return b",".join(data)
    elif how == "fifth field":
        fields.append(pick(draw, ["", "x", "1"]))
    elif how == "bom":
        fields[0] = "\ufeff" + fields[0]
    elif how == "nul":
        fields[j] = f[:cut] + "\x00" + f[cut:]
    elif how == "open quote":
        fields[j] = '"' + f
    else:  # text after quote
        fields[j] = '"' + f + '"' + pick(draw, ["x", "0", " 1"])
    return ",".join(fields).encode()


_BLOCK_LINE = st.sampled_from(["row"] * 6 + ["damaged"] * 2 + ["corrupt", "empty"])
_EMPTY_COMMON = ("", " ", "\t", "\r", " \t\r ")


@st.composite
def dialect_blocks(draw: st.DrawFn, max_lines: int = 30) -> bytes:
    """A chunk of whole lines as the reader hands them to the decoder (each ending in
    LF or CRLF, no header): valid rows in the common dialects, damaged and corrupted
    rows, empty lines."""
    lines = []
    for _ in range(draw(st.integers(0, max_lines))):
        what = draw(_BLOCK_LINE)
        if what == "empty":
            line = pick(draw, _EMPTY_COMMON + EMPTY_LINES).encode()
        else:
            row = draw(valid_rows())
            if what == "row":
                line = dialect_row(draw, row).encode()
            elif what == "damaged":
                line = damage_row(draw, row)
            else:
                line = corrupt_row(draw, row)
        lines.append(line + pick(draw, [b"\n", b"\n", b"\r\n"]))
    return b"".join(lines)


# --------------------------------------------------------------------------
# Whole files
