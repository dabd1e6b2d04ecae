"""The wire protocol of ``shardpay serve``, version 1: every request and answer line, built and parsed.

One connection, in order (``->`` client to server, ``<-`` server to client;
every line ends in LF; ``docs/serve.md`` has the same with examples)::

    -> auth NAME TOKEN                  only when the server has --token-file; first
    -> batch ID SIZE                    a batch: its id, then SIZE bytes of CSV
    -> SIZE bytes                       its own header first, then rows (any line ends)
    -> commit LINES CRC32               the batch ends: its line count and checksum
    <- ok ID accepted=N rejected=M      applied now (or: already ID ..., applied before)
    <- LINE,REASON,DETAIL               M lines: each rejected row of the batch
    -> batch ID SIZE ...                more batches, or close
    <- error ID CODE: MESSAGE           instead of an answer: nothing applied; the server closes

* ``ID``: 1..128 characters of ``A-Z a-z 0-9 . _ : -``, chosen by the client
  (``-`` in an error line when no id is known yet).
* ``SIZE``: the byte length of the CSV that follows, decimal.
* ``LINES``: the number of lines of those bytes (LF bytes, plus one if the
  last line has no LF); ``CRC32``: their ``zlib.crc32``, 8 lowercase hex digits.
* ``LINE`` in an answer is the row's line number in the batch's own bytes
  (its header is line 1 unless empty lines precede it), as ``shardpay FILE``
  numbers a file holding them.

Nothing in this module touches a socket; :mod:`.server` and :mod:`.client`
do, and both speak through these functions.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "ERROR_CODES",
    "MAX_REQUEST_LINE",
    "PROTOCOL_VERSION",
    "Auth",
    "Batch",
    "BatchResult",
    "Commit",
    "ProtocolError",
    "RowReject",
    "auth_line",
    "batch_request",
    "checksum",
    "count_lines",
    "default_batch_id",
    "error_line",
    "is_batch_id",
    "parse_answer_line",
    "parse_reject_line",
    "parse_request",
    "reject_line",
    "reject_lines",
    "status_line",
]

PROTOCOL_VERSION = 1
"""The version this module speaks (``docs/serve.md``)."""
MAX_REQUEST_LINE = 1024
"""Longest request line, LF included: ``auth`` with a long token fits many times over."""
ERROR_CODES = (
    "auth",        # no token, an unknown name or a wrong token; or a token sent to a server without tokens
    "protocol",    # a malformed or unexpected request line
    "too_large",   # SIZE is over the server's --max-batch-bytes
    "busy",        # too many connections, or no room in the server's buffer within --idle-timeout
    "timeout",     # nothing read for --idle-timeout seconds
    "checksum",    # LINES or CRC32 differ from the bytes received
    "bad_header",  # the batch's first non-empty line is not the header
    "conflict",    # the batch id was committed before with other bytes
    "journal",     # the journal could not be written (a full disk): retry the batch later
    "stopping",    # the server is shutting down
)
"""The ``CODE`` of an ``error`` line. After any of them nothing of the batch is applied."""

_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_STATUS = re.compile(rb"(ok|already) (\S+) accepted=(\d+) rejected=(\d+)\n")
_ERROR = re.compile(rb"error (\S+) ([a-z_]+): (.*)\n")
_SAFE = str.maketrans({"\n": "\\n", "\r": "\\r"})


class ProtocolError(Exception):
    """A request or answer that breaks this protocol.

    Attributes:
        code: one of :data:`ERROR_CODES` (what the server answers).
        message: one line for the other side.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Auth(NamedTuple):
    """``auth NAME TOKEN``."""

    name: str
    token: str


class Batch(NamedTuple):
    """``batch ID SIZE``."""

    batch_id: str
    size: int


class Commit(NamedTuple):
    """``commit LINES CRC32``."""

    lines: int
    crc32: int


def _number(text: bytes, what: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise ProtocolError("protocol", f"{what} {text.decode('ascii', 'replace')!r} is not a whole number")
    return int(text)


def parse_request(line: bytes) -> Auth | Batch | Commit:
    """Parse one request line (``auth``, ``batch`` or ``commit``).

    Args:
        line: the line as read, LF included.

    Returns:
        The request.

    Raises:
        ProtocolError: ``protocol``: anything else (the message says what was expected).
    """
    words = line.rstrip(b"\r\n").split(b" ")
    verb = words[0]
    if verb == b"batch" and len(words) == 3:
        batch_id = words[1].decode("ascii", "replace")
        if not _ID.fullmatch(batch_id):
            raise ProtocolError("protocol", f"batch id {batch_id!r} is not 1..128 of A-Z a-z 0-9 . _ : -")
        return Batch(batch_id, _number(words[2], "SIZE"))
    if verb == b"commit" and len(words) == 3:
        crc = words[2].decode("ascii", "replace")
        if not re.fullmatch(r"[0-9a-f]{8}", crc):
            raise ProtocolError("protocol", f"CRC32 {crc!r} is not 8 lowercase hex digits")
        return Commit(_number(words[1], "LINES"), int(crc, 16))
    if verb == b"auth" and len(words) == 3:
        name = words[1].decode("ascii", "replace")
        if not _NAME.fullmatch(name):
            raise ProtocolError("auth", "the token name is not 1..64 of A-Z a-z 0-9 . _ -")
        return Auth(name, words[2].decode("ascii", "replace"))
    shown = line[:40].decode("ascii", "backslashreplace").rstrip("\n")
    raise ProtocolError("protocol", f"expected 'auth NAME TOKEN', 'batch ID SIZE' or 'commit LINES CRC32', "
                                    f"found {shown!r}")


def is_batch_id(text: str) -> bool:
    """Whether ``text`` may be a batch id (1..128 of ``A-Z a-z 0-9 . _ : -``)."""
    return bool(_ID.fullmatch(text))


def count_lines(body: bytes) -> int:
    """``LINES`` of a batch: its LF bytes, plus one when the last line has no LF."""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def checksum(body: bytes) -> int:
    """``CRC32`` of a batch: ``zlib.crc32`` of its bytes."""
    return zlib.crc32(body)


def default_batch_id(body: bytes) -> str:
    """The batch id ``shardpay send`` uses when given none: derived from the bytes alone,
    so sending the same file again is a retry (``sha256-`` and 32 hex digits)."""
    return "sha256-" + hashlib.sha256(body).hexdigest()[:32]


def auth_line(name: str, token: str) -> bytes:
    """``auth NAME TOKEN``."""
    return f"auth {name} {token}\n".encode("ascii")


def batch_request(batch_id: str, body: bytes) -> bytes:
    """One whole batch request: ``batch ID SIZE``, the bytes, ``commit LINES CRC32``.

    Raises:
        ValueError: ``batch_id`` is not a valid id.
    """
    if not is_batch_id(batch_id):
        raise ValueError(f"batch id {batch_id!r} is not 1..128 of A-Z a-z 0-9 . _ : -")
    return b"".join((f"batch {batch_id} {len(body)}\n".encode("ascii"), body,
                     f"commit {count_lines(body)} {checksum(body):08x}\n".encode("ascii")))


def status_line(status: str, batch_id: str, accepted: int, rejected: int) -> bytes:
    """``ok|already ID accepted=N rejected=M``."""
    return f"{status} {batch_id} accepted={accepted} rejected={rejected}\n".encode("ascii")


def reject_line(line: int, reason: str, detail: str) -> bytes:
    """``LINE,REASON,DETAIL``: DETAIL is the rest of the line (CR and LF escaped)."""
    return f"{line},{reason},{detail.translate(_SAFE)}\n".encode("utf-8", "backslashreplace")


def reject_lines(rejects: Iterable[tuple], offset: int = 0) -> bytes:
    """:func:`reject_line` of many rejects at once (one join, one encode).

    Args:
        rejects: :class:`shardpay.Reject` records, or any tuples
            ``(line, type, client, tx, amount, reason, detail)``.
        offset: added to each line number (engine line to batch line).
    """
    rows = rejects if isinstance(rejects, list) else list(rejects)
    text = "".join([f"{line + offset},{reason},{detail}\n" for line, _, _, _, _, reason, detail in rows])
    if "\r" in text or text.count("\n") != len(rows):  # a CR or LF inside a detail: escape them
        return b"".join(reject_line(r[0] + offset, r[5], r[6]) for r in rows)
    return text.encode("utf-8", "backslashreplace")


def error_line(batch_id: str | None, code: str, message: str) -> bytes:
    """``error ID CODE: MESSAGE`` (``-`` for no id)."""
    return f"error {batch_id or '-'} {code}: {message.translate(_SAFE)}\n".encode("utf-8", "backslashreplace")


class RowReject(NamedTuple):
    """One rejected row of a batch, as answered.

    Attributes:
        line: its line number in the batch's bytes (1-based; the header is line 1
            unless empty lines precede it).
        reason: the SPEC reason code, e.g. ``"insufficient_funds"``.
        detail: what was wrong.
    """

    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        """``line N: REASON: detail``, as ``shardpay FILE`` logs a reject."""
        return f"line {self.line}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class BatchResult:
    """The answer to a committed batch.

    Attributes:
        batch_id: the batch's id.
        status: ``"ok"`` (applied now) or ``"already"`` (applied before, by an
            earlier send of the same bytes: nothing applied now; the original result).
        accepted: rows applied (SPEC: every non-empty line after the header is a row).
        rejected: rows rejected, each in :attr:`rejects`.
        rejects: the rejected rows in line order.
    """

    batch_id: str
    status: str
    accepted: int
    rejected: int
    rejects: list[RowReject] = field(default_factory=list)


def parse_answer_line(line: bytes) -> tuple[str, str, int, int]:
    """Parse an answer's first line.

    Returns:
        ``(status, batch id, accepted, rejected)`` for ``ok``/``already``.

    Raises:
        ProtocolError: an ``error`` line (its code and message), or a line that is no answer
            (code ``protocol``).
    """
    m = _STATUS.fullmatch(line)
    if m:
        return m[1].decode(), m[2].decode(), int(m[3]), int(m[4])
    m = _ERROR.fullmatch(line)
    if m:
        raise ProtocolError(m[2].decode(), m[3].decode("utf-8", "replace"))
    shown = line[:60].decode("utf-8", "backslashreplace").rstrip("\n")
    raise ProtocolError("protocol", f"the server's answer {shown!r} is not a protocol {PROTOCOL_VERSION} answer")


def parse_reject_line(line: bytes) -> RowReject:
    """Parse one ``LINE,REASON,DETAIL`` line of an answer.

    Raises:
        ProtocolError: ``protocol``: it is not one.
    """
    parts = line.rstrip(b"\n").decode("utf-8", "replace").split(",", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        raise ProtocolError("protocol", f"{line[:60]!r} is not a LINE,REASON,DETAIL line")
    return RowReject(int(parts[0]), parts[1], parts[2])
