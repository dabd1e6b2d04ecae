"""A client of ``shardpay serve``: :class:`Client` for programs, ``shardpay send`` for people.

::

    with shardpay.Client("127.0.0.1:7878", token_file="alice.token") as client:
        result = client.send(b"type,client,tx,amount\\ndeposit,1,1,5\\n", batch_id="2026-12-01-0001")
        result.status        # "ok": applied now; "already": applied before (nothing applied now)
        result.rejects       # [RowReject(line, reason, detail)], line numbers of the bytes sent

Sending the same bytes again with the same id is always safe: the server
applies a batch once, and answers a repeat with the first answer. So after
any failure (a refused connection, a reset, a timeout, a dead server) the
thing to do is to send again, with the same id, until an answer comes.
"""

from __future__ import annotations

import argparse
import select
import socket
import ssl
import sys
from typing import BinaryIO

from ..errors import ServeError
from .protocol import (
    BatchResult,
    ProtocolError,
    auth_line,
    batch_request,
    default_batch_id,
    is_batch_id,
    parse_answer_line,
    parse_reject_line,
)
from .security import client_credentials, client_tls

__all__ = ["Client", "main"]

SEND_BYTES = 256 * 1024
"""Bytes sent between two looks for an early answer (an error before the batch is sent whole)."""


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class Client:
    """A blocking connection to ``shardpay serve`` (protocol 1, ``docs/serve.md``).

    Connects on first use and keeps the connection for later batches; after an
    error answer the server closes it, and the next :meth:`send` connects anew.

    Args:
        address: ``HOST:PORT``.
        token_file: a token file (``NAME TOKEN`` lines, mode 0600); its first
            line is presented. None: no ``auth`` line.
        tls_ca: speak TLS, checking the server's certificate against this PEM file.
        tls: speak TLS, checking against the system's certificate authorities.
        timeout: seconds any one connect, send or read may take.

    Raises:
        ValueError: ``address`` is not ``HOST:PORT``.
        ShardpayError: the token file or the CA file cannot be used.
    """

    def __init__(self, address: str, *, token_file: str | None = None, tls_ca: str | None = None,
                 tls: bool = False, timeout: float = 60.0) -> None:
        self.host, self.port = _address(address)
        self.credentials = client_credentials(token_file) if token_file else None
        self.tls = client_tls(tls_ca) if tls_ca or tls else None
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later :meth:`send` opens a new one)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as err:
            raise ServeError(f"cannot connect to {where}: {err.strerror or err}", "connection") from None
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            if self.credentials is not None:
                sock.sendall(auth_line(*self.credentials))
        except ssl.SSLError as err:
            sock.close()
            raise ServeError(f"TLS with {where} failed: {err.reason or err}", "connection") from None
        except OSError as err:
            sock.close()
            raise ServeError(f"cannot talk to {where}: {err.strerror or err}", "connection") from None
        self._sock = sock
        self._file = sock.makefile("rb")  # type: ignore[assignment]
        return sock

    def send(self, body: bytes, batch_id: str | None = None) -> BatchResult:
        """Send one batch and wait for its answer.

        Args:
            body: the CSV bytes: its header first, then rows (SPEC "Input").
            batch_id: the batch's id (1..128 of ``A-Z a-z 0-9 . _ : -``); None:
                :func:`~shardpay.serve.protocol.default_batch_id` of ``body``.

        Returns:
            The :class:`~shardpay.serve.protocol.BatchResult` (``ok`` or ``already``).

        Raises:
            ValueError: ``batch_id`` is not a valid id.
            ServeError: the server answered an error (``code`` is its code; nothing
                was applied), or the connection failed (``code`` ``"connection"``: the
                batch may or may not be applied; send it again with the same id).
        """
        batch_id = default_batch_id(body) if batch_id is None else batch_id
        request = batch_request(batch_id, body)
        sock = self._connect()
        try:
            self._send(sock, request)
            status, answered_id, accepted, rejected = parse_answer_line(self._readline())
            rejects = [parse_reject_line(self._readline()) for _ in range(rejected)]
        except ProtocolError as err:
            self.close()
            raise ServeError(f"batch {batch_id!r} not applied: {err.code}: {err.message}", err.code) from None
        except (OSError, EOFError) as err:
            self.close()
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
            raise ServeError(f"batch {batch_id!r}: the connection to {self.host}:{self.port} failed before the "
                             f"answer ({why}); it may or may not be applied: send it again with the same id",
                             "connection") from None
        if answered_id != batch_id:
            self.close()
            raise ServeError(f"batch {batch_id!r}: the server answered for batch {answered_id!r}", "protocol")
        return BatchResult(batch_id, status, accepted, rejected, rejects)

    def _send(self, sock: socket.socket, request: bytes) -> None:
        """Send the request, looking for an early answer between pieces; a reset after an
        early answer leaves that answer to be read."""
        with memoryview(request) as view:
            for i in range(0, len(view), SEND_BYTES):
                try:
                    sock.sendall(view[i: i + SEND_BYTES])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the server answered and closed: read what it said
                if i + SEND_BYTES < len(view) and select.select([sock], [], [], 0)[0]:
                    return  # an answer before the whole batch is sent: an error

    def _readline(self) -> bytes:
        assert self._file is not None
        line = self._file.readline(1 << 16)
        if not line.endswith(b"\n"):
            raise EOFError("the server closed the connection")
        return line


def main(argv: list[str]) -> int:
    """``shardpay send FILE --to HOST:PORT``: send one batch; exit 0 if applied (now or before), 1 if not.

    Raises:
        ShardpayError: the input cannot be read, a token or CA file cannot be used, or the
            batch was not applied (the CLI prints its line and exits 1).
    """
    p = argparse.ArgumentParser(
        prog="shardpay send",
        description=("Send a transactions CSV to shardpay serve as one batch, applied exactly once. "
                     "Prints the batch id, the result and each rejected row (line numbers of FILE)."),
        epilog=("examples:\n"
                "  shardpay send tx.csv --to 127.0.0.1:7878\n"
                "  shardpay send - --to pay.example:7878 --batch-id 2026-12-01-0001 --token-file alice.token "
                "--tls\n\n"
                "Sending again with the same id is safe: a batch applied before is answered 'already'\n"
                "and nothing is applied twice. Exit codes: 0 applied (now or before), 1 not applied\n"
                "(the error says why; a connection failure: send again), 2 usage error."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="FILE", help="the CSV to send (its header first), or - for standard input")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the server's address")
    p.add_argument("--batch-id", metavar="ID",
                   help="the batch's id (1..128 of A-Z a-z 0-9 . _ : -); default: sha256- and 32 hex digits "
                        "of the content, so the same file is the same batch")
    p.add_argument("--token-file", metavar="FILE", help="a file 'NAME TOKEN' (mode 0600) to authenticate with")
    p.add_argument("--tls-ca", metavar="PEM", help="speak TLS; check the server against this CA certificate")
    p.add_argument("--tls", action="store_true", help="speak TLS; check the server against the system's CAs")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="longest wait for any one step (default 60)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    a = p.parse_args(argv)
    try:
        _address(a.to)
    except ValueError as err:
        p.error(f"--to: {err}")
    if a.batch_id is not None and not is_batch_id(a.batch_id):
        p.error(f"--batch-id {a.batch_id!r} is not 1..128 of A-Z a-z 0-9 . _ : -")
    body = _read_input(a.input)
    with Client(a.to, token_file=a.token_file, tls_ca=a.tls_ca, tls=a.tls, timeout=a.timeout) as client:
        result = client.send(body, a.batch_id)
    if not a.quiet:
        out = sys.stdout
        how = "applied" if result.status == "ok" else "already applied before; nothing applied now"
        out.write(f"batch {result.batch_id}: {how} (accepted {result.accepted}, rejected {result.rejected})\n")
        out.writelines(f"{r}\n" for r in result.rejects)
        out.flush()
    return 0


def _read_input(path: str) -> bytes:
    from ..errors import InputError

    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise InputError(f"cannot read {path!r}: {err.strerror or err}") from None
