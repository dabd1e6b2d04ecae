"""The decoder: fast path and exact path agree, every invalid field is rejected."""

import msgspec
import pytest

from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, RESOLVE, WITHDRAWAL
from shardpay.decode import _is_clean, decode_chunk, decode_line, parse_header
from shardpay.errors import InputError
from shardpay.rejects import Reject


def rows_of(data: bytes, first_line: int = 2):
    """[(line, kind, client, tx, amount)] and [(line, detail)] of a block."""
    lines, decoded, rejects = decode_chunk(data, first_line)
    rows = [(line, r.kind, r.client, r.tx, r.amount) for line, r in zip(lines, decoded)]
    return rows, [(r.line, r.detail) for r in rejects]


def exact_rows(data: bytes, first_line: int = 2):
    """The same, decoding every line with the exact path only."""
    rows, rejects = [], []
    for i, raw in enumerate(data.split(b"\n")[:-1]):
        out = decode_line(raw.rstrip(b"\r"), first_line + i)
        if isinstance(out, Reject):
            rejects.append((out.line, out.detail))
        elif out is not None:
            rows.append((first_line + i, out.kind, out.client, out.tx, out.amount))
    return rows, rejects


CLEAN = b"deposit,1,1,1.5\nwithdrawal,2,2,0.0001\ndispute,1,1,\nresolve,1,1,\nchargeback,3,4,\n"


def test_clean_block_takes_fast_path_and_decodes_exactly():
    assert _is_clean(CLEAN)
    rows, rejects = rows_of(CLEAN)
    assert rejects == []
    assert rows == [
        (2, DEPOSIT, 1, 1, 15000),
        (3, WITHDRAWAL, 2, 2, 1),
        (4, DISPUTE, 1, 1, 0),
        (5, RESOLVE, 1, 1, 0),
        (6, CHARGEBACK, 3, 4, 0),
    ]


@pytest.mark.parametrize(
    "line",
    [b"deposit, 1 ,1,1", b"deposit,1.0,1,1", b"deposit,1e3,1,1", b"deposit,1,1,1e3", b"deposit,1,1,1.23450",
     b"dispute,1,1", b"deposit,1,1,1,5", b'"deposit",1,1,1', b"Deposit,1,1,1", b"deposit,1,1,-1",
     b"deposit,1,1,1.00000000000000001", b"", b"deposit,1,1\xff,1", b"deposit,1,2.,1"],
)
def test_guard_sends_risky_lines_to_exact_path(line):
    assert not _is_clean(line + b"\n")


ODD = [
    (b"  deposit , 1 , 1 , 1.5  ", (DEPOSIT, 1, 1, 15000)),
    (b'"deposit","1","1","1.5"', (DEPOSIT, 1, 1, 15000)),
    (b' "deposit" , "1", 1 ,"1.5" ', (DEPOSIT, 1, 1, 15000)),
    (b"dispute,1,7", (DISPUTE, 1, 7, 0)),
    (b"dispute,1,7,whatever it holds", (DISPUTE, 1, 7, 0)),
    (b"deposit,007,0,.5", (DEPOSIT, 7, 0, 5000)),
    (b"deposit,65535,4294967295,5.", (DEPOSIT, 65535, 4294967295, 50000)),
    (b"withdrawal,1,1,1.23450", (WITHDRAWAL, 1, 1, 12345)),
    (b"withdrawal,1,1,922337203685477.5807", (WITHDRAWAL, 1, 1, 2**63 - 1)),
    (b"deposit,1,1,900719925474.0993", (DEPOSIT, 1, 1, 9007199254740993)),
]


@pytest.mark.parametrize("line, row", ODD)
def test_odd_but_valid_rows(line, row):
    rows, rejects = rows_of(line + b"\n", 10)
    assert rejects == []
    assert rows == [(10, *row)]
    rows, _ = rows_of(line + b"\r\n", 10)  # CRLF too
    assert rows == [(10, *row)]


BAD = [
    (b"deposits,1,1,1", "type 'deposits'"),
    (b"DEPOSIT,1,1,1", "type 'DEPOSIT'"),
    (b"deposit,,1,1", "client ''"),
    (b"deposit,-1,1,1", "client '-1'"),
    (b"deposit,65536,1,1", "client '65536'"),
    (b"deposit,1.0,1,1", "client '1.0'"),
    (b"deposit,1e3,1,1", "client '1e3'"),
    (b"deposit,\xd9\xa1,1,1", "client"),  # an Arabic-Indic digit is not a plain digit
    (b"deposit,1,4294967296,1", "tx '4294967296'"),
    (b"deposit,1,x,1", "tx 'x'"),
    (b"deposit,1,1,", "amount is missing"),
    (b"withdrawal,1,1", "amount is missing"),
    (b"deposit,1,1,0", "not greater than zero"),
    (b"deposit,1,1,0.00000", "not greater than zero"),
    (b"deposit,1,1,-5", "not a decimal"),
    (b"deposit,1,1,1.23456", "more than 4 decimal places"),
    (b"deposit,1,1,1.00000000000000001", "more than 4 decimal places"),
    (b"deposit,1,1,922337203685477.5808", "larger than"),
    (b"deposit,1,1,1e3", "not a decimal"),
    (b"deposit,1,1,nan", "not a decimal"),
    (b"deposit,1,1,1,5", "expected 4 fields"),
    (b"deposit,1", "expected 4 fields"),
    (b'deposit,"1,1,1', "malformed quoting"),
    (b"deposit,1,1,1.5\xff", "not valid UTF-8"),
]


@pytest.mark.parametrize("line, words", BAD)
def test_invalid_rows_are_rejected_with_detail(line, words):
    block = b"deposit,1,100,1\n" + line + b"\ndeposit,2,101,2\n"
    rows, rejects = rows_of(block, 5)
    assert [r[0] for r in rows] == [5, 7]  # the rows around it are untouched
    assert len(rejects) == 1 and rejects[0][0] == 6
    assert words in rejects[0][1]


def test_empty_lines_are_skipped_and_counted():
    rows, rejects = rows_of(b"deposit,1,1,1\n\n   \n\r\ndeposit,1,2,1\n", 2)
    assert [r[0] for r in rows] == [2, 6] and rejects == []


def test_fast_and_exact_paths_agree_on_a_mixed_block():
    lines = [line for line, _ in ODD] + [line for line, _ in BAD] + CLEAN.split(b"\n")[:-1]
    block = b"\n".join(lines * 3) + b"\n"
    assert rows_of(block) == exact_rows(block)


def test_block_with_one_out_of_range_row_in_the_middle():
    good = b"deposit,1,%d,1.5\n"
    block = b"".join(good % i for i in range(500)) + b"deposit,70000,9,1\n" + b"".join(good % i for i in range(500, 900))
    assert _is_clean(block)
    rows, rejects = rows_of(block, 2)
    assert len(rows) == 900 and rejects[0][0] == 502
    assert [r[0] for r in rows] == list(range(2, 502)) + list(range(503, 903))


def test_many_refused_lines_in_one_chunk_decode_in_spans(monkeypatch):
    """Guard-clean lines msgspec refuses, spread over a chunk: after the first
    refusal the rest decodes in short spans; every line still comes out as the
    exact path has it, and no line is decoded by msgspec more than twice."""
    import shardpay.decode as decode_mod

    bad = [b"deposits,1,%d,1", b"deposit,70000,%d,1", b"deposit,007,%d,1", b"withdrawal,1,%d,0"]
    lines = []
    for i in range(700):
        if i % 37 in (5, 6) or i == 699:  # pairs of refusals, and one at the very end
            lines.append(bad[i % 4] % i)
        elif i % 53 == 0:
            lines.append(b"deposit, 1,%d,1" % i)  # odd for the guard: exact path from the start
        else:
            lines.append(b"deposit,%d,%d,%d.25" % (i % 9, i, i))
    data = b"\n".join(lines) + b"\n"
    calls = []
    real = decode_mod._FAST_DECODER

    class Counting:  # rows msgspec went through: all of a call's, or those before the refused one
        def decode(self, buf):
            try:
                rows = real.decode(buf)
            except msgspec.ValidationError as err:
                calls.append(int(decode_mod._ERR_INDEX.search(str(err)).group(1)))
                raise
            calls.append(len(rows))
            return rows

    monkeypatch.setattr(decode_mod, "_FAST_DECODER", Counting())
    assert rows_of(data) == exact_rows(data)
    fast_lines = sum(1 for i in range(700) if i % 53 != 0 or i % 37 in (5, 6) or i == 699)
    assert sum(calls) <= 2 * fast_lines
    assert max(calls[1:]) <= decode_mod.SPAN_AFTER_REFUSAL  # spans after the first refusal
    assert len(calls) > 700 // decode_mod.SPAN_AFTER_REFUSAL


@pytest.mark.parametrize("header, has_amount", [(b"type,client,tx,amount", True), (b" Type , CLIENT,tx , Amount", True),
                                                  (b"type,client,tx", False), (b'"type","client","tx","amount"', True)])
def test_header_accepted(header, has_amount):
    assert parse_header(header) is has_amount


@pytest.mark.parametrize("header", [b"client,type,tx,amount", b"deposit,1,1,1.0", b"type,client,tx,amount,x", b"\xff"])
def test_bad_header_is_fatal_and_names_both(header):
    with pytest.raises(InputError, match="expected 'type,client,tx,amount', found"):
        parse_header(header)


def test_huge_numbers_with_leading_zeros():
    block = b"deposit," + b"0" * 5000 + b"1,2,3\ndeposit,1," + b"9" * 5000 + b",1\n"
    rows, rejects = rows_of(block, 2)
    assert rows == [(2, DEPOSIT, 1, 2, 30000)]
    assert rejects[0][0] == 3 and "tx '999" in rejects[0][1] and len(rejects[0][1]) < 100


