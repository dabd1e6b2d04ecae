"""The local transport: the pipeline's processes on this machine, joined by shared-memory rings.

::

    parent: reader --chunk rings--> decoder 0..K-1 --decoded rings--> sequencer --shard rings--> worker 0..N-1

The parent creates every ring (:mod:`shardpay.ring`) and semaphore before any
child starts, so every child shares the parent's resource tracker; it forks
the workers, the sequencer and the decoders (``fork``: no re-import, a
10-row file runs in a fraction of a second), then runs the reader itself,
dealing chunks to the decoders round robin. While it waits, and every few
tenths of a second while it reads or is blocked on a full ring, it checks
every child's result pipe and ``Process.sentinel`` (:func:`watch`): a child
that dies is noticed at once, the others are stopped, and the run fails with
:class:`~shardpay.errors.ProcessDied` naming it. Every ring is unlinked on
every exit path (:meth:`LocalSession.close`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import Any, BinaryIO

from .decoders import run_decoder
from .errors import InputError, ProcessDied, RingError
from .proc import HELD_SIGNALS, child_main, signals_held
from .reader import Reader
from .rejects import Spool, close_spools, open_spools
from .ring import Ring, segment_name, sweep_stale_segments
from .sequencer import run_sequencer
from .session import Session
from .worker import run_worker

__all__ = ["PIPE_SLOTS", "WATCH_SECONDS", "LocalSession", "stop_children", "watch"]

WATCH_SECONDS = 0.1
"""How often the parent checks its children and refreshes progress; a child's death
wakes a waiting parent at once."""
REAP_SECONDS = 1.0
"""How long to wait for a child whose result pipe closed without a message to exit,
so that the error can say how it ended."""
PIPE_SLOTS = 16
"""Slots (64 KiB each) of a decoder's two rings: a chunk or a decoded chunk takes one
or two, so each decoder has several chunks queued on either side and the
stages overlap; a worker's ring is larger (:data:`shardpay.ring.SLOTS`) to absorb
its longer stalls."""


class Child:
    """One child process: its name in messages, the process, and its result pipe's read end.

    Attributes:
        answers_marks: whether it answers a mark (the sequencer and the workers).
    """

    def __init__(self, name: str, process: Any, conn: Any, answers_marks: bool) -> None:
        self.name = name
        self.process = process
        self.conn = conn
        self.answers_marks = answers_marks


class LocalSession(Session):
    """The processes of one local engine run: workers, sequencer, decoders; the reader in this process.

    Set-up (spools, rings, forks) and clean-up run with SIGINT/SIGTERM/SIGHUP
    held, so an interrupt never lands between creating a segment and
    recording it. :meth:`close` stops every child still running and unlinks
    every ring, whatever happened before.

    Args:
        workers: shards, >= 1.
        decoders: decoder processes, >= 1.
        strict: ``--strict``.
        stream: the input, read here by :meth:`wait`; None: fed through
            :meth:`feed` (an :class:`~shardpay.engine.Engine`).

    Raises:
        RingError: shared memory cannot be created (``/dev/shm`` full).
        OutputError: the reject spools cannot be created.
    """

    def __init__(self, workers: int, decoders: int, strict: bool, stream: BinaryIO | None) -> None:
        self.workers = workers
        self.decoders = decoders
        self.stream = stream
        self.ctx = multiprocessing.get_context("fork")
        self.rings: list[Ring] = []
        self.spools: list[Spool] = []  # the sequencer's, then each worker's
        self.children: list[Child] = []
        self.done: dict[str, dict] = {}  # final figures received so far
        self.ok = False
        self._ended = False
        self._turn = 0
        self._next_check = 0.0
        self._tick: Callable[[], None] = lambda: None
        sweep_stale_segments()
        # Start the resource tracker before holding signals: when it starts it
        # unblocks SIGINT and SIGTERM (CPython's resource_tracker.ensure_running
        # does SIG_UNBLOCK, not a restore), which would end the hold below and
        # let forked children run the parent's handlers.
        resource_tracker.ensure_running()
        # Whatever is made below is recorded in these lists. Should this object never
        # reach its caller (a signal between the end of __init__ and the assignment),
        # the guard still removes it all at interpreter exit, before multiprocessing
        # would SIGTERM the children (which ignore it) and wait for them for ever.
        self._guard = multiprocessing.util.Finalize(
            None, _clean_up, args=(self.children, self.rings, self.spools), exitpriority=10)
        try:
            self._start(workers, decoders, strict)
            self.reader = Reader(self._deal)
            for ring in self.chunk_rings:
                ring.alive = self._blocked
        except BaseException:  # what was made so far is recorded in self: remove it
            self.close()
            raise

    def _start(self, workers: int, decoders: int, strict: bool) -> None:
        with signals_held():  # every resource below is recorded before a signal can end the run
            open_spools(self.spools, [False] + [True] * workers)
            token = os.urandom(4).hex()
            sizes = [None] * workers + [PIPE_SLOTS] * (2 * decoders)
            for i, slots in enumerate(sizes):
                try:
                    self.rings.append(Ring(self.ctx, segment_name(i, token), *((slots,) if slots else ())))
                except OSError as err:
                    raise RingError(f"cannot create shared memory for ring {i}: {err.strerror or err}") from None
            signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)  # again, had the tracker been restarted
            shard_rings = self.rings[:workers]
            self.chunk_rings = self.rings[workers : workers + decoders]
            decoded_rings = self.rings[workers + decoders :]
            self.stop = self.ctx.Event()
            self.progress = self.ctx.Array("q", 2, lock=False)  # bytes read (here), rows read (the sequencer)
            parent_pid = os.getpid()

            def alive() -> bool:
                return os.getppid() == parent_pid

            def start(name: str, proc_name: str, answers_marks: bool, body: Callable[[Any], dict]) -> None:
                recv, send = self.ctx.Pipe(duplex=False)
                children = self.children

                def main() -> None:
                    # Close the read ends of the result pipes inherited at fork (ours and
                    # earlier siblings'): with the parent gone, a send then fails at once
                    # instead of filling a pipe that nobody reads.
                    recv.close()
                    for child in children:
                        child.conn.close()
                    for r in self.rings:
                        r.alive = alive
                    child_main(send, lambda: body(send), name=proc_name, parent_pid=parent_pid)

                p = self.ctx.Process(target=main, name=f"shardpay-{name}", daemon=True)
                p.start()
                send.close()
                children.append(Child(name, p, recv, answers_marks))

            spool_fds = [s.file.fileno() for s in self.spools]
            for i in range(workers):
                start(f"worker {i}", f"sp-worker-{i}", True,
                      lambda conn, i=i: run_worker(shard_rings[i], spool_fds[i + 1], self.stop, strict, conn))
            start("sequencer", "sp-sequencer", True,
                  lambda conn: run_sequencer(decoded_rings, shard_rings, spool_fds[0], self.stop, strict,
                                             self.progress, conn))
            for k in range(decoders):
                start(f"decoder {k}", f"sp-decoder-{k}", False,
                      lambda conn, k=k: run_decoder(self.chunk_rings[k], decoded_rings[k], self.stop, strict))

    # -- the reader's side, in this process ------------------------------------------------

    def _deal(self, message: bytes) -> None:
        """Send the reader's next message to the next decoder, round robin (the sequencer
        reads them back in the same turn); blocks while that decoder's ring is full."""
        self.chunk_rings[self._turn].send(message)
        self._turn = (self._turn + 1) % self.decoders

    def _reading_tick(self) -> bool:
        """Between reads: every :data:`WATCH_SECONDS`, publish the bytes read, check the
        children (raise if one died or failed, see :func:`watch`) and call the
        caller's tick. True to stop reading (``--strict``)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + WATCH_SECONDS
            self.progress[0] = self.reader.bytes_read
            watch(self.children, lambda: None, done=self.done, poll=True)
            self._tick()
        return self.stop.is_set()

    def _blocked(self) -> bool:
        """The chunk rings' ``alive`` check, while this process waits on a full one:
        as between reads (it raises if a child died); True."""
        self._reading_tick()
        return True

    def feed(self, data: bytes) -> None:
        """Cut the next input bytes into chunks for the decoders (fed sessions); blocks
        while they are behind.

        Raises:
            InputError: the header is wrong. ProcessDied: a child died or failed.
        """
        if not self.stop.is_set():
            self.reader.feed(data)
            self.progress[0] = self.reader.bytes_read

    def mark(self, token: int) -> dict[str, dict]:
        """Pass mark ``token`` behind every complete row fed so far; the sequencer's and
        every worker's answer to it, by name (see :meth:`shardpay.engine.Engine.snapshot`)."""
        self.reader.mark(token)
        return watch([c for c in self.children if c.answers_marks], lambda: None, mark=token, done=self.done)

    def end(self) -> None:
        """End the input (a last row without LF counts): every decoder's ring ends."""
        if self._ended:
            return
        if not self.stop.is_set():
            self.reader.finish()
        for ring in self.chunk_rings:
            ring.send_eos()
        self._ended = True
        self.progress[0] = self.reader.bytes_read

    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Read the stream (if any) to its end, then every child's final figures, by
        name (``"reader"``, ``"sequencer"``, ``"decoder 0"``, ``"worker 0"``, ...).

        Raises:
            ProcessDied, InputError, RingError: see :func:`watch`; InputError
                also for an unreadable input or a wrong header.
        """
        self._tick = tick
        if self.stream is not None and not self._ended:
            self.reader.run(self.stream, self._reading_tick)
        self.end()
        results = watch(self.children, tick, done=self.done)
        results["reader"] = {"bytes": self.reader.bytes_read, "chunks": self.reader.chunks,
                             "read_seconds": self.reader.read_seconds,
                             "blocked_seconds": sum(r.blocked_seconds for r in self.chunk_rings)}
        self.ok = True
        return results

    def close(self) -> None:
        """Stop every child still running; unlink every ring; free spools if the run failed."""
        with signals_held():  # clean up all of it, even if a second signal comes
            self._guard.cancel()
            _clean_up(self.children, self.rings, self.spools, keep_spools=self.ok)


def _clean_up(children: list[Child], rings: list[Ring], spools: list[Spool], keep_spools: bool = False) -> None:
    """Stop every child still running, unlink every ring and (unless ``keep_spools``) free the spools."""
    with signals_held():
        stop_children(children)
        for ring in rings:
            ring.unlink()
        if not keep_spools:
            close_spools(spools)


def watch(children: list[Child], tick: Callable[[], None], mark: int | None = None,
          done: dict[str, dict] | None = None, poll: bool = False) -> dict[str, dict]:
    """Wait for every child's final figures (or, with ``mark``, its answer to that mark).

    Args:
        children: the children to wait for.
        tick: called every :data:`WATCH_SECONDS` (progress, signals).
        mark: the token of the mark whose answers to wait for; None: the final figures.
        done: final figures that arrived early (a child that ended while a
            mark was awaited); kept there, and they count as received.
        poll: look once, without waiting: raise for a child that died or
            failed, keep what arrived in ``done``, return what is there.

    Raises:
        ProcessDied: a child died, or raised (its traceback is the ``__cause__``).
            When several have, the one that was not merely cut off from a
            dead peer is named.
        InputError: a child found the input unreadable.
        RingError: a child ended its stream while a mark was awaited.
    """
    done = {} if done is None else done
    results: dict[str, dict] = {} if mark is not None else dict(done)
    pending = [c for c in children if c.name not in results]
    while pending:
        waitables = [c.conn for c in pending] + [c.process.sentinel for c in pending]
        ready = set(multiprocessing.connection.wait(waitables, timeout=0 if poll else WATCH_SECONDS))
        failures: list[BaseException] = []
        for child in [c for c in pending if c.conn in ready or c.process.sentinel in ready]:
            try:
                msg = child.conn.recv() if child.conn.poll() else None
            except (EOFError, OSError):
                msg = None
            if msg is None:
                child.process.join(REAP_SECONDS)
                failures.append(ProcessDied(f"the {child.name} process (pid {child.process.pid}) "
                                            f"{_how_it_ended(child.process.exitcode)}"))
            elif msg[0] == "error":
                failures.append(_child_error(child.name, *msg[1:]))
            elif msg[0] == "mark":
                if msg[1] == mark:
                    results[child.name] = msg[2]
                    pending.remove(child)
            else:
                done[child.name] = msg[1]
                if mark is not None:
                    failures.append(RingError(f"the {child.name} process ended its stream early (--strict "
                                              "stopped at a rejected row?); close() the engine for the reason"))
                else:
                    results[child.name] = msg[1]
                    pending.remove(child)
        if failures:
            raise min(failures, key=_cut_off)
        tick()
        if poll:
            break
    return results


def _child_error(name: str, kind: str, message: str, tb: str) -> BaseException:
    if kind == "input":
        return InputError(message)
    err = ProcessDied(f"the {name} process failed: {kind}: {message}")
    err.__cause__ = _RemoteTraceback(tb)
    err.cut_off = kind == "RingError"  # type: ignore[attr-defined]
    return err


def _cut_off(err: BaseException) -> bool:
    """True for a child that failed only because a peer it waited on is gone."""
    return bool(getattr(err, "cut_off", False))


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
    """Stop every child still running (SIGKILL: they ignore the signals a process group
    gets, see :func:`shardpay.proc.child_main`) and reap them all."""
    live = [c.process for c in children if c.process.is_alive()]
    for p in live:
        p.kill()
    for p in live:
        p.join()
    for child in children:
        child.conn.close()
        if child.process.exitcode is not None:
            child.process.close()
