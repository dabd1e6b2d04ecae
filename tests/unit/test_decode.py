"""The decoder: fast path and exact path agree, every invalid field is rejected.

The tests that go through :func:`decode_chunk` run under each normaliser twin
(the ``normalize`` parameter, :mod:`tests.normalize_twins`).
"""

from unittest import mock

import pytest

import shardpay.decode as decode_mod
from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, RESOLVE, WITHDRAWAL
from shardpay.decode import decode_chunk, decode_line, parse_header
from shardpay.errors import InputError
from shardpay.rejects import Reject
from tests.normalize_twins import TWINS, using


@pytest.fixture(params=TWINS, autouse=True)
def normalize(request):
    """Every test of this module, under each twin."""
    with using(request.param):
        yield request.param


def rows_of(data: bytes, first_line: int = 2):
    """[(line, kind, client, tx, amount)] and [(line, detail)] of a block."""
    columns, rejects = decode_chunk(data, first_line)
    rows = list(zip(*columns))
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


def test_clean_block_takes_fast_path_and_decodes_exactly(normalize):
    assert normalize(CLEAN)[2] == 5
    with mock.patch.object(decode_mod, "decode_line", wraps=decode_line) as exact:
        rows, rejects = rows_of(CLEAN)
    assert exact.call_count == 0 and rejects == []
    assert rows == [
        (2, DEPOSIT, 1, 1, 15000),
        (3, WITHDRAWAL, 2, 2, 1),
        (4, DISPUTE, 1, 1, 0),
        (5, RESOLVE, 1, 1, 0),
        (6, CHARGEBACK, 3, 4, 0),
    ]


@pytest.mark.parametrize(
    "line",
    [b"deposit,1.0,1,1", b"deposit,1e3,1,1", b"deposit,1,1,1e3", b"deposit,1,1,1 000", b"de posit,1,1,1",
     b"deposit,1,1,1,5", b'"dep""osit",1,1,1', b"Deposit,1,1,1", b"deposit,1,1,-1", b"deposit,1,1,1.00000000000000001",
     b"deposit,1,1\xff,1", b"deposit,1,2.,1", b'deposit,1,1,"1,5"', b"\xc2\xa0deposit,1,1,1"],
)
def test_risky_lines_take_the_exact_path(line):
    """The lines the fast path must not decode are decoded by the exact path, once each."""
    with mock.patch.object(decode_mod, "decode_line", wraps=decode_line) as exact:
        assert rows_of(b"deposit,1,1,1\n" + line + b"\n", 2) == exact_rows(b"deposit,1,1,1\n" + line + b"\n", 2)
    assert [c.args[0] for c in exact.call_args_list] == [line]


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
    (b'dispute,1,7,"a""b"', (DISPUTE, 1, 7, 0)),  # an escaped quote: the exact path
    (b"deposit,1,1,1.5\x0b", (DEPOSIT, 1, 1, 15000)),  # other whitespace: the exact path
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
    rows, rejects = rows_of(block, 2)
    assert len(rows) == 900 and rejects[0][0] == 502
    assert [r[0] for r in rows] == list(range(2, 502)) + list(range(503, 903))


def test_valid_rows_of_the_exact_path_merge_in_line_order():
    """Rows the normaliser leaves alone but that are valid come back between the fast rows."""
    lines = [b"deposit,1,%d,1" % i if i % 7 else b'dispute,1,%d,"a""b"' % i for i in range(1, 60)]
    lines[10:10] = [b"", b"\xc2\xa0", b"deposit,1,1,x"]
    block = b"\n".join(lines) + b"\n"
    assert rows_of(block, 5) == exact_rows(block, 5)


def test_json_msgspec_refuses_sends_the_whole_chunk_to_the_exact_path(monkeypatch, normalize):
    """Never by design: the normaliser checks what msgspec checks. Should they disagree,
    the chunk is decoded by the reference path rather than trusted."""
    block = b"deposit,1,1,1\ndeposit,70000,2,1\n\ndeposit,1,3,x\n"

    def vouches_too_much(data):
        assert data == block
        return b'[["deposit",1,1,10000],["deposit",70000,2,10000]]', bytes([1, 1, 0, 2]), 2, b"deposit,1,3,x\n"

    monkeypatch.setattr(decode_mod, "normalize", vouches_too_much)
    assert rows_of(block, 2) == exact_rows(block, 2)
    assert rows_of(block, 2)[1][0][0] == 3  # the out-of-range client: rejected


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




def test_the_reused_csv_reader_starts_each_line_afresh():
    """The exact path keeps one csv reader a thread: a quote left open on one line
    must not run on into the next."""
    bad, good = b'deposit,1,1,"1.5', b'deposit,"1","2", "2.5" '
    for _ in range(3):
        assert decode_line(bad, 2).detail == "malformed quoting: unexpected end of data"
        row = decode_line(good, 3)
        assert (row.kind, row.client, row.tx, row.amount) == (DEPOSIT, 1, 2, 25000)


def test_quoted_lines_decode_alike_in_threads():
    from concurrent.futures import ThreadPoolExecutor

    lines = [b'deposit,"%d","%d","1.5"' % (i, i) if i % 3 else b'deposit,%d,"%d' % (i, i) for i in range(3000)]
    want = [decode_line(line, 1) for line in lines]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda part: [decode_line(line, 1) for line in part], [lines] * 8))
    assert all(g == want for g in got)
