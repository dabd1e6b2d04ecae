"""What every child process shares: start-up, figures, and the result protocol.

A child sends exactly one message on its result pipe: ``("ok", result)`` or
``("error", kind, message, traceback_text)``; ``kind`` is ``"input"`` for an
:class:`~shardpay.errors.InputError`, else the exception's class name.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["child_main", "peak_rss_bytes", "cpu_seconds"]


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``), in bytes; 0 if unknown.

    psutil has no peak RSS on Linux (ENGINE-NOTES.md), so read /proc.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds used by this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_main(conn: Any, body: Callable[[], dict]) -> None:
    """Run ``body`` as a child process's whole life and report on ``conn``.

    The child ignores SIGINT (the parent handles Ctrl-C for the group and
    stops its children) and dies at once on SIGTERM. The cyclic GC is off:
    the hot loops allocate many containers and never make cycles.
    """
    from .errors import InputError

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    gc.disable()
    try:
        result = body()
        result["cpu_seconds"] = cpu_seconds()
        result["peak_rss_bytes"] = peak_rss_bytes()
        result["pid"] = os.getpid()
        conn.send(("ok", result))
    except BaseException as err:  # report everything: the parent decides
        kind = "input" if isinstance(err, InputError) else type(err).__name__
        try:
            conn.send(("error", kind, str(err), traceback.format_exc()))
        except OSError:
            pass
        os._exit(1)
    finally:
        conn.close()
