"""Which twin of a compiled hot path runs: the extension, or its pure-Python twin.

Each compiled part ``shardpay/_NAME.pyx`` has a pure-Python twin
``shardpay/_NAME_py.py`` with the same interface and the same results
(:mod:`shardpay.ledger`, :mod:`shardpay.decode`, :mod:`shardpay.claims`
pick theirs through :func:`pick`). An environment variable a part chooses:
``python`` forces the twin, ``compiled`` the extension (an ``ImportError``
if it was not built); unset or empty, the extension if it imports, else the
twin. ``SHARDPAY_NO_EXTENSIONS`` set (the build switch) means ``python``
where the part's own variable is unset.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["pick"]


def pick(name: str, env: str) -> tuple[ModuleType, str]:
    """The module that runs for compiled part ``name`` (e.g. ``"ledger"``), and which one.

    Args:
        name: the part: ``shardpay._NAME`` is the extension, ``shardpay._NAME_py`` the twin.
        env: the environment variable that chooses, e.g. ``SHARDPAY_LEDGER``.

    Returns:
        ``(module, "compiled")`` or ``(module, "python")``.

    Raises:
        ImportError: ``env`` is ``compiled`` and the extension is not built, or
            ``env`` is none of ``python``, ``compiled``, empty.
    """
    choice = os.environ.get(env) or ("python" if os.environ.get("SHARDPAY_NO_EXTENSIONS") else "")
    if choice not in ("", "python", "compiled"):
        raise ImportError(f"{env} must be 'python', 'compiled' or unset, got {choice!r}")
    if choice != "python":
        try:
            return importlib.import_module(f"shardpay._{name}"), "compiled"
        except ImportError:
            if choice == "compiled":
                raise
    return importlib.import_module(f"shardpay._{name}_py"), "python"
