"""The installed ``shardpay`` command end to end, as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run_cli, shardpay_cmd

SPEC_IN = b"""type,client,tx,amount
deposit,1,1,1.0
deposit,2,2,2.0
deposit,1,3,2.0
withdrawal,1,4,1.5
withdrawal,2,5,3.0
dispute,1,1,
resolve,1,1,
dispute,1,3,
chargeback,1,3,
deposit,1,6,10
"""
SPEC_OUT = b"""client,available,held,total,locked
1,-0.5000,0.0000,-0.5000,true
2,2.0000,0.0000,2.0000,false
"""


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_bytes(SPEC_IN)
    return p


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_spec_worked_example(spec_file, workers, shm_clean):
    r = run_cli(str(spec_file), "--workers", str(workers))
    assert r.returncode == 0, r.stderr
    assert r.stdout == SPEC_OUT
    err = r.stderr.decode()
    assert "line 6: insufficient_funds:" in err and "line 11: account_locked:" in err


def test_stdin_streams(shm_clean):
    r = run_cli("-", "--quiet", input=SPEC_IN)
    assert (r.returncode, r.stdout, r.stderr) == (0, SPEC_OUT, b"")
    r = run_cli("--quiet", input=SPEC_IN)  # FILE defaults to -
    assert r.stdout == SPEC_OUT


def test_python_dash_m(spec_file):
    import sys

    r = subprocess.run([sys.executable, "-m", "shardpay", str(spec_file), "-q"], capture_output=True, timeout=30)
    assert r.stdout == SPEC_OUT


def test_quiet_run_loads_no_display_library(spec_file, tmp_path):
    """``--quiet`` draws nothing, so it does not pay rich's import (~30 ms of a small file's run)."""
    import sys

    out = tmp_path / "out.csv"
    code = ("import sys; from shardpay.cli import main; "
            f"rc = main([{str(spec_file)!r}, '-q', '-o', {str(out)!r}]); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.stdout.decode().split() == ["0", "[]"], r.stderr.decode()
    assert out.read_bytes() == SPEC_OUT


@pytest.mark.parametrize("as_program", [True, False])
def test_start_up_settings_only_when_main_is_the_program(spec_file, tmp_path, as_program):
    """As the program (``main()``), the CLI keeps OpenBLAS to one thread (shardpay calls
    no BLAS routine; its idle pool spins ~90 ms of CPU at numpy's import) and freezes the
    collector as it ends; called with ``argv``, it leaves the caller's process alone."""
    import sys

    out = tmp_path / "out.csv"
    args = [str(spec_file), "-q", "-o", str(out)]
    call = f"sys.argv = ['shardpay', *{args!r}]; rc = main()" if as_program else f"rc = main({args!r})"
    code = ("import gc, os, sys; from shardpay.cli import main; " + call + "; "
            "print(rc, os.environ.get('OPENBLAS_NUM_THREADS'), gc.get_freeze_count() > 0)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env)
    want = ["0", "1", "True"] if as_program else ["0", "None", "False"]
    assert r.stdout.decode().split() == want, r.stderr.decode()
    assert out.read_bytes() == SPEC_OUT


def test_output_file_rejects_and_stats(spec_file, tmp_path, shm_clean):
    out, rej, st = tmp_path / "acc.csv", tmp_path / "rej.csv", tmp_path / "stats.json"
    r = run_cli(str(spec_file), "-o", str(out), "--rejects", str(rej), "--stats", str(st), "--workers", "2")
    assert r.returncode == 0 and r.stdout == b""
    assert out.read_bytes() == SPEC_OUT
    rows = list(csv.reader(io.StringIO(rej.read_text())))
    assert rows[0] == ["line", "type", "client", "tx", "amount", "reason", "detail"]
    assert [r[:6] for r in rows[1:]] == [
        ["6", "withdrawal", "2", "5", "3.0000", "insufficient_funds"],
        ["11", "deposit", "1", "6", "10.0000", "account_locked"],
    ]
    stats = json.loads(st.read_text())
    assert stats["rows_read"] == 10 and stats["rows_accepted"] == 8 and stats["rows_rejected"] == 2
    assert stats["rejected_by_reason"] == {"account_locked": 1, "insufficient_funds": 1}
    assert stats["accounts"] == 2 and sum(stats["rows_per_shard"]) == 10
    assert stats["sequencer"]["peak_rss_bytes"] > 0 and len(stats["workers_detail"]) == 2
    assert stats["decoders"] == len(stats["decoders_detail"]) >= 1 and stats["workers"] == 2
    assert sorted(os.listdir(tmp_path)) == ["acc.csv", "rej.csv", "stats.json", "tx.csv"]  # no temp files left


def test_rejects_in_file_order_across_shards(tmp_path):
    lines = ["type,client,tx,amount"]
    for i in range(300):
        lines.append(f"withdrawal,{i % 7},{i},1")  # all insufficient_funds, spread over shards
        lines.append(f"deposit,{i % 7},x{i},1")  # invalid, rejected by a decoder
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    got = {}
    for w in (1, 3):
        rej = tmp_path / f"rej{w}.csv"
        assert run_cli(str(src), "-q", "--workers", str(w), "--rejects", str(rej)).returncode == 0
        got[w] = rej.read_bytes()
        numbers = [int(r[0]) for r in list(csv.reader(io.StringIO(got[w].decode())))[1:]]
        assert numbers == list(range(2, 602))
    assert got[1] == got[3]


def test_strict_stops_at_first_reject(spec_file, tmp_path, shm_clean):
    out = tmp_path / "acc.csv"
    r = run_cli(str(spec_file), "--strict", "-o", str(out), "--workers", "3")
    assert r.returncode == 1
    assert b"line 6: insufficient_funds" in r.stderr and b"Traceback" not in r.stderr
    assert not out.exists() and r.stdout == b""


def test_strict_invalid_row_from_reader(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"type,client,tx,amount\ndeposit,1,1,1\ndeposit,1,2,1.23456\nwithdrawal,9,3,5\n")
    r = run_cli(str(src), "--strict", "--workers", "2")
    assert r.returncode == 1 and b"line 3: invalid_row: amount '1.23456'" in r.stderr and r.stdout == b""


@pytest.mark.parametrize(
    "setup, words",
    [("missing", "No such file"), ("dir", "is a directory"), ("badheader", "bad header")],
)
def test_fatal_input_errors_are_one_line(tmp_path, setup, words, shm_clean):
    target = tmp_path / "x.csv"
    if setup == "dir":
        target.mkdir()
    elif setup == "badheader":
        target.write_bytes(b"client,type,tx,amount\ndeposit,1,1,1\n")
    out = tmp_path / "out.csv"
    r = run_cli(str(target), "-o", str(out))
    assert r.returncode == 1
    err = r.stderr.decode()
    assert words in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_empty_file_and_header_only(tmp_path):
    for data in (b"", b"type,client,tx,amount\n", b"\xef\xbb\xbf\n\n"):
        src = tmp_path / "e.csv"
        src.write_bytes(data)
        r = run_cli(str(src), "-q")
        assert (r.returncode, r.stdout) == (0, b"client,available,held,total,locked\n")


@pytest.mark.parametrize("args", [["--workers", "0"], ["--workers", "x"], ["--bogus"], ["a", "b"]])
def test_usage_errors_exit_2(args):
    assert run_cli(*args).returncode == 2


def test_help_states_the_default_worker_rule():
    r = run_cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.decode().split())
    assert "minus one" in text and "--rejects" in text and "--strict" in text


def test_output_write_failure_leaves_nothing(spec_file, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_cli(str(spec_file), "-q", "-o", str(ro / "out.csv"))
        if os.geteuid() == 0:
            pytest.skip("root can write to a read-only folder")
        assert r.returncode == 1 and b"cannot write" in r.stderr
    finally:
        ro.chmod(0o755)


def test_stdout_full_disk_is_a_clear_error(spec_file):
    with open("/dev/full", "wb") as full:
        r = subprocess.run(shardpay_cmd() + [str(spec_file), "-q"], stdout=full, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 1 and b"No space left" in r.stderr and b"Traceback" not in r.stderr


def _big_input(path, rows=300_000):
    lines = ["type,client,tx,amount"] + [f"deposit,{i % 1000},{i},1.5" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def _mid_stream(*args: str) -> subprocess.Popen:
    """``shardpay - ARGS`` on a pipe that has sent 200,000 rows and stays open: the run is
    in the middle of its input for as long as the test wants."""
    p = subprocess.Popen(shardpay_cmd() + ["-", *args], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = ["type,client,tx,amount"] + [f"deposit,{i % 1000},{i},1.5" for i in range(200_000)]
    p.stdin.write(("\n".join(lines) + "\n").encode())
    p.stdin.flush()
    return p


def test_kill_9_of_a_worker_exits_1_and_leaves_nothing(tmp_path, shm_clean):
    import psutil

    out = tmp_path / "out.csv"
    p = _mid_stream("--workers", "2", "--decoders", "1", "-q", "-o", str(out))
    parent = psutil.Process(p.pid)
    deadline = time.monotonic() + 10
    victims = []
    while time.monotonic() < deadline and len(victims) < 4:
        # forked children share the parent's command line; the resource tracker does not
        victims = [c for c in parent.children() if c.cmdline() == parent.cmdline()]
        time.sleep(0.02)
    victims.sort(key=lambda c: c.pid)
    assert len(victims) == 4, "2 workers, the sequencer and a decoder should be running"
    worker = victims[0]  # workers start first
    time.sleep(0.2)
    t0 = time.monotonic()
    worker.kill()
    rc = p.wait(timeout=10)
    err = p.communicate()[1].decode()  # ended: this only reads stderr and closes the pipes
    assert rc == 1 and time.monotonic() - t0 < 5
    assert "worker 0" in err and "SIGKILL" in err and "Traceback" not in err
    assert not out.exists() and os.listdir(tmp_path) == []
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in victims)


def test_sigterm_and_sigint_exit_codes(tmp_path, shm_clean):
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        out = tmp_path / "out.csv"
        p = _mid_stream("-q", "-o", str(out))
        time.sleep(0.6)
        p.send_signal(sig)
        t0 = time.monotonic()
        rc = p.wait(timeout=5)
        err = p.communicate()[1]  # ended: this only reads stderr and closes the pipes
        assert rc == code
        assert time.monotonic() - t0 < 2
        assert not out.exists() and b"Traceback" not in err
