"""The Ray transport: each shard is a Ray actor; the same reader, ledger and merge.

Only how a shard's frames travel changes (``--backend ray``)::

    FILE --> reader (in this process: decode, claim, route; shardpay.reader)
               | frame = the same raw columns as a ring carries
               v  ShardChannel.send: actor.apply.remote(frame), at most
               |  IN_FLIGHT calls outstanding per actor (backpressure)
             ShardActor 0 .. N-1  (Ray actors, anywhere in the cluster;
               |  each wraps a shardpay.worker.Shard: the same Ledger)
               v  each call returns that frame's rejects as a spool batch
             local spool files --> the same merge as the local engine

The reader runs in the calling process, not on the cluster: it reads a local
file (or an :class:`~shardpay.engine.Engine`'s fed bytes), and one reader is
what bounds throughput anyway (README "Beyond one machine"). Ray runs the
actor calls of one caller in submission order, so every shard sees its rows
in file order, as over a ring.

**Faults.** A shard's state lives only in its actor, so actors are created
with ``max_restarts=0`` and ``max_task_retries=0``: Ray never resumes a shard
with an empty ledger, and an actor (or its node) dying fails the run with
:class:`~shardpay.errors.ProcessDied` naming the shard. Every wait is
bounded: a call that has not answered in :data:`STALL_SECONDS` fails the run
too. Nothing is written on failure (the caller writes only a finished
:class:`~shardpay.engine.RunResult`); the actors are killed and a Ray
instance this module started is shut down.

**Exposure.** A local instance this module starts is bound to loopback
and its token file made private, and joining a cluster (``address``) is
refused without token authentication (:mod:`shardpay.ray_guard`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any, BinaryIO

from .errors import BackendError, InputError, OutputError, ProcessDied
from .proc import cpu_seconds, keep_freed_memory, process_figures
from .ray_guard import check_cluster_auth, loopback_node, private_token
from .rejects import Spool, close_spools, open_spools, write_rejects_batch
from .session import Session
from .worker import Shard

__all__ = ["CHUNK_BYTES", "IN_FLIGHT", "INSTALL_HINT", "RaySession", "STALL_SECONDS", "ShardActor", "ShardChannel"]

CHUNK_BYTES = 256 * 1024
"""Input bytes per reader chunk with Ray: every frame is an actor call with its own
overhead, so frames stay 4x the local engine's (:data:`shardpay.reader.CHUNK_BYTES`)."""
IN_FLIGHT = 8
"""Frames in flight per shard actor before the reader waits (backpressure): enough
to hide a call's round trip, few enough that memory stays flat."""
STALL_SECONDS = 120.0
"""Longest wait for one actor call (a frame is ~10K rows: milliseconds) before the
shard is declared lost. Ray itself notices a dead actor or node sooner."""
START_SECONDS = 120.0
"""Longest wait for the shard actors to be placed and started."""
WATCH_SECONDS = 0.1
"""Wait slice: progress and signals are served between slices."""
INSTALL_HINT = "pip install 'shardpay[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class ShardActor:
    """One shard as a Ray actor: a :class:`~shardpay.worker.Shard` behind actor calls.

    Plain class; :class:`RaySession` makes it remote. Calls run one at a
    time in the order the reader made them.

    Args:
        index: the shard number (for messages).
    """

    def __init__(self, index: int) -> None:
        gc.disable()  # the hot loop allocates many containers and makes no cycles
        keep_freed_memory()  # this process is the actor's own
        self.index = index
        self.shard = Shard()
        self.wait_seconds = 0.0
        self._idle_since = time.perf_counter()

    def where(self) -> tuple[int, str]:
        """``(pid, node IP)`` of this actor, for messages."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def apply(self, frame: bytes) -> bytes:
        """Apply one frame; return its rejects as raw ledger records (``b""`` if none)."""
        t0 = time.perf_counter()
        self.wait_seconds += t0 - self._idle_since
        self.shard.apply(frame)
        batch = self.shard.take_rejects()
        self._idle_since = time.perf_counter()
        return batch

    def mark(self) -> dict:
        """:meth:`Shard.figures` now (every frame sent before this call is applied)."""
        return self.shard.figures()

    def finish(self) -> dict:
        """End of stream: the final figures, as a local worker reports them."""
        figures = self.shard.final_figures(self.wait_seconds)
        figures.update(process_figures())
        return figures


class ShardChannel:
    """The reader's sink for one shard actor, shaped like a :class:`~shardpay.ring.Ring`'s
    producer side (``send``, ``send_eos``, ``blocked_seconds``), so the reader is unchanged.

    Args:
        index: shard number.
        actor: the shard's actor handle.
        spool: where this shard's reject batches go (a local file).
        on_rejects: called when a frame's answer carried rejects (``--strict``).
        tick: called between wait slices (progress).
        where: ``(pid, node)`` of the actor, for messages.
    """

    def __init__(self, ray: Any, index: int, actor: Any, spool: IO[bytes], on_rejects: Callable[[], None],
                 tick: Callable[[], None], where: tuple[int, str]) -> None:
        self.ray = ray
        self.index = index
        self.actor = actor
        self.spool = spool
        self.on_rejects = on_rejects
        self.tick = tick
        self.where = where
        self.pending: deque = deque()
        self.blocked_seconds = 0.0
        self.result: dict | None = None

    def send(self, frame: bytes) -> None:
        """Send one frame to the actor; waits while :data:`IN_FLIGHT` calls are outstanding.

        Raises:
            ProcessDied: the actor or its node died, or it stopped answering.
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

    def send_eos(self) -> None:
        """End of stream: drain, then collect the shard's final figures in :attr:`result`."""
        self.drain()
        self.result = self.get(self.actor.finish.remote())

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
                    raise ProcessDied(f"shard {self.index} ({self._where()}) did not answer for "
                                      f"{STALL_SECONDS:.0f} s") from None
                self.tick()
            except ray.exceptions.RayActorError as err:
                raise ProcessDied(f"shard {self.index} ({self._where()}) died: {_first_line(err)}") from None
            except ray.exceptions.RayError as err:
                raise ProcessDied(f"shard {self.index} ({self._where()}) failed: {_first_line(err)}") from None

    def _where(self) -> str:
        pid, node = self.where
        return f"Ray actor pid {pid} on node {node}"


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    text = str(err).strip().splitlines()
    return next((t.strip() for t in text if t.strip()), type(err).__name__)


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
    """One run's shards as Ray actors, with the reader in this process.

    A :class:`~shardpay.session.Session`, as the local engine's.

    Args:
        workers: shard actors, >= 1.
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

    def __init__(self, workers: int, strict: bool, stream: BinaryIO | None, address: str | None = None) -> None:
        check_cluster_auth(address)
        self.ray = _import_ray()
        self.workers = workers
        self.strict = strict
        self.stream = stream
        self.progress = [0, 0]  # bytes, rows read
        self.spools: list[Spool] = []
        self.actors: list[Any] = []
        self.ok = False
        self._tick: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._owns_ray = False
        self._sigterm: Any = None
        self._error: InputError | None = None
        self._feed_cpu = 0.0  # CPU seconds this process spent in feed(): the reader's, in a fed session
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
            raise BackendError(f"cannot start or join {where}: {_first_line(err)}{hint}") from None
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
        remote = ray.remote(ShardActor).options(max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD")
        self.actors = [remote.remote(i) for i in range(self.workers)]
        refs = [a.where.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=START_SECONDS)
        if len(ready) < len(refs):
            missing = [i for i, r in enumerate(refs) if r not in ready]
            raise ProcessDied(f"shard actors {missing} did not start within {START_SECONDS:.0f} s "
                              "(not enough resources in the Ray cluster?)")
        wheres = []
        for i, ref in enumerate(refs):
            try:
                wheres.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                raise ProcessDied(f"shard {i} could not start as a Ray actor: {_first_line(err)}") from None

        def on_rejects() -> None:
            if self.strict:
                self._stop.set()

        def tick() -> None:
            self._tick()

        self.channels = [ShardChannel(ray, i, a, self.spools[i + 1].file, on_rejects, tick, wheres[i])
                         for i, a in enumerate(self.actors)]
        from .reader import Reader

        spool = self.spools[0].file

        def reader_rejects(rejects: list) -> None:
            write_rejects_batch(spool, rejects)
            if self.strict:
                self._stop.set()

        next_tick = [0.0]

        def should_stop() -> bool:  # once a chunk; progress every WATCH_SECONDS, as the local engine's
            now = time.monotonic()
            if now >= next_tick[0]:
                next_tick[0] = now + WATCH_SECONDS
                self.progress[0], self.progress[1] = self.reader.bytes_read, self.reader.rows
                self._tick()
            return self._stop.is_set()

        self.reader = Reader(self.stream, [c.send for c in self.channels], reader_rejects, should_stop,
                             chunk_bytes=CHUNK_BYTES)

    # -- a fed session (Engine) -------------------------------------------
    def feed(self, data: bytes) -> None:
        """Decode, claim and route the next input bytes (blocks while a shard is behind)."""
        t0 = cpu_seconds()
        try:
            if not self._stop.is_set():
                self.reader.feed(bytes(data))
        except InputError as err:  # reported by mark()/wait(), as the local reader process does
            self._error = err
            self._stop.set()
        finally:
            self._feed_cpu += cpu_seconds() - t0
            self.progress[0], self.progress[1] = self.reader.bytes_read, self.reader.rows

    def mark(self, token: int) -> dict[str, dict]:
        """Every shard's figures after every complete row fed so far, by name (``"worker i"``).

        Raises:
            InputError: the fed header was wrong.
            ProcessDied: a shard actor died, failed or stopped answering.
        """
        if self._error is not None:
            raise self._error
        self.spools[0].file.flush()
        for c in self.channels:
            c.drain()
        answers = [c.get(c.actor.mark.remote()) for c in self.channels]
        return {f"worker {i}": a for i, a in enumerate(answers)}

    def end(self) -> None:
        """End of the fed input: a last row without LF counts (:meth:`wait` finishes it)."""

    # -- both ---------------------------------------------------------------
    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Read the stream (if any) to its end, end every shard; the figures by name.

        Raises:
            InputError: bad header or unreadable input.
            ProcessDied: a shard actor died, failed or stopped answering.
        """
        self._tick = tick
        if self._error is not None:
            raise self._error
        t0 = cpu_seconds()
        reader = self.reader
        if self.stream is not None:
            reader.run()
        elif not self._stop.is_set():
            reader.finish()
        self.spools[0].file.flush()
        reader_cpu = self._feed_cpu + cpu_seconds() - t0
        self.progress[0], self.progress[1] = reader.bytes_read, reader.rows
        for c in self.channels:
            c.send_eos()
        results = {f"worker {i}": c.result for i, c in enumerate(self.channels)}
        results["reader"] = reader.figures(sum(c.blocked_seconds for c in self.channels))
        results["reader"].update(process_figures(), cpu_seconds=reader_cpu)  # the reader is this process
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
