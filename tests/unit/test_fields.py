"""shardpay.fields: the id ranges msgspec checks (SPEC "Input")."""

from __future__ import annotations

import msgspec
import pytest

from shardpay.fields import Client, Tx


@pytest.mark.parametrize("field, value, ok", [
    (Client, 0, True), (Client, 65535, True), (Client, 65536, False), (Client, -1, False),
    (Tx, 0, True), (Tx, 2**32 - 1, True), (Tx, 2**32, False), (Tx, -1, False),
])
def test_an_id_in_range_decodes_and_one_outside_is_refused(field, value, ok):
    decode = msgspec.json.Decoder(field).decode
    if ok:
        assert decode(str(value).encode()) == value
    else:
        with pytest.raises(msgspec.ValidationError):
            decode(str(value).encode())
