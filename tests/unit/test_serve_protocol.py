"""shardpay.serve.protocol: every request and answer line, built and parsed back; bad ones named."""

from __future__ import annotations

import zlib

import pytest

from shardpay.serve.protocol import (
    ERROR_CODES,
    Auth,
    Batch,
    Commit,
    ProtocolError,
    RowReject,
    auth_line,
    batch_request,
    count_lines,
    default_batch_id,
    error_line,
    is_batch_id,
    parse_answer_line,
    parse_reject_line,
    parse_request,
    reject_line,
    reject_lines,
    status_line,
)

BODY = b"type,client,tx,amount\ndeposit,1,1,5\nwithdrawal,1,2,9"


def test_a_batch_request_is_its_line_its_bytes_and_its_commit_line():
    request = batch_request("day-1.part:2", BODY)
    head, rest = request.split(b"\n", 1)
    assert head == b"batch day-1.part:2 %d" % len(BODY)
    assert rest[: len(BODY)] == BODY
    assert rest[len(BODY):] == b"commit 3 %08x\n" % zlib.crc32(BODY)
    assert parse_request(head + b"\n") == Batch("day-1.part:2", len(BODY))
    assert parse_request(rest[len(BODY):]) == Commit(3, zlib.crc32(BODY))


@pytest.mark.parametrize(("body", "lines"), [(b"", 0), (b"a\n", 1), (b"a", 1), (b"a\nb", 2), (b"\n\n", 2)])
def test_lines_count_a_last_line_without_lf(body, lines):
    assert count_lines(body) == lines


def test_auth_round_trip():
    assert parse_request(auth_line("alice", "s3cret-s3cret-s3cret")) == Auth("alice", "s3cret-s3cret-s3cret")


@pytest.mark.parametrize(("line", "code", "words"), [
    (b"hello\n", "protocol", "expected 'auth NAME TOKEN'"),
    (b"batch a b c\n", "protocol", "expected"),
    (b"batch has/slash 3\n", "protocol", "batch id 'has/slash'"),
    (b"batch " + b"x" * 129 + b" 3\n", "protocol", "batch id"),
    (b"batch ok -3\n", "protocol", "SIZE '-3' is not a whole number"),
    (b"commit 3 ABCDEF01\n", "protocol", "8 lowercase hex digits"),
    (b"commit x 0000abcd\n", "protocol", "LINES 'x'"),
    (b"auth al ice tok\n", "protocol", "expected"),
    (b"auth al/ice tok\n", "auth", "token name"),
])
def test_malformed_requests_are_named(line, code, words):
    with pytest.raises(ProtocolError) as err:
        parse_request(line)
    assert err.value.code == code and words in err.value.message


def test_batch_ids():
    assert is_batch_id("a") and is_batch_id("2026-12-01T10:00:00.000Z_x") and is_batch_id("x" * 128)
    assert not is_batch_id("") and not is_batch_id("a b") and not is_batch_id("é") and not is_batch_id("x" * 129)
    with pytest.raises(ValueError, match="batch id"):
        batch_request("no spaces", BODY)
    assert default_batch_id(BODY) == default_batch_id(bytes(BODY)) != default_batch_id(BODY + b"\n")
    assert is_batch_id(default_batch_id(BODY)) and default_batch_id(BODY).startswith("sha256-")


def test_answers_round_trip():
    assert parse_answer_line(status_line("ok", "b1", 8, 2)) == ("ok", "b1", 8, 2)
    assert parse_answer_line(status_line("already", "b1", 0, 0)) == ("already", "b1", 0, 0)
    line = reject_line(6, "insufficient_funds", "available 2.0000 is less than 3.0000, and more")
    assert parse_reject_line(line) == RowReject(6, "insufficient_funds", "available 2.0000 is less than 3.0000, and more")
    assert str(parse_reject_line(line)) == "line 6: insufficient_funds: available 2.0000 is less than 3.0000, and more"


def test_error_lines_carry_code_and_message_and_stay_one_line():
    line = error_line(None, "checksum", "bad\nworse\r")
    assert line == b"error - checksum: bad\\nworse\\r\n"
    with pytest.raises(ProtocolError) as err:
        parse_answer_line(error_line("b7", "conflict", "batch id 'b7' was committed before"))
    assert (err.value.code, err.value.message) == ("conflict", "batch id 'b7' was committed before")
    assert "\n" not in reject_line(3, "invalid_row", "a\nb").decode()[:-1]
    rows = [(1, "x", "", "", "", "invalid_row", "a\nb\r"), (2, "dispute", "1", "2", "", "unknown_tx", "é, and more")]
    assert reject_lines(rows, 2) == b"3,invalid_row,a\\nb\\r\n4,unknown_tx,\xc3\xa9, and more\n"
    assert reject_lines(iter(rows[1:])) == reject_line(2, "unknown_tx", "é, and more")
    assert {"auth", "conflict", "journal", "checksum", "too_large", "busy", "timeout", "stopping"} <= set(ERROR_CODES)


def test_an_answer_that_is_no_answer():
    with pytest.raises(ProtocolError, match="not a protocol 1 answer"):
        parse_answer_line(b"HTTP/1.1 400 Bad Request\n")
    with pytest.raises(ProtocolError):
        parse_reject_line(b"x,y\n")
