"""Driving a ledger through its public interface, as a worker does: frames in, raw
reject records and snapshots out. Works for every ledger with that interface."""

from __future__ import annotations

from array import array

from shardpay.codes import REASONS
from shardpay.frames import pack_frame
from shardpay.ledger import REJECT_FIELDS


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
