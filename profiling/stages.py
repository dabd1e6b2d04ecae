"""The pipeline's stages alone, one after the other in one process, and A/B of two trees.

    python profiling/stages.py FILE --workers 2
    python profiling/stages.py FILE --tree /tmp/base --tree . --workers 1,2 --repeat 4

Each run is a fresh process, started in the temporary directory, that
imports ``shardpay`` from ``--tree`` (a checkout's root; default: the
installed package), sets the malloc option and disables the collector as the
engine's processes do, reads FILE into memory, then times each stage over
the whole file, with no ring and nothing else competing for the core:

* **cut**: the reader cuts the bytes into numbered chunks (the parent's work);
* **decode**: a decoder decodes every chunk into raw columns and rejects;
* **sequence**: the sequencer claims the tx ids and splits every chunk into
  ``--workers`` frames.

It prints the CPU nanoseconds a row of each stage and a digest of the
frames, which two trees must share when their frames are meant to be the
same. The worker's stage (apply) is ``profiling/worker_stage.py``'s;
``profiling/scaling.py`` turns the four costs into the model of what bounds
a run on C cores.
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
from shardpay.decoders import Decoder
from shardpay.proc import keep_freed_memory
from shardpay.reader import Reader
from shardpay.sequencer import Sequencer
keep_freed_memory()
gc.disable()
path, workers = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    data = f.read()
def timed(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0
def cut():
    messages = []
    reader = Reader(messages.append)
    reader.feed(data)
    reader.finish()
    return messages
messages, cut_s = timed(cut)
decoder = Decoder()
decoded, decode_s = timed(lambda: [decoder.decode(m) for m in messages])
sequencer = Sequencer(workers)
routed, sequence_s = timed(lambda: [sequencer.sequence(m) for m in decoded])
digest = hashlib.sha1()
frames = 0
for rejects, shard_frames in routed:
    digest.update(rejects)
    for frame in shard_frames:
        if frame is not None:
            frames += 1
            digest.update(frame)
rows = max(sequencer.rows, 1)
import shardpay
print(json.dumps({"tree": shardpay.__file__, "rows": sequencer.rows, "chunks": len(messages), "frames": frames,
                  "cut_ns": cut_s / rows * 1e9, "decode_ns": decode_s / rows * 1e9,
                  "sequence_ns": sequence_s / rows * 1e9, "digest": digest.hexdigest()[:12]}))
"""
STAGES = ("cut", "decode", "sequence")


def run(tree: str | None, path: str, workers: int) -> dict:
    """One fresh process timing ``tree``'s stages on ``path``; its figures."""
    tree_path = os.path.abspath(tree) if tree else ""
    # run from a neutral directory: "python -c" puts the current one first on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(path), str(workers), tree_path],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(path: str, workers: int, repeat: int, trees: list[str | None]) -> list[dict]:
    """Alternating runs of every tree; per tree the median ns a row of each stage and its digests."""
    runs: list[list[dict]] = [[] for _ in trees]
    for i in range(repeat):
        for t, tree in enumerate(trees):
            figures = run(tree, path, workers)
            runs[t].append(figures)
            print(f"{workers} shard(s), run {i + 1}, tree {t + 1}: "
                  + ", ".join(f"{s} {figures[s + '_ns']:.0f}" for s in STAGES)
                  + f" ns/row, {figures['frames']} frames, digest {figures['digest']}", flush=True)
    return [{"tree": tree or "installed", "rows": r[0]["rows"],
             **{f"{s}_ns": round(statistics.median(x[s + "_ns"] for x in r), 1) for s in STAGES},
             "digests": sorted({x["digest"] for x in r})} for tree, r in zip(trees, runs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="input CSV (e.g. profiling/data/uniform-2000000-s1.csv)")
    p.add_argument("--tree", action="append", help="a checkout whose shardpay/ to import; repeat to compare")
    p.add_argument("--workers", default="2", help="comma list of shard counts (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each tree, alternating (default 3)")
    a = p.parse_args(argv)
    trees = a.tree or [None]
    for workers in (int(w) for w in a.workers.split(",")):
        medians = measure(a.file, workers, a.repeat, trees)
        for t, m in enumerate(medians):
            ratio = ", ".join(f"{s} {m[s + '_ns'] / max(medians[0][s + '_ns'], 1e-9):.3f}x" for s in STAGES)
            print(f"{workers} shard(s), median tree {t + 1} ({m['tree']}): "
                  + ", ".join(f"{s} {m[s + '_ns']:.0f}" for s in STAGES)
                  + f" ns/row ({ratio} the first), digests {m['digests']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
