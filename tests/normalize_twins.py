"""The normaliser's twins for tests that must pass under each (STYLE: compiled hot paths
with a pure twin): ``pytest.mark.parametrize("normalize", TWINS)`` and ``with using(normalize):``."""

from __future__ import annotations

import importlib
from unittest import mock

import pytest

import shardpay.decode as decode_mod
from shardpay import _normalize_py

try:
    compiled = importlib.import_module("shardpay._normalize")
except ImportError:  # no C compiler at install time: the pure twin alone
    compiled = None

TWINS = [
    pytest.param(_normalize_py.normalize, id="python"),
    pytest.param(getattr(compiled, "normalize", None), id="compiled",
                 marks=pytest.mark.skipif(compiled is None, reason="shardpay._normalize is not built")),
]
needs_compiled = pytest.mark.skipif(compiled is None, reason="shardpay._normalize is not built")


def using(normalize):  # type: ignore[no-untyped-def]
    """Make :func:`shardpay.decode.decode_chunk` use this twin inside a ``with`` block."""
    return mock.patch.object(decode_mod, "normalize", normalize)
