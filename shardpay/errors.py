"""The exceptions of shardpay: an exception means the run failed.

A *rejected row* is not an exception: it is a :class:`shardpay.decode.Reject`
record collected and reported (SPEC "Transactions"). Exceptions are kept for
failures that end a run; the CLI catches :class:`ShardpayError`, prints its
one-line message and returns :attr:`ShardpayError.exit_code`::

    ShardpayError                 exit 1
    ├── InputError                the input cannot be read, or its header is wrong
    ├── OutputError               an output file cannot be written
    ├── StrictReject              --strict and a row was rejected
    ├── ProcessDied               a reader or worker process died or raised
    ├── RingError                 a ring peer vanished or the ring is corrupt
    ├── BackendError              --backend ray without Ray installed, or Ray cannot start
    ├── ServeError                shardpay send / Client: a batch refused, or the server unreachable
    └── Interrupted               SIGINT (exit 130) or SIGTERM (exit 143)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "InputError",
    "Interrupted",
    "OutputError",
    "ProcessDied",
    "RingError",
    "ServeError",
    "ShardpayError",
    "StrictReject",
]


class ShardpayError(Exception):
    """Base of every error that ends a run. ``str(err)`` is one line for the user."""

    exit_code = 1


class InputError(ShardpayError):
    """The input file is missing, unreadable, or has a wrong header (SPEC "Input")."""


class OutputError(ShardpayError):
    """An output (accounts, rejects or stats file, or stdout) cannot be written."""


class StrictReject(ShardpayError):
    """``--strict`` was given and a row was rejected; the message names line and reason."""


class ProcessDied(ShardpayError):
    """A child process (reader or worker) died, or raised; the message names which."""


class RingError(ShardpayError):
    """A shared-memory ring's peer is gone, or a frame is malformed."""


class BackendError(ShardpayError):
    """The chosen backend cannot run: Ray is not installed (the message names the
    ``pip install`` to run), or a Ray instance cannot be started or joined."""


class ServeError(ShardpayError):
    """``shardpay send`` or :class:`shardpay.Client`: the server refused a batch (nothing of it
    applied), or could not be reached or answered (the batch may be applied: send it again,
    with the same id, to know).

    Attributes:
        code: the server's error code (``docs/serve.md``), or ``"connection"``.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(ShardpayError):
    """The run was stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum
