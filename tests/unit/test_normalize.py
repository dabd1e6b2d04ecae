"""The normaliser: what it vouches for in each dialect, what it leaves to the exact path,
and its two twins (compiled and pure) giving the same bytes for any input."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shardpay import _normalize_py
from shardpay.codes import KIND_NAMES
from shardpay.testing.generate import DIALECTS, dialect_text, generate
from shardpay.testing.dialects import dialect_blocks, dialect_row
from shardpay.testing.strategies import valid_rows
from tests.normalize_twins import TWINS, needs_compiled
from tests.normalize_twins import compiled as _compiled
EMPTY, FAST, EXACT = _normalize_py.EMPTY, _normalize_py.FAST, _normalize_py.EXACT

VOUCHED = [
    # every dialect of the example row
    (b"withdrawal,32643,645,786.97", b'["withdrawal",32643,645,7869700]'),
    (b"withdrawal,32643,645,786.97\r", b'["withdrawal",32643,645,7869700]'),
    (b"withdrawal, 32643, 645, 786.97", b'["withdrawal",32643,645,7869700]'),
    (b" withdrawal , 32643 , 645 , 786.97 ", b'["withdrawal",32643,645,7869700]'),
    (b'"withdrawal","32643","645","786.97"', b'["withdrawal",32643,645,7869700]'),
    (b'\t" withdrawal\t" ,\r"32643" ,645,  " 786.97 "\r', b'["withdrawal",32643,645,7869700]'),
    (b"dispute,44288,651", b'["dispute",44288,651]'),
    (b"dispute,44288,651,", b'["dispute",44288,651]'),
    (b'"dispute","44288","651",""', b'["dispute",44288,651]'),
    (b"resolve , 1 , 2 , whatever it holds \\ {]", b'["resolve",1,2]'),
    (b'chargeback,1,2," x y "', b'["chargeback",1,2]'),
    # numbers: leading zeros, limits, every amount form
    (b"deposit,007,000,.5", b'["deposit",7,0,5000]'),
    (b"deposit,0,0,5.", b'["deposit",0,0,50000]'),
    (b"deposit,65535,4294967295,0.0001", b'["deposit",65535,4294967295,1]'),
    (b"deposit,0065535,0004294967295,1.23450000", b'["deposit",65535,4294967295,12345]'),
    (b"deposit,1,1,922337203685477.5807", b'["deposit",1,1,9223372036854775807]'),
    (b"deposit,1,1,000922337203685477.58070", b'["deposit",1,1,9223372036854775807]'),
    (b"deposit,1,1,900719925474.0993", b'["deposit",1,1,9007199254740993]'),  # past 2**53: exact
    (b"deposit,1,1,.0500", b'["deposit",1,1,500]'),
    (b"withdrawal,1,1,1", b'["withdrawal",1,1,10000]'),
]

LEFT_TO_THE_EXACT_PATH = [
    # invalid rows
    b"de posit,1,1,1", b"deposit,1 0,1,1", b"deposit,1,1,1 000", b"deposit,1,1,1. 5", b"Deposit,1,1,1",
    b"transfer,1,1,1", b"deposit,65536,1,1", b"deposit,1,4294967296,1", b"deposit,-1,1,1", b"deposit,+1,1,1",
    b"deposit,1.0,1,1", b"deposit,1e3,1,1", b"deposit,,1,1", b"deposit,1,1,", b"deposit,1,1", b"withdrawal,1,1",
    b"deposit,1,1,0", b"deposit,1,1,0.0000", b"deposit,1,1,0.", b"deposit,1,1,.", b"deposit,1,1,1e3",
    b"deposit,1,1,1.23456", b"deposit,1,1,1.000001", b"deposit,1,1,922337203685477.5808",
    b"deposit,1,1,1000000000000000", b"deposit,1,1,-1", b"deposit,1,1,1.2.3", b"deposit,1,1,1,5",
    b"dispute,1,1,,", b"dispute,1", b"dispute", b",,,", b"deposit,1,1,1,", b'deposit,1,1,"1.5', b'"deposit,1,1,1',
    b'deposit,1,1,"1"5', b'deposit,1,1,1"5', b'deposit,"1,2",1,1', b"deposit,1,1,1.5\x00",
    b"deposit,1,1,1.5\xff", b"\xef\xbb\xbfdeposit,1,1,1", b"deposit,1,1,\xd9\xa1",
    # valid rows, but only the exact path may say so
    b'dispute,1,1,"a""b"', b'dispute,1,1,"x,y"', b"dispute,1,1,a\"b", b"dispute,1,1,caf\xc3\xa9",
    b"deposit,1,1,1\x0b", b"\xc2\xa0deposit,1,1,1", b"deposit,\xe3\x80\x801,1,1", b"dispute,1,1,\x00",
]


def columns_json(rows: list[bytes]) -> bytes:
    """The JSON columns of rows given one JSON array each (``["deposit",1,7,15000]``, a
    reference without its amount), as :func:`normalize` writes them."""
    kinds = {name: code for code, name in enumerate(KIND_NAMES)}
    parsed = [json.loads(row) for row in rows]
    columns = [[kinds[r[0]] for r in parsed], [r[1] for r in parsed], [r[2] for r in parsed],
               [r[3] if len(r) == 4 else 0 for r in parsed]]
    return json.dumps(columns, separators=(",", ":")).encode()


@pytest.mark.parametrize("normalize", TWINS)
@pytest.mark.parametrize("line, row", VOUCHED)
def test_vouched_lines_become_canonical_json(normalize, line, row):
    assert normalize(line + b"\n") == (columns_json([row]), bytes([FAST]), 1, b"")


@pytest.mark.parametrize("normalize", TWINS)
@pytest.mark.parametrize("line", LEFT_TO_THE_EXACT_PATH)
def test_other_lines_are_left_to_the_exact_path(normalize, line):
    assert normalize(line + b"\n") == (b"[[],[],[],[]]", bytes([EXACT]), 0, line + b"\n")


@pytest.mark.parametrize("normalize", TWINS)
def test_marks_keep_every_line_in_place(normalize):
    block = b"deposit,1,1,1\n\n \t\r\n\x0b\nDEPOSIT,1,2,1\r\n dispute , 1 , 1\n"
    js, marks, fast, exact = normalize(block)
    assert js == b"[[0,2],[1,1],[1,1],[10000,0]]" and fast == 2
    assert list(marks) == [FAST, EMPTY, EMPTY, EXACT, EXACT, FAST]  # a VT line: the exact path says empty
    assert exact == b"\x0b\nDEPOSIT,1,2,1\r\n"  # the EXACT lines as read, each with its LF


@pytest.mark.parametrize("env, picked", [({}, "compiled"), ({"SHARDPAY_NORMALIZE": "python"}, "python"),
                                         ({"SHARDPAY_NO_EXTENSIONS": "1"}, "python"),
                                         ({"SHARDPAY_NORMALIZE": "compiled"}, "compiled")])
def test_the_decoder_picks_the_twin_the_environment_asks_for(env, picked):
    clean = {k: v for k, v in os.environ.items() if k not in ("SHARDPAY_NORMALIZE", "SHARDPAY_NO_EXTENSIONS")}
    r = subprocess.run([sys.executable, "-c", "import shardpay.decode as d; print(d.NORMALIZER)"],
                       capture_output=True, text=True, env={**clean, **env})
    if _compiled is None and picked == "compiled":
        if env:  # asked for by name: not silently replaced
            assert r.returncode != 0 and "_normalize" in r.stderr
            return
        picked = "python"
    assert r.stdout.strip() == picked, r.stderr


@pytest.mark.parametrize("normalize", TWINS)
def test_empty_block_and_missing_final_lf(normalize):
    assert normalize(b"") == (b"[[],[],[],[]]", b"", 0, b"")
    with pytest.raises(ValueError, match="LF"):
        normalize(b"deposit,1,1,1")


@pytest.mark.parametrize("normalize", TWINS)
@pytest.mark.parametrize("line", [b"dispute,0,0", b"deposit,0,0,1", b"deposit,0,0,.1", b"deposit,0,0,1."])
def test_json_of_the_shortest_lines_fits(normalize, line):
    """The compiled twin sizes its columns for the most rows a block can hold, each
    field its widest: the shortest lines make the most rows (and ``1`` becomes
    ``10000``), many of them in a big block."""
    n = 100_000
    js, marks, fast, exact = normalize((line + b"\n") * n)
    assert fast == n and marks == bytes([FAST]) * n
    assert [len(column) for column in json.loads(js)] == [n] * 4


@needs_compiled
def test_twins_agree_on_a_generated_file_in_every_dialect():
    buf = io.BytesIO()
    generate(20_000, buf, seed=3)
    clean = buf.getvalue().split(b"\n", 1)[1].decode()
    for dialect in DIALECTS:
        block = dialect_text(clean, dialect, random.Random(1)).encode()
        got = _compiled.normalize(block)
        assert got == _normalize_py.normalize(block), dialect
        assert got[2] == 20_000, dialect  # every row vouched for


# A line's bytes: fragments on the normaliser's boundaries, whole rows in any dialect.
FRAGMENTS = st.sampled_from([
    b"deposit", b"withdrawal", b"dispute", b"resolve", b"chargeback", b"deposits", b",", b",", b'"', b'""', b" ",
    b"\t", b"\r", b"0", b"00", b"1", b"65535", b"65536", b"4294967295", b"4294967296", b".", b"5", b"9" * 16,
    b"922337203685477", b".5807", b".5808", b"00000", b"\xff", b"\x00", b"\x0b", b"\xc2\xa0", b"e", b"x", b"-",
    b"\\",
])


@st.composite
def fuzzed_blocks(draw):
    """Dialect rows with a few byte edits, fragments, and whole dialect blocks, as one block."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        how = draw(st.integers(0, 2))
        if how == 0:
            line = draw(st.lists(FRAGMENTS, max_size=14).map(b"".join))
        else:
            line = bytearray(dialect_row(draw, draw(valid_rows())).encode())
            for _ in range(draw(st.integers(0, 2 if how == 1 else 0))):
                at = draw(st.integers(0, len(line)))
                line[at:at + draw(st.integers(0, 1))] = draw(FRAGMENTS)
            line = bytes(line)
        lines.append(line.replace(b"\n", b"") + draw(st.sampled_from([b"\n", b"\r\n"])))
    return b"".join(lines)


@needs_compiled
@settings(max_examples=settings().max_examples * 5)  # both twins are cheap
@given(block=st.one_of(fuzzed_blocks(), dialect_blocks()))
@example(block=b'deposit,1,2,3\n"resolve" ,00,0,"x"\r\n')
@example(block=b"resolve\t,00000,00965536\n")  # resolve and deposit share a second letter
def test_twins_give_the_same_bytes(block):
    assert _compiled.normalize(block) == _normalize_py.normalize(block)


@given(marks=st.binary(max_size=300).map(lambda b: bytes(x % 3 for x in b)))
@example(marks=b"").via("no line")
@example(marks=bytes([FAST]) * 5).via("every line fast")
def test_fast_offsets_are_the_indexes_of_the_fast_marks_in_both_twins(marks):
    want = [i for i, mark in enumerate(marks) if mark == FAST]
    assert _normalize_py.fast_offsets(marks).tolist() == want
    if _compiled is not None:
        got = _compiled.fast_offsets(marks)
        assert (got.typecode, got.tolist()) == (_normalize_py.fast_offsets(marks).typecode, want)


@given(block=st.one_of(fuzzed_blocks(), dialect_blocks()))
def test_the_pure_twins_canonical_shortcut_agrees_with_its_line_by_line_reading(block):
    """:func:`_normalize_py._canonical` answers only for canonical blocks, and then as the grammar does."""
    js = _normalize_py._canonical(block)
    if js is not None:
        assert (js, b"\x01" * block.count(b"\n")) == _normalize_py._line_by_line(block)[:2]


@settings(max_examples=settings().max_examples * 3)
@given(rows=st.lists(valid_rows(), min_size=1, max_size=40), crlf=st.booleans())
def test_the_canonical_shortcut_takes_generated_style_blocks(rows, crlf):
    """Rows as ``shardpay generate`` writes them go through the shortcut unless an amount
    is 2**53 units or more (the ``e4`` float parse is exact only below it)."""
    def amount(units):
        whole, frac = divmod(units, 10_000)
        return f"{whole}.{frac:04d}".rstrip("0").rstrip(".")

    eol = "\r\n" if crlf else "\n"
    block = "".join(f"{k},{c},{t},{amount(a) if k in ('deposit', 'withdrawal') else ''}{eol}"
                    for k, c, t, a in rows).encode()
    js = _normalize_py._canonical(block)
    assert (js is None) == any(a >= 2**53 for _, _, _, a in rows)
    assert _normalize_py.normalize(block) == _normalize_py._line_by_line(block)
