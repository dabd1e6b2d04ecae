"""Steady-state throughput of ``--backend ray`` against the local engine, same file, same process.

    python profiling/ray_throughput.py --rows 2M --workers 1:1,2:2 --repeat 3

The CLI's wall time on Ray includes starting and stopping a local Ray
instance (seconds, whatever the file; `bench.py --backend local,ray` shows
it). Here Ray is started once, first, and each run is ``shardpay.process``
on the same generated ``uniform`` file, alternating local and ray, so the
figures compare the engines' throughput: reader, decoders, sequencer,
transport, ledger, merge (the actors are created per run, as the CLI does,
and included). ``--workers`` items are ``N`` or ``N:D`` (``D`` decoders).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import data_file, machine, parse_count  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="2M")
    p.add_argument("--workers", default="1:1,2:2", help="comma list of N (workers) or N:D (and decoders)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    import ray

    import shardpay

    rows = parse_count(a.rows)
    path = data_file(rows, "uniform", a.seed)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    walls: dict[tuple[str, str], list[float]] = {}
    first: dict[str, list[str]] = {}
    for r in range(a.repeat):
        for w in a.workers.split(","):
            workers, _, decoders = w.partition(":")
            for backend in ("local", "ray"):
                t0 = time.perf_counter()
                with shardpay.process(str(path), workers=int(workers), decoders=int(decoders or 1),
                                      backend=backend) as result:
                    lines = [acc.csv_line() for acc in result.account_list()]
                wall = time.perf_counter() - t0
                if first.setdefault(w, lines) != lines:
                    sys.exit(f"ray and local differ at --workers {w}")
                walls.setdefault((backend, w), []).append(wall)
                print(f"  run {r + 1}/{a.repeat}: {backend:<5} --workers {w}: {wall:6.2f} s", file=sys.stderr)
    ray.shutdown()
    print(f"## ray_throughput --rows {a.rows} --workers {a.workers} --repeat {a.repeat}\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {machine()}; `{path.name}`; Ray started once beforehand.\n")
    print("| engine | workers:decoders | wall s (median) | rows/s | ray / local |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (backend, w), ws in sorted(walls.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        med = statistics.median(ws)
        ratio = med / statistics.median(walls[("local", w)])
        print(f"| {backend} | {w} | {med:.2f} | {rows / med:,.0f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
