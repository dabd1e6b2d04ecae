"""The ``shardpay`` command line: argparse in, exit code out.

Exit codes: 0 done (rejected rows included), 1 fatal error, 2 usage error,
130 SIGINT, 143 SIGTERM. Every fatal error is one line on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
from dataclasses import dataclass
from types import FrameType

from .engine import default_workers, run
from .errors import Interrupted, OutputError, ShardpayError
from .report import atomic_output, dump_stats, finish_stats, make_progress, print_summary, write_accounts, write_rejects

__all__ = ["Options", "main", "parse_args"]

LOGGED_REJECTS = 20
"""Rejected rows logged to stderr; ``--rejects FILE`` writes every one."""


@dataclass(frozen=True, kw_only=True)
class Options:
    """The command line, parsed (see ``shardpay --help``)."""

    input: str
    workers: int
    output: str | None
    rejects: str | None
    stats: str | None
    strict: bool
    quiet: bool


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{n} is outside 1..256")
    return n


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line; argparse exits with code 2 on a usage error."""
    p = argparse.ArgumentParser(
        prog="shardpay",
        description=(
            "Turn a CSV of payment transactions (type,client,tx,amount: deposit, withdrawal, "
            "dispute, resolve, chargeback) into the balance of every client account, "
            "client,available,held,total,locked, sorted by client. Rows are spread over "
            "worker processes by client; the output is the same for any --workers."
        ),
        epilog=(
            "examples:\n"
            "  shardpay tx.csv > accounts.csv\n"
            "  shardpay tx.csv --workers 4 -o accounts.csv --rejects rejects.csv\n"
            "  gunzip -c tx.csv.gz | shardpay - --quiet > accounts.csv\n\n"
            "Rejected rows do not stop the run: the first 20 are logged to stderr as\n"
            "'line N: REASON: detail' and counted in the summary. Exit codes: 0 done,\n"
            "1 fatal error, 2 usage error, 130 interrupted (SIGINT), 143 terminated (SIGTERM)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="FILE", nargs="?", default="-",
                   help="transactions CSV to read, or - for standard input (the default); piped input is streamed")
    p.add_argument("-w", "--workers", type=_workers, default=None, metavar="N",
                   help=("worker processes (shards). Default: usable CPUs minus one, since the reader process "
                         f"needs a core too; at least 1 (here: {default_workers()})"))
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write accounts to OUT instead of stdout; written atomically, never half-written")
    p.add_argument("--rejects", metavar="FILE",
                   help="write every rejected row as CSV line,type,client,tx,amount,reason,detail, in file order")
    p.add_argument("--stats", metavar="FILE", help="write the run's figures (the summary's, and per-stage) as JSON")
    p.add_argument("--strict", action="store_true",
                   help="make the first rejected row fatal: exit 1 naming its line and reason, write no output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary, no logged rejects")
    a = p.parse_args(argv)
    return Options(input=a.input, workers=a.workers or default_workers(), output=a.output,
                   rejects=a.rejects, stats=a.stats, strict=a.strict, quiet=a.quiet)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for a fatal error)."""
    opts = parse_args(argv)
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(opts)
    except ShardpayError as err:
        _error(str(err))
        return err.exit_code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _error(message: str) -> None:
    try:
        sys.stderr.write(f"shardpay: error: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _main(opts: Options) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    show = not opts.quiet
    progress = make_progress(console) if show and console.is_terminal else None
    task = None

    def tick(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    if progress is not None:
        with progress:
            task = progress.add_task("read", total=None)
            result = run(opts.input, workers=opts.workers, strict=opts.strict, progress=tick)
    else:
        result = run(opts.input, workers=opts.workers, strict=opts.strict)
    with result:
        stats = finish_stats(result.stats)
        shown = []
        if show and result.reject_counts:
            shown = list(itertools.islice(result.rejects(), LOGGED_REJECTS))
            for r in shown:
                console.print(str(r), markup=False, highlight=False, soft_wrap=True)
        if opts.rejects:
            with atomic_output(opts.rejects) as f:
                write_rejects(f, result.rejects())
        if opts.stats:
            dump_stats(opts.stats, stats)
        if opts.output:
            with atomic_output(opts.output) as f:
                write_accounts(f, result.accounts)
        else:
            _write_stdout(result.accounts)
        if show:
            print_summary(console, stats, shown)
    return 0


def _write_stdout(accounts: tuple) -> None:
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
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError as err:
        raise OutputError(f"cannot write the report to stdout: {err.strerror or err}") from None
