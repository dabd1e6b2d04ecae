"""The Ray transport: the decoders and the shards as Ray actors; the reader and the sequencer here.

Only how the stages' messages travel changes (``--backend ray``)::

    FILE --> reader (this process: shardpay.reader)
               | chunks, dealt round robin: DecoderPool, at most IN_FLIGHT
               v calls in flight a decoder (backpressure)
             DecoderActor 0 .. K-1 (shardpay.decoders, anywhere in the cluster)
               | decoded chunks, taken back in file order
               v
             sequencer (this process: shardpay.sequencer): claim, split by shard
               | frames, the same raw columns as a ring carries: ShardChannel,
               v at most IN_FLIGHT calls in flight a shard
             ShardActor 0 .. N-1 (each a shardpay.worker.Shard: the same ledger)
               | each call returns that frame's rejects as raw ledger records
               v
             local spool files --> the same merge as the local engine

Ray runs the actor calls of one caller in submission order, so every shard
sees its rows in file order, as over a ring; the decoders' answers are taken
back in the order their chunks were dealt.

**Faults.** A shard's state lives only in its actor, so actors are created
with ``max_restarts=0`` and ``max_task_retries=0``: Ray never resumes a shard
with an empty ledger, and an actor (or its node) dying fails the run with
:class:`~shardpay.errors.ProcessDied` naming it. Every wait is bounded: a
call that has not answered in :data:`shardpay.ray_actors.STALL_SECONDS` fails
the run too. Nothing is written on failure (the caller writes only a
finished :class:`~shardpay.result.RunResult`); the actors are killed and a
Ray instance this module started is shut down.

**Exposure.** A local instance this module starts is bound to loopback
and its token file made private, and joining a cluster (``address``) is
refused without token authentication (:mod:`shardpay.ray_guard`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from .errors import BackendError, ProcessDied
from .frames import DECODED_TAG
from .proc import cpu_seconds, process_figures
from .ray_actors import DecoderActor, DecoderPool, ShardActor, ShardChannel, Caller, first_line
from .ray_guard import check_cluster_auth, loopback_node, private_token
from .reader import Reader
from .rejects import Spool, close_spools, open_spools
from .session import Session

__all__ = ["CHUNK_BYTES", "INSTALL_HINT", "START_SECONDS", "RaySession"]

CHUNK_BYTES = 256 * 1024
"""Input bytes per chunk with Ray: every chunk and every frame is an actor call with
its own overhead, so chunks are 4x the local engine's (:data:`shardpay.reader.CHUNK_BYTES`)."""
START_SECONDS = 120.0
"""Longest wait for the actors to be placed and started."""
WATCH_SECONDS = 0.1
"""How often progress and signals are served while reading."""
INSTALL_HINT = "pip install 'shardpay[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


PROBE_SECONDS = 5.0
"""How long a cluster's address may take to accept a TCP connection before giving up
(Ray's own connect retries last minutes)."""


def _probe(address: str) -> None:
    """Fail fast, naming the address, when nothing listens at ``host:port``.

    Raises:
        BackendError: the address cannot be reached within :data:`PROBE_SECONDS`.
    """
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", ray:// client addresses: Ray resolves them itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as err:
        raise BackendError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


class RaySession(Session):
    """One run's decoders and shards as Ray actors, with the reader and the sequencer here.

    A :class:`~shardpay.session.Session`, as the local engine's.

    Args:
        workers: shard actors, >= 1.
        decoders: decoder actors, >= 1.
        strict: ``--strict``: the first reject stops reading.
        stream: the input to read in :meth:`wait`; None: fed through :meth:`feed`.
        address: a Ray cluster to join (``ray start --head`` prints it); None
            starts a local Ray instance (or uses the one this process already
            has, e.g. a test's).

    Raises:
        BackendError: Ray is not installed, or cannot start or be joined, or ``address``
            is given without token authentication (:func:`check_cluster_auth`).
        ProcessDied: an actor could not be started within :data:`START_SECONDS`.
        OutputError: the temporary reject spools cannot be created.
    """

    def __init__(self, workers: int, decoders: int, strict: bool, stream: BinaryIO | None,
                 address: str | None = None) -> None:
        check_cluster_auth(address)
        self.ray = _import_ray()
        self.workers = workers
        self.decoders = decoders
        self.strict = strict
        self.stream = stream
        self.progress = [0, 0]  # bytes, rows read
        self.spools: list[Spool] = []
        self.actors: list[Any] = []
        self.ok = False
        self._ended = False
        self._tick: Callable[[], None] = lambda: None
        self._next_tick = 0.0
        self._stop = threading.Event()
        self._owns_ray = False
        self._sigterm: Any = None
        self._sequencer_cpu = 0.0  # CPU seconds this process spent sequencing
        try:
            self._connect(address)
            self._start()
        except BaseException:
            self.close()
            raise

    def _connect(self, address: str | None) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        if address:
            _probe(address)
        self._sigterm = signal.getsignal(signal.SIGTERM)
        # Ray's driver prints cluster error messages (a dead worker, ...) to
        # sys.stdout from a thread (ray/_private/worker.py, listen_error_messages);
        # stdout is where the accounts go, so Ray gets stderr until close().
        self._stdout = sys.stdout
        sys.stdout = sys.stderr
        self._owns_ray = True
        try:
            try:
                private_token(create=address is None)
                with contextlib.nullcontext() if address else loopback_node():
                    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                             logging_level="ERROR", configure_logging=True)
            except SystemExit as stop:
                # ray.init's own SIGTERM handler during start-up is sys.exit(15): hand the
                # signal to the caller's handler instead (the CLI's reports exit 143).
                if stop.code == signal.SIGTERM and callable(self._sigterm):
                    self._restore_sigterm()
                    self._sigterm(signal.SIGTERM, None)
                raise
        except Exception as err:  # noqa: BLE001 - Ray raises many kinds; the message is what matters
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            hint = " (is the token the cluster's? `ray get-auth-token` on its head prints it)" if address else ""
            raise BackendError(f"cannot start or join {where}: {first_line(err)}{hint}") from None
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        """Put the caller's SIGTERM handler back: ray.init installs two of its own (sys.exit,
        then its C++ core worker's, which dies with the signal) and ray.shutdown resets
        SIGTERM to the default. A SIGTERM in the moments between the C++ handler's
        installation and this call still ends the process with status 143 and no output,
        but without the caller's message."""
        if threading.current_thread() is threading.main_thread() and self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)

    def _start(self) -> None:
        ray = self.ray
        open_spools(self.spools, [False] + [True] * self.workers)
        options = {"max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        shards = [ray.remote(ShardActor).options(**options).remote() for _ in range(self.workers)]
        decoders = [ray.remote(DecoderActor).options(**options).remote() for _ in range(self.decoders)]
        self.actors = shards + decoders
        names = [f"shard {i}" for i in range(self.workers)] + [f"decoder {k}" for k in range(self.decoders)]
        wheres = self._placed(names)

        def on_rejects() -> None:
            if self.strict:
                self._stop.set()

        def tick() -> None:
            self._tick()

        self.channels = [ShardChannel(ray, i, a, self.spools[i + 1].file, on_rejects, tick, wheres[i])
                         for i, a in enumerate(shards)]
        callers = [Caller(ray, names[self.workers + k], wheres[self.workers + k], tick) for k in range(self.decoders)]
        self.pool = DecoderPool(callers, decoders, self._sequence)
        from .sequencer import Sequencer

        self.sequencer = Sequencer(self.workers)
        self.reader = Reader(self.pool.send, chunk_bytes=CHUNK_BYTES)

    def _placed(self, names: list[str]) -> list[tuple[int, str]]:
        """``(pid, node)`` of every actor, once all are placed and started.

        Raises:
            ProcessDied: one did not start within :data:`START_SECONDS`, or failed to.
        """
        ray = self.ray
        refs = [a.where.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=START_SECONDS)
        if len(ready) < len(refs):
            missing = [name for name, r in zip(names, refs) if r not in ready]
            raise ProcessDied(f"Ray actors ({', '.join(missing)}) did not start within {START_SECONDS:.0f} s "
                              "(not enough resources in the Ray cluster?)")
        wheres = []
        for name, ref in zip(names, refs):
            try:
                wheres.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                raise ProcessDied(f"{name} could not start as a Ray actor: {first_line(err)}") from None
        return wheres

    def _sequence(self, message: bytes) -> None:
        """A decoded chunk, in file order: its rejects to the spool, its frames to the shards."""
        if message[:1] != DECODED_TAG:
            return
        t0 = cpu_seconds()
        rejects, frames = self.sequencer.sequence(message)
        self._sequencer_cpu += cpu_seconds() - t0
        if rejects:
            self.spools[0].file.write(rejects)
            if self.strict:
                self._stop.set()
        for channel, frame in zip(self.channels, frames):
            if frame is not None:
                channel.send(frame)
        self.progress[1] = self.sequencer.rows

    def _reading_tick(self) -> bool:
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + WATCH_SECONDS
            self.progress[0] = self.reader.bytes_read
            self._tick()
        return self._stop.is_set()

    # -- a fed session (Engine) -------------------------------------------
    def feed(self, data: bytes) -> None:
        """Cut the next input bytes into chunks for the decoders (blocks while they are behind).

        Raises:
            InputError: the header is wrong. ProcessDied: an actor died or failed.
        """
        if not self._stop.is_set():
            self.reader.feed(bytes(data))
        self.progress[0] = self.reader.bytes_read

    def mark(self, token: int) -> dict[str, dict]:
        """Every shard's figures after every complete row fed so far, by name (``"worker i"``),
        and the sequencer's counts.

        Raises:
            ProcessDied: an actor died, failed or stopped answering.
        """
        self.pool.drain()
        self.spools[0].file.flush()
        for c in self.channels:
            c.drain()
        answers = {f"worker {i}": c.get(c.actor.mark.remote()) for i, c in enumerate(self.channels)}
        answers["sequencer"] = {"rows": self.sequencer.rows, "invalid": self.sequencer.invalid}
        return answers

    def end(self) -> None:
        """End of the input: a last row without LF counts."""
        if not self._ended and not self._stop.is_set():
            self.reader.finish()
        self._ended = True

    # -- both ---------------------------------------------------------------
    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Read the stream (if any) to its end, end every actor; the figures by name.

        Raises:
            InputError: bad header or unreadable input.
            ProcessDied: an actor died, failed or stopped answering.
        """
        self._tick = tick
        if self.stream is not None and not self._ended:
            self.reader.run(self.stream, self._reading_tick)
        self.end()
        decoders = self.pool.finish()
        self.spools[0].file.flush()
        self.progress[0], self.progress[1] = self.reader.bytes_read, self.sequencer.rows
        for c in self.channels:
            c.finish()
        results = {f"worker {i}": c.result for i, c in enumerate(self.channels)}
        results.update({f"decoder {k}": figures for k, figures in enumerate(decoders)})
        results["sequencer"] = self.sequencer.figures(self.pool.blocked_seconds,
                                                      sum(c.blocked_seconds for c in self.channels))
        results["sequencer"].update(process_figures(), cpu_seconds=self._sequencer_cpu)  # it ran here
        results["reader"] = {"bytes": self.reader.bytes_read, "chunks": self.reader.chunks,
                             "read_seconds": self.reader.read_seconds, "blocked_seconds": self.pool.blocked_seconds}
        self.ok = True
        return results

    def close(self) -> None:
        """Kill every shard actor; shut down a Ray instance this session started; free
        the spools if the run failed."""
        ray = self.ray
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or Ray is gone: nothing to stop
                pass
        self.actors = []
        if self._owns_ray:
            self._owns_ray = False
            try:
                ray.shutdown()
            finally:
                self._restore_sigterm()
                sys.stdout = self._stdout
        if not self.ok:
            close_spools(self.spools)
