"""Property 3: the shared-memory ring between two processes, as a state machine.

The test process is the consumer; a forked child is the producer, told what
to send over a pipe. Frames have random sizes (empty, tiny, about one slot,
larger than half the ring, larger than the whole ring) and random contents;
the producer sleeps a random time before some frames and the consumer before
some receives, so either side may be the one waiting (full ring:
backpressure; empty ring: the consumer blocks). The consumer only ever waits
for frames already ordered, so the test cannot deadlock unless the ring does.

Checked: every frame arrives once, whole, in order; after the end-of-stream
mark ``recv`` returns None; the producer exits cleanly; the segment is
unlinked (always, in ``finally``).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shardpay.errors import RingError
from shardpay.ring import Ring, segment_name

CTX = multiprocessing.get_context("fork")
HEADER_BYTES = 8  # a slot's header ('<IB3x'); the rest of the slot is payload
DEADLINE_SECONDS = 20.0  # a ring that makes no progress for this long is a hang: fail, don't wait
DELAYS = st.sampled_from([0.0, 0.0, 0.0, 0.0005, 0.002, 0.01])


def frame(seq: int, size: int) -> bytes:
    """The ``seq``-th frame's bytes: random, but the same in both processes."""
    return random.Random(seq).randbytes(size)


def _produce(ring: Ring, conn, parent: int) -> None:
    """The producer process: run commands from the pipe until told to send EOS."""
    ring.alive = lambda: os.getppid() == parent
    while True:
        cmd = conn.recv()
        if cmd[0] == "eos":
            ring.send_eos()
            return
        for seq, size, delay in cmd[1]:
            if delay:
                time.sleep(delay)
            ring.send(frame(seq, size))


class RingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ring: Ring | None = None
        self.proc = None
        self.conn = None
        self.sent: list[int] = []  # sizes of the frames ordered so far, by sequence number
        self.received = 0
        self.deadline = 0.0

    @initialize(slots=st.integers(1, 5), slot_bytes=st.sampled_from([HEADER_BYTES + 1, 16, 64, 200]))
    def start(self, slots, slot_bytes):
        self.ring = Ring(CTX, segment_name(0), slots=slots, slot_bytes=slot_bytes)
        self.payload = slot_bytes - HEADER_BYTES
        self.capacity = slots * self.payload
        parent_end, child_end = CTX.Pipe()
        self.conn = parent_end
        try:
            self.proc = CTX.Process(target=_produce, args=(self.ring, child_end, os.getpid()), daemon=True)
            self.proc.start()
        except BaseException:
            self.ring.unlink()
            raise
        child_end.close()
        self.ring.alive = lambda: self.proc.is_alive() and time.monotonic() < self.deadline

    @rule(
        sizes=st.lists(
            st.one_of(
                st.just(0),
                st.integers(1, 3),
                st.sampled_from(["slot", "slot+1", "half+1", "ring", "ring+1", "2ring"]),
                st.integers(0, 600),
            ),
            min_size=1,
            max_size=6,
        ),
        delays=st.lists(DELAYS, min_size=6, max_size=6),
    )
    def produce(self, sizes, delays):
        """Order the producer to send frames (it blocks by itself when the ring is full)."""
        named = {
            "slot": self.payload,
            "slot+1": self.payload + 1,
            "half+1": self.capacity // 2 + 1,
            "ring": self.capacity,
            "ring+1": self.capacity + 1,
            "2ring": 2 * self.capacity + 3,
        }
        batch = []
        for size, delay in zip(sizes, delays):
            size = named.get(size, size)
            batch.append((len(self.sent), size, delay))
            self.sent.append(size)
        self.conn.send(("send", batch))

    @rule(n=st.integers(1, 8), delay=DELAYS)
    def consume(self, n, delay):
        """Receive up to ``n`` of the frames ordered and not yet received; each must be the next one, whole."""
        if delay:
            time.sleep(delay)
        for _ in range(min(n, len(self.sent) - self.received)):
            self._expect_next()

    def _expect_next(self) -> None:
        self.deadline = time.monotonic() + DEADLINE_SECONDS
        got = self.ring.recv()
        seq = self.received
        assert got is not None, f"end of stream before frame {seq}"
        want = frame(seq, self.sent[seq])
        assert len(got) == len(want), f"frame {seq}: {len(got)} bytes, sent {len(want)}"
        assert got == want, f"frame {seq} ({len(want)} bytes) arrived corrupted"
        self.received += 1

    @invariant()
    def producer_alive(self):
        if self.proc is not None:
            assert self.proc.exitcode is None, f"the producer exited early (code {self.proc.exitcode})"

    def teardown(self):
        if self.ring is None:
            return
        try:
            self.conn.send(("eos",))
            while self.received < len(self.sent):
                self._expect_next()
            self.deadline = time.monotonic() + DEADLINE_SECONDS
            assert self.ring.recv() is None, "no end of stream after the last frame"
            self.proc.join(DEADLINE_SECONDS)
            assert self.proc.exitcode == 0, f"producer exit code {self.proc.exitcode}"
        finally:
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.conn.close()
            self.ring.unlink()
            assert not os.path.exists(f"/dev/shm/{self.ring.name}")


# A fork and a shared-memory segment per run, and real sleeps: a third of the profile's example budget.
RingMachine.TestCase.settings = settings(
    RingMachine.TestCase.settings, max_examples=max(10, RingMachine.TestCase.settings.max_examples // 3)
)
TestRingMachine = RingMachine.TestCase


def test_a_stuck_peer_is_an_error_not_a_hang(shm_clean):
    """The machine's deadline works: a consumer with nothing coming fails instead of hanging."""
    ring = Ring(CTX, segment_name(0), slots=2, slot_bytes=16)
    try:
        deadline = time.monotonic() + 0.3
        ring.alive = lambda: time.monotonic() < deadline
        try:
            ring.recv()
        except RingError:
            pass
        else:  # pragma: no cover
            raise AssertionError("recv returned with nothing sent")
    finally:
        ring.unlink()
