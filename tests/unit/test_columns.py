"""The reader's whole-chunk columns (``shardpay.columns``): a chunk's rows as numpy
columns, split into one frame per shard that must be, byte for byte, what
:func:`shardpay.reader.pack_frame` makes of that shard's rows in line order."""

import random

import numpy as np
import pytest

from shardpay.columns import chunk_columns, mark_duplicates, shard_frames
from shardpay.decode import Deposit, Dispute, Withdrawal
from shardpay.ledger import DUPLICATE
from shardpay.reader import _COUNT, FRAME_TAG, pack_frame, shard_of, unpack_frame


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
    frames = shard_frames(chunk_columns(numbers, rows), np.frombuffer(shard, np.uint8), workers, FRAME_TAG, _COUNT)
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
    assert shard_frames(chunk_columns(range(2), rows), shard, 2, FRAME_TAG, _COUNT)[0] is None


def test_duplicates_are_marked_in_line_order_on_money_rows_only():
    rows = [Deposit(1, 9, 5), Dispute(1, 9), Withdrawal(2, 9, 5), Deposit(3, 4, 5), Deposit(3, 7, 5),
            Deposit(3, 7, 5)]
    cols = chunk_columns(range(len(rows)), rows)
    money = cols.kinds <= 1
    mark_duplicates(cols, money, suspects={9, 4, 7}, old={4}, duplicate=DUPLICATE)
    kinds = cols.kinds.tolist()
    assert kinds == [0, 2, 1 + DUPLICATE, DUPLICATE, 0, DUPLICATE]
    lines, frame_kinds, *_ = unpack_frame(shard_frames(cols, np.zeros(65536, np.uint8), 1, FRAME_TAG, _COUNT)[0])
    assert list(frame_kinds) == kinds and list(lines) == list(range(6))
