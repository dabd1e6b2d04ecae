"""The batches of a server: checked as they arrive, committed in groups, each applied exactly once.

::

    connection: batch bytes --prepare()--> Pending (id, sha256, header line, rows)
                                              | queued; one group at a time
                                              v
    engine thread:  Book.commit(group)
                      1. ids seen before: same sha256 -> "already" + the original result;
                         other bytes -> "conflict". Nothing is written or applied for them.
                      2. the new batches' records -> Journal.append (write + fsync)
                         a failed write -> every new batch of the group: "journal" error
                      3. Engine.feed(their rows), then Engine.raw_rejects_since: each reject
                         goes to its batch by engine line -> per-row results (the ledger's
                         records rendered straight to answer lines, rejects.answer_lines)
                      4. the id index remembers each batch's sha256 and result

At start :meth:`Book.start` replays the journal through steps 3 and 4, so
the index, the results and the balances are those the server had: a batch
retried after a restart gets ``already`` with the rows it got the first time.
"""

from __future__ import annotations

import errno
import hashlib
import io
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..decode import parse_header
from ..errors import InputError
from ..rejects import RawRejects, answer_lines
from .journal import CSV_HEADER, Journal, encode_record
from .limits import log
from .protocol import ProtocolError, error_line, reject_lines, status_line

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["Applied", "Book", "Outcome", "Pending", "count_rows", "prepare", "split_body"]

REPLAY_FEED_BYTES = 4 * 1024 * 1024
"""Rows fed to the engine at once during replay: fewer calls against less memory."""
REPLAY_SETTLE_BYTES = 64 * 1024 * 1024
"""Rows replayed between two ``raw_rejects_since`` calls: bounds the rejects held at once."""
RETRY_SECONDS = 5.0
"""How long ``raw_rejects_since`` is retried while the process is out of file descriptors."""

_BOM = b"\xef\xbb\xbf"
_NO_COMMA = re.compile(rb"^[^,\n]*\n", re.M)  # only such lines can be empty
_NOT_COMMA_LF = bytes(b for b in range(256) if b not in b",\n")


def count_rows(rows_data: bytes) -> tuple[int, int]:
    """``(rows, lines)`` of LF-terminated lines: rows are the lines not empty after trimming
    (SPEC "Input")."""
    lines = rows_data.count(b"\n")
    if b"\n\n" not in b"\n" + rows_data.translate(None, _NOT_COMMA_LF):  # every line has a comma: none is empty
        return lines, lines
    empty = 0
    for m in _NO_COMMA.finditer(rows_data):  # a line with a comma is never empty
        if not m.group()[:-1].decode("utf-8", "replace").strip():
            empty += 1
    return lines - empty, lines


def split_body(body: bytes) -> tuple[int, bytes]:
    """Find a batch's header (SPEC "Input": the first non-empty line, after a BOM).

    Returns:
        ``(header line number, the lines after it, the last one given an LF)``;
        ``(0, b"")`` when the batch holds no header (nothing but empty lines).

    Raises:
        ProtocolError: ``bad_header``: its first non-empty line is not the header.
    """
    pos = 3 if body.startswith(_BOM) else 0
    line = 1
    while pos < len(body):
        nl = body.find(b"\n", pos)
        end = len(body) if nl < 0 else nl
        raw = body[pos:end]
        if raw.decode("utf-8", "replace").strip():
            try:
                parse_header(raw)
            except InputError as err:
                raise ProtocolError("bad_header", f"line {line}: {err}") from None
            rows = body[end + 1:] if nl >= 0 else b""
            return line, rows if not rows or rows.endswith(b"\n") else rows + b"\n"
        pos = end + 1
        line += 1
    return 0, b""


class Pending(NamedTuple):
    """A batch received whole and checked, not yet committed.

    Attributes:
        key: ``(token name or "-", batch id)``: ids are one namespace per token name.
        principal: ``NAME@HOST`` for the journal.
        sha256: of the bytes as sent (hex).
        header_line: the header's line number in those bytes (0: no header).
        rows: non-empty rows after the header.
        lines: lines after the header (LF-terminated), empty ones included.
        rows_data: those lines.
    """

    key: tuple[str, str]
    batch_id: str
    principal: str
    sha256: str
    header_line: int
    rows: int
    lines: int
    rows_data: bytes


def scope_of(principal: str) -> str:
    """The namespace of a principal's batch ids: its token name (``-`` without tokens)."""
    return principal.split("@", 1)[0]


def prepare(batch_id: str, body: bytes, principal: str) -> Pending:
    """Check a batch's bytes and make its :class:`Pending`.

    Raises:
        ProtocolError: ``bad_header`` (see :func:`split_body`).
    """
    header_line, rows_data = split_body(body)
    rows, lines = count_rows(rows_data)
    return Pending((scope_of(principal), batch_id), batch_id, principal, hashlib.sha256(body).hexdigest(),
                   header_line, rows, lines, rows_data)


@dataclass(slots=True)
class Applied:
    """A committed batch in the index: what a repeat is compared with, and its result.

    Attributes:
        sha256: of the bytes as sent.
        accepted, rejected: its rows.
    """

    sha256: str
    accepted: int
    rejected: int
    _rejects: RawRejects | None  # the engine's records, until first formatted
    _offset: int  # batch line = engine line + offset
    _lines: bytes | None = None

    def reject_lines(self) -> bytes:
        """The answer's ``LINE,REASON,DETAIL`` lines, joined (formatted once, on first use).

        Safe from two threads: the lines are set before the records are dropped.
        """
        rejects = self._rejects
        lines = self._lines
        if lines is None:
            if rejects is None:
                lines = b""
            elif not rejects.invalid:  # the ledger's only: straight to bytes
                lines = answer_lines(rejects.records, self._offset)
            else:
                lines = reject_lines(rejects.rejects(), self._offset)
            self._lines = lines
            self._rejects = None
        return lines


class Outcome(NamedTuple):
    """What a batch's connection is answered (see :mod:`.protocol`).

    Attributes:
        status: ``"ok"``, ``"already"`` or ``"error"``.
        applied: the batch's entry in the index (``ok``/``already``).
        code, message: of an ``error``.
    """

    status: str
    applied: Applied | None = None
    code: str = ""
    message: str = ""

    @property
    def accepted(self) -> int:
        return self.applied.accepted if self.applied else 0

    @property
    def rejected(self) -> int:
        return self.applied.rejected if self.applied else 0

    @property
    def reject_lines(self) -> bytes:
        return self.applied.reject_lines() if self.applied else b""

    def answer(self, batch_id: str) -> bytes:
        """The bytes sent back: the status line and the reject lines (formatted here, by the caller's
        thread: the server's event loop, while the engine thread commits the next group)."""
        if self.status == "error":
            return error_line(batch_id, self.code, self.message)
        return status_line(self.status, batch_id, self.accepted, self.rejected) + self.reject_lines


class _Fed(NamedTuple):
    key: tuple[str, str]
    sha256: str
    first_line: int  # engine line of the first row
    header_line: int
    rows: int


class Book:
    """The journal, the engine and the index of applied batches; every method runs on the
    one engine thread, one at a time (see the module docstring).

    Args:
        engine: a started engine, fed nothing yet.
        journal: an opened journal, not yet scanned.
    """

    def __init__(self, engine: Engine, journal: Journal) -> None:
        self.engine = engine
        self.journal = journal
        self.applied: dict[tuple[str, str], Applied] = {}
        self.next_line = 2  # engine line of the next row fed (line 1 is the header)
        self.cursor: list[int] | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> tuple[int, int]:
        """Replay the journal into the engine and the index, then make the journal ready.

        Returns:
            ``(batches, rows)`` replayed.

        Raises:
            InputError: the journal is damaged (nothing written to it).
            OSError: a torn tail cannot be cut, or a new journal not written.
        """
        self.engine.feed(CSV_HEADER)
        fed: list[_Fed] = []
        chunk: list[bytes] = []
        chunk_bytes = settle_bytes = 0
        for r in self.journal.records():
            fed.append(_Fed((scope_of(r.principal), r.batch_id), r.sha256, self.next_line, r.header_line, r.rows))
            self.next_line += r.rows_data.count(b"\n")
            chunk.append(r.rows_data)
            chunk_bytes += len(r.rows_data)
            if chunk_bytes >= REPLAY_FEED_BYTES:
                self.engine.feed(b"".join(chunk))
                chunk, settle_bytes, chunk_bytes = [], settle_bytes + chunk_bytes, 0
                if settle_bytes >= REPLAY_SETTLE_BYTES:
                    self._settle(fed, lazy=False)
                    fed, settle_bytes = [], 0
        self.engine.feed(b"".join(chunk))
        self._settle(fed, lazy=False)
        self.journal.ready()
        return self.batches, self.rows

    def commit(self, group: list[Pending]) -> list[Outcome]:
        """Commit a group of batches (see the module docstring); one outcome each, in order.

        Raises:
            JournalBroken: a failed write could not be cut back.
            ProcessDied, RingError: the engine failed (the server stops).
        """
        outcomes: list[Outcome | None] = [None] * len(group)
        first: set[tuple[str, str]] = set()
        new: list[Pending] = []
        where: list[int] = []
        for i, p in enumerate(group):
            done = self.applied.get(p.key)
            if done is not None:
                outcomes[i] = _again(done, p)
            elif p.key not in first:  # a second batch with the key in this group waits for the first
                first.add(p.key)
                new.append(p)
                where.append(i)
        if new:
            now = time.time_ns() // 1_000_000
            data = b"".join(encode_record(p.batch_id, p.principal, now, p.header_line, p.rows, p.sha256,
                                          p.rows_data) for p in new)
            try:
                self.journal.append(data)
            except OSError as err:
                failed = Outcome("error", code="journal", message=(
                    f"cannot write the journal: {err.strerror or err}; nothing was applied, retry later"))
                return [o or failed for o in outcomes]
            fed = []
            for p in new:
                fed.append(_Fed(p.key, p.sha256, self.next_line, p.header_line, p.rows))
                self.next_line += p.lines
            self.engine.feed(b"".join(p.rows_data for p in new) if len(new) > 1 else new[0].rows_data)
            self._settle(fed, lazy=True)
            for i, p in zip(where, new):
                outcomes[i] = Outcome("ok", self.applied[p.key])
        return [o if o is not None else _again(self.applied[p.key], p) for o, p in zip(outcomes, group)]

    def _settle(self, fed: list[_Fed], lazy: bool) -> None:
        """Take the engine's new rejects; enter each fed batch and its result in the index.

        Args:
            lazy: leave the reject lines to be formatted by the first answer (a commit: the
                event loop formats them while this thread goes on); else format them now
                (a replay: lines take less memory than records).
        """
        if not fed:
            return
        raw, self.cursor = self._rejects_since()
        for f, mine in zip(fed, raw.split([f.first_line for f in fed])):
            applied = Applied(f.sha256, f.rows - mine.count, mine.count, mine, f.header_line + 1 - f.first_line)
            if not lazy:
                applied.reject_lines()
            self.applied.setdefault(f.key, applied)
            self.batches += 1
            self.rows += f.rows

    def _rejects_since(self) -> tuple[RawRejects, list[int]]:
        """``Engine.raw_rejects_since``, retried while the process is out of file descriptors
        (it opens each reject spool): the rows are applied, only their results wait."""
        deadline = time.monotonic() + RETRY_SECONDS
        waited = False
        while True:
            try:
                return self.engine.raw_rejects_since(self.cursor)
            except OSError as err:
                if err.errno not in (errno.EMFILE, errno.ENFILE) or time.monotonic() > deadline:
                    raise
                if not waited:
                    log("out of file descriptors reading the engine's rejects: the rows are applied, "
                        f"their answers wait for one (at most {RETRY_SECONDS:g} s)")
                    waited = True
                time.sleep(0.05)

    def snapshot(self) -> bytes:
        """The accounts now, as the batch CLI writes them (header included)."""
        from ..report import HEADER

        return (HEADER + "".join(a.csv_line() for a in self.engine.snapshot())).encode()

    def close(self) -> bytes:
        """End the engine (every row applied); the final accounts as :meth:`snapshot` gives them."""
        from ..report import write_accounts

        out = io.StringIO()
        with self.engine.close() as result:  # the columns, written as the batch CLI writes them
            write_accounts(out, result.accounts)
        return out.getvalue().encode()


def _again(done: Applied, p: Pending) -> Outcome:
    """The outcome of a batch id committed before: its result, or ``conflict`` for other bytes."""
    if done.sha256 == p.sha256:
        return Outcome("already", done)
    return Outcome("error", code="conflict", message=(
        f"batch id {p.batch_id!r} was committed before with other bytes; nothing was applied"))
