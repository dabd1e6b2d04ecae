"""``--ray-address``: join a Ray cluster started with ``ray start --head`` (README "Beyond one machine")."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, shardpay_cmd

if not os.environ.get("CI"):
    pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token_env(tmp_path) -> dict[str, str]:
    """Token authentication with a token of this test's own (mode 0600), and a home of its own:
    nothing is written to the real ``~/.ray``."""
    token = tmp_path / "auth_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w") as f:
        f.write(secrets.token_hex(32))
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "HOME": str(home)}


@pytest.mark.slow
def test_join_a_cluster_started_with_ray_start(tmp_path):
    port = _free_port()
    env = _token_env(tmp_path)
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:  # wait for the head's GCS port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, "ray start --head did not come up"
                time.sleep(0.5)
        fixture = str(FIXTURES / "spec_example.csv")
        joined = subprocess.run([*shardpay_cmd(), fixture, "--backend", "ray", "--ray-address",
                                 f"127.0.0.1:{port}", "--workers", "2", "-q"], capture_output=True, env=env,
                                timeout=180)
        assert joined.returncode == 0, joined.stderr.decode()
        assert joined.stdout == (FIXTURES / "spec_example.expected.csv").read_bytes()
        assert stat.S_IMODE((tmp_path / "auth_token").stat().st_mode) == 0o600
        assert not (tmp_path / "home" / ".ray" / "auth_token").exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops its processes on SIGTERM
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_an_unreachable_cluster_fails_fast(tmp_path):
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    r = subprocess.run([*shardpay_cmd(), str(FIXTURES / "spec_example.csv"), "--backend", "ray", "--ray-address",
                        f"127.0.0.1:{port}", "-q"], capture_output=True, timeout=60, env=_token_env(tmp_path))
    assert r.returncode == 1 and r.stdout == b""
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in r.stderr.decode()
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("mode", [None, "disabled"])
def test_joining_without_token_authentication_is_refused(mode):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    if mode:
        env["RAY_AUTH_MODE"] = mode
    port = _free_port()
    r = subprocess.run([*shardpay_cmd(), str(FIXTURES / "spec_example.csv"), "--backend", "ray", "--ray-address",
                        f"127.0.0.1:{port}", "-q"], capture_output=True, timeout=60, env=env)
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode() == (f"shardpay: error: joining the Ray cluster at 127.0.0.1:{port} needs token "
                                 "authentication: set RAY_AUTH_MODE=token and give the cluster's token "
                                 "(RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token); see docs/ray.md\n")
