"""Everything the user sees: the accounts CSV, the rejects CSV, stats, progress, summary.

Output files are written atomically: each to an unnamed file in its
target's folder, put in place only when complete. :class:`PendingOutputs`
does it for the accounts, rejects and stats files of a run together: all are
written first, then all put in place, so a failed or interrupted run (even
one killed with SIGKILL) leaves none of them, half-written or whole, and no
temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .errors import OutputError
from .money import format_units
from .rejects import REJECTS_CSV, Reject, csv_rows

_REJECTS_BATCH = 8192

__all__ = [
    "HEADER",
    "REJECTS_CSV",
    "REJECTS_HEADER",
    "PendingOutputs",
    "account_line",
    "atomic_output",
    "make_progress",
    "print_summary",
    "write_accounts",
    "write_rejects",
    "write_rejects_csv",
    "write_stats",
]

HEADER = "client,available,held,total,locked\n"
"""The output's header line (SPEC "Output")."""
REJECTS_HEADER = ("line", "type", "client", "tx", "amount", "reason", "detail")
"""Columns of the ``--rejects`` CSV."""
_REJECTS_HEADER_LINE = ",".join(REJECTS_HEADER) + "\n"


def account_line(client: int, available: int, held: int, locked: bool) -> str:
    """One output row (SPEC "Output"): amounts with four decimals, LF-terminated."""
    return (
        f"{client},{format_units(available)},{format_units(held)},"
        f"{format_units(available + held)},{'true' if locked else 'false'}\n"
    )


def write_accounts(out: IO[str], accounts: tuple[list[int], list[int], list[int], list[bool]]) -> None:
    """Write the header and one row per account, in the given (client) order."""
    out.write(HEADER)
    out.writelines(account_line(c, a, h, lk) for c, a, h, lk in zip(*accounts))


def write_rejects(out: IO[str], rejects: Iterable[Reject]) -> int:
    """Write the header and a ``line,type,client,tx,amount,reason,detail`` row per
    reject (the csv module's quoting), in the given order; return how many."""
    out.write(_REJECTS_HEADER_LINE)
    rejects = iter(rejects)
    written = 0
    while batch := list(itertools.islice(rejects, _REJECTS_BATCH)):
        out.write(csv_rows(batch))
        written += len(batch)
    return written


def write_rejects_csv(out: IO[str], rows: Iterable[bytes]) -> int:
    """Write the header and the rejects' CSV rows given as blocks (UTF-8 bytes, a row
    an LF, as :func:`shardpay.rejects.merged_csv` gives them); return how many rows."""
    out.write(_REJECTS_HEADER_LINE)
    written = 0
    for block in rows:
        out.write(block.decode("utf-8"))
        written += block.count(b"\n")
    return written


class PendingOutputs:
    """Output files written now, and put in place all together by :meth:`commit`.

    Each file is written into its target's folder as an unnamed file
    (``O_TMPFILE``), so until the commit nothing of it has a name: a run
    killed even with SIGKILL leaves no temporary file behind. At the commit
    each gets a temporary name (``linkat`` of ``/proc/self/fd/N``) and is
    renamed over its target at once. Where the filesystem has no
    ``O_TMPFILE``, a named temporary file (``mkstemp``) is written instead.

    Use as a context manager: leaving it without :meth:`commit` drops every
    file (an error or a signal ended the run: no output at all).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int | str, str]] = []  # (unnamed file's fd, or temporary path; target)

    def __enter__(self) -> PendingOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[IO[str]]:
        """A text file for ``path``, kept pending until :meth:`commit`.

        Raises:
            OutputError: the folder is not writable, or a write fails (disk full).
        """
        folder = os.path.dirname(os.path.abspath(path))
        try:
            pending: int | str = _unnamed_file(folder)
            if pending < 0:
                fd, pending = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
            else:
                fd = pending
        except OSError as err:
            raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from None
        try:
            with open(fd, "w", encoding="utf-8", newline="", closefd=isinstance(pending, str)) as f:
                yield f
        except OSError as err:
            _drop(pending)
            raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from None
        except BaseException:
            _drop(pending)
            raise
        self._pending.append((pending, path))

    def commit(self) -> None:
        """Put every written file in place (hold signals around this: see the CLI).

        Raises:
            OutputError: a file could not be put in place; the ones not yet
                in place are dropped.
        """
        while self._pending:
            pending, path = self._pending[0]
            try:
                if isinstance(pending, int):
                    _link_and_replace(pending, path)
                else:
                    os.replace(pending, path)
            except OSError as err:
                self.discard()
                raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from None
            _drop(pending, unlink=False)
            self._pending.pop(0)

    def discard(self) -> None:
        """Drop every file not yet put in place."""
        while self._pending:
            _drop(self._pending.pop()[0])


def _unnamed_file(folder: str) -> int:
    """An unnamed file open for writing in ``folder`` (``O_TMPFILE``); -1 if the filesystem has none.

    Raises:
        OSError: the folder does not exist or is not writable.
    """
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:  # pragma: no cover - not Linux
        return -1
    try:
        return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # no O_TMPFILE here
            return -1
        raise


def _link_and_replace(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` a temporary name next to ``path``, then rename it over ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = f".{name}.{os.urandom(4).hex()}.tmp"
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # With a dir_fd, os.link is linkat(..., AT_SYMLINK_FOLLOW): the magic link leads to the file.
        os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _drop(pending: int | str, unlink: bool = True) -> None:
    """Close a pending unnamed file (it vanishes), or remove a pending temporary path."""
    if isinstance(pending, int):
        with contextlib.suppress(OSError):
            os.close(pending)
    elif unlink:
        _unlink(pending)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` only if the block completes.

    Raises:
        OutputError: the folder is not writable, or a write fails (disk full).
    """
    with PendingOutputs() as pending:
        with pending.open(path) as f:
            yield f
        pending.commit()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def make_progress(console: Any) -> Any:
    """A rich Progress on ``console`` (stderr): bytes read of the input size, MB/s,
    rows/s, elapsed, and the time left when the input's size is known (a file,
    not a pipe).

    Disabled when the console is not a terminal. Data written to stdout while
    it is live stays on stdout (``redirect_stdout=False``).
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class _Speed(ProgressColumn):
        def render(self, task: Any) -> Text:
            rows = task.fields.get("rows_per_second")
            return Text(f"{rows:,.0f} rows/s" if rows else "", style="progress.data.speed")

    class _Eta(TimeRemainingColumn):
        def render(self, task: Any) -> Text:
            if task.total is None:  # a pipe: no size, no estimate
                return Text("")
            return Text("ETA ", style="progress.remaining") + super().render(task)

    return Progress(
        TextColumn("[bold]shardpay"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        _Speed(),
        TimeElapsedColumn(),
        _Eta(),
        console=console,
        disable=not console.is_terminal,
        redirect_stdout=False,
        redirect_stderr=False,
        transient=True,
    )


def print_summary(console: Any, stats: dict[str, Any], first_rejects: list[Reject]) -> None:
    """Print the end-of-run summary (``stats`` as :func:`shardpay.result.stats_dict` makes
    it) on ``console`` (stderr) with rich: the rows accounted for, the accounts,
    the wall time and throughput, and per process its CPU, peak RSS and, for
    the pipeline's stages, rows/s over its own work."""
    from rich.table import Table

    def mib(n: int) -> str:
        return f"{n / 2**20:,.1f} MiB"

    t = Table(title="shardpay summary", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    read, accepted, rejected = stats["rows_read"], stats["rows_accepted"], stats["rows_rejected"]
    t.add_row("rows read", f"{read:,}")
    t.add_row("accepted", f"{accepted:,}")
    t.add_row("rejected", f"{rejected:,}")
    for reason, n in stats["rejected_by_reason"].items():
        t.add_row(f"  {reason}", f"{n:,}")
    same = "=" if accepted + rejected == read else "!="
    t.add_row("accounted for", f"accepted + rejected = {accepted + rejected:,} {same} {read:,} rows read")
    t.add_row("accounts", f"{stats['accounts']:,}")
    t.add_row("wall time", f"{stats['wall_seconds']:.2f} s")
    t.add_row("throughput", f"{stats['rows_per_second']:,} rows/s")
    t.add_row("processes", f"{_count(stats['decoders'], 'decoder')}, 1 sequencer, {_count(stats['workers'], 'worker')}")
    t.add_row("rows per shard", ", ".join(f"{n:,}" for n in stats["rows_per_shard"]))
    t.add_row("ledger", stats["ledger"])
    procs = [("parent (reader)", stats["parent"], None)]
    procs += [(f"decoder {d['decoder']}", d, d["decode_rows_per_second"]) for d in stats["decoders_detail"]]
    procs += [("sequencer", stats["sequencer"], stats["sequencer"]["route_rows_per_second"])]
    procs += [(f"worker {w['shard']}", w, w["apply_rows_per_second"]) for w in stats["workers_detail"]]
    for name, p, rate in procs:
        speed = f", {rate:,.0f} rows/s" if rate else ""
        t.add_row(name, f"CPU {p['cpu_seconds']:.2f} s, peak RSS {mib(p['peak_rss_bytes'])}{speed}")
    console.print(t)
    if first_rejects:
        console.print(f"first {len(first_rejects)} rejects are shown above; --rejects FILE writes them all")


def write_stats(out: IO[str], stats: dict[str, Any]) -> None:
    """Write ``stats`` as indented JSON."""
    json.dump(stats, out, indent=2)
    out.write("\n")


def _count(n: int, noun: str) -> str:
    """``"1 worker"``, ``"2 workers"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
