"""The values that flow through a run: Task in, TaskResult out, RunInfo and RunSummary around them.

All are immutable attrs classes, validated where they are built and trusted everywhere after.
They are plain data (no open files, no locks) so that they pickle to a pool process or a
remote worker unchanged.
"""

from __future__ import annotations

import enum
import os
import shlex
from typing import Any, Mapping, Optional, Tuple

import attrs

# Every task's environment names its run and its place in it, so the task knows where it belongs
# and a resume finds a dead run's leftover processes by them. Defined here, once.
RUN_ID_VARIABLE = "PARALLELR_RUN_ID"
TASK_INDEX_VARIABLE = "PARALLELR_TASK_INDEX"


class TaskStatus(str, enum.Enum):
    """The final state of one task, as written in the CSV ``status`` column."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"  # ran and exited non-zero (or was killed by a signal)
    TIMEOUT = "TIMEOUT"  # killed by parallelr after the timeout
    ERROR = "ERROR"  # could not be started at all (command not found, not executable, ...)
    CANCELLED = "CANCELLED"  # never started, or stopped by a shutdown

    @property
    def is_failure(self) -> bool:
        """True for the outcomes counted under ``Failed:`` and by the stop limits."""
        return self in (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.ERROR)

    def __str__(self) -> str:
        return self.value


def _env_pairs(value: Any) -> Tuple[Tuple[str, str], ...]:
    if not value:  # most tasks have no -E variables: no generator for them
        return ()
    if isinstance(value, Mapping):
        value = value.items()
    return tuple((str(k), str(v)) for k, v in value)


@attrs.frozen
class Task:
    """One unit of work: the exact argv to run plus the extra environment it needs.

    ``source`` is what the CSV shows in its ``task_file`` column: the absolute path of the
    task file (or template), or ``<arguments file>:<line>`` in arguments-only mode.
    ``index`` is the task's 1-based position in the run; the core assigns it.
    """

    argv: Tuple[str, ...] = attrs.field(converter=tuple)
    source: str
    env: Tuple[Tuple[str, str], ...] = attrs.field(default=(), converter=_env_pairs)
    arguments: Tuple[str, ...] = attrs.field(default=(), converter=tuple)
    line_number: Optional[int] = None
    shell: bool = False  # argv is ("/bin/sh", "-c", script): the user asked for a shell
    index: int = 0
    attempt: int = 1  # 1 for the first run; the scheduler sets 2, 3, ... for retries
    # The task file whose size is checked against ExecutionLimits.max_file_size just before the
    # task starts: a file that is too large fails as that task (ERROR), not the whole run.
    task_file: Optional[str] = None
    # A queue job's own limits: seconds before it is killed (overrides ExecutionLimits.timeout;
    # 0: none) and the directory it runs in (instead of the workspace). None: the run's.
    timeout: Optional[float] = None
    cwd: Optional[str] = None

    @argv.validator
    def _check_argv(self, _attribute: Any, value: Tuple[str, ...]) -> None:
        if not value:
            raise ValueError("a task needs a command")

    @property
    def command(self) -> str:
        """The command as a person would type it, environment assignments first."""
        body = self.argv[2] if self.shell else shlex.join(self.argv)
        if not self.env:
            return body
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in self.env)
        return f"{assignments} {body}"

    def environ(self, base: Optional[Mapping[str, str]] = None) -> dict:
        """The full environment for the child: ``base`` (default os.environ) plus ``env``."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged


@attrs.frozen
class ExecutionLimits:
    """What :func:`parallelr.process.run_task` needs besides the task. Picklable."""

    timeout: float
    workspace: str  # the shared workspace directory, absolute
    runner_pid: int
    workspace_isolation: bool = False
    max_output_capture: int = 1000  # characters kept of stdout and of stderr (the tail)
    use_process_groups: bool = True
    kill_grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    sample_interval: float = 1.0  # live psutil figures for tasks that run longer than this
    run_id: Optional[str] = None  # set in every task's environment as RUN_ID_VARIABLE
    max_file_size: Optional[int] = None  # bytes a Task.task_file may have (advanced.max_file_size)

    def workdir(self, worker_id: int) -> str:
        """The working directory of a task run in worker slot ``worker_id``."""
        if not self.workspace_isolation:
            return self.workspace
        return os.path.join(self.workspace, f"pid{self.runner_pid}_worker{worker_id}")


@attrs.frozen
class TaskResult:
    """What happened when a task ran (or why it did not). Times are epoch seconds."""

    task: Task
    status: TaskStatus
    worker_id: int = 0  # 0: never got a worker slot
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    start_time: Optional[float] = None
    end_time: Optional[float] = None
    duration: float = 0.0
    memory_mb: float = 0.0
    cpu_percent: float = 0.0
    stdout: str = ""
    stderr: str = ""
    error_message: str = ""
    attempt: int = attrs.field(default=attrs.Factory(lambda self: self.task.attempt, takes_self=True))

    @classmethod
    def cancelled(cls, task: Task, reason: str, worker_id: int = 0) -> TaskResult:
        return cls(task=task, status=TaskStatus.CANCELLED, worker_id=worker_id, error_message=reason)


@attrs.frozen
class RunPaths:
    """Where a run writes. Every path is absolute; COMPAT.md fixes their names."""

    home: str  # ~/parallelr (or ~/ptasker for the ptasker preset)
    log_dir: str
    workspace: str
    pid_file: str
    main_log: str
    summary_csv: str
    output_log: Optional[str]  # None with --no-task-output-log
    results_jsonl: Optional[str] = None  # None with --no-results-jsonl


@attrs.frozen
class RunInfo:
    """Everything a reporter may want to know about the run it observes."""

    app_name: str  # "parallelr", or a preset's name such as "ptasker"
    pid: int
    started_at: float
    timestamp: str  # the file-name timestamp (logging.custom_date_format)
    settings: Any  # parallelr.config.Settings (Any here to keep model free of config imports)
    paths: RunPaths
    command_template: str
    executor: str
    workers: int
    dry_run: bool = False
    task_count: Optional[int] = None  # None when a source streams without knowing its size
    options: Mapping[str, Any] = attrs.field(factory=dict)  # parsed CLI options, plugins' too
    run_id: Optional[str] = None
    resumed: bool = False  # this invocation continues run_id (--resume, dlq retry)


@attrs.frozen
class RunSummary:
    """The totals printed at the end of a run and passed to ``parallelr_run_finish``."""

    total: int
    succeeded: int
    failed: int  # FAILED + TIMEOUT + ERROR
    timed_out: int
    errored: int
    cancelled: int
    avg_duration: float = 0.0
    max_duration: float = 0.0
    min_duration: float = 0.0
    avg_memory_mb: float = 0.0
    peak_memory_mb: float = 0.0
    stop_reason: Optional[str] = None  # set when stop limits halted the run
    interrupted_by: Optional[str] = None  # "SIGINT", "SIGTERM", ... when a signal stopped it
    exit_code: int = 0
    problems: Tuple[str, ...] = attrs.field(default=(), converter=tuple)  # parallelr_run_problems

    @property
    def success_rate(self) -> float:
        return 100.0 * self.succeeded / self.total if self.total else 0.0


@attrs.frozen
class ResumePlan:
    """What ``parallelr_resume`` returns: the tasks of run ``run_id`` to run again.

    ``tasks`` keep their run-wide ``index``; ``count`` is their number; ``previous`` counts,
    by status, the tasks of the run that are not run again (they still count in the summary).
    """

    run_id: str
    tasks: Any  # an iterable of Task that can be iterated again
    count: int
    previous: Mapping[TaskStatus, int] = attrs.field(factory=dict)
