"""The codes every stage shares: row kinds, reject reasons, stored states.

Small integers, so that a row or a reject travels as plain ints (in frames,
in reject spools) and turns into text only where a user sees it.

* **Kinds** (SPEC "Transactions"): what a decoded row is. The reader adds
  :data:`DUPLICATE` to the kind of a deposit or withdrawal whose tx id was
  already claimed, so its worker rejects it as ``duplicate_tx``.
* **Reasons** (SPEC "Transactions", the reason codes): in SPEC's order of
  precedence, so that the first reason that applies to a row is the lowest
  code that applies.
* **Stored states**: what a worker remembers of an accepted deposit or
  withdrawal, the state machine of disputes.
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_LOCKED",
    "ALREADY_DISPUTED",
    "CHARGEBACK",
    "CHARGED_BACK",
    "DEPOSIT",
    "DISPUTE",
    "DISPUTED",
    "DUPLICATE",
    "DUPLICATE_TX",
    "INSUFFICIENT_FUNDS",
    "INVALID_ROW",
    "KIND_NAMES",
    "NOT_DISPUTABLE",
    "NOT_DISPUTED",
    "OVERFLOW",
    "REASONS",
    "RESOLVE",
    "SETTLED",
    "UNKNOWN_TX",
    "WITHDRAWAL",
    "WITHDRAWN",
]

KIND_NAMES = ("deposit", "withdrawal", "dispute", "resolve", "chargeback")
"""The ``type`` field's values, indexed by kind code."""
DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK = range(len(KIND_NAMES))
"""Kind codes. ``kind <= WITHDRAWAL`` is a row that carries money and claims its tx id."""
DUPLICATE = 8
"""Added to the kind of a deposit or withdrawal whose tx id an earlier row claimed."""

REASONS = (
    "invalid_row",
    "duplicate_tx",
    "account_locked",
    "insufficient_funds",
    "unknown_tx",
    "not_disputable",
    "already_disputed",
    "not_disputed",
    "overflow",
)
"""SPEC reason codes, in SPEC's order of precedence; a reject carries the index."""
(
    INVALID_ROW,
    DUPLICATE_TX,
    ACCOUNT_LOCKED,
    INSUFFICIENT_FUNDS,
    UNKNOWN_TX,
    NOT_DISPUTABLE,
    ALREADY_DISPUTED,
    NOT_DISPUTED,
    OVERFLOW,
) = range(len(REASONS))

SETTLED, DISPUTED, CHARGED_BACK, WITHDRAWN = range(4)
"""Stored states: a deposit is ``SETTLED`` (disputable), ``DISPUTED`` (its amount
held), or ``CHARGED_BACK`` (for good); an accepted withdrawal is ``WITHDRAWN``
(never disputable)."""
