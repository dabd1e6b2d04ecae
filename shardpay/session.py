"""What the engine drives: one run's processes, whatever carries the shards' frames.

Two transports implement :class:`Session`: :class:`shardpay.local.LocalSession`
(worker processes fed over shared-memory rings, the default) and
:class:`shardpay.ray_backend.RaySession` (Ray actors). The engine
(:mod:`shardpay.engine`) opens one per run, reads its progress while it runs,
and merges what :meth:`Session.wait` returns (:mod:`shardpay.result`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .rejects import Spool

__all__ = ["BACKENDS", "Session"]

BACKENDS = ("local", "ray")
"""The transports, by name: ``local`` worker processes fed over shared-memory
rings (the default, base install), or ``ray`` actors (``pip install 'shardpay[ray]'``)."""


class Session(Protocol):
    """One run's pipeline: reader, decoders, sequencer and shards.

    Made with the input stream to read, or with none: then the bytes come
    through :meth:`feed` (an :class:`shardpay.engine.Engine`).

    Attributes:
        workers: the number of shards.
        decoders: the number of decoders.
        spools: the reject spools, the sequencer's first (invalid rows), then one per shard.
        progress: ``[bytes read, rows read]`` so far, kept current while it runs.
    """

    workers: int
    decoders: int
    spools: list[Spool]
    progress: Sequence[int]

    def feed(self, data: bytes) -> None:
        """Hand the next input bytes to the reader (fed sessions); blocks while it is behind."""

    def mark(self, token: int) -> dict[str, dict]:
        """Pass mark ``token`` behind every row fed so far; the figures at that point of
        each shard (``"worker 0"``, ..., the snapshot among them) and of the
        sequencer (``"sequencer"``: rows and invalid rows so far)."""

    def end(self) -> None:
        """End a fed session's input (a last row without LF counts)."""

    def wait(self, tick: Callable[[], None]) -> dict[str, dict]:
        """Run to the end of the input; every stage's final figures, by name
        (``"reader"``, ``"decoder 0"``, ..., ``"sequencer"``, ``"worker 0"``,
        ...). ``tick`` is called every few tenths of a second while it reads
        and waits (progress, signals)."""

    def close(self) -> None:
        """Stop everything still running and free what the session made; the spools
        too unless :meth:`wait` succeeded. Safe to call twice."""
