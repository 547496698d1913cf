"""What a store reads back: runs, jobs, attempts and claims, as frozen values.

How a row becomes one of these is the store's business (its column types differ by backend);
these classes only hold the values and what follows from them.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from parallelr.jobs.leases import Lease
from parallelr.jobs.states import JobState
from parallelr.model import Task


@attrs.frozen
class RunRecord:
    """A batch run. ``state`` is the stored one; see :func:`parallelr.jobs.liveness.shown_state`.

    ``pid``, ``create_time`` and ``host`` name the runner process; ``lease_owner`` and
    ``lease_expires_at`` its lease (None for a run that ended, or one stored before leases).

    ``planned`` counts the jobs stored so far (positions 1..planned): a big run's jobs are stored
    while it runs, a bounded number ahead of the last task started, so a run that ended early
    (Ctrl+C, a kill) may have fewer jobs than ``task_count``; the rest never started and are
    read again from the task source on resume. ``plan_digest`` is the digest of the stored tasks
    in order and ``source_stamp`` how the source looked when the run started (size, mtime and
    hashes of an arguments file): a resume checks both before it reads the source again. None
    for runs stored before version 3 (all their jobs were stored before they started).
    """

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
    lease_owner: Optional[str] = None
    lease_expires_at: Optional[float] = None
    planned: Optional[int] = None
    plan_digest: Optional[str] = None
    source_stamp: Optional[Mapping[str, Any]] = None

    @property
    def unrecorded(self) -> int:
        """Tasks of the run that have no job (yet): they never started."""
        if self.planned is None or self.task_count is None:
            return 0
        return max(0, self.task_count - self.planned)


@attrs.frozen
class JobRecord:
    """A job (the fields a resume, ``runs show`` and the dead-letter list need)."""

    id: int
    run_id: Optional[str]
    position: Optional[int]
    source: str
    argv: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]
    arguments: Tuple[str, ...]
    line_number: Optional[int]
    shell: bool
    state: JobState = attrs.field(converter=JobState)
    attempts: int
    max_attempts: int
    exit_code: Optional[int]
    last_error: Optional[str]
    last_status: Optional[str]
    started_at: Optional[float]
    ended_at: Optional[float]
    duration: Optional[float]

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
        """JSON-ready: lists instead of tuples, the state as its string."""
        data = attrs.asdict(self, recurse=False)
        data["state"] = self.state.value
        data["argv"] = list(self.argv)
        data["env"] = [list(pair) for pair in self.env]
        data["arguments"] = list(self.arguments)
        return data


@attrs.frozen
class AttemptRecord:
    """One try of one job."""

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


@attrs.frozen
class ClaimedJob:
    """A job a claimer now holds (state ``running``, attempt counted) and the lease it holds it by."""

    job: JobRecord
    lease: Lease


# -- the queue ------------------------------------------------------------------------------------
@attrs.frozen
class NewJob:
    """A queue job to store, validated (see :mod:`parallelr.queue.spec`).

    ``key`` is the job's ID as users see it (unique across every queue); ``due_at`` the epoch
    time it may start (``run_at``/``delay``); ``depends_on`` the IDs of the jobs that must
    complete first. ``max_retries`` is the most attempts it gets (0 and 1: one).
    """

    key: str
    queue: str
    argv: Tuple[str, ...] = attrs.field(converter=tuple)
    shell: bool
    env: Tuple[Tuple[str, str], ...] = attrs.field(default=(), converter=tuple)
    cwd: Optional[str] = None
    timeout: Optional[float] = None
    priority: int = 0
    max_retries: int = 3
    due_at: Optional[float] = None
    depends_on: Tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class QueueJob:
    """A queue job as stored. ``state`` is the store's; ``shown`` the name users see and filter
    by (:data:`parallelr.queue.states.SHOWN_STATES`). ``row`` is the store's own key."""

    row: int
    key: str
    queue: str
    argv: Tuple[str, ...]
    shell: bool
    env: Tuple[Tuple[str, str], ...]
    cwd: Optional[str]
    timeout: Optional[float]
    priority: int
    state: JobState = attrs.field(converter=JobState)
    shown: str
    attempts: int
    max_retries: int
    tries: int
    next_attempt_at: float
    waiting_on: int
    lease_owner: Optional[str]
    lease_expires_at: Optional[float]
    exit_code: Optional[int]
    last_error: Optional[str]
    last_status: Optional[str]
    started_at: Optional[float]
    ended_at: Optional[float]
    created_at: float
    updated_at: float

    @property
    def command(self) -> str:
        """The command as it was enqueued (the shell script, or the argv as a shell would read it)."""
        if self.shell:
            return self.argv[-1]
        import shlex

        return shlex.join(self.argv)

    def to_task(self, timeout: Optional[float] = None,
                env: Optional[Tuple[Tuple[str, str], ...]] = None) -> Task:
        """What a worker runs: the job's row is the task's index (a running task is cancelled by
        it), its try number the attempt. ``timeout`` and ``env`` replace the job's own."""
        return Task(
            argv=self.argv, source=self.key, env=self.env if env is None else env, shell=self.shell,
            index=self.row, attempt=self.tries, timeout=self.timeout if timeout is None else timeout,
            cwd=self.cwd,
        )


@attrs.frozen
class QueueAttempt:
    """One try of a queue job: ``status`` is a TaskStatus value, ``INTERRUPTED`` (a worker's
    shutdown stopped it; not counted) or ``LOST`` (its worker vanished: the lease expired)."""

    attempt: int
    status: str
    exit_code: Optional[int]
    pid: Optional[int]
    worker: Optional[str]
    slot: Optional[int]
    started_at: Optional[float]
    ended_at: Optional[float]
    duration: Optional[float]
    memory_mb: Optional[float]
    cpu_percent: Optional[float]
    error: Optional[str]
    stdout: str
    stderr: str


@attrs.frozen
class WorkerRecord:
    """A queue worker process: its lease-owner name (``id``), where it runs, its slots and queues
    (empty: every queue), its last heartbeat and the jobs it holds now."""

    id: str
    pid: int
    host: str
    slots: int
    queues: Tuple[str, ...]
    started_at: float
    heartbeat_at: float
    jobs_done: int
    stop_requested: bool
    wake: Optional[str]
    current: Tuple[str, ...] = ()


@attrs.frozen
class AttemptOutcome:
    """What the store made of an attempt's end: the job's new state and, for a retry, when it is due."""

    key: str
    state: JobState
    due_at: Optional[float] = None
    interrupted: bool = False
