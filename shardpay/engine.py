"""The engine: process lifetimes, watching, and the merge.

::

                       +-------------------------------------------+
    FILE or stdin ---> | reader process                            |
                       |  read 64 KiB chunks -> decode (msgspec)    |
                       |  -> claim tx ids -> hash client -> shard   |
                       +-----+----------------+----------------+---+
                             | ring 0         | ring 1   ...   | ring N-1   (shared memory,
                             v                v                v            semaphores,
                       +-----------+    +-----------+    +-----------+      backpressure)
                       | worker 0  |    | worker 1  |    | worker N-1|
                       | ledger of |    | ledger of |    | ledger of |
                       | its shard |    | its shard |    | its shard |
                       +-----+-----+    +-----+-----+    +-----+-----+
                             | snapshot + figures (pipe), rejects (spool file)
                             v
                       +-------------------------------------------+
                       | parent: watches every child (sentinels),  |
                       | merges accounts by client and rejects by  |
                       | line, writes the report, progress, stats  |
                       +-------------------------------------------+

**Reader.** The only process that reads the input. It decodes whole-line
chunks (:mod:`shardpay.decode`), enforces the global tx-id claim, and sends
each shard's rows of a chunk as one frame on that shard's ring
(:mod:`shardpay.reader`). Invalid rows are spooled as rejects.

**Workers.** One per shard; a client belongs to exactly one shard, so each
worker applies its clients' rows in file order to its own
:class:`~shardpay.ledger.Ledger` and needs no other state. At the end of the
stream it sends its accounts and figures back.

**Parent.** Creates the rings and semaphores before any child starts (so
every child shares the parent's resource tracker), starts the workers and the
reader (``fork``: no re-import, a 10-row file runs in a fraction of a second),
and waits on every child's result pipe and ``Process.sentinel``: a child that
dies is noticed at once, the others are stopped, and the run fails with
:class:`~shardpay.errors.ProcessDied`. Every ring is unlinked on every exit
path. The merge sorts accounts by client and merges rejects by line, so the
report is byte-identical for every worker count, and checks that every row
read is accounted for (accepted + rejected = read).

**Faults.** What each failure leaves behind, by design:

* SIGINT/SIGTERM to the parent (the CLI turns them into
  :class:`~shardpay.errors.Interrupted`): children stopped, rings unlinked,
  no output. Set-up and clean-up run with these signals held
  (:func:`shardpay.proc.signals_held`), so an interrupt never falls between
  creating a segment and recording it.
* A child dies or raises: noticed through its sentinel or its error
  message; the message names the process and how it ended.
* SIGKILL of the parent: every child is SIGKILLed by the kernel
  (``PR_SET_PDEATHSIG``); failing that, the reader checks its parent every
  chunk, a child blocked on a ring checks it every
  :data:`shardpay.ring.POLL_SECONDS`, and a result sent to a dead parent
  fails at once (each child closes the read ends of the result pipes it
  inherited). Once every child is gone, the resource tracker unlinks the
  rings. The reject spools are
  unnamed temporary files (``O_TMPFILE``): the kernel frees them with the
  last process holding them, so nothing is left on disk.
* SIGKILL of the whole process group: the unnamed spools vanish; ring
  segments stay in ``/dev/shm`` until the next run sweeps them
  (:func:`shardpay.ring.sweep_stale_segments`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from typing import IO, Any, BinaryIO

from .errors import InputError, ProcessDied, RingError, StrictReject
from .proc import HELD_SIGNALS, child_main, cpu_seconds, peak_rss_bytes, signals_held
from .reader import run_reader
from .rejects import RejectRow, close_spools, merge, open_spools
from .ring import Ring, segment_name, sweep_stale_segments
from .worker import run_worker

__all__ = ["Account", "Engine", "RunResult", "WATCH_SECONDS", "default_workers", "process", "run"]

WATCH_SECONDS = 0.1
"""How often the parent wakes to refresh progress; a child's death wakes it at once."""
STOP_SECONDS = 1.0
"""How long a child gets to exit after SIGTERM before SIGKILL."""


def default_workers() -> int:
    """Workers when ``--workers`` is not given: usable CPUs less one for the reader, but
    at least 2 where there are 2 CPUs (1 on a single CPU).

    On 2 cores, 2 workers were measured 12-16% faster than 1 on a 10M-row file
    (profiling/results/w1-vs-w2-10M.md, main-10M-uniform.md): at 1 worker the
    worker is the bottleneck and the reader sits blocked on a full ring half
    of its time, so it shares a core with a second worker at little cost (on
    2M rows the two were within 5%).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return min(cpus, max(2, cpus - 1))


@dataclass(frozen=True, slots=True)
class Account:
    """One client account (SPEC "Accounts"); amounts are ints in 1/10,000 units."""

    client: int
    available: int
    held: int
    locked: bool

    @property
    def total(self) -> int:
        """``available + held`` in 1/10,000 units."""
        return self.available + self.held

    def csv_line(self) -> str:
        """The account's output row, ``client,available,held,total,locked`` (SPEC "Output")."""
        from .report import account_line

        return account_line(self.client, self.available, self.held, self.locked)


@dataclass
class RunResult:
    """What a finished run produced. Use as a context manager: it owns temp files.

    Attributes:
        accounts: ``(clients, available, held, locked)`` sequences sorted by
            client, amounts in 1/10,000 units.
        reject_counts: reason code -> number of rows rejected for it.
        stats: the run's figures (see :func:`shardpay.report.stats_dict`).
    """

    accounts: tuple[list[int], list[int], list[int], list[bool]]
    reject_counts: dict[str, int]
    stats: dict[str, Any]
    _spools: list[IO[bytes]] = field(repr=False, default_factory=list)
    """The reader's spool, then one per worker: unnamed temporary files."""

    def account_list(self) -> list[Account]:
        """The accounts as :class:`Account` records, sorted by client."""
        return [Account(*a) for a in zip(*self.accounts)]

    def rejects(self) -> Iterator[RejectRow]:
        """Every rejected row in line order, streamed from the spools.

        Each call reads the spools afresh (through ``/proc/self/fd``: they have
        no name), so it may be called again; not after :meth:`close`.
        """
        if not self._spools:
            return iter(())
        paths = [f"/proc/self/fd/{f.fileno()}" for f in self._spools]
        return merge(paths[0], paths[1:])

    def close(self) -> None:
        """Free the temporary reject spools."""
        close_spools(self._spools)

    def __enter__(self) -> RunResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_input(source: str | os.PathLike | BinaryIO) -> tuple[BinaryIO, int | None, bool]:
    """Open the input; return (binary stream, size if a regular file, owned)."""
    if not isinstance(source, (str, os.PathLike)):
        stream = getattr(source, "buffer", source)
        try:
            st = os.fstat(stream.fileno())
            size = st.st_size if _is_regular(st.st_mode) else None
        except (OSError, AttributeError, ValueError):
            size = None
        return stream, size, False
    path = os.fspath(source)
    if path == "-":
        import sys

        # The reader gets its own descriptor: multiprocessing closes sys.stdin in children.
        stream = open(os.dup(sys.stdin.fileno()), "rb", buffering=0)
        st = os.fstat(stream.fileno())
        return stream, (st.st_size if _is_regular(st.st_mode) else None), True
    try:
        stream = open(path, "rb", buffering=0)
    except IsADirectoryError:
        raise InputError(f"cannot read {path!r}: it is a directory") from None
    except OSError as err:
        raise InputError(f"cannot read {path!r}: {err.strerror or err}") from None
    st = os.fstat(stream.fileno())
    if not _is_regular(st.st_mode):
        if os.path.isdir(path):
            stream.close()
            raise InputError(f"cannot read {path!r}: it is a directory")
        return stream, None, True
    return stream, st.st_size, True


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


BACKENDS = ("local", "ray")
"""How shards run: ``local`` worker processes fed over shared-memory rings (the
default, base install), or ``ray`` actors (:mod:`shardpay.ray_backend`)."""


def _check_backend(backend: str, ray_address: str | None) -> None:
    """Raise ValueError for an unknown backend, or a ``ray_address`` without the ray backend."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if ray_address is not None and backend != "ray":
        raise ValueError("ray_address needs backend='ray'")


def _open_session(backend: str, workers: int, strict: bool, stream: BinaryIO | None,
                  ray_address: str | None) -> Any:
    """Start the shards and the reader of one run; ``stream`` None means fed by an :class:`Engine`.

    Both session kinds share one interface: ``workers``, ``spools`` (reader's,
    then each shard's), ``progress`` (bytes, rows read), ``feed(data)``,
    ``mark(token)``, ``end()``, ``wait(tick)``, ``close()``.

    Raises:
        ValueError: unknown backend, or ``ray_address`` without the ray backend.
        BackendError: the ray backend is not installed or Ray cannot start.
    """
    _check_backend(backend, ray_address)
    if backend == "local":
        return _Session(workers, strict, stream)
    from .ray_backend import RaySession

    return RaySession(workers, strict, stream, address=ray_address)


class _Session:
    """The processes of one local engine run: a ring and a worker per shard, and the reader.

    Set-up (spools, rings, forks) and clean-up run with SIGINT/SIGTERM/SIGHUP
    held, so an interrupt never lands between creating a segment and
    recording it. :meth:`close` stops every child still running and unlinks
    every ring, whatever happened before.

    Args:
        workers: shards, >= 1.
        strict: ``--strict``.
        stream: the input, read by the reader process; None: fed through
            :meth:`feed` (an :class:`Engine`), over one more ring.
    """

    def __init__(self, workers: int, strict: bool, stream: BinaryIO | None) -> None:
        self.workers = workers
        self.ctx = multiprocessing.get_context("fork")
        self.rings: list[Ring] = []
        self.spools: list[IO[bytes]] = []  # reader's, then each worker's
        self.children: list[tuple[str, Any, Any]] = []  # (name, process, result connection)
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
            open_spools(self.spools, workers + 1)
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

            for i in range(workers):
                start(f"worker {i}", f"sp-worker-{i}",
                      lambda conn, i=i: run_worker(i, rings[i], self.spools[i + 1].fileno(), self.stop, strict, conn))
            source = self.rings[workers] if stream is None else None
            start("reader", "sp-reader",
                  lambda conn: run_reader(stream, rings, self.spools[0].fileno(), self.stop, strict, self.progress,
                                          alive=alive, source=source, conn=conn))

    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Every child's final figures, by name (``"reader"``, ``"worker 0"``, ...)."""
        results = _watch(self.children, tick, done=self.done)
        self.ok = True
        return results

    def feed(self, data: bytes) -> None:
        """Hand input bytes to the reader process (fed sessions); blocks while its ring is full."""
        try:
            self._input.send(b"D" + bytes(data))
        except RingError:
            self.wait(lambda: None)  # raises the child's own error if it has one
            raise

    def mark(self, token: int) -> dict[str, dict]:
        """Pass mark ``token`` through every ring; every child's answer to it, by name (see :meth:`Engine.snapshot`)."""
        self._input.send(b"M" + token.to_bytes(8, "little"))
        return _watch(self.children, lambda: None, mark=token, done=self.done)

    def end(self) -> None:
        """End a fed session's input (a last row without LF counts)."""
        self._input.send_eos()

    def close(self) -> None:
        """Stop every child still running; unlink every ring; free spools if the run failed."""
        with signals_held():  # clean up all of it, even if a second signal comes
            _stop_children(self.children)
            for ring in self.rings:
                ring.unlink()
            if not self.ok:
                close_spools(self.spools)


def run(
    source: str | os.PathLike | BinaryIO,
    *,
    workers: int | None = None,
    strict: bool = False,
    progress: Callable[[int, int | None, int], None] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run the engine over one input (SPEC: the whole contract).

    Args:
        source: a path, ``"-"`` for standard input, or a binary stream with a
            file descriptor (it is read by the reader process).
        workers: shards (worker processes), >= 1; default :func:`default_workers`.
        strict: stop at the first rejected row and raise :class:`StrictReject`.
        progress: called about every :data:`WATCH_SECONDS` with
            ``(bytes read, input size or None, rows read)``.
        backend: ``"local"`` (worker processes, shared-memory rings) or
            ``"ray"`` (shard actors; needs ``pip install 'shardpay[ray]'``).
            The result is the same, byte for byte.
        ray_address: with ``backend="ray"``, the cluster to join
            (``ray start --head`` prints it); None starts a local Ray instance.

    Returns:
        A :class:`RunResult` (a context manager owning the reject spools).

    Raises:
        InputError: the input cannot be opened or read, or its header is wrong.
        StrictReject: ``strict`` and a row was rejected (message: line, reason, detail).
        ProcessDied: the reader or a worker (or shard actor) died or raised.
        BackendError: ``backend="ray"`` but Ray is not installed or cannot start.
        Interrupted: a signal handler of the caller raised it (the CLI's do);
            children are stopped and shared memory is removed first.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError("workers must be >= 1")
    t_start = time.perf_counter()
    cpu_start = cpu_seconds()
    stream, size, owned = _open_input(source)
    session = None
    try:
        session = _open_session(backend, workers, strict, stream, ray_address)
        if owned and isinstance(session, _Session):
            stream.close()  # the reader process has its own copy
        read = session.progress
        results = session.wait(lambda: progress(read[0], size, read[1]) if progress else None)
    finally:
        if session is not None:
            session.close()
        if owned and not stream.closed:
            stream.close()
    if progress:
        progress(session.progress[0], size, session.progress[1])
    return _finish(session, results, strict, t_start, cpu_start)


process = run
"""The one-call form: ``shardpay.process(path_or_stream, workers=N)`` (see :func:`run`)."""


def _finish(session: Any, results: dict[str, dict], strict: bool, t_start: float,
            cpu_start: float) -> RunResult:
    """Merge a finished session's results; raise StrictReject if asked to."""
    try:
        result = _merge(results, session.workers, session.spools)
    except BaseException:
        close_spools(session.spools)
        raise
    parent_cpu = cpu_seconds() - cpu_start
    if results["reader"]["pid"] == os.getpid():  # the reader ran in this process (ray backend)
        parent_cpu = max(0.0, parent_cpu - results["reader"]["cpu_seconds"])
    result.stats.update(
        wall_seconds=time.perf_counter() - t_start,
        parent={"pid": os.getpid(), "cpu_seconds": parent_cpu, "peak_rss_bytes": peak_rss_bytes()},
    )
    if strict and result.reject_counts:
        first = next(iter(result.rejects()))
        result.close()
        raise StrictReject(f"{first} (--strict stops at the first rejected row)")
    return result


class Engine:
    """The engine as a long-lived object fed with CSV bytes: for services and embedding.

    ::

        with shardpay.Engine(workers=2) as engine:
            engine.feed(b"type,client,tx,amount\\ndeposit,1,1,1.5\\ndepo")
            engine.feed(b"sit,2,2,3\\n")           # a row may span two feeds
            accounts = engine.snapshot()           # list[Account], 1/10,000 units
            rejected = engine.rejects()            # list[RejectRow] so far
        result = engine.result                     # RunResult of the whole stream

    The same reader, rings, workers and merge as :func:`run`; the parent
    hands the bytes to the reader process over one more ring, so ``feed``
    blocks while the engine is behind (backpressure) and never buffers
    without bound. The bytes are one CSV stream: its header first, then rows,
    in the order fed (SPEC applies as to a file; line numbers count from the
    first byte fed).

    Args:
        workers: shards (worker processes), >= 1; default :func:`default_workers`.
        strict: the first rejected row ends the stream (see :func:`run`).
        backend, ray_address: where the shards run (see :func:`run`).

    Raises:
        ValueError: at construction, for ``workers`` < 1, an unknown backend, or a
            ``ray_address`` without ``backend="ray"``.
        ProcessDied, RingError: from any method, if a child process (or shard actor) died.
        BackendError: from :meth:`start`, if Ray is asked for but missing.
        InputError: from :meth:`snapshot`/:meth:`close`, if the header is wrong.
    """

    def __init__(self, workers: int | None = None, *, strict: bool = False, backend: str = "local",
                 ray_address: str | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        _check_backend(backend, ray_address)
        self.strict = strict
        self.backend = backend
        self.ray_address = ray_address
        self.result: RunResult | None = None
        self._session: _Session | None = None
        self._token = 0
        self._t_start = time.perf_counter()
        self._cpu_start = cpu_seconds()

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def start(self) -> None:
        """Start the worker and reader processes (``with`` does it)."""
        if self._session is not None:
            return
        self._session = _open_session(self.backend, self.workers, self.strict, None, self.ray_address)

    def _live(self) -> Any:
        if self._session is None:
            raise RuntimeError("the engine is not running: use it as a context manager or call start()")
        return self._session

    def feed(self, data: bytes) -> None:
        """Hand the next bytes of the CSV stream to the engine, in any chunking.

        Blocks while the input ring is full (the engine is behind).

        Raises:
            RingError: the reader process is gone (see :meth:`close` for why).
        """
        session = self._live()
        if data:
            session.feed(data)

    def _mark(self) -> dict[str, dict]:
        session = self._live()
        self._token += 1
        return session.mark(self._token)

    def snapshot(self) -> list[Account]:
        """Every account after all complete rows fed so far (a partial last row waits).

        Consistent: a mark goes through the input ring and every shard's ring
        in order, and each worker answers with its state at that point; the
        workers stop only to copy their accounts.
        """
        answers = self._mark()
        accounts = _merge_snapshots([answers[f"worker {i}"] for i in range(self.workers)])
        return [Account(*a) for a in zip(*accounts)]

    def rejects(self) -> list[RejectRow]:
        """Every row rejected so far, in line order (complete rows fed so far)."""
        self._mark()
        spools = self._live().spools
        paths = [f"/proc/self/fd/{f.fileno()}" for f in spools]
        return list(merge(paths[0], paths[1:]))

    def reject_lines(self, cursor: list[int] | None = None) -> tuple[list[int], list[int]]:
        """Line numbers of the rows rejected since ``cursor``, sorted, and the next cursor.

        Like :meth:`rejects` (a mark round-trip: every complete row fed so far)
        but reads only what the spools gained since the call that returned
        ``cursor`` (None: since the start) and renders nothing: for a caller
        counting rejects while rows stream in (``shardpay serve``). Every line
        returned is above every line an earlier call returned.
        """
        from .rejects import read_lines

        self._mark()
        spools = self._live().spools
        cursor = list(cursor) if cursor else [0] * len(spools)
        lines: list[int] = []
        for i, f in enumerate(spools):
            new, cursor[i] = read_lines(f"/proc/self/fd/{f.fileno()}", cursor[i])
            lines.extend(new)
        lines.sort()
        return lines, cursor

    def close(self) -> RunResult:
        """End the stream (a last row without LF counts), wait for the workers, merge.

        Returns:
            The :class:`RunResult` of everything fed (also kept as :attr:`result`).
        """
        if self.result is not None:
            return self.result
        session = self._live()
        try:
            session.end()
            results = session.wait(lambda: None)
        finally:
            session.close()
            self._session = None
        self.result = _finish(session, results, self.strict, self._t_start, self._cpu_start)
        return self.result

    def abort(self) -> None:
        """Stop every process at once; nothing is merged (used on errors)."""
        if self._session is not None:
            self._session.close()
            self._session = None


def _watch(children: list[tuple[str, Any, Any]], tick: Callable[[], None], mark: int | None = None,
           done: dict[str, dict] | None = None) -> dict[str, dict]:
    """Wait for every child's final figures (or, with ``mark``, its answer to that mark).

    ``done`` keeps final figures that arrive early (a child that ended while
    a mark was awaited); they count as received. Raises at the first death or
    error of a child.
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


def _stop_children(children: list[tuple[str, Any, Any]]) -> None:
    """Stop every child still running: SIGTERM, then SIGKILL after STOP_SECONDS."""
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


def _merge_snapshots(shards: list[dict]) -> tuple[list[int], list[int], list[int], list[bool]]:
    """The shards' account snapshots (disjoint clients) as client-sorted columns:
    ``(clients, available, held, locked)``, amounts in 1/10,000 units."""
    available: dict[int, int] = {}
    held: dict[int, int] = {}
    locked: dict[int, bool] = {}
    for w in shards:
        clients, avail, hold, lock = w["snapshot"]
        available.update(zip(clients, avail))
        held.update(zip(clients, hold))
        locked.update(zip(clients, map(bool, lock)))
    order = sorted(available)
    return order, [available[c] for c in order], [held[c] for c in order], [locked[c] for c in order]


def _merge(results: dict[str, dict], workers: int, spools: list[IO[bytes]]) -> RunResult:
    """Merge the shards' snapshots (disjoint clients) into one client-sorted table.

    Also checks that nothing was lost: the rows the reader routed are the rows
    the workers applied, so accepted + rejected = rows read.

    Raises:
        RingError: the workers did not receive exactly the rows the reader sent.
    """
    shards = [results[f"worker {i}"] for i in range(workers)]
    accounts = _merge_snapshots(shards)
    counts: Counter[str] = Counter()
    for w in shards:
        counts.update(w["reject_counts"])
    rd = results["reader"]
    routed = rd["rows"] - rd["invalid"]
    received = sum(results[f"worker {i}"]["rows"] for i in range(workers))
    if routed != received:
        raise RingError(f"rows lost between the reader and the workers: {routed:,} sent, {received:,} applied")
    if rd["invalid"]:
        counts["invalid_row"] += rd["invalid"]
    from .report import stats_dict

    stats = stats_dict(results, workers, counts, len(accounts[0]))
    return RunResult(accounts, dict(counts), stats, list(spools))
