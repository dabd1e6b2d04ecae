"""A decoded chunk as numpy columns (``shardpay.columns``): one column per field, in
line order, line numbers from a range or a list."""

import numpy as np

from shardpay.codes import DEPOSIT, DISPUTE, WITHDRAWAL
from shardpay.columns import chunk_columns
from shardpay.decode import Deposit, Dispute, Withdrawal


def test_columns_hold_each_field_in_line_order():
    rows = [Deposit(1, 9, 5), Dispute(65535, 2**32 - 1), Withdrawal(0, 0, 2**62)]
    for lines in (range(7, 10), [7, 8, 2**40]):
        cols = chunk_columns(lines, rows)
        assert cols.lines.tolist() == list(lines)
        assert cols.kinds.tolist() == [DEPOSIT, DISPUTE, WITHDRAWAL]
        assert cols.clients.tolist() == [1, 65535, 0]
        assert cols.txs.tolist() == [9, 2**32 - 1, 0]
        assert cols.amounts.tolist() == [5, 0, 2**62]
        assert [c.dtype for c in cols] == [np.uint64, np.uint8, np.uint32, np.uint32, np.uint64]


def test_an_empty_chunk_has_empty_columns():
    assert all(col.size == 0 for col in chunk_columns(range(0), []))
