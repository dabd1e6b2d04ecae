"""A single-producer single-consumer ring of frames over shared memory.

Byte layout of one segment (``slots * slot_bytes`` bytes)::

    slot 0                  slot 1                          slot N-1
    +--------+-------------+--------+-------------+  ...  +--------+-----+
    | header | payload ... | header | payload ... |       | header | ... |
    +--------+-------------+--------+-------------+       +--------+-----+
    header = struct '<IB3x': payload length (u32), flags (u8), 3 pad bytes

    flags: FIRST (a frame starts here), LAST (it ends here), EOS (end of stream)

A frame is any byte string, empty or larger than the whole ring: it occupies
one or more consecutive slots (FIRST on the first, LAST on the last), wrapping
from slot N-1 to slot 0. The end of the stream is one slot with EOS.

Synchronisation is two POSIX semaphores, no atomics (pure Python has neither
atomics nor fences; ``sem_post``/``sem_wait`` order memory on every architecture):
``free`` counts empty slots (starts at N), ``full`` counts written slots
(starts at 0). The producer waits on ``free`` (a full ring blocks it:
backpressure), writes a slot, posts ``full``; the consumer waits on ``full``
(an empty ring blocks it without spinning), copies the slot out, posts
``free``. ``sem_post``/``sem_wait`` order the memory accesses on every
architecture. Each side keeps its own slot cursor. Waits time out every
:data:`POLL_SECONDS` to ask ``alive()`` whether the peer still runs, so a dead
peer is an error, never a hang.

The parent creates the segment (named with its pid, see :func:`segment_name`)
and the semaphores *before* starting any child, passes the :class:`Ring` to
the children at fork, and unlinks the segment on every exit path
(:meth:`Ring.unlink`).
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

from .errors import RingError

__all__ = ["Ring", "segment_name", "sweep_stale_segments"]

_HEADER = struct.Struct("<IB3x")
FIRST, LAST, EOS = 1, 2, 4
POLL_SECONDS = 0.2
"""How often a blocked side checks its peer: shorter notices death sooner, costs a wakeup."""
SLOT_BYTES = 64 * 1024
"""Slot size: a reader frame is 25 bytes a row, so a 64 KiB input chunk makes
frames of ~30 KiB a shard at 2 shards, one slot each; a larger frame spans several."""
SLOTS = 64
"""Slots per ring: 64 x 64 KiB = 4 MiB a worker; more slots absorb longer stalls of a
worker. 64 frames of a 64 KiB chunk buffer as many rows as 16 of a 256 KiB one did."""

_PREFIX = "shardpay-"
_NAME = re.compile(r"shardpay-(\d+)-[0-9a-f]+-\d+$")


def segment_name(index: int, token: str | None = None) -> str:
    """A shared-memory name that holds this process's pid (for :func:`sweep_stale_segments`)."""
    return f"{_PREFIX}{os.getpid()}-{token or secrets.token_hex(4)}-{index}"


def sweep_stale_segments(shm_dir: str = "/dev/shm") -> list[str]:
    """Unlink segments left by shardpay runs whose parent pid is dead; return their names.

    A run killed as a whole process group (SIGKILL to all) cannot unlink its
    own segments; the next run removes them.
    """
    removed = []
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return removed
    for name in names:
        m = _NAME.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to judge)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(shm_dir, name))
            removed.append(name)
        except OSError:
            pass
    return removed


class Ring:
    """One SPSC ring: the producer calls :meth:`send`/:meth:`send_eos`, the consumer :meth:`recv`.

    Args:
        ctx: the multiprocessing context whose semaphores to use.
        name: the shared-memory segment name (:func:`segment_name`).
        slots: number of slots (>= 1).
        slot_bytes: bytes per slot, header included (> 8).

    Raises:
        OSError: the segment cannot be created or backed (``ENOSPC`` if
            ``/dev/shm`` is too small: it is allocated up front, so an
            oversized ring fails here rather than with SIGBUS later).
    """

    def __init__(self, ctx: Any, name: str, slots: int = SLOTS, slot_bytes: int = SLOT_BYTES) -> None:
        if slots < 1 or slot_bytes <= _HEADER.size:
            raise ValueError("a ring needs at least one slot larger than its header")
        self.name = name
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.payload = slot_bytes - _HEADER.size
        self._shm = shared_memory.SharedMemory(name=name, create=True, size=slots * slot_bytes)
        try:
            os.posix_fallocate(self._shm._fd, 0, slots * slot_bytes)  # type: ignore[attr-defined]
        except BaseException:
            self._shm.close()
            self._shm.unlink()
            raise
        self._buf = self._shm.buf
        self._free = ctx.Semaphore(slots)
        self._full = ctx.Semaphore(0)
        self._wcursor = 0  # next slot the producer writes
        self._rcursor = 0  # next slot the consumer reads
        self.blocked_seconds = 0.0
        """Time this side spent waiting on the ring (producer: full ring; consumer: empty)."""
        self.alive: Callable[[], bool] = lambda: True
        """Called every POLL_SECONDS while blocked; returning False raises RingError."""

    def _wait(self, sem: Any) -> None:
        if sem.acquire(False):
            return
        t0 = time.perf_counter()
        while not sem.acquire(True, POLL_SECONDS):
            if not self.alive():
                raise RingError(f"ring {self.name}: the process at the other end is gone")
        self.blocked_seconds += time.perf_counter() - t0

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Write one frame, blocking while the ring is full (backpressure).

        Args:
            frame: any bytes-like object, of any length (empty is fine).

        Raises:
            RingError: the consumer is gone (``alive()`` said so) while blocked.
        """
        with memoryview(frame) as whole, whole.cast("B") as mv:
            n = len(mv)
            off = 0
            flags = FIRST
            while True:
                take = min(n - off, self.payload)
                if off + take == n:
                    flags |= LAST
                self._wait(self._free)
                base = (self._wcursor % self.slots) * self.slot_bytes
                start = base + _HEADER.size
                self._buf[start : start + take] = mv[off : off + take]
                _HEADER.pack_into(self._buf, base, take, flags)
                self._wcursor += 1
                self._full.release()
                off += take
                if flags & LAST:
                    return
                flags = 0

    def send_eos(self) -> None:
        """Write the end-of-stream mark; :meth:`recv` then returns None."""
        self._wait(self._free)
        base = (self._wcursor % self.slots) * self.slot_bytes
        _HEADER.pack_into(self._buf, base, 0, EOS)
        self._wcursor += 1
        self._full.release()

    def recv(self) -> bytes | None:
        """Read the next frame, blocking while the ring is empty.

        Returns:
            The frame's bytes, whole, or None at the end of the stream.

        Raises:
            RingError: the producer is gone while blocked, or the slots do
                not form a frame (corruption).
        """
        parts: list[bytes] = []
        while True:
            self._wait(self._full)
            base = (self._rcursor % self.slots) * self.slot_bytes
            length, flags = _HEADER.unpack_from(self._buf, base)
            start = base + _HEADER.size
            if flags & EOS or length > self.payload or bool(flags & FIRST) == bool(parts):
                if flags & EOS and not parts:
                    self._rcursor += 1
                    self._free.release()
                    return None
                raise RingError(f"ring {self.name}: corrupt slot {self._rcursor % self.slots} (flags {flags})")
            data = bytes(self._buf[start : start + length])
            self._rcursor += 1
            self._free.release()
            if flags & LAST:
                if parts:
                    parts.append(data)
                    return b"".join(parts)
                return data
            parts.append(data)

    def close(self) -> None:
        """Drop this process's mapping (views are released first)."""
        try:
            self._buf.release()
        except ValueError:
            pass
        try:
            self._shm.close()
        except BufferError:
            pass

    def unlink(self) -> None:
        """Close and remove the segment (creator only; safe to call twice)."""
        self.close()
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
