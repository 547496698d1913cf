"""``parallelr results FILE`` (``psr FILE``): a results file's task lines as CSV (the default, as
the old psr printed them), JSONL or an aligned table, with chosen columns and filters, or
``--stats``. Reads the JSONL results file or parallelr's CSV summary (:mod:`.results_reading`).

Everything streams: CSV, JSONL and the statistics hold one record at a time; the table measures
its column widths on its first 1000 rows (a longer value further down pushes its line out).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from parallelr.errors import ParallelrError
from parallelr.plugins.reporters.results_jsonl import one_line
from parallelr.plugins.reporters.results_reading import (
    Filter,
    Record,
    ResultsFile,
    check_names,
    field_path,
    parse_columns,
    parse_filter,
    value_at,
    value_text,
)
from parallelr.report import ENCODING, ERRORS, escape_line
from parallelr.tables import write_table as write_aligned_table

FORMATS = ("csv", "jsonl", "table")
RULE = "=" * 60


def add_arguments(parser: Any) -> None:
    parser.description = (
        "Show the task lines of a results file (..._results.jsonl, or a ..._summary.csv) as CSV "
        "(comma-separated, upper-case header), JSONL or a table; or their statistics."
    )
    parser.epilog = (
        "examples:\n"
        "  %(prog)s results.jsonl\n"
        "  %(prog)s results.jsonl --columns start_time,status,env_vars.HOST,arguments.0,exit_code\n"
        "  %(prog)s results.jsonl --filter status=FAILED --filter env_vars.HOST!=web1\n"
        "  %(prog)s results.jsonl --stats\n"
        "  %(prog)s results.jsonl --format table --output report.txt"
    )
    parser.add_argument("file", metavar="FILE", help="a JSONL results file, or a parallelr CSV summary")
    parser.add_argument("-c", "--columns", metavar="A,B,...",
                        help="comma-separated columns; dotted paths reach into objects and lists "
                             "(env_vars.HOST, arguments.0)")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="FIELD=VALUE",
                        help="only tasks whose FIELD is VALUE (FIELD!=VALUE: is not); repeatable, "
                             "all must hold")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("-s", "--stats", action="store_true",
                        help="print statistics (status counts and shares, durations) instead of the tasks")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="csv (default), jsonl (whole lines, or the --columns as objects) or table")
    parser.set_defaults(program=parser.prog.split(" ")[0])


def _warner(program: str, err: IO[str]) -> Callable[[str], None]:
    def warn(message: str) -> None:
        err.write(f"{program}: warning: {message}\n")
        err.flush()

    return warn


def _head(records: Iterator[Record]) -> Tuple[List[Record], Optional[Record]]:
    """The records before the first task (session lines), and the first task (None: there is
    none). They are put back in front of the stream by the caller."""
    before: List[Record] = []
    for record in records:
        if record.get("type") == "task":
            return before, record
        before.append(record)
    return before, None


class Output:
    """Where the viewer writes: stdout, or ``--output FILE`` (a failed write of the file is one
    error line; stdout's broken pipe is left to the CLI, which exits quietly)."""

    def __init__(self, path: Optional[str], stdout: IO[str]) -> None:
        self.path = path
        self.stream = stdout
        if path is not None:
            try:
                self.stream = open(path, "w", encoding=ENCODING, errors=ERRORS, newline="")
            except OSError as exc:
                raise self.error(exc) from None
        elif hasattr(stdout, "reconfigure"):  # an undecodable byte kept from the file: \udcXX
            stdout.reconfigure(errors=ERRORS)

    def error(self, exc: OSError) -> ParallelrError:
        return ParallelrError(f"cannot write {escape_line(self.path or '')}: {exc.strerror or exc}")

    @contextlib.contextmanager
    def writing(self) -> Iterator[IO[str]]:
        try:
            yield self.stream
            if self.path is None:
                self.stream.flush()
            else:
                self.stream.close()  # the last buffered piece is written here, and may fail
        except OSError as exc:
            if self.path is None:
                raise
            with contextlib.suppress(OSError):
                self.stream.close()
            raise self.error(exc) from None


def _tasks(records: Iterable[Record], filters: Sequence[Filter]) -> Iterator[Record]:
    for record in records:
        if record.get("type") == "task" and all(check.matches(record) for check in filters):
            yield record


def write_csv(out: IO[str], tasks: Iterable[Record], columns: Sequence[str]) -> None:
    """As the old psr: the csv module's defaults (comma, minimal quoting, CRLF line ends)."""
    writer = csv.writer(out)
    writer.writerow([column.upper() for column in columns])
    paths = [field_path(column) for column in columns]
    for task in tasks:
        writer.writerow([value_text(value_at(task, path)) for path in paths])


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def write_table(out: IO[str], tasks: Iterable[Record], columns: Sequence[str]) -> None:
    paths = [field_path(column) for column in columns]
    rows = ([_cell(value_at(task, path)) for path in paths] for task in tasks)
    write_aligned_table(out, [column.upper() for column in columns], rows)


def write_jsonl(out: IO[str], records: Iterable[Record], filters: Sequence[Filter],
                columns: Optional[Sequence[str]]) -> None:
    """Without ``columns``: the file again, session lines and the tasks that pass the filters
    (a results file itself). With ``columns``: one object of those columns per task."""
    if columns is None:
        for record in records:
            kind = record.get("type")
            if kind == "session" or (kind == "task" and all(check.matches(record) for check in filters)):
                out.write(one_line(json.dumps(record, ensure_ascii=False)) + "\n")
        return
    paths = [(column, field_path(column)) for column in columns]
    for task in _tasks(records, filters):
        line = json.dumps({column: value_at(task, path) for column, path in paths}, ensure_ascii=False)
        out.write(one_line(line) + "\n")


def _number(value: Any) -> float:
    return float(value) if value.__class__ in (int, float) else 0.0


def write_stats(out: IO[str], records: Iterable[Record], filters: Sequence[Filter]) -> None:
    """The old psr's statistics, word for word: the (first) session, the task count, the count
    and share of each status, the total and average duration."""
    session: Optional[Record] = None
    by_status: Dict[str, int] = {}
    total = 0
    duration = 0.0
    for record in records:
        kind = record.get("type")
        if kind == "session":
            if session is None:
                session = record
            continue
        if kind != "task" or not all(check.matches(record) for check in filters):
            continue
        total += 1
        status = value_text(record.get("status")) or "UNKNOWN"
        by_status[status] = by_status.get(status, 0) + 1
        duration += _number(record.get("duration_seconds"))
    if not total:
        out.write("No tasks found.\n")
        return
    lines = [RULE, "EXECUTION STATISTICS", RULE]
    if session is not None:
        lines += [
            "",
            f"Session ID: {_shown(session.get('session_id'))}",
            f"Hostname: {_shown(session.get('hostname'))}",
            f"User: {_shown(session.get('user'))}",
            f"Command Template: {_shown(session.get('command_template'))}",
        ]
    lines += ["", f"Total Tasks: {total}", "", "By Status:"]
    for status, count in sorted(by_status.items()):
        lines.append(f"  {escape_line(status)}: {count} ({count / total * 100:.1f}%)")
    lines += [
        "",
        f"Total Duration: {duration:.2f}s",
        f"Average Duration: {duration / total:.2f}s per task",
        RULE,
    ]
    out.write("\n".join(lines) + "\n")


def _shown(value: Any) -> str:
    return escape_line(str(value))  # as the old psr printed it (None as None), made terminal-safe


def run(config: Any, stdout: Optional[IO[str]] = None, stderr: Optional[IO[str]] = None) -> int:
    options = config.options
    warn = _warner(options.program, stderr or sys.stderr)
    results = ResultsFile.open(options.file)
    columns = parse_columns(options.columns)
    filters = [parse_filter(text) for text in options.filter]
    if options.output is not None and _same_file(options.output, options.file):
        raise ParallelrError(f"--output {escape_line(options.output)} is the file being read: "
                             "give another path")

    records = results.records(warn)
    before, first = _head(records)
    names = [("filter field", check.name) for check in filters]
    if not options.stats:
        names += [("column", column) for column in columns]
    check_names(names, results, first)
    stream = _chain([*before, *([first] if first is not None else [])], records)

    output = Output(options.output, stdout or sys.stdout)
    with output.writing() as out:
        if options.stats:
            write_stats(out, stream, filters)
        elif options.format == "csv":
            write_csv(out, _tasks(stream, filters), columns)
        elif options.format == "table":
            write_table(out, _tasks(stream, filters), columns)
        else:
            write_jsonl(out, stream, filters, columns if options.columns is not None else None)
    return 0


def _same_file(one: str, other: str) -> bool:
    """Opening ``--output`` truncates it: it must not be the file still being read."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # the output does not exist yet
        return False


def _chain(first: Iterable[Record], rest: Iterator[Record]) -> Iterator[Record]:
    yield from first
    yield from rest
