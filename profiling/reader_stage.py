"""The reader stage alone, in one process, and A/B of two source trees' readers.

    python profiling/reader_stage.py FILE --workers 2
    python profiling/reader_stage.py FILE --tree /tmp/base --tree . --workers 1,2 --repeat 4

Each run is a fresh process, started in the temporary directory, that
imports ``shardpay`` from ``--tree`` (a checkout's root; default: the
installed package), sets the reader process's
malloc option and disables the collector as the reader process does, reads
FILE into memory, and feeds it to a :class:`shardpay.reader.Reader` whose
``--workers`` sinks drop the frames: decode, claim, route and pack, with no
ring and no worker competing for the cores (``bench.py --reader-ceiling`` has
the rings and draining workers). Trees alternate run by run; each prints the
reader's ns a row and a digest of the frames it made, which two trees must
share when their frames are meant to be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import gc, hashlib, json, sys, time
if sys.argv[3]:
    sys.path.insert(0, sys.argv[3])  # ahead of the current directory
from shardpay.proc import keep_freed_memory
from shardpay.reader import Reader
keep_freed_memory()
gc.disable()
path, workers = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    data = f.read()
digest = hashlib.sha1()
frames = [0]
def sink(frame):
    frames[0] += 1
    digest.update(frame)
reader = Reader(None, [sink] * workers, lambda rejects: None)
t0 = time.perf_counter()
reader.feed(data)
reader.finish()
seconds = time.perf_counter() - t0
import shardpay
print(json.dumps({"tree": shardpay.__file__, "rows": reader.rows, "ns_per_row": seconds / max(reader.rows, 1) * 1e9,
                  "frames": frames[0], "digest": digest.hexdigest()[:12]}))
"""


def run(tree: str | None, path: str, workers: int) -> dict:
    """One fresh process reading ``path`` with ``tree``'s reader; its figures."""
    tree_path = os.path.abspath(tree) if tree else ""
    # run from a neutral directory: "python -c" puts the current one first on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(path), str(workers), tree_path],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="input CSV (e.g. profiling/data/uniform-2000000-s1.csv)")
    p.add_argument("--tree", action="append", help="a checkout whose shardpay/ to import; repeat to compare")
    p.add_argument("--workers", default="2", help="comma list of shard counts (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each tree, alternating (default 3)")
    a = p.parse_args(argv)
    trees = a.tree or [None]
    names = [f"tree {i + 1} ({t or 'installed'})" for i, t in enumerate(trees)]
    for workers in (int(w) for w in a.workers.split(",")):
        times: list[list[float]] = [[] for _ in trees]  # by position: the same tree twice is an A/A check
        digests: list[set[str]] = [set() for _ in trees]
        for i in range(a.repeat):
            for t, tree in enumerate(trees):
                figures = run(tree, a.file, workers)
                times[t].append(figures["ns_per_row"])
                digests[t].add(figures["digest"])
                print(f"{workers} shard(s), run {i + 1}, {names[t]}: "
                      f"{figures['ns_per_row']:.0f} ns/row, {figures['frames']} frames, digest {figures['digest']}")
        first = statistics.median(times[0])
        for t in range(len(trees)):
            median = statistics.median(times[t])
            print(f"{workers} shard(s), median {names[t]}: {median:.0f} ns/row "
                  f"({median / first:.3f}x the first), digests {sorted(digests[t])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
