"""Property 4: decoding. Any rendering of a valid row decodes to that row; one broken field is
``invalid_row`` for that line only; the decoder and the model's parser agree on any line.

Blocks go through :func:`shardpay.decode.decode_chunk`, so both paths are
exercised: rows in the common dialects take the msgspec fast path, the rest
(exotic whitespace, escaped quotes, invalid rows) the exact path, line by
line. The fast-path properties run under each normaliser twin.
"""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import shardpay.decode as decode_mod
from shardpay.testing import model
from shardpay.codes import KIND_NAMES
from shardpay.decode import decode_chunk, decode_line, parse_header
from shardpay.rejects import Reject
from shardpay.errors import InputError
from shardpay.testing.dialects import dialect_row
from shardpay.testing.strategies import (
    AVOID_CR_ON_QUOTED_LINES,
    BAD_HEADERS,
    HEADERS,
    LINE_ENDINGS,
    corrupted_rows,
    rendered_rows,
    valid_rows,
)
from tests.normalize_twins import TWINS, using

ROWS = st.lists(valid_rows(), min_size=1, max_size=12)
FIRST_LINES = st.one_of(st.just(2), st.integers(2, 2**40))


def decoded(block: bytes, first_line: int) -> tuple[list[tuple], list[tuple[int, str]]]:
    """``[(line, kind name, client, tx, amount)]`` and ``[(line, reason)]`` of a block."""
    columns, rejects = decode_chunk(block, first_line)
    rows = [(line, KIND_NAMES[kind], client, tx, amount) for line, kind, client, tx, amount in zip(*columns)]
    assert [line for line, *_ in rows] == sorted(line for line, *_ in rows), "rows out of line order"
    return rows, [(r.line, r.reason) for r in rejects]


def expected(rows: list[tuple], first_line: int, skip: int | None = None) -> list[tuple]:
    return [(first_line + i, *row) for i, row in enumerate(rows) if i != skip]


def model_row(line: bytes) -> tuple | None:
    """The model's reading of one data line: ``(kind, client, tx, amount)``, or None if invalid."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    fields = model.split_fields(text)
    return None if fields is None else model.parse_row(fields)


def open_bug(line: bytes) -> bool:
    """The line hits the open CR-next-to-quotes engine bug (see strategies.AVOID_CR_ON_QUOTED_LINES)."""
    text = line.decode("utf-8", "replace").strip()
    return AVOID_CR_ON_QUOTED_LINES and '"' in text and "\r" in text


@st.composite
def rendered_blocks(draw, rows, messy=True):
    """The rows as one block of lines, each rendered (messy or canonical), each with a line ending."""
    lines = [draw(rendered_rows(row, messy=messy)) for row in rows]
    endings = [draw(st.sampled_from(LINE_ENDINGS)) if messy else "\n" for _ in rows]
    return "".join(line + end for line, end in zip(lines, endings)).encode()


@given(data=st.data(), rows=ROWS, first_line=FIRST_LINES)
def test_any_rendering_of_valid_rows_decodes_to_the_rows(data, rows, first_line):
    clean = data.draw(rendered_blocks(rows, messy=False), label="canonical block")
    messy = data.draw(rendered_blocks(rows, messy=True), label="messy block")
    want = expected(rows, first_line)
    assert decoded(clean, first_line) == (want, [])
    assert decoded(messy, first_line) == (want, [])
    for i, line in enumerate(messy.split(b"\n")[:-1]):
        assert model_row(line) == rows[i], line  # the oracle reads the same row (checks the strategy too)


@given(data=st.data(), rows=ROWS, first_line=FIRST_LINES)
def test_one_corrupted_row_is_invalid_and_its_neighbours_untouched(data, rows, first_line):
    bad = data.draw(st.integers(0, len(rows) - 1), label="corrupted index")
    messy = data.draw(st.booleans(), label="messy neighbours")
    lines = [data.draw(rendered_rows(row, messy=messy)).encode() for row in rows]
    lines[bad] = data.draw(corrupted_rows(rows[bad]), label="corrupted line")
    block = b"".join(line + b"\n" for line in lines)
    rows_got, rejects = decoded(block, first_line)
    assert rejects == [(first_line + bad, "invalid_row")]
    assert rows_got == expected(rows, first_line, skip=bad)
    assert model_row(lines[bad]) is None  # the oracle rejects it too


@settings(max_examples=max(10, settings().max_examples // 6))
@given(rows=st.lists(valid_rows(), min_size=1, max_size=4), data=st.data())
def test_long_clean_blocks_with_one_bad_row_far_in(rows, data):
    """Blocks of 4,097 to 9,097 short rows with one broken row anywhere."""
    n = 4097 + data.draw(st.integers(0, 5000), label="extra rows")
    many = (rows * (n // len(rows) + 1))[:n]
    bad = data.draw(st.sampled_from([0, 4095, 4096, n - 1]) | st.integers(0, n - 1), label="corrupted index")
    lines = [f"{k},{c},{t},{_amount(a) if k in ('deposit', 'withdrawal') else ''}".encode() for k, c, t, a in many]
    lines[bad] = data.draw(corrupted_rows(many[bad]), label="corrupted line")
    rows_got, rejects = decoded(b"\n".join(lines) + b"\n", 2)
    assert rejects == [(2 + bad, "invalid_row")]
    assert rows_got == expected(many, 2, skip=bad)


def _amount(units: int) -> str:
    whole, frac = divmod(units, 10_000)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".")


CANONICAL = st.lists(valid_rows(), min_size=1, max_size=30)


@pytest.mark.parametrize("normalize", TWINS)
@given(rows=CANONICAL, data=st.data(), first_line=FIRST_LINES)
def test_valid_lines_in_the_common_dialects_never_take_the_exact_path(normalize, rows, data, first_line):
    """The fast path's contract (decode.py docstring): valid rows with spaces, tabs and CRs
    around fields, whole-field quotes, leading zeros, any amount form, three-field
    references, LF or CRLF, are decoded by msgspec alone."""
    lines = [data.draw(st.composite(lambda draw, row=row: dialect_row(draw, row))()) for row in rows]
    block = "".join(line + data.draw(st.sampled_from(["\n", "\r\n"])) for line in lines).encode()
    with using(normalize), mock.patch.object(decode_mod, "decode_line", wraps=decode_line) as exact:
        assert decoded(block, first_line) == (expected(rows, first_line), [])
    assert exact.call_count == 0, exact.call_args_list


# Lines in the old fast path's blind spots, now vouched for: leading zeros, ``5.``,
# ``.5``, amounts of 2**53 units and more, zeros past the fourth decimal.
ODD_BUT_FAST = [
    (b"deposit,007,1,1", ("deposit", 7, 1, 10_000)),
    (b"deposit,1,1,5.", ("deposit", 1, 1, 50_000)),
    (b"withdrawal,1,1,.5", ("withdrawal", 1, 1, 5_000)),
    (b"deposit,1,1,900719925474.0992", ("deposit", 1, 1, 2**53)),
    (b"deposit,1,1,922337203685477.5807", ("deposit", 1, 1, 2**63 - 1)),
    (b"withdrawal,1,1,1.000000000", ("withdrawal", 1, 1, 10_000)),
]
# Lines only the exact path decodes: invalid ones, and valid ones in forms the normaliser leaves alone.
EXACT_ONLY = [
    (b"deposit,65536,1,1", None),
    (b"deposit,1,4294967296,1", None),
    (b"deposits,1,1,1", None),
    (b"deposit,1,1,0", None),
    (b"withdrawal,1,1,0.0", None),
    (b"deposit,1,1,1 000", None),
    (b"de posit,1,1,1", None),
    (b'deposit,1,1,1"0', None),
    (b'dispute,1,1,"a""b"', ("dispute", 1, 1, 0)),
    (b'dispute,1,1,"x,y"', ("dispute", 1, 1, 0)),
    (b"deposit,1,1,1.5\xc2\xa0", ("deposit", 1, 1, 15_000)),
]


@pytest.mark.parametrize("normalize", TWINS)
@given(rows=CANONICAL, data=st.data(), first_line=FIRST_LINES)
def test_one_line_for_the_exact_path_alone_takes_it(normalize, rows, data, first_line):
    """A line the normaliser leaves alone is decoded exactly, once; its neighbours stay on
    the fast path; the lines it now takes decode without the exact path."""
    at = data.draw(st.integers(0, len(rows)), label="index of the odd line")
    line, row = data.draw(st.sampled_from(ODD_BUT_FAST + EXACT_ONLY), label="odd line")
    texts = [f"{k},{c},{t},{_amount(a) if k in ('deposit', 'withdrawal') else ''}".encode() for k, c, t, a in rows]
    texts.insert(at, line)
    with using(normalize), mock.patch.object(decode_mod, "decode_line", wraps=decode_line) as exact:
        got_rows, rejects = decoded(b"\n".join(texts) + b"\n", first_line)
    assert [call.args[0] for call in exact.call_args_list] == ([] if (line, row) in ODD_BUT_FAST else [line])
    want = expected(rows[:at], first_line) + expected(rows[at:], first_line + at + 1)
    if row is None:
        assert (got_rows, rejects) == (want, [(first_line + at, "invalid_row")])
    else:
        assert (got_rows, rejects) == (sorted(want + [(first_line + at, *row)]), [])


# Amounts with five or more decimals: exact only if the digits past the fourth are zeros.
LONG_DECIMALS = [
    b"deposit,1,1,1.00000000000000001",  # invalid: rounds to 1 as a double
    b"deposit,1,1,0.99999999999999999",  # invalid: rounds to 1
    b"withdrawal,1,1,1.000000000",  # valid: 1
    b"deposit,1,1,900719925474.09930",  # valid, past 2**53 units
    b"deposit,1,1,1.50000",  # valid: 1.5
    b"withdrawal,1,1,2.00001",  # invalid
]


@given(rows=CANONICAL, data=st.data(), first_line=FIRST_LINES)
def test_empty_lines_and_long_decimals_anywhere_in_a_block(rows, data, first_line):
    """Empty lines shift line numbers; a >4-decimal amount is decoded exactly wherever it sits."""
    texts = [f"{k},{c},{t},{_amount(a) if k in ('deposit', 'withdrawal') else ''}".encode() for k, c, t, a in rows]
    for _ in range(data.draw(st.integers(1, 4), label="insertions")):
        where = data.draw(st.integers(0, len(texts)), label="at")
        texts.insert(where, data.draw(st.sampled_from([b"", b"", b"\r", b" "] + LONG_DECIMALS), label="line"))
    block = b"\n".join(texts) + b"\n"
    want_rows = [(first_line + i, *model_row(t)) for i, t in enumerate(texts) if t.strip() and model_row(t)]
    want_rejects = [(first_line + i, "invalid_row") for i, t in enumerate(texts) if t.strip() and not model_row(t)]
    assert decoded(block, first_line) == (want_rows, want_rejects)


# Characters that matter to a CSV row of this format, and some that should not.
ALPHABET = st.sampled_from(list('0123456789,.,,"" \t\r\x0b\u00a0edpositwhralcbku-+xE') + ["deposit", "dispute", "\xff"])


@st.composite
def fuzzed_lines(draw):
    """A valid row with a few random edits (insert, delete, replace), as bytes."""
    row = draw(valid_rows())
    text = list(draw(rendered_rows(row, messy=draw(st.booleans()))))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(text)))
        char = draw(ALPHABET)
        if op == "insert" or not text:
            text.insert(pos, char)
        elif op == "delete":
            del text[min(pos, len(text) - 1)]
        else:
            text[min(pos, len(text) - 1)] = char
    return "".join(text).encode("utf-8", "surrogateescape").replace("\xff".encode(), b"\xff")


@given(line=fuzzed_lines())
@example(line=b'deposit,1,1,"1.5"')
@example(line=b'dispute,1,1,"a"" ,b"')
@example(line=b'dispute,1,1,"x, "y"')
@example(line=b"deposit,1,1,1.00000")
@example(line=b"deposit,1,1,.5")
@example(line=b"deposit,01,1,5.")
@example(line=b"withdrawal,1,1,900719925474.0993")
@example(line=b"deposit,1,1,922337203685477.58070")
def test_decoder_and_model_agree_on_any_line(line):
    assume(b"\n" not in line and not open_bug(line))
    want = model_row(line)
    got = decode_line(line, 7)
    if want is None:
        assert isinstance(got, Reject) and got.reason == "invalid_row" and got.line == 7, got
    else:
        assert not isinstance(got, Reject), got
        assert (KIND_NAMES[got.kind], got.client, got.tx, got.amount) == want
    # the block decoder (fast path where the guard allows) agrees with the line decoder
    rows, rejects = decoded(line + b"\n", 7)
    assert (rows, rejects) == (([(7, *want)], []) if want else ([], [(7, "invalid_row")]))


@given(header=st.sampled_from(HEADERS))
def test_valid_headers_are_accepted(header):
    assert parse_header(header.encode()) == (header.count(",") == 3)
    model.check_header(model.split_fields(header.strip()), header.encode(), 1)  # the oracle agrees


@given(header=st.sampled_from(BAD_HEADERS))
def test_bad_headers_are_fatal(header):
    try:
        parse_header(header.encode())
    except InputError as err:
        assert "expected" in str(err) and "found" in str(err)
    else:
        raise AssertionError(f"header {header!r} accepted")
