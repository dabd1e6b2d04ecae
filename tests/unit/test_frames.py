"""Frames (``shardpay.frames``): every message round-trips, a chunk's frames per shard
are byte for byte what :func:`pack_frame` makes of each shard's rows in line
order, malformed frames raise, and the columns can be read in place."""

import random

import numpy as np
import pytest

from shardpay.codes import DEPOSIT, DISPUTE, DUPLICATE, WITHDRAWAL
from tests.frame_helpers import columns_of
from shardpay.decode import Deposit, Dispute, Withdrawal
from shardpay.frames import (
    CHUNK_TAG,
    DECODED_TAG,
    FRAME_TAG,
    LONG_LINE_TAG,
    MARK_TAG,
    chunk_message,
    decoded_message,
    frame_layout,
    frame_rows,
    long_line_message,
    mark_frame,
    mark_token,
    pack_frame,
    read_chunk,
    read_decoded,
    read_long_line,
    shard_frames,
    shard_of,
    unpack_frame,
)


def test_frame_round_trip_and_malformed_frames():
    columns = (range(7, 10), bytearray([DEPOSIT, WITHDRAWAL + DUPLICATE, DISPUTE]), [0, 65535, 12],
               [2**32 - 1, 0, 5], [2**63 - 1, 1, 0])
    frame = pack_frame(*columns)
    assert frame[:1] == FRAME_TAG and frame_rows(frame) == 3
    got = unpack_frame(frame)
    assert [list(c) for c in got] == [list(c) for c in columns]
    assert list(zip(*unpack_frame(pack_frame([], b"", [], [], [])))) == []
    for bad in (frame[:-1], frame + b"\0", MARK_TAG + frame[1:], b"", frame[:3]):
        with pytest.raises(ValueError, match="not a shard frame"):
            unpack_frame(bad)
    with pytest.raises(OverflowError):
        pack_frame([1], b"\0", [1], [2**32], [1])


def test_the_tags_differ_and_every_message_round_trips():
    assert len({FRAME_TAG, MARK_TAG, CHUNK_TAG, LONG_LINE_TAG, DECODED_TAG}) == 5
    for token in (0, 1, 2**64 - 1):
        frame = mark_frame(token)
        assert frame[:1] == MARK_TAG and mark_token(frame) == token
    lines = b"deposit,1,1,1\ndispute,1,1\n"
    assert read_chunk(chunk_message(2**40, lines)) == (2**40, lines)
    assert read_long_line(long_line_message(7, 2**21, b"deposit,1")) == (7, 2**21, b"deposit,1")
    frame = pack_frame([3], b"\0", [1], [2], [3])
    for rejects in (b"", b"\x05\x00\x00\x00batch"):
        message = decoded_message(2, frame, rejects, 7)
        assert message[:1] == DECODED_TAG and read_decoded(message) == (2, frame, rejects, 7)


def test_the_layout_reads_each_column_in_place():
    columns = ([7, 2**63], bytes([DEPOSIT, DISPUTE]), [65535, 0], [2**32 - 1, 3], [1, 0])
    frame = pack_frame(*columns)
    n, layout = frame_layout(frame)
    assert n == 2
    got = [np.frombuffer(frame, dtype, n, offset).tolist() for offset, dtype in layout]
    assert got == [list(c) for c in columns]
    with pytest.raises(ValueError, match="not a shard frame"):
        frame_layout(frame[:-1])


@pytest.mark.parametrize("workers", [1, 2, 3, 8, 256])
def test_shard_of_spreads_clients_and_strided_ids_evenly(workers):
    table = shard_of(workers)
    assert len(table) == 65536 and max(table) == workers - 1
    for stride in (1, workers, 1024):
        counts = np.bincount(np.frombuffer(table, np.uint8)[::stride], minlength=workers)
        assert counts.max() <= 1.2 * counts.mean() + 2


def _rows(rng, n):
    rows = []
    for _ in range(n):
        client = rng.choice([0, 1, 65535, rng.randrange(65536)])
        tx = rng.choice([0, 2**32 - 1, rng.randrange(2**32)])
        kind = rng.randrange(3)
        rows.append(Deposit(client, tx, rng.choice([1, 2**62, rng.randrange(1, 10**12)])) if kind == 0
                    else Withdrawal(client, tx, rng.randrange(1, 10**9)) if kind == 1 else Dispute(client, tx))
    return rows


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize("lines", ["range", "list"])
def test_shard_frames_are_pack_frame_of_each_shards_rows(workers, lines):
    rng = random.Random(workers)
    rows = _rows(rng, 500)
    numbers = range(7, 507) if lines == "range" else sorted(rng.sample(range(2**33, 2**33 + 5000), 500))
    shard = shard_of(workers)
    frames = shard_frames(columns_of(numbers, rows), np.frombuffer(shard, np.uint8), workers)
    assert len(frames) == workers
    for s, frame in enumerate(frames):
        mine = [(line, r) for line, r in zip(numbers, rows) if shard[r.client] == s]
        want = pack_frame([line for line, _ in mine], bytes(r.kind for _, r in mine), [r.client for _, r in mine],
                          [r.tx for _, r in mine], [getattr(r, "amount", 0) for _, r in mine]) if mine else None
        assert frame == want


def test_a_shard_with_no_rows_gets_no_frame():
    rows = [Deposit(5, 1, 10), Deposit(5, 2, 10)]
    shard = np.zeros(65536, np.uint8)
    shard[5] = 1
    assert shard_frames(columns_of(range(2), rows), shard, 2)[0] is None
