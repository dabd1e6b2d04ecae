import pytest

from shardpay.money import MAX_UNITS, format_units, parse_amount


@pytest.mark.parametrize(
    "text, units",
    [("1", 10000), ("1.5", 15000), ("1.2345", 12345), (".5", 5000), ("5.", 50000),
     ("0.0001", 1), ("1.23450", 12345), ("1.2345000000", 12345), ("007.1", 71000),
     ("922337203685477.5807", MAX_UNITS)],
)
def test_parse_amount_exact(text, units):
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    "text, words",
    [("", "missing"), (".", "not a decimal"), ("1.23456", "more than 4"), ("0", "greater than zero"),
     ("0.00001", "more than 4"), ("0.0000", "greater than zero"), ("-1", "not a decimal"),
     ("1e3", "not a decimal"), ("1.2.3", "not a decimal"), ("922337203685477.5808", "larger"),
     ("１", "not a decimal"), ("1,5", "not a decimal")],
)
def test_parse_amount_rejects(text, words):
    with pytest.raises(ValueError, match=words):
        parse_amount(text)


@pytest.mark.parametrize(
    "units, text",
    [(0, "0.0000"), (15000, "1.5000"), (-2500, "-0.2500"), (1, "0.0001"), (-1, "-0.0001"),
     (MAX_UNITS, "922337203685477.5807"), (-(2**63), "-922337203685477.5808")],
)
def test_format_units(units, text):
    assert format_units(units) == text


def test_huge_digit_strings_are_rejected_not_crashing():
    with pytest.raises(ValueError, match="larger than"):
        parse_amount("9" * 5000)
    assert parse_amount("0" * 5000 + "1.5") == 15000
    with pytest.raises(ValueError, match="more than 4"):
        parse_amount("1." + "1" * 5000)
