"""The engine: one input stream through the pipeline, and the merge.

::

                  +------------------------------------------------------+
  FILE, stdin --> | parent: reader (shardpay.reader)                     |
  or feed()       |  cut at line ends into ~64 KiB chunks, number them,  |
                  |  deal them round robin                               |
                  +------+-------------------+-------------------+-------+
                         | chunk ring 0      | chunk ring 1  ... | chunk ring K-1
                         v                   v                   v
                  +-------------+     +-------------+     +-------------+
                  | decoder 0   |     | decoder 1   |     | decoder K-1 |   guard, rewrite, msgspec,
                  | (decoders)  |     |             |     |             |   exact path, rejects
                  +------+------+     +------+------+     +------+------+
                         | decoded ring 0    | decoded ring 1    | ...
                         v                   v                   v
                  +------------------------------------------------------+
                  | sequencer (shardpay.sequencer): back in file order,  |
                  | invalid rows to the spool, tx-id claim, split by     |
                  | client's shard (numpy over columns)                  |
                  +------+-------------------+-------------------+-------+
                         | shard ring 0      | shard ring 1  ... | shard ring N-1
                         v                   v                   v
                  +-------------+     +-------------+     +-------------+
                  | worker 0    |     | worker 1    |     | worker N-1  |   its shard's ledger,
                  +------+------+     +------+------+     +------+------+   rows in file order
                         +----- snapshots + figures (pipes), rejects (spools) ----+
                                                  v
                  parent: watches every child, merges accounts by client and
                  rejects by line, writes the report, progress, stats

Every ring is a bounded shared-memory ring (:mod:`shardpay.ring`): a slow
worker stops the sequencer, which stops the decoders, which stop the reader
(backpressure end to end); memory is bounded by the rings whatever the
input's size. Every message is laid out in :mod:`shardpay.frames`.

**Reader.** Runs in the parent, the only stage that sees the input: it
checks the header, cuts the input at line ends into chunks numbered by
their first line, and deals them out round robin, so that any decoder can
decode any chunk alone and still name each row's line.

**Decoders.** K processes, the parallel stage: each decodes its chunks
(:mod:`shardpay.decode`) into raw columns and reject records
(:mod:`shardpay.decoders`).

**Sequencer.** One process: takes the decoded chunks back in file order
(chunk ``i`` from decoder ``i mod K``), spools the invalid rows
(:mod:`shardpay.rejects`), enforces the global tx-id claim
(:mod:`shardpay.claims`) and sends each shard its rows of the chunk as one
data frame (:mod:`shardpay.sequencer`).

**Workers.** One per shard; a client belongs to exactly one shard, so each
worker applies its clients' rows in file order to its own
:class:`~shardpay.ledger.Ledger` and needs no other state. At the end of the
stream it sends its accounts and figures back.

**Parent.** Starts the processes (:mod:`shardpay.local`; the shards and the
decoders can run as Ray actors instead, :mod:`shardpay.ray_backend`, behind
the same :class:`~shardpay.session.Session`), runs the reader and watches
them. The merge (:mod:`shardpay.result`) sorts accounts by client and merges
rejects by line, so the report is byte-identical for every count of
workers and decoders, and checks that every row read is accounted for
(accepted + rejected = read).

This module is the public API: :func:`run` (one input, one call),
:class:`Engine` (fed with bytes, for services), :func:`default_workers`,
:func:`default_decoders`.

**Faults.** What each failure leaves behind, by design:

* SIGINT/SIGTERM to the parent (the CLI turns them into
  :class:`~shardpay.errors.Interrupted`): children stopped, rings unlinked,
  no output. Set-up and clean-up run with these signals held
  (:func:`shardpay.proc.signals_held`), so an interrupt never falls between
  creating a segment and recording it.
* A child dies or raises: noticed through its sentinel or its error
  message, while the parent waits, reads, or is blocked on a full ring; the
  message names the process and how it ended.
* SIGKILL of the parent: every child is SIGKILLed by the kernel
  (``PR_SET_PDEATHSIG``); failing that, a child blocked on a ring checks its
  parent every :data:`shardpay.ring.POLL_SECONDS`, and a result sent to a
  dead parent fails at once (each child closes the read ends of the result
  pipes it inherited). Once every child is gone, the resource tracker
  unlinks the rings. The reject spools are unnamed temporary files
  (``O_TMPFILE``): the kernel frees them with the last process holding them,
  so nothing is left on disk.
* SIGKILL of the whole process group: the unnamed spools vanish; ring
  segments stay in ``/dev/shm`` until the next run sweeps them
  (:func:`shardpay.ring.sweep_stale_segments`).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from .errors import InputError, StrictReject
from .proc import cpu_seconds
from .reader import CHUNK_BYTES
from .rejects import RawRejects, Reject, close_spools, merge, read_ledger_spool, read_spool
from .result import Account, RunResult, merge_results, merge_snapshots
from .session import BACKENDS, Session

__all__ = ["Engine", "default_decoders", "default_workers", "process", "run"]

_NO_RECORDS = np.zeros((0, 7), dtype=np.int64)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Workers (shards) when ``--workers`` is not given: usable CPUs less one, but
    at least 2 where there are 2 CPUs (1 on a single CPU).

    On 2 cores the compiled ledger applies a row in 70-90 ns, so one worker
    keeps up with two decoders: 1 worker measured 0-8% faster than 2 on 10M
    rows and 6% on 2M (profiling/results/workers-decoders-10M.md, -2M.md,
    main-10M-uniform.md). The default keeps one worker a core, the engine's
    design, which pays once the workers are the bound.
    """
    cpus = usable_cpus()
    return min(cpus, max(2, cpus - 1))


def default_decoders(workers: int | None = None) -> int:
    """Decoders when ``--decoders`` is not given, for ``workers`` shards (default
    :func:`default_workers`): the usable CPUs, at least 1.

    Decoding is the costliest stage a row (about 170 ns against 60 to
    sequence and 80 to apply), and a decoder with nothing to do blocks on its
    pipe, so one decoder a core: on 2 cores 2 decoders measured up to 10%
    faster than 1 (profiling/results/workers-decoders-10M.md).
    """
    return max(1, usable_cpus())


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
    return stat.S_ISREG(mode)


def _counts(workers: int | None, decoders: int | None) -> tuple[int, int]:
    """``(workers, decoders)``, defaults filled in.

    Raises:
        ValueError: either is < 1.
    """
    workers = default_workers() if workers is None else workers
    decoders = default_decoders(workers) if decoders is None else decoders
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if decoders < 1:
        raise ValueError("decoders must be >= 1")
    return workers, decoders


def _check_backend(backend: str, ray_address: str | None) -> None:
    """Raise ValueError for an unknown backend, or a ``ray_address`` without the ray backend."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if ray_address is not None and backend != "ray":
        raise ValueError("ray_address needs backend='ray'")


def _open_session(backend: str, workers: int, decoders: int, strict: bool, stream: BinaryIO | None,
                  ray_address: str | None, size: int | None = None) -> Session:
    """Start the processes of one run; ``stream`` None means fed by an :class:`Engine`.

    A file of known ``size`` gets at most one decoder a chunk: a small file
    starts no decoder it has no chunk for.

    Raises:
        ValueError: unknown backend, or ``ray_address`` without the ray backend.
        BackendError: the ray backend is not installed or Ray cannot start.
    """
    _check_backend(backend, ray_address)
    if backend == "local":
        from .local import LocalSession

        return LocalSession(workers, _decoders_for(decoders, size, CHUNK_BYTES), strict, stream)
    from .ray_backend import CHUNK_BYTES as RAY_CHUNK_BYTES
    from .ray_backend import RaySession

    return RaySession(workers, _decoders_for(decoders, size, RAY_CHUNK_BYTES), strict, stream, address=ray_address)


def _decoders_for(decoders: int, size: int | None, chunk_bytes: int) -> int:
    """``decoders``, but at most one a chunk of a file of ``size`` bytes (None: unknown)."""
    return decoders if size is None else max(1, min(decoders, -(-size // chunk_bytes)))


def run(
    source: str | os.PathLike | BinaryIO,
    *,
    workers: int | None = None,
    decoders: int | None = None,
    strict: bool = False,
    progress: Callable[[int, int | None, int], None] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run the engine over one input (SPEC: the whole contract).

    Args:
        source: a path, ``"-"`` for standard input, or a binary stream (read
            in this process, as the bytes arrive).
        workers: shards (worker processes), >= 1; default :func:`default_workers`.
        decoders: decoder processes, >= 1; default :func:`default_decoders`.
            A file gets at most one a chunk (:data:`shardpay.reader.CHUNK_BYTES`).
        strict: stop at the first rejected row and raise :class:`StrictReject`.
        progress: called every few tenths of a second with
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
        ProcessDied: a decoder, the sequencer or a worker (or a Ray actor) died or raised.
        BackendError: ``backend="ray"`` but Ray is not installed or cannot start.
        Interrupted: a signal handler of the caller raised it (the CLI's do);
            children are stopped and shared memory is removed first.
    """
    workers, decoders = _counts(workers, decoders)
    t_start = time.perf_counter()
    cpu_start = cpu_seconds()
    stream, size, owned = _open_input(source)
    session = None
    try:
        session = _open_session(backend, workers, decoders, strict, stream, ray_address, size)
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


def _finish(session: Session, results: dict[str, dict], strict: bool, t_start: float,
            cpu_start: float) -> RunResult:
    """Merge a finished session's results; raise StrictReject if asked to."""
    try:
        result = merge_results(results, session.workers, session.decoders, session.spools, t_start, cpu_start)
    except BaseException:
        close_spools(session.spools)
        raise
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
            rejected = engine.rejects()            # list[Reject] so far
        result = engine.result                     # RunResult of the whole stream

    The same pipeline and merge as :func:`run`: ``feed`` runs the reader in
    this process, which deals the bytes' whole lines to the decoders, so
    ``feed`` blocks while the engine is behind (backpressure) and never
    buffers without bound. The bytes are one CSV stream: its header first,
    then rows, in the order fed (SPEC applies as to a file; line numbers
    count from the first byte fed).

    Args:
        workers: shards (worker processes), >= 1; default :func:`default_workers`.
        decoders: decoder processes, >= 1; default :func:`default_decoders`.
        strict: the first rejected row ends the stream (see :func:`run`).
        backend, ray_address: where the shards run (see :func:`run`).

    Raises:
        ValueError: at construction, for ``workers`` or ``decoders`` < 1, an unknown backend, or a
            ``ray_address`` without ``backend="ray"``.
        ProcessDied, RingError: from any method, if a child process (or shard actor) died.
        BackendError: from :meth:`start`, if Ray is asked for but missing.
        InputError: from :meth:`snapshot`/:meth:`close`, if the header is wrong.
    """

    def __init__(self, workers: int | None = None, *, decoders: int | None = None, strict: bool = False,
                 backend: str = "local", ray_address: str | None = None) -> None:
        self.workers, self.decoders = _counts(workers, decoders)
        _check_backend(backend, ray_address)
        self.strict = strict
        self.backend = backend
        self.ray_address = ray_address
        self.result: RunResult | None = None
        self._session: Session | None = None
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
        self._session = _open_session(self.backend, self.workers, self.decoders, self.strict, None,
                                      self.ray_address)

    def _live(self) -> Session:
        if self._session is None:
            raise RuntimeError("the engine is not running: use it as a context manager or call start()")
        return self._session

    def feed(self, data: bytes) -> None:
        """Hand the next bytes of the CSV stream to the engine, in any chunking.

        Blocks while the decoders are behind.

        Raises:
            InputError: the header is wrong.
            ProcessDied: a process of the engine died or failed.
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
        accounts = merge_snapshots([answers[f"worker {i}"] for i in range(self.workers)])
        return [Account(*a) for a in zip(*accounts)]

    def rejects(self) -> list[Reject]:
        """Every row rejected so far, in line order (complete rows fed so far)."""
        self._mark()
        return list(merge(self._live().spools))

    def rejects_since(self, cursor: list[int] | None = None) -> tuple[list[Reject], list[int]]:
        """The rows rejected since ``cursor``, in line order, and the next cursor.

        Like :meth:`rejects` (a mark round trip: every complete row fed so
        far) but reads only what the spools gained since the call that
        returned ``cursor`` (None: since the start): for a caller reporting
        rejects while rows stream in. Every reject returned is on a later
        line than every reject an earlier call returned.
        """
        raw, cursor = self.raw_rejects_since(cursor)
        return raw.rejects(), cursor

    def raw_rejects_since(self, cursor: list[int] | None = None) -> tuple[RawRejects, list[int]]:
        """:meth:`rejects_since`, the rejects not yet rendered: the workers' ledger records as
        one array and the reader's invalid rows (for ``shardpay serve``, which turns the
        records straight into answer lines, :func:`shardpay.rejects.answer_lines`)."""
        self._mark()
        spools = self._live().spools
        cursor = list(cursor) if cursor else [0] * len(spools)
        records: list[np.ndarray] = []
        invalid: list[Reject] = []
        for i, spool in enumerate(spools):
            if spool.ledger:
                new, cursor[i] = read_ledger_spool(spool, cursor[i])
                if len(new):
                    records.append(new)
            else:
                found, cursor[i] = read_spool(spool, cursor[i])
                invalid.extend(found)
        if len(records) > 1:  # each worker's in line order; together, sorted (lines are unique)
            joined = np.concatenate(records)
            merged = joined[np.argsort(joined[:, 0], kind="stable")]
        else:
            merged = records[0] if records else _NO_RECORDS
        invalid.sort(key=_line)
        return RawRejects(merged, invalid), cursor

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


def _line(r: Reject) -> int:
    return r.line
