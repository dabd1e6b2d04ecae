"""Faults and hostile input, end to end: it keeps working, loses nothing, leaks nothing.

Every test runs the installed ``shardpay`` as a user would and checks the
whole promise, not only the exit code:

* signals and dying processes: the exit code and how fast it comes, one line
  on stderr naming what happened, and nothing left behind -- no process of
  the run (reader, workers, resource tracker), no ``/dev/shm`` segment of the
  run, no output, rejects, stats or temporary file;
* output faults: exit 1, one clear line, no traceback, no partial file;
* hostile and broken input: a clear fatal error, or a reject with line and
  reason while every other row comes out exactly as the reference model says.

A run is started in a new session (:class:`Run`), so every process it ever
made is found through ``/proc`` by session id, even after its parent died;
it gets a private ``TMPDIR`` so that its temporary files can be counted.
``profiling/faults.py`` sends the same faults at random points of a 5M-row
run, many times over.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import ctypes
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shardpay.testing import model
from shardpay.testing.generate import generate
from shardpay.reader import MAX_LINE_BYTES
from tests.conftest import ROOT, run_cli, shardpay_cmd

FAULT_LAUNCHER = ROOT / "tests" / "fault_launcher.py"

BIG_ROWS = 300_000
"""Rows of the input the signal tests interrupt (a :class:`Run` sends them down a pipe
it keeps open, so the run is always in the middle of its input)."""
HEADER = b"type,client,tx,amount\n"
OUTPUT_HEADER = "client,available,held,total,locked\n"


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "big.csv"
    with open(path, "wb") as f:
        generate(BIG_ROWS, f, seed=5, scenario="uniform")
    return path


# --------------------------------------------------------------------------
# A run and everything it leaves behind
# --------------------------------------------------------------------------


def session_processes(sid: int) -> list[int]:
    """Pids of the live (not zombie) processes in session ``sid`` (psutil)."""
    import psutil

    pids = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                pids.append(p.pid)
        except OSError:  # gone meanwhile
            continue
    return pids


def process_names(pids: list[int]) -> dict[str, int]:
    """``comm`` name -> pid, e.g. ``sp-sequencer``, ``sp-decoder-0``, ``sp-worker-0``."""
    import psutil

    names = {}
    for pid in pids:
        try:
            names[psutil.Process(pid).name()] = pid
        except psutil.Error:  # gone meanwhile
            pass
    return names


def drop_file_permission_override() -> None:
    """preexec_fn: the program run next obeys file modes even as root.

    Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so
    the exec'd process never gets them; a no-op for other users.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Run:
    """One ``shardpay -`` run in its own session, writing every output into ``tmp_path/out``.

    Its standard input is a pipe that gets ``source``'s bytes and stays open: the run
    reads, decodes and applies them, then waits for more, so a fault always lands
    in the middle of its input, however fast the machine.

    Args:
        tmp_path: a fresh folder for this run.
        source: the input's bytes, a file.
        args: more command-line arguments.
        env: extra environment variables.
        fault: a fault to inject (``tests/fault_launcher.py``), or None.
    """

    def __init__(self, tmp_path: Path, source: Path, *args: str, env: dict[str, str] | None = None,
                 fault: str | None = None) -> None:
        self.tmpdir = tmp_path / "tmp"
        self.outdir = tmp_path / "out"
        self.tmpdir.mkdir()
        self.outdir.mkdir()
        self.stderr_path = tmp_path / "stderr.txt"
        program = shardpay_cmd() if fault is None else [sys.executable, str(FAULT_LAUNCHER), fault]
        cmd = [*program, "-", *args, "-q", "-o", str(self.outdir / "accounts.csv"),
               "--rejects", str(self.outdir / "rejects.csv"), "--stats", str(self.outdir / "stats.json")]
        full_env = dict(os.environ, TMPDIR=str(self.tmpdir), **(env or {}))
        with open(self.stderr_path, "wb") as err:  # a file: children that outlive the parent cannot block us
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                         env=full_env, start_new_session=True)
        self.pid = self.proc.pid
        self.t_signal = 0.0
        threading.Thread(target=self._send, args=(source.read_bytes(),), daemon=True).start()

    def _send(self, data: bytes) -> None:
        """Write the input to the run's pipe, and keep the pipe open."""
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the run ended (or was ended) first
            pass

    def children(self, workers: int, decoders: int = 2, timeout: float = 20) -> dict[str, int]:
        """Wait until the sequencer, every decoder and every worker run; return ``{name: pid}``."""
        want = {"sp-sequencer"} | {f"sp-decoder-{k}" for k in range(decoders)} | {f"sp-worker-{i}" for i in range(workers)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = process_names(session_processes(self.pid))
            if want <= names.keys():
                return {n: names[n] for n in want}
            assert self.proc.poll() is None, f"the run ended early: {self.stderr()}"
            time.sleep(0.01)
        raise AssertionError(f"children did not start: {names}")

    def signal(self, pid: int, sig: int) -> None:
        self.t_signal = time.monotonic()
        os.kill(pid, sig)

    def wait(self, timeout: float) -> tuple[int, float]:
        """The parent's exit code and the seconds from the last signal to its exit."""
        try:
            code = self.proc.wait(timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit within {timeout + 5} s of the signal") from None
        return code, time.monotonic() - self.t_signal

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def leftovers(self, within: float = 5.0) -> dict[str, list]:
        """What the run left once its processes are gone (waiting up to ``within`` s for them)."""
        deadline = time.monotonic() + within
        while (alive := session_processes(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return {
            "processes": sorted(process_names(alive)),
            "segments": sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"shardpay-{self.pid}-")),
            "outputs": sorted(os.listdir(self.outdir)),
            "temporary files": sorted(os.listdir(self.tmpdir)),
        }

    def assert_nothing_left(self, within: float = 5.0) -> None:
        left = self.leftovers(within)
        assert left == {"processes": [], "segments": [], "outputs": [], "temporary files": []}, left

    def kill_all(self) -> None:
        """Test clean-up: nothing of the run survives a failed test."""
        for pid in session_processes(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()


@pytest.fixture
def runs():
    """Start :class:`Run` s; whatever happens, kill what is left of them afterwards."""
    started: list[Run] = []

    def start(*args, **kwargs) -> Run:
        run = Run(*args, **kwargs)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill_all()


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), f"expected one line on stderr, got {text!r}"
    assert "Traceback" not in text
    return text


# --------------------------------------------------------------------------
# Signals and dying processes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_exits_fast_and_leaves_nothing(big_csv, tmp_path, runs, sig, code):
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2")
    run.children(workers=2)
    time.sleep(0.3)
    run.signal(run.pid, sig)
    rc, seconds = run.wait(timeout=2)
    assert rc == code and seconds < 2, (rc, seconds)
    assert one_line(run.stderr()) == f"shardpay: error: interrupted by {signal.Signals(sig).name}\n"
    run.assert_nothing_left(within=2)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_whole_process_group(big_csv, tmp_path, runs, sig, code):
    """A terminal's Ctrl-C, or a service manager's stop, signals every process of the group:
    the children ignore it, the parent decides and stops them."""
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2")
    run.children(workers=2)
    time.sleep(0.3)
    run.t_signal = time.monotonic()
    os.killpg(run.pid, sig)
    rc, seconds = run.wait(timeout=2)
    assert rc == code and seconds < 2, (rc, seconds)
    assert one_line(run.stderr()) == f"shardpay: error: interrupted by {signal.Signals(sig).name}\n"
    run.assert_nothing_left(within=2)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4])
def test_sigterm_during_start_up_leaves_nothing(big_csv, tmp_path, runs, delay):
    """Interpreter start, imports, ring creation, forks: a signal anywhere there leaks nothing.

    Before ``main`` installs its handler the default action kills the
    process (-15), which has then made nothing yet; after it, exit 143.
    """
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2")
    time.sleep(delay)
    run.signal(run.pid, signal.SIGTERM)
    rc, seconds = run.wait(timeout=2)
    assert rc in (143, -signal.SIGTERM) and seconds < 2, (rc, seconds)
    assert "Traceback" not in run.stderr()
    run.assert_nothing_left(within=2)


def test_a_session_its_caller_never_received_is_removed_at_exit():
    """A signal between the end of ``LocalSession.__init__`` and the caller's assignment
    leaves a session nobody closes. Interpreter exit removes it: its children
    ignore the SIGTERM multiprocessing's exit sends to daemon children, and the
    process waited for them for ever (1 run in ~200 SIGTERMs at 0.1 s)."""
    code = ("import os, sys; from shardpay.local import LocalSession; "
            "s = LocalSession(2, 2, False, None); "
            "print(os.getpid(), len(s.children), flush=True); del s; sys.exit(143)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        pid, children = map(int, proc.stdout.readline().split())
        assert children == 5
        assert proc.wait(timeout=10) == 143
    finally:
        for p in session_processes(proc.pid):
            os.kill(p, signal.SIGKILL)
        proc.kill()
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 2
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session_processes(proc.pid) == []
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"shardpay-{pid}-")] == []


def test_the_console_script_reaches_main_before_importing_the_engine():
    """What runs before ``main`` installs its handlers must stay small.

    The console script imports ``shardpay.cli`` (and the package) first; a
    Ctrl-C in there gets Python's default: a KeyboardInterrupt traceback, and
    inside msgspec's decoder construction at times a SIGSEGV or a lost signal
    (100 of 150 SIGINTs sent in the first 0.15 s, with a package that imports
    the engine eagerly). ``main`` imports the engine with the signals held.
    """
    code = "import sys, shardpay.cli; print([m for m in ('shardpay.engine', 'shardpay.decode', 'msgspec') " \
           "if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)


@pytest.mark.parametrize("gap", [0.0005, 0.002, 0.01])
def test_a_burst_of_signals_still_exits_once_and_leaves_nothing(big_csv, tmp_path, runs, gap):
    """Ctrl-C pressed again and again: the first signal ends the run, the others change nothing."""
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2")
    run.children(workers=2)
    time.sleep(0.3)
    run.signal(run.pid, signal.SIGINT)
    for i in range(200):  # for as long as it runs, through the clean-up and the report
        time.sleep(gap)
        if run.proc.poll() is not None:
            break
        os.kill(run.pid, (signal.SIGTERM, signal.SIGINT)[i % 2])
    rc, seconds = run.wait(timeout=2)
    assert rc == 130 and seconds < 2, (rc, seconds)  # the first signal's code
    assert one_line(run.stderr()) == "shardpay: error: interrupted by SIGINT\n"
    run.assert_nothing_left(within=2)


class _SignalInDel:
    """An object whose ``__del__`` signals this process and runs on: the handler fires inside ``__del__``."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            pass


@pytest.mark.parametrize("where", ["swallowed", "in-__del__"])
def test_a_signal_whose_exception_is_lost_still_ends_the_run(tmp_path, monkeypatch, capfd, where):
    """The handler's exception can be lost: a library's catch-all, or a ``__del__`` (Python only
    prints it there). The CLI remembers the signal and ends the run at the engine's next tick."""
    import shardpay.engine
    from shardpay import cli

    real_run = shardpay.engine.run

    def run_after_a_lost_signal(*args, **kwargs):
        if where == "swallowed":
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException:  # e.g. msgspec's optional imports catch Exception
                pass
        else:
            _SignalInDel()
        return real_run(*args, **kwargs)

    for name in ("run", "process"):  # the CLI calls one of these names
        if hasattr(shardpay.engine, name):
            monkeypatch.setattr(shardpay.engine, name, run_after_a_lost_signal)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_bytes(HEADER + b"deposit,1,1,1\n")
    assert cli.main([str(src), "-q", "-o", str(out)]) == 143
    assert capfd.readouterr().err == "shardpay: error: interrupted by SIGTERM\n"
    assert os.listdir(tmp_path) == ["in.csv"]


def test_children_are_forked_with_the_signals_held(tmp_path):
    """Set-up runs with SIGINT/SIGTERM/SIGHUP held, forks included.

    CPython's resource tracker unblocks SIGINT and SIGTERM when it starts,
    which silently ended the hold when the first ring started it: then a
    child could run the parent's handler. A fresh interpreter, so that the
    tracker is not running yet.
    """
    src = tmp_path / "in.csv"
    src.write_bytes(HEADER + b"deposit,1,1,1\n")
    code = f"""
import multiprocessing.process, signal
import shardpay.engine as engine
masks = []
real_start = multiprocessing.process.BaseProcess.start
def start(self):
    masks.append(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    real_start(self)
multiprocessing.process.BaseProcess.start = start
with engine.run({str(src)!r}, workers=2, decoders=2):
    pass
print(masks)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    masks = ast.literal_eval(r.stdout)
    assert len(masks) == 4, masks  # two workers, the sequencer, one decoder (a one-row file has one chunk)
    assert all({signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= set(m) for m in masks), masks


def test_a_failure_half_way_through_set_up_leaves_nothing(tmp_path, monkeypatch):
    """Ring 1 of 3 cannot be created (a full /dev/shm): a one-line error, and ring 0 is removed."""
    import shardpay.engine as engine
    import shardpay.local as local
    from shardpay.errors import RingError

    real_ring = local.Ring

    def ring(ctx, name, *args, **kwargs):
        if name.endswith("-1"):
            raise OSError(28, "No space left on device")
        return real_ring(ctx, name, *args, **kwargs)

    monkeypatch.setattr(local, "Ring", ring)
    src = tmp_path / "in.csv"
    src.write_bytes(HEADER + b"deposit,1,1,1\n")
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(RingError, match="cannot create shared memory for ring 1: No space left on device"):
        engine.run(str(src), workers=3)
    assert {n for n in set(os.listdir("/dev/shm")) - before if n.startswith(f"shardpay-{os.getpid()}-")} == set()
    import psutil

    assert [c.name() for c in psutil.Process().children() if c.name().startswith("sp-")] == []


@pytest.mark.parametrize("victim, name", [("sp-decoder-0", "decoder 0"), ("sp-decoder-1", "decoder 1"),
                                          ("sp-sequencer", "sequencer"), ("sp-worker-0", "worker 0"),
                                          ("sp-worker-1", "worker 1")])
def test_sigkill_of_a_child_exits_1_naming_it(big_csv, tmp_path, runs, victim, name):
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2")
    pid = run.children(workers=2)[victim]
    time.sleep(0.3)
    run.signal(pid, signal.SIGKILL)
    rc, seconds = run.wait(timeout=5)
    assert rc == 1 and seconds < 5, (rc, seconds)
    assert one_line(run.stderr()) == f"shardpay: error: the {name} process (pid {pid}) was killed by SIGKILL\n"
    run.assert_nothing_left(within=2)


@pytest.mark.parametrize("mode", ["pdeathsig", "own-checks"])
def test_sigkill_of_the_parent_children_exit_and_memory_is_reclaimed(big_csv, tmp_path, runs, mode):
    """The kernel kills the children (PR_SET_PDEATHSIG); without that, their own checks notice.

    Either way every child is gone within 5 s, then the resource tracker
    unlinks the rings (its warning on stderr says how many it reclaimed), and
    the unnamed reject spools vanish with the processes.
    """
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2", fault="no-pdeathsig" if mode == "own-checks" else None)
    run.children(workers=2)
    time.sleep(0.5)
    segments = [n for n in os.listdir("/dev/shm") if n.startswith(f"shardpay-{run.pid}-")]
    assert len(segments) == 6  # a ring per worker, two per decoder
    run.signal(run.pid, signal.SIGKILL)
    assert run.wait(timeout=1)[0] == -signal.SIGKILL
    run.assert_nothing_left(within=5)
    assert time.monotonic() - run.t_signal < 5 + 0.5
    assert "There appear to be 6 leaked shared_memory objects to clean up" in run.stderr()


@pytest.mark.parametrize("name", ["worker 1", "decoder 0", "decoder 1", "sequencer"])
def test_a_process_that_raises_reports_its_message(big_csv, tmp_path, runs, name):
    fault = name.replace(" ", "-") + "-raise"
    run = runs(tmp_path, big_csv, "--workers", "2", "--decoders", "2", fault=fault)
    run.t_signal = time.monotonic()
    rc, seconds = run.wait(timeout=20)
    assert rc == 1 and seconds < 5 + 1, (rc, seconds)  # the run's start-up included
    assert one_line(run.stderr()) == f"shardpay: error: the {name} process failed: RuntimeError: injected fault in {name}\n"
    run.assert_nothing_left(within=2)


# --------------------------------------------------------------------------
# Output faults
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_accounts_csv(tmp_path_factory) -> Path:
    """Every client id once: a 2.6 MB report, larger than any pipe or stdio buffer."""
    path = tmp_path_factory.mktemp("accounts") / "accounts.csv"
    path.write_bytes(HEADER + b"".join(b"deposit,%d,%d,1.5\n" % (c, c + 1) for c in range(65536)))
    return path


def test_stdout_on_a_full_disk(many_accounts_csv):
    with open("/dev/full", "wb") as full:
        r = subprocess.run(shardpay_cmd() + [str(many_accounts_csv), "-q"], stdout=full,
                           stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 1
    assert one_line(r.stderr.decode()) == "shardpay: error: cannot write the report to stdout: No space left on device\n"


@pytest.mark.parametrize("which", ["-o", "--rejects", "--stats"])
def test_read_only_folder_fails_cleanly_and_writes_nothing(many_accounts_csv, tmp_path, which):
    """One output cannot be written: exit 1, one line, and none of the others appear either."""
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    targets = {"-o": rw / "accounts.csv", "--rejects": rw / "rejects.csv", "--stats": rw / "stats.json"}
    targets[which] = ro / "x.out"
    ro.chmod(0o555)
    try:
        args = [a for opt, path in targets.items() for a in (opt, str(path))]
        r = subprocess.run(shardpay_cmd() + [str(many_accounts_csv), "-q", *args], capture_output=True,
                           timeout=60, preexec_fn=drop_file_permission_override)
        assert r.returncode == 1
        assert one_line(r.stderr.decode()) == f"shardpay: error: cannot write '{ro / 'x.out'}': Permission denied\n"
        assert os.listdir(ro) == [] and os.listdir(rw) == []
    finally:
        ro.chmod(0o755)


def test_outputs_have_no_name_until_they_are_all_in_place(tmp_path):
    """Until the commit an output is an unnamed file: a SIGKILL while writing leaves nothing."""
    from shardpay.report import PendingOutputs

    (tmp_path / "b.csv").write_text("old\n")
    with PendingOutputs() as pending:
        for name in ("a.csv", "b.csv"):
            with pending.open(str(tmp_path / name)) as f:
                f.write(f"new {name}\n")
        assert sorted(os.listdir(tmp_path)) == ["b.csv"] and (tmp_path / "b.csv").read_text() == "old\n"
        pending.commit()
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "b.csv").read_text() == "new b.csv\n"
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would make it
    with PendingOutputs() as pending:
        with pending.open(str(tmp_path / "c.csv")) as f:
            f.write("never\n")
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv"]  # not committed: dropped


def test_closed_stdout_pipe_ends_quietly(many_accounts_csv):
    """``shardpay big.csv | head -1``."""
    with subprocess.Popen(shardpay_cmd() + [str(many_accounts_csv)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        assert p.stdout.readline() == OUTPUT_HEADER.encode()
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 0
    assert "Traceback" not in err and "rror" not in err


def test_closed_stderr_pipe_does_not_stop_the_job(tmp_path):
    """``shardpay messy.csv -o out.csv 2>&1 | head -0``: the log goes unread, the report is still written."""
    src, out = tmp_path / "messy.csv", tmp_path / "out.csv"
    with open(src, "wb") as f:
        generate(20_000, f, seed=3, scenario="messy", clients=500)
    r, w = os.pipe()
    os.close(r)  # nobody will read: the first logged reject meets EPIPE
    p = subprocess.Popen(shardpay_cmd() + [str(src), "-o", str(out)], stdout=w, stderr=w)
    os.close(w)
    assert p.wait(timeout=60) == 0
    assert out.read_text() == model.run(src.read_bytes()).output


# --------------------------------------------------------------------------
# Hostile and broken input
# --------------------------------------------------------------------------


def run_and_compare(tmp_path: Path, data: bytes, workers: int = 2) -> list[list[str]]:
    """Run ``data`` through the CLI; output and every (line, reason) must equal the model's.

    Returns the rejects CSV rows (without its header) for closer checks.
    """
    src, rej = tmp_path / "in.csv", tmp_path / "rejects.csv"
    src.write_bytes(data)
    r = run_cli(str(src), "-q", "--workers", str(workers), "--rejects", str(rej))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""
    want = model.run(data)
    assert r.stdout.decode() == want.output
    rows = list(csv.reader(io.StringIO(rej.read_text(encoding="utf-8"))))[1:]
    assert [(int(row[0]), row[5]) for row in rows] == want.rejects
    assert all(row[6] for row in rows if row[5] == "invalid_row"), "an invalid row without a detail"
    return rows


def fatal(tmp_path: Path, path: Path | str, **kwargs) -> str:
    """Run on ``path`` with ``-o``; it must fail with exit 1 and one line, writing nothing; return the line."""
    out = tmp_path / "out.csv"
    r = subprocess.run(shardpay_cmd() + [str(path), "-o", str(out)], capture_output=True, timeout=60, **kwargs)
    assert r.returncode == 1 and r.stdout == b""
    assert not out.exists()
    return one_line(r.stderr.decode())


def test_missing_file(tmp_path):
    assert "No such file or directory" in fatal(tmp_path, tmp_path / "nope.csv")


def test_a_directory(tmp_path):
    assert fatal(tmp_path, tmp_path) == f"shardpay: error: cannot read '{tmp_path}': it is a directory\n"


def test_no_read_permission(tmp_path):
    src = tmp_path / "secret.csv"
    src.write_bytes(HEADER + b"deposit,1,1,1\n")
    src.chmod(0)
    line = fatal(tmp_path, src, preexec_fn=drop_file_permission_override)
    assert line == f"shardpay: error: cannot read '{src}': Permission denied\n"


@pytest.mark.parametrize("data", [b"", HEADER, b"\xef\xbb\xbf" + HEADER, b"\n\n  \n", b"\xef\xbb\xbf"],
                         ids=["empty", "header-only", "bom-header-only", "blank-lines", "bom-only"])
def test_empty_inputs_give_the_header_alone(tmp_path, data):
    assert run_and_compare(tmp_path, data) == []


@pytest.mark.parametrize("data, found", [
    (b"client,type,tx,amount\ndeposit,1,1,1\n", "'client,type,tx,amount'"),
    (b"deposit,1,1,1\n", "'deposit,1,1,1'"),
    (b"type;client;tx;amount\n", "'type;client;tx;amount'"),
    (b"\xff\xfetype,client,tx,amount\n", "'\\\\xff\\\\xfetype,client,tx,amount'"),
], ids=["order", "no-header", "semicolons", "utf16-bom"])
def test_wrong_header_is_fatal_and_says_what_it_found(tmp_path, data, found):
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    assert fatal(tmp_path, src) == f"shardpay: error: bad header: expected 'type,client,tx,amount', found {found}\n"


def test_bom_and_no_trailing_newline(tmp_path):
    data = b"\xef\xbb\xbf" + HEADER + b"deposit,1,1,2.5\nwithdrawal,1,2,1\ndeposit,2,3,7"
    run_and_compare(tmp_path, data)
    assert model.run(data).output == OUTPUT_HEADER + "1,1.5000,0.0000,1.5000,false\n2,7.0000,0.0000,7.0000,false\n"


def test_binary_garbage_as_the_whole_file(tmp_path):
    garbage = random.Random(1).randbytes(64 * 1024)
    src = tmp_path / "garbage.bin"
    src.write_bytes(garbage)
    assert fatal(tmp_path, src).startswith("shardpay: error: bad header: expected 'type,client,tx,amount', found ")


@pytest.mark.parametrize("workers", [1, 3])
def test_binary_garbage_between_good_rows(tmp_path, workers):
    rng = random.Random(2)
    lines = [HEADER]
    for i in range(1, 3000):
        if i % 3 == 0:
            lines.append(rng.randbytes(rng.randrange(1, 200)) + b"\n")
        else:
            lines.append(b"deposit,%d,%d,%d.5\n" % (i % 50, i, i % 7 + 1))
    rows = run_and_compare(tmp_path, b"".join(lines), workers)
    assert len(rows) > 500


def test_nul_bytes(tmp_path):
    data = HEADER + b"deposit,1,1,5\n\x00\x00\x00\ndeposit,1,2\x00,5\ndeposit,1,3,5\n\x00,1,4,1\nwithdrawal,1,5,1\n"
    rows = run_and_compare(tmp_path, data)
    assert [row[0] for row in rows] == ["3", "4", "6"]
    rejects_text = (tmp_path / "rejects.csv").read_bytes()
    assert b"\x00" not in rejects_text and b"\\x00" in rejects_text  # shown escaped, one line a row


def test_invalid_utf8(tmp_path):
    data = HEADER + b"deposit,1,1,5\ndeposit,1,2,5\xff\n\xc3\x28,1,3,1\ndeposit,\xed\xa0\x80,4,1\nwithdrawal,1,5,2\n"
    rows = run_and_compare(tmp_path, data)
    assert [(row[0], row[5]) for row in rows] == [("3", "invalid_row"), ("4", "invalid_row"), ("5", "invalid_row")]
    assert all("not valid UTF-8" in row[6] for row in rows)


def test_unterminated_quote_does_not_swallow_the_next_line(tmp_path):
    data = HEADER + b'deposit,1,1,"5\ndeposit,1,2,5\nwithdrawal,1,3,"1"\n"deposit,1,4,1\n'
    rows = run_and_compare(tmp_path, data)
    assert [(row[0], row[5]) for row in rows] == [("2", "invalid_row"), ("5", "invalid_row")]
    assert "quot" in rows[0][6]


def long_line_case(size: int, *, newline: bool = True) -> tuple[bytes, bytes]:
    """(file with a ``size``-byte line 3 between good rows, the same with that line a short invalid one)."""
    before = HEADER + b"deposit,1,1,10\n"
    after = b"withdrawal,1,3,4\ndeposit,2,4,1\n"
    long = b"deposit,1,2," + b"9" * (size - 12)
    data = before + long + (b"\n" + after if newline else b"")
    twin = before + b"x\n" + (after if newline else b"")
    return data, twin


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_overlong_line_is_rejected_and_the_rest_is_untouched(tmp_path, via):
    data, twin = long_line_case(MAX_LINE_BYTES + 4096)
    src, rej = tmp_path / "in.csv", tmp_path / "rejects.csv"
    src.write_bytes(data)
    if via == "file":
        r = run_cli(str(src), "-q", "--rejects", str(rej))
    else:
        r = run_cli("-", "-q", "--rejects", str(rej), input=data)
    assert r.returncode == 0, r.stderr
    want = model.run(twin)
    assert r.stdout.decode() == want.output
    rows = list(csv.reader(io.StringIO(rej.read_text())))[1:]
    assert [(int(row[0]), row[5]) for row in rows] == want.rejects == [(3, "invalid_row")]
    assert rows[0][6] == f"line is {MAX_LINE_BYTES + 4096} bytes, longer than the {MAX_LINE_BYTES}-byte limit"
    assert len(rows[0][1]) < 100  # the reject shows the line's start, not the line


def test_overlong_header_is_fatal(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"type" * MAX_LINE_BYTES + b"\n" + b"deposit,1,1,1\n")
    line = fatal(tmp_path, src)
    assert line == f"shardpay: error: bad header: the first line is longer than {MAX_LINE_BYTES} bytes\n"


@pytest.mark.slow
def test_200_mb_line_without_newline_is_rejected_in_bounded_memory(tmp_path):
    """Never read into memory whole: the reader's peak RSS stays far below the line's size."""
    size = 200 * 2**20
    src, rej, st = tmp_path / "in.csv", tmp_path / "rejects.csv", tmp_path / "stats.json"
    with open(src, "wb") as f:
        f.write(HEADER + b"deposit,1,1,10\n" + b"deposit,1,2,")  # line 3 never ends
        block = b"1234567890" * 2**20
        for _ in range(size // len(block)):
            f.write(block)
    size = src.stat().st_size - len(HEADER) - len(b"deposit,1,1,10\n")
    try:
        r = run_cli(str(src), "-q", "--rejects", str(rej), "--stats", str(st), timeout=120)
    finally:
        src.unlink()  # pytest keeps the last runs' folders: do not keep 200 MB in each
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == OUTPUT_HEADER + "1,10.0000,0.0000,10.0000,false\n"
    rows = list(csv.reader(io.StringIO(rej.read_text())))[1:]
    assert [(row[0], row[5]) for row in rows] == [("3", "invalid_row")]
    assert rows[0][6] == f"line is {size} bytes, longer than the {MAX_LINE_BYTES}-byte limit"
    stats = json.loads(st.read_text())
    assert stats["rows_read"] == 2 and stats["rows_rejected"] == 1
    for proc in [stats["parent"], stats["sequencer"], *stats["decoders_detail"]]:
        assert proc["peak_rss_bytes"] < 100 * 2**20, proc  # the line is never held


# --------------------------------------------------------------------------
# Many invalid rows: every one reported, memory bounded
# --------------------------------------------------------------------------

INVALID_KINDS = [  # one of each way a row can be invalid; most take the exact path
    lambda i: b"deposit,%d,%d,1.23456\n" % (i % 65536, i),  # more than 4 decimals
    lambda i: b'deposit,%d,%d,"1.5\n' % (i % 65536, i),  # unterminated quote
    lambda i: b"deposit,%d,%d,1.5\xff\n" % (i % 65536, i),  # not UTF-8
    lambda i: b"deposit,%d,%d,1.5\x00\n" % (i % 65536, i),  # NUL
    lambda i: b"deposit,%d,%d,1.5,7\n" % (i % 65536, i),  # five fields
    lambda i: b"DEPOSIT,%d,%d,1.5\n" % (i % 65536, i),  # type in upper case
    lambda i: b"deposit,%d,x%d,1.5\n" % (i % 65536, i),  # tx not a number
    lambda i: b"deposit,%d,%d,0\n" % (i % 65536, i),  # amount zero
    lambda i: b"refund,%d,%d,1.5\n" % (i % 65536, i),  # unknown type
    lambda i: b"deposit,70000,%d,1.5\n" % i,  # client out of range
]
MILLION = 1_000_000


def cli_run(src: Path, tmp_path: Path) -> tuple[dict, Path]:
    """Run the CLI with ``--rejects`` and ``--stats``; return (stats, rejects path)."""
    rej, st = tmp_path / f"{src.stem}.rejects.csv", tmp_path / f"{src.stem}.stats.json"
    r = run_cli(str(src), "-q", "--workers", "1", "-o", str(tmp_path / f"{src.stem}.out.csv"),
                "--rejects", str(rej), "--stats", str(st), timeout=900)
    assert r.returncode == 0, r.stderr
    return json.loads(st.read_text()), rej


@pytest.mark.slow
def test_a_million_invalid_rows_are_all_reported(tmp_path):
    """1,000,000 consecutive invalid rows, every kind in turn: every one reported, in
    line order, memory bounded. (What they cost a row against valid ones is
    ``profiling/faults.py --slow-path``'s figure.)"""
    invalid = tmp_path / "invalid.csv"
    with open(invalid, "wb") as f:
        f.write(HEADER)
        for start in range(1, MILLION + 1, 100_000):
            f.write(b"".join(INVALID_KINDS[i % len(INVALID_KINDS)](i) for i in range(start, start + 100_000)))
    stats, rej = cli_run(invalid, tmp_path)
    assert stats["rows_read"] == stats["rows_rejected"] == MILLION and stats["rows_accepted"] == 0
    assert stats["rejected_by_reason"] == {"invalid_row": MILLION}
    expected_line = 2
    with open(rej, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            assert int(row[0]) == expected_line and row[5] == "invalid_row" and row[6]
            expected_line += 1
    assert expected_line == MILLION + 2
    for proc in [stats["parent"], stats["sequencer"], *stats["decoders_detail"], *stats["workers_detail"]]:
        assert proc["peak_rss_bytes"] < 200 * 2**20, stats  # bounded: rejects are spooled to disk


# --------------------------------------------------------------------------
# Nothing lost
# --------------------------------------------------------------------------


def non_empty_data_rows(data: bytes) -> int:
    """Rows after the header that are not blank (SPEC "Input"), counted without shardpay."""
    count, header = 0, False
    for n, line in enumerate(data.split(b"\n")):
        if n == 0:
            line = line.removeprefix(b"\xef\xbb\xbf")
        try:
            blank = not line.decode("utf-8").strip()
        except UnicodeDecodeError:
            blank = False
        if blank:
            continue
        if header:
            count += 1
        header = True
    return count


@pytest.mark.parametrize("workers", [1, 3])
def test_every_row_is_accounted_for_on_the_messy_scenario(tmp_path, workers):
    src, rej, st = tmp_path / "messy.csv", tmp_path / "rejects.csv", tmp_path / "stats.json"
    with open(src, "wb") as f:
        generate(200_000, f, seed=21, scenario="messy", clients=3000)
    data = src.read_bytes()
    rows = non_empty_data_rows(data)
    r = run_cli(str(src), "--workers", str(workers), "--rejects", str(rej), "--stats", str(st), timeout=120)
    assert r.returncode == 0, r.stderr
    stats = json.loads(st.read_text())
    with open(rej, newline="", encoding="utf-8") as f:
        rejected_rows = sum(1 for _ in csv.reader(f)) - 1
    want = model.run(data)
    assert stats["rows_read"] == rows
    assert stats["rows_accepted"] + stats["rows_rejected"] == rows
    assert stats["rows_rejected"] == rejected_rows == len(want.rejects) == sum(stats["rejected_by_reason"].values())
    assert stats["rejected_by_reason"]["invalid_row"] > 1000
    summary = " ".join(r.stderr.decode().split())
    assert f"rows read {rows:,} accepted {stats['rows_accepted']:,} rejected {stats['rows_rejected']:,}" in summary
    assert f"accounted for accepted + rejected = {rows:,} = {rows:,} rows read" in summary
