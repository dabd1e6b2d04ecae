"""Who may talk to ``shardpay serve``, and over what: token files, TLS contexts, the loopback rule.

A **token file** (``--token-file``, for the server and for ``shardpay send``)
holds one credential a line, ``NAME TOKEN``; empty lines and lines starting
with ``#`` are skipped::

    # shardpay serve --token-file tokens
    alice 6f1c0e0b1d3f4a5e9c7b2a8d4e6f0a1b3c5d7e9f1a2b4c6d
    batch-loader 0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c

``NAME`` is 1..64 of ``A-Z a-z 0-9 . _ -`` (it is the principal the journal
records); ``TOKEN`` is 16..256 printable ASCII characters without spaces
(``python -c 'import secrets; print(secrets.token_hex(32))'`` makes one). The
file must not be readable or writable by group or others (``chmod 600``), as
ssh asks of its keys; the TLS private key likewise. A client's token file may
hold several lines: it uses the first.

Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, so the
time taken says nothing about how much of a token was right, nor whether the
name exists.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import socket
import ssl
import stat

from ..errors import ShardpayError

__all__ = ["Tokens", "client_credentials", "client_tls", "is_loopback", "read_token_file", "server_tls"]

MIN_TOKEN_CHARS = 16
"""Shortest token accepted: 16 random characters are beyond guessing over a network."""
MAX_TOKEN_CHARS = 256
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[!-~]{%d,%d}" % (MIN_TOKEN_CHARS, MAX_TOKEN_CHARS))


def _read_private(path: str, what: str) -> bytes:
    """The bytes of a file only its owner may read (mode ``0600`` or stricter).

    Raises:
        ShardpayError: it cannot be read, or group or others may read or write it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise ShardpayError(f"cannot read the {what} {path!r}: {err.strerror or err}") from None
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ShardpayError(f"the {what} {path!r} is not a regular file")
        if mode & 0o077:
            raise ShardpayError(f"the {what} {path!r} is open to group or others (mode {stat.S_IMODE(mode):04o}): "
                                f"chmod 600 it")
        return f.read(1 << 20)


def read_token_file(path: str) -> list[tuple[str, str]]:
    """The ``(name, token)`` credentials of a token file, in file order.

    Raises:
        ShardpayError: unreadable, open to others, a malformed line (named by
            number; the token itself is never shown), a name twice, or no token.
    """
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    text = _read_private(path, "token file").decode("utf-8", "replace")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _NAME.fullmatch(parts[0]) or not _TOKEN.fullmatch(parts[1]):
            raise ShardpayError(f"token file {path!r} line {number}: expected 'NAME TOKEN' (NAME 1..64 of "
                                f"A-Z a-z 0-9 . _ -, TOKEN {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} printable "
                                "characters without spaces)")
        if parts[0] in seen:
            raise ShardpayError(f"token file {path!r} line {number}: the name {parts[0]!r} comes twice")
        seen.add(parts[0])
        entries.append((parts[0], parts[1]))
    if not entries:
        raise ShardpayError(f"token file {path!r} holds no token")
    return entries


def client_credentials(path: str) -> tuple[str, str]:
    """The ``(name, token)`` a client presents: the first of its token file (see :func:`read_token_file`)."""
    return read_token_file(path)[0]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Tokens:
    """The credentials a server accepts.

    Args:
        entries: ``(name, token)`` pairs (see :func:`read_token_file`).
    """

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self._digests = {name: _digest(token) for name, token in entries}
        self._nobody = secrets.token_bytes(32)  # compared against for an unknown name: no token matches it

    @classmethod
    def load(cls, path: str) -> Tokens:
        """Read ``path`` (see :func:`read_token_file`, which says what it raises)."""
        return cls(read_token_file(path))

    def __len__(self) -> int:
        return len(self._digests)

    def verify(self, name: str, token: str) -> bool:
        """Whether ``token`` is ``name``'s, in time that depends on neither."""
        want = self._digests.get(name)
        same = hmac.compare_digest(_digest(token), self._nobody if want is None else want)
        return same and want is not None


def _loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only (every address it names is loopback).

    ``0.0.0.0``, ``::`` and the empty host (every interface) are not; a name
    counts when everything it resolves to is loopback (``localhost``).
    """
    if not host:
        return False
    try:
        return _loopback_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(_loopback_address(str(info[4][0])) for info in infos)


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) with ``cert`` (PEM chain) and ``key`` (PEM, mode 0600).

    Raises:
        ShardpayError: a file cannot be read, the key is open to others, or they do not load.
    """
    _read_private(key, "TLS key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise ShardpayError(f"cannot load the TLS certificate {cert!r} with the key {key!r}: {reason}") from None
    return context


def client_tls(cafile: str | None) -> ssl.SSLContext:
    """A client TLS context that checks the server's certificate and host name, against ``cafile``
    (PEM) or, for None, the system's certificate authorities.

    Raises:
        ShardpayError: ``cafile`` cannot be read or holds no certificate.
    """
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise ShardpayError(f"cannot load the TLS certificate authority {cafile!r}: {reason}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
