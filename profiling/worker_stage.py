"""The worker stage alone: one shard's frames through ``Ledger.apply_frame``, and A/B of ledger variants.

    python profiling/worker_stage.py FILE --workers 2 --shard 0
    python profiling/worker_stage.py FILE --ledger compiled --ledger python --repeat 3
    python profiling/worker_stage.py FILE --ledger compiled --ledger /tmp/v/_ledger.cpython-311-x86_64-linux-gnu.so
    python profiling/worker_stage.py FILE --ledger shardpay/_ledger_py.py --ledger /tmp/variant.py --callgrind

The engine's reader, decoder and sequencer (``shardpay.testing.stages``) split FILE into ``--workers`` shards;
shard ``--shard``'s frames (exactly as its ring would carry them) are
kept in a temporary file. Each ledger then applies them in a fresh process,
the ledgers alternating, ``--repeat`` times, after one untimed warm-up run.
A ledger is ``compiled`` (``shardpay._ledger``), ``python``
(``shardpay._ledger_py``), or the path of a module defining ``Ledger``: a
``.py`` file (a copy of ``shardpay/_ledger_py.py`` keeps its relative
imports) or a built extension (a variant of ``_ledger.pyx`` built elsewhere;
it is imported as ``shardpay.<its name>``). The default is the one
:mod:`shardpay.ledger` picks. Every run prints:

* ``apply ns/row``: time inside ``Ledger.apply_frame`` only;
* ``cpu ns/row``: the process's CPU time for unpacking and applying;
* a digest of the rejects and of the snapshot, with stored states named (so a
  variant may number them differently). Variants must print the same digest.

The median line adds the stored transactions and how much the process's
peak RSS grew while applying (the frames are already loaded then: it is the
ledger's memory, accounts included), per stored transaction.

With ``--callgrind``, each module runs once under valgrind's callgrind and the
instructions are reported instead (net of a run whose ledger does nothing):
on a shared 2-core VM, whose walls drift by up to 1.7x, instruction counts are
the stable A/B figure, walls the real one.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NULL_LEDGER = '''
LEDGER = "null"
class Ledger:
    SETTLED = WITHDRAWN = DISPUTED = CHARGED_BACK = 0
    def apply_frame(self, frame): return 0
    def take_rejects(self): return b""
    def snapshot(self): return ()
'''


def dump_frames(path: str, workers: int, shard: int, out: str) -> int:
    """Write shard ``shard``'s frames of ``path`` (``workers`` shards) to ``out``; return its rows."""
    from shardpay.testing.stages import route

    with open(path, "rb") as f:
        routed = route(f, workers)
    with open(out, "wb") as f:
        pickle.dump(routed.frames[shard], f, protocol=5)
    return routed.sequencer.shard_rows[shard]


def load_ledger(which: str):
    """The module of ledger ``which`` (``compiled``, ``python``, or a path; see the module docstring)."""
    if which in ("compiled", "python"):
        return importlib.import_module("shardpay._ledger" if which == "compiled" else "shardpay._ledger_py")
    # named inside the package, so a copy of _ledger_py.py keeps its relative imports; an
    # extension must keep the name it was built with (its PyInit_ function)
    name = "shardpay." + (os.path.basename(which).split(".")[0] if not which.endswith(".py") else "_ledger_variant")
    spec = importlib.util.spec_from_file_location(name, which)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def ledger_kind(which: str) -> str:
    """``compiled`` or ``python`` for a ledger named as ``--ledger`` takes it."""
    if which in ("compiled", "python"):
        return which
    return "python" if which.endswith(".py") else "compiled"


def child(frames_path: str, which: str) -> None:
    """Apply the frames with ledger ``which``'s Ledger; print one JSON line of figures."""
    gc.disable()  # as in the worker process
    from array import array

    from shardpay import codes
    from shardpay.frames import frame_rows

    mod = load_ledger(which)
    with open(frames_path, "rb") as f:
        frames = pickle.load(f)
    names = ("SETTLED", "WITHDRAWN", "DISPUTED", "CHARGED_BACK")
    states = {getattr(mod, n, getattr(codes, n)): n for n in names}
    digest = hashlib.sha1()
    rss_before = _status_kib(b"VmRSS:") * 1024  # the frames are loaded: what grows from here is the ledger's
    ledger = mod.Ledger()
    rows, apply_s = 0, 0.0
    cpu0 = time.process_time()
    for frame in frames:
        rows += frame_rows(frame)
        t0 = time.perf_counter()
        ledger.apply_frame(frame)
        apply_s += time.perf_counter() - t0
        ints = array("q", ledger.take_rejects())
        records = [tuple(ints[i : i + 7]) for i in range(0, len(ints), 7)]
        # aux is a stored state for reasons 5-7 (not_disputable, already_disputed, not_disputed)
        digest.update(repr([r[:6] + ((states[r[6]] if r[1] in (5, 6, 7) else r[6]),) for r in records]).encode())
    cpu = time.process_time() - cpu0
    digest.update(repr(ledger.snapshot()).encode())
    print(json.dumps({"rows": rows, "apply_ns": apply_s / rows * 1e9, "cpu_ns": cpu / rows * 1e9,
                      "digest": digest.hexdigest()[:12], "stored": ledger.stored() if hasattr(ledger, "stored") else 0,
                      "peak_rss_bytes": _status_kib(b"VmHWM:") * 1024,
                      "ledger_bytes": _status_kib(b"VmHWM:") * 1024 - rss_before}))


def _status_kib(field: bytes) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS:``, ``VmHWM:``), 0 if missing."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def run_child(frames: str, module: str, callgrind: bool) -> tuple[dict, int | None]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", frames, module]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    found = re.search(r"Collected : (\d+)", r.stderr)
    return figures, int(found.group(1)) if found else None


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="input CSV (e.g. profiling/data/uniform-10000000-s1.csv)")
    p.add_argument("--workers", type=int, default=2, help="shards the reader splits into (default 2)")
    p.add_argument("--shard", type=int, default=0, help="the shard whose frames are applied (default 0)")
    p.add_argument("--ledger", action="append", metavar="WHICH",
                   help="compiled, python, or the path of a module defining Ledger (.py or a built extension); "
                        "repeat to compare (default: the one shardpay.ledger picks)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each module, alternating (default 3)")
    p.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead of timing")
    a = p.parse_args()
    if not 0 <= a.shard < a.workers:
        p.error("--shard must be below --workers")
    if a.callgrind and not shutil.which("valgrind"):
        p.error("--callgrind needs valgrind on PATH")
    import shardpay.ledger

    modules = a.ledger or [shardpay.ledger.LEDGER]
    with tempfile.TemporaryDirectory(prefix="worker-stage-") as tmp:
        frames = os.path.join(tmp, "frames.pkl")
        rows = dump_frames(a.file, a.workers, a.shard, frames)
        print(f"{a.file}: shard {a.shard} of {a.workers}, {rows:,} rows")
        if a.callgrind:
            null = os.path.join(tmp, "null_ledger.py")
            with open(null, "w") as f:
                f.write(NULL_LEDGER)
            base = run_child(frames, null, True)[1]
            first = None
            for m in modules:
                figures, ir = run_child(frames, m, True)
                per_row = (ir - base) / rows
                first = first or per_row
                print(f"{m} ({ledger_kind(m)}): {per_row:,.0f} instructions/row in apply ({per_row / first:.3f}x the first), "
                      f"digest {figures['digest']}")
            return 0
        run_child(frames, modules[0], False)  # warm-up, untimed: a first run here is often the slowest
        runs: list[list[dict]] = [[] for _ in modules]  # by position: the same module twice is an A/A check
        for i in range(a.repeat):
            for j, m in enumerate(modules):
                figures, _ = run_child(frames, m, False)
                runs[j].append(figures)
                print(f"run {i + 1} {m}: apply {figures['apply_ns']:.1f} ns/row, "
                      f"cpu {figures['cpu_ns']:.0f} ns/row, digest {figures['digest']}")
    first = None
    for m, module_runs in zip(modules, runs):
        med = statistics.median(r["apply_ns"] for r in module_runs)
        cpu = statistics.median(r["cpu_ns"] for r in module_runs)
        first = first or med
        stored = module_runs[0]["stored"]
        grown = max(r["ledger_bytes"] for r in module_runs)
        per_tx = f" ({grown / stored:.1f} bytes a stored transaction)" if stored else ""
        print(f"median {m} ({ledger_kind(m)} ledger): apply {med:.1f} ns/row ({med / first:.3f}x the first), "
              f"cpu {cpu:.0f} ns/row, {stored:,} stored, peak RSS grew {grown / 2**20:.1f} MiB while applying{per_tx}")
    digests = {r["digest"] for rs in runs for r in rs}
    print("digests equal" if len(digests) == 1 else f"DIGESTS DIFFER: {sorted(digests)}")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
