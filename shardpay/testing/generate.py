"""Deterministic generator of shardpay input files (stdlib only).

Usage::

    shardpay generate ROWS OUT --seed S [--scenario NAME] [--clients N] [--dialect NAME]

``ROWS`` is a count like ``2000000``, ``2M`` or ``200K``; ``OUT`` is a path or
``-`` for standard output. The same arguments always give the same bytes.

Scenarios:

* ``uniform``: 45% deposits by clients drawn uniformly from ``--clients``
  (default 65,536, ids 0..N-1); 30% withdrawals, each by a client with a
  recent deposit; 13% disputes of recent deposits, 12% resolves and 0.05%
  chargebacks of open disputes, each naming the deposit's own client. About
  1 reference in 32 is deliberately wrong: an unknown id, a later id, another
  client's deposit, an open dispute disputed again, a settled deposit
  resolved, or a withdrawal. Tx ids rise (with gaps); amounts have 0 to 4
  decimals, deposits below 1,000 and withdrawals below 200, so most
  withdrawals are covered.
* ``hot``: clients are Zipf-distributed (s = 1.1): a few clients get most
  rows. No chargebacks, so the hot accounts stay unlocked.
* ``disputes``: 35% deposits, 20% withdrawals, 30% disputes, 14% resolves,
  1% chargebacks (so some accounts get locked).
* ``sparse``: tx ids random over the whole u32 range (unique-ish: birthday
  collisions become ``duplicate_tx``).
* ``messy``: like uniform, but about 5% of the rows are rewritten into odd or
  invalid forms: whitespace around fields, CRLF, quotes, 3-field rows, empty
  lines, bad types, out-of-range ids, bad amounts, trailing zero decimals,
  non-UTF-8 bytes, duplicate tx ids, wrong field counts, leading zeros.

Dialects (``--dialect``) write the same rows in another CSV dialect: the
same arguments but the dialect give the same transactions on the same lines,
so shardpay's output, rejects and counts are the same for every dialect.

* ``clean`` (default): ``withdrawal,32643,645,786.97``, LF.
* ``crlf``: the same, each line ending in CRLF.
* ``spaced``: a space after each comma, ``withdrawal, 32643, 645, 786.97``
  (the header ``type, client, tx, amount``).
* ``padded``: a space around every field, `` withdrawal , 32643 , 645 , 786.97 ``.
* ``quoted``: every field in double quotes, ``"withdrawal","32643","645","786.97"``.
* ``three-field``: disputes, resolves and chargebacks without the empty
  amount, ``dispute,44288,651``.
* ``mixed``: each row in its own dialect: plain, spaced, padded (spaces or
  tabs), quoted or quoted and padded; LF or CRLF; a reference with or
  without its empty amount. The choices come from their own random stream,
  so the rows stay those of the other dialects.

``messy`` rewrites rows its own way and takes only ``clean``.

Speed: each batch draws its random numbers at once (``randbytes`` into
arrays), looks up precomputed strings, runs one Python loop over the rows
that need state (withdrawals and references), and formats the whole batch
with one ``%``. Deposits join the pool of recent deposits at the end of their
batch, so a reference never names a deposit later in the file by accident.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import operator
import random
import sys
from array import array
from typing import BinaryIO

__all__ = ["DIALECTS", "SCENARIOS", "dialect_text", "generate", "main", "parse_count"]

SCENARIOS = ("uniform", "hot", "disputes", "sparse", "messy")
DIALECTS = ("clean", "crlf", "spaced", "padded", "quoted", "three-field", "mixed")
HEADER = b"type,client,tx,amount\n"

# A row's role is chosen by a random u16 through a 65,536-entry table.
_DEPOSIT, _WITHDRAWAL, _DISPUTE, _RESOLVE, _CHARGEBACK = range(5)
_KINDS = ("deposit", "withdrawal", "dispute", "resolve", "chargeback")
_STRAY = 8  # role = kind + _STRAY: a deliberately wrong reference
_STRAY_SHARE = 1 / 32
_MIX = {  # shares of deposit, withdrawal, dispute, resolve, chargeback
    "uniform": (0.45, 0.30, 0.13, 0.1195, 0.0005),
    "hot": (0.45, 0.30, 0.13, 0.12, 0.0),
    "disputes": (0.35, 0.20, 0.30, 0.14, 0.01),
}
_ZIPF_S = 1.1
# Pools of recent deposits and open disputes keep between _POOL and 2 * _POOL
# (client, tx) pairs; a random u16 picks among the newest 65,536. Larger
# spreads withdrawals over more deposits (fewer insufficient_funds), smaller
# keeps references more recent.
_POOL = 1 << 16
# Rows per batch: memory and write size (~2 MB of text) against per-batch
# overhead. Batches start small and double, so that early references already
# find deposits in the pool.
_FIRST_BATCH_ROWS = 512
BATCH_ROWS = 1 << 16


def parse_count(text: str) -> int:
    """``2000000``, ``2M``, ``200K``, ``1.5M``, ``2_000_000`` -> int (>= 0).

    Raises:
        ValueError: not a count.
    """
    text = text.strip().upper().replace("_", "")
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    value = round(float(text) * scale) if "." in text else int(text) * scale
    if value < 0:
        raise ValueError(f"row count must be >= 0, got {value}")
    return value


def _amount(rng: random.Random, largest: int) -> str:
    """A random amount in (0, largest) with 0 to 4 decimals."""
    decimals = rng.randrange(5)
    scale = 10**decimals
    value = rng.randrange(1, largest * scale)
    return f"{value // scale}.{value % scale:0{decimals}d}" if decimals else str(value)


def _row_tables(rng: random.Random, scenario: str) -> tuple[list[int], list[str], list[str]]:
    """For each u16 value: the row's role, its text before the client, after the tx."""
    shares = _MIX.get(scenario, _MIX["uniform"])
    bounds = list(itertools.accumulate(round(share * 65536) for share in shares))
    roles, prefixes, suffixes = [], [], []
    for u in range(65536):
        kind = min(bisect.bisect_right(bounds, u), _CHARGEBACK)
        role = kind
        if kind >= _DISPUTE and rng.random() < _STRAY_SHARE:
            role += _STRAY
        roles.append(role)
        prefixes.append(_KINDS[kind] + ",")
        if kind == _DEPOSIT:
            suffixes.append("," + _amount(rng, 1000) + "\n")
        elif kind == _WITHDRAWAL:
            suffixes.append("," + _amount(rng, 200) + "\n")
        else:
            suffixes.append(",\n")
    return roles, prefixes, suffixes


def _client_table(rng: random.Random, scenario: str, clients: int) -> list[str]:
    """For each u16 value: a client id followed by a comma."""
    if scenario != "hot":
        return [f"{u * clients >> 16}," for u in range(65536)]
    ids = list(range(clients))
    rng.shuffle(ids)  # the hottest clients are not simply 0, 1, 2...
    cumulative = list(itertools.accumulate(1 / rank**_ZIPF_S for rank in range(1, clients + 1)))
    step = cumulative[-1] / 65536
    return [f"{ids[min(bisect.bisect_left(cumulative, (u + 0.5) * step), clients - 1)]}," for u in range(65536)]


def _randoms(rng: random.Random, typecode: str, n: int) -> array:
    values = array(typecode)
    values.frombytes(rng.randbytes(values.itemsize * n))
    if sys.byteorder != "little":  # the same bytes on every machine
        values.byteswap()
    return values


def _take(pool: list[tuple[str, int]], pick: int) -> tuple[str, int]:
    """Remove and return a pseudo-random recent item of a non-empty pool."""
    j = len(pool) - 1 - pick % len(pool)
    item = pool[j]
    pool[j] = pool[-1]
    pool.pop()
    return item


def generate(
    rows: int,
    out: BinaryIO,
    seed: int = 0,
    scenario: str = "uniform",
    clients: int = 65536,
    dialect: str = "clean",
) -> None:
    """Write a header and ``rows`` data rows to ``out``.

    Args:
        rows: number of data rows (``messy`` adds some empty lines on top).
        out: a binary stream; written in batches of up to about 2 MB.
        seed: any int; the same arguments always give the same bytes.
        scenario: one of SCENARIOS (see the module docstring).
        clients: how many distinct client ids, 1..65536 (ids 0..clients-1).
        dialect: one of DIALECTS: the same rows, written in that CSV dialect.

    Raises:
        ValueError: unknown scenario or dialect, clients out of range, or
            ``messy`` with a dialect other than ``clean``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if not 1 <= clients <= 65536:
        raise ValueError(f"clients must be within 1..65536, got {clients}")
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")
    if scenario == "messy" and dialect != "clean":
        raise ValueError("the messy scenario writes its own odd rows: use --dialect clean")
    # The pools hold ~100K tuples and every batch makes ~30K more; with the
    # cyclic collector on, its passes over them cost more than the rest.
    # Nothing here makes reference cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _generate(rows, out, seed, scenario, clients, dialect)
    finally:
        if collecting:
            gc.enable()


def _generate(rows: int, out: BinaryIO, seed: int, scenario: str, clients: int, dialect: str) -> None:
    rng = random.Random(seed)
    styles = random.Random(f"dialect {seed}")  # mixed: its own stream, so the rows stay the same
    roles, prefixes, suffixes = _row_tables(rng, scenario)
    client_names = _client_table(rng, scenario, clients)
    deposits: list[tuple[str, int]] = []  # (client, tx) of recent deposits, not disputed
    disputes: list[tuple[str, int]] = []  # (client, tx) of open disputes
    depositors = client_names  # who withdraws: the clients of the last batch's deposits
    withdrawal = ("0,", 0)  # (client, tx) of the last batch's last withdrawal
    messer = _Messer(rng) if scenario == "messy" else None
    next_tx = 1
    batch = _FIRST_BATCH_ROWS

    out.write(dialect_text(HEADER.decode(), dialect if dialect != "mixed" else "clean", styles).encode())
    while rows > 0:
        n = min(rows, batch)
        rows -= n
        batch = min(2 * batch, BATCH_ROWS)
        kinds = _randoms(rng, "H", n).tolist()
        row_roles = [roles[k] for k in kinds]
        picks = _randoms(rng, "H", n)
        m = len(depositors)
        names = [
            depositors[pick % m] if role == _WITHDRAWAL else client_names[u]
            for role, pick, u in zip(row_roles, picks, _randoms(rng, "H", n))
        ]
        if scenario == "sparse":
            txs = _randoms(rng, "I", n).tolist()
        else:
            txs = list(range(next_tx, next_tx + n))  # rising; reference rows leave gaps
            next_tx += n

        for i in itertools.compress(range(n), [role >= _DISPUTE for role in row_roles]):
            role, pick = row_roles[i], picks[i]
            if role >= _STRAY:
                stray = pick % 6
                if stray == 0:  # an id never used
                    tx = 2**32 - 1 - pick
                elif stray == 1:  # an id used only later, if at all
                    tx = txs[i] + n + pick if scenario != "sparse" else pick
                elif stray == 2 and deposits:  # another client's deposit
                    tx = deposits[-1 - pick % len(deposits)][1]
                elif stray == 3 and deposits and role != _DISPUTE + _STRAY:  # not disputed
                    names[i], tx = deposits[-1 - pick % len(deposits)]
                elif stray == 3 and disputes:  # already disputed
                    names[i], tx = disputes[-1 - pick % len(disputes)]
                else:  # the client's withdrawal
                    names[i], tx = withdrawal
            elif role == _DISPUTE:
                if deposits:
                    names[i], tx = item = _take(deposits, pick)
                    disputes.append(item)
                else:
                    tx = 2**32 - 1 - pick
            elif disputes:  # resolve or chargeback of an open dispute
                names[i], tx = item = _take(disputes, pick)
                if role == _RESOLVE:
                    deposits.append(item)  # disputable again
            else:
                tx = 2**32 - 1 - pick
            txs[i] = tx

        kept = list(map(operator.not_, row_roles))  # deposits
        depositors = list(itertools.compress(names, kept)) or depositors
        deposits.extend(zip(depositors, itertools.compress(txs, kept)))
        if len(deposits) > 2 * _POOL:
            del deposits[:-_POOL]
        if len(disputes) > 2 * _POOL:
            del disputes[:-_POOL]
        if _WITHDRAWAL in row_roles:
            last = n - 1 - row_roles[::-1].index(_WITHDRAWAL)
            withdrawal = (names[last], txs[last])
        fields: list[object] = [None] * (4 * n)
        fields[0::4] = [prefixes[k] for k in kinds]
        fields[1::4] = names
        fields[2::4] = txs
        fields[3::4] = [suffixes[k] for k in kinds]
        text = ("%s%s%d%s" * n) % tuple(fields)
        if messer is not None:
            out.write(messer.apply(text).encode("utf-8", "surrogateescape"))
        else:
            out.write(dialect_text(text, dialect, styles).encode("ascii"))


def dialect_text(text: str, dialect: str, rng: random.Random | None = None) -> str:
    """Whole clean lines (``a,b,c,d`` or ``a,b,c,`` and LF each) rewritten in ``dialect``
    (see the module docstring); ``rng`` picks each row's dialect for ``mixed``."""
    if dialect == "clean" or not text:
        return text
    if dialect == "crlf":
        return text.replace("\n", "\r\n")
    if dialect == "spaced":
        return text.replace(",", ", ")
    if dialect == "padded":
        return " " + text[:-1].replace(",", " , ").replace("\n", " \n ") + " \n"
    if dialect == "quoted":
        return '"' + text[:-1].replace(",", '","').replace("\n", '"\n"') + '"\n'
    if dialect == "three-field":
        return text.replace(",\n", "\n")  # only reference rows end in an empty amount
    if dialect == "mixed":
        return _mixed(text, rng or random.Random(0))
    raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")


# mixed: a row's field style, then its line end and (for a reference) its field count
_STYLES = (
    lambda line: line,
    lambda line: line.replace(",", ", "),
    lambda line: " " + line.replace(",", " , ") + " ",
    lambda line: "\t" + line.replace(",", "\t,\t") + " \t",
    lambda line: '"' + line.replace(",", '","') + '"',
    lambda line: ' "' + line.replace(",", '" , "') + '" ',
)


def _mixed(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    lines.pop()
    picks = rng.randbytes(len(lines))
    out = []
    for line, pick in zip(lines, picks):
        if pick & 0x40 and line[-1] == ",":
            line = line[:-1]  # a reference of three fields
        out.append(_STYLES[pick % 6](line) + ("\r\n" if pick & 0x80 else "\n"))
    return "".join(out)


class _Messer:
    """Rewrites about 5% of a batch's lines into odd or invalid forms."""

    RATE = 0.05

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.recent_ids: list[str] = ["1"]  # tx ids of recent deposits/withdrawals
        self.mutations = [
            self.spaces,
            self.crlf,
            self.quotes,
            self.three_fields,
            self.empty_line,
            self.bad_type,
            self.bad_client,
            self.bad_tx,
            self.too_many_decimals,
            self.trailing_zero_decimals,
            self.bad_amount,
            self.not_utf8,
            self.duplicate,
            self.field_count,
            self.leading_zeros,
        ]

    def apply(self, text: str) -> str:
        rng = self.rng
        lines = text.split("\n")[:-1]
        for i, line in enumerate(lines):
            if i % 16 == 0 and line.startswith(("deposit", "withdrawal")):
                self.recent_ids = [*self.recent_ids[-63:], line.split(",")[2]]
            if rng.random() < self.RATE:
                lines[i] = rng.choice(self.mutations)(line.split(","))[:-1]
        lines.append("")
        return "\n".join(lines)

    # Each mutation takes the fields of a clean row and returns a whole line.

    def spaces(self, f: list[str]) -> str:
        pads = [" ", "  ", "\t", " \t", ""]
        return ",".join(self.rng.choice(pads) + x + self.rng.choice(pads) for x in f) + "\n"

    def crlf(self, f: list[str]) -> str:
        return ",".join(f) + "\r\n"

    def quotes(self, f: list[str]) -> str:
        return ",".join(f' "{x}" ' if self.rng.random() < 0.3 else f'"{x}"' for x in f) + "\n"

    def three_fields(self, f: list[str]) -> str:
        return ",".join(f[:3]) + "\n"  # fine for disputes, invalid_row for money rows

    def empty_line(self, f: list[str]) -> str:
        return self.rng.choice(["\n", "  \n", "\r\n", "\t \r\n"]) + ",".join(f) + "\n"

    def bad_type(self, f: list[str]) -> str:
        bad = self.rng.choice([f[0].upper(), f[0].title(), f[0] + "s", "transfer", "", "deposít"])
        return ",".join([bad, *f[1:]]) + "\n"

    def bad_client(self, f: list[str]) -> str:
        bad = self.rng.choice(["65536", "99999", "-1", "1.0", "+5", "0x10", "", "a", "1 2", "١"])
        return ",".join([f[0], bad, *f[2:]]) + "\n"

    def bad_tx(self, f: list[str]) -> str:
        bad = self.rng.choice(["4294967296", "18446744073709551616", "-7", "1e3", "", "12.0", "tx"])
        return ",".join([*f[:2], bad, f[3]]) + "\n"

    def too_many_decimals(self, f: list[str]) -> str:
        return ",".join([*f[:3], f"{self.rng.randrange(100)}.{self.rng.randrange(1, 10**5):05d}"]) + "\n"

    def trailing_zero_decimals(self, f: list[str]) -> str:
        amount = f[3] if f[3] else "1"
        amount = amount + ("" if "." in amount else ".") + "0" * self.rng.randrange(1, 9)
        return ",".join([*f[:3], amount]) + "\n"  # still valid

    def bad_amount(self, f: list[str]) -> str:
        bad = self.rng.choice(["-1.5", "0", "0.0000", ".", "", "1.2.3", "1e3", "abc", "922337203685477.5808"])
        return ",".join([*f[:3], bad]) + "\n"

    def not_utf8(self, f: list[str]) -> str:
        j = self.rng.randrange(4)
        f = list(f)
        f[j] = f[j] + self.rng.choice(["\udcff", "\udcc3", "\udce9t\udcfe"])  # lone bytes
        return ",".join(f) + "\n"

    def duplicate(self, f: list[str]) -> str:
        kind = f[0] if f[0] in ("deposit", "withdrawal") else "deposit"
        amount = f[3] or "1.5"
        return ",".join([kind, f[1], self.rng.choice(self.recent_ids), amount]) + "\n"

    def field_count(self, f: list[str]) -> str:
        return self.rng.choice([",".join(f) + ",\n", ",".join(f[:2]) + "\n", ",".join([*f, "x"]) + "\n"])

    def leading_zeros(self, f: list[str]) -> str:
        return ",".join([f[0], "00" + f[1], "0" + f[2], f[3]]) + "\n"  # still valid


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="shardpay generate", description=__doc__.split("\n")[0])
    parser.add_argument("rows", type=parse_count, help="data rows: 2000000, 2M, 200K")
    parser.add_argument("out", help="output path, or - for standard output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", choices=SCENARIOS, default="uniform")
    parser.add_argument("--clients", type=int, default=65536, help="distinct clients, 1..65536")
    parser.add_argument("--dialect", choices=DIALECTS, default="clean", help="the same rows in this CSV dialect")
    args = parser.parse_args(argv)
    if args.scenario == "messy" and args.dialect != "clean":
        parser.error("--scenario messy writes its own odd rows: use --dialect clean")
    if args.out == "-":
        generate(args.rows, sys.stdout.buffer, args.seed, args.scenario, args.clients, args.dialect)
        sys.stdout.buffer.flush()
    else:
        with open(args.out, "wb") as f:
            generate(args.rows, f, args.seed, args.scenario, args.clients, args.dialect)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
