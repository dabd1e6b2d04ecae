"""Shared test set-up: hypothesis profiles and helpers to run the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def shardpay_cmd() -> list[str]:
    """The installed console script, as a user runs it."""
    exe = shutil.which("shardpay", path=str(Path(sys.executable).parent)) or shutil.which("shardpay")
    if exe is None:
        pytest.fail("the shardpay console script is not installed (pip install '.[test]')")
    return [exe]


def run_cli(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed ``shardpay`` with ``args``; capture bytes."""
    return subprocess.run(shardpay_cmd() + list(args), input=input, capture_output=True, timeout=timeout)


@pytest.fixture
def shm_clean():
    """Assert the test leaves no shardpay segment in /dev/shm."""
    before = {n for n in os.listdir("/dev/shm") if n.startswith("shardpay-")}
    yield
    after = {n for n in os.listdir("/dev/shm") if n.startswith("shardpay-")}
    assert after - before == set(), f"leaked shared memory: {after - before}"
