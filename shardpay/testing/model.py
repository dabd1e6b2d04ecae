"""Reference model of the semantics (``docs/semantics.md``): the plain, single-process oracle.

Tests and benchmarks compare the engine against this module, so it is
written to be read, not to be fast: a regex per line, dicts, and money as an
integer count of 1/10,000 units. It imports nothing else from ``shardpay``.

Where the rules leave room, the model makes these choices (the engine makes
the same ones):

* A line is a physical line: bytes up to an LF (``\\n``), numbered from 1.
  A UTF-8 byte-order mark at the very start of the file is ignored.
* Each line is decoded on its own as strict UTF-8 (else the row is invalid)
  and stripped of whitespace in Python's sense (``str.strip()``: also CR, so
  CRLF works). A line left empty is skipped silently (no reject); the first
  other line is the header.
* Fields are split at commas with RFC 4180 quoting: a field starting (after
  whitespace) with ``"`` runs to its closing quote, ``""`` being a quote;
  only whitespace may follow it. A quote left open at the end of the line, or
  text after a closing quote, makes the row invalid. A quote inside an
  unquoted field is data, as in the csv module. Every field is stripped of
  whitespace, inside quotes too (``" 1 "`` is 1).
* Three fields are four with an empty amount; any other count is invalid.
* ``client`` and ``tx`` are ASCII digits (leading zeros allowed) within u16 /
  u32. ``amount`` (deposit, withdrawal) matches ``[0-9]*\\.?[0-9]*`` with at
  least one digit, has only zeros past the fourth decimal, and lies in
  (0, 922337203685477.5807]. For dispute, resolve and chargeback the amount
  field is ignored whatever it holds.
* Precedence: invalid_row, duplicate_tx, account_locked, the table's reasons
  in order, overflow. Every well-formed deposit or withdrawal claims its tx
  id whatever its outcome; disputes, resolves and chargebacks never do.
* Dispute, resolve and chargeback find only an ACCEPTED deposit or withdrawal
  of the SAME client; anything else is ``unknown_tx``. A charged-back deposit
  can never be disputed again (``already_disputed``).
* ``overflow``: after the transaction available, held and total must all lie
  in [-2**63, 2**63 - 1] units, else nothing changes.

Usage::

    python -m shardpay.testing.model FILE|- [--rejects OUT.csv]   # output CSV on stdout
"""

from __future__ import annotations

import argparse
import gc
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["HeaderError", "Ledger", "Result", "format_units", "main", "parse_amount", "run"]

UNITS_PER_ONE = 10_000
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U16_MAX = 2**16 - 1
U32_MAX = 2**32 - 1

BOM = b"\xef\xbb\xbf"
HEADER = ["type", "client", "tx", "amount"]
OUTPUT_HEADER = "client,available,held,total,locked"
TYPES = frozenset({"deposit", "withdrawal", "dispute", "resolve", "chargeback"})

_AMOUNT = re.compile(r"([0-9]*)\.?([0-9]*)")
_MAX_WHOLE_DIGITS = len(str(I64_MAX // UNITS_PER_ONE))  # 15


class HeaderError(ValueError):
    """The first non-empty line is not a valid header (a fatal error)."""


class Result(NamedTuple):
    """What one run produces.

    Attributes:
        output: the whole output CSV text, LF line endings.
        rejects: ``(line, reason)`` for every rejected row, in file order;
            ``line`` is the 1-based physical line number.
    """

    output: str
    rejects: list[tuple[int, str]]


# --------------------------------------------------------------------------
# Parsing: one physical line to a typed row
# --------------------------------------------------------------------------


# One field and the comma (or end of line) after it. A field whose first
# non-whitespace character is a double quote is quoted: ``""`` inside is one
# quote, commas inside are data, and only whitespace may follow the closing
# quote. Any other field is taken literally (a quote inside it is data, as in
# the csv module). Unterminated quotes and text after a closing quote match
# neither branch.
_FIELD = re.compile(r'\s*"(?P<quoted>(?:[^"]|"")*)"\s*(?P<qsep>,|\Z)|(?!\s*")(?P<plain>[^,]*)(?P<psep>,|\Z)')


def split_fields(text: str) -> list[str] | None:
    """Split one line's text into fields stripped of whitespace (RFC 4180 quoting).

    Returns:
        the fields, or None when the quoting is malformed.
    """
    if '"' not in text:  # the common case; the same result as the regex
        return [field.strip() for field in text.split(",")]
    fields = []
    pos = 0
    while True:
        match = _FIELD.match(text, pos)
        if match is None:
            return None
        quoted = match["quoted"]
        if quoted is not None:
            fields.append(quoted.replace('""', '"').strip())
            separator = match["qsep"]
        else:
            fields.append(match["plain"].strip())
            separator = match["psep"]
        if not separator:
            return fields
        pos = match.end()


def _parse_uint(text: str, maximum: int) -> int | None:
    """Plain ASCII digits (leading zeros allowed) within 0..maximum, else None."""
    if not (text.isascii() and text.isdigit()):  # [0-9]+
        return None
    significant = text.lstrip("0")
    if len(significant) > 20:  # far too big; keeps int() off 5,000-digit strings
        return None
    value = int(significant or "0")
    return value if value <= maximum else None


def parse_amount(text: str) -> int | None:
    """A deposit/withdrawal amount in 1/10,000 units, or None if invalid.

    Digits with an optional point (``1``, ``1.5``, ``.5``, ``5.``), digits past
    the fourth decimal only if zeros, value in (0, I64_MAX] units. Never rounds.
    """
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    whole, frac = match.groups()
    if not whole and not frac:
        return None
    if frac[4:].strip("0"):
        return None
    whole = whole.lstrip("0")
    if len(whole) > _MAX_WHOLE_DIGITS:  # too big; keeps int() off huge strings
        return None
    units = int(whole or "0") * UNITS_PER_ONE + int(frac[:4].ljust(4, "0"))
    return units if 0 < units <= I64_MAX else None


def parse_row(fields: list[str]) -> tuple[str, int, int, int] | None:
    """Fields of a data line to ``(type, client, tx, amount_units)``, or None.

    ``amount_units`` is 0 for dispute, resolve and chargeback (ignored).
    """
    if len(fields) == 3:
        fields = [*fields, ""]
    if len(fields) != 4:
        return None
    kind, client_text, tx_text, amount_text = fields
    if kind not in TYPES:
        return None
    client = _parse_uint(client_text, U16_MAX)
    tx = _parse_uint(tx_text, U32_MAX)
    if client is None or tx is None:
        return None
    amount = 0
    if kind in ("deposit", "withdrawal"):
        parsed = parse_amount(amount_text)
        if parsed is None:
            return None
        amount = parsed
    return kind, client, tx, amount


def check_header(fields: list[str] | None, line: bytes, number: int) -> None:
    """Raise HeaderError unless the fields are a valid header (names trimmed, any case)."""
    names = None if fields is None else [field.lower() for field in fields]
    if names != HEADER and names != HEADER[:3]:
        found = line.decode("utf-8", "backslashreplace").strip()
        raise HeaderError(
            f"line {number}: expected header 'type,client,tx,amount' (or 'type,client,tx'), found {found!r}"
        )


# --------------------------------------------------------------------------
# The SPEC state machine
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Account:
    """One client's balances in 1/10,000 units; total is available + held."""

    available: int = 0
    held: int = 0
    locked: bool = False


@dataclass(slots=True)
class Deposit:
    """An accepted deposit, the only kind of tx a dispute can move."""

    client: int
    amount: int
    state: str = "settled"  # "settled" | "disputed" | "charged_back"


def _fits(available: int, held: int) -> bool:
    """True when available, held and total all fit in a signed 64-bit int."""
    return I64_MIN <= available <= I64_MAX and I64_MIN <= held <= I64_MAX and I64_MIN <= available + held <= I64_MAX


class Ledger:
    """All accounts and transactions of one run, in file order."""

    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {}
        self.claimed: set[int] = set()  # tx ids of every well-formed deposit/withdrawal
        self.deposits: dict[int, Deposit] = {}  # accepted deposits by tx id
        self.withdrawals: dict[int, int] = {}  # accepted withdrawals: tx id -> client

    def apply(self, kind: str, client: int, tx: int, amount: int) -> str | None:
        """Apply one well-formed row; return its reject reason or None if accepted."""
        account = self.accounts.get(client)
        if account is None:
            account = self.accounts[client] = Account()

        if kind in ("deposit", "withdrawal"):
            if tx in self.claimed:
                return "duplicate_tx"
            self.claimed.add(tx)
            if account.locked:
                return "account_locked"
            if kind == "deposit":
                available = account.available + amount
            else:
                if account.available < amount:
                    return "insufficient_funds"
                available = account.available - amount
            if not _fits(available, account.held):
                return "overflow"
            account.available = available
            if kind == "deposit":
                self.deposits[tx] = Deposit(client, amount)
            else:
                self.withdrawals[tx] = client
            return None

        if account.locked:
            return "account_locked"
        deposit = self.deposits.get(tx)
        if deposit is None or deposit.client != client:
            if self.withdrawals.get(tx) != client:
                return "unknown_tx"
            return "not_disputable" if kind == "dispute" else "not_disputed"

        if kind == "dispute":
            if deposit.state != "settled":
                return "already_disputed"
            available, held, state = (
                account.available - deposit.amount,
                account.held + deposit.amount,
                "disputed",
            )
        else:
            if deposit.state != "disputed":
                return "not_disputed"
            if kind == "resolve":
                available, held, state = (
                    account.available + deposit.amount,
                    account.held - deposit.amount,
                    "settled",
                )
            else:  # chargeback
                available, held, state = (
                    account.available,
                    account.held - deposit.amount,
                    "charged_back",
                )
        if not _fits(available, held):
            return "overflow"
        account.available, account.held, deposit.state = available, held, state
        if state == "charged_back":
            account.locked = True
        return None

    def output(self) -> str:
        """The output CSV text: header, one row per account sorted by client."""
        rows = [OUTPUT_HEADER]
        for client in sorted(self.accounts):
            account = self.accounts[client]
            rows.append(
                f"{client},{format_units(account.available)},{format_units(account.held)},"
                f"{format_units(account.available + account.held)},"
                f"{'true' if account.locked else 'false'}"
            )
        return "\n".join(rows) + "\n"


def format_units(units: int) -> str:
    """1/10,000 units to text with exactly four decimals: -5000 -> ``-0.5000``."""
    whole, frac = divmod(abs(units), UNITS_PER_ONE)
    return f"{'-' if units < 0 else ''}{whole}.{frac:04d}"


# --------------------------------------------------------------------------
# Driving a whole file
# --------------------------------------------------------------------------


def process(lines: Iterable[bytes]) -> tuple[Ledger, list[tuple[int, str]]]:
    """Run physical lines through a fresh Ledger.

    Args:
        lines: the input's lines as bytes, each with its LF (as iterating a
            binary file yields them); the first may start with a BOM.

    Returns:
        the ledger after the last line, and the rejects in file order.

    Raises:
        HeaderError: the first non-empty line is not a valid header.
    """
    ledger = Ledger()
    rejects: list[tuple[int, str]] = []
    seen_header = False
    for number, line in enumerate(lines, 1):
        if number == 1:
            line = line.removeprefix(BOM)
        try:
            text: str | None = line.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            text = text.strip()  # also the LF or CRLF at the end
            if not text:
                continue
        fields = None if text is None else split_fields(text)
        if not seen_header:
            check_header(fields, line, number)
            seen_header = True
            continue
        row = None if fields is None else parse_row(fields)
        reason = "invalid_row" if row is None else ledger.apply(*row)
        if reason is not None:
            rejects.append((number, reason))
    return ledger, rejects


def run(data: bytes) -> Result:
    """Process a whole input file held in memory.

    Args:
        data: the input file's bytes.

    Returns:
        the output CSV text and the rejects.

    Raises:
        HeaderError: the first non-empty line is not a valid header.
    """
    ledger, rejects = process(io.BytesIO(data))
    return Result(ledger.output(), rejects)


def main(argv: list[str] | None = None) -> int:
    """``python -m shardpay.testing.model FILE|-``: print the output CSV to stdout."""
    parser = argparse.ArgumentParser(prog="python -m shardpay.testing.model", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="input CSV file, or - for standard input")
    parser.add_argument("--rejects", metavar="PATH", help="also write the rejects as CSV (line,reason)")
    args = parser.parse_args(argv)

    collecting = gc.isenabled()
    gc.disable()  # no reference cycles here; the collector's passes over the ledger only cost time
    try:
        if args.input == "-":
            ledger, rejects = process(sys.stdin.buffer)
        else:
            with open(args.input, "rb", buffering=1 << 20) as f:
                ledger, rejects = process(f)
    except HeaderError as exc:
        print(f"{args.input}: {exc}", file=sys.stderr)
        return 2
    finally:
        if collecting:
            gc.enable()
    sys.stdout.buffer.write(ledger.output().encode())
    sys.stdout.buffer.flush()
    if args.rejects:
        with open(args.rejects, "w", encoding="ascii", newline="\n") as f:
            f.write("line,reason\n")
            f.writelines(f"{number},{reason}\n" for number, reason in rejects)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
