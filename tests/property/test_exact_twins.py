"""Two compiled parts of the slow path against their pure twins, on fuzzed input.

* the exact path: :func:`shardpay._exact.decode_line` gives, for every line,
  what :func:`shardpay._exact_py.decode_line` gives (the same row struct,
  the same reject with the same detail, or None), on the fuzz module's lines
  and on lines of ASCII (the ones the compiled twin checks itself);
* the ``--rejects`` CSV: :func:`shardpay._rejects_csv.csv_rows` gives the
  text of :func:`shardpay._rejects_csv_py.csv_rows`, and the csv module reads
  it back to the same fields.

The compiled parts are skipped where they are not built (an install
without a C compiler runs the twins alone).
"""

from __future__ import annotations

import csv
import importlib
import io
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shardpay import _exact_py, _rejects_csv_py
from tests.property.test_fuzz import AMOUNTS, LINE, NUMBERS, TYPES


def _compiled(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(f"shardpay._{name}")
    except ImportError:
        return None


exact = _compiled("exact")
rejects_csv = _compiled("rejects_csv")

# ASCII but the double quote and whitespace other than the space: the lines the compiled
# exact path checks itself (control characters such as NUL included).
_PLAIN = st.text(alphabet=string.printable[:94].replace('"', "") + " \x00\x01\x08\x0e\x1b\x7f", max_size=8)
_PLAIN_FIELD = st.one_of(
    st.sampled_from(TYPES + NUMBERS[:10] + AMOUNTS[:20]),
    _PLAIN,
    st.tuples(st.sampled_from(("", " ", "  ")), st.sampled_from(TYPES + NUMBERS[:10] + AMOUNTS[:20]),
              st.sampled_from(("", " "))).map("".join),
    st.integers(0, 10**22).map(str),
    st.tuples(st.integers(0, 10**17), st.integers(0, 10**7)).map(lambda t: f"{t[0]}.{t[1]:07d}".rstrip("0")),
)
PLAIN_LINE = st.lists(_PLAIN_FIELD, min_size=1, max_size=6).map(lambda fields: ",".join(fields).encode("ascii"))


@pytest.mark.skipif(exact is None, reason="shardpay._exact is not built")
@settings(max_examples=settings().max_examples * 10)  # pure function: well under 1 ms an example
@given(raw=st.one_of(LINE, PLAIN_LINE), line=st.integers(1, 10**12))
@example(raw=b"deposit,1,2,1234567890123456.12345", line=2).via("more than 4 decimals before too large")
@example(raw=b"deposit,1,2,922337203685477.5808", line=2).via("one unit over the largest amount")
@example(raw=b"deposit,1,2,922337203685477.5807", line=2).via("the largest amount: valid, the twin's row")
@example(raw=b"withdrawal,1,2,.", line=2)
@example(raw=b"deposit,1,2,00000000000000001.00000", line=2)
@example(raw=b" , , ", line=2)
@example(raw=b"dispute,1,2,3,4", line=2)
@example(raw=b"deposit,0000065535,0004294967295,1", line=2)
@example(raw=b"deposit,65536,1,1", line=2)
@example(raw=b"deposit,1,2,1.5\x00", line=2).via("NUL in the amount: escaped in the fields and the detail")
@example(raw=b"dispute,1,2,\x00", line=2).via("NUL in an ignored amount: a valid row")
@example(raw=b"deposit\x1f,1,2,3", line=2).via("a separator character is whitespace: the twin's")
def test_the_compiled_exact_path_equals_its_twin(raw, line):
    got = exact.decode_line(raw, line)
    want = _exact_py.decode_line(raw, line)
    assert type(got) is type(want)
    assert got == want


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_ROWS = st.lists(st.tuples(st.integers(1, 2**63 - 1), _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT), max_size=20)


@pytest.mark.skipif(rejects_csv is None, reason="shardpay._rejects_csv is not built")
@given(rows=_ROWS)
@example(rows=[(1, 'a"b', "c,d", "e\rf", "g\nh", "", " i ")]).via("every character that needs quotes")
def test_the_compiled_rejects_csv_equals_its_twin(rows):
    assert rejects_csv.csv_rows(rows) == _rejects_csv_py.csv_rows(rows)


@given(rows=_ROWS)
def test_the_rejects_csv_reads_back_to_its_fields(rows):
    text = _rejects_csv_py.csv_rows(rows)
    back = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert back == [[str(row[0]), *row[1:]] for row in rows]
