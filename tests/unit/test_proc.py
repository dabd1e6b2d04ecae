"""shardpay.proc.keep_freed_memory: freed chunk-sized buffers are reused, not faulted in afresh."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from tests.conftest import ROOT



def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system
        return False


GLIBC = _glibc()
pytestmark = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")


def _chunk_faults() -> int:
    """Page faults of 200 reader-like chunks: 256 KiB of bytes, their byte classes, a 512 KiB rewrite."""
    table = bytes(range(256))[::-1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        chunk = bytes(256 * 1024)
        classes = chunk.translate(table)
        text = chunk.replace(b"\0", b"ab")
        del chunk, classes, text
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


SCRIPT = """
import sys
from shardpay.proc import keep_freed_memory
from tests.unit.test_proc import _chunk_faults
kept = keep_freed_memory() if sys.argv[1] == "kept" else None
print(kept, _chunk_faults())
"""


def _python(script: str, mode: str) -> list[str]:
    """Run ``script`` with argument ``mode`` in a fresh interpreter; its stdout's words."""
    return subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.split()


def _fresh_process(mode: str) -> tuple[str, int]:
    out = _python(SCRIPT, mode)
    return out[0], int(out[1])


def test_kept_memory_takes_a_fraction_of_the_page_faults():
    _, plain = _fresh_process("plain")
    kept, faults = _fresh_process("kept")
    assert kept == "True"
    assert plain > 10_000  # glibc's default: every chunk's buffers are fresh pages
    assert faults < plain // 20


def _report_faults() -> dict:
    return {"faults": _chunk_faults()}


def _plain_child(conn) -> None:
    conn.send(("ok", _report_faults()))


FORKING = """
import multiprocessing, os, sys
from shardpay.proc import child_main
from tests.unit.test_proc import _plain_child, _report_faults
ctx = multiprocessing.get_context("fork")
recv, send = ctx.Pipe(duplex=False)
if sys.argv[1] == "child_main":
    child = ctx.Process(target=child_main, args=(send, _report_faults),
                        kwargs={"name": "sp-test", "parent_pid": os.getpid()})
else:
    child = ctx.Process(target=_plain_child, args=(send,))
child.start()
send.close()
status, result = recv.recv()
child.join(30)
print(status, child.exitcode, result["faults"])
"""


def _forked_child(mode: str) -> tuple[str, int, int]:
    out = _python(FORKING, mode)
    return out[0], int(out[1]), int(out[2])


def test_child_processes_keep_freed_memory():
    # forked from a fresh interpreter, so the parent's malloc state is glibc's default
    _, _, plain = _forked_child("plain")
    status, code, faults = _forked_child("child_main")
    assert (status, code) == ("ok", 0)
    assert plain > 10_000 and faults < plain // 20
