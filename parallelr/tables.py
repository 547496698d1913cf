"""Plain-text output of the info commands (journal, queue): aligned tables and readable times."""

from __future__ import annotations

import datetime
import itertools
from typing import IO, Any, Iterable, Optional, Sequence

from parallelr.report import escape_line

SAMPLE_ROWS = 1000  # column widths come from the first rows, so a long table streams
GAP = "  "


def local_time(epoch: Optional[float]) -> str:
    """``2026-11-23 10:41:48`` (local time), or ``-`` when unknown."""
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(epoch: Optional[float]) -> Optional[str]:
    """ISO 8601 with the local offset, for JSON output."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    # one physical line per row, and nothing in it that a terminal would act on (ESC, BEL, CSI)
    return escape_line(" ".join(str(value).split()))


def shorten(text: Optional[str], width: int) -> str:
    value = cell(text) if text else ""
    return value if len(value) <= width else value[: width - 3] + "..."


def write_table(out: IO[str], headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write ``rows`` under ``headers``, columns aligned; the last column is not padded.

    Widths are measured on the first :data:`SAMPLE_ROWS` rows only, so a huge table is never held
    in memory (a longer value further down just pushes its line out). Returns the row count.
    """
    iterator = iter(rows)
    sample = [[cell(value) for value in row] for row in itertools.islice(iterator, SAMPLE_ROWS)]
    widths = [len(header) for header in headers]
    for row in sample:
        for column, value in enumerate(row):
            widths[column] = max(widths[column], len(value))

    def line(values: Sequence[str]) -> str:
        padded = [value.ljust(widths[column]) for column, value in enumerate(values[:-1])]
        return GAP.join([*padded, values[-1]]).rstrip()

    out.write(line(list(headers)) + "\n")
    count = 0
    for row in itertools.chain(sample, ([cell(value) for value in row] for row in iterator)):
        out.write(line(row) + "\n")
        count += 1
    return count
