"""PNG charts of ``profiling/bench.py`` results (matplotlib, optional).

Usage::

    python profiling/bench.py ... --plot        # charts of the run just made
    python profiling/plot.py RESULTS.json [RESULTS.json ...] [--out DIR]

Needs matplotlib: ``pip install '.[profiling]'``. Each results JSON (the one
``bench.py`` writes beside its Markdown table) gives the charts its kind
allows, named after it (``NAME-throughput.png`` for ``NAME.json``;
``memory.png`` for ``memory.json``):

* ``-throughput``: rows/s of every shardpay command against the reference
  model's, each bar labelled with its multiple of the reference. A
  ``--ceiling`` JSON given in the same call, of the same input file, adds
  its fastest rate as a line: the pipeline without the ledger, the most any
  ledger can reach (profiling/README.md, "What bounds throughput").
* ``-stages``: CPU nanoseconds a row by stage for every shardpay command (or
  every scenario), from the ``--stats`` of its median run: the reader (the
  parent: reading, cutting, start-up and the merge), the decoders, the
  sequencer and the workers, each its processes' CPU time.
* ``-memory`` (``bench.py --memory``): peak RSS of all processes against
  stored transactions, with the least-squares line and its slope.

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

__all__ = ["plot_files", "plot_memory", "plot_report", "plot_stages", "plot_throughput", "stage_ns"]

REFERENCE = "reference model"
STAGES = ("reader", "decoders", "sequencer", "workers")
"""The stacked parts of a stages chart, in drawing order (the keys of ``cpu_ns_per_row``)."""
COLORS = ("#8c8c8c", "#4c72b0", "#55a868", "#c44e52")
SHARDPAY = "#4c72b0"
GREY = "#8c8c8c"
DPI = 110


def _subtitle(report: dict) -> str:
    return f"{report.get('date', '?')}; {report.get('machine', '?')}"


def _rows_label(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows:,}"


def stage_ns(row: dict) -> dict[str, float]:
    """CPU nanoseconds per input row of each of :data:`STAGES`, from one table row's ``stages``
    (a row of a scenario's ``table`` in bench.py's JSON)."""
    return {stage: row["stages"]["cpu_ns_per_row"][stage] for stage in STAGES}


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
        ceilings: ``--ceiling`` reports; one of the same input file adds its
            fastest rate as a line.

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
                if csc.get("ceiling") and csc.get("file") == sc["file"]:
                    best = max((r for r in csc["table"] if r["command"].startswith("shardpay")),
                               key=lambda r: r["rows_per_s"])
                    rate = best["rows_per_s"] / 1e6
                    ax.axhline(rate, color="#dd8452", linestyle="--", linewidth=1.2,
                               label=f"without the ledger ({rate:.2f}M rows/s, {best['command']})")
                    top = max(top, rate)
        ax.set_ylim(0, top * 1.25)
        ax.set_ylabel("million rows/s (median wall)")
        name = sc.get("scenario", sc["file"])
        what = "without the ledger" if sc.get("ceiling") else "throughput"
        ax.set_title(f"{name}, {_rows_label(sc['rows'])} rows: {what}\n{_subtitle(report)}",
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
                bars.append((name, stage_ns(r), r["wall_median_s"]))
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
    ax.set_xlabel("CPU ns per input row, all processes (--stats of the median run)")
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


def plot_report(report: dict, out: Path, ceilings: list[dict] | None = None) -> list[Path]:
    """Every chart ``report`` allows, at path prefix ``out`` (e.g. ``profiling/results/NAME``).

    Args:
        report: one bench.py JSON report.
        out: path prefix of the PNG files.
        ceilings: ``--ceiling`` reports to draw on throughput charts (see
            :func:`plot_throughput`).

    Returns:
        The paths written, in order.
    """
    return [*plot_throughput(report, out, ceilings), *plot_stages(report, out), *plot_memory(report, out)]


def plot_files(paths: list[Path], out_dir: Path | None = None) -> list[Path]:
    """Charts of each results JSON in ``paths``, next to it (or in ``out_dir``).

    The ``--ceiling`` reports among them are also drawn on the throughput
    charts of the others (same input file).
    """
    reports = [(p, json.loads(p.read_text())) for p in paths]
    ceilings = [r for _, r in reports if any(s.get("ceiling") for s in r.get("scenarios", []))]
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
