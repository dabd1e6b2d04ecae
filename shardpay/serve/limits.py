"""What keeps a server's memory and its log bounded: the shared batch buffer, the rate-limited log.

:class:`Buffer` counts the bytes of every batch being received or waiting
for its commit, across all connections (``--max-buffer-bytes``): a batch
takes its size at its ``batch`` line and gives it back with its answer. A
batch that does not fit waits in line (first come, first served) up to
``--idle-timeout``, then is answered ``busy``. :class:`RateLog` writes at most
one line a second of each kind, so a flood (failed logins, a full file
table) costs a few lines, with a count, never megabytes of stderr.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time

__all__ = ["Buffer", "RateLog", "log"]


def log(message: str) -> None:
    """One line on stderr, ``shardpay serve: message``."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"shardpay serve: {message}\n")
        sys.stderr.flush()


class RateLog:
    """:func:`log`, at most one line a second of each kind; the lines dropped are counted on the next."""

    def __init__(self) -> None:
        self.last: dict[str, list[float]] = {}

    def __call__(self, kind: str, message: str) -> None:
        """Log ``message`` unless a line of ``kind`` was logged less than a second ago."""
        now = time.monotonic()
        seen = self.last.get(kind)
        if seen is not None and now - seen[0] < 1.0:
            seen[1] += 1
            return
        more = f" (and {int(seen[1])} more like it)" if seen and seen[1] else ""
        self.last[kind] = [now, 0]
        log(message + more)


class Buffer:
    """Bytes shared by every connection's batch (see the module docstring). Event loop only.

    Args:
        size: the bytes in all, ``--max-buffer-bytes``.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, size: int, timeout: float) -> bool:
        """Take ``size`` bytes, waiting in line up to ``timeout`` seconds; False if they did not come."""
        if not self.waiters and size <= self.free:
            self.free -= size
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((size, fut))
        try:
            async with asyncio.timeout(timeout):
                await fut
        except BaseException as err:
            if fut.done() and not fut.cancelled():  # granted just as the wait ended: give it back
                self.give(size)
            fut.cancel()
            if isinstance(err, TimeoutError):
                return False
            raise
        return True

    def give(self, size: int) -> None:
        """Give back ``size`` bytes; waiters in line get them, first come first served."""
        self.free += size
        while self.waiters and (self.waiters[0][1].done() or self.waiters[0][0] <= self.free):
            wanted, fut = self.waiters.popleft()
            if not fut.done():
                self.free -= wanted
                fut.set_result(None)
