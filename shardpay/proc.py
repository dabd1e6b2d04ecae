"""What every child process shares: start-up, figures, signals, and the result protocol.

A child sends exactly one message on its result pipe: ``("ok", result)`` or
``("error", kind, message, traceback_text)``; ``kind`` is ``"input"`` for an
:class:`~shardpay.errors.InputError`, else the exception's class name.

Signals: the parent holds SIGINT, SIGTERM and SIGHUP (:func:`signals_held`)
while it creates shared memory, starts children and cleans up, so an
interrupt never lands between creating a resource and recording it. A child
is forked while they are held; :func:`child_main` sets its own handlers and
only then lets them through.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "HELD_SIGNALS",
    "child_main",
    "cpu_seconds",
    "keep_freed_memory",
    "peak_rss_bytes",
    "process_figures",
    "signals_held",
]

HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
"""Signals :func:`signals_held` defers: the ones that end a run."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
MMAP_THRESHOLD = 4 << 20
"""Blocks below this come from the heap, not from a fresh ``mmap`` (see :func:`keep_freed_memory`)."""
TRIM_THRESHOLD = 32 << 20
"""Free memory at the top of the heap kept for reuse, not given back (see :func:`keep_freed_memory`)."""


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``), in bytes; 0 if unknown.

    psutil has no peak RSS on Linux, so read /proc.
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


def process_figures() -> dict:
    """This process's ``cpu_seconds``, ``peak_rss_bytes`` and ``pid``, as every process
    reports them with its final figures (``--stats``)."""
    return {"cpu_seconds": cpu_seconds(), "peak_rss_bytes": peak_rss_bytes(), "pid": os.getpid()}


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer :data:`HELD_SIGNALS` while the block runs; they are delivered when it ends.

    The block runs to completion (creating and recording a resource, or
    removing them all); a signal that came meanwhile then runs its handler
    at once. Threads started inside the block, and children forked inside
    it, inherit the mask: :func:`child_main` lifts it in children, and a
    thread started here (rich's refresh thread) never takes these signals, so
    they always reach the main thread.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    A child busy in a long computation, or blocked where it does not poll,
    then cannot outlive a SIGKILLed parent; once every child is gone the
    resource tracker unlinks the shared memory. Exits at once if the parent
    died before the request was made. Elsewhere it does nothing: the rings'
    ``alive`` checks and the reader's per-chunk check remain.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed buffers for reuse in this process; return True if it did.

    The reader makes and drops several large buffers a chunk (the chunk,
    its skeleton, its JSON). By default glibc serves blocks from 128 KiB up
    with ``mmap`` and unmaps them when freed (or trims the heap), so every
    chunk touches fresh pages: with 256 KiB chunks, ~360,000 page faults for
    a 10M-row file in the reader alone, ~1 CPU second. With blocks below
    :data:`MMAP_THRESHOLD` served from the heap and up to
    :data:`TRIM_THRESHOLD` of free heap kept, the same read takes ~4,000
    faults and 12-17% less reader CPU (``profiling/README.md``). A worker's
    buffers are smaller and gain little; it allocates the same way all the
    same. Peak RSS is unchanged but for the kept free heap.

    Only on Linux with glibc (``mallopt``); elsewhere it does nothing and
    returns False. Affects the whole process: call it in shardpay's own
    processes (the local engine's children, Ray shard actors), not in an
    application that embeds the engine.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # no confstr name, no libc, no mallopt
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def _set_name(name: str) -> None:
    """Name this process for ``ps``/``top`` (Linux ``comm``, 15 bytes): e.g. ``sp-worker-0``."""
    with contextlib.suppress(OSError):
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])


def child_main(conn: Any, body: Callable[[], dict], *, name: str, parent_pid: int) -> None:
    """Run ``body`` as a child process's whole life and report on ``conn``.

    The child dies with its parent (:func:`die_with_parent`) and ignores
    SIGINT, SIGTERM and SIGHUP: they come to the whole process group from a
    terminal (Ctrl-C, a hang-up) or a service manager (systemd stops a unit
    with SIGTERM to every process), and it is the parent that decides, then
    stops its children with SIGKILL (a child holds nothing to clean up:
    the rings are the parent's, the spools unnamed); then the signals the
    parent held at fork are let through. The cyclic GC is off: the hot loops allocate many
    containers and never make cycles. Freed buffers stay in the heap
    (:func:`keep_freed_memory`).

    Args:
        conn: the write end of this child's result pipe.
        body: the child's work; returns its result dict.
        name: the process name shown by ``ps`` (``comm``), e.g. ``sp-reader``.
        parent_pid: the engine's pid, to notice its death.
    """
    from .errors import InputError

    die_with_parent(parent_pid)
    _set_name(name)
    for sig in HELD_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
    gc.disable()
    keep_freed_memory()
    try:
        result = body()
        result.update(process_figures())
        conn.send(("ok", result))
    except BaseException as err:  # report everything: the parent decides
        kind = "input" if isinstance(err, InputError) else type(err).__name__
        try:
            conn.send(("error", kind, str(err), traceback.format_exc()))
        except OSError:  # the parent is gone: nobody to tell
            pass
        os._exit(1)
    finally:
        conn.close()
