"""The local transport: a reader process and one worker process per shard, on this machine.

The parent creates the rings (:mod:`shardpay.ring`) and semaphores before any
child starts, so every child shares the parent's resource tracker; it starts
the workers and the reader with ``fork`` (no re-import: a 10-row file runs in
a fraction of a second), then waits on every child's result pipe and
``Process.sentinel`` (:func:`watch`): a child that dies is noticed at once,
the others are stopped, and the run fails with
:class:`~shardpay.errors.ProcessDied`. Every ring is unlinked on every exit
path (:meth:`LocalSession.close`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import Any, BinaryIO

from .errors import InputError, ProcessDied, RingError
from .frames import FEED_TAG, mark_frame
from .proc import HELD_SIGNALS, child_main, signals_held
from .reader import run_reader
from .rejects import Spool, close_spools, open_spools
from .ring import Ring, segment_name, sweep_stale_segments
from .session import Session
from .worker import run_worker

__all__ = ["STOP_SECONDS", "WATCH_SECONDS", "LocalSession", "stop_children", "watch"]

WATCH_SECONDS = 0.1
"""How often the parent wakes to refresh progress; a child's death wakes it at once."""
STOP_SECONDS = 1.0
"""How long a child gets to exit after SIGTERM before SIGKILL."""

Child = tuple[str, Any, Any]
"""``(name, process, result connection)`` of one child process."""


class LocalSession(Session):
    """The processes of one local engine run: a ring and a worker per shard, and the reader.

    Set-up (spools, rings, forks) and clean-up run with SIGINT/SIGTERM/SIGHUP
    held, so an interrupt never lands between creating a segment and
    recording it. :meth:`close` stops every child still running and unlinks
    every ring, whatever happened before.

    Args:
        workers: shards, >= 1.
        strict: ``--strict``.
        stream: the input, read by the reader process; None: fed through
            :meth:`feed` (an :class:`~shardpay.engine.Engine`), over one more ring.

    Raises:
        RingError: shared memory cannot be created (``/dev/shm`` full).
        OutputError: the reject spools cannot be created.
    """

    def __init__(self, workers: int, strict: bool, stream: BinaryIO | None) -> None:
        self.workers = workers
        self.ctx = multiprocessing.get_context("fork")
        self.rings: list[Ring] = []
        self.spools: list[Spool] = []  # reader's, then each worker's
        self.children: list[Child] = []
        self.done: dict[str, dict] = {}  # final figures received so far
        self.ok = False
        sweep_stale_segments()
        # Start the resource tracker before holding signals: when it starts it
        # unblocks SIGINT and SIGTERM (CPython's resource_tracker.ensure_running
        # does SIG_UNBLOCK, not a restore), which would end the hold below and
        # let forked children run the parent's handlers.
        resource_tracker.ensure_running()
        try:
            self._start(workers, strict, stream)
        except BaseException:  # what was made so far is recorded in self: remove it
            self.close()
            raise
        if stream is None:
            self._input = self.rings[-1]
            reader = next(p for name, p, _ in self.children if name == "reader")
            self._input.alive = reader.is_alive

    def _start(self, workers: int, strict: bool, stream: BinaryIO | None) -> None:
        with signals_held():  # every resource below is recorded before a signal can end the run
            open_spools(self.spools, [False] + [True] * workers)
            token = os.urandom(4).hex()
            for i in range(workers + (stream is None)):
                try:
                    self.rings.append(Ring(self.ctx, segment_name(i, token)))
                except OSError as err:
                    raise RingError(f"cannot create shared memory for ring {i}: {err.strerror or err}") from None
            signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)  # again, had the tracker been restarted
            rings = self.rings[:workers]
            self.stop = self.ctx.Event()
            self.progress = self.ctx.Array("q", 2, lock=False)  # bytes, rows read (the reader writes)
            parent_pid = os.getpid()

            def alive() -> bool:
                return os.getppid() == parent_pid

            def start(name: str, proc_name: str, body: Callable[[Any], dict]) -> None:
                recv, send = self.ctx.Pipe(duplex=False)
                children = self.children

                def main() -> None:
                    # Close the read ends of the result pipes inherited at fork (ours and
                    # earlier siblings'): with the parent gone, a send then fails at once
                    # instead of filling a pipe that nobody reads.
                    recv.close()
                    for _, _, conn in children:
                        conn.close()
                    for r in self.rings:
                        r.alive = alive
                    child_main(send, lambda: body(send), name=proc_name, parent_pid=parent_pid)

                p = self.ctx.Process(target=main, name=f"shardpay-{name}", daemon=True)
                p.start()
                send.close()
                children.append((name, p, recv))

            spool_fds = [s.file.fileno() for s in self.spools]
            for i in range(workers):
                start(f"worker {i}", f"sp-worker-{i}",
                      lambda conn, i=i: run_worker(rings[i], spool_fds[i + 1], self.stop, strict, conn))
            source = self.rings[workers] if stream is None else None
            start("reader", "sp-reader",
                  lambda conn: run_reader(stream, rings, spool_fds[0], self.stop, strict, self.progress,
                                          alive=alive, source=source, conn=conn))

    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Every child's final figures, by name (``"reader"``, ``"worker 0"``, ...).

        Raises:
            ProcessDied, InputError, RingError: see :func:`watch`.
        """
        results = watch(self.children, tick, done=self.done)
        self.ok = True
        return results

    def feed(self, data: bytes) -> None:
        """Hand input bytes to the reader process (fed sessions); blocks while its ring is full.

        Raises:
            RingError: the reader is gone (or the child's own error, if it sent one).
        """
        try:
            self._input.send(FEED_TAG + bytes(data))
        except RingError:
            self.wait(lambda: None)  # raises the child's own error if it has one
            raise

    def mark(self, token: int) -> dict[str, dict]:
        """Pass mark ``token`` through every ring; every child's answer to it, by name
        (see :meth:`shardpay.engine.Engine.snapshot`)."""
        self._input.send(mark_frame(token))
        return watch(self.children, lambda: None, mark=token, done=self.done)

    def end(self) -> None:
        """End a fed session's input (a last row without LF counts)."""
        self._input.send_eos()

    def close(self) -> None:
        """Stop every child still running; unlink every ring; free spools if the run failed."""
        with signals_held():  # clean up all of it, even if a second signal comes
            stop_children(self.children)
            for ring in self.rings:
                ring.unlink()
            if not self.ok:
                close_spools(self.spools)


def watch(children: list[Child], tick: Callable[[], None], mark: int | None = None,
          done: dict[str, dict] | None = None) -> dict[str, dict]:
    """Wait for every child's final figures (or, with ``mark``, its answer to that mark).

    Args:
        children: the children to wait for.
        tick: called every :data:`WATCH_SECONDS` (progress, signals).
        mark: the token of the mark whose answers to wait for; None: the final figures.
        done: final figures that arrived early (a child that ended while a
            mark was awaited); kept there, and they count as received.

    Raises:
        ProcessDied: a child died, or raised (its traceback is the ``__cause__``).
        InputError: the reader found the input unreadable or its header wrong.
        RingError: a child ended its stream while a mark was awaited.
    """
    done = {} if done is None else done
    results: dict[str, dict] = {} if mark is not None else dict(done)
    pending = [c for c in children if c[0] not in results]
    while pending:
        waitables = [c for _, _, c in pending] + [p.sentinel for _, p, _ in pending]
        ready = set(multiprocessing.connection.wait(waitables, timeout=WATCH_SECONDS))
        for entry in list(pending):
            name, p, conn = entry
            if conn not in ready and p.sentinel not in ready:
                continue
            try:
                msg = conn.recv() if conn.poll() else None
            except (EOFError, OSError):
                msg = None
            if msg is None:
                p.join(STOP_SECONDS)
                raise ProcessDied(f"the {name} process (pid {p.pid}) {_how_it_ended(p.exitcode)}")
            if msg[0] == "error":
                _, kind, message, tb = msg
                if kind == "input":
                    raise InputError(message)
                err = ProcessDied(f"the {name} process failed: {kind}: {message}")
                err.__cause__ = _RemoteTraceback(tb)
                raise err
            if msg[0] == "mark":
                if msg[1] != mark:
                    continue  # an answer to an earlier mark: not expected, ignored
                results[name] = msg[2]
            else:
                done[name] = msg[1]
                if mark is not None:
                    raise RingError(f"the {name} process ended its stream early (--strict stopped at "
                                    "a rejected row?); close() the engine for the reason")
                results[name] = msg[1]
            pending.remove(entry)
        tick()
    return results


class _RemoteTraceback(Exception):
    """A child's traceback text, as the ``__cause__`` of the parent's error."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)

    def __str__(self) -> str:
        return str(self.args[0])


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code} before reporting"


def stop_children(children: list[Child]) -> None:
    """Stop every child still running: SIGTERM, then SIGKILL after :data:`STOP_SECONDS`."""
    live = [p for _, p, _ in children if p.is_alive()]
    for p in live:
        p.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for p in live:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    for _, p, conn in children:
        conn.close()
        if p.exitcode is not None:
            p.close()
