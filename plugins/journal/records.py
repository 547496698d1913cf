"""The journal's rows as values: what the store reads back for runs, jobs and attempts."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import attrs

from parallelr.model import Task, TaskStatus

# How a job's state maps to the status it counts as when a resumed run does not run it again.
_NOT_RUN_AGAIN_STATUS = {"succeeded": TaskStatus.SUCCESS, "cancelled": TaskStatus.CANCELLED}


def to_sql_text(value: Optional[str]) -> Union[str, bytes, None]:
    """A str for a TEXT column. A path or argument with undecodable bytes (a lone surrogate from
    ``surrogateescape``) cannot be UTF-8 encoded, so it is stored as its raw bytes instead."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def from_sql_text(value: Union[str, bytes, None]) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def status_counted_as(state: str, last_status: Optional[str]) -> TaskStatus:
    """The summary status of a job that a resumed run leaves alone."""
    if state == "dead":
        try:
            return TaskStatus(last_status or "FAILED")
        except ValueError:
            return TaskStatus.FAILED
    # pending / running / failed / timeout: it did not (finish) running in this run
    return _NOT_RUN_AGAIN_STATUS.get(state, TaskStatus.CANCELLED)


@attrs.frozen
class RunRecord:
    """A row of ``runs``. ``state`` is the stored one; see :func:`processes.shown_state`."""

    id: str
    app_name: str
    pid: Optional[int]
    create_time: Optional[float]
    host: Optional[str]
    started_at: float
    ended_at: Optional[float]
    state: str
    command: Optional[str]
    options: Mapping[str, Any]
    executor: Optional[str]
    workers: Optional[int]
    task_count: Optional[int]
    exit_code: Optional[int]
    main_log: Optional[str]
    summary_csv: Optional[str]
    output_log: Optional[str]
    resumes: int

    COLUMNS = (
        "id, app_name, pid, create_time, host, started_at, ended_at, state, command, options, executor, "
        "workers, task_count, exit_code, main_log, summary_csv, output_log, resumes"
    )

    @classmethod
    def from_row(cls, row: Tuple[Any, ...]) -> RunRecord:
        values = list(row)
        values[8] = from_sql_text(values[8])  # command
        values[9] = json.loads(values[9] or "{}")  # options
        for position in (14, 15, 16):  # log paths
            values[position] = from_sql_text(values[position])
        return cls(*values)


@attrs.frozen
class JobRecord:
    """A row of ``jobs`` (the columns a resume, ``runs show`` and the DLQ need)."""

    id: int
    run_id: Optional[str]
    position: Optional[int]
    source: str
    argv: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]
    arguments: Tuple[str, ...]
    line_number: Optional[int]
    shell: bool
    state: str
    attempts: int
    max_attempts: int
    exit_code: Optional[int]
    last_error: Optional[str]
    last_status: Optional[str]
    started_at: Optional[float]
    ended_at: Optional[float]
    duration: Optional[float]

    COLUMNS = (
        "id, run_id, position, source, argv, env, arguments, line_number, shell, state, attempts, "
        "max_attempts, exit_code, last_error, last_status, started_at, ended_at, duration"
    )

    @classmethod
    def from_row(cls, row: Tuple[Any, ...]) -> JobRecord:
        (job_id, run_id, position, source, argv, env, arguments, line_number, shell, state, attempts,
         max_attempts, exit_code, last_error, last_status, started_at, ended_at, duration) = row
        return cls(
            id=job_id, run_id=run_id, position=position, source=from_sql_text(source) or "",
            argv=tuple(json.loads(argv)), env=tuple((str(k), str(v)) for k, v in json.loads(env)),
            arguments=tuple(json.loads(arguments)), line_number=line_number, shell=bool(shell),
            state=state, attempts=attempts, max_attempts=max_attempts, exit_code=exit_code,
            last_error=from_sql_text(last_error), last_status=last_status, started_at=started_at,
            ended_at=ended_at, duration=duration,
        )

    def to_task(self) -> Task:
        """The task to run again: same place in the run, next attempt number."""
        return Task(
            argv=self.argv, source=self.source, env=self.env, arguments=self.arguments,
            line_number=self.line_number, shell=self.shell, index=self.position or 0,
            attempt=self.attempts + 1,
            # a task of -T files (no line number) is its file: its size is checked again
            task_file=self.source if self.line_number is None else None,
        )

    @property
    def label(self) -> str:
        """The task file, plus the arguments of an arguments-file task (as the console shows it)."""
        if self.arguments:
            return f"{self.source} ({' '.join(self.arguments)})"
        return self.source

    def as_dict(self) -> Dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["argv"] = list(self.argv)
        data["env"] = [list(pair) for pair in self.env]
        data["arguments"] = list(self.arguments)
        return data


@attrs.frozen
class AttemptRecord:
    """A row of ``attempts``: one try of one job."""

    job_id: int
    attempt: int
    status: str
    exit_code: Optional[int]
    pid: Optional[int]
    worker_id: Optional[int]
    started_at: Optional[float]
    ended_at: Optional[float]
    duration: Optional[float]
    error: Optional[str]

    COLUMNS = "job_id, attempt, status, exit_code, pid, worker_id, started_at, ended_at, duration, error"

    @classmethod
    def from_row(cls, row: Tuple[Any, ...]) -> AttemptRecord:
        values = list(row)
        values[9] = from_sql_text(values[9])
        return cls(*values)
