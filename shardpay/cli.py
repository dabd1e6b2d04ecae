"""The ``shardpay`` command line: argparse in, exit code out.

Exit codes: 0 done (rejected rows included), 1 fatal error, 2 usage error,
130 SIGINT, 143 SIGTERM. Every fatal error is one line on stderr.

Outputs are all or nothing: the accounts (``-o``), ``--rejects`` and
``--stats`` files are written as temporaries and renamed into place together
once everything succeeded. A run that fails or is interrupted leaves none of
them; a signal that arrives after they are in place no longer fails the run.
``main`` installs its SIGINT/SIGTERM handlers first and imports the engine
with them held, so an interrupt during start-up is an orderly exit 130/143
too (only one in the interpreter's own first ~0.1 s kills it by the signal,
before it has made anything).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import signal
import sys
from dataclasses import dataclass
from collections.abc import Callable
from types import FrameType
from typing import Any

from .errors import Interrupted, OutputError, ShardpayError
from .options import add_backend_options, add_decoders_option, add_workers_option, check_backend_options

__all__ = ["Options", "main", "parse_args"]

LOGGED_REJECTS = 20
"""Rejected rows logged to stderr; ``--rejects FILE`` writes every one."""


@dataclass(frozen=True, kw_only=True)
class Options:
    """The command line, parsed (see ``shardpay --help``)."""

    input: str
    workers: int
    decoders: int
    output: str | None
    rejects: str | None
    stats: str | None
    strict: bool
    quiet: bool
    backend: str = "local"
    ray_address: str | None = None


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line; argparse exits with code 2 on a usage error."""
    from .engine import default_decoders, default_workers

    p = argparse.ArgumentParser(
        prog="shardpay",
        description=(
            "Turn a CSV of payment transactions (type,client,tx,amount: deposit, withdrawal, "
            "dispute, resolve, chargeback) into the balance of every client account, "
            "client,available,held,total,locked, sorted by client. Rows are spread over "
            "worker processes by client; the output is the same for any --workers and --decoders."
        ),
        epilog=(
            "examples:\n"
            "  shardpay tx.csv > accounts.csv\n"
            "  shardpay tx.csv --workers 4 -o accounts.csv --rejects rejects.csv\n"
            "  shardpay tx.csv --backend ray --ray-address HOST:6379 --workers 32\n"
            "  gunzip -c tx.csv.gz | shardpay - --quiet > accounts.csv\n"
            "  shardpay serve --journal tx.journal       # a TCP server (see: shardpay serve --help)\n"
            "  shardpay send tx.csv --to 127.0.0.1:7878  # one batch to it (see: shardpay send --help)\n"
            "  shardpay generate 1M tx.csv --seed 1      # a test input (see: shardpay generate --help)\n\n"
            "Rejected rows do not stop the run: the first 20 are logged to stderr as\n"
            "'line N: REASON: detail' and counted in the summary. Exit codes: 0 done,\n"
            "1 fatal error, 2 usage error, 130 interrupted (SIGINT), 143 terminated (SIGTERM)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="FILE", nargs="?", default="-",
                   help="transactions CSV to read, or - for standard input (the default); piped input is streamed")
    add_workers_option(p, default_workers())
    add_decoders_option(p, default_decoders())
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write accounts to OUT instead of stdout; written atomically, never half-written")
    p.add_argument("--rejects", metavar="FILE",
                   help="write every rejected row as CSV line,type,client,tx,amount,reason,detail, in file order")
    p.add_argument("--stats", metavar="FILE", help="write the run's figures (the summary's, and per-stage) as JSON")
    p.add_argument("--strict", action="store_true",
                   help="make the first rejected row fatal: exit 1 naming its line and reason, write no output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary, no logged rejects")
    add_backend_options(p)
    a = p.parse_args(argv)
    check_backend_options(p, a)
    workers = a.workers or default_workers()
    return Options(input=a.input, workers=workers, decoders=a.decoders or default_decoders(workers), output=a.output,
                   rejects=a.rejects, stats=a.stats, strict=a.strict, quiet=a.quiet,
                   backend=a.backend, ray_address=a.ray_address)


class _Signalled(BaseException):
    """What the CLI's SIGINT/SIGTERM handler raises; :func:`main` reports it as :class:`Interrupted`.

    A BaseException, as KeyboardInterrupt is: the handler runs wherever the
    main thread happens to be, and a library's ``except Exception`` there
    (msgspec's optional imports have one) must not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []
"""Signals received during this run, first first: sticky, in case an exception got lost."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Raise :class:`_Signalled` for the first signal; only record later ones.

    One exception unwinds the run; a second signal (Ctrl-C pressed again)
    must not interrupt the clean-up or the report of the first.
    """
    _received.append(signum)
    if len(_received) == 1:
        raise _Signalled(signum)


def _check_signals() -> None:
    """Raise again for a signal whose exception was lost (raised in a ``__del__``, or swallowed).

    Called on every progress tick of the engine (every
    :data:`shardpay.engine.WATCH_SECONDS`) and before the outputs are
    committed, so a signal always ends the run.
    """
    if _received:
        raise _Signalled(_received[0])


_RUN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for a fatal error).

    Args:
        argv: the arguments; None means this process *is* the program
            (``sys.argv``, the console script, ``python -m shardpay``): then
            SIGINT/SIGTERM stay ignored after it returns, since the outcome
            is decided and the process is about to exit. With an explicit
            ``argv`` the caller's signal handlers are restored.
    """
    args = sys.argv[1:] if argv is None else argv
    if argv is None:
        # shardpay calls no BLAS routine. Without this, numpy's OpenBLAS starts a
        # thread a core at import that spins for ~0.1 s: CPU the children need.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args[:1] in (["serve"], ["send"], ["journal"]):  # the server, its client, its journal: own parsers
        return _serve_command(args[0], list(args[1:]))
    if args[:1] == ["generate"]:  # `shardpay generate ...`: a deterministic test input
        from .testing.generate import main as generate_main

        return generate_main(list(args[1:]))
    _received.clear()
    old = {s: signal.signal(s, _on_signal) for s in _RUN_SIGNALS}
    old_hook, sys.unraisablehook = sys.unraisablehook, _unraisable_hook(sys.unraisablehook)
    try:
        try:
            try:
                _import_with_signals_held()
                return _main(parse_args(argv))
            except ShardpayError as err:
                code, message = err.exit_code, str(err)
        except _Signalled as sig:  # also one that came while the error above was being handled
            stop = Interrupted(sig.signum)
            code, message = stop.exit_code, str(stop)
        _decided()
        _error(message)
        return code
    finally:
        sys.unraisablehook = old_hook
        if argv is None:
            _decided()  # a late Ctrl-C must not turn into a KeyboardInterrupt at exit
            # The process is about to exit: the interpreter's last collection
            # need not walk the ~100K objects numpy and the engine's imports made
            # (~20 ms of an 8-row run).
            gc.freeze()
        else:
            for s, h in old.items():
                signal.signal(s, h)


def _serve_command(name: str, argv: list[str]) -> int:
    """``shardpay serve|send|journal ...``; a fatal error is one line, as for a run."""
    from . import serve

    if name == "serve":
        command = serve.main
    elif name == "send":
        from .serve.client import main as command
    else:
        from .serve.journal import main as command
    try:
        return command(argv)
    except ShardpayError as err:
        _error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        _error("interrupted by SIGINT")
        return 130


def _import_with_signals_held() -> None:
    """Import the engine and the report with SIGINT/SIGTERM held; they are delivered right after.

    Importing :mod:`shardpay.decode` builds msgspec structs and decoders: C
    code that calls back into Python. An exception raised in there by a
    signal handler crashed the process with SIGSEGV (msgspec 0.22, seen in
    about one SIGTERM in 30 sent during start-up under load). Holding the
    signals for these ~0.1 s makes an early signal an orderly exit 130/143.
    """
    from .proc import signals_held

    with signals_held():
        from . import engine, report  # noqa: F401


def _unraisable_hook(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """A ``sys.unraisablehook`` that drops :class:`_Signalled`, raised where it cannot propagate.

    The handler may run inside a ``__del__`` or a weakref callback; Python would
    print the exception there with a traceback. :func:`_check_signals` raises
    it again at the next progress tick instead. Anything else goes to ``previous``.
    """

    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, _Signalled):
            previous(info)

    return hook


def _decided() -> None:
    """The outcome is decided: later SIGINT/SIGTERM are ignored (pending ones dropped)."""
    from .proc import signals_held

    with signals_held():
        for s in _RUN_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def _error(message: str) -> None:
    try:
        sys.stderr.write(f"shardpay: error: {message}\n")
        sys.stderr.flush()
    except OSError:  # nobody reads stderr any more; nothing else to tell
        _to_devnull(sys.stderr)


def _to_devnull(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null: its reader went away; later writes vanish."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _console() -> Any:
    """A rich console on stderr that stops logging, instead of exiting, when stderr's reader goes away."""
    from rich.console import Console

    class _StderrConsole(Console):
        def on_broken_pipe(self) -> None:
            # `shardpay x 2>&1 | head`: the log is unread, the job still runs
            # (rich's default would point stdout at /dev/null and exit 1).
            self.quiet = True
            _to_devnull(sys.stderr)

    return _StderrConsole(stderr=True)


def _main(opts: Options) -> int:
    from .engine import process
    from .proc import signals_held
    from .report import PendingOutputs, print_summary, write_accounts, write_rejects_csv, write_stats

    show = not opts.quiet
    console = _console() if show else None  # rich is imported only to be shown
    progress = _Progress(console if show and console.is_terminal else None)
    try:
        result = process(opts.input, workers=opts.workers, decoders=opts.decoders, strict=opts.strict,
                         progress=progress.tick,
                         backend=opts.backend, ray_address=opts.ray_address)
    finally:
        progress.stop()
    with result, PendingOutputs() as pending:
        stats = result.stats
        shown = []
        if show and result.reject_counts:
            shown = list(itertools.islice(result.rejects(), LOGGED_REJECTS))
            for r in shown:
                console.print(str(r), markup=False, highlight=False, soft_wrap=True)
        if opts.rejects:
            with pending.open(opts.rejects) as f:
                written = write_rejects_csv(f, result.rejects_csv())
            if written != stats["rows_rejected"]:  # nothing lost: every rejected row is in the file
                raise ShardpayError(f"{stats['rows_rejected']:,} rows were rejected but the rejects "
                                    f"spools hold {written:,}; no output written")
        if opts.stats:
            with pending.open(opts.stats) as f:
                write_stats(f, stats)
        if opts.output:
            with pending.open(opts.output) as f:
                write_accounts(f, result.accounts)
        else:
            _write_stdout(result.accounts, write_accounts)
        with signals_held():
            _check_signals()
            pending.commit()
            # The run is done and its files are in place: a signal from now on
            # (held until here, or later) is ignored rather than failing it.
            for s in _RUN_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
    if show:
        print_summary(console, stats, shown)
    return 0


class _Progress:
    """The engine's progress callback: checks for signals, and drives the bar if there is one.

    The bar starts at the first tick, after the children are forked: forking
    after rich's refresh thread has started can deadlock a child. The thread is started with the run's signals held, so
    it never takes one: a signal always reaches the main thread.

    Args:
        console: the rich console to draw on, or None for no bar.
    """

    def __init__(self, console: Any) -> None:
        self.bar = None
        if console is not None:
            from .report import make_progress

            self.bar = make_progress(console)
            self.task = self.bar.add_task("read", total=None)
        self.started = False

    def tick(self, done: int, total: int | None, rows: int = 0) -> None:
        _check_signals()
        if self.bar is None:
            return
        if not self.started:
            from .proc import signals_held

            with signals_held():
                self.bar.start()
            self.started = True
        elapsed = self.bar.tasks[0].elapsed or 0.0
        self.bar.update(self.task, completed=done, total=total,
                        rows_per_second=rows / elapsed if elapsed > 0.2 else None)

    def stop(self) -> None:
        if self.started:
            self.bar.stop()


def _write_stdout(accounts: tuple, write_accounts: Any) -> None:
    """Write the report to stdout; a closed pipe ends quietly, a full disk is an error."""
    import io

    buf = io.StringIO()
    write_accounts(buf, accounts)
    data = buf.getvalue().encode()
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # `shardpay big.csv | head -1`: the reader went away; not an error.
        _to_devnull(sys.stdout)
    except OSError as err:
        _to_devnull(sys.stdout)  # the unwritten rest must not fail again at exit
        raise OutputError(f"cannot write the report to stdout: {err.strerror or err}") from None
