"""What a Ray instance that shardpay starts or joins exposes, and to whom.

A Ray cluster runs whatever code a peer sends it, so:

* a local instance that shardpay starts listens on loopback only
  (:func:`loopback_node`);
* Ray's token file is private to its user, mode 0600 (:func:`private_token`):
  Ray 2.60 writes a new one with the process umask, usually 0644;
* joining a cluster (``--ray-address``) needs this process to use token
  authentication, ``RAY_AUTH_MODE=token`` (:func:`check_cluster_auth`).

Ray's traffic between nodes (the shards' batches, the token) is not
encrypted by any of this; docs/ray.md says what is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from typing import Any

from .errors import BackendError

__all__ = ["AUTH_MODE_VARIABLE", "check_cluster_auth", "loopback_node", "private_token"]

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
"""Ray's switch for token authentication (``token``); read from the environment only."""
_LOCAL_NODE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_cluster_auth(address: str | None) -> None:
    """Refuse to join a cluster without token authentication.

    Raises:
        BackendError: ``address`` is given and ``RAY_AUTH_MODE`` is not ``token``.
    """
    if address and os.environ.get(AUTH_MODE_VARIABLE, "").lower() != "token":
        raise BackendError(f"joining the Ray cluster at {address} needs token authentication: set "
                           f"{AUTH_MODE_VARIABLE}=token and give the cluster's token (RAY_AUTH_TOKEN_PATH or "
                           "~/.ray/auth_token); see docs/ray.md")


def _token_path() -> str | None:
    """The token file Ray reads in this process, or None (the token comes from RAY_AUTH_TOKEN)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")


def private_token(create: bool) -> None:
    """Make Ray's token file private to this user (mode 0600) before Ray reads or writes it.

    Ray (2.60) writes a new token with the process umask, so usually 0644: any
    local user could then read the credential of every cluster that uses it.
    With ``create`` (a local instance with token authentication on, and no
    token yet) the file is made here, mode 0600, with a token like Ray's own
    (``secrets.token_hex(32)``). A file of another user is left alone.
    """
    mode = os.environ.get(AUTH_MODE_VARIABLE, "token").lower()
    path = _token_path()
    if mode != "token" or path is None:
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if create:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with open(fd, "w") as f:
                    f.write(secrets.token_hex(32))
        return
    except OSError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Start a local Ray instance on loopback only, not on the machine's address.

    Ray binds each node's servers (GCS, raylet, workers) to its node IP, which on
    Linux is the machine's own address (every interface, in Ray 2.60). With
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray takes the loopback address as the
    node IP, as it does on macOS, where a local instance is the only kind: the
    driver reads it from ``ray._private.ray_constants`` (set here too, since Ray
    is imported by now), the processes Ray starts from the environment.
    Both are put back once the instance runs.
    """
    ray_constants: Any
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without this module: the environment alone
        ray_constants = None
    old_env = os.environ.get(_LOCAL_NODE_VARIABLE)
    old_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOCAL_NODE_VARIABLE] = "0"
    if ray_constants is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(_LOCAL_NODE_VARIABLE, None)
        else:
            os.environ[_LOCAL_NODE_VARIABLE] = old_env
        if ray_constants is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old_flag
