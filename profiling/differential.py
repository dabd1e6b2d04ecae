"""Differential run: the engine against the reference model on a large generated messy file.

Usage::

    python profiling/differential.py [--rows 1M] [--seed 7] [--scenario messy] [--clients 2000]
                                     [--workers 1,2,4] [--keep]

Generates ``--rows`` rows with :mod:`shardpay.testing.generate` (default: 1,000,000
``messy`` rows, about 5% of them odd or invalid: whitespace, CRLF, quotes,
three-field rows, empty lines, bad types, ids and amounts, non-UTF-8 bytes,
duplicate ids), runs :func:`shardpay.testing.model.run` once and the installed
``shardpay`` CLI once per worker count (``--rejects`` to a file), and compares
the output byte for byte and every rejected ``(line, reason)``. Prints one
line per run and a verdict; exits 1 on any difference, printing the first
differing lines.

Data goes to ``profiling/data/`` (git-ignored) and is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shardpay.testing import model  # noqa: E402
from shardpay.testing.generate import SCENARIOS, generate, parse_count  # noqa: E402


def _cli() -> list[str]:
    exe = shutil.which("shardpay", path=str(Path(sys.executable).parent)) or shutil.which("shardpay")
    if exe is None:
        raise SystemExit("the shardpay console script is not installed (pip install .)")
    return [exe]


def _rejects(path: Path) -> list[tuple[int, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)
        return [(int(row[0]), row[5]) for row in rows]


def _first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"item {i}: model {x!r}, engine {y!r}"
    return f"lengths differ: model {len(a)}, engine {len(b)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=parse_count, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scenario", choices=SCENARIOS, default="messy")
    p.add_argument("--clients", type=int, default=2000, help="distinct clients (fewer: more disputes per account)")
    p.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    p.add_argument("--keep", action="store_true", help="keep the generated file and outputs")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]

    data_dir = HERE / "data" / f"differential-{args.scenario}-{args.rows}-s{args.seed}-c{args.clients}"
    data_dir.mkdir(parents=True, exist_ok=True)
    src = data_dir / "input.csv"
    ok = True
    try:
        t0 = time.perf_counter()
        with open(src, "wb") as f:
            generate(args.rows, f, seed=args.seed, scenario=args.scenario, clients=args.clients)
        data = src.read_bytes()
        lines = data.count(b"\n")
        print(f"generated {args.rows:,} {args.scenario} rows (seed {args.seed}, {args.clients} clients): "
              f"{len(data):,} bytes, {lines:,} lines, {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        want = model.run(data)
        del data
        want_output = want.output.encode()
        reasons = Counter(reason for _, reason in want.rejects)
        accounts = want.output.count("\n") - 1
        locked = want.output.count(",true\n")
        print(f"model: {accounts:,} accounts ({locked:,} locked), {len(want.rejects):,} rejects "
              f"{dict(sorted(reasons.items()))}, {time.perf_counter() - t0:.1f} s")

        for w in workers:
            out, rej = data_dir / f"out-{w}.csv", data_dir / f"rejects-{w}.csv"
            t0 = time.perf_counter()
            proc = subprocess.run([*_cli(), str(src), "--workers", str(w), "--quiet", "-o", str(out),
                                   "--rejects", str(rej)], capture_output=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"--workers {w}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
                ok = False
                continue
            got_output = out.read_bytes()
            got_rejects = _rejects(rej)
            same_output = got_output == want_output
            same_rejects = got_rejects == want.rejects
            print(f"--workers {w}: output {'identical' if same_output else 'DIFFERENT'} "
                  f"({len(got_output):,} bytes), rejects {'identical' if same_rejects else 'DIFFERENT'} "
                  f"({len(got_rejects):,}), {wall:.1f} s")
            if not same_output:
                print("  first output difference:",
                      _first_difference(want_output.split(b"\n"), got_output.split(b"\n")))
            if not same_rejects:
                print("  first reject difference:", _first_difference(want.rejects, got_rejects))
            ok = ok and same_output and same_rejects
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print("AGREE: the engine equals the model for workers " + args.workers if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
