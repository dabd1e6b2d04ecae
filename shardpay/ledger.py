"""The ledger of one shard: the compiled core, or its pure-Python twin.

Two modules with one interface, the same rejects and the same bytes out
(SPEC "Accounts", "Transactions"):

* :mod:`shardpay._ledger` (``_ledger.pyx``, Cython): the one that runs
  wherever ``pip install .`` could compile it;
* :mod:`shardpay._ledger_py`: pure Python, the fallback and the readable twin.

This module picks one when it is first imported and re-exports it:
``SHARDPAY_LEDGER=python`` forces the pure twin, ``SHARDPAY_LEDGER=compiled``
the compiled one (an ``ImportError`` if it was not built); unset or empty,
the compiled one if it imports, else the pure one (:func:`shardpay.twins.pick`).
:data:`LEDGER` says which.

Interface (both twins): ``Ledger()``; ``apply_frame(frame) -> int`` (a data
frame of :mod:`shardpay.frames`, any bytes-like; the rows it rejected;
``ValueError`` for a malformed frame, checked before any row is applied);
``take_rejects() -> bytes`` (the held rejects as records of
:data:`REJECT_FIELDS` native int64, in line order, then released);
``rejects_held()``; ``account(client)``; ``snapshot()``; ``stored()``;
``applied``.
"""

from __future__ import annotations

from .twins import pick

__all__ = ["ENV", "LEDGER", "REJECT_FIELDS", "Ledger", "check_frame"]

ENV = "SHARDPAY_LEDGER"
"""The environment variable that picks the ledger: ``python``, ``compiled``, or unset."""

_twin, LEDGER = pick("ledger", ENV)
"""Which twin runs: ``"compiled"`` or ``"python"``."""
REJECT_FIELDS, Ledger, check_frame = _twin.REJECT_FIELDS, _twin.Ledger, _twin.check_frame
