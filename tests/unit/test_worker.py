"""The worker (``shardpay.worker``): a shard applies data frames, spools its rejects as raw
ledger records in line order, answers a mark with its state at that point, and
reports its figures at the end of the stream."""

from __future__ import annotations

from array import array

import pytest

from shardpay import worker
from shardpay.codes import DEPOSIT, DISPUTE, INSUFFICIENT_FUNDS, REASONS, UNKNOWN_TX, WITHDRAWAL
from shardpay.frames import mark_frame, pack_frame
from shardpay.worker import Shard, run_worker

U = 10_000


def frame(*rows):
    cols = list(zip(*rows))
    return pack_frame(cols[0], bytes(cols[1]), cols[2], cols[3], cols[4])


FRAMES = [
    frame((2, DEPOSIT, 1, 1, 5 * U), (3, WITHDRAWAL, 1, 2, 9 * U)),  # line 3: insufficient_funds
    frame((4, DISPUTE, 1, 7, 0), (5, DISPUTE, 1, 1, 0)),  # line 4: unknown_tx
]


class FakeRing:
    """The consumer side of a ring: frames, then the end of the stream."""

    blocked_seconds = 0.25

    def __init__(self, frames):
        self.frames = list(frames)

    def recv(self):
        return self.frames.pop(0) if self.frames else None


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


class Stop:
    def __init__(self):
        self.set_calls = 0

    def set(self):
        self.set_calls += 1


def records(data: bytes):
    ints = array("q", data)
    return [tuple(ints[i : i + 7]) for i in range(0, len(ints), 7)]


def test_a_shard_counts_and_hands_over_its_rejects():
    shard = Shard()
    assert shard.apply(FRAMES[0]) == 1
    assert shard.take_rejects(at_least=2) == b""  # fewer held than asked: kept
    taken = records(shard.take_rejects())
    assert [(r[0], r[1]) for r in taken] == [(3, INSUFFICIENT_FUNDS)]
    assert shard.take_rejects() == b""
    shard.apply(FRAMES[1])
    shard.take_rejects()
    figures = shard.figures()
    assert figures["reject_counts"] == {"insufficient_funds": 1, "unknown_tx": 1}
    assert figures["rows"] == 4 and figures["stored"] == 1
    clients, available, held, locked = figures["snapshot"]
    assert list(clients) == [1] and list(available) == [0] and list(held) == [5 * U]


def test_a_malformed_frame_is_a_value_error():
    with pytest.raises(ValueError):
        Shard().apply(FRAMES[0][:-1])


def test_run_worker_spools_rejects_answers_marks_and_reports(tmp_path):
    spool = tmp_path / "spool"
    conn, stop = Conn(), Stop()
    ring = FakeRing([FRAMES[0], mark_frame(41), FRAMES[1]])
    figures = run_worker(ring, str(spool), stop, strict=False, conn=conn)
    [(kind, token, at_mark)] = conn.sent
    assert (kind, token) == ("mark", 41)
    assert at_mark["rows"] == 2 and at_mark["reject_counts"] == {"insufficient_funds": 1}
    assert [(r[0], REASONS[r[1]]) for r in records(spool.read_bytes())] == [(3, "insufficient_funds"),
                                                                          (4, "unknown_tx")]
    assert figures["rows"] == 4 and figures["wait_seconds"] == 0.25
    assert figures["reject_counts"] == {"insufficient_funds": 1, "unknown_tx": 1}
    assert stop.set_calls == 0


def test_strict_sets_stop_at_the_first_rejected_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "SPOOL_REJECTS", 1)  # every reject reaches the spool at once
    stop = Stop()
    run_worker(FakeRing(FRAMES), str(tmp_path / "spool"), stop, strict=True, conn=Conn())
    assert stop.set_calls == 2
    assert [r[1] for r in records((tmp_path / "spool").read_bytes())] == [INSUFFICIENT_FUNDS, UNKNOWN_TX]
