"""Durable files of the server: written whole, owner-only, on disk before they take their name.

The batch CLI's outputs (:func:`shardpay.report.atomic_output`) are atomic;
a server's snapshot must also survive a power cut the moment it is in place,
and it lists every client's balance, so it is private to the server's user.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable

from ..errors import OutputError

__all__ = ["FILE_MODE", "fsync_folder", "write_atomically"]

FILE_MODE = 0o600
"""Mode of the journal, snapshots and exports: they hold every client's money."""


def fsync_folder(path: str) -> None:
    """``fsync`` the folder holding ``path``, so that a new name in it survives a power cut.

    Raises:
        OSError: the folder cannot be opened or synced.
    """
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to ``path``: a temporary file (mode :data:`FILE_MODE`) in the same
    folder, written, ``fsync``-ed, renamed over ``path``, then the folder ``fsync``-ed.

    A crash at any point leaves ``path`` as it was or whole with the new bytes.

    Returns:
        The bytes written.

    Raises:
        OutputError: the folder is not writable, or a write, sync or rename fails
            (the temporary file is removed; ``path`` is untouched).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from None
    size = 0
    try:
        with open(fd, "wb") as f:
            os.fchmod(fd, FILE_MODE)
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(fd)
        os.replace(tmp, path)
        fsync_folder(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path!r}: {err.strerror or err}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size
