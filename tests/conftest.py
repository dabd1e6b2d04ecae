"""Shared test set-up: hypothesis profiles and helpers to run the installed CLI."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Hypothesis profiles (tests/property/). Budgets are per test: the expensive
# properties scale their example counts down from max_examples (the CLI
# property runs 4 processes an example: max_examples // 5).
#   ci        derandomized, no example database, bounded: the default under CI=true.
#             Whole property suite about 1.5 min on 2 cores.
#   dev       random, with the example database: the default locally.
#   deep      HYPOTHESIS_PROFILE=deep: long bug hunts (tens of minutes).
#   mutation  HYPOTHESIS_PROFILE=mutation: derandomized and small, for mutmut
#             (each mutant reruns the tests that reach it; see profiling/README.md).
_NO_EXPLAIN = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=100, deadline=None, phases=_NO_EXPLAIN,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "deep", max_examples=5000, stateful_step_count=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "mutation", derandomize=True, database=None, max_examples=30, stateful_step_count=30, deadline=None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
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


def import_compiled(name: str, what: str):
    """The compiled extension ``shardpay.<name>`` (``what``: its name in messages), imported.

    Skips the test where it was not built (no C compiler); fails it under
    ``CI=true``, where CI builds every extension.
    """
    try:
        return importlib.import_module(f"shardpay.{name}")
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI builds the {what}, but shardpay.{name} does not import: {err}")
        pytest.skip(f"the {what} is not built ({err}): pip install -e . with a C compiler")


def run_cli_with_files(src, workers: int, env: dict[str, str], tmp_path) -> tuple[bytes, bytes, dict, str]:
    """The installed CLI on ``src`` at ``workers``, with ``env`` added to the environment
    (a twin's switch, such as ``SHARDPAY_LEDGER``), ``--rejects`` and ``--stats`` to files.

    Returns:
        (stdout, the rejects CSV, the stats as a dict, stderr). Fails the test on a non-zero exit.
    """
    tag = "-".join(f"{k}={v}" for k, v in sorted(env.items())) + f"-{workers}"
    rej, stats = tmp_path / f"rejects-{tag}.csv", tmp_path / f"stats-{tag}.json"
    r = subprocess.run([*shardpay_cmd(), str(src), "--workers", str(workers), "--rejects", str(rej),
                        "--stats", str(stats)], capture_output=True, env=dict(os.environ, **env), timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout, rej.read_bytes(), json.loads(stats.read_text()), r.stderr.decode()


def _segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("shardpay-")}


def _owner_gone(name: str) -> bool:
    pid = int(name.split("-")[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


@pytest.fixture
def shm_clean():
    """Assert the test leaves no shardpay segment in /dev/shm.

    A segment counts as leaked when it appeared during the test and the run
    that created it (its name holds the creator's pid) has ended, or is this
    test process; segments of other live runs (parallel jobs) are not ours.
    """
    before = _segments()
    yield
    leaked = {n for n in _segments() - before if _owner_gone(n)}
    assert leaked == set(), f"leaked shared memory: {leaked}"
