"""The reader (``shardpay.reader``): the header, BOM and line numbers, chunks of whole
lines, overlong lines, marks in order, feeding in any chunking; and through the
stages behind it (decoder, sequencer; ``shardpay.testing.stages``): each
client's rows on one shard, duplicates marked, the same rows whatever the
chunking."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shardpay.reader as reader_mod
from shardpay.codes import DEPOSIT, DISPUTE, DUPLICATE, WITHDRAWAL
from shardpay.errors import InputError
from shardpay.frames import CHUNK_TAG, LONG_LINE_TAG, MARK_TAG, read_chunk, read_long_line, unpack_frame
from shardpay.reader import Reader
from shardpay.testing.stages import route

CLEAN = b"deposit,1,1,1.5\nwithdrawal,2,2,0.0001\ndispute,1,1,\nresolve,1,1,\nchargeback,3,4,\n"


def _rows(frames: list[list[bytes]]) -> list[tuple]:
    """Every row of every shard's frames, as (line, kind, client, tx, amount), sorted."""
    return sorted(row for shard in frames for frame in shard for row in zip(*unpack_frame(frame)))


def read_frames(data: bytes, workers: int = 1, chunk_bytes: int | None = None):
    routed = route(data, workers, chunk_bytes)
    return routed.frames, [(x.line, x.reason) for x in routed.rejects], routed


def read_all(data: bytes, workers: int = 1):
    frames, rejects, r = read_frames(data, workers)
    return _rows(frames), rejects, r


def test_reader_bom_header_and_line_numbers():
    data = b"\xef\xbb\xbf\n\ntype,client,tx,amount\r\ndeposit,1,1,1\r\n\r\ndeposit,2,2,2"
    rows, rejects, r = read_all(data)
    assert rows == [(4, DEPOSIT, 1, 1, 10000), (6, DEPOSIT, 2, 2, 20000)]
    assert r.sequencer.rows == 2 and rejects == []


def test_reader_empty_and_header_only():
    assert read_all(b"")[0] == [] and read_all(b"\n\n")[0] == []
    assert read_all(b"type,client,tx,amount\n")[0] == []


def test_reader_bad_header():
    with pytest.raises(InputError):
        read_all(b"\nfoo,bar\ndeposit,1,1,1\n")


def test_reader_claims_tx_ids_and_marks_duplicates():

    data = b"type,client,tx,amount\ndeposit,1,1,1\nwithdrawal,2,1,1\ndispute,1,1,\ndeposit,1,2,0\ndeposit,3,2,1\n"
    rows, rejects, _ = read_all(data, workers=3)
    kinds = {line: kind for line, kind, *_ in rows}
    assert kinds == {2: DEPOSIT, 3: WITHDRAWAL + DUPLICATE, 4: DISPUTE, 6: DEPOSIT}
    assert rejects == [(5, "invalid_row")]  # an invalid row claims nothing


def test_reader_routes_each_client_to_one_shard():
    data = b"type,client,tx,amount\n" + b"".join(b"deposit,%d,%d,1\n" % (i % 50, i) for i in range(1000))
    frames = route(data, 4).frames
    owner = {}
    for s, shard in enumerate(frames):
        for frame in shard:
            for c in unpack_frame(frame)[2]:
                assert owner.setdefault(c, s) == s
    assert len(set(owner.values())) == 4


def test_reader_chunk_size_changes_frames_not_rows():

    lines = [b"type,client,tx,amount"]
    for i in range(1, 400):
        kind = (b"deposit", b"withdrawal", b"dispute")[i % 3]
        amount = b"" if kind == b"dispute" else b"%d.%d" % (i, i % 7)
        lines.append(b"%s,%d,%d,%s" % (kind, i % 37, i if kind != b"dispute" else i - 2, amount))
    lines[50] = b"deposit,1,x,1"  # invalid: rejected whatever the chunking
    lines[90] = b"deposit,2,3,1"  # a duplicate tx id, claimed in an earlier chunk
    data = b"\n".join(lines) + b"\n"
    results = []
    for size in (None, 97, 4096):
        frames, rejects, _ = read_frames(data, 2, size)
        results.append((_rows(frames), rejects, sum(map(len, frames))))
    assert results[0][:2] == results[1][:2] == results[2][:2]
    assert (51, "invalid_row") in results[0][1]
    assert any(row[0] == 91 and row[1] >= DUPLICATE for row in results[0][0])
    assert results[1][2] > results[2][2] >= 2  # smaller chunks, more frames


def test_reader_rejects_overlong_line_without_holding_it(monkeypatch):
    monkeypatch.setattr(reader_mod, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(reader_mod, "CHUNK_BYTES", 256)
    data = b"type,client,tx,amount\ndeposit,1,1,1\ndispute,1,1," + b"9" * 5000 + b"\ndeposit,1,2,1\n"
    rows, rejects, _ = read_all(data)
    assert [r[0] for r in rows] == [2, 4]
    assert rejects == [(3, "invalid_row")]


def _fed(data: bytes, cuts: list[int], workers: int = 2):
    def feed(reader):
        prev = 0
        for cut in sorted(cuts) + [len(data)]:
            reader.feed(data[prev:cut])
            prev = max(prev, cut)
        reader.finish()

    routed = route(b"", workers, feed=feed)
    return _rows(routed.frames), [(x.line, x.reason, x.detail) for x in routed.rejects]


FEED_SAMPLE = (
    b"\xef\xbb\xbf\r\ntype,client,tx,amount\r\n" + CLEAN + b"deposit, 5 ,9,1\n\n" + b"dispute,1,1," + b"x" * 3000
    + b"\nwithdrawal,2,2,1\ndeposit,\xff,1,1\nresolve,1,1"
)


def test_feed_in_any_chunking_equals_run(monkeypatch):
    monkeypatch.setattr(reader_mod, "MAX_LINE_BYTES", 1000)
    want_rows, want_rejects, _ = read_all(FEED_SAMPLE, workers=2)
    want = (want_rows, want_rejects)
    assert _fed(FEED_SAMPLE, list(range(len(FEED_SAMPLE))))[0] == want_rows  # one byte at a time

    @given(st.lists(st.integers(0, len(FEED_SAMPLE)), max_size=30))
    def any_cuts(cuts):
        rows, rejects = _fed(FEED_SAMPLE, cuts)
        assert (rows, [(line, reason) for line, reason, _ in rejects]) == want
        assert any("longer than the 1000-byte limit" in d for _, _, d in rejects)

    any_cuts()




def messages(data: bytes, chunk_bytes: int | None = None, marks: dict[int, int] | None = None) -> list[bytes]:
    """The reader's messages for ``data`` fed in pieces of 50 bytes, a mark after the pieces named in ``marks``."""
    out: list[bytes] = []
    reader = Reader(out.append, chunk_bytes)
    for i in range(0, len(data), 50):
        reader.feed(data[i : i + 50])
        if marks and i // 50 in marks:
            reader.mark(marks[i // 50])
    reader.finish()
    return out


def test_chunks_hold_whole_lines_numbered_by_their_first_line():
    data = b"\ntype,client,tx,amount\n" + b"".join(b"deposit,%d,%d,1\n" % (i, i) for i in range(1, 40))
    out = messages(data, chunk_bytes=64)
    assert all(m[:1] == CHUNK_TAG for m in out) and len(out) > 5
    line = 3  # an empty line, then the header
    for first, block in map(read_chunk, out):
        assert first == line and block.endswith(b"\n")
        line += block.count(b"\n")
    assert b"".join(read_chunk(m)[1] for m in out) == data.split(b"amount\n", 1)[1]


def test_an_overlong_line_is_a_long_line_message_in_its_place(monkeypatch):
    monkeypatch.setattr(reader_mod, "MAX_LINE_BYTES", 100)
    data = b"type,client,tx,amount\ndeposit,1,1,1\ndispute,1,1," + b"9" * 500 + b"\ndeposit,1,2,1"
    out = messages(data)
    kinds = [m[:1] for m in out]
    assert LONG_LINE_TAG in kinds
    line, size, head = read_long_line(out[kinds.index(LONG_LINE_TAG)])
    assert (line, size) == (3, 512) and head == (b"dispute,1,1," + b"9" * 500)[:40]
    assert read_chunk(out[-1]) == (4, b"deposit,1,2,1\n")  # the last line, without its LF, counts


def test_a_mark_follows_every_complete_line_fed_before_it():
    data = b"type,client,tx,amount\n" + b"".join(b"deposit,1,%d,1\n" % i for i in range(20))
    out = messages(data, marks={3: 77})
    at = [m[:1] for m in out].index(MARK_TAG)
    before = b"".join(read_chunk(m)[1] for m in out[:at])
    assert before == data[len(b"type,client,tx,amount\n") : data.rfind(b"\n", 0, 200) + 1]


def test_a_header_that_is_too_long_is_fatal(monkeypatch):
    monkeypatch.setattr(reader_mod, "MAX_LINE_BYTES", 100)
    with pytest.raises(InputError, match="first line is longer"):
        messages(b"type" * 100 + b"\ndeposit,1,1,1\n")
