"""Run one input through the model, the installed CLI, or the engine's stages in one process.

Every runner returns an :class:`Outcome`, so a property is one ``==``:

* :func:`model_outcome` -- :func:`shardpay.testing.model.run`, the oracle.
* :func:`cli_outcome` -- the installed ``shardpay`` console script in a
  subprocess, with ``--rejects``: the real thing, processes and rings included
  (~0.3 s a run).
* :func:`library_outcome` -- :func:`shardpay.engine.run`, the library API:
  real reader and worker processes forked from this one (so mutants of the
  test process reach them), the real merge, and the reported reject rows.
* :func:`inprocess_outcome` -- the engine's reader and ledgers in this
  process: :class:`shardpay.reader.Reader` routing frames to in-memory
  lists, a ledger of each twin (compiled, pure) per shard. No process, no
  shared memory: milliseconds for a small file, so it runs hundreds of
  examples, and it is what mutation testing drives (mutants live in this
  process).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import tempfile
from typing import NamedTuple

from shardpay.testing import model
from tests.conftest import shardpay_cmd

HEADER_ERROR = "header error"


class Outcome(NamedTuple):
    """What a run produced: the output text and the ``(line, reason)`` rejects, or a fatal header error."""

    output: str
    rejects: list[tuple[int, str]]

    def __repr__(self) -> str:  # failures print the output as lines, not one long string
        lines = self.output.splitlines()
        return f"Outcome(output={lines!r}, rejects={self.rejects!r})"


FATAL = Outcome(HEADER_ERROR, [])


def model_outcome(data: bytes) -> Outcome:
    """The reference model's result; :data:`FATAL` if the header is wrong."""
    try:
        result = model.run(data)
    except model.HeaderError:
        return FATAL
    return Outcome(result.output, list(result.rejects))


def parse_rejects_csv(text: str) -> list[list[str]]:
    """``--rejects`` CSV to its rows (``line,type,client,tx,amount,reason,detail``), header checked and dropped."""
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and rows[0] == ["line", "type", "client", "tx", "amount", "reason", "detail"], rows[:1]
    assert all(len(row) == 7 for row in rows), "a rejects row without 7 columns"
    return rows[1:]


def cli_outcome(data: bytes, workers: int, tmpdir: str, timeout: float = 60, decoders: int = 1) -> Outcome:
    """Run the installed CLI on ``data`` with ``--workers`` and ``--decoders``; a header error
    must be exit 1, one line, no output."""
    src = os.path.join(tmpdir, "in.csv")
    rej = os.path.join(tmpdir, f"rejects-{workers}-{decoders}.csv")
    with open(src, "wb") as f:
        f.write(data)
    if os.path.exists(rej):
        os.unlink(rej)
    cmd = [*shardpay_cmd(), src, "--workers", str(workers), "--decoders", str(decoders), "--quiet", "--rejects", rej]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode == 1 and b"header" in proc.stderr:
        assert proc.stdout == b"", "a fatal error wrote output"
        assert proc.stderr.count(b"\n") == 1, f"a fatal error is one line: {proc.stderr!r}"
        return FATAL
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    with open(rej, encoding="utf-8", newline="") as f:
        rows = parse_rejects_csv(f.read())
    check_reject_columns(data, rows)
    return Outcome(proc.stdout.decode("utf-8"), [(int(row[0]), row[5]) for row in rows])


class _Trickle:
    """A binary stream that returns at most ``size`` bytes a read, as a pipe may."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data = io.BytesIO(data)
        self.size = size

    def read(self, n: int = -1) -> bytes:
        return self.data.read(self.size if n < 0 else min(n, self.size))

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        chunk = self.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


def inprocess_outcome(data: bytes, workers: int, read_size: int | None = None) -> Outcome:
    """The engine's stages in this process: reader, one ledger per shard, merge.

    The reader, a decoder and the sequencer (:func:`shardpay.testing.stages.route`)
    cut, decode, claim and route ``data`` to ``workers`` shards; each shard's
    frames go whole into a ledger of each twin (compiled and pure; the pure
    one alone where the compiled one was not built, see
    :func:`tests.ledger_helpers.built_twins`), as a worker applies them, and
    row by row into one more of the first twin; all must give the same
    reject records byte for byte and end equal. Accounts and rejects are
    merged by client and by line. Only public names of the stages and the
    ledgers are used, so their internals may change freely.

    Args:
        data: the input file's bytes.
        workers: number of shards.
        read_size: if given, every read of the input returns at most this
            many bytes (chunk boundaries inside lines, CRLFs and the BOM).
    """
    from shardpay.errors import InputError
    from shardpay.codes import REASONS
    from shardpay.money import format_units
    from shardpay.frames import unpack_frame
    from shardpay.testing.stages import route
    from tests.ledger_helpers import apply_rows, built_twins

    stream = io.BytesIO(data) if read_size is None else _Trickle(data, read_size)
    try:
        routed = route(stream, workers)
    except InputError as err:
        if "header" not in str(err):
            raise
        return FATAL
    frames = routed.frames
    rejects = [(r.line, r.reason) for r in routed.rejects]
    accounts: dict[int, tuple[int, int, bool]] = {}
    twins = built_twins()
    for shard in frames:
        ledgers = [cls() for cls in twins]
        one_by_one = twins[0]()
        for frame in shard:
            whole = [apply_rows(ledger, zip(*unpack_frame(frame))) for ledger in ledgers]
            assert all(records == whole[0] for records in whole), "the twins disagree on a frame's rejects"
            rows = [record for row in zip(*unpack_frame(frame)) for record in apply_rows(one_by_one, [row])]
            assert rows == whole[0], "a frame and its rows one by one disagree"
            rejects.extend((record[0], REASONS[record[1]]) for record in whole[0])
        snapshots = [[list(col) for col in ledger.snapshot()] for ledger in [*ledgers, one_by_one]]
        assert all(s == snapshots[0] for s in snapshots), "the twins, or a frame and its rows one by one, disagree on balances"
        assert len({ledger.stored() for ledger in ledgers}) == 1, "the twins store different transactions"
        for c, a, h, lk in zip(*snapshots[0]):
            assert c not in accounts, f"client {c} is in two shards"
            accounts[c] = (a, h, bool(lk))
    rejects.sort()
    assert len({line for line, _ in rejects}) == len(rejects), "a line rejected twice"
    lines = ["client,available,held,total,locked\n"]
    for c in sorted(accounts):
        a, h, lk = accounts[c]
        lines.append(f"{c},{format_units(a)},{format_units(h)},{format_units(a + h)},{'true' if lk else 'false'}\n")
    return Outcome("".join(lines), rejects)


def _model_rows(data: bytes) -> dict[int, tuple[str, int, int, int]]:
    """The model's reading of every well-formed data line: line number -> (kind, client, tx, amount)."""
    rows = {}
    for number, line in enumerate(data.split(b"\n"), 1):
        if number == 1:
            line = line.removeprefix(model.BOM)
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        fields = model.split_fields(text) if text else None
        row = model.parse_row(fields) if fields else None
        if row is not None:
            rows[number] = row
    return rows


def library_outcome(data: bytes, workers: int, decoders: int = 1) -> Outcome:
    """Run :func:`shardpay.engine.run` (the library API: real processes, forked from this one).

    Also checks every reject of a well-formed row as reported: its type,
    client, tx and amount columns are the row's (amount with four decimals
    for deposits and withdrawals, empty otherwise) and it has a detail.
    """
    from shardpay import engine
    from shardpay.errors import InputError

    with tempfile.TemporaryDirectory(prefix="shardpay-prop-") as tmp:
        src = os.path.join(tmp, "in.csv")
        with open(src, "wb") as f:
            f.write(data)
        try:
            result = engine.run(src, workers=workers, decoders=decoders)
        except InputError as err:
            if "header" not in str(err):
                raise
            return FATAL
        with result:
            output = "client,available,held,total,locked\n" + "".join(a.csv_line() for a in result.account_list())
            rejects = list(result.rejects())
    check_reject_columns(data, rejects)
    return Outcome(output, [(r.line, r.reason) for r in rejects])


def check_reject_columns(data: bytes, rejects) -> None:  # type: ignore[no-untyped-def]
    """Every reported reject has a detail; one of a well-formed row shows that row.

    ``rejects`` are rows with ``line, type, client, tx, amount, reason,
    detail`` (:class:`shardpay.rejects.RejectRow` or ``--rejects`` CSV rows):
    type, client and tx as the model reads the line, the amount with four
    decimals for deposits and withdrawals and empty otherwise.
    """
    from shardpay.money import format_units

    parsed = None
    for line, type_, client_, tx_, amount_, reason, detail in rejects:
        assert detail, (line, reason)
        if reason == "invalid_row":
            continue
        parsed = parsed if parsed is not None else _model_rows(data)
        kind, client, tx, amount = parsed[int(line)]
        shown = format_units(amount) if kind in ("deposit", "withdrawal") else ""
        assert (type_, client_, tx_, amount_) == (kind, str(client), str(tx), shown), (line, reason)
