"""The Ray backend (``--backend ray``) against the local engine: the same bytes out.

Runs on one local Ray instance limited to 2 CPUs, started once for the module.
The local engine's side of each comparison runs in a subprocess (the CLI, or
a script): the local engine forks, and a fork of a process whose Ray client
threads are running can leave its gRPC connection to Ray hung (seen here: a
GCS call that never returned). Ray is an extra (``pip install 'shardpay[ray]'``); where it is missing these
tests skip, except under ``CI=true``, where a missing Ray is a failure.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import shardpay
from shardpay.errors import BackendError, InputError, ProcessDied
from shardpay.report import write_accounts, write_rejects, write_stats
from tests.conftest import FIXTURES, run_cli, shardpay_cmd

if os.environ.get("CI"):
    import ray  # CI installs the extra: a missing Ray fails here
else:
    ray = pytest.importorskip("ray")

CASES = sorted(p.name[: -len(".expected.csv")] for p in FIXTURES.glob("*.expected.csv"))
# Figures that measure time, CPU or memory, or name a process: the rest of --stats must match.
_MEASURED = {"pid", "cpu_seconds", "peak_rss_bytes", "wall_seconds", "rows_per_second", "cpu_seconds_total",
             "peak_rss_bytes_sum", "chunks"}
"""Figures that are measured, or follow the chunk size (Ray's chunks are larger), not the input."""


@pytest.fixture(scope="module")
def local_ray():
    from shardpay.ray_guard import loopback_node, private_token

    private_token(create=True)
    with loopback_node():  # as shardpay starts its own: loopback only, a private token
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _local(path, workers, tmp_path, decoders=None):
    """The local engine through the CLI: (stdout, --rejects file, --stats JSON minus measured figures)."""
    rej, st = tmp_path / f"local-{workers}.rejects.csv", tmp_path / f"local-{workers}.stats.json"
    counts = ["--workers", str(workers)] + ([] if decoders is None else ["--decoders", str(decoders)])
    r = run_cli(str(path), *counts, "-q", "--rejects", str(rej), "--stats", str(st), timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode(), rej.read_text(), json.dumps(_counted(json.loads(st.read_text())), indent=2)


def _ray(path, workers, decoders=None):
    """The same three outputs from ``shardpay.process(..., backend="ray")`` in this process,
    written by the CLI's writers."""
    with shardpay.process(str(path), workers=workers, decoders=decoders, backend="ray") as result:
        accounts, rejects, stats = io.StringIO(), io.StringIO(), io.StringIO()
        write_accounts(accounts, result.accounts)
        write_rejects(rejects, result.rejects())
        write_stats(stats, result.stats)
    return accounts.getvalue(), rejects.getvalue(), json.dumps(_counted(json.loads(stats.getvalue())), indent=2)


def _cli_error(*args):
    r = run_cli(*map(str, args), "-q", timeout=120)
    assert r.returncode == 1 and r.stdout == b""
    return r.stderr.decode().strip().splitlines()[-1]


def _counted(stats):
    """The stats with measured figures (times, CPU, memory, pids, rates) removed; keys kept."""
    if isinstance(stats, dict):
        return {k: (None if k in _MEASURED or k.endswith(("_seconds", "_per_second")) else _counted(v))
                for k, v in stats.items() if not (k == "rows" and "decoder" in stats)}  # a decoder's share of rows
    if isinstance(stats, list):
        return [_counted(v) for v in stats]
    return stats


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_every_fixture_matches_local(local_ray, name, tmp_path):
    path = FIXTURES / f"{name}.csv"
    for workers in (1, 2, 4):
        local = _local(path, workers, tmp_path)
        assert local[0] == (FIXTURES / f"{name}.expected.csv").read_text()
        assert _ray(path, workers) == local, workers


def test_spec_example_matches_local(local_ray, tmp_path):
    path = FIXTURES / "spec_example.csv"
    assert _ray(path, 2) == _local(path, 2, tmp_path)


def test_generated_messy_file_matches_local(local_ray, tmp_path):
    from shardpay.testing.generate import main as generate

    path = tmp_path / "messy.csv"
    generate(["200K", str(path), "--seed", "11", "--scenario", "messy"])
    for workers, decoders in ((1, 1), (2, 3), (4, 2)):
        local = _local(path, workers, tmp_path, decoders)
        assert local[1].count("\n") > 5000  # the file does exercise rejects
        assert _ray(path, workers, decoders) == local, (workers, decoders)


def test_bad_header_is_the_same_error(local_ray):
    bad = FIXTURES / "errors" / "bad_header.csv"
    with pytest.raises(InputError) as remote:
        shardpay.process(str(bad), workers=2, backend="ray")
    assert _cli_error(bad, "--workers", 2) == f"shardpay: error: {remote.value}"


def test_strict_stops_at_the_same_reject(local_ray):
    path = FIXTURES / "spec_example.csv"
    with pytest.raises(shardpay.errors.StrictReject) as remote:
        shardpay.process(str(path), workers=2, strict=True, backend="ray")
    assert _cli_error(path, "--workers", 2, "--strict") == f"shardpay: error: {remote.value}"


_ENGINE_SCRIPT = """
import json, sys, shardpay
data, backend = open(sys.argv[1], "rb").read(), sys.argv[2]
seen = []
def state(accounts, rejects):
    return [[[a.client, a.available, a.held, a.locked] for a in accounts], [list(r) for r in rejects]]
with shardpay.Engine(workers=2, backend=backend) as engine:
    for i in range(0, len(data), 7):  # rows split across feeds
        engine.feed(data[i : i + 7])
        if i % 35 == 0:
            seen.append(state(engine.snapshot(), engine.rejects()))
    engine.feed(b"1\\n")
    seen.append(state(engine.snapshot(), engine.rejects()))
with engine.result as result:
    seen.append(state(result.account_list(), result.rejects()))
print(json.dumps(seen))
"""


def test_engine_on_ray_matches_local_at_every_snapshot(local_ray, tmp_path):
    feed = tmp_path / "feed.csv"
    feed.write_bytes((FIXTURES / "spec_example.csv").read_bytes() + b"deposit,3,90,1.25\ndispute,3,90\nwithdrawal,3,91,")
    answers = {}
    for backend in ("local", "ray"):  # each in its own process: the local engine forks
        r = subprocess.run([sys.executable, "-c", _ENGINE_SCRIPT, str(feed), backend], capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        answers[backend] = json.loads(r.stdout)
    assert answers["ray"] == answers["local"]
    assert len(answers["ray"]) > 5
    assert [3, 0, 12500, False] in answers["ray"][-1][0]


@pytest.mark.parametrize("victim, name", [(1, "shard 1"), (2, "decoder 0")])
def test_a_dead_actor_fails_the_run_naming_it(local_ray, victim, name):
    engine = shardpay.Engine(workers=2, decoders=2, backend="ray")
    engine.start()
    try:
        engine.feed(b"type,client,tx,amount\n" + b"".join(b"deposit,%d,%d,1\n" % (c, c) for c in range(1, 200)))
        engine.snapshot()
        ray.kill(engine._session.actors[victim], no_restart=True)  # the shards' actors, then the decoders'
        t0 = time.monotonic()
        with pytest.raises(ProcessDied, match=rf"{name} .*died"):
            for _ in range(1000):
                engine.feed(b"".join(b"deposit,%d,%d,1\n" % (c, 1000 + c) for c in range(1, 200)))
                engine.snapshot()
        assert time.monotonic() - t0 < 30
    finally:
        engine.abort()


def test_missing_ray_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendError, match=r"pip install 'shardpay\[ray\]'"):
        shardpay.process(str(FIXTURES / "spec_example.csv"), backend="ray")
    with pytest.raises(ValueError, match="unknown backend"):
        shardpay.process(str(FIXTURES / "spec_example.csv"), backend="spark")


def test_cli_without_ray_names_the_install_command():
    code = ("import sys; sys.modules['ray'] = None; from shardpay.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "spec_example.csv"), "--backend", "ray"],
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "pip install 'shardpay[ray]'" in lines[0], lines


@pytest.mark.slow
def test_cli_ray_backend_matches_local_bytes(tmp_path):
    from shardpay.testing.generate import main as generate

    path = tmp_path / "messy.csv"
    generate(["50K", str(path), "--seed", "4", "--scenario", "messy"])
    outs = {}
    for backend in ("local", "ray"):
        rej = tmp_path / f"{backend}.rejects.csv"
        r = run_cli(str(path), "--workers", "2", "-q", "--backend", backend, "--rejects", str(rej), timeout=180)
        assert r.returncode == 0, r.stderr.decode()
        outs[backend] = (r.stdout, rej.read_bytes())
    assert outs["ray"] == outs["local"]


def _ray_run_applying(tmp_path):
    """A CLI run with --backend ray on a generated 1M-row file, once a shard actor is seen
    applying a frame: ``(process, output path, pid of that actor or None)``."""
    import psutil

    from shardpay.testing.generate import main as generate

    path = tmp_path / "uniform.csv"
    generate(["1M", str(path), "--seed", "5", "--scenario", "uniform"])
    out = tmp_path / "accounts.csv"
    proc = subprocess.Popen([*shardpay_cmd(), str(path), "--workers", "2", "-q", "--backend", "ray",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for p in psutil.process_iter(["pid", "cmdline"]):
            if (p.info["cmdline"] or [""])[0].startswith("ray::ShardActor.apply"):  # applying a frame
                return proc, out, p.info["pid"]
        time.sleep(0.02)
    return proc, out, None


@pytest.mark.slow
def test_cli_kill_one_shard_actor_mid_run(tmp_path):
    proc, out, actor = _ray_run_applying(tmp_path)
    try:
        assert actor is not None, "no shard actor was seen applying a frame"
        os.kill(actor, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, stderr.decode()
    message = stderr.decode().strip().splitlines()[-1]
    assert "shard " in message and "died" in message and f"pid {actor}" in message, message
    assert not out.exists() and stdout == b""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_interrupted_mid_run_on_ray(tmp_path, sig):
    proc, out, actor = _ray_run_applying(tmp_path)
    try:
        assert actor is not None, "no shard actor was seen applying a frame"
        proc.send_signal(sig)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == f"shardpay: error: interrupted by {signal.Signals(sig).name}"
    assert not out.exists() and stdout == b""
    assert time.monotonic() - t0 < 15


_EXPOSURE_SCRIPT = """
import ipaddress, json, os, psutil, shardpay
with shardpay.Engine(workers=1, backend="ray") as engine:
    engine.feed(b"type,client,tx,amount\\ndeposit,1,1,1\\n")
    engine.snapshot()
    listening = set()
    for p in psutil.Process().children(recursive=True):
        try:
            listening |= {c.laddr.ip for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
token = os.path.expanduser("~/.ray/auth_token")
print(json.dumps({"listening": sorted(listening), "token_mode": os.stat(token).st_mode & 0o777}))
"""


def _is_loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


@pytest.mark.slow
def test_a_local_instance_listens_on_loopback_with_a_private_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # Ray's default token file: tmp_path/.ray/auth_token, made by shardpay
    r = subprocess.run([sys.executable, "-c", _EXPOSURE_SCRIPT], capture_output=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr.decode()
    seen = json.loads(r.stdout)
    assert seen["listening"], "no Ray process was seen listening"
    assert all(_is_loopback(ip) for ip in seen["listening"]), seen
    assert seen["token_mode"] == 0o600
