"""Send faults at random points of a long shardpay run, many times over, and check what is left.

Usage::

    python profiling/faults.py                         # 5M rows, every fault, 20 runs each
    python profiling/faults.py --runs 3 --faults SIGINT,kill-parent
    python profiling/faults.py --input big.csv --workers 4 --decoders 3

For each fault and each run: start the installed ``shardpay FILE --workers W
--decoders D -q -o OUT --rejects REJ --stats STATS`` in its own session with a private
``TMPDIR``, send the fault at a random point of the run, then check

* the exit code, and the seconds from the fault to the parent's exit;
* the seconds until every process of the session is gone (found through
  ``/proc`` by session id, so orphans are seen too), and what is left after
  the limit;
* ``/dev/shm`` segments of the run (named ``shardpay-<parent pid>-...``);
* files left in the output folder and in ``TMPDIR``.

Faults and what passes:

=============  ==============================================================
SIGINT         exit 130 within 2 s, one line on stderr, nothing left
SIGTERM        exit 143 within 2 s, one line on stderr, nothing left
kill-parent    SIGKILL of the parent: every child gone within 5 s, nothing left
kill-decoder   SIGKILL of a random decoder: exit 1 within 5 s naming it, nothing left
kill-sequencer SIGKILL of the sequencer: the same, naming it
kill-worker    SIGKILL of a random worker: the same, naming that worker
=============  ==============================================================

The point is chosen by the run's progress, not by the clock (a shared
machine's load changes how long a run takes): for a signal to the parent, one
run in ten gets a random moment of start-up (its first 0.5 s), one in ten a
random moment of the end (0-0.5 s after the decoders have exited: the
workers' last rows, the merge and the outputs), and the others the moment
the parent (the reader) has read a random fraction of the input (its
``rchar`` in ``/proc/PID/io``). A child is killed at a random fraction of
the input.

A fault that lands after the run has done its work counts as *finished*:
exit 0 with the outputs identical to an undisturbed run's. A SIGINT/SIGTERM
that lands before ``main`` installs its handler (the interpreter's first
~0.1 s) gets Python's default: SIGTERM kills the process, SIGINT raises
KeyboardInterrupt in an import (a traceback); either way before it has made
anything. Counted as *before main*; it must leave nothing either. The script exits 1 if any
run fails.

The input (``--rows``, default 5M uniform rows) is generated once into
``profiling/data/`` (git-ignored).

``--slow-path ROWS`` measures instead what invalid rows cost: ROWS valid
deposits (the fast path), ROWS invalid rows of ten kinds in turn, and
``--per-kind`` rows of each kind on its own (consecutive rows of one kind
are the hard case for the decoder), each run once through the CLI with
``--rejects``; it prints the median wall time per row of ``--repeat``
alternating runs and the ratio to the fast path, then the same net of
start-up (the median wall of a header-only input, run in the same rounds),
which compares files of different sizes fairly::

    python profiling/faults.py --slow-path 1M --per-kind 1M --workers 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "profiling" / "data"
FAULTS = ("SIGINT", "SIGTERM", "kill-parent", "kill-decoder", "kill-sequencer", "kill-worker")
EXIT_LIMIT = {"SIGINT": 2.0, "SIGTERM": 2.0, "kill-parent": 5.0, "kill-decoder": 5.0, "kill-sequencer": 5.0,
              "kill-worker": 5.0}
"""Seconds from the fault to the parent's exit (kill-parent: to the last process's exit)."""


def shardpay_cmd() -> list[str]:
    exe = shutil.which("shardpay", path=str(Path(sys.executable).parent)) or shutil.which("shardpay")
    if exe is None:
        sys.exit("the shardpay console script is not installed (pip install -e .)")
    return [exe]


def session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> name (``comm``)."""
    import psutil

    found = {}
    for p in psutil.process_iter(["name", "status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                found[p.pid] = p.info["name"]
        except OSError:  # gone meanwhile
            continue
    return found


def segments(pid: int) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"shardpay-{pid}-"))


@dataclass
class Outcome:
    fault: str
    point: str  # where in the run the fault was sent: "start+0.21s", "read 37%", "end+0.10s"
    code: int | None = None
    exit_seconds: float | None = None  # fault -> parent exit
    gone_seconds: float | None = None  # fault -> last process of the session gone
    left_processes: list[str] = field(default_factory=list)
    left_segments: list[str] = field(default_factory=list)
    left_files: list[str] = field(default_factory=list)
    stderr: str = ""
    verdict: str = ""  # "ok", "finished", "before main", or what failed


_in_flight: list[int] = []
"""The session id of the run in progress, for clean-up if this script is interrupted."""


def rchar(pid: int) -> int:
    """Bytes the process has read so far (``/proc/PID/io``); -1 once it is gone."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def wait_for_point(proc: subprocess.Popen, phase: str, amount: float, size: int, victim: str | None,
                   t0: float) -> int:
    """Wait until the run reaches the chosen point; return the pid to signal (-1: the victim is gone).

    ``start``: ``amount`` seconds after the start. ``read``: the parent (the
    reader) has read ``amount`` of the input. ``end``: ``amount`` seconds after
    the decoders exited.
    """
    pid = proc.pid
    if phase == "start":
        time.sleep(max(0.0, t0 + amount - time.monotonic()))
        return pid
    started = False
    while proc.poll() is None:
        names = {v: k for k, v in session_processes(pid).items()}
        decoding = any(n.startswith("sp-decoder-") for n in names)
        if not started:
            started = decoding and (victim is None or victim in names)
        elif phase == "read":
            done = rchar(pid)
            if done < 0 or done >= amount * size:
                return names.get(victim, -1) if victim else pid
        elif not decoding:  # phase "end": the input is decoded
            time.sleep(amount)
            return pid
        time.sleep(0.002)
    return pid


def one_run(src: Path, workers: int, decoders: int, fault: str, rng: random.Random, work: Path,
            reference: dict[str, bytes]) -> Outcome:
    """Start a run, send ``fault`` at a random moment, and check everything; see the module docstring."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    tmp, out = run_dir / "tmp", run_dir / "out"
    tmp.mkdir()
    out.mkdir()
    cmd = [*shardpay_cmd(), str(src), "--workers", str(workers), "--decoders", str(decoders), "-q",
           "-o", str(out / "accounts.csv"), "--rejects", str(out / "rejects.csv"), "--stats", str(out / "stats.json")]
    err_path = run_dir / "stderr.txt"
    t0 = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env=dict(os.environ, TMPDIR=str(tmp)))
    pid = proc.pid
    _in_flight[:] = [pid]
    victim_name = None
    if fault.startswith("kill-") and fault != "kill-parent":
        victim_name = {"kill-decoder": f"sp-decoder-{rng.randrange(decoders)}", "kill-sequencer": "sp-sequencer",
                       "kill-worker": f"sp-worker-{rng.randrange(workers)}"}[fault]
        phase, amount = "read", rng.random()
    else:
        r = rng.random()
        phase, amount = ("start", rng.uniform(0, 0.5)) if r < 0.1 else \
            ("end", rng.uniform(0, 0.5)) if r > 0.9 else ("read", rng.random())
    outcome = Outcome(fault, f"{phase}+{amount:.2f}s" if phase != "read" else f"read {amount:.0%}")
    target = wait_for_point(proc, phase, amount, src.stat().st_size, victim_name, t0)
    sig = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}.get(fault, signal.SIGKILL)
    t_fault = time.monotonic()
    try:
        if target > 0:
            os.kill(target, sig)
    except ProcessLookupError:
        pass  # already gone: the run finished first
    try:
        outcome.code = proc.wait(timeout=EXIT_LIMIT[fault] + 30)
        outcome.exit_seconds = time.monotonic() - t_fault
    except subprocess.TimeoutExpired:
        outcome.verdict = "HANG"
    deadline = t_fault + (EXIT_LIMIT[fault] if fault == "kill-parent" else EXIT_LIMIT[fault] + 5)
    while (alive := session_processes(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    outcome.gone_seconds = None if alive else time.monotonic() - t_fault
    outcome.left_processes = sorted(alive.values())
    for p in alive:  # clean up for the next run
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    _in_flight.clear()
    outcome.left_segments = segments(pid)
    outcome.stderr = err_path.read_text(errors="replace")
    files = sorted(os.listdir(out))
    outcome.left_files = [f"tmp/{n}" for n in sorted(os.listdir(tmp))]
    if not outcome.verdict:
        outcome.verdict = judge(outcome, files, out, victim_name, reference)
    if outcome.verdict in ("ok", "before main"):
        outcome.left_files += [f"out/{n}" for n in files]
    shutil.rmtree(run_dir, ignore_errors=True)
    return outcome


def judge(o: Outcome, files: list[str], out: Path, victim: str | None, reference: dict[str, bytes]) -> str:
    """'ok', 'finished', 'before main', or a short description of what failed."""
    problems = []
    if o.left_processes:
        problems.append(f"processes left: {o.left_processes}")
    if o.left_segments:
        problems.append(f"segments left: {o.left_segments}")
    if o.left_files:
        problems.append(f"files left: {o.left_files}")
    if "Traceback" in o.stderr:
        problems.append("traceback on stderr")
    if o.code == 0:  # the fault came after the work was done: outputs must be complete
        got = {name: (out / name).read_bytes() for name in files if name != "stats.json"}
        if got != reference:
            problems.append("exit 0 but outputs differ from an undisturbed run")
        return "; ".join(problems) or "finished"
    if files:
        problems.append(f"outputs left: {files}")
    if o.fault in ("SIGINT", "SIGTERM"):
        signum = getattr(signal, o.fault)
        if o.code == -signum:  # before main(): SIGTERM kills; SIGINT raises KeyboardInterrupt in an import
            if o.fault == "SIGINT" and o.stderr.rstrip().endswith("KeyboardInterrupt"):
                problems = [p for p in problems if p != "traceback on stderr"]
            return "; ".join(problems) or "before main"
        if o.code != 128 + signum:
            problems.append(f"exit {o.code}, expected {128 + signum}")
        elif o.stderr != f"shardpay: error: interrupted by {o.fault}\n":
            problems.append(f"stderr {o.stderr!r}")
    elif o.fault == "kill-parent":
        if o.gone_seconds is None:
            problems.append("children still running after 5 s")
    else:
        want = f"the {victim.removeprefix('sp-').replace('-', ' ')} process"
        if o.code != 1:
            problems.append(f"exit {o.code}, expected 1")
        elif want not in o.stderr or "SIGKILL" not in o.stderr or o.stderr.count("\n") != 1:
            problems.append(f"stderr {o.stderr!r}")
    if o.exit_seconds is not None and o.fault != "kill-parent" and o.exit_seconds > EXIT_LIMIT[o.fault]:
        problems.append(f"exit after {o.exit_seconds:.2f} s")
    return "; ".join(problems) or "ok"


def baseline(src: Path, workers: int, work: Path) -> tuple[float, dict[str, bytes]]:
    """Two undisturbed runs: the shorter wall time (the first may read a cold cache), and the outputs."""
    out = Path(tempfile.mkdtemp(prefix="baseline-", dir=work))
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        subprocess.run([*shardpay_cmd(), str(src), "--workers", str(workers), "-q", "-o", str(out / "accounts.csv"),
                        "--rejects", str(out / "rejects.csv")], check=True)
        times.append(time.monotonic() - t0)
    ref = {name: (out / name).read_bytes() for name in ("accounts.csv", "rejects.csv")}
    shutil.rmtree(out)
    return min(times), ref


def table(outcomes: list[Outcome], faults: list[str]) -> str:
    head = ("fault", "runs", "ok", "finished first", "before main", "failed", "exit codes", "max s to exit",
            "max s all gone", "left: procs/shm/files")
    rows = []
    for fault in faults:
        mine = [o for o in outcomes if o.fault == fault]
        codes: dict[str, int] = {}
        for o in mine:
            codes[str(o.code)] = codes.get(str(o.code), 0) + 1
        exits = [o.exit_seconds for o in mine if o.exit_seconds is not None and o.verdict != "finished"]
        gones = [o.gone_seconds for o in mine if o.gone_seconds is not None and o.verdict != "finished"]
        rows.append((
            fault, str(len(mine)),
            str(sum(o.verdict == "ok" for o in mine)),
            str(sum(o.verdict == "finished" for o in mine)),
            str(sum(o.verdict == "before main" for o in mine)),
            str(sum(o.verdict not in ("ok", "finished", "before main") for o in mine)),
            " ".join(f"{c}x{n}" for c, n in sorted(codes.items())),
            f"{max(exits):.2f}" if exits else "-",
            f"{max(gones):.2f}" if gones else "-",
            f"{sum(len(o.left_processes) for o in mine)}/{sum(len(o.left_segments) for o in mine)}/"
            f"{sum(len(o.left_files) for o in mine)}",
        ))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


INVALID_KINDS = {  # the same kinds as tests/integration/test_faults.py
    "more than 4 decimals": lambda i: b"deposit,%d,%d,1.23456\n" % (i % 65536, i),
    "unterminated quote": lambda i: b'deposit,%d,%d,"1.5\n' % (i % 65536, i),
    "not UTF-8": lambda i: b"deposit,%d,%d,1.5\xff\n" % (i % 65536, i),
    "NUL": lambda i: b"deposit,%d,%d,1.5\x00\n" % (i % 65536, i),
    "five fields": lambda i: b"deposit,%d,%d,1.5,7\n" % (i % 65536, i),
    "type in upper case": lambda i: b"DEPOSIT,%d,%d,1.5\n" % (i % 65536, i),
    "tx not a number": lambda i: b"deposit,%d,x%d,1.5\n" % (i % 65536, i),
    "amount zero": lambda i: b"deposit,%d,%d,0\n" % (i % 65536, i),
    "unknown type": lambda i: b"refund,%d,%d,1.5\n" % (i % 65536, i),
    "client out of range": lambda i: b"deposit,70000,%d,1.5\n" % i,
}


def slow_path(rows: int, workers: int, per_kind: int, repeat: int) -> int:
    """Time ``rows`` valid rows, ``rows`` invalid rows (every kind in turn) and each kind alone.

    Every case runs ``repeat`` times, the cases alternating round by round so
    that machine noise hits each alike; the median wall time counts.
    """
    work = Path(tempfile.mkdtemp(prefix="shardpay-slowpath-"))
    kinds = list(INVALID_KINDS.values())

    def write(name: str, row) -> Path:
        path = work / f"{name}.csv"
        n = per_kind if name.startswith("kind-") else rows
        with open(path, "wb") as f:
            f.write(b"type,client,tx,amount\n")
            for start in range(1, n + 1, 100_000):
                f.write(b"".join(row(i) for i in range(start, min(n, start + 99_999) + 1)))
        return path

    def timed(path: Path) -> float:
        t0 = time.perf_counter()
        subprocess.run([*shardpay_cmd(), str(path), "-q", "--workers", str(workers), "-o", str(work / "out.csv"),
                        "--rejects", str(work / "rejects.csv")], check=True)
        return time.perf_counter() - t0

    try:
        cases = [("valid deposits (fast path)", rows, write("valid", lambda i: b"deposit,%d,%d,1.5\n" % (i % 65536, i))),
                 ("invalid, ten kinds in turn", rows, write("mixed", lambda i: kinds[i % len(kinds)](i)))]
        cases += [(f"invalid, only: {name}", per_kind, write(f"kind-{k}", row))
                  for k, (name, row) in enumerate(INVALID_KINDS.items())]
        empty = work / "empty.csv"
        empty.write_bytes(b"type,client,tx,amount\n")
        walls: list[list[float]] = [[] for _ in cases]
        start_up: list[float] = []
        for _ in range(repeat):
            start_up.append(timed(empty))
            for k, (_, _, path) in enumerate(cases):
                walls[k].append(timed(path))
        fixed = statistics.median(start_up)
        print(f"--workers {workers}, through the CLI with -o and --rejects, median of {repeat} alternating runs; "
              f"start-up (a header-only input) {fixed:.2f} s")
        print("| input | rows | wall s (median) | us a row | x fast path | us a row net of start-up | x fast path net |")
        print("|---|---|---|---|---|---|---|")
        fast = fast_net = None
        for (label, n, _), times in zip(cases, walls):
            seconds = statistics.median(times)
            per_row, net = seconds / n, max(seconds - fixed, 0.0) / n
            fast, fast_net = fast or per_row, fast_net or net
            print(f"| {label} | {n:,} | {seconds:.2f} | {per_row * 1e6:.2f} | {per_row / fast:.1f} | "
                  f"{net * 1e6:.2f} | {net / fast_net:.1f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", type=Path, help="input CSV (default: generate --rows uniform rows)")
    p.add_argument("--rows", default="5M", help="rows to generate when --input is not given (default 5M)")
    p.add_argument("--runs", type=int, default=20, help="runs per fault (default 20)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--decoders", type=int, default=2)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from {', '.join(FAULTS)}")
    p.add_argument("--seed", type=int, default=1, help="seed of the random moments (default 1)")
    p.add_argument("--slow-path", metavar="ROWS",
                   help="instead of faults: time ROWS invalid rows against ROWS valid rows (e.g. 1M)")
    p.add_argument("--per-kind", metavar="ROWS", default="100K",
                   help="with --slow-path: rows of each invalid kind alone (default 100K)")
    p.add_argument("--repeat", type=int, default=3, help="with --slow-path: runs of each case (default 3)")
    args = p.parse_args(argv)
    if args.slow_path:
        from shardpay.testing.generate import parse_count

        return slow_path(parse_count(args.slow_path), args.workers, parse_count(args.per_kind), args.repeat)
    faults = args.faults.split(",")
    for f in faults:
        if f not in FAULTS:
            p.error(f"unknown fault {f!r}")
    src = args.input
    if src is None:
        from shardpay.testing.generate import generate, parse_count

        DATA.mkdir(parents=True, exist_ok=True)
        src = DATA / f"faults-uniform-{args.rows}.csv"
        if not src.exists():
            print(f"generating {src} ...", flush=True)
            with open(src.with_suffix(".part"), "wb") as f:
                generate(parse_count(args.rows), f, seed=1, scenario="uniform")
            src.with_suffix(".part").rename(src)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    # A shell starts background jobs with SIGINT ignored, and an ignored signal
    # stays ignored across exec: the runs would inherit that. A handled one is
    # reset to the default at exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="shardpay-faults-"))
    try:
        duration, reference = baseline(src, args.workers, work)
        print(f"input {src} ({src.stat().st_size / 2**20:,.0f} MiB), --workers {args.workers} "
              f"--decoders {args.decoders}: "
              f"an undisturbed run takes {duration:.1f} s", flush=True)
        rng = random.Random(args.seed)
        outcomes = []
        for fault in faults:
            for i in range(args.runs):
                o = one_run(src, args.workers, args.decoders, fault, rng, work, reference)
                outcomes.append(o)
                shown = f"{o.exit_seconds:.2f}" if o.exit_seconds is not None else "-"
                gone = f"{o.gone_seconds:.2f}" if o.gone_seconds is not None else "-"
                print(f"{fault:14} run {i + 1:2}: at {o.point:10} -> exit {o.code} after {shown} s, "
                      f"all gone after {gone} s: {o.verdict}", flush=True)
    finally:
        for sid in _in_flight:  # interrupted mid-run: leave nothing of it either
            for p in session_processes(sid):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(outcomes, faults))
    failed = [o for o in outcomes if o.verdict not in ("ok", "finished", "before main")]
    for o in failed:
        print(f"FAILED {o.fault} at {o.point}: {o.verdict}; stderr: {o.stderr[-500:]!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
