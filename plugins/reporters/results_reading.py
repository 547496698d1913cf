"""Reading a results file for the viewer: the JSONL results file, or parallelr's CSV summary
(told apart by content: the CSV's first line is its fixed header), as a stream of records, and
the column paths and filters the viewer applies to them.

A CSV row becomes a record with the JSONL field names (``command`` is ``command_executed``), the
numbers as numbers and an empty cell as null; the CSV has no session line and no ``env_vars``,
``arguments`` or ``session_id``. Nothing is held in memory but the line being read.
"""

from __future__ import annotations

import csv
import json
import os
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

import attrs

from parallelr.errors import ParallelrError
from parallelr.report import escape_line

JSONL = "jsonl"
CSV = "csv"

# The task line's fields, in the order of the spec (results-jsonl.md).
TASK_FIELDS = (
    "type", "session_id", "start_time", "end_time", "status", "process_id", "worker_id", "task_file",
    "command_executed", "env_vars", "arguments", "exit_code", "duration_seconds", "memory_mb",
    "cpu_percent", "error_message",
)
DEFAULT_COLUMNS = (
    "start_time", "end_time", "status", "process_id", "worker_id", "command_executed", "exit_code",
    "duration_seconds", "memory_mb", "cpu_percent", "error_message",
)
# The CSV summary's header (COMPAT.md; plugins/reporters/csv_summary.py writes it) and the JSONL
# field each of its columns is. Its process_id is the task's PID, the JSONL's the runner's.
CSV_COLUMNS = (
    "start_time", "end_time", "status", "process_id", "worker_id", "task_file", "command",
    "exit_code", "duration_seconds", "memory_mb", "cpu_percent", "error_message",
)
CSV_HEADER = ";".join(CSV_COLUMNS)
CSV_FIELDS = {column: "command_executed" if column == "command" else column for column in CSV_COLUMNS}
_CSV_INTEGERS = frozenset(("process_id", "worker_id", "exit_code"))
_CSV_NUMBERS = frozenset(("duration_seconds", "memory_mb", "cpu_percent"))
CSV_KNOWN = ("type", *CSV_FIELDS.values())

PEEK_CHARACTERS = 1 << 20  # how much of a file is looked at to tell its kind
PEEK_LINES = 20
CSV_FIELD_LIMIT = 1 << 26
WARNED_LINES = 10  # invalid lines warned about one by one; the rest are counted at the end

Warn = Callable[[str], None]
Record = Dict[str, Any]


def _shown(path: str) -> str:
    return escape_line(path)


def open_text(path: str) -> IO[str]:
    """``path`` for reading, or one line saying why not. Undecodable bytes are kept
    (surrogateescape) and written back as ``\\udcXX`` escapes."""
    try:
        return open(path, encoding="utf-8", errors="surrogateescape", newline="\n")
    except FileNotFoundError:
        raise ParallelrError(f"file not found: {_shown(path)}") from None
    except IsADirectoryError:
        raise ParallelrError(f"{_shown(path)} is a directory, not a results file") from None
    except OSError as exc:
        raise ParallelrError(f"cannot read {_shown(path)}: {exc.strerror or exc}") from None


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def detect_kind(path: str) -> str:
    """:data:`JSONL` or :data:`CSV`, from the first lines of the file."""
    if os.path.isdir(path):
        raise ParallelrError(f"{_shown(path)} is a directory, not a results file")
    with open_text(path) as handle:
        try:
            head = handle.read(PEEK_CHARACTERS)
        except OSError as exc:
            raise ParallelrError(f"cannot read {_shown(path)}: {exc.strerror or exc}") from None
    lines = [line.strip() for line in head.split("\n")]
    if len(head) == PEEK_CHARACTERS:
        lines = lines[:-1]  # the last line may be cut off
    lines = [line for line in lines if line]
    if not lines and len(head) < PEEK_CHARACTERS:
        raise ParallelrError(f"{_shown(path)} is empty: no session or task lines")
    if lines and lines[0].lstrip("\ufeff") == CSV_HEADER:
        return CSV
    if any(_is_json_object(line) for line in lines[:PEEK_LINES]) or head.lstrip().startswith("{"):
        return JSONL
    raise ParallelrError(f"{_shown(path)} is neither a JSONL results file nor a parallelr CSV summary")


class InvalidLines:
    """Warns about the first :data:`WARNED_LINES` invalid lines one by one, then counts the rest
    and says how many there were in all at the end (a broken file must not flood the terminal)."""

    def __init__(self, path: str, warn: Warn) -> None:
        self.path = path
        self.warn = warn
        self.count = 0

    def skip(self, number: int, reason: str) -> None:
        self.count += 1
        if self.count <= WARNED_LINES:
            self.warn(f"line {number} of {_shown(self.path)} skipped: {reason}")

    def finish(self) -> None:
        if self.count > WARNED_LINES:
            self.warn(f"{self.count} invalid lines skipped in {_shown(self.path)}, "
                      f"{self.count - WARNED_LINES} of them not shown")


def jsonl_records(handle: IO[str], invalid: InvalidLines) -> Iterator[Record]:
    """The session and task objects of a JSONL file, in file order. Blank lines are ignored;
    an object of another type is passed on (the viewer ignores it); anything else is skipped
    with a warning."""
    loads = json.loads
    for number, line in enumerate(handle, 1):
        try:
            record = loads(line)
        except json.JSONDecodeError as exc:
            if line.strip():
                invalid.skip(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError):  # nested too deep, or a number too long to convert
            invalid.skip(number, "not valid JSON")
            continue
        if record.__class__ is not dict:
            invalid.skip(number, "not a JSON object")
            continue
        yield record


def _csv_value(field: str, text: str) -> Any:
    if text == "":
        return 0 if field == "worker_id" else None  # the JSONL's worker of a task never started
    try:
        if field in _CSV_INTEGERS:
            return int(text)
        if field in _CSV_NUMBERS:
            return float(text)
    except ValueError:
        return text
    return text


def csv_records(handle: IO[str], invalid: InvalidLines) -> Iterator[Record]:
    """The rows of a CSV summary as task records with the JSONL field names."""
    # A summary row holds a whole command: more than the csv module's default field limit allows.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(handle, delimiter=";")
    next(reader, None)  # the header, checked by detect_kind
    fields = tuple(CSV_FIELDS.values())
    for row in reader:
        if not row:
            continue
        if len(row) != len(fields):
            invalid.skip(reader.line_num, f"{len(row)} columns, a CSV summary row has {len(fields)}")
            continue
        record: Record = {"type": "task"}
        for field, text in zip(fields, row):
            record[field] = _csv_value(field, text)
        yield record


@attrs.frozen
class ResultsFile:
    path: str
    kind: str

    @classmethod
    def open(cls, path: str) -> ResultsFile:
        return cls(path, detect_kind(path))

    @property
    def known_fields(self) -> Tuple[str, ...]:
        return TASK_FIELDS if self.kind == JSONL else CSV_KNOWN

    def records(self, warn: Warn) -> Iterator[Record]:
        invalid = InvalidLines(self.path, warn)
        with open_text(self.path) as handle:
            try:
                if self.kind == JSONL:
                    yield from jsonl_records(handle, invalid)
                else:
                    yield from csv_records(handle, invalid)
            except OSError as exc:
                raise ParallelrError(f"cannot read {_shown(self.path)}: {exc.strerror or exc}") from None
            except csv.Error as exc:
                raise ParallelrError(f"{_shown(self.path)} is not a readable CSV summary: {exc}") from None
        invalid.finish()


# -- columns and filters -------------------------------------------------------------------------
FieldPath = Tuple[str, ...]


def field_path(name: str) -> FieldPath:
    """``env_vars.HOST`` → ``("env_vars", "HOST")``; ``arguments.0`` indexes a list."""
    return tuple(name.split("."))


def value_at(record: Record, path: FieldPath) -> Any:
    """The value at ``path`` in ``record`` (dict keys, list indexes), None where there is none."""
    value: Any = record
    for key in path:
        if value.__class__ is dict:
            value = value.get(key)
        elif value.__class__ is list:
            try:
                index = int(key)
            except ValueError:
                return None
            value = value[index] if 0 <= index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def parse_columns(text: Optional[str]) -> Tuple[str, ...]:
    if text is None:
        return DEFAULT_COLUMNS
    columns = tuple(column.strip() for column in text.split(","))
    if not all(columns):
        raise ParallelrError(f"--columns has an empty column name: {text!r} (give a,b,c)")
    if any(not part for column in columns for part in field_path(column)):
        raise ParallelrError(f"--columns has an empty part in a dotted name: {text!r} (give env_vars.NAME)")
    return columns


def value_text(value: Any) -> str:
    """How a value is shown in CSV and compared by a filter: null as '', dicts and lists as JSON."""
    if value is None:
        return ""
    if value.__class__ is str:
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_NULL_WORDS = frozenset(("", "None", "null"))


@attrs.frozen
class Filter:
    """``FIELD=VALUE`` or ``FIELD!=VALUE``. The value compares with the field as the CSV shows it;
    a number also equals a value that is the same number (``duration_seconds=2`` matches 2.0);
    a null field equals ``''``, ``None`` and ``null``; a missing field is null."""

    text: str
    name: str
    wanted: str
    negated: bool
    path: FieldPath = attrs.field(init=False)
    number: Optional[float] = attrs.field(init=False)

    @path.default
    def _path(self) -> FieldPath:
        return field_path(self.name)

    @number.default
    def _number(self) -> Optional[float]:
        try:
            return float(self.wanted)
        except ValueError:
            return None

    def equal(self, value: Any) -> bool:
        if value is None:
            return self.wanted in _NULL_WORDS
        if value.__class__ in (int, float) and self.number is not None:
            return value == self.number
        if value is True or value is False:
            return self.wanted in (str(value), json.dumps(value))
        return value_text(value) == self.wanted

    def matches(self, record: Record) -> bool:
        return self.equal(value_at(record, self.path)) is not self.negated


def parse_filter(text: str) -> Filter:
    """``status=FAILED``, ``exit_code!=0``, ``env_vars.HOST=web1`` (spaces around the name and
    the value are dropped). The first ``=`` splits; a ``!`` just before it negates."""
    name, equals, wanted = text.partition("=")
    negated = name.endswith("!")
    if negated:
        name = name[:-1]
    name = name.strip()
    if not equals or not name or any(not part for part in field_path(name)):
        raise ParallelrError(f"bad filter expression {text!r}: give FIELD=VALUE or FIELD!=VALUE")
    return Filter(text, name, wanted.strip(), negated)


def check_names(names: List[Tuple[str, str]], results: ResultsFile, first_task: Optional[Record]) -> None:
    """Every ``(what, name)`` must start with a field the file's task lines have: a field of
    the spec (or of the CSV summary), or one the first task line holds (a newer writer's)."""
    known = set(results.known_fields)
    if first_task is not None and results.kind == JSONL:
        known.update(first_task)
    for what, name in names:
        top = field_path(name)[0]
        if top in known:
            continue
        if results.kind == CSV and top in TASK_FIELDS:
            raise ParallelrError(f"{what} {name!r}: a CSV summary has no {top} "
                                 f"(its fields: {', '.join(CSV_KNOWN)})")
        raise ParallelrError(f"unknown {what} {name!r}; the task fields are: {', '.join(sorted(known))}")
