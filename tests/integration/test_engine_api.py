"""The library API: shardpay.Engine (feed / snapshot / rejects / close) and shardpay.process."""

from __future__ import annotations

import io
import random

import pytest

import shardpay
from shardpay.rejects import answer_lines
from shardpay.serve.protocol import reject_lines
from shardpay.testing import model
from shardpay.testing.generate import generate
from tests.conftest import FIXTURES


def messy_bytes(rows: int, seed: int) -> bytes:
    buf = io.BytesIO()
    generate(rows, buf, seed=seed, scenario="messy", clients=300)
    return buf.getvalue()


def model_accounts(data: bytes) -> list[str]:
    return model.run(data).output.splitlines(keepends=True)[1:]


def complete_prefix(data: bytes, n: int) -> bytes:
    """The first n bytes cut back to the last LF: what a snapshot must cover."""
    return data[: data.rfind(b"\n", 0, n) + 1]


@pytest.mark.parametrize("workers", [1, 3])
def test_feed_any_chunking_snapshots_and_rejects_equal_the_model(workers, shm_clean):
    data = messy_bytes(20_000, seed=workers)
    rng = random.Random(workers)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    checks = set(cuts[5::10])
    with shardpay.Engine(workers=workers) as engine:
        prev = 0
        for cut in cuts + [len(data)]:
            engine.feed(data[prev:cut])
            prev = cut
            if cut in checks:
                prefix = complete_prefix(data, cut)
                assert [a.csv_line() for a in engine.snapshot()] == model_accounts(prefix)
                got = [(r.line, r.reason) for r in engine.rejects()]
                assert got[: len(model.run(prefix).rejects)] == model.run(prefix).rejects
    with engine.result as result:
        want = model.run(data)
        assert "".join(a.csv_line() for a in result.account_list()) == "".join(want.output.splitlines(True)[1:])
        assert [(r.line, r.reason) for r in result.rejects()] == want.rejects


def test_process_is_the_one_call_form(shm_clean):
    src = FIXTURES / "spec_example.csv"
    with shardpay.process(src, workers=2) as result:
        accounts = result.account_list()
    assert [(a.client, a.available, a.held, a.total, a.locked) for a in accounts] == [
        (1, -5000, 0, -5000, True),
        (2, 20000, 0, 20000, False),
    ]
    assert accounts[0].csv_line() == "1,-0.5000,0.0000,-0.5000,true\n"


def test_a_last_row_without_lf_counts_at_close(shm_clean):
    with shardpay.Engine(workers=1) as engine:
        engine.feed(b"type,client,tx,amount\ndeposit,1,1,2")
        assert engine.snapshot() == []  # the row is not complete yet
    assert engine.result.account_list() == [shardpay.Account(1, 20000, 0, False)]
    engine.result.close()


def test_bad_header_is_an_input_error(shm_clean):
    with pytest.raises(shardpay.InputError, match="bad header"):
        with shardpay.Engine(workers=2) as engine:
            engine.feed(b"client,type,tx,amount\ndeposit,1,1,1\n")
            engine.snapshot()


def test_strict_engine_raises_at_close(shm_clean):
    engine = shardpay.Engine(workers=2, strict=True)
    engine.start()
    engine.feed(b"type,client,tx,amount\ndeposit,1,1,1\nwithdrawal,1,2,5\n")
    with pytest.raises(shardpay.StrictReject, match="line 3: insufficient_funds"):
        engine.close()
    engine.abort()


def test_error_inside_with_stops_everything(shm_clean):
    with pytest.raises(ZeroDivisionError):
        with shardpay.Engine(workers=2) as engine:
            engine.feed(b"type,client,tx,amount\ndeposit,1,1,1\n")
            1 / 0
    with pytest.raises(RuntimeError, match="not running"):
        engine.feed(b"deposit,1,2,1\n")


def test_public_names():
    assert shardpay.__all__ == sorted(shardpay.__all__)
    for name in shardpay.__all__:
        assert getattr(shardpay, name).__doc__, name


def test_rejects_since_reads_only_what_is_new(shm_clean):
    header = b"type,client,tx,amount\n"
    with shardpay.Engine(workers=2) as engine:
        engine.feed(header + b"deposit,1,1,1\nwithdrawal,1,2,5\nbogus\n")
        rejects, cursor = engine.rejects_since()
        assert [(r.line, r.reason) for r in rejects] == [(3, "insufficient_funds"), (4, "invalid_row")]
        assert engine.rejects_since(cursor) == ([], cursor)
        engine.feed(b"deposit,2,1,1\ndeposit,2,9,1\ndispute,2,7,\n")
        rejects, cursor = engine.rejects_since(cursor)
        assert [(r.line, r.reason) for r in rejects] == [(5, "duplicate_tx"), (7, "unknown_tx")]
        assert [r.line for r in engine.rejects()] == [3, 4, 5, 7]
    engine.result.close()


def test_raw_rejects_since_holds_every_workers_records_by_line(shm_clean):
    header = b"type,client,tx,amount\n"
    rows = b"".join(b"withdrawal,%d,%d,5\n" % (client, tx) for tx, client in enumerate([1, 2, 3, 4, 2, 1, 4], 1))
    with shardpay.Engine(workers=2) as engine:
        engine.feed(header + rows + b"bogus\ndispute,3,99,\n")
        raw, cursor = engine.raw_rejects_since()
        assert raw.records[:, 0].tolist() == [2, 3, 4, 5, 6, 7, 8, 10]  # from both workers, by line
        assert [r.line for r in raw.invalid] == [9]
        assert raw.count == 9
        assert raw.rejects() == engine.rejects()
        assert answer_lines(raw.records, 1) == reject_lines([r for r in raw.rejects() if r.line != 9], 1)
        again, _ = engine.raw_rejects_since(cursor)
        assert again.count == 0 and again.records.shape == (0, 7)
    engine.result.close()
