"""A job as users write it: one JSON object, checked once into a :class:`NewJob`.

``{"command": "echo hi"}`` with optional ``id``, ``max_retries``, ``priority`` (an integer,
higher first, or ``high``/``medium``/``low``), ``run_at`` (ISO 8601) or ``delay`` (seconds),
``timeout`` (seconds), ``depends_on`` (job IDs), ``queue``, ``env`` (an object of strings) and
``cwd``. Field names take ``-`` or ``_`` (``max-retries``). Anything else is an error that names
the field and, where one is close, the field that was meant.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from parallelr.errors import UsageError
from parallelr.jobs.records import NewJob
from parallelr.queue import DEFAULT_QUEUE

SHELL = "/bin/sh"
PRIORITY_WORDS = {"high": 10, "medium": 0, "low": -10}
FIELDS = ("id", "command", "max_retries", "priority", "run_at", "delay", "timeout", "depends_on", "queue",
          "env", "cwd")
MAX_ID_LENGTH = 200
MAX_RETRIES = 1_000_000
MAX_PRIORITY = 1_000_000_000
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JobError(UsageError):
    """A job that cannot be enqueued; the message names the field (and the line of a file)."""


def new_id() -> str:
    """A random (version 4) UUID, formatted as ``str(uuid.uuid4())`` is, in a fifth of its time."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def parse_json(text: str, where: str = "") -> Dict[str, Any]:
    """The JSON object in ``text``.

    Raises:
        JobError: not JSON, or JSON that is not an object.
    """
    return checked_object(parse_json_value(text, where), where)


def parse_json_value(text: str, where: str = "") -> Any:
    """Whatever JSON value ``text`` holds (a job, or a list of them for the dashboard's API).

    Raises:
        JobError: not JSON (the parser's words), or nested too deeply to parse.
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JobError(f"{where}invalid JSON: {exc}") from None
    except RecursionError:
        raise JobError(f"{where}invalid JSON: nested too deeply") from None


def checked_object(value: Any, where: str = "") -> Dict[str, Any]:
    """``value`` if it is a JSON object (a job), else the one line saying what it is instead."""
    if not isinstance(value, dict):
        raise JobError(f"{where}a job is a JSON object such as '{{\"command\": \"echo hi\"}}', "
                       f"not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def queue_name(value: Any, what: str = "queue") -> str:
    """A queue name: letters, digits and ``_ . : -``, up to 100 characters.

    Raises:
        UsageError: another value.
    """
    if not isinstance(value, str) or not _QUEUE_NAME.match(value):
        raise UsageError(f"bad {what} {value!r}: a queue name is 1 to 100 letters, digits or '_.:-', "
                         "starting with a letter or digit")
    return value


class JobReader:
    """Checks job objects into NewJobs; knows the defaults and the enqueuer's directory."""

    def __init__(self, max_retries: int, now: float, cwd: Optional[str] = None,
                 queue: Optional[str] = None) -> None:
        self.max_retries = max_retries
        self.now = now
        self.cwd = cwd if cwd is not None else os.getcwd()
        self.queue = queue or DEFAULT_QUEUE
        self._checked_dirs: Set[str] = set()

    def job(self, data: Mapping[str, Any], where: str = "") -> NewJob:
        fields = self._names(data, where)
        for name, value in fields.items():
            _check_text(value, name, where)

        def bad(name: str, wanted: str) -> JobError:
            return JobError(f"{where}\"{name}\" must be {wanted}; got {_shown(fields[name])}")

        command = fields.get("command")
        if "command" not in fields:
            raise JobError(f"{where}a job needs a \"command\" (a shell command line)")
        if not isinstance(command, str):
            raise bad("command", "a string")
        if not command.strip():
            raise JobError(f"{where}\"command\" is empty: give the shell command line to run")
        if "\0" in command:
            raise JobError(f"{where}\"command\" contains a NUL character, which no command can take")
        key = fields.get("id")
        if key is None:
            key = new_id()
        elif not isinstance(key, str):
            raise bad("id", "a string")
        elif not key.strip() or len(key) > MAX_ID_LENGTH or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
            raise JobError(f"{where}bad \"id\" {key!r}: 1 to {MAX_ID_LENGTH} printable characters")
        max_retries = self.max_retries
        if "max_retries" in fields:
            max_retries = fields["max_retries"]
            if not _is_int(max_retries) or not 0 <= max_retries <= MAX_RETRIES:
                raise bad("max_retries", f"a whole number from 0 to {MAX_RETRIES}")
        priority = fields.get("priority", 0)
        if isinstance(priority, str) and priority.strip().lower() in PRIORITY_WORDS:
            priority = PRIORITY_WORDS[priority.strip().lower()]
        elif not _is_int(priority) or abs(priority) > MAX_PRIORITY:
            raise bad("priority", f"a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY} (higher runs first)"
                                  " or high, medium or low")
        if "run_at" in fields and "delay" in fields:
            raise JobError(f"{where}give \"run_at\" or \"delay\", not both")
        due_at: Optional[float] = None
        if "run_at" in fields:
            due_at = _time(fields["run_at"], where)
        if "delay" in fields:
            delay = fields["delay"]
            if not _is_number(delay) or delay < 0:
                raise bad("delay", "a number of seconds >= 0")
            due_at = self.now + float(delay)
        timeout: Optional[float] = None
        if "timeout" in fields:
            timeout = fields["timeout"]
            if not _is_number(timeout) or timeout <= 0:
                raise bad("timeout", "a number of seconds > 0")
            timeout = float(timeout)
        depends_on: Tuple[str, ...] = ()
        if "depends_on" in fields:
            value = fields["depends_on"]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise bad("depends_on", "a list of job IDs (strings)")
            depends_on = tuple(dict.fromkeys(value))
            if key in depends_on:
                raise JobError(f"{where}job {key!r} depends on itself")
        queue = self.queue
        if "queue" in fields:
            try:
                queue = queue_name(fields["queue"], "\"queue\"")
            except UsageError as exc:
                raise JobError(f"{where}{exc}") from None
        env: Tuple[Tuple[str, str], ...] = ()
        if "env" in fields:
            value = fields["env"]
            if not isinstance(value, dict):
                raise bad("env", "an object of variable names and string values")
            for name, text in value.items():
                if not _ENV_NAME.match(name):
                    raise JobError(f"{where}bad variable name {name!r} in \"env\": letters, digits and _")
                if not isinstance(text, str):
                    raise JobError(f"{where}\"env\" value of {name} must be a string, not {_json_type(text)}")
                if "\0" in text:
                    raise JobError(f"{where}\"env\" value of {name} contains a NUL character")
            env = tuple(value.items())
        cwd = self.cwd
        if "cwd" in fields:
            value = fields["cwd"]
            if not isinstance(value, str) or not value:
                raise bad("cwd", "a directory path (a string)")
            cwd = os.path.normpath(os.path.join(self.cwd, os.path.expanduser(value)))
            if cwd not in self._checked_dirs:
                if not os.path.isdir(cwd):
                    raise JobError(f"{where}\"cwd\" {value!r} is not an existing directory")
                self._checked_dirs.add(cwd)
        return NewJob(
            key=key, queue=queue, argv=(SHELL, "-c", command), shell=True, env=env, cwd=cwd, timeout=timeout,
            priority=int(priority), max_retries=int(max_retries), due_at=due_at, depends_on=depends_on,
        )

    def _names(self, data: Mapping[str, Any], where: str) -> Dict[str, Any]:
        fields: Dict[str, Any] = {}
        for name, value in data.items():
            canonical = name.replace("-", "_")
            if canonical not in FIELDS:
                from difflib import get_close_matches

                close = get_close_matches(canonical, FIELDS, n=1)
                hint = f"; did you mean \"{close[0]}\"?" if close else f" (known fields: {', '.join(FIELDS)})"
                raise JobError(f"{where}unknown field \"{name}\"{hint}")
            if canonical in fields:
                raise JobError(f"{where}field \"{canonical}\" is given twice")
            fields[canonical] = value
        return fields


def _check_text(value: Any, name: str, where: str) -> None:
    """Every string in a job must be UTF-8 (JSON's ``\\ud800`` escapes can make lone surrogates,
    which no file, database or program argument can hold)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JobError(f"{where}\"{name}\" holds a lone surrogate (an unpaired \\ud800-\\udfff escape):"
                           " it is not text") from None
    elif isinstance(value, list):
        for item in value:
            _check_text(item, name, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, name, where)
            _check_text(item, name, where)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _time(value: Any, where: str) -> float:
    """An ISO 8601 time; one without an offset is local time."""
    if not isinstance(value, str):
        raise JobError(f"{where}\"run_at\" must be an ISO 8601 time such as \"2026-12-02T15:30:00\", "
                       f"not {_json_type(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise JobError(f"{where}\"run_at\" {value!r} is not an ISO 8601 time such as "
                       "\"2026-12-02T15:30:00\" or \"2026-12-02T15:30:00+01:00\"") from None
    return moment.timestamp()


def read_lines(lines: Iterable[str], reader: JobReader, name: str) -> Iterator[NewJob]:
    """The jobs of a JSON Lines stream (blank lines skipped), checked one at a time (cycles among
    their dependencies: :func:`check_cycles`, once all are read)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}: "
        yield reader.job(parse_json(line, where), where)


def check_cycles(edges: Mapping[str, Sequence[str]]) -> None:
    """The dependencies ``{job ID: IDs it depends on}`` of the jobs that have some form no cycle
    (a job without dependencies cannot be on one, so those are all a check needs).

    Raises:
        JobError: a cycle, named job by job.
    """
    state: Dict[str, int] = {}  # 1: on the path, 2: done
    for start in edges:
        if state.get(start):
            continue
        path: List[str] = []
        stack: List[Tuple[str, Iterator[str]]] = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if state.get(child) == 1:
                cycle = [*path[path.index(child):], child]
                raise JobError("depends_on forms a cycle: " + " -> ".join(cycle))
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(edges.get(child, ()))))
