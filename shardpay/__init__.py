"""shardpay: exact, multi-core payment-transaction batch engine.

CSV transactions (deposit, withdrawal, dispute, resolve, chargeback) in,
one balance row per client account out. See ``docs/semantics.md`` for the contract and
:mod:`shardpay.engine` for the process architecture.

The public API::

    shardpay.process(path_or_stream, workers=N)  -> RunResult   (one call, as the CLI)
    shardpay.Engine(workers=N)                   context manager: feed / snapshot / rejects / close
        both take backend="local" (default) or "ray" (shards as Ray actors), ray_address=
    shardpay.Account                             client, available, held, total, locked
    shardpay.Reject                              line, type, client, tx, amount, reason, detail
    shardpay.Client(address, token_file=...)     a client of `shardpay serve`: send(bytes, batch_id) -> BatchResult
    shardpay.ShardpayError and its subclasses    (shardpay.errors)
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Account, Engine, RunResult, default_workers, process, run
    from .errors import (
        BackendError,
        InputError,
        Interrupted,
        OutputError,
        ProcessDied,
        RingError,
        ServeError,
        ShardpayError,
        StrictReject,
    )
    from .rejects import Reject
    from .serve import Client

# The names are loaded on first use (PEP 562), not at ``import shardpay``:
# the console script imports this package before ``shardpay.cli.main`` can
# install its signal handlers, and importing the engine builds msgspec
# decoders (~90 ms). A Ctrl-C in there would be a KeyboardInterrupt
# traceback, at times a SIGSEGV inside msgspec, or a lost signal; main()
# imports the engine with the signals held.
_LAZY = {
    **dict.fromkeys(("Account", "Engine", "RunResult", "default_workers", "process", "run"), "engine"),
    **dict.fromkeys(("BackendError", "InputError", "Interrupted", "OutputError", "ProcessDied", "RingError", "ServeError",
                     "ShardpayError", "StrictReject"), "errors"),
    "Reject": "rejects",
    "Client": "serve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shardpay' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Account",
    "BackendError",
    "Client",
    "Engine",
    "InputError",
    "Interrupted",
    "OutputError",
    "ProcessDied",
    "Reject",
    "RingError",
    "RunResult",
    "ServeError",
    "ShardpayError",
    "StrictReject",
    "default_workers",
    "process",
    "run",
]
