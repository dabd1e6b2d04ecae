"""What an invalid row's reject says (SPEC: "a detail saying which field is wrong and why").

The ``--rejects`` file carries, for every invalid row, the row's fields as
read and a detail naming the wrong field and quoting its text (shortened to
40 characters, so a detail stays one readable line). These properties pin
that down for any row with one broken field, and the money texts of
:func:`shardpay.money.format_units` / :func:`shardpay.money.parse_amount`
against the model's.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from shardpay.testing import model
from shardpay.decode import decode_line
from shardpay.rejects import Reject
from shardpay.money import MAX_UNITS, format_units, parse_amount
from shardpay.testing.strategies import BAD_BYTES, KINDS, MONEY_KINDS, amount_forms, amounts

WIDTH = 40  # a quoted field in a detail is at most this long


def clipped(text: str) -> str:
    return text if len(text) <= WIDTH else text[: WIDTH - 3] + "..."


def reject_of(line: bytes) -> Reject:
    got = decode_line(line, 9)
    assert isinstance(got, Reject), got
    assert (got.line, got.reason) == (9, "invalid_row")
    return got


LONG_TEXT = st.one_of(
    st.text(alphabet="x0123456789.-", min_size=1, max_size=60),
    st.integers(37, 45).map(lambda n: "9" * n),  # around the clipping width
)


@given(kind=st.sampled_from(KINDS), text=LONG_TEXT)
@example(kind="deposit", text="9" * 40).via("exactly the width: not clipped")
@example(kind="deposit", text="9" * 41).via("one over: clipped to 37 + '...'")
def test_bad_client_or_tx_detail_names_the_field_and_quotes_it(kind, text):
    if text.isdigit() and int(text) <= 65535:
        text += "99999"  # out of range for both
    client_line = f"{kind},{text},1,1".encode()
    tx_line = f"{kind},1,{text},1".encode()
    rej = reject_of(client_line)
    assert rej.detail.startswith(f"client {clipped(text)!r} ")
    assert rej.fields == (kind, text, "1", "1")
    if not (text.isdigit() and int(text) <= 2**32 - 1):
        rej = reject_of(tx_line)
        assert rej.detail.startswith(f"tx {clipped(text)!r} ")
        assert rej.fields == (kind, "1", text, "1")


@given(kind=st.sampled_from(MONEY_KINDS), text=LONG_TEXT)
@example(kind="deposit", text="1." + "5" * 39)
@example(kind="deposit", text="1" * 41)
def test_bad_amount_detail_quotes_the_amount(kind, text):
    try:
        model_units = model.parse_amount(text)
    except Exception:  # pragma: no cover - the model never raises
        raise
    if model_units is not None:
        return  # a valid amount
    rej = reject_of(f"{kind},1,1,{text}".encode())
    quoted = clipped(text)
    assert rej.detail.startswith("amount ") and (f"{quoted!r}" in rej.detail or f"{text!r}" in rej.detail), rej
    assert rej.fields == (kind, "1", "1", text)


@given(kind=st.sampled_from(MONEY_KINDS), three=st.booleans())
def test_missing_amount_detail(kind, three):
    rej = reject_of(f"{kind},1,1{'' if three else ','}".encode())
    assert rej.detail == "amount is missing"
    assert rej.fields == (kind, "1", "1", "")


@given(kind=st.sampled_from(MONEY_KINDS), whole=st.integers(16, 30), zeros=st.integers(0, 40))
def test_too_large_amount_detail_is_clipped(kind, whole, zeros):
    text = "9" * whole + ("." + "0" * zeros if zeros else "")
    rej = reject_of(f"{kind},1,1,{text}".encode())
    assert rej.detail == f"amount {clipped(text)!r} is larger than 922337203685477.5807"


# Every amount in a detail is clipped, the zero and the "larger than" ones too: a 1 MiB
# amount of zeros must not make a 1 MiB detail.
@pytest.mark.parametrize("text", ["0" * 60, "0." + "0" * 60, "922337203685477.58080" + "0" * 40])
def test_every_amount_detail_is_clipped(text):
    rej = reject_of(f"deposit,1,1,{text}".encode())
    assert f"{clipped(text)!r}" in rej.detail


@given(line=st.sampled_from(['deposit,"1,1,1', 'dispute,1,1,"x', '"dep"osit,1,1,1', 'deposit,1,"1" 0,1', 'a,"b']))
def test_malformed_quoting_keeps_the_text_split_at_commas(line):
    rej = reject_of(line.encode())
    assert rej.detail.startswith("malformed quoting")
    parts = line.split(",")
    want = (parts + ["", "", "", ""])[:4]
    if len(parts) > 4:
        want[3] = ",".join(parts[3:])
    assert rej.fields == tuple(want)


@given(kind=st.sampled_from(KINDS), bad=st.sampled_from(["", "Deposit", "x" * 50, "déposit"]))
def test_bad_type_detail_lists_the_types(kind, bad):
    rej = reject_of(f"{bad},1,1,1".encode())
    assert rej.detail.startswith(f"type {bad!r} ")
    assert all(name in rej.detail for name in KINDS)
    assert rej.fields == (bad, "1", "1", "1")


@given(fields=st.lists(st.sampled_from(["deposit", "1", "x", "", " 2 "]), min_size=1, max_size=7))
def test_wrong_field_count_keeps_every_field(fields):
    if len(fields) in (3, 4):
        fields = [*fields, "extra", "more"]
    line = ",".join(fields)
    assume(line.strip())  # a blank line is skipped, not rejected
    rej = reject_of(line.encode())
    stripped = [f.strip() for f in fields]
    assert f"got {len(fields)}" in rej.detail
    want = (stripped + ["", "", "", ""])[:4]
    if len(stripped) > 4:
        want[3] = ",".join(stripped[3:])  # the rest of the row stays visible in the last column
    assert rej.fields == tuple(want)


@given(
    prefix=st.sampled_from(["", "deposit", "deposit,1", "dispute,1,1,", "deposit,1,1,1.5"]),
    bad=st.sampled_from(BAD_BYTES),
    suffix=st.sampled_from(["", ",1,1,1", "x"]),
)
def test_not_utf8_detail_gives_the_byte_position(prefix, bad, suffix):
    line = prefix.encode() + bad + suffix.encode()
    rej = reject_of(line)
    assert f"(byte {len(prefix.encode()) + 1})" in rej.detail
    shown = line.decode("utf-8", "backslashreplace").split(",")  # the bad bytes shown as \xNN
    want = (shown + ["", "", "", ""])[:4]
    if len(shown) > 4:
        want[3] = ",".join(shown[3:])
    assert rej.fields == tuple(want)


@given(char=st.sampled_from([chr(c) for c in [*range(1, 9), *range(14, 28), 127]]), field=st.integers(0, 3))
def test_control_characters_in_reject_fields_are_escaped(char, field):
    """A stray control character is shown escaped, so the rejects CSV keeps one line a row."""
    fields = ["deposit", "1", "1", "1"]
    fields[field] = "7" + char + "7"  # not whitespace, not valid in any field
    rej = reject_of(",".join(fields).encode())
    assert rej.fields[field] == "7" + f"\\x{ord(char):02x}" + "7"
    assert all(ord(c) >= 32 and c != "\x7f" for f in rej.fields for c in f)


@given(units=st.integers(-MAX_UNITS - 1, MAX_UNITS))
@example(units=0)
@example(units=-1)
@example(units=-(2**63))
def test_format_units_equals_the_model(units):
    assert format_units(units) == model.format_units(units)


@given(units=amounts(), data=st.data())
def test_parse_amount_reads_every_form(units, data):
    text = data.draw(st.sampled_from(amount_forms(units)))
    assert parse_amount(text) == units == model.parse_amount(text)


@given(name=st.text(alphabet="typeclintxamou,; ", min_size=1, max_size=120))
@example(name="x" * 80)
@example(name="x" * 81)
def test_bad_header_message_quotes_the_line_shortened_to_80(name):
    from shardpay.decode import parse_header
    from shardpay.errors import InputError

    stripped = name.strip()
    names = [n.strip().lower() for n in stripped.split(",")]
    assume(stripped and names not in (["type", "client", "tx", "amount"], ["type", "client", "tx"]))
    try:
        parse_header(name.encode())
    except InputError as err:
        found = stripped if len(stripped) <= 80 else stripped[:77] + "..."
        assert str(err).endswith(f"found {found!r}")
    else:
        raise AssertionError(f"header {name!r} accepted")
