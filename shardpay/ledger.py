"""The ledger of one shard: the compiled core, or its pure-Python twin.

Two modules with one interface, the same rejects and the same bytes out
(SPEC "Accounts", "Transactions"):

* :mod:`shardpay._ledger` (``_ledger.pyx``, Cython): the one that runs
  wherever ``pip install .`` could compile it;
* :mod:`shardpay._ledger_py`: pure Python, the fallback and the readable twin.

This module picks one when it is first imported and re-exports it:
``SHARDPAY_LEDGER=python`` forces the pure twin, ``SHARDPAY_LEDGER=compiled``
the compiled one (an ``ImportError`` if it was not built); unset or empty,
the compiled one if it imports, else the pure one. :data:`LEDGER` says which.

Interface (both twins): ``Ledger()``; ``apply_frame(frame) -> int`` (a data
frame of :mod:`shardpay.frames`, any bytes-like; the rows it rejected;
``ValueError`` for a malformed frame, checked before any row is applied);
``take_rejects() -> bytes`` (the held rejects as records of
:data:`REJECT_FIELDS` native int64, in line order, then released);
``rejects_held()``; ``account(client)``; ``snapshot()``; ``stored()``;
``applied``.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "LEDGER", "REJECT_FIELDS", "Ledger", "check_frame"]

ENV = "SHARDPAY_LEDGER"
"""The environment variable that picks the ledger: ``python``, ``compiled``, or unset."""

_choice = os.environ.get(ENV, "")
if _choice not in ("", "python", "compiled"):
    raise ImportError(f"{ENV} must be 'python', 'compiled' or unset, got {_choice!r}")

if _choice == "python":
    from ._ledger_py import REJECT_FIELDS, Ledger, check_frame

    LEDGER = "python"
elif _choice == "compiled":
    from ._ledger import REJECT_FIELDS, Ledger, check_frame  # type: ignore[no-redef]

    LEDGER = "compiled"
else:
    try:
        from ._ledger import REJECT_FIELDS, Ledger, check_frame  # type: ignore[no-redef]

        LEDGER = "compiled"
    except ImportError:
        from ._ledger_py import REJECT_FIELDS, Ledger, check_frame  # type: ignore[no-redef]

        LEDGER = "python"
