"""The journal of ``shardpay serve``: every committed batch, in commit order, each checked by a CRC.

Layout (``docs/serve.md`` shows an example)::

    shardpay journal 1\\n                                          the first line: what the file is
    batch ID PRINCIPAL TIME_MS HEADER_LINE ROWS SIZE SHA256 CRC32\\n   one record a batch:
    SIZE bytes: the batch's rows, each ending in LF                  its line, then its rows

* ``ID``: the client's batch id. ``PRINCIPAL``: ``NAME@HOST``, the token
  name (``-`` without ``--token-file``) and the peer's address.
  ``TIME_MS``: when it was committed, Unix milliseconds.
* ``HEADER_LINE``: the line number of the CSV header in the batch as sent
  (0: the batch had no header, so no rows); the rows follow it.
  ``ROWS``: its non-empty rows. ``SIZE``: the byte length of the rows.
* ``SHA256``: of the batch's bytes as the client sent them (header
  included): a retry must send exactly these to get ``already``.
* ``CRC32``: ``zlib.crc32`` of the record line up to the space before it,
  then of the rows: any damaged byte of a record is found.

The header ``type,client,tx,amount`` followed by every record's rows is the
CSV stream the server's engine was fed, so engine line ``L`` of a batch whose
rows start at engine line ``F`` is line ``L - F + HEADER_LINE + 1`` of the
batch as its client sent it. ``shardpay journal export`` writes that CSV.

**Opening** takes an exclusive ``flock`` (a second server on the same file
stops at once), then reads the first line: a file that is not empty and not
a journal is refused before anything is written to it. **Scanning** checks
every record; a last record cut short (or with a wrong CRC) is a *torn tail*,
written when the server died, never acknowledged: it is cut. A bad record
with more after it is *damage*: the start stops, naming the offset.
**Appending** writes a group of records, then ``fsync``; when a write or the
sync fails (a full disk), the file is cut back to the last whole group and
the error goes to the caller, which answers those batches ``journal``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import stat
import sys
import time
import zlib
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from ..errors import InputError, ShardpayError
from .files import FILE_MODE, fsync_folder, write_atomically

__all__ = ["CSV_HEADER", "MAGIC", "Journal", "JournalBroken", "Record", "encode_record", "main", "read_journal"]

MAGIC = b"shardpay journal 1\n"
"""The first line of every journal: the format and its version."""
CSV_HEADER = b"type,client,tx,amount\n"
"""The header the records' rows follow (in the engine, and in an export)."""
MAX_RECORD_LINE = 1024
"""Longest record line: ids, names and addresses are bounded well below it."""
SCAN_BUFFER = 1 << 20
"""Read buffer of a scan: the rows of most batches in one read."""

_FIELD = {
    "id": re.compile(rb"[A-Za-z0-9._:-]{1,128}"),
    "principal": re.compile(rb"[!-~]{1,300}"),
    "number": re.compile(rb"\d{1,18}"),
    "sha256": re.compile(rb"[0-9a-f]{64}"),
    "crc32": re.compile(rb"[0-9a-f]{8}"),
}
_KINDS = ("id", "principal", "number", "number", "number", "number", "sha256", "crc32")


class JournalBroken(ShardpayError):
    """The journal could not be cut back after a failed write: its end is unknown, so the server stops."""


class Record(NamedTuple):
    """One committed batch, as the journal holds it (see the module docstring for each field).

    Attributes:
        offset: where its record line starts in the file, bytes.
        rows_data: its rows, each ending in LF.
    """

    batch_id: str
    principal: str
    time_ms: int
    header_line: int
    rows: int
    sha256: str
    rows_data: bytes
    offset: int


def encode_record(batch_id: str, principal: str, time_ms: int, header_line: int, rows: int, sha256: str,
                  rows_data: bytes) -> bytes:
    """The bytes of one record: its line (with the CRC32) and its rows."""
    head = f"batch {batch_id} {principal} {time_ms} {header_line} {rows} {len(rows_data)} {sha256}".encode()
    return b"%s %08x\n%s" % (head, zlib.crc32(rows_data, zlib.crc32(head)), rows_data)


class _Scan:
    """Iterate over the whole records of a journal file from ``start``; afterwards
    :attr:`end` is the offset just past the last good one and :attr:`torn` the
    bytes of a torn tail after it (0 if none).

    Raises (while iterating):
        InputError: a bad record with more bytes after it (damage), naming its offset.
    """

    def __init__(self, f: BinaryIO, path: str, start: int, size: int) -> None:
        self.f, self.path, self.size = f, path, size
        self.end = start
        self.torn = 0

    def _damage(self, offset: int, what: str) -> InputError:
        return InputError(f"the journal {self.path!r} is damaged at offset {offset}: {what}; nothing was "
                          f"written to it (see docs/serve.md, 'A damaged journal')")

    def _no_lf_until_end(self) -> bool:
        """Whether no LF follows the file's position: a record line cut by the end of the file."""
        while data := self.f.read(SCAN_BUFFER):
            if b"\n" in data:
                return False
        return True

    def __iter__(self) -> Iterator[Record]:
        f, size = self.f, self.size
        f.seek(self.end)
        pos = self.end
        while pos < size:
            line = f.readline(MAX_RECORD_LINE)
            if not line.endswith(b"\n"):
                if self._no_lf_until_end():  # the file ends inside the record line
                    break
                raise self._damage(pos, f"no record line ends within {MAX_RECORD_LINE} bytes")
            fields = line[:-1].split(b" ")
            if len(fields) != 9 or fields[0] != b"batch" or not all(
                    _FIELD[kind].fullmatch(value) for kind, value in zip(_KINDS, fields[1:])):
                raise self._damage(pos, f"not a batch record: {line[:60]!r}")
            body_size = int(fields[6])
            end = pos + len(line) + body_size
            if end > size:  # the rows are cut short
                break
            rows_data = f.read(body_size)
            crc = zlib.crc32(rows_data, zlib.crc32(line[: line.rindex(b" ")]))
            if len(rows_data) != body_size or crc != int(fields[8], 16):
                if end >= size:  # the last record: torn by a crash during its write
                    break
                raise self._damage(pos, "the CRC32 of the record does not match its bytes")
            yield Record(fields[1].decode(), fields[2].decode(), int(fields[3]), int(fields[4]), int(fields[5]),
                         fields[7].decode(), rows_data, pos)
            pos = self.end = end
        self.torn = size - self.end


def _check_magic(fd: int, path: str, size: int) -> bool:
    """Whether the file holds a journal (False: it is empty, or a torn first line).

    Raises:
        InputError: it is something else (nothing is written to it).
    """
    head = os.pread(fd, 80, 0)
    if head.startswith(MAGIC):
        return True
    if size < len(MAGIC) and MAGIC.startswith(head):
        return False
    first = head.split(b"\n", 1)[0][:40].decode("utf-8", "backslashreplace")
    raise InputError(f"{path!r} is not a shardpay journal (it starts with {first!r}, not "
                     f"{MAGIC.decode().strip()!r}); nothing was written to it")


class Journal:
    """The server's journal file: locked, checked, replayed, appended to (see the module docstring).

    Args:
        path: the journal file; created (mode ``0600``) if missing.
        fsync: ``fsync`` after each appended group (``--no-fsync``: only the OS's cache).

    Raises:
        ShardpayError: another process holds the journal's lock, or it is not a regular file.
        InputError: the file is not a journal.
        OSError: it cannot be opened.
    """

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ShardpayError(f"the journal {path!r} is in use by another shardpay serve "
                                    "(it holds the file's lock)") from None
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise ShardpayError(f"the journal {path!r} is not a regular file")
            self.size = st.st_size
            self.new = not _check_magic(self.fd, path, self.size)
            self.end = 0 if self.new else len(MAGIC)
            self.torn = 0
        except BaseException:
            os.close(self.fd)
            raise

    def records(self) -> Iterator[Record]:
        """Every whole record, in order; afterwards :attr:`end` and :attr:`torn` are set.

        Raises:
            InputError: damage in the middle (its offset named).
        """
        if self.new:
            return
        with open(self.fd, "rb", buffering=SCAN_BUFFER, closefd=False) as f:
            scan = _Scan(f, self.path, len(MAGIC), self.size)
            yield from scan
            self.end, self.torn = scan.end, scan.torn

    def ready(self) -> None:
        """After :meth:`records`: cut a torn tail (or start a new file), make the file
        ``0600``, and make it durable. Nothing is written before this.

        Raises:
            OSError: the file cannot be written.
        """
        if self.new:
            os.ftruncate(self.fd, 0)
            self._write(MAGIC, 0)
            os.fsync(self.fd)
            fsync_folder(self.path)
            self.end = len(MAGIC)
        elif self.torn:
            os.ftruncate(self.fd, self.end)
            os.fsync(self.fd)
        os.fchmod(self.fd, FILE_MODE)
        self.new = False

    def _write(self, data: bytes, offset: int) -> None:
        with memoryview(data) as view:
            while view:
                n = os.pwrite(self.fd, view, offset)
                offset += n
                view = view[n:]

    def append(self, data: bytes) -> None:
        """Write whole records at the end, then ``fsync``: on return they are durable.

        Raises:
            OSError: a write or the sync failed (a full disk): the file is cut back to
                where it was, so none of ``data`` stays.
            JournalBroken: and the cut back failed too.
        """
        try:
            self._write(data, self.end)
            if self.fsync:
                os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, self.end)
                os.fsync(self.fd)
            except OSError as err:
                raise JournalBroken(f"the journal {self.path!r} cannot be cut back to its last whole batch "
                                    f"after a failed write: {err.strerror or err}") from None
            raise
        self.end += len(data)

    def close(self) -> None:
        """Release the lock and the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_journal(path: str) -> tuple[Iterator[Record], _Scan]:
    """Read a journal without locking it (a running server's too): its records, and the scan
    whose :attr:`~_Scan.torn` says, once they are read, how many bytes of a last record were
    left out (still being written, or torn).

    Raises:
        InputError: it cannot be opened, is not a journal, or is damaged.
    """
    try:
        f = open(path, "rb", buffering=SCAN_BUFFER)  # noqa: SIM115 - closed when the records are read
    except OSError as err:
        raise InputError(f"cannot read {path!r}: {err.strerror or err}") from None
    size = os.fstat(f.fileno()).st_size
    try:
        is_journal = _check_magic(f.fileno(), path, size)
    except BaseException:
        f.close()
        raise
    scan = _Scan(f, path, len(MAGIC) if is_journal else size, size)

    def records() -> Iterator[Record]:
        with f:
            yield from scan

    return records(), scan


def main(argv: list[str]) -> int:
    """``shardpay journal export|list JOURNAL``: the applied rows as one CSV, or the batches.

    Raises:
        ShardpayError: the journal cannot be read or is damaged, or the output cannot be written.
    """
    p = argparse.ArgumentParser(
        prog="shardpay journal",
        description="Read a shardpay serve journal (a running server's too: its batches so far).",
        epilog=("examples:\n"
                "  shardpay journal export tx.journal -o tx.csv && shardpay tx.csv   # the server's balances\n"
                "  shardpay journal list tx.journal                                # who sent what, when"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="every applied row as one CSV: the header, then each batch's rows")
    export.add_argument("journal", metavar="JOURNAL")
    export.add_argument("-o", "--output", metavar="OUT", help="write to OUT (mode 0600, atomically); default stdout")
    listing = sub.add_parser("list", help="one CSV line a batch: offset,batch,principal,time,rows,bytes")
    listing.add_argument("journal", metavar="JOURNAL")
    a = p.parse_args(argv)
    records, scan = read_journal(a.journal)
    if a.command == "export":
        chunks: Iterator[bytes] = _export(records)
    else:
        chunks = _listing(records)
    if a.command == "export" and a.output:
        write_atomically(a.output, chunks)
    else:
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
    if scan.torn:
        sys.stderr.write(f"shardpay journal: left out {scan.torn} bytes at offset {scan.end}: a last batch "
                         "still being written, or torn (never acknowledged)\n")
    return 0


def _export(records: Iterator[Record]) -> Iterator[bytes]:
    yield CSV_HEADER
    for r in records:
        yield r.rows_data


def _listing(records: Iterator[Record]) -> Iterator[bytes]:
    yield b"offset,batch,principal,time,rows,bytes\n"
    for r in records:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r.time_ms / 1000)) + f".{r.time_ms % 1000:03d}Z"
        yield f"{r.offset},{r.batch_id},{r.principal},{when},{r.rows},{len(r.rows_data)}\n".encode()
