"""``--ray-address``: join a Ray cluster started with ``ray start --head`` (README "Beyond one machine")."""

from __future__ import annotations

import os
import signal
import socket
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


@pytest.mark.slow
def test_join_a_cluster_started_with_ray_start(tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
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
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops its processes on SIGTERM
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_an_unreachable_cluster_fails_fast():
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    r = subprocess.run([*shardpay_cmd(), str(FIXTURES / "spec_example.csv"), "--backend", "ray", "--ray-address",
                        f"127.0.0.1:{port}", "-q"], capture_output=True, timeout=60)
    assert r.returncode == 1 and r.stdout == b""
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in r.stderr.decode()
    assert time.monotonic() - t0 < 30
