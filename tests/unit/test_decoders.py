"""The decoders (``shardpay.decoders``): a chunk message becomes one decoded chunk, its
well-formed rows as a data frame in line order and its invalid rows as one
reject batch, numbered from the chunk's first line; long lines are rejected in
place; marks pass through; a decoder process decodes its ring in order."""

from __future__ import annotations

import pytest

from shardpay.codes import DEPOSIT, DISPUTE, WITHDRAWAL
from shardpay.decoders import Decoder, run_decoder
from shardpay.frames import (
    DECODED_TAG,
    chunk_message,
    long_line_message,
    mark_frame,
    read_decoded,
    unpack_frame,
)
from shardpay.rejects import unpack_rejects

CHUNK = b"deposit,1,7,1.5\n\nbogus\nwithdrawal,2,8,0.25\ndispute,1,7\n"


def decoded(message: bytes):
    invalid, frame, rejects, base = read_decoded(message)
    return invalid, [(line + base, *rest) for line, *rest in zip(*unpack_frame(frame))], unpack_rejects(rejects)


def test_a_chunk_decodes_to_its_rows_and_rejects_numbered_from_its_first_line():
    decoder = Decoder()
    out = decoder.decode(chunk_message(40, CHUNK))
    assert out[:1] == DECODED_TAG
    invalid, rows, rejects = decoded(out)
    assert rows == [(40, DEPOSIT, 1, 7, 15000), (43, WITHDRAWAL, 2, 8, 2500), (44, DISPUTE, 1, 7, 0)]
    assert invalid == 1 and [(r.line, r.type, r.reason) for r in rejects] == [(42, "bogus", "invalid_row")]
    assert (decoder.rows, decoder.invalid, decoder.chunks) == (4, 1, 1)  # the empty line is no row


def test_a_clean_chunk_has_no_reject_batch():
    invalid, frame, rejects, base = read_decoded(Decoder().decode(chunk_message(2, b"deposit,1,1,1\n")))
    assert (invalid, rejects, base) == (0, b"", 2) and list(unpack_frame(frame)[0]) == [0]


def test_a_long_line_is_rejected_where_it_stood():
    decoder = Decoder()
    invalid, rows, rejects = decoded(decoder.decode(long_line_message(9, 5_000_000, b"deposit,1,2,33333")))
    assert (invalid, rows) == (1, [])
    [r] = rejects
    assert (r.line, r.type, r.reason) == (9, "deposit,1,2,33333...", "invalid_row")
    assert r.detail.startswith("line is 5000000 bytes, longer than the")
    assert (decoder.rows, decoder.invalid) == (1, 1)


def test_a_mark_passes_through_unchanged():
    mark = mark_frame(5)
    assert Decoder().decode(mark) is mark


class Ring:
    """One side of a ring: messages to receive, messages sent."""

    def __init__(self, messages=()):
        self.messages = list(messages)
        self.sent = []
        self.ended = False
        self.blocked_seconds = 0.5

    def recv(self):
        return self.messages.pop(0) if self.messages else None

    def send(self, message):
        self.sent.append(message)

    def send_eos(self):
        self.ended = True


class Stop:
    def __init__(self):
        self.is_set = False

    def set(self):
        self.is_set = True


@pytest.mark.parametrize("strict", [False, True])
def test_a_decoder_process_decodes_its_ring_in_order_and_ends_it(strict):
    chunks = Ring([chunk_message(2, b"deposit,1,1,1\n"), mark_frame(1), chunk_message(9, CHUNK)])
    out, stop = Ring(), Stop()
    figures = run_decoder(chunks, out, stop, strict)
    assert [m[:1] for m in out.sent] == [DECODED_TAG, b"M", DECODED_TAG] and out.ended
    assert decoded(out.sent[2])[1][0] == (9, DEPOSIT, 1, 7, 15000)
    assert figures["rows"] == 5 and figures["invalid"] == 1 and figures["chunks"] == 2
    assert stop.is_set is strict  # --strict: the first invalid row stops the reader
