"""The id fields of a CSV row as msgspec constrained types (SPEC "Input").

``client`` is an integer 0..65535 and ``tx`` an integer 0..4294967295:
msgspec checks these ranges wherever a row is decoded from JSON
(:mod:`shardpay.decode`, the pure normaliser :mod:`shardpay._normalize_py`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Client", "Tx"]

Client = Annotated[int, msgspec.Meta(ge=0, le=65535)]
"""A client id: an int 0..65535."""
Tx = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
"""A transaction id: an int 0..2**32 - 1."""
