"""Rows as numpy columns, the form the sequencer's claim and split work on, for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Columns(NamedTuple):
    """Rows as numpy columns of equal length, in line order (as the sequencer reads a frame)."""

    lines: np.ndarray
    kinds: np.ndarray
    clients: np.ndarray
    txs: np.ndarray
    amounts: np.ndarray


def columns_of(lines: Sequence[int], rows: Sequence) -> Columns:
    """Row structs (:mod:`shardpay.decode`) on ``lines`` as :class:`Columns` (u64, u8, u32, u32, u64)."""
    return Columns(np.array(list(lines), np.uint64), np.array([r.kind for r in rows], np.uint8),
                   np.array([r.client for r in rows], np.uint32), np.array([r.tx for r in rows], np.uint32),
                   np.array([getattr(r, "amount", 0) for r in rows], np.uint64))
