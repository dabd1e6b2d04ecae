"""The pipeline's stages as Ray actors, and the driver's side of each.

:class:`ShardActor` wraps a :class:`~shardpay.worker.Shard` (the same ledger
as a local worker) and :class:`DecoderActor` a
:class:`~shardpay.decoders.Decoder` (the same decoding as a local decoder).
:class:`ShardChannel` and :class:`DecoderPool` are what the driver
(:class:`shardpay.ray_backend.RaySession`) holds: bounded queues of calls, so
memory stays flat (backpressure), and bounded waits, so a dead actor is an
error naming it, never a hang. Ray runs the calls of one caller to one actor
in submission order.
"""

from __future__ import annotations

import gc
import os
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from .decoders import Decoder
from .errors import OutputError, ProcessDied
from .proc import keep_freed_memory, process_figures
from .worker import Shard

__all__ = ["IN_FLIGHT", "STALL_SECONDS", "Caller", "DecoderActor", "DecoderPool", "ShardActor", "ShardChannel", "first_line"]

IN_FLIGHT = 8
"""Calls in flight per actor before the driver waits for the oldest (backpressure):
enough to hide a call's round trip, few enough that memory stays flat."""
STALL_SECONDS = 120.0
"""Longest wait for one actor call (a chunk or frame is ~10K rows: milliseconds)
before the actor is declared lost. Ray itself notices a dead actor or node sooner."""
WATCH_SECONDS = 0.1
"""Wait slice: progress and signals are served between slices."""


class _Actor:
    """What every stage actor shares: its own process settings, where it runs, its idle time."""

    def __init__(self) -> None:
        gc.disable()  # the hot loops allocate many containers and make no cycles
        keep_freed_memory()  # this process is the actor's own
        self.wait_seconds = 0.0
        self._idle_since = time.perf_counter()

    def where(self) -> tuple[int, str]:
        """``(pid, node IP)`` of this actor, for messages."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def _busy(self) -> None:
        self.wait_seconds += time.perf_counter() - self._idle_since

    def _idle(self) -> None:
        self._idle_since = time.perf_counter()


class ShardActor(_Actor):
    """One shard as a Ray actor: a :class:`~shardpay.worker.Shard` behind actor calls.

    Plain class; :class:`~shardpay.ray_backend.RaySession` makes it remote.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shard = Shard()

    def apply(self, frame: bytes) -> bytes:
        """Apply one data frame; return its rejects as raw ledger records (``b""`` if none)."""
        self._busy()
        self.shard.apply(frame)
        batch = self.shard.take_rejects()
        self._idle()
        return batch

    def mark(self) -> dict:
        """:meth:`Shard.figures` now (every frame sent before this call is applied)."""
        return self.shard.figures()

    def finish(self) -> dict:
        """End of stream: the final figures, as a local worker reports them."""
        figures = self.shard.final_figures(self.wait_seconds)
        figures.update(process_figures())
        return figures


class DecoderActor(_Actor):
    """One decoder as a Ray actor: a :class:`~shardpay.decoders.Decoder` behind actor calls."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = Decoder()

    def decode(self, message: bytes) -> bytes:
        """The decoded-chunk message of a chunk or long-line message (:mod:`shardpay.frames`)."""
        self._busy()
        out = self.decoder.decode(message)
        self._idle()
        return out

    def finish(self) -> dict:
        """The decoder's final figures, as a local decoder reports them."""
        figures = self.decoder.figures(self.wait_seconds, 0.0)
        figures.update(process_figures())
        return figures


def first_line(err: BaseException) -> str:
    """The first line of a Ray error's message, or of its cause's."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    text = str(err).strip().splitlines()
    return next((t.strip() for t in text if t.strip()), type(err).__name__)


class Caller:
    """Bounded waits on one actor's calls, naming the actor when they fail.

    Args:
        ray: the ``ray`` module. name: the actor's name in messages (``"shard 2"``).
        where: ``(pid, node)`` of the actor. tick: called between wait slices.
    """

    def __init__(self, ray: Any, name: str, where: tuple[int, str], tick: Callable[[], None]) -> None:
        self.ray = ray
        self.name = name
        self.where = where
        self.tick = tick

    def get(self, ref: Any) -> Any:
        """The value of one of this actor's calls, waiting at most :data:`STALL_SECONDS`.

        Raises:
            ProcessDied: the actor or its node died, the call raised, or it did not answer.
        """
        ray = self.ray
        deadline = time.monotonic() + STALL_SECONDS
        while True:
            try:
                return ray.get(ref, timeout=WATCH_SECONDS)
            except ray.exceptions.GetTimeoutError:
                if time.monotonic() > deadline:
                    raise ProcessDied(f"{self.name} ({self._where()}) did not answer for "
                                      f"{STALL_SECONDS:.0f} s") from None
                self.tick()
            except ray.exceptions.RayActorError as err:
                raise ProcessDied(f"{self.name} ({self._where()}) died: {first_line(err)}") from None
            except ray.exceptions.RayError as err:
                raise ProcessDied(f"{self.name} ({self._where()}) failed: {first_line(err)}") from None

    def _where(self) -> str:
        pid, node = self.where
        return f"Ray actor pid {pid} on node {node}"


class ShardChannel(Caller):
    """The driver's queue of frames for one shard actor.

    Args:
        ray: the ``ray`` module. index: shard number. actor: the shard's actor handle.
        spool: where this shard's reject records go (a local file).
        on_rejects: called when a frame's answer carried rejects (``--strict``).
        tick: called between wait slices (progress). where: ``(pid, node)`` of the actor.
    """

    def __init__(self, ray: Any, index: int, actor: Any, spool: IO[bytes], on_rejects: Callable[[], None],
                 tick: Callable[[], None], where: tuple[int, str]) -> None:
        super().__init__(ray, f"shard {index}", where, tick)
        self.actor = actor
        self.spool = spool
        self.on_rejects = on_rejects
        self.pending: deque = deque()
        self.blocked_seconds = 0.0
        self.result: dict | None = None

    def send(self, frame: bytes) -> None:
        """Send one frame to the actor; waits while :data:`IN_FLIGHT` calls are outstanding.

        Raises:
            ProcessDied: the actor or its node died, or it stopped answering.
            OutputError: the reject spool cannot be written.
        """
        self.pending.append(self.actor.apply.remote(frame))
        if len(self.pending) > IN_FLIGHT:
            t0 = time.perf_counter()
            self._settle()
            self.blocked_seconds += time.perf_counter() - t0

    def _settle(self) -> None:
        """Take the oldest answer: its rejects go to the spool."""
        batch = self.get(self.pending.popleft())
        if batch:
            try:
                self.spool.write(batch)
            except OSError as err:
                raise OutputError(f"cannot write the reject spool: {err.strerror or err}") from None
            self.on_rejects()

    def drain(self) -> None:
        """Wait for every outstanding frame to be applied (its rejects spooled)."""
        while self.pending:
            self._settle()
        self.spool.flush()

    def finish(self) -> None:
        """End of stream: drain, then collect the shard's final figures in :attr:`result`."""
        self.drain()
        self.result = self.get(self.actor.finish.remote())


class DecoderPool:
    """The driver's queue of chunks for K decoder actors: dealt round robin, answers
    taken back in the same order (so in file order), at most :data:`IN_FLIGHT`
    a decoder in flight.

    Args:
        callers: one :class:`Caller` per decoder actor (``"decoder k"``).
        actors: the decoder actor handles, in the same order.
        take: called with each decoded-chunk message, in file order.
    """

    def __init__(self, callers: list[Caller], actors: list[Any], take: Callable[[bytes], None]) -> None:
        self.callers = callers
        self.actors = actors
        self.take = take
        self.pending: deque = deque()  # (decoder index, call)
        self.turn = 0
        self.blocked_seconds = 0.0

    def send(self, message: bytes) -> None:
        """Deal one reader message to the next decoder; when too many are in flight, take
        the oldest answer first.

        Raises:
            ProcessDied: a decoder actor died, failed or stopped answering.
        """
        self.pending.append((self.turn, self.actors[self.turn].decode.remote(message)))
        self.turn = (self.turn + 1) % len(self.actors)
        if len(self.pending) > IN_FLIGHT * len(self.actors):
            t0 = time.perf_counter()
            self._settle()
            self.blocked_seconds += time.perf_counter() - t0

    def _settle(self) -> None:
        k, ref = self.pending.popleft()
        self.take(self.callers[k].get(ref))

    def drain(self) -> None:
        """Take every answer still in flight, in order."""
        while self.pending:
            self._settle()

    def finish(self) -> list[dict]:
        """Drain, then every decoder's final figures, in order."""
        self.drain()
        return [c.get(a.finish.remote()) for c, a in zip(self.callers, self.actors)]
