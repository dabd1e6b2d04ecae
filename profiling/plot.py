"""PNG charts of ``profiling/bench.py`` results (matplotlib, optional).

Usage::

    python profiling/bench.py ... --plot        # charts of the run just made
    python profiling/plot.py RESULTS.json [RESULTS.json ...] [--out DIR]

Needs matplotlib: ``pip install '.[profiling]'``. Each results JSON (the one
``bench.py`` writes beside its Markdown table) gives the charts its kind
allows, named after it (``NAME-throughput.png`` for ``NAME.json``;
``memory.png`` for ``memory.json``):

* ``-throughput``: rows/s of every ``shardpay --workers N`` command against
  the reference model's, each bar labelled with its multiple of the
  reference. A reader-ceiling JSON given in the same call, of the same input
  file, adds the reader-alone rate as a line: the most any worker count can
  reach (profiling/README.md, "What bounds throughput").
* ``-stages``: CPU a row by stage for every shardpay command (or every
  scenario), from the ``--stats`` of its median run: the reader's decode,
  its route (tx-id claims, split by shard, frames, ring copies; the time it
  was blocked on full rings taken out), the rest of the reader (reading,
  start-up), the workers' apply (the ledger), the rest of the workers
  (unpacking frames, waiting on the ring's semaphore), and the parent.
  Each process's share is its CPU time (``--stats``); the split inside it
  follows the stage timers, which count wall time (``perf_counter``): where
  they add up to more than the process's CPU (it waited for a core), they
  are scaled down to it.
* ``-memory`` (``bench.py --memory``): peak RSS of all processes against
  stored transactions, with the least-squares line and its slope.
* ``-reader`` (``bench.py --reader-ceiling``): the reader's rows/s alone
  against the reference model's.

The charts are drawn with the Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

__all__ = ["plot_files", "plot_memory", "plot_reader", "plot_report", "plot_stages", "plot_throughput", "stage_ns"]

REFERENCE = "reference model"
STAGES = ("reader decode", "reader route", "reader other", "worker apply", "worker other", "parent")
"""The stacked parts of a stages chart, in drawing order."""
COLORS = ("#4c72b0", "#55a868", "#a6bddb", "#c44e52", "#f4a582", "#8c8c8c")
SHARDPAY = "#4c72b0"
GREY = "#8c8c8c"
DPI = 110


def _subtitle(report: dict) -> str:
    return f"{report.get('date', '?')}; {report.get('machine', '?')}"


def _rows_label(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows:,}"


def stage_ns(row: dict, rows: int) -> dict[str, float]:
    """CPU nanoseconds per input row of each of :data:`STAGES`, from one table row's ``stages``.

    Args:
        row: a row of a scenario's ``table`` in bench.py's JSON, with ``stages``.
        rows: the input file's row count (the scenario's ``rows``).

    Returns:
        ``{stage: ns a row}`` for every name of :data:`STAGES`.
    """
    g = row["stages"]
    routed = sum(g["rows_per_shard"])
    decode = rows / g["reader_decode_rows_per_s"] if g["reader_decode_rows_per_s"] else 0.0
    route = routed / g["reader_route_rows_per_s"] if g["reader_route_rows_per_s"] else 0.0
    route = max(route - g["reader_blocked_on_full_rings_s"], 0.0)
    reader_cpu = g["reader_cpu_s"]
    if decode + route > reader_cpu:  # the timers counted time the reader waited for a core
        scale = reader_cpu / (decode + route)
        decode, route = decode * scale, route * scale
    worker_cpu = sum(g["worker_cpu_s"])
    apply = sum(min(n / r, cpu) for n, r, cpu in zip(g["rows_per_shard"], g["worker_apply_rows_per_s"],
                                                      g["worker_cpu_s"]) if r)
    seconds = {
        "reader decode": decode,
        "reader route": route,
        "reader other": reader_cpu - decode - route,
        "worker apply": apply,
        "worker other": worker_cpu - apply,
        "parent": g["parent_cpu_s"],
    }
    return {k: v / rows * 1e9 for k, v in seconds.items()}


def _png(out: Path | str, kind: str) -> Path:
    """``{out}-{kind}.png``, or ``{out}.png`` when ``out``'s name is ``kind`` already (``memory``)."""
    out = Path(out)
    return out.with_name(f"{out.name}.png" if out.name == kind else f"{out.name}-{kind}.png")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_throughput(report: dict, out: Path, ceilings: list[dict] | None = None) -> list[Path]:
    """One chart per scenario of ``report`` with two or more shardpay commands: rows/s by command.

    Args:
        report: a bench.py JSON report (``scenarios`` with ``table``).
        out: path prefix; writes ``{out}-throughput.png`` (one scenario) or
            ``{out}-{scenario}-throughput.png``.
        ceilings: reader-ceiling reports; one of the same input file adds the
            reader-alone rate (its fewest draining workers) as a line.

    Returns:
        The paths written.
    """
    written = []
    scenarios = [s for s in report.get("scenarios", []) if "table" in s]
    for sc in scenarios:
        table = sc["table"]
        engine = [r for r in table if r["command"].startswith("shardpay")]
        if len(engine) < 2:
            continue
        ref = next((r for r in table if r["command"] == REFERENCE), None)
        bars = ([ref] if ref else []) + engine
        labels = ["reference\n(plain Python)" if r is ref else r["command"].replace("shardpay ", "").replace(" ", "\n", 1)
                  for r in bars]
        values = [r["rows_per_s"] / 1e6 for r in bars]
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        drawn = ax.bar(labels, values, color=[GREY if r is ref else SHARDPAY for r in bars], width=0.6)
        ax.bar_label(drawn, labels=[f"{v:.2f}M" + (f"\n{r['x_faster_than_reference']:.2f}x" if r is not ref and
                                                       r.get("x_faster_than_reference") else "")
                                    for v, r in zip(values, bars)], padding=2, fontsize=9)
        top = max(values)
        for c in ceilings or []:
            for csc in c.get("scenarios", []):
                ceiling = csc.get("reader_ceiling")
                if ceiling and csc.get("file") == sc["file"] and ceiling["readers"]:
                    alone = min(ceiling["readers"], key=lambda x: x["workers"])
                    rate = alone["rows_per_s"] / 1e6
                    ax.axhline(rate, color="#dd8452", linestyle="--", linewidth=1.2,
                               label=f"reader alone ({rate:.2f}M rows/s, {c.get('date', '?')})")
                    top = max(top, rate)
        ax.set_ylim(0, top * 1.25)
        ax.set_ylabel("million rows/s (median wall)")
        name = sc.get("scenario", sc["file"])
        ax.set_title(f"{name}, {_rows_label(sc['rows'])} rows: throughput by --workers\n{_subtitle(report)}",
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        written.append(_save(fig, _png(out, "throughput" if len(scenarios) == 1 else f"{name}-throughput")))
    return written


def plot_stages(report: dict, out: Path) -> list[Path]:
    """Stacked bars of CPU ns a row by stage, one bar per shardpay command of every scenario.

    Writes ``{out}-stages.png``; returns the paths written (none if no row has stages).
    """
    scenarios = [s for s in report.get("scenarios", []) if "table" in s]
    bars: list[tuple[str, dict[str, float], float]] = []
    for sc in scenarios:
        for r in sc["table"]:
            if "stages" in r:
                name = r["command"].replace("shardpay ", "")
                if len(scenarios) > 1:
                    name = f"{sc.get('scenario', sc['file'])}, {name}"
                bars.append((name, stage_ns(r, sc["rows"]), r["wall_median_s"]))
    if not bars:
        return []
    bars.reverse()  # barh draws bottom-up: keep the table's order top-down
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.45 * len(bars)), layout="constrained")
    names = [b[0] for b in bars]
    left = [0.0] * len(bars)
    for stage, color in zip(STAGES, COLORS):
        widths = [b[1][stage] for b in bars]
        ax.barh(names, widths, left=left, color=color, label=stage, height=0.65)
        left = [x + w for x, w in zip(left, widths)]
    for y, (total, (_, _, wall)) in enumerate(zip(left, bars)):
        ax.text(total, y, f"  {total:,.0f} ns  ({wall:.2f} s wall)", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.35)
    ax.set_xlabel("CPU ns per input row, all processes (stage timers and --stats of the median run)")
    rows = {_rows_label(s["rows"]) for s in scenarios}
    ax.set_title(f"Where the CPU goes, {', '.join(sorted(rows))} rows\n{_subtitle(report)}", fontsize=9)
    fig.legend(ncol=6, fontsize=8, loc="outside lower center", frameon=False, handlelength=1, columnspacing=1)
    ax.spines[["top", "right"]].set_visible(False)
    return [_save(fig, _png(out, "stages"))]


def plot_memory(report: dict, out: Path) -> list[Path]:
    """Peak RSS of all processes against stored transactions (``bench.py --memory``).

    Writes ``{out}-memory.png``; returns the paths written.
    """
    mem = report.get("memory")
    if not mem:
        return []
    pts = mem["points"]
    xs = [p["stored"] / 1e6 for p in pts]
    ys = [p["peak_rss_all_bytes"] / 2**20 for p in pts]
    slope = mem["bytes_per_stored_deposit"]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    line = [my + (x - mx) * slope * 1e6 / 2**20 for x in xs]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(xs, ys, "o", color=SHARDPAY)
    ax.plot(xs, line, "-", color=GREY, label=f"least squares: {slope} bytes per stored transaction")
    for p, x, y in zip(pts, xs, ys):
        ax.annotate(f"{_rows_label(p['rows'])} rows: {y:.0f} MiB", (x, y), textcoords="offset points",
                    xytext=(6, -12), fontsize=8)
    ax.set_xlabel("stored deposits and withdrawals (millions)")
    ax.set_ylabel("peak RSS, all processes (MiB)")
    ax.set_ylim(0, max(ys) * 1.2)
    ax.set_xlim(0, max(xs) * 1.25)
    ax.set_title(f"Memory against stored transactions (uniform)\n{_subtitle(report)}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return [_save(fig, _png(out, "memory"))]


def plot_reader(report: dict, out: Path) -> list[Path]:
    """The reader alone against the reference model (``bench.py --reader-ceiling``).

    Writes ``{out}-reader.png`` (one bar group per scenario); returns the paths written.
    """
    scenarios = [s for s in report.get("scenarios", []) if "reader_ceiling" in s]
    if not scenarios:
        return []
    labels, values, colors, notes = [], [], [], []
    for sc in scenarios:
        c = sc["reader_ceiling"]
        prefix = f"{sc['scenario']}\n" if len(scenarios) > 1 else ""
        if c["reference"]:
            labels.append(prefix + "reference")
            values.append(c["reference"]["rows_per_s"] / 1e6)
            colors.append(GREY)
            notes.append("")
        for r in c["readers"]:
            labels.append(prefix + f"reader,\n{r['workers']} drain(s)")
            values.append(r["rows_per_s"] / 1e6)
            colors.append("#dd8452")
            notes.append(f"\n{r['x_reference']:.2f}x" if r["x_reference"] else "")
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(values), 4))
    drawn = ax.bar(labels, values, color=colors, width=0.6)
    ax.bar_label(drawn, labels=[f"{v:.2f}M{n}" for v, n in zip(values, notes)], padding=2, fontsize=9)
    ax.set_ylim(0, max(values) * 1.3)
    ax.set_ylabel("million rows/s (median wall)")
    ax.set_title(f"The reader alone (decode, claim, route; workers only drain)\n{_subtitle(report)}", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return [_save(fig, _png(out, "reader"))]


def plot_report(report: dict, out: Path, ceilings: list[dict] | None = None) -> list[Path]:
    """Every chart ``report`` allows, at path prefix ``out`` (e.g. ``profiling/results/NAME``).

    Args:
        report: one bench.py JSON report.
        out: path prefix of the PNG files.
        ceilings: reader-ceiling reports to draw on throughput charts (see
            :func:`plot_throughput`); a reader-ceiling ``report`` is its own.

    Returns:
        The paths written, in order.
    """
    ceilings = list(ceilings or [])
    if any("reader_ceiling" in s for s in report.get("scenarios", [])):
        ceilings.append(report)
    return [*plot_throughput(report, out, ceilings), *plot_stages(report, out), *plot_memory(report, out),
            *plot_reader(report, out)]


def plot_files(paths: list[Path], out_dir: Path | None = None) -> list[Path]:
    """Charts of each results JSON in ``paths``, next to it (or in ``out_dir``).

    The reader-ceiling reports among them are also drawn on the throughput
    charts of the others (same input file).
    """
    reports = [(p, json.loads(p.read_text())) for p in paths]
    ceilings = [r for _, r in reports if any("reader_ceiling" in s for s in r.get("scenarios", []))]
    written = []
    for path, report in reports:
        out = (out_dir or path.parent) / path.stem
        written += plot_report(report, out, [c for c in ceilings if c is not report])
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="bench.py JSON results")
    p.add_argument("--out", type=Path, help="folder for the PNG files (default: beside each JSON)")
    a = p.parse_args(argv)
    written = plot_files(a.results, a.out)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if not written:
        print("plot: nothing to draw in these results", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
