"""What bounds a run on C cores: the stage model, from measured per-stage costs, checked here.

    python profiling/scaling.py FILE                  # measure, predict 2..64 cores, check this machine
    python profiling/scaling.py FILE --cores 2,4,8,16,32,64 --no-check

It runs the installed CLI once on FILE with ``--workers 1 --decoders 1
--stats`` and takes from ``--stats`` the CPU each stage spent a row: the
reader (the parent: reading, cutting, start-up and the merge), the decoders,
the sequencer, the workers. Each stage can use at most one core a process,
and all of them together at most C cores, so with K decoders and N workers
the pipeline moves at most

    rows/s = min(1/reader, K/decode, 1/sequence, N/apply, C/(reader + decode + sequence + apply))

(each cost in CPU seconds a row). For every C it picks the K and N that
maximise it (the fewest processes among equals), names the stage that bounds
it, and gives the predicted wall for FILE's rows. Then, unless
``--no-check``, it runs the CLI with this machine's pick (and with the
defaults) and prints the measured rows/s beside the prediction: a user on a
big machine runs the same command to check the model there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("reader", "decode", "sequence", "apply")


def shardpay_exe() -> str:
    exe = shutil.which("shardpay", path=str(Path(sys.executable).parent)) or shutil.which("shardpay")
    if not exe:
        sys.exit("scaling: the shardpay command is not installed (pip install .)")
    return exe


def run(path: Path, *flags: str) -> tuple[float, dict]:
    """One CLI run with ``flags``: its wall seconds and its ``--stats``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as st:
        t0 = time.perf_counter()
        subprocess.run([shardpay_exe(), str(path), *flags, "--quiet", "--stats", st.name], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        return wall, json.loads(Path(st.name).read_text())


def stage_costs(stats: dict) -> dict[str, float]:
    """CPU seconds a row of each stage (:data:`STAGES`), from one run's ``--stats``."""
    rows = max(stats["rows_read"], 1)
    return {
        "reader": stats["parent"]["cpu_seconds"] / rows,
        "decode": sum(d["cpu_seconds"] for d in stats["decoders_detail"]) / rows,
        "sequence": stats["sequencer"]["cpu_seconds"] / rows,
        "apply": sum(w["cpu_seconds"] for w in stats["workers_detail"]) / rows,
    }


def bound(costs: dict[str, float], cores: int, decoders: int, workers: int) -> tuple[float, str]:
    """The model's rows/s with ``decoders`` and ``workers`` on ``cores``, and the bounding stage."""
    limits = {
        "reader": 1 / costs["reader"],
        "decode": decoders / costs["decode"],
        "sequence": 1 / costs["sequence"],
        "apply": workers / costs["apply"],
        f"all {cores} cores": cores / sum(costs.values()),
    }
    stage = min(limits, key=limits.__getitem__)
    return limits[stage], stage


def best(costs: dict[str, float], cores: int) -> dict:
    """The K decoders and N workers that maximise :func:`bound` on ``cores`` (fewest processes among equals)."""
    options = []
    for k in range(1, 2 * cores + 1):
        for n in range(1, 2 * cores + 1):
            rate, stage = bound(costs, cores, k, n)
            options.append((-round(rate, -3), k + n, k, n, rate, stage))
    _, _, k, n, rate, stage = min(options)
    return {"cores": cores, "decoders": k, "workers": n, "rows_per_s": rate, "bound": stage}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, help="input CSV (e.g. profiling/data/uniform-10000000-s1.csv)")
    p.add_argument("--cores", default="2,4,8,16,32,64", help="comma list of core counts to predict")
    p.add_argument("--no-check", action="store_true", help="predict only; do not run this machine's pick")
    a = p.parse_args(argv)
    _, stats = run(a.file, "--workers", "1", "--decoders", "1")
    rows = stats["rows_read"]
    costs = stage_costs(stats)
    print(f"{a.file}: {rows:,} rows; CPU ns a row by stage (--workers 1 --decoders 1): "
          + ", ".join(f"{s} {c * 1e9:,.0f}" for s, c in costs.items()))
    print()
    print("| cores | decoders | workers | predicted rows/s | predicted wall s | bound by |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for cores in (int(c) for c in a.cores.split(",")):
        b = best(costs, cores)
        print(f"| {cores} | {b['decoders']} | {b['workers']} | {b['rows_per_s']:,.0f} | "
              f"{rows / b['rows_per_s']:.2f} | {b['bound']} |")
    if a.no_check:
        return 0
    here = len(os.sched_getaffinity(0))
    pick = best(costs, here)
    print()
    print(f"this machine: {here} usable cores")
    print("| command | predicted rows/s | measured rows/s | measured wall s |")
    print("| --- | ---: | ---: | ---: |")
    for flags in (["--workers", str(pick["workers"]), "--decoders", str(pick["decoders"])], []):
        wall, st = run(a.file, *flags)
        rate, _ = bound(costs, here, st["decoders"], st["workers"])
        name = " ".join(["shardpay", *(flags or ["(defaults)"])])
        print(f"| {name} | {rate:,.0f} | {rows / wall:,.0f} | {wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
