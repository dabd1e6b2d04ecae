"""shardpay.fields: the id ranges msgspec checks (SPEC "Input")."""

from __future__ import annotations

import msgspec
import pytest

from shardpay.fields import Client, Tx


@pytest.mark.parametrize("value, ok", [(0, True), (65535, True), (65536, False), (-1, False)])
def test_client_is_0_to_65535(value, ok):
    decode = msgspec.json.Decoder(Client).decode
    if ok:
        assert decode(str(value).encode()) == value
    else:
        with pytest.raises(msgspec.ValidationError):
            decode(str(value).encode())


@pytest.mark.parametrize("value, ok", [(0, True), (2**32 - 1, True), (2**32, False), (-1, False)])
def test_tx_is_0_to_2_to_the_32_minus_1(value, ok):
    decode = msgspec.json.Decoder(Tx).decode
    if ok:
        assert decode(str(value).encode()) == value
    else:
        with pytest.raises(msgspec.ValidationError):
            decode(str(value).encode())
