"""Both twins of ``answer_lines`` (``shardpay._render``, Cython; ``shardpay._render_py``, pure):
ledger reject records straight to the ``LINE,REASON,DETAIL`` lines of a ``shardpay serve``
answer. Each must give exactly the bytes ``protocol.reject_lines`` gives for the records'
``rejects.render`` (the wording of the batch CLI's ``--rejects``), over every reason, every
stored state and the extremes of an i64, and refuse a reason code that names none.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardpay import _rejects_csv_py, _render_py, rejects
from shardpay.codes import REASONS
from shardpay.rejects import render
from shardpay.serve.protocol import reject_lines

I64 = st.integers(-(2**63), 2**63 - 1)
EDGES = [0, 1, -1, 9999, -9999, 10_000, -10_000, 65_535, 2**32 - 1, 2**63 - 1, -(2**63)]


def twin(name: str):
    if name == "python":
        return _render_py
    return pytest.importorskip("shardpay._render", reason="the compiled renderer is not built here")


@pytest.fixture(params=["compiled", "python"])
def answer_lines(request):
    return twin(request.param).answer_lines


def want(records: list[tuple[int, ...]], offset: int) -> bytes:
    return reject_lines([render(*r) for r in records], offset)


def as_array(records: list[tuple[int, ...]]) -> np.ndarray:
    return np.array(records, dtype=np.int64).reshape(-1, 7)


def test_every_reason_and_state_at_the_edges(answer_lines):
    rng = random.Random(7)
    records = [(rng.randrange(1, 10**12), reason, rng.randrange(5), rng.choice(EDGES), rng.choice(EDGES),
                rng.choice(EDGES), rng.choice(EDGES[:4] + [2, 3] + EDGES[4:]))
               for _ in range(3000) for reason in range(len(REASONS))]
    for offset in (0, -7, 10**6):
        assert answer_lines(as_array(records), offset) == want(records, offset)


@given(st.lists(st.tuples(st.integers(1, 2**40), st.integers(0, len(REASONS) - 1), st.integers(0, 4),
                          I64, I64, I64, st.one_of(st.integers(0, 3), I64)), max_size=40),
       st.integers(-(2**20), 2**20))
def test_the_twins_give_the_same_bytes(records, offset):
    pure = _render_py.answer_lines(as_array(records), offset)
    assert pure == want(records, offset)
    assert twin("compiled").answer_lines(as_array(records), offset) == pure


def csv_want(records: list[tuple[int, ...]]) -> bytes:
    return _rejects_csv_py.csv_rows([render(*r) for r in records]).encode("ascii")


@pytest.mark.parametrize("name", ["compiled", "python"])
def test_csv_rows_of_every_reason_and_kind_at_the_edges(name):
    rng = random.Random(8)
    records = [(rng.randrange(1, 10**12), reason, kind, rng.choice(EDGES), rng.choice(EDGES),
                rng.choice(EDGES), rng.choice(EDGES[:4] + [2, 3] + EDGES[4:]))
               for _ in range(500) for reason in range(len(REASONS)) for kind in range(5)]
    assert twin(name).csv_lines(as_array(records)) == csv_want(records)
    assert twin(name).csv_lines(as_array(records)[:0]) == b""


@given(st.lists(st.tuples(st.integers(1, 2**40), st.integers(0, len(REASONS) - 1), st.integers(0, 4),
                          I64, I64, I64, st.one_of(st.integers(0, 3), I64)), max_size=40))
def test_the_twins_give_the_same_csv_rows(records):
    pure = _render_py.csv_lines(as_array(records))
    assert pure == csv_want(records)
    assert twin("compiled").csv_lines(as_array(records)) == pure


@pytest.mark.parametrize("name", ["compiled", "python"])
@pytest.mark.parametrize("field, value", [(1, len(REASONS)), (1, -1), (2, 5), (2, -1)])
def test_csv_rows_refuse_a_code_out_of_range(name, field, value):
    record = [7, 0, 0, 1, 2, 3, 0]
    record[field] = value
    with pytest.raises(ValueError, match="line 7: "):
        twin(name).csv_lines(as_array([tuple(record)]))


def test_a_slice_of_an_array_and_no_records(answer_lines):
    records = [(line, 4, 2, 1, line, 0, 0) for line in range(2, 12)]
    assert answer_lines(as_array(records)[3:6], 1) == want(records[3:6], 1)
    assert answer_lines(as_array([]), 5) == b""


@pytest.mark.parametrize("reason", [-1, len(REASONS), 2**40])
def test_a_reason_code_out_of_range_is_refused(answer_lines, reason):
    with pytest.raises(ValueError, match=f"line 3: reason code {reason} is not one of 0..8"):
        answer_lines(as_array([(2, 1, 0, 1, 1, 0, 0), (3, reason, 0, 1, 1, 0, 0)]), 0)


@pytest.mark.parametrize("env, picked", [({}, "compiled"), ({"SHARDPAY_RENDER": "python"}, "python"),
                                         ({"SHARDPAY_NO_EXTENSIONS": "1"}, "python")])
def test_which_twin_runs(env, picked):
    if picked == "compiled":
        twin("compiled")
    clean = {k: v for k, v in os.environ.items() if k not in ("SHARDPAY_RENDER", "SHARDPAY_NO_EXTENSIONS")}
    out = subprocess.run([sys.executable, "-c", "import shardpay.rejects as r; print(r.RENDER)"],
                         env={**clean, **env}, capture_output=True, text=True, check=True).stdout
    assert out.strip() == picked
    assert rejects.RENDER in ("compiled", "python")
