"""Ledger reject records to text, in pure Python: the readable twin of ``_render.pyx``.

A worker spools each rejected row as a ledger record of seven i64
``(line, reason, kind, client, tx, amount, aux)`` (:mod:`shardpay.rejects`).
This module holds the one wording of their details, :func:`detail`, which
:func:`shardpay.rejects.render` uses for a :class:`~shardpay.rejects.Reject`,
and :func:`answer_lines`, the same records straight to the
``LINE,REASON,DETAIL`` lines of a ``shardpay serve`` answer.
:mod:`shardpay._render` (Cython) has the same interface and gives the same
bytes (a differential test compares them); :mod:`shardpay.rejects` picks
one (``SHARDPAY_RENDER=python|compiled``, see :func:`shardpay.twins.pick`).
"""

from __future__ import annotations

from typing import Any

from .codes import (
    ACCOUNT_LOCKED,
    ALREADY_DISPUTED,
    CHARGED_BACK,
    DUPLICATE_TX,
    INSUFFICIENT_FUNDS,
    NOT_DISPUTABLE,
    NOT_DISPUTED,
    OVERFLOW,
    KIND_NAMES,
    REASONS,
    UNKNOWN_TX,
    WITHDRAWAL,
    WITHDRAWN,
)
from ._rejects_csv_py import csv_rows
from .money import format_units

__all__ = ["answer_lines", "csv_lines", "detail"]


_WORDS = {  # a reason's detail: a template over the record's fields
    DUPLICATE_TX: "tx {tx} was already used by an earlier deposit or withdrawal",
    ACCOUNT_LOCKED: "account {client} is locked by a chargeback",
    INSUFFICIENT_FUNDS: "available {available} is less than {amount}",
    UNKNOWN_TX: "client {client} has no accepted deposit or withdrawal with tx {tx} before this line",
    NOT_DISPUTABLE: "tx {tx} is a withdrawal; only deposits can be disputed",
    ALREADY_DISPUTED: "tx {tx} is already under dispute",
    NOT_DISPUTED: "tx {tx} is not under dispute",
    OVERFLOW: "a balance would leave the signed 64-bit range of 1/10,000 units",
}
_WORDS_IN_STATE = {  # (reason, the stored state in aux): its detail instead
    (ALREADY_DISPUTED, CHARGED_BACK): "tx {tx} was charged back",
    (NOT_DISPUTED, WITHDRAWN): "tx {tx} is a withdrawal",
}


def detail(reason: int, client: int, tx: int, amount: int, aux: int) -> str:
    """What was wrong with a row the ledger rejected (the ``detail`` of its Reject).

    Args:
        reason: index into :data:`shardpay.codes.REASONS`. client, tx: ids.
        amount: 1/10,000 units (0 for dispute, resolve, chargeback).
        aux: the available balance for ``insufficient_funds`` (units), the
            stored state for ``already_disputed``/``not_disputed``, else 0.

    Returns:
        The detail; empty for a reason without one.
    """
    if reason == INSUFFICIENT_FUNDS:
        return _WORDS[reason].format(available=format_units(aux), amount=format_units(amount))
    words = _WORDS_IN_STATE.get((reason, aux)) or _WORDS.get(reason, "")
    return words.format(client=client, tx=tx)


def answer_lines(records: Any, offset: int) -> bytes:
    """Ledger records as the reject lines of a ``shardpay serve`` answer.

    Args:
        records: a C-contiguous int64 array of shape ``(n, 7)`` (numpy), one
            ledger record a row, in the order the lines are wanted.
        offset: added to each record's line (engine line to batch line).

    Returns:
        ``LINE,REASON,DETAIL\\n`` a record, ASCII: the bytes
        :func:`shardpay.serve.protocol.reject_lines` gives for their
        :func:`shardpay.rejects.render`.

    Raises:
        ValueError: a record's reason is not an index of :data:`shardpay.codes.REASONS`.
    """
    out = []
    for line, reason, _kind, client, tx, amount, aux in records.tolist():
        if not 0 <= reason < len(REASONS):
            raise ValueError(f"line {line}: reason code {reason} is not one of 0..{len(REASONS) - 1}")
        out.append(f"{line + offset},{REASONS[reason]},{detail(reason, client, tx, amount, aux)}\n")
    return "".join(out).encode("ascii")


def csv_lines(records: Any) -> bytes:
    """Ledger records as rows of the ``--rejects`` CSV.

    Args:
        records: a C-contiguous int64 array of shape ``(n, 7)`` (numpy), one
            ledger record a row, in the order the rows are wanted.

    Returns:
        ``line,type,client,tx,amount,reason,detail\n`` a record, ASCII: the
        bytes :func:`shardpay._rejects_csv_py.csv_rows` gives for their
        :func:`shardpay.rejects.render` (the amount with four decimals for a
        deposit or withdrawal, else empty; a detail with a comma quoted).

    Raises:
        ValueError: a record's reason is not an index of
            :data:`shardpay.codes.REASONS`, or its kind not one of
            :data:`shardpay.codes.KIND_NAMES`.
    """
    rows = []
    for line, reason, kind, client, tx, amount, aux in records.tolist():
        if not 0 <= reason < len(REASONS):
            raise ValueError(f"line {line}: reason code {reason} is not one of 0..{len(REASONS) - 1}")
        if not 0 <= kind < len(KIND_NAMES):
            raise ValueError(f"line {line}: kind code {kind} is not one of 0..{len(KIND_NAMES) - 1}")
        rows.append((line, KIND_NAMES[kind], str(client), str(tx), format_units(amount) if kind <= WITHDRAWAL else "",
                     REASONS[reason], detail(reason, client, tx, amount, aux)))
    return csv_rows(rows).encode("ascii")
