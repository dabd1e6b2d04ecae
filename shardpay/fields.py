"""The fields of a CSV row as msgspec constrained types, and the decoded rows (SPEC "Input").

``client`` is an integer 0..65535 and ``tx`` an integer 0..4294967295:
msgspec checks these ranges wherever a row is decoded from JSON
(:mod:`shardpay.decode`, the pure normaliser :mod:`shardpay._normalize_py`).
The row structs are what the exact path (:mod:`shardpay._exact_py`) makes of
a valid line.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Union

import msgspec

from .codes import CHARGEBACK, DEPOSIT, DISPUTE, RESOLVE, WITHDRAWAL
from .money import MAX_UNITS

__all__ = ["ROW_CLASSES", "Chargeback", "Client", "Deposit", "Dispute", "Resolve", "Row", "Tx", "Withdrawal"]

Client = Annotated[int, msgspec.Meta(ge=0, le=65535)]
"""A client id: an int 0..65535."""
Tx = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
"""A transaction id: an int 0..2**32 - 1."""

_Amount = Annotated[int, msgspec.Meta(gt=0, le=MAX_UNITS)]


class _Money(msgspec.Struct, array_like=True, gc=False):
    """A deposit or withdrawal: ``amount`` in 1/10,000 units, > 0."""

    client: Client
    tx: Tx
    amount: _Amount


class _Reference(msgspec.Struct, array_like=True, gc=False):
    """A dispute, resolve or chargeback: its amount field is ignored (``amount`` is 0)."""

    client: Client
    tx: Tx
    ignored: str = ""
    amount: ClassVar[int] = 0


class Deposit(_Money, tag="deposit"):
    """A well-formed deposit row."""

    kind: ClassVar[int] = DEPOSIT


class Withdrawal(_Money, tag="withdrawal"):
    """A well-formed withdrawal row."""

    kind: ClassVar[int] = WITHDRAWAL


class Dispute(_Reference, tag="dispute"):
    """A well-formed dispute row."""

    kind: ClassVar[int] = DISPUTE


class Resolve(_Reference, tag="resolve"):
    """A well-formed resolve row."""

    kind: ClassVar[int] = RESOLVE


class Chargeback(_Reference, tag="chargeback"):
    """A well-formed chargeback row."""

    kind: ClassVar[int] = CHARGEBACK


Row = Union[Deposit, Withdrawal, Dispute, Resolve, Chargeback]
"""A decoded, well-formed row. ``row.kind`` is its kind code."""
ROW_CLASSES = (Deposit, Withdrawal, Dispute, Resolve, Chargeback)
"""The row struct of each kind code."""
