"""Property 1: for any generated file the engine produces the model's output and rejects.

Three layers over the same file strategy:

* the installed CLI (``shardpay FILE --workers W --rejects R``) for W in
  1, 2, 3 and 5: output byte for byte and every ``(line, reason)`` equal to
  :func:`shardpay.testing.model.run`. Real processes, rings and merge; ~1.3 s an
  example, so few examples (see tests/conftest.py for the budgets).
* :func:`shardpay.engine.run` (the library API), processes forked from this
  one, also checking each reported reject row's columns;
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

from tests.property.harness import cli_outcome, inprocess_outcome, library_outcome, model_outcome
from shardpay.testing.strategies import transaction_files

WORKER_COUNTS = (1, 2, 3, 5)
PIPELINES = ((1, 1), (2, 2), (3, 1), (5, 3))
"""``(workers, decoders)`` the whole-engine properties run."""


@settings(max_examples=max(5, settings().max_examples // 5))  # ~1.3 s an example: 4 CLI runs
@given(data=transaction_files(max_rows=40))
@example(data=b"type,client,tx,amount\ndeposit,1,1,1.0\ndispute,1,1,\nchargeback,1,1,\ndeposit,1,2,1\n")
def test_cli_equals_model_for_every_worker_and_decoder_count(data):
    want = model_outcome(data)
    with tempfile.TemporaryDirectory(prefix="shardpay-prop-") as tmp:
        for workers, decoders in PIPELINES:
            got = cli_outcome(data, workers, tmp, decoders=decoders)
            assert got == want, f"--workers {workers} --decoders {decoders} differs from the model"


@settings(max_examples=max(5, settings().max_examples // 3))  # ~0.1 s an example: 2 forked runs
@given(data=transaction_files(max_rows=40), workers=st.sampled_from([((1, 2), (3, 1)), ((2, 3), (5, 2))]))
def test_library_api_equals_model(data, workers):
    """:func:`shardpay.engine.run` in this process: the same engine, without a CLI start-up per run.

    The in-process stages are checked on the same file: besides being one
    more comparison, that makes this test reach the ledger and the decoder
    in the test process itself, where mutmut sees which tests cover what
    (the engine's forked children run the same mutant, unseen).
    """
    want = model_outcome(data)
    for w, d in workers:
        assert library_outcome(data, w, d) == want, f"workers={w} decoders={d}"
    assert inprocess_outcome(data, workers[1][0]) == want


H = b"type,client,tx,amount\n"
MAX = b"922337203685477.5807"  # the largest amount
# Balances at the exact edges of the signed 64-bit range, too rare to leave to chance.
EDGE_FILES = [
    # a resolve brings available back to exactly MAX: accepted; then a deposit overflows
    H + b"deposit,1,1," + MAX + b"\ndispute,1,1,\nresolve,1,1,\ndeposit,1,2,1\ndeposit,2,3,1\n",
    # a dispute pushes held past MAX (rejected, overflow) and the rows after it still count
    H + b"deposit,1,1," + MAX + b"\nwithdrawal,1,2," + MAX + b"\ndispute,1,1,\ndeposit,1,3," + MAX
    + b"\ndispute,1,3,\ndeposit,2,4,1.5\nwithdrawal,2,5,1\n",
    # a chargeback while available is near -MAX: total 0, accepted, locked
    H + b"deposit,1,1,922337203685476.5807\nwithdrawal,1,2,922337203685476.5807\ndeposit,1,3,1\n"
    b"dispute,1,1,\ndispute,1,3,\nchargeback,1,3,\ndeposit,2,4,1\n",
]


def _edge_examples(test):
    for data in EDGE_FILES:
        test = example(data=data, workers=1, read_size=None)(test)
    return test


@settings(max_examples=2 * settings().max_examples)  # milliseconds an example
@given(
    data=transaction_files(max_rows=60),
    workers=st.sampled_from(WORKER_COUNTS),
    read_size=st.sampled_from([None, None, 1, 2, 3, 7, 64]),
)
@_edge_examples
def test_engine_stages_equal_model(data, workers, read_size):
    assert inprocess_outcome(data, workers, read_size) == model_outcome(data)


@given(data=transaction_files(max_rows=300, messy=False, bad_headers=False), workers=st.sampled_from(WORKER_COUNTS))
def test_engine_stages_equal_model_on_clean_files(data, workers):
    """Canonical rows only: whole blocks take the msgspec fast path."""
    assert inprocess_outcome(data, workers) == model_outcome(data)
