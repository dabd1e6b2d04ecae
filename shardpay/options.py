"""Command-line options that more than one command takes (``shardpay FILE``, ``shardpay serve``).

Each command builds its own ``argparse`` parser and adds these to it, so the
names, checks and help texts are the same everywhere.
"""

from __future__ import annotations

import argparse

from .session import BACKENDS

__all__ = ["add_backend_options", "add_decoders_option", "add_workers_option", "check_backend_options", "workers_count"]

MAX_WORKERS = 256
"""Largest ``--workers``: one process and one 4 MiB ring each."""


def workers_count(text: str) -> int:
    """``--workers``' type: a whole number 1..:data:`MAX_WORKERS`.

    Raises:
        argparse.ArgumentTypeError: anything else (argparse exits 2 naming it).
    """
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{n} is outside 1..{MAX_WORKERS}")
    return n


def add_workers_option(p: argparse.ArgumentParser, default: int) -> None:
    """``-w/--workers N`` (shards); ``default`` is shown in the help."""
    p.add_argument("-w", "--workers", type=workers_count, default=None, metavar="N",
                   help=("worker processes (shards), each applying its clients' rows. Default: usable CPUs "
                         f"minus one, but 2 on a 2-CPU machine (here: {default})"))


def add_decoders_option(p: argparse.ArgumentParser, default: int) -> None:
    """``-d/--decoders N`` (decoder processes); ``default`` is shown in the help."""
    p.add_argument("-d", "--decoders", type=workers_count, default=None, metavar="N",
                   help=f"decoder processes, which parse the CSV in parallel. Default: usable CPUs (here: {default})")


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--ray-address``."""
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help=("where the shards run: local worker processes (the default), or Ray actors "
                         "(needs: pip install 'shardpay[ray]'); the output is the same"))
    p.add_argument("--ray-address", metavar="ADDR",
                   help=("with --backend ray: the Ray cluster to join (ray start --head prints it); "
                         "without it a local Ray instance is started"))


def check_backend_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Usage error (exit 2) for ``--ray-address`` without ``--backend ray``."""
    if a.ray_address is not None and a.backend != "ray":
        p.error("--ray-address needs --backend ray")
