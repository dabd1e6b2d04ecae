"""The sequencer (``shardpay.sequencer``): decoded chunks taken back in file order, their
rejects handed on, their tx ids claimed across chunks, their rows split by
shard; marks passed to every worker and answered; every decoder's stream
ends together."""

from __future__ import annotations

import pytest

from shardpay.codes import DEPOSIT, DUPLICATE, WITHDRAWAL
from shardpay.errors import RingError
from shardpay.frames import decoded_message, mark_frame, pack_frame, read_decoded, shard_of, unpack_frame
from shardpay.rejects import Reject, rejects_batch, unpack_rejects
from shardpay.sequencer import Sequencer, run_sequencer
from tests.unit.test_decoders import Ring, Stop


def decoded(rows, invalid=(), first=2):
    """A decoded-chunk message of ``rows`` ``(kind, client, tx, amount)`` from line ``first``."""
    lines = range(first, first + len(rows))
    frame = pack_frame(lines, bytes(r[0] for r in rows), [r[1] for r in rows], [r[2] for r in rows],
                       [r[3] for r in rows])
    rejects = [Reject(line, "x", "", "", "", "invalid_row", "d") for line in invalid]
    return decoded_message(len(rejects), frame, rejects_batch(rejects) if rejects else b"")


def rows_of(frames):
    return sorted(row for f in frames if f is not None for row in zip(*unpack_frame(f)))


def test_rows_split_by_shard_and_duplicates_claimed_across_chunks():
    seq = Sequencer(3)
    first = decoded([(DEPOSIT, 1, 10, 5), (WITHDRAWAL, 2, 11, 5), (DEPOSIT, 3, 10, 5)])
    rejects, frames = seq.sequence(first)
    assert rejects == b"" and len(frames) == 3
    owner = shard_of(3)
    for s, frame in enumerate(frames):
        assert frame is None or all(owner[c] == s for c in unpack_frame(frame)[2])
    assert [r[1] for r in rows_of(frames)] == [DEPOSIT, WITHDRAWAL, DEPOSIT + DUPLICATE]
    _, frames = seq.sequence(decoded([(WITHDRAWAL, 4, 11, 1)], first=9))  # claimed by an earlier chunk
    assert rows_of(frames) == [(9, WITHDRAWAL + DUPLICATE, 4, 11, 1)]
    assert (seq.rows, seq.duplicates, sum(seq.shard_rows)) == (4, 2, 4)


def test_invalid_rows_are_counted_and_their_batch_handed_on():
    seq = Sequencer(2)
    rejects, frames = seq.sequence(decoded([(DEPOSIT, 1, 1, 1)], invalid=[3, 4]))
    assert [r.line for r in unpack_rejects(rejects)] == [3, 4]
    assert (seq.rows, seq.invalid) == (3, 2)


def test_one_shard_gets_the_decoders_frame_itself_unless_a_row_is_marked():
    seq = Sequencer(1)
    message = decoded([(DEPOSIT, 1, 1, 1), (DEPOSIT, 2, 2, 1)])
    _, [frame] = seq.sequence(message)
    assert frame == read_decoded(message)[1]  # the data frame inside the message, unchanged
    _, [frame] = seq.sequence(decoded([(DEPOSIT, 1, 2, 1)], first=5))
    assert rows_of([frame]) == [(5, DEPOSIT + DUPLICATE, 1, 2, 1)]


@pytest.mark.parametrize("workers", [1, 2])
def test_line_numbers_relative_to_a_base_come_out_whole(workers):
    """A decoder sends a chunk of plain rows with its lines as 0, 1, 2, ... and the
    chunk's first line as the base; every shard frame carries the physical lines."""
    rows = [(DEPOSIT, c, 100 + c, 1) for c in range(6)]
    frame = pack_frame(range(6), bytes(r[0] for r in rows), [r[1] for r in rows], [r[2] for r in rows],
                       [r[3] for r in rows])
    _, frames = Sequencer(workers).sequence(decoded_message(0, frame, b"", 1000))
    assert rows_of(frames) == [(1000 + i, *r) for i, r in enumerate(rows)]


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


def test_a_sequencer_process_reads_its_decoders_in_turn(tmp_path):
    # messages 0 and 2 (chunks) went to decoder 0; 1 (a chunk) and 3 (a mark) to decoder 1
    d0 = Ring([decoded([(DEPOSIT, 1, 1, 1)], first=2), decoded([(DEPOSIT, 1, 1, 1)], invalid=[7], first=6)])
    d1 = Ring([decoded([(DEPOSIT, 2, 2, 1)], first=4), mark_frame(3)])
    shards, progress, conn = [Ring(), Ring()], [0, 0], Conn()
    figures = run_sequencer([d0, d1], shards, str(tmp_path / "spool"), Stop(), False, progress, conn)
    sent = [m for ring in shards for m in ring.sent]
    assert rows_of([m for m in sent if m[:1] == b"F"]) == [(2, DEPOSIT, 1, 1, 1), (4, DEPOSIT, 2, 2, 1),
                                                         (6, DEPOSIT + DUPLICATE, 1, 1, 1)]
    assert all(ring.ended for ring in shards)
    assert conn.sent == [("mark", 3, {"rows": 4, "invalid": 1})]  # behind every chunk
    assert all(mark_frame(3) in ring.sent for ring in shards)
    assert [r.line for r in unpack_rejects((tmp_path / "spool").read_bytes())] == [7]
    assert figures["rows"] == progress[1] == 4 and figures["invalid"] == 1 and figures["duplicates"] == 1


def test_decoders_that_do_not_end_together_are_an_error(tmp_path):
    d0, d1 = Ring([]), Ring([decoded([(DEPOSIT, 2, 2, 1)])])
    with pytest.raises(RingError, match="went on after another's ended"):
        run_sequencer([d0, d1], [Ring()], str(tmp_path / "spool"), Stop(), False, [0, 0], Conn())
