"""The HTML report of a run: one self-contained page (its CSS, script and SVG inline; nothing is
loaded from anywhere) with the summary block, the status counts, a sortable and filterable table
of the tasks, the output tails of the failed tasks and the per-slot timeline of every attempt.

Two callers feed it: the ``--html-report`` reporter while a run runs, and ``runs show --html``
from the journal. Either adds the run's items to a :class:`Spool` (temporary files beside the
report: nothing of the run is held in memory) as :class:`Attempt` (a timeline bar),
:class:`TaskRow` (a table row) and :class:`Output` (a failed task's output tails) values, then
:func:`render` writes the page from it with Jinja2 (autoescaping on), streamed to a part file
that becomes PATH in one rename: a reader sees the old file or the whole new one.

Everything from a run is user data (task names, arguments, output, messages, paths): the values
are built with every control character written as a visible escape (ESC as ``\\x1b``, NUL as
``\\x00``) and lone surrogates as ``\\udcXX``, so the file is valid UTF-8; autoescaping does the
HTML, ``tojson`` the table's data inside its ``<script type="application/json">`` block; and
the page's Content-Security-Policy runs only its own script, by hash.

Bounds, for a run of 100,000 tasks: the table holds every task as JSON and its script shows
:data:`PAGE_ROWS` rows at a time; the timeline draws one bar per attempt up to :data:`MAX_BARS`
attempts, and beyond that one box per slot and 1/200 of the run that stacks the statuses of the
attempts that ran in it (:class:`parallelr.timeline.Grid`); the output
tails of the first :data:`MAX_OUTPUTS` failed tasks are shown, as long as they fit
:data:`OUTPUT_BUDGET` characters (the page names the output log for the rest).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import tempfile
import time
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import attrs

from parallelr import __version__
from parallelr.report import escape_controls, iso_seconds, write_error
from parallelr.timeline import COLUMNS as GRID_COLUMNS
from parallelr.timeline import Frame, Grid, css_class

WHAT = "HTML report"
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MAX_BARS = 10_000  # attempts drawn one bar each (about 250 bytes each); more are counted in a grid
MAX_OUTPUTS = 1000  # failed tasks whose output tails the page shows
OUTPUT_BUDGET = 4_000_000  # characters of output tails on the page, all tasks together
PAGE_ROWS = 100  # table rows the script shows at a time
CHUNK_ROWS = 2000  # table rows per tojson call
FAILURES = ("FAILED", "TIMEOUT", "ERROR")
STATUS_ORDER = ("SUCCESS", "FAILED", "TIMEOUT", "ERROR", "CANCELLED")
# The table's columns: (heading, kind). The script sorts by the values (numbers as numbers); a
# number column is aligned right.
COLUMNS = (
    ("#", "number"), ("Task", "text"), ("Arguments", "text"), ("Status", "text"), ("Attempts", "number"),
    ("Worker", "number"), ("Exit code", "number"), ("Start", "text"), ("Duration (s)", "number"),
    ("Memory (MB)", "number"), ("CPU (%)", "number"), ("Error", "text"),
)


def _rounded(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


# The spool's lines: ASCII JSON (a lone surrogate would not survive UTF-8 otherwise; clean() has
# escaped them anyway), compact.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def clean(value: Any) -> str:
    """``value`` as text that can go anywhere in the page: controls (but newline and tab) as
    visible escapes, lone surrogates as ``\\udcXX`` (they cannot be UTF-8)."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case, one C-speed check
        return text
    text = escape_controls(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _clean_optional(value: Any) -> Optional[str]:
    return None if value is None else clean(value)


def _clean_all(values: Iterable[Any]) -> Tuple[str, ...]:
    return tuple(clean(value) for value in values)


@attrs.frozen
class Attempt:
    """One try of one task: a bar of the timeline (a :class:`parallelr.timeline.Span`)."""

    position: int
    task: str = attrs.field(converter=clean)
    attempt: int
    status: str = attrs.field(converter=clean)
    worker_id: Optional[int]
    exit_code: Optional[int]
    started_at: Optional[float]  # None: it never started (not drawn)
    ended_at: Optional[float]  # None: still running (drawn up to the report's time)


@attrs.frozen
class TaskRow:
    """One task as it ended (its last attempt): a row of the table."""

    position: int
    task: str = attrs.field(converter=clean)
    arguments: Tuple[str, ...] = attrs.field(converter=_clean_all)
    status: str = attrs.field(converter=clean)
    attempts: int
    worker_id: Optional[int]
    exit_code: Optional[int]
    started_at: Optional[float]
    duration: Optional[float]
    memory_mb: Optional[float]
    cpu_percent: Optional[float]
    error: str = attrs.field(converter=clean)

    def cells(self) -> List[Any]:
        """The row as the table's script reads it, in :data:`COLUMNS` order."""
        return [self.position, self.task, " ".join(self.arguments), self.status, self.attempts,
                self.worker_id, self.exit_code, iso_seconds(self.started_at), _rounded(self.duration, 3),
                _rounded(self.memory_mb, 2), _rounded(self.cpu_percent, 1), self.error]


@attrs.frozen
class Output:
    """The output tails of a failed task, as the run captured them; None: not recorded (the
    journal keeps no output)."""

    position: int
    task: str = attrs.field(converter=clean)
    arguments: Tuple[str, ...] = attrs.field(converter=_clean_all)
    status: str = attrs.field(converter=clean)
    attempts: int
    exit_code: Optional[int]
    error: str = attrs.field(converter=clean)
    stdout: Optional[str] = attrs.field(converter=_clean_optional)
    stderr: Optional[str] = attrs.field(converter=_clean_optional)

    @property
    def size(self) -> int:
        return len(self.stdout or "") + len(self.stderr or "")


Item = Union[Attempt, TaskRow, Output]


@attrs.frozen
class RunFacts:
    """What the page says about the run besides its items."""

    title: str = attrs.field(converter=clean)
    command: str = attrs.field(converter=clean)
    started_at: float
    ended_at: Optional[float]
    origin: str = attrs.field(converter=clean)  # where the facts come from: this run, or the journal
    output_log: Optional[str] = attrs.field(default=None, converter=_clean_optional)
    notes: Tuple[str, ...] = attrs.field(default=(), converter=_clean_all)  # what the page lacks, and why
    generated_at: float = attrs.field(factory=time.time)


@attrs.frozen
class Bounds:
    """How much of a big run the page shows (see the module's docstring)."""

    max_bars: int = MAX_BARS
    max_outputs: int = MAX_OUTPUTS
    output_budget: int = OUTPUT_BUDGET


class Spool:
    """A run's items in unnamed temporary files beside the report (they vanish when closed, or
    when the process dies), with the counts the page needs before its first row. ``report`` is
    the report's path: every write error names it."""

    def __init__(self, report: str, bounds: Bounds = Bounds()) -> None:
        self.report = report
        self.bounds = bounds
        self._outputs_full = False  # an output did not fit: the page shows the ones before it
        self.status_counts: Dict[str, int] = {}
        self.tasks = self.attempts = self.drawn = self.failed = self.outputs = self.output_chars = 0
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.running = False  # an attempt has no end yet: the timeline runs up to the report's time
        self.slots: Set[int] = set()
        self._files: Dict[type, IO[str]] = {}
        try:
            for kind in (Attempt, TaskRow, Output):
                self._files[kind] = tempfile.TemporaryFile(
                    "w+", encoding="utf-8", dir=os.path.dirname(report) or ".", prefix=".html-report-")
        except OSError as exc:
            self.close()
            raise write_error(WHAT, report, exc) from None

    @property
    def closed(self) -> bool:
        """Closed, or a write failed (the error was raised then): nothing more is added."""
        return not self._files

    @property
    def omitted_outputs(self) -> int:
        """Failed tasks whose output tails are not on the page (beyond the bounds)."""
        return self.failed - self.outputs

    def wants_output(self) -> bool:
        """Whether the next failed task's output still fits the page (so a reporter can skip
        building one that would be dropped)."""
        return not self._outputs_full and self.outputs < self.bounds.max_outputs

    def add(self, item: Item) -> None:
        if isinstance(item, Attempt):
            self.attempts += 1
            if item.started_at is not None:
                self._draw(item)
            line = [item.position, item.task, item.attempt, item.status, item.worker_id, item.exit_code,
                    item.started_at, item.ended_at]
        elif isinstance(item, TaskRow):
            self.tasks += 1
            self.status_counts[item.status] = self.status_counts.get(item.status, 0) + 1
            if item.status in FAILURES:
                self.failed += 1
            line = item.cells()
        else:
            if not self.wants_output():
                return
            if self.output_chars + item.size > self.bounds.output_budget:
                self._outputs_full = True
                return
            self.outputs += 1
            self.output_chars += item.size
            line = [item.position, item.task, list(item.arguments), item.status, item.attempts,
                    item.exit_code, item.error, item.stdout, item.stderr]
        self._write(type(item), _encode(line) + "\n")

    def _draw(self, item: Attempt) -> None:
        self.drawn += 1
        begun = float(item.started_at)  # type: ignore[arg-type]
        self.start = begun if self.start is None else min(self.start, begun)
        if item.ended_at is None:
            self.running = True
        else:
            self.end = item.ended_at if self.end is None else max(self.end, item.ended_at)
        self.slots.add(item.worker_id or 0)

    def _write(self, kind: type, line: str) -> None:
        spool = self._files.get(kind)
        if spool is None:
            return  # closed after an error: the error was raised once
        try:
            spool.write(line)
        except OSError as exc:
            self.close()
            raise write_error(WHAT, self.report, exc) from None

    def frame(self, now: float) -> Frame:
        """The timeline's axes: from the first start to the last end (``now`` if one runs still)."""
        start = now if self.start is None else self.start
        end = max(self.end if self.end is not None else start, now if self.running else start)
        return Frame(start, end, tuple(sorted(self.slots)))

    def read(self, kind: type) -> Iterator[List[Any]]:
        """The lines of one kind, in the order they were added (a new pass each time)."""
        spool = self._files[kind]
        spool.flush()
        spool.seek(0)
        for line in spool:
            yield json.loads(line)

    def close(self) -> None:
        files, self._files = self._files, {}
        for spool in files.values():
            with contextlib.suppress(OSError):  # what could not be written, _write reported
                spool.close()


def write_report(path: str, facts: RunFacts, summary: Sequence[str], items: Iterable[Item],
                 extra_counts: Optional[Mapping[str, int]] = None, bounds: Bounds = Bounds()) -> None:
    """The page of a stream of items (spooled first, then rendered: one pass over ``items``)."""
    spool = Spool(path, bounds)
    try:
        for item in items:
            spool.add(item)
        render(path, facts, summary, spool, extra_counts)
    finally:
        spool.close()


def render(path: str, facts: RunFacts, summary: Sequence[str], spool: Spool,
           extra_counts: Optional[Mapping[str, int]] = None) -> None:
    """Write the page of ``spool`` to ``path`` (whole, or not at all) and close the spool.

    ``extra_counts`` adds tasks that have no row (a journal's tasks that were never stored).

    Raises:
        WriteError: the part file or the rename failed (one line naming ``path``).
    """
    part = f"{path}.part-{os.getpid()}"
    try:
        context = _context(facts, summary, spool, extra_counts or {})
        with open(part, "w", encoding="utf-8", errors="backslashreplace", newline="") as out:
            out.writelines(environment().get_template("report.html").generate(**context))
        os.replace(part, path)
    except OSError as exc:
        raise write_error(WHAT, path, exc) from None
    finally:
        spool.close()
        if os.path.lexists(part):
            os.unlink(part)


def _context(facts: RunFacts, summary: Sequence[str], spool: Spool,
             extra_counts: Mapping[str, int]) -> Dict[str, Any]:
    now = facts.generated_at
    frame = spool.frame(now)
    counts = dict(spool.status_counts)
    for status, count in extra_counts.items():
        counts[status] = counts.get(status, 0) + count
    if spool.drawn > spool.bounds.max_bars:
        grid = Grid(frame)
        for attempt in _attempts(spool):
            if attempt.started_at is not None:
                grid.add(attempt, now)
        bars: Iterable[Any] = ()
        cells: Iterable[Any] = grid.cells()
    else:
        bars = (frame.bar(attempt.position, attempt.task, attempt, now) for attempt in _attempts(spool)
                if attempt.started_at is not None)
        cells = ()
    return {
        "facts": facts, "summary": [clean(line) for line in summary], "version": __version__,
        "started": iso_seconds(facts.started_at), "ended": iso_seconds(facts.ended_at),
        "generated": iso_seconds(facts.generated_at),
        "counts": [(status, css_class(status), counts[status]) for status in _ordered(counts)],
        "tasks": sum(counts.values()), "attempts": spool.attempts, "drawn": spool.drawn,
        "columns": COLUMNS, "page_rows": PAGE_ROWS, "row_chunks": _row_chunks(spool),
        "with_output": sorted(line[0] for line in spool.read(Output)),  # at most max_outputs
        "outputs": _outputs(spool), "shown_outputs": spool.outputs, "failed": spool.failed,
        "omitted_outputs": spool.omitted_outputs, "max_outputs": spool.bounds.max_outputs,
        "frame": frame, "bars": bars, "cells": cells, "max_bars": spool.bounds.max_bars,
        "grid_columns": GRID_COLUMNS,
        "csp": content_security_policy(),
    }


def _ordered(counts: Mapping[str, int]) -> List[str]:
    known = [status for status in STATUS_ORDER if counts.get(status)]
    return known + sorted(status for status in counts if status not in STATUS_ORDER and counts[status])


class _Spooled(NamedTuple):
    """An attempt read back from the spool (cleaned when it was added): a timeline Span."""

    position: int
    task: str
    attempt: int
    status: str
    worker_id: Optional[int]
    exit_code: Optional[int]
    started_at: Optional[float]
    ended_at: Optional[float]


def _attempts(spool: Spool) -> Iterator[_Spooled]:
    for line in spool.read(Attempt):
        yield _Spooled(*line)


def _row_chunks(spool: Spool) -> Iterator[List[List[Any]]]:
    """The table's rows in lists of :data:`CHUNK_ROWS`: the template writes each with one
    ``tojson`` (the script joins them), which is much quicker than one call per row."""
    rows = spool.read(TaskRow)
    while True:
        chunk = list(itertools.islice(rows, CHUNK_ROWS))
        if not chunk:
            return
        yield chunk


def _outputs(spool: Spool) -> Iterator[Output]:
    for line in spool.read(Output):
        yield Output(*line)


if TYPE_CHECKING:
    import jinja2

_ENVIRONMENT: Optional[jinja2.Environment] = None


def environment() -> jinja2.Environment:
    """The report's Jinja2 environment (made once): templates from ``parallelr/templates``,
    autoescaping on, an undefined name an error, ``tojson`` compact and UTF-8."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        import jinja2  # here, not at the top: every run loads this module, few write a report

        made = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        made.filters["status_css"] = css_class
        made.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "separators": (",", ":")}
        _ENVIRONMENT = made
    return _ENVIRONMENT


def content_security_policy() -> str:
    """Nothing may load, and only the page's own style and script may apply: by their hashes,
    so markup that slipped through (it should not) could neither run nor fetch anything."""
    env = environment()
    style = _sha256(env.get_template("report.css").render())
    script = _sha256(env.get_template("report.js").render())
    return (f"default-src 'none'; style-src '{style}'; script-src '{script}';"
            " base-uri 'none'; form-action 'none'")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
