"""``shardpay serve``: batches of CSV transactions over TCP into one long-lived engine, each
applied exactly once, durably, by authenticated clients.

::

    client 1 --TCP/TLS--+   asyncio event loop (one thread): server.py
    client 2 -----------+    auth (security.py), 'batch ID SIZE', the bytes, 'commit LINES CRC32'
      ...               +--> (protocol.py); checked and split (batches.prepare): a Pending
    client N -----------+          |  Committer.submit: a queue to the engine thread
                                   v
                        engine thread (committer.py; one, so the order is total): takes every
                        batch queued meanwhile as one group, batches.Book.commit:
                         1. ids seen before: 'already' (the first answer) or 'conflict'
                         2. new batches' records -> journal (journal.py): write + fsync
                         3. Engine.feed(their rows); Engine.raw_rejects_since -> per-row results
                                   |                      (answers formatted back on the loop)
                                   v
                        Engine: reader -> decoders -> sequencer -> workers (see shardpay.engine)

A batch is the unit of commit: nothing of it is applied unless its bytes
and its commit line arrived whole and matched, and it is applied once
whatever the retries, across restarts. The modules, one concept each:
:mod:`.protocol` (the wire format, ``docs/serve.md``), :mod:`.security`
(tokens, TLS, the loopback rule), :mod:`.journal` (the file, its checks, the
export), :mod:`.batches` (the id index and results), :mod:`.committer` (the
engine thread), :mod:`.server` (connections, the drain), :mod:`.limits` (the
shared buffer, the rate-limited log), :mod:`.config` (options), :mod:`.files`
(durable snapshots), :mod:`.client` (:class:`Client`, ``shardpay send``).
"""

from __future__ import annotations

import asyncio
import signal

from ..errors import ShardpayError
from .client import Client
from .protocol import BatchResult, RowReject

__all__ = ["BatchResult", "Client", "RowReject", "main"]


def main(argv: list[str]) -> int:
    """``shardpay serve ...``: check the set-up, then run the server; return the exit code.

    Order matters: everything that can refuse at once (tokens open to others,
    a non-loopback address without tokens, TLS files, the open-file limit,
    the journal's lock and first line) is checked before the engine starts.

    Raises:
        ShardpayError: a fatal error (port in use, journal locked, damaged or not
            a journal, ...); the CLI prints its one line and exits with its code.
    """
    from .config import check_exposure, connection_limit, parse_args, raise_nofile_limit
    from .journal import Journal
    from .security import Tokens, server_tls
    from .server import Server

    opts = parse_args(argv)
    tokens = Tokens.load(opts.token_file) if opts.token_file else None
    check_exposure(opts)
    tls = server_tls(opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None
    max_connections = connection_limit(opts.max_connections, raise_nofile_limit())
    # A file-size limit (ulimit -f) makes a journal write fail with EFBIG, answered like a
    # full disk, instead of killing the server (and its engine children) with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        journal = Journal(opts.journal, fsync=opts.fsync)
    except OSError as err:
        raise ShardpayError(f"cannot open the journal {opts.journal!r}: {err.strerror or err}") from None
    try:
        return asyncio.run(Server(opts, journal, tokens, tls, max_connections).run())
    except OSError as err:
        message = f"{err.strerror or err}" + (f": {err.filename!r}" if err.filename else "")
        raise ShardpayError(message) from None
    finally:
        journal.close()
