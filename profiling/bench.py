"""Benchmark the installed ``shardpay`` CLI as a user runs it, side by side.

Usage::

    python profiling/bench.py --rows 10M                            # the defaults against the reference
    python profiling/bench.py --rows 10M --workers default,1:1,2:2,1:2,2:1 --no-model
    python profiling/bench.py --rows 2M --scenario uniform,hot,disputes,sparse,messy --no-model
    python profiling/bench.py --rows 5M,10M,20M --memory            # RSS slope per stored transaction
    python profiling/bench.py --rows 5M,10M,20M --memory --scenario sparse --name memory-sparse
    python profiling/bench.py --rows 10M --ceiling default,2:2      # the pipeline without the ledger
    python profiling/bench.py --rows 10M --dialects --no-model      # the same rows in every CSV dialect

For each scenario it generates the data once (``profiling/data/``, not
committed; deterministic by ``--seed``), then runs, ``--repeat`` times and
alternating so machine noise hits every command alike:

* the floor: ``wc -l FILE``;
* the reference: ``python -m shardpay.testing.model FILE``, a plain single-process
  implementation of SPEC (csv module, dicts, int money);
* ``shardpay FILE [--workers N [--decoders D]] --quiet --stats ...`` for
  every item of ``--workers``: ``default`` (no flags), ``N`` or ``N:D``.

It prints one table (median wall, rows/s, CPU of all processes, peak RSS of
all processes together, ratio against the reference and against the floor)
and the engine's stage figures of the median run (with the ledger the
workers ran, ``compiled`` or ``python``: ``SHARDPAY_LEDGER`` picks it), and writes both as
Markdown and JSON to ``profiling/results/`` (``--results``; inputs go to
``--data``).

With several scenarios, every round runs every command on every scenario's
file, and a last table gives each scenario's median wall over the first's.

``--memory`` runs ``shardpay`` once per ``--rows`` count on one scenario's
file and fits peak RSS against stored transactions (least squares): the sum
over all processes, and the workers' alone (for ``sparse`` the sequencer's
claim table grows with the ids too, and it is not the ledger's).

``--ceiling`` runs the same commands with a ledger that applies nothing (the
workers count their rows and drop them): the reader, the decoders and the
sequencer alone, the most any ledger can reach; alternating with the
reference model unless ``--no-model``, it gives the rows/s as a multiple of
the reference's; there the scenarios run one after the other.

``--dialects [LIST]`` runs instead the same rows (``--scenario``, one) written
in each CSV dialect of ``shardpay generate --dialect`` (default: all of them),
``shardpay FILE`` at the default worker count, every dialect once a round,
and gives each one's median wall over the clean file's; every run's output,
rejects and ``--stats`` counts must equal the clean file's (exit 1 if not).

``--plot`` also writes PNG charts of the results beside them
(``profiling/plot.py``; needs matplotlib: ``pip install '.[profiling]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shardpay.testing.generate import parse_count

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
REFERENCE = "reference model"


def data_file(rows: int, scenario: str, seed: int, data: Path = DATA) -> Path:
    """The generated input, made once and reused (``profiling/data/`` unless ``data`` says otherwise)."""
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"{scenario}-{rows}-s{seed}.csv"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, "-m", "shardpay.testing.generate", str(rows), str(tmp), "--seed", str(seed),
                        "--scenario", scenario], check=True)
        tmp.rename(path)
    return path


def reference_cmd(path: Path) -> list[str]:
    """The plain single-process implementation of SPEC on ``path`` (``shardpay.testing.model``)."""
    return [sys.executable, "-m", "shardpay.testing.model", str(path)]


def shardpay_exe() -> str:
    exe = shutil.which("shardpay", path=str(Path(sys.executable).parent)) or shutil.which("shardpay")
    if not exe:
        sys.exit("bench: the shardpay command is not installed (pip install .)")
    return exe


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` (stdout to /dev/null): wall, CPU of it and its children, its own max RSS.

    ``os.wait4`` gives the rusage of exactly this child (with its reaped
    descendants): RUSAGE_CHILDREN's max RSS would be the largest child ever.
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-500:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss * 1024}


def pipeline_args(item: str) -> list[str]:
    """The CLI flags of one ``--workers`` item: ``default`` (none), ``N`` or ``N:D``."""
    if item == "default":
        return []
    workers, _, decoders = item.partition(":")
    return ["--workers", workers] + (["--decoders", decoders] if decoders else [])


CEILING_LAUNCHER = """
import sys
from shardpay import cli, ledger, worker
from shardpay.frames import frame_rows
class CountOnly(ledger.Ledger):
    rows = 0
    def apply_frame(self, frame):
        self.rows += frame_rows(frame)
        return 0
    @property
    def applied(self):
        return self.rows
    @applied.setter
    def applied(self, value):  # the pure ledger's __init__ sets it
        self.rows = value
worker.Ledger = CountOnly
sys.exit(cli.main(sys.argv[1:]))
"""
"""Runs the CLI with a ledger that counts its rows and applies nothing (``--ceiling``): a
subclass of the ledger the worker uses (the compiled one's type cannot be patched)."""


def bench_scenarios(paths: dict[str, Path], rows: int, workers: list[str], repeat: int, model: bool,
                    backends: tuple[str, ...] = ("local",), ceiling: bool = False) -> list[dict]:
    """Time every command on every scenario's file, ``repeat`` rounds; each round
    runs every command of every scenario once, so machine drift hits them alike.

    Returns one result per scenario (``file``, ``rows``, ``table``), in order.
    """
    exe = shardpay_exe()
    stats_file = Path(tempfile.mkstemp(prefix="shardpay-bench-", suffix=".json")[1])
    commands: dict[str, list[tuple[str, list[str]]]] = {}
    for scenario, path in paths.items():
        cmds = [("floor (wc -l)", ["wc", "-l", str(path)])]
        if model:
            cmds.append((REFERENCE, reference_cmd(path)))
        program = [sys.executable, "-c", CEILING_LAUNCHER] if ceiling else [exe]
        for backend in backends:
            extra = [] if backend == "local" else ["--backend", backend]
            for w in workers:
                flags = [*extra, *pipeline_args(w)]
                cmds.append((" ".join(["shardpay", *(flags or ["(defaults)"])]),
                             [*program, str(path), *flags, "--quiet", "--stats", str(stats_file)]))
        commands[scenario] = cmds
    runs: dict[str, dict[str, list[dict]]] = {sc: {name: [] for name, _ in cmds} for sc, cmds in commands.items()}
    for r in range(repeat):
        for scenario, cmds in commands.items():
            for name, cmd in cmds:
                res = timed(cmd)
                if name.startswith("shardpay"):
                    stats = json.loads(stats_file.read_text())
                    res["stats"] = stats
                    res["rss_all"] = stats["peak_rss_bytes_sum"]
                else:
                    res["rss_all"] = res["maxrss"]
                runs[scenario][name].append(res)
                label = f"{scenario}: {name}" if len(paths) > 1 else name
                print(f"  run {r + 1}/{repeat}: {label:<34} {res['wall']:7.2f} s", file=sys.stderr, flush=True)
    stats_file.unlink()
    return [_table(paths[sc], rows, commands[sc], runs[sc], model) for sc in paths]


def _table(path: Path, rows: int, commands: list[tuple[str, list[str]]], runs: dict[str, list[dict]],
           model: bool) -> dict:
    """One scenario's table: medians, ratios against its reference and floor, stage figures."""
    table = []
    floor = statistics.median(x["wall"] for x in runs["floor (wc -l)"])
    ref = statistics.median(x["wall"] for x in runs[REFERENCE]) if model else None
    for name, _ in commands:
        walls = sorted(x["wall"] for x in runs[name])
        med = statistics.median(walls)
        median_run = min(runs[name], key=lambda x: abs(x["wall"] - med))
        row = {
            "command": name,
            "wall_median_s": round(med, 3),
            "wall_runs_s": [round(w, 3) for w in walls],
            "rows_per_s": round(rows / med),
            "cpu_s": round(statistics.median(x["cpu"] for x in runs[name]), 2),
            "peak_rss_all_mib": round(max(x["rss_all"] for x in runs[name]) / 2**20, 1),
            "x_faster_than_reference": round(ref / med, 2) if ref else None,
            "x_floor": round(med / floor, 2),
        }
        if "stats" in median_run:
            row["stages"] = stage_figures(median_run["stats"])
        table.append(row)
    return {"file": path.name, "rows": rows, "table": table}


def against_first(results: list[dict]) -> list[dict]:
    """Each scenario's median wall of every shardpay command over the first scenario's
    (``uniform`` when listed first): the scenario targets' ratios, from one run."""
    base = {r["command"]: r["wall_median_s"] for r in results[0]["table"] if r["command"].startswith("shardpay")}
    return [{"scenario": res["scenario"], "command": r["command"], "wall_median_s": r["wall_median_s"],
             "x_first": round(r["wall_median_s"] / base[r["command"]], 2)}
            for res in results for r in res["table"] if r["command"] in base]


def stage_figures(s: dict) -> dict:
    """The stage figures of one run's ``--stats``: per stage its processes' CPU seconds,
    the rows/s over their own work, the seconds they waited or were held up,
    and CPU nanoseconds per input row by stage (what ``plot.py`` stacks)."""
    rows = max(s["rows_read"], 1)
    ds, seq, ws = s["decoders_detail"], s["sequencer"], s["workers_detail"]
    cpu = {"reader": s["parent"]["cpu_seconds"], "decoders": sum(d["cpu_seconds"] for d in ds),
           "sequencer": seq["cpu_seconds"], "workers": sum(w["cpu_seconds"] for w in ws)}
    return {
        "workers": s["workers"],
        "decoders": s["decoders"],
        "ledger": s["ledger"],
        "cpu_ns_per_row": {stage: round(seconds / rows * 1e9, 1) for stage, seconds in cpu.items()},
        "reader_blocked_s": s["parent"]["blocked_on_full_decoder_rings_seconds"],
        "decode_rows_per_s": [d["decode_rows_per_second"] for d in ds],
        "decoder_cpu_s": [d["cpu_seconds"] for d in ds],
        "decoder_blocked_s": [d["blocked_on_full_ring_seconds"] for d in ds],
        "route_rows_per_s": seq["route_rows_per_second"],
        "sequencer_cpu_s": seq["cpu_seconds"],
        "sequencer_waiting_s": seq["waiting_on_decoders_seconds"],
        "sequencer_blocked_s": seq["blocked_on_full_rings_seconds"],
        "apply_rows_per_s": [w["apply_rows_per_second"] for w in ws],
        "worker_cpu_s": [w["cpu_seconds"] for w in ws],
        "worker_waiting_s": [w["waiting_on_empty_ring_seconds"] for w in ws],
        "rows_per_shard": s["rows_per_shard"],
    }


def markdown(result: dict, title: str) -> str:
    lines = [f"### {title}", "", f"`{result['file']}`, {result['rows']:,} rows; median of the runs.", "",
             "| command | wall s (median) | rows/s | CPU s | peak RSS all MiB | x faster than reference | x floor |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["table"]:
        ref = f"{r['x_faster_than_reference']:.2f}" if r["x_faster_than_reference"] else "-"
        lines.append(f"| {r['command']} | {r['wall_median_s']:.2f} | {r['rows_per_s']:,} | {r['cpu_s']:.2f} | "
                     f"{r['peak_rss_all_mib']:.0f} | {ref} | {r['x_floor']:.1f} |")
    stages = [r for r in result["table"] if "stages" in r]
    if stages:
        lines += ["", "Stage figures (`--stats` of the median run; CPU ns a row: reader, decoders, sequencer, "
                  "workers; rows/s over each stage's own work):", "",
                  "| command | W x D | ledger | CPU ns/row by stage | decode rows/s each | route rows/s | "
                  "apply rows/s each | decoders blocked s | workers waiting s |",
                  "| --- | --- | --- | --- | --- | ---: | --- | --- | --- |"]
        for r in stages:
            g = r["stages"]
            ns = " / ".join(f"{v:,.0f}" for v in g["cpu_ns_per_row"].values())
            lines.append(
                f"| {r['command']} | {g['workers']} x {g['decoders']} | {g['ledger'] or '-'} | {ns} | "
                f"{', '.join(f'{x:,}' for x in g['decode_rows_per_s'])} | {g['route_rows_per_s']:,} | "
                f"{', '.join(f'{x:,}' for x in g['apply_rows_per_s'])} | "
                f"{', '.join(f'{x:.2f}' for x in g['decoder_blocked_s'])} | "
                f"{', '.join(f'{x:.2f}' for x in g['worker_waiting_s'])} |")
    return "\n".join(lines) + "\n"


def memory_slope(counts: list[int], seed: int, workers: int | None, data: Path = DATA,
                 scenario: str = "uniform") -> dict:
    """Peak RSS against stored transactions, one run of ``shardpay`` per row count.

    Returns:
        ``points`` (rows, stored, peak RSS of all processes, of the workers
        alone and of the sequencer, wall, ledger) and the least-squares slopes
        in bytes a stored transaction: ``bytes_per_stored_deposit`` (all
        processes) and ``bytes_per_stored_deposit_workers``.
    """
    exe = shardpay_exe()
    points = []
    for rows in counts:
        path = data_file(rows, scenario, seed, data)
        with tempfile.NamedTemporaryFile(suffix=".json") as st:
            cmd = [exe, str(path), "--quiet", "--stats", st.name] + (["--workers", str(workers)] if workers else [])
            res = timed(cmd)
            stats = json.loads(Path(st.name).read_text())
        stored = sum(stats["stored_transactions_per_shard"])
        points.append({"rows": rows, "stored": stored, "peak_rss_all_bytes": stats["peak_rss_bytes_sum"],
                       "peak_rss_workers_bytes": sum(w["peak_rss_bytes"] for w in stats["workers_detail"]),
                       "peak_rss_sequencer_bytes": stats["sequencer"]["peak_rss_bytes"],
                       "wall_s": round(res["wall"], 2), "ledger": stats["ledger"]})
        print(f"  {rows:,} rows: {stored:,} stored, peak RSS all {stats['peak_rss_bytes_sum'] / 2**20:.0f} MiB",
              file=sys.stderr, flush=True)
    xs = [p["stored"] for p in points]
    return {"scenario": scenario, "points": points,
            "bytes_per_stored_deposit": _slope(xs, [p["peak_rss_all_bytes"] for p in points]),
            "bytes_per_stored_deposit_workers": _slope(xs, [p["peak_rss_workers_bytes"] for p in points])}


def _slope(xs: list[int], ys: list[int]) -> float:
    """Least-squares slope of ``ys`` against ``xs``, to 0.1."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs), 1)


# --- --dialects: the same rows in every CSV dialect ------------------------------------------

DIALECT_COUNTS = ("rows_read", "rows_accepted", "rows_rejected", "rejected_by_reason", "accounts", "rows_per_shard",
                  "stored_transactions_per_shard")
"""The ``--stats`` figures that count rows: equal for every dialect of the same rows."""


def dialect_file(rows: int, scenario: str, seed: int, dialect: str, data: Path = DATA) -> Path:
    """``data_file``'s rows written in ``dialect`` (``shardpay generate --dialect``), made once and reused."""
    if dialect == "clean":
        return data_file(rows, scenario, seed, data)
    path = data / f"{scenario}-{rows}-s{seed}-{dialect}.csv"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, "-m", "shardpay.testing.generate", str(rows), str(tmp), "--seed", str(seed),
                        "--scenario", scenario, "--dialect", dialect], check=True)
        tmp.rename(path)
    return path


def bench_dialects(paths: dict[str, Path], rows: int, repeat: int, model: bool) -> dict:
    """Run ``shardpay FILE`` (default workers, ``-o``, ``--rejects``, ``--stats``) on every
    dialect's file, ``repeat`` rounds, each round every dialect in turn (and the reference
    model on each file too if ``model``); compare every run's outputs with the clean file's.

    Returns ``{"dialects": [row per dialect], "identical": bool}``; a row has the
    median wall, its ratio to clean's, rows/s, the decoders' decode rows/s (summed)
    of the median run, the reference's median wall, and an example line of the file.
    """
    import hashlib

    exe = shardpay_exe()
    work = Path(tempfile.mkdtemp(prefix="shardpay-dialects-"))
    out, rej, st = work / "out.csv", work / "rejects.csv", work / "stats.json"
    runs: dict[str, list[dict]] = {d: [] for d in paths}
    ref_walls: dict[str, list[float]] = {d: [] for d in paths}
    want: tuple | None = None
    mismatches: list[str] = []
    try:
        for r in range(repeat):
            for dialect, path in paths.items():
                if model:
                    ref_walls[dialect].append(timed(reference_cmd(path))["wall"])
                res = timed([exe, str(path), "--quiet", "-o", str(out), "--rejects", str(rej), "--stats", str(st)])
                stats = json.loads(st.read_text())
                got = (hashlib.sha256(out.read_bytes()).hexdigest(), hashlib.sha256(rej.read_bytes()).hexdigest(),
                       {k: stats[k] for k in DIALECT_COUNTS})
                want = want or got
                if got != want:
                    mismatches.append(f"round {r + 1}, {dialect}")
                res["decode_rows_per_s"] = sum(d["decode_rows_per_second"] for d in stats["decoders_detail"])
                res["workers"] = stats["workers"]
                runs[dialect].append(res)
                print(f"  run {r + 1}/{repeat}: {dialect:<12} {res['wall']:7.2f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first = next(iter(paths))
    base = statistics.median(x["wall"] for x in runs[first])
    table = []
    for dialect, path in paths.items():
        walls = sorted(x["wall"] for x in runs[dialect])
        med = statistics.median(walls)
        median_run = min(runs[dialect], key=lambda x: abs(x["wall"] - med))
        table.append({
            "dialect": dialect,
            "example": _example_row(path, b"dispute" if dialect == "three-field" else b"withdrawal"),
            "wall_median_s": round(med, 3),
            "wall_runs_s": [round(w, 3) for w in walls],
            f"x_{first}": round(med / base, 3),
            "rows_per_s": round(rows / med),
            "decode_rows_per_s": median_run["decode_rows_per_s"],
            "workers": median_run["workers"],
            "reference_wall_median_s": round(statistics.median(ref_walls[dialect]), 3) if model else None,
        })
    return {"dialects": table, "identical": not mismatches, "mismatches": mismatches}


def _example_row(path: Path, kind: bytes) -> str:
    """The file's first line of ``kind``, as written (a CR shown as ``\\r``)."""
    with open(path, "rb") as f:
        for raw in f:
            if kind in raw:
                return raw.decode().replace("\r", "\\r").replace("\n", "")
    return ""


def dialects_main(a: argparse.Namespace, argv: list[str]) -> int:
    """``--dialects``: generate, run, print and write the table; exit 1 if a dialect's run differs."""
    from shardpay.testing.generate import DIALECTS

    rows = parse_count(a.rows)
    scenario = a.scenario.split(",")[0]
    names = list(DIALECTS) if a.dialects == "all" else ["clean", *(d for d in a.dialects.split(",") if d != "clean")]
    for d in names:
        if d not in DIALECTS:
            sys.exit(f"bench: unknown dialect {d!r} (one of {', '.join(DIALECTS)})")
    paths = {d: dialect_file(rows, scenario, a.seed, d, a.data) for d in names}
    result = bench_dialects(paths, rows, a.repeat, not a.no_model)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    report = {"machine": machine(), "date": stamp, "argv": argv, "scenario": scenario, "rows": rows, **result}
    workers = result["dialects"][0]["workers"]
    md = [f"## bench {' '.join(argv)}", "", f"{stamp}, {report['machine']}", "",
          f"### every dialect against clean, {scenario}, {rows:,} rows, `shardpay FILE` ({workers} workers, "
          f"the default); median of {a.repeat} rounds, every dialect once a round", "",
          "| dialect | example row | wall s | x clean | rows/s | decoders' decode rows/s | reference s |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for q in result["dialects"]:
        ref = f"{q['reference_wall_median_s']:.2f}" if q["reference_wall_median_s"] else "-"
        md.append(f"| {q['dialect']} | `{q['example']}` | {q['wall_median_s']:.2f} | {q['x_clean']:.2f} | "
                  f"{q['rows_per_s']:,} | {q['decode_rows_per_s']:,} | {ref} |")
    md += ["", "Output, rejects and `--stats` counts of every run equal the clean file's: "
           + ("yes." if result["identical"] else f"**NO**: {', '.join(result['mismatches'])}."), ""]
    text = "\n".join(md)
    print(text)
    name = a.name or f"dialects-{scenario}-{a.rows}"
    a.results.mkdir(parents=True, exist_ok=True)
    (a.results / f"{name}.md").write_text(text)
    (a.results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.results / name}.md and .json", file=sys.stderr)
    return 0 if result["identical"] else 1


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="2M", help="rows, or a comma list for --memory (e.g. 5M,10M,20M)")
    p.add_argument("--workers", default="default",
                   help="comma list of pipelines: default (no flags), N (--workers N) or N:D (--decoders D too)")
    p.add_argument("--scenario", default="uniform", help="comma list: uniform,hot,disputes,sparse,messy")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-model", action="store_true", help="skip the reference implementation (slow on big files)")
    p.add_argument("--memory", action="store_true", help="fit peak RSS against stored deposits over --rows")
    p.add_argument("--ceiling", action="store_true",
                   help="the same commands with a ledger that applies nothing: the pipeline's own bound")
    p.add_argument("--dialects", nargs="?", const="all", metavar="LIST",
                   help="the same rows in each CSV dialect (comma list, default all), against clean")
    p.add_argument("--backend", default="local", help="comma list of --backend values: local,ray")
    p.add_argument("--name", help="results file name (default from the arguments)")
    p.add_argument("--data", type=Path, default=DATA, help="where generated inputs are kept (default profiling/data)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="where the tables are written (default profiling/results)")
    p.add_argument("--plot", action="store_true", help="also write PNG charts (profiling/plot.py; needs matplotlib)")
    a = p.parse_args(argv)
    plot = _plotter() if a.plot else None  # before the run: a missing matplotlib fails at once
    argv = sys.argv[1:] if argv is None else argv
    if a.dialects:
        return dialects_main(a, argv)
    workers = a.workers.split(",")
    a.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    report: dict = {"machine": machine(), "date": stamp, "argv": argv}
    md = [f"## bench {' '.join(argv)}", "", f"{stamp}, {report['machine']}", ""]
    if a.memory:
        if "," in a.scenario:
            p.error("--memory takes one --scenario")
        counts = [parse_count(x) for x in a.rows.split(",")]
        mem = memory_slope(counts, a.seed, None, a.data, a.scenario)
        report["memory"] = mem
        md += [f"`{a.scenario}` files, default `--workers`, ledger: {mem['points'][0]['ledger']}.", "",
               "| rows | stored deposits+withdrawals | peak RSS all processes MiB | workers MiB | sequencer MiB | wall s |",
               "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        md += [f"| {q['rows']:,} | {q['stored']:,} | {q['peak_rss_all_bytes'] / 2**20:.0f} | "
               f"{q['peak_rss_workers_bytes'] / 2**20:.0f} | {q['peak_rss_sequencer_bytes'] / 2**20:.0f} | {q['wall_s']} |"
               for q in mem["points"]]
        md += ["", f"Slope: **{mem['bytes_per_stored_deposit']} bytes per stored transaction** (least squares), "
               f"all processes; the workers alone: **{mem['bytes_per_stored_deposit_workers']}**.", ""]
        name = a.name or ("memory" if a.scenario == "uniform" else f"memory-{a.scenario}")
    else:
        rows = parse_count(a.rows)
        report["scenarios"] = []
        paths: dict[str, Path] = {}
        for scenario in a.scenario.split(","):
            path = data_file(rows, scenario, a.seed, a.data)
            paths[scenario] = path
        if paths:
            results = bench_scenarios(paths, rows, workers, a.repeat, not a.no_model, tuple(a.backend.split(",")),
                                      a.ceiling)
            for scenario, res in zip(paths, results):
                res["scenario"] = scenario
                res["ceiling"] = a.ceiling
                report["scenarios"].append(res)
                what = ", the pipeline without the ledger" if a.ceiling else ""
                md.append(markdown(res, f"{scenario}, {rows:,} rows{what}"))
            if len(results) > 1:
                ratios = against_first(results)
                report["against_first"] = ratios
                md += [f"### every scenario against {results[0]['scenario']} (same rounds, alternating)", "",
                       f"| scenario | command | wall s (median) | x {results[0]['scenario']} |",
                       "| --- | --- | ---: | ---: |"]
                md += [f"| {q['scenario']} | {q['command']} | {q['wall_median_s']:.2f} | {q['x_first']:.2f} |"
                       for q in ratios]
                md.append("")
        tag = "ceiling" if a.ceiling else "bench"
        name = a.name or f"{tag}-{a.scenario.replace(',', '+')}-{a.rows}"
    text = "\n".join(md)
    print(text)
    (a.results / f"{name}.md").write_text(text)
    (a.results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.results / name}.md and .json", file=sys.stderr)
    if plot:
        for png in plot.plot_report(report, a.results / name):
            print(f"wrote {png}", file=sys.stderr)
    return 0


def _plotter():
    """``profiling/plot.py`` as a module, or exit naming the extra that installs matplotlib."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("shardpay_bench_plot", HERE / "plot.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as err:
        sys.exit(f"bench: --plot needs matplotlib ({err}): pip install '.[profiling]'")
    return module


if __name__ == "__main__":
    raise SystemExit(main())
