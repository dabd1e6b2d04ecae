"""``shardpay serve``'s command line: parsed into one frozen :class:`ServeOptions`, and checked.

Usage errors (a malformed value, ``--tls-cert`` without ``--tls-key``) exit 2
through argparse. What can only be judged at start (a non-loopback address
without tokens, more connections than open files allow) is a
:class:`~shardpay.errors.ShardpayError`: one line, exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
from dataclasses import dataclass

from ..errors import ShardpayError
from ..options import add_backend_options, add_decoders_option, add_workers_option, check_backend_options
from .security import is_loopback

__all__ = [
    "DEFAULT_LISTEN",
    "ServeOptions",
    "check_exposure",
    "connection_limit",
    "parse_address",
    "parse_args",
    "raise_nofile_limit",
]

DEFAULT_LISTEN = "127.0.0.1:7878"
"""Loopback by default: a payment journal is not for the network unless asked (with tokens)."""
DEFAULT_MAX_CONNECTIONS = 1024
"""Connections served at once, when the open-file limit allows (see :func:`connection_limit`)."""
FD_RESERVE = 64
"""Open files kept for the server itself: the journal, snapshots, the engine's rings, pipes and spools."""
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_MAX_BATCH_BYTES = 16 << 20
"""Largest batch: a connection holds at most this (plus its stream buffer) in memory."""
DEFAULT_MAX_BUFFER_BYTES = 256 << 20
"""Batch bytes held by all connections together, received or waiting for their commit."""
_UNITS = {"": 1, "K": 1 << 10, "KI": 1 << 10, "M": 1 << 20, "MI": 1 << 20, "G": 1 << 30, "GI": 1 << 30}


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """``shardpay serve``'s command line, parsed (``shardpay serve --help`` says what each means)."""

    host: str
    port: int
    workers: int
    decoders: int = 1
    journal: str
    snapshot: str | None = None
    snapshot_every: float = 10.0
    fsync: bool = True
    backend: str = "local"
    ray_address: str | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_connections: int | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:7878`` for IPv6; an empty host is 127.0.0.1).

    Raises:
        argparse.ArgumentTypeError: not HOST:PORT with a port 0..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 0..65535)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not s > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return s


def _size(text: str) -> int:
    """Bytes: a whole number with an optional K, M or G (powers of 1024), e.g. ``16M``."""
    t = text.strip().upper().removesuffix("B")
    digits = t.rstrip("KMGI")
    unit = _UNITS.get(t[len(digits):])
    if not digits.isdigit() or unit is None or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes (e.g. 65536, 64K, 16M, 1G)")
    return int(digits) * unit


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def parse_args(argv: list[str]) -> ServeOptions:
    """Parse ``shardpay serve``'s arguments; argparse exits 2 on a usage error."""
    from ..engine import default_decoders, default_workers

    p = argparse.ArgumentParser(
        prog="shardpay serve",
        description=(
            "Serve the engine over TCP. A client sends batches, each with its own id and ended by a\n"
            "commit line (a line count and a CRC32); a batch is journaled (fsynced) before it is\n"
            "applied, applied exactly once, and answered with its rejected rows. Protocol, journal\n"
            "and security: docs/serve.md. A client: shardpay send --help."
        ),
        epilog=(
            "examples:\n"
            "  shardpay serve --journal tx.journal --snapshot accounts.csv\n"
            "  shardpay send tx.csv --to 127.0.0.1:7878\n"
            "  shardpay serve --listen 0.0.0.0:7878 --journal tx.journal --token-file tokens \\\n"
            "      --tls-cert server.pem --tls-key server.key\n"
            "  shardpay journal export tx.journal -o tx.csv   # shardpay tx.csv: the server's balances\n\n"
            "Signals: SIGHUP writes the snapshot now; SIGTERM/SIGINT stop reading new batches,\n"
            "give open batches --drain-timeout seconds to commit, write the snapshot, exit 0.\n"
            "A restart replays the journal: nothing acknowledged is lost, no batch applies twice.\n"
            "Exit 1: a fatal error (port in use, journal locked, damaged or not a journal, ...)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", type=parse_address, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free one). "
                        "An address other than loopback needs --token-file")
    add_workers_option(p, default_workers())
    add_decoders_option(p, default_decoders())
    p.add_argument("--journal", required=True, metavar="FILE",
                   help="the journal: replayed at start if it exists, then appended to (locked, mode 0600)")
    p.add_argument("--snapshot", metavar="OUT", help="accounts CSV rewritten atomically (fsynced, mode 0600) "
                   "every --snapshot-every seconds, on SIGHUP and at shutdown")
    p.add_argument("--snapshot-every", type=_seconds, default=10.0, metavar="SECONDS",
                   help="seconds between snapshots (default 10)")
    p.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="write the journal but do not fsync it (survives a server crash, not a power cut)")
    sec = p.add_argument_group("security")
    sec.add_argument("--token-file", metavar="FILE",
                     help="lines 'NAME TOKEN' (mode 0600): every connection must send 'auth NAME TOKEN' first")
    sec.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain (needs --tls-key)")
    sec.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (mode 0600)")
    lim = p.add_argument_group("bounds")
    lim.add_argument("--max-connections", type=_count, metavar="N",
                     help=f"connections at once; more are answered 'busy' (default {DEFAULT_MAX_CONNECTIONS}, "
                          "fewer if the open-file limit is low)")
    lim.add_argument("--idle-timeout", type=_seconds, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                     help=f"close a connection that sends nothing for this long (default {DEFAULT_IDLE_TIMEOUT:g})")
    lim.add_argument("--drain-timeout", type=_seconds, default=DEFAULT_DRAIN_TIMEOUT, metavar="SECONDS",
                     help="on SIGTERM, how long open batches may take to commit; later ones are dropped "
                          f"unacknowledged (default {DEFAULT_DRAIN_TIMEOUT:g})")
    lim.add_argument("--max-batch-bytes", type=_size, default=DEFAULT_MAX_BATCH_BYTES, metavar="SIZE",
                     help="largest batch, e.g. 16M (the default); larger ones are answered 'too_large'")
    lim.add_argument("--max-buffer-bytes", type=_size, default=DEFAULT_MAX_BUFFER_BYTES, metavar="SIZE",
                     help="batch bytes held by all connections together (default 256M); a batch waits up "
                          "to --idle-timeout for room, then is answered 'busy'")
    add_backend_options(p)
    a = p.parse_args(argv)
    check_backend_options(p, a)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if a.max_batch_bytes > a.max_buffer_bytes:
        p.error(f"--max-batch-bytes {a.max_batch_bytes} is over --max-buffer-bytes {a.max_buffer_bytes}")
    workers = a.workers or default_workers()
    return ServeOptions(host=a.listen[0], port=a.listen[1], workers=workers,
                        decoders=a.decoders or default_decoders(workers),
                        journal=a.journal, snapshot=a.snapshot, snapshot_every=a.snapshot_every, fsync=a.fsync,
                        backend=a.backend, ray_address=a.ray_address, token_file=a.token_file,
                        tls_cert=a.tls_cert, tls_key=a.tls_key, max_connections=a.max_connections,
                        idle_timeout=a.idle_timeout, drain_timeout=a.drain_timeout,
                        max_batch_bytes=a.max_batch_bytes, max_buffer_bytes=a.max_buffer_bytes)


def check_exposure(opts: ServeOptions) -> None:
    """Refuse to listen beyond this machine without tokens.

    Raises:
        ShardpayError: ``--listen`` is not a loopback address and there is no ``--token-file``.
    """
    if opts.token_file is None and not is_loopback(opts.host):
        raise ShardpayError(f"--listen {opts.host}:{opts.port} is not a loopback address: anyone who reaches it "
                            "could post rows for any client; give --token-file (and --tls-cert/--tls-key)")


def raise_nofile_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def connection_limit(wanted: int | None, open_files: int) -> int:
    """``--max-connections``, checked against the open-file limit.

    Half of what is left after :data:`FD_RESERVE` may be connections; the
    other half is headroom for connections being accepted and refused
    (``busy``) at the same moment, so the server never runs out of files.

    Args:
        wanted: ``--max-connections``, or None for the default.
        open_files: the process's open-file limit.

    Raises:
        ShardpayError: ``wanted`` (or even one connection) does not fit.
    """
    room = (open_files - FD_RESERVE) // 2
    if wanted is None:
        if room < 1:
            raise ShardpayError(f"this process may open {open_files} files (ulimit -n): too few to serve any "
                                f"connection (at least {FD_RESERVE + 2})")
        return min(DEFAULT_MAX_CONNECTIONS, room)
    if wanted > room:
        raise ShardpayError(f"--max-connections {wanted} needs {2 * wanted + FD_RESERVE} open files, but this "
                            f"process may open {open_files} (ulimit -n)")
    return wanted
