"""The shared-memory ring: frames arrive once, whole, in order; a full ring blocks."""

import multiprocessing
import os
import threading
import time

import pytest

from shardpay.errors import RingError
from shardpay.ring import Ring, segment_name, sweep_stale_segments

CTX = multiprocessing.get_context("fork")


@pytest.fixture
def ring(shm_clean):
    r = Ring(CTX, segment_name(0), slots=4, slot_bytes=64)
    yield r
    r.unlink()


def test_frames_of_every_size_in_order(ring):
    frames = [b"", b"a", bytes(range(56)), bytes(57), os.urandom(1000), b"z" * 56 * 4, b"tail"]
    got = []
    t = threading.Thread(target=lambda: [got.append(ring.recv()) for _ in frames])
    t.start()
    for f in frames:
        ring.send(f)
    t.join(5)
    assert got == frames


def test_wrap_around_many_times(ring):
    for i in range(100):  # 4 slots: the cursor wraps 25 times
        ring.send(b"%d" % i)
        assert ring.recv() == b"%d" % i


def test_full_ring_blocks_producer_until_consumer_frees(ring):
    for i in range(4):
        ring.send(b"x")  # fills all 4 slots
    done = threading.Event()
    t = threading.Thread(target=lambda: (ring.send(b"y"), done.set()))
    t.start()
    assert not done.wait(0.5)  # blocked: backpressure
    assert ring.recv() == b"x"
    assert done.wait(2)
    t.join()
    assert [ring.recv() for _ in range(4)] == [b"x", b"x", b"x", b"y"]


def test_frame_larger_than_free_space_and_than_the_ring(ring):
    ring.send(b"a" * 100)  # two slots used
    big = os.urandom(56 * 10)  # 10 slots: more than the whole ring
    t = threading.Thread(target=ring.send, args=(big,))
    t.start()
    assert ring.recv() == b"a" * 100
    assert ring.recv() == big
    t.join(2)


def test_end_of_stream(ring):
    ring.send(b"last")
    ring.send_eos()
    assert ring.recv() == b"last"
    assert ring.recv() is None


def test_empty_ring_blocks_consumer_without_spinning(ring):
    got = []
    t = threading.Thread(target=lambda: got.append(ring.recv()))
    cpu0 = time.process_time()
    t.start()
    time.sleep(0.6)
    assert got == []
    ring.send(b"now")
    t.join(2)
    assert got == [b"now"]
    assert time.process_time() - cpu0 < 0.3  # blocked, not polling a core


def test_dead_peer_is_an_error_not_a_hang(ring):
    ring.alive = lambda: False
    t0 = time.monotonic()
    with pytest.raises(RingError, match="gone"):
        ring.recv()
    assert time.monotonic() - t0 < 2


def _produce(r, n):
    for i in range(n):
        r.send(bytes([i % 256]) * (i % 150))
    r.send_eos()


def test_two_processes(shm_clean):
    r = Ring(CTX, segment_name(1), slots=3, slot_bytes=40)
    try:
        p = CTX.Process(target=_produce, args=(r, 500))
        p.start()
        got = []
        while (f := r.recv()) is not None:
            got.append(f)
        p.join(5)
        assert p.exitcode == 0
        assert got == [bytes([i % 256]) * (i % 150) for i in range(500)]
    finally:
        r.unlink()


def test_sweep_removes_segments_of_dead_runs(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: never a live pid
    (tmp_path / f"shardpay-{dead}-abcd1234-0").write_bytes(b"")
    (tmp_path / f"shardpay-{os.getpid()}-abcd1234-0").write_bytes(b"")
    (tmp_path / "other").write_bytes(b"")
    assert sweep_stale_segments(str(tmp_path)) == [f"shardpay-{dead}-abcd1234-0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"shardpay-{os.getpid()}-abcd1234-0", "other"])
