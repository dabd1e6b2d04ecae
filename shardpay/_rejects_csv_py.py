"""The ``--rejects`` CSV rows in pure Python: the fallback and the readable twin.

:mod:`shardpay.report` writes the rejects file through this module's
:func:`csv_rows` when the compiled twin (:mod:`shardpay._rejects_csv`,
``_rejects_csv.pyx``) is not built or ``SHARDPAY_REJECTS_CSV=python`` asks
for it. Both give the same text for the same rows (a property test compares
them, and reads it back with the csv module).

The rule is the csv module's minimal quoting: a field is written as it is,
unless it holds a comma, a double quote, a CR or an LF; then it is written
in double quotes, each of its double quotes doubled. (A reject's fields
never hold a CR or an LF: control characters are shown escaped.)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["csv_rows"]

_SPECIAL = frozenset(',"\r\n')


def _field(text: str) -> str:
    if _SPECIAL.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def csv_rows(rows: Sequence[tuple]) -> str:
    """``rows`` as CSV text, one LF-terminated line each.

    Args:
        rows: tuples of an int (the line number) and six ``str`` fields: the
            columns of ``--rejects`` (:class:`shardpay.rejects.Reject`).

    Returns:
        The lines, joined.

    Raises:
        TypeError: a field is not a ``str``.
    """
    return "".join(f"{row[0]},{','.join(map(_field, row[1:7]))}\n" for row in rows)
