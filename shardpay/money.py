"""Money: the only place where text becomes 1/10,000 units and back.

Money is an ``int`` count of 1/10,000 units end to end, never a float
(SPEC "Input": amounts; "Output": four decimal places).
"""

from __future__ import annotations

import re

__all__ = ["AMOUNT_DETAILS", "MAX_UNITS", "MIN_UNITS", "SCALE", "clip", "format_units", "parse_amount"]

SCALE = 10_000
"""Units per whole currency unit: amounts have at most four decimal places."""
MAX_UNITS = 2**63 - 1
"""Largest balance or amount in units (922337203685477.5807)."""
MIN_UNITS = -(2**63)
"""Smallest balance in units."""

_AMOUNT = re.compile(r"([0-9]*)(?:\.([0-9]*))?")

AMOUNT_DETAILS = {
    "missing": "amount is missing",
    "not a number": "amount {!r} is not a decimal number",
    "decimals": "amount {!r} has more than 4 decimal places",
    "too large": "amount {!r} is larger than 922337203685477.5807",
    "not positive": "amount {!r} is not greater than zero",
}
"""Why an amount is refused -> the reject detail, a template over the amount as read
(shortened by :func:`clip`); the compiled exact path (``_exact.pyx``) words them the same."""


def parse_amount(text: str) -> int:
    """Parse a deposit or withdrawal amount exactly (SPEC "Input", ``amount``).

    Args:
        text: the field, already stripped of surrounding whitespace, e.g.
            ``"1.5"``, ``".5"``, ``"5."``, ``"1.23450"``.

    Returns:
        The amount in 1/10,000 units, ``1 <= units <= MAX_UNITS``.

    Raises:
        ValueError: the text is not an exact positive amount; the message is
            the reject detail (``amount '1.23456' has more than 4 decimal places``).
    """
    m = _AMOUNT.fullmatch(text)
    if m is None or not text or text == ".":
        if not text:
            raise ValueError(AMOUNT_DETAILS["missing"])
        raise ValueError(AMOUNT_DETAILS["not a number"].format(clip(text)))
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > 4:
        if frac[4:].strip("0"):
            raise ValueError(AMOUNT_DETAILS["decimals"].format(clip(text)))
        frac = frac[:4]
    whole = whole.lstrip("0")
    if len(whole) > 15:  # > 922337203685477; also keeps int() below its 4300-digit limit
        raise ValueError(AMOUNT_DETAILS["too large"].format(clip(text)))
    units = int(whole or "0") * SCALE + int(frac.ljust(4, "0"))
    if units == 0:
        raise ValueError(AMOUNT_DETAILS["not positive"].format(clip(text)))
    if units > MAX_UNITS:
        raise ValueError(AMOUNT_DETAILS["too large"].format(clip(text)))
    return units


def format_units(units: int) -> str:
    """Format 1/10,000 units with exactly four decimals (SPEC "Output").

    Args:
        units: an amount or balance in 1/10,000 units; may be negative.

    Returns:
        Text such as ``"1.5000"``, ``"-0.2500"`` or ``"0.0000"``.
    """
    if units < 0:
        whole, frac = divmod(-units, SCALE)
        return f"-{whole}.{frac:04d}"
    whole, frac = divmod(units, SCALE)
    return f"{whole}.{frac:04d}"


def clip(text: str, width: int = 40) -> str:
    """``text`` shortened to ``width`` characters (``...`` at the end) for a reject
    detail, so a detail stays one readable line."""
    return text if len(text) <= width else text[: width - 3] + "..."
