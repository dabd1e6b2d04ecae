"""shardpay.twins.pick: which twin of a compiled part runs."""

from __future__ import annotations

import importlib

import pytest

from shardpay import twins


def test_unset_picks_the_extension(monkeypatch):
    pytest.importorskip("shardpay._ledger", reason="the compiled ledger is not built here")
    monkeypatch.delenv("SHARDPAY_LEDGER", raising=False)
    monkeypatch.delenv("SHARDPAY_NO_EXTENSIONS", raising=False)
    module, which = twins.pick("ledger", "SHARDPAY_LEDGER")
    assert (module.__name__, which) == ("shardpay._ledger", "compiled")


def test_python_picks_the_twin(monkeypatch):
    monkeypatch.setenv("SHARDPAY_CLAIMS", "python")
    module, which = twins.pick("claims", "SHARDPAY_CLAIMS")
    assert (module.__name__, which) == ("shardpay._claims_py", "python")


def test_no_extensions_means_python_unless_the_part_says_otherwise(monkeypatch):
    monkeypatch.setenv("SHARDPAY_NO_EXTENSIONS", "1")
    monkeypatch.delenv("SHARDPAY_NORMALIZE", raising=False)
    assert twins.pick("normalize", "SHARDPAY_NORMALIZE")[1] == "python"
    pytest.importorskip("shardpay._normalize", reason="the compiled normaliser is not built here")
    monkeypatch.setenv("SHARDPAY_NORMALIZE", "compiled")
    assert twins.pick("normalize", "SHARDPAY_NORMALIZE")[1] == "compiled"


def test_a_missing_extension_falls_back_unless_compiled_is_asked_for(monkeypatch):
    real = importlib.import_module

    def without_extension(name: str):  # type: ignore[no-untyped-def]
        if name == "shardpay._ledger":
            raise ImportError("not built")
        return real(name)

    monkeypatch.setattr(twins.importlib, "import_module", without_extension)
    monkeypatch.delenv("SHARDPAY_NO_EXTENSIONS", raising=False)
    monkeypatch.delenv("SHARDPAY_LEDGER", raising=False)
    assert twins.pick("ledger", "SHARDPAY_LEDGER")[1] == "python"
    monkeypatch.setenv("SHARDPAY_LEDGER", "compiled")
    with pytest.raises(ImportError, match="not built"):
        twins.pick("ledger", "SHARDPAY_LEDGER")


def test_another_value_is_refused(monkeypatch):
    monkeypatch.setenv("SHARDPAY_LEDGER", "fast")
    with pytest.raises(ImportError, match="SHARDPAY_LEDGER must be 'python', 'compiled' or unset, got 'fast'"):
        twins.pick("ledger", "SHARDPAY_LEDGER")
