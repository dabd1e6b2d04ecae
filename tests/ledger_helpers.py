"""Driving a ledger through its public interface, as a worker does: frames in, raw
reject records and snapshots out. Works for every ledger with that interface.

The two twins (STYLE 12): :func:`twin` gives a ledger class by name, and the
``ledger_cls`` fixture parametrises a test over both, so they cannot drift.
The compiled one is skipped with its reason when it was not built, except
under ``CI=true``, where CI builds it and a missing extension is a failure.
"""

from __future__ import annotations

from array import array

import pytest

from shardpay.codes import REASONS
from shardpay.frames import pack_frame
from shardpay.ledger import REJECT_FIELDS
from tests.conftest import import_compiled

TWINS = ("compiled", "python")
"""The ledger twins' names: ``shardpay._ledger`` and ``shardpay._ledger_py``."""


def twin(name: str) -> type:
    """The ``Ledger`` class of twin ``name``; skips (fails under CI) a compiled one not built."""
    if name == "python":
        from shardpay._ledger_py import Ledger

        return Ledger
    return import_compiled("_ledger", "compiled ledger").Ledger


def built_twins() -> list[type]:
    """Every twin's ``Ledger`` class that can run here, compiled first: both, or the pure
    one alone when the compiled one was not built (a failure under ``CI=true``)."""
    from shardpay._ledger_py import Ledger as Pure

    try:
        return [twin("compiled"), Pure]
    except pytest.skip.Exception:
        return [Pure]


@pytest.fixture(params=TWINS)
def ledger_cls(request) -> type:
    """Each twin's ``Ledger`` class in turn (import it into a test module to use it)."""
    return twin(request.param)


def apply_rows(ledger, rows) -> list[tuple[int, ...]]:
    """Apply ``rows`` ``(line, kind, client, tx, amount)`` as one frame; return the reject
    records it made, ``(line, reason, kind, client, tx, amount, aux)`` each."""
    rows = list(rows)
    cols = [list(c) for c in zip(*rows)] if rows else [[]] * 5
    ledger.apply_frame(pack_frame(cols[0], bytes(cols[1]), cols[2], cols[3], cols[4]))
    ints = array("q", ledger.take_rejects())
    return [tuple(ints[i : i + REJECT_FIELDS]) for i in range(0, len(ints), REJECT_FIELDS)]


def apply_one(ledger, line: int, kind: int, client: int, tx: int, amount: int = 0) -> str | None:
    """Apply one row; return its reject reason, or None if it was accepted."""
    records = apply_rows(ledger, [(line, kind, client, tx, amount)])
    return REASONS[records[0][1]] if records else None


def accounts(ledger) -> dict[int, tuple[int, int, bool]]:
    """Every account of ``ledger``: client -> ``(available, held, locked)``."""
    clients, available, held, locked = ledger.snapshot()
    return {c: (a, h, bool(lk)) for c, a, h, lk in zip(clients, available, held, locked)}


def account(ledger, client: int) -> tuple[int, int, bool]:
    """``(available, held, locked)`` of one client; ``(0, 0, False)`` if it has no account."""
    return ledger.account(client) or (0, 0, False)
