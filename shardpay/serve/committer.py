"""The engine thread: the one thread that touches the engine and the journal, in order.

::

    event loop                          engine thread (Committer.run)
    submit(pending) -> Future  ----->   queue: take one batch, then every batch queued
    call(fn) -> Future         ----->         behind it (up to COMMIT_BYTES): one group
                                        Book.commit(group): write + fsync + feed + results
    Future resolved             <-----  loop.call_soon_threadsafe(...)

The thread groups batches itself, as soon as the previous group is done:
the engine never waits for the event loop to come round (with a thousand
connections talking, it would wait tens of milliseconds a group). Calls
(replay, snapshots, close) run between groups, in the order submitted.
If the engine or the journal fails, the failing group and everything after
it is answered :data:`IN_DOUBT` (the connection closes without an answer)
and ``on_failure`` gets the error, once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from .batches import Book, Outcome, Pending

__all__ = ["COMMIT_BYTES", "IN_DOUBT", "Committer"]

COMMIT_BYTES = 16 * 1024 * 1024
"""Most rows joined into one group (one write + fsync + feed + results). Larger: fewer
fsyncs and engine round trips, longer waits and more memory (bounded by --max-buffer-bytes)."""
IN_DOUBT = Outcome("lost")
"""The outcome of a batch whose commit failed with the server (its record may be in the
journal, to be applied at the next start): no answer, the connection is closed, and the
client, as after any lost connection, sends the batch again."""

_STOP = object()


class _Call:
    __slots__ = ("fn", "args", "fut")

    def __init__(self, fn: Callable[..., Any], args: tuple, fut: asyncio.Future) -> None:
        self.fn, self.args, self.fut = fn, args, fut


class Committer(threading.Thread):
    """The engine thread (see the module docstring).

    Args:
        book: the engine and journal to commit to.
        loop: the event loop the futures belong to.
        on_failure: called on the loop with the error that failed a group.
    """

    def __init__(self, book: Book, loop: asyncio.AbstractEventLoop,
                 on_failure: Callable[[BaseException], None]) -> None:
        super().__init__(name="shardpay-engine", daemon=True)
        self.book = book
        self.loop = loop
        self.on_failure = on_failure
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.in_flight = 0  # batches submitted and not yet resolved (touched on the loop only)
        self.failed: BaseException | None = None

    # -- the event loop's side -------------------------------------------------------------------

    def submit(self, pending: Pending) -> asyncio.Future[Outcome]:
        """Queue a batch for commit; its future gets its :class:`Outcome`."""
        fut: asyncio.Future[Outcome] = self.loop.create_future()
        self.in_flight += 1
        self.inbox.put((pending, fut))
        return fut

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on the engine thread after what is queued; its future gets the result."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.inbox.put(_Call(fn, args, fut))
        return fut

    def stop(self) -> None:
        """End the thread after what is queued."""
        self.inbox.put(_STOP)

    def _resolve(self, group: list[tuple[Pending, asyncio.Future]], outcomes: list[Outcome]) -> None:
        for (_, fut), outcome in zip(group, outcomes):
            self.in_flight -= 1
            if not fut.done():
                fut.set_result(outcome)

    @staticmethod
    def _settle(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    # -- the engine thread -----------------------------------------------------------------------

    def run(self) -> None:
        held: Any = None  # an item taken while grouping that is not a batch: next
        while True:
            item = held if held is not None else self.inbox.get()
            held = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            group = [item]
            size = len(item[0].rows_data)
            while size < COMMIT_BYTES:
                try:
                    nxt = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(nxt, tuple):
                    held = nxt
                    break
                group.append(nxt)
                size += len(nxt[0].rows_data)
            self._commit(group)

    def _run_call(self, call: _Call) -> None:
        result, error = None, self.failed
        if error is None:
            try:
                result = call.fn(*call.args)
            except BaseException as err:  # noqa: BLE001 - handed to the caller's future
                error = err
        self.loop.call_soon_threadsafe(self._settle, call.fut, result, error)

    def _commit(self, group: list[tuple[Pending, asyncio.Future]]) -> None:
        if self.failed is None:
            try:
                outcomes = self.book.commit([p for p, _ in group])
            except BaseException as err:  # noqa: BLE001 - the server stops; the loop reports it
                self.failed = err
                self.loop.call_soon_threadsafe(self.on_failure, err)
        if self.failed is not None:
            outcomes = [IN_DOUBT] * len(group)
        self.loop.call_soon_threadsafe(self._resolve, group, outcomes)
