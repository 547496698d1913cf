"""JSONL results reporter: ``{log_dir}/{app}_{PID}_{TIMESTAMP}_results.jsonl`` for every real run
(``--no-results-jsonl`` turns it off), in the format of the 1.0.x releases (docs/reports.md): a
session line first, then one line per finished task, each written and flushed as the task ends.

Also the ``results`` command (``parallelr results FILE``, ``psr FILE``) that reads such a file, or
the CSV summary; it lives in :mod:`.results_viewer` and is imported only when it runs.

Text that is not valid UTF-8 (an argument read from a file in another encoding reaches us as
surrogate-escaped ``\\udcXX`` characters) is written as the JSON escape ``\\udcXX``: the file stays
valid UTF-8, every line parses with ``json.loads``, and a Python reader gets the original bytes
back with ``value.encode("utf-8", "surrogateescape")``. The line separators U+0085, U+2028 and
U+2029 are escaped as well, so that a reader splitting on them (``str.splitlines``) still sees one
object per line; JSON already escapes every other control character.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import socket
from typing import Any, Dict, Optional, Tuple

from parallelr.commands import Command
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult
from parallelr.report import ReportFile, register_reporter

REPORTER_NAME = "results-jsonl-reporter"
WHAT = "JSONL results"

# json.dumps(..., ensure_ascii=False) in pieces: the C string encoder for every string of a task
# line; an encoder object for the session line (json.dumps builds a new one on every call).
_encode_string = json.encoder.encode_basestring
_encode = json.JSONEncoder(ensure_ascii=False).encode
_LINE_BREAKS = re.compile("[\u0085\u2028\u2029]")


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, ResultsJsonlReporter())


def _add_viewer_arguments(parser: Any) -> None:
    from parallelr.plugins.reporters.results_viewer import add_arguments

    add_arguments(parser)


def _run_viewer(config: Any) -> int:
    from parallelr.plugins.reporters.results_viewer import run

    return run(config)


@hookimpl
def parallelr_commands() -> Dict[str, Command]:
    return {
        "results": Command(
            name="results", program="psr",
            help="show a results file (JSONL, or the CSV summary) as CSV, JSONL or a table, or its --stats"
                 " (also: psr)",
            add_arguments=_add_viewer_arguments, run=_run_viewer,
        ),
    }


def iso_time(epoch: Optional[float]) -> Optional[str]:
    """``2025-11-04T14:30:15.123456`` (local time, always with microseconds), or None."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch).isoformat(timespec="microseconds")


def _json_time(epoch: Optional[float]) -> str:
    if epoch is None:
        return "null"
    return '"' + datetime.datetime.fromtimestamp(epoch).isoformat(timespec="microseconds") + '"'


def _json_number(value: float) -> str:
    """``value`` rounded to 2 decimals as JSON (a number JSON cannot hold, NaN or inf, is null)."""
    rounded = round(value, 2)
    return repr(rounded) if math.isfinite(rounded) else "null"


def _json_strings(values: Tuple[str, ...]) -> str:
    """A list of strings as JSON: JSONEncoder.encode builds its C encoder anew on every call,
    which costs more than encoding a few strings."""
    return "[" + ", ".join(map(_encode_string, values)) + "]"


def _json_env(pairs: Tuple[Tuple[str, str], ...]) -> str:
    """The -E variables (unique names) as a JSON object, in their order."""
    items = [f"{_encode_string(name)}: {_encode_string(value)}" for name, value in pairs]
    return "{" + ", ".join(items) + "}"


def _escape_line_break(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def one_line(line: str) -> str:
    """``line`` with the Unicode line separators as JSON escapes (they can only be in strings).
    ``isascii`` is O(1) on a str, so a plain line costs nothing more."""
    if line.isascii() or _LINE_BREAKS.search(line) is None:
        return line
    return _LINE_BREAKS.sub(_escape_line_break, line)


def _user() -> str:
    try:
        import getpass  # it imports termios, and only the session line needs it

        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (a container's bare uid)
        return str(os.getuid())


def session_record(run: RunInfo) -> Dict[str, Any]:
    """The session line's object, fields in the spec's order."""
    options = run.options
    limits = run.settings.limits
    env_names = options.get("env_var") or ()
    return {
        "type": "session",
        "session_id": f"{run.pid}_{run.timestamp}",
        "start_time": iso_time(run.started_at),
        "hostname": socket.gethostname(),
        "user": _user(),
        "command_template": run.command_template,
        "task_directories": [str(path) for path in options.get("TasksDir") or ()],
        "arguments_file": options.get("arguments_file"),
        # -E A,B -E C was split into names when parsed; given back as one comma-separated value
        "env_var": ",".join(env_names) if env_names else None,
        "file_extension": options.get("file_extension"),
        "separator": options.get("separator"),
        "config": {
            "max_workers": limits.max_workers,
            "timeout_seconds": limits.timeout_seconds,
            "task_start_delay": limits.task_start_delay,
            "max_output_capture": limits.max_output_capture,
            "workspace_isolation": run.settings.execution.workspace_isolation,
            "stop_limits_enabled": limits.stop_limits_enabled,
        },
    }


class TaskLines:
    """Formats the task lines of one run. What is the same on every line (the session and the
    runner's PID) is formatted once; the rest goes through the C encoders piece by piece, in the
    spec's field order, which costs about half of a ``json.dumps`` of the whole object."""

    def __init__(self, run: RunInfo) -> None:
        self._head = (f'{{"type": "task", "session_id": {_encode_string(f"{run.pid}_{run.timestamp}")}, '
                      '"start_time": ')
        self._process_id = str(run.pid)
        options = run.options
        # arguments-only mode (-A without -T): a task has no file, its source is "FILE:LINE"
        self._arguments_only = bool(options.get("arguments_file")) and not options.get("TasksDir")

    def task_file(self, task: Task) -> Optional[str]:
        if task.task_file is not None:
            return task.task_file
        if task.line_number is not None and self._arguments_only:
            return None
        return task.source  # the -T template of an argument line, or a plugin source's file

    def __call__(self, result: TaskResult) -> str:
        task = result.task
        task_file = self.task_file(task)
        exit_code = result.exit_code
        message = result.error_message
        line = (
            f'{self._head}{_json_time(result.start_time)}, "end_time": {_json_time(result.end_time)}, '
            f'"status": "{result.status.value}", "process_id": {self._process_id}, '
            f'"worker_id": {int(result.worker_id)}, '
            f'"task_file": {"null" if task_file is None else _encode_string(task_file)}, '
            f'"command_executed": {_encode_string(task.command)}, '
            f'"env_vars": {_json_env(task.env) if task.env else "{}"}, '
            f'"arguments": {_json_strings(task.arguments) if task.arguments else "[]"}, '
            f'"exit_code": {"null" if exit_code is None else int(exit_code)}, '
            f'"duration_seconds": {_json_number(result.duration)}, '
            f'"memory_mb": {_json_number(result.memory_mb)}, '
            f'"cpu_percent": {_json_number(result.cpu_percent)}, '
            f'"error_message": {_encode_string(message) if message else "null"}}}\n'
        )
        return one_line(line)


class ResultsJsonlReporter:
    """The results file of one run (``trylast`` hooks, as the CSV summary's). Each line is one
    whole unbuffered write (:class:`ReportFile`): a reader sees every finished task at once, and
    a full disk ends the run with one error line and no half line in the file."""

    def __init__(self) -> None:
        self._file: Optional[ReportFile] = None
        self._lines: Optional[TaskLines] = None

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        path = run.paths.results_jsonl
        if path is None or run.dry_run:
            return
        self._lines = TaskLines(run)
        self._file = ReportFile(path, WHAT)
        self._file.write(one_line(_encode(session_record(run))) + "\n")

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        file = self._file
        if file is not None and self._lines is not None:
            file.write(self._lines(result))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._lines = None
