"""shardpay: exact, multi-core payment-transaction batch engine.

CSV transactions (deposit, withdrawal, dispute, resolve, chargeback) in,
one balance row per client account out. See ``SPEC.md`` for the contract and
:mod:`shardpay.engine` for the process architecture.

The public API::

    shardpay.process(path_or_stream, workers=N)  -> RunResult   (one call, as the CLI)
    shardpay.Engine(workers=N)                   context manager: feed / snapshot / rejects / close
    shardpay.Account                             client, available, held, total, locked
    shardpay.RejectRow                           line, type, client, tx, amount, reason, detail
    shardpay.ShardpayError and its subclasses    (shardpay.errors)
"""

from .engine import Account, Engine, RunResult, default_workers, process, run
from .errors import (
    InputError,
    Interrupted,
    OutputError,
    ProcessDied,
    RingError,
    ShardpayError,
    StrictReject,
)
from .rejects import RejectRow

__all__ = [
    "Account",
    "Engine",
    "InputError",
    "Interrupted",
    "OutputError",
    "ProcessDied",
    "RejectRow",
    "RingError",
    "RunResult",
    "ShardpayError",
    "StrictReject",
    "default_workers",
    "process",
    "run",
]
