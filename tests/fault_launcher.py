"""Run the ``shardpay`` command line with one fault injected, for the fault tests.

Usage: ``python tests/fault_launcher.py FAULT [shardpay arguments ...]``, FAULT one of:

* ``worker-N-raise``, ``decoder-N-raise``, ``sequencer-raise``: that process
  raises ``RuntimeError`` as it starts.
* ``no-pdeathsig``: the children do not ask the kernel to kill them with their
  parent, so only their own checks can notice its death.

The engine forks its children from this process, so what is patched here is
what they run.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys

from shardpay import cli, local, proc


def main() -> int:
    fault, *args = sys.argv[1:]
    if m := re.fullmatch(r"(worker|decoder)-(\d+)-raise|(sequencer)-raise", fault):
        stage = m.group(1) or m.group(3)
        name = f"{stage} {m.group(2)}" if m.group(2) else stage
        body_name = f"run_{stage}"
        body = getattr(local, body_name)

        def faulty(*a, **kw):
            if multiprocessing.current_process().name == f"shardpay-{name}":
                raise RuntimeError(f"injected fault in {name}")
            return body(*a, **kw)

        setattr(local, body_name, faulty)
    elif fault == "no-pdeathsig":

        def parent_checked_only(parent_pid: int) -> None:
            if os.getppid() != parent_pid:
                os._exit(1)

        proc.die_with_parent = parent_checked_only
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    return cli.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
