"""Property 1: for any generated file the engine produces the model's output and rejects.

Two layers over the same file strategy:

* the installed CLI (``shardpay FILE --workers W --rejects R``) for W in
  1, 2, 3 and 5: output byte for byte and every ``(line, reason)`` equal to
  :func:`shardpay.model.run`. Real processes, rings and merge; ~1.3 s an
  example, so few examples (see tests/conftest.py for the budgets).
* the reader and ledgers in this process (:func:`tests.property.harness.inprocess_outcome`)
  with random worker counts and short reads, so chunk boundaries fall
  inside lines, CRLFs and the BOM: many examples a second.

A worker-count dependence shows up as two worker counts disagreeing with
each other as well as with the model.
"""

from __future__ import annotations

import tempfile

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.property.harness import cli_outcome, inprocess_outcome, model_outcome
from tests.property.strategies import transaction_files

WORKER_COUNTS = (1, 2, 3, 5)


@settings(max_examples=max(5, settings().max_examples // 5))  # ~1.3 s an example: 4 CLI runs
@given(data=transaction_files(max_rows=40))
@example(data=b"type,client,tx,amount\ndeposit,1,1,1.0\ndispute,1,1,\nchargeback,1,1,\ndeposit,1,2,1\n")
def test_cli_equals_model_for_every_worker_count(data):
    want = model_outcome(data)
    with tempfile.TemporaryDirectory(prefix="shardpay-prop-") as tmp:
        for workers in WORKER_COUNTS:
            got = cli_outcome(data, workers, tmp)
            assert got == want, f"--workers {workers} differs from the model"


@settings(max_examples=2 * settings().max_examples)  # milliseconds an example
@given(
    data=transaction_files(max_rows=60),
    workers=st.sampled_from(WORKER_COUNTS),
    read_size=st.sampled_from([None, None, 1, 2, 3, 7, 64]),
)
def test_engine_stages_equal_model(data, workers, read_size):
    assert inprocess_outcome(data, workers, read_size) == model_outcome(data)


@given(data=transaction_files(max_rows=300, messy=False, bad_headers=False), workers=st.sampled_from(WORKER_COUNTS))
def test_engine_stages_equal_model_on_clean_files(data, workers):
    """Canonical rows only: whole blocks take the msgspec fast path."""
    assert inprocess_outcome(data, workers) == model_outcome(data)
