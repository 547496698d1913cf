"""Storing a run's jobs while it runs, and reading the ones never stored again on resume.

Storing every task before the first one starts made a big run start late (about 25 µs a task:
27 s and 300 MB for a million lines before anything ran). Instead:

* **Before the first task** the run row and the first jobs are stored, at most
  :data:`UPFRONT_JOBS` (a small run: all of them, as before), in one transaction.
* **While the run goes on** the writer thread stores the rest, :data:`PLAN_CHUNK` jobs per
  transaction whenever it has nothing else to do, and always every job a record of the batch it
  commits names (a task is never started without its job being stored with its start). For an
  arguments file, whose stamp (below) protects a resume, it stays at most :data:`PLAN_AHEAD`
  jobs ahead of the last task started: a 10-million-line file does not make a 3 GB database
  while the first tasks run, and Ctrl+C has few stored jobs to mark cancelled. Other sources
  (their tasks are in memory anyway) are stored to the end as fast as the writer can.
* The run row says how many jobs are stored (``planned``, positions 1..planned) with a digest of
  them in order (:class:`PlanDigest`) and, in ``source_stamp``, the working directory and, for
  an arguments file, its size, mtime and a hash of its first and last 64 KiB (:func:`file_stamp`).

A run that ended before all its jobs were stored (Ctrl+C, kill -9) has tasks without a job:
they never started. ``--resume`` reads them again from the run's source (:func:`derive_tail`),
but only after checking that the source is the one the run had: the arguments file's stamp must
match, the source must give the stored tasks again (same digest) and as many tasks in all. Any
difference refuses the resume with one line. A run whose jobs were all stored never reads its
source again.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sized

import attrs

from parallelr.errors import ParallelrError
from parallelr.jobs.records import RunRecord
from parallelr.jobs.store import JobStore
from parallelr.model import Task

UPFRONT_JOBS = 2000  # jobs stored with the run row, before the first task (about 50 ms)
UPFRONT_BUDGET = 0.1  # seconds at most for pulling those from the source
PLAN_CHUNK = 500  # jobs per background transaction (about 10 ms of the writer thread)
PLAN_AHEAD = 10_000  # jobs stored ahead of the last task started (stamped sources)
PLAN_AHEAD_VARIABLE = "PARALLELR_JOURNAL_PLAN_AHEAD"  # another PLAN_AHEAD (tests make it small)
STAMP_BLOCK = 64 * 1024  # bytes hashed at each end of an arguments file


def plan_ahead() -> int:
    """How many jobs a stamped source is stored ahead of the run: :data:`PLAN_AHEAD`, or the
    environment's ``PARALLELR_JOURNAL_PLAN_AHEAD``."""
    raw = os.environ.get(PLAN_AHEAD_VARIABLE, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else PLAN_AHEAD


class PlanDigest:
    """A running digest of tasks in order: what a resume compares the source against.

    It covers what a job stores of a task (argv, environment, arguments, source, line number,
    shell); ``repr`` of those tuples is unambiguous and fast.
    """

    def __init__(self, state: Any = None) -> None:
        self._hash = state if state is not None else hashlib.blake2b(digest_size=16)

    def add(self, task: Task) -> None:
        key = (task.argv, task.env, task.arguments, task.source, task.line_number, task.shell)
        self._hash.update(repr(key).encode("utf-8", "surrogateescape") + b"\n")

    def copy(self) -> PlanDigest:
        return PlanDigest(self._hash.copy())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def file_stamp(path: str) -> Dict[str, Any]:
    """How the file looks now: absolute path, size, mtime and hashes of its first and last
    :data:`STAMP_BLOCK` bytes (cheap for any size; an edit that keeps all four is not seen)."""
    path = os.path.abspath(path)
    status = os.stat(path)
    with open(path, "rb") as handle:
        head = handle.read(STAMP_BLOCK)
        handle.seek(max(0, status.st_size - STAMP_BLOCK))
        tail = handle.read(STAMP_BLOCK)
    return {
        "path": path, "size": status.st_size, "mtime_ns": status.st_mtime_ns,
        "head": hashlib.blake2b(head, digest_size=16).hexdigest(),
        "tail": hashlib.blake2b(tail, digest_size=16).hexdigest(),
    }


def source_stamp(options: Dict[str, Any]) -> Dict[str, Any]:
    """The stamp of a new run's task source, from its options (``arguments_file``: -A)."""
    stamp: Dict[str, Any] = {"cwd": os.getcwd()}
    arguments_file = options.get("arguments_file")
    if arguments_file:
        # the source read it a moment ago; without a stamp the jobs are simply stored in full
        with contextlib.suppress(OSError):
            stamp["file"] = file_stamp(arguments_file)
    return stamp


class Planner:
    """Stores the jobs of ``tasks`` (numbered from ``planned + 1``) in bounded chunks.

    Used by one thread at a time: the main thread before the run starts, then the writer.
    Staged jobs are pulled from the source but not committed yet; a transaction that fails
    leaves them staged, so they are written by the next one.
    """

    def __init__(self, run_id: str, tasks: Iterable[Task], *, max_attempts: int, planned: int = 0,
                 digest: Optional[PlanDigest] = None, bounded: bool = False) -> None:
        self.run_id = run_id
        self.max_attempts = max_attempts
        self.planned = planned  # jobs committed: positions 1..planned
        self.bounded = bounded  # stay PLAN_AHEAD ahead of the run instead of going to the end
        self.ahead = plan_ahead()
        self.wanted = 0  # the highest position the run has started
        self.exhausted = False  # the source has no more tasks
        self.halted = False  # the run is stopping: nothing more in the background
        self.failure: Optional[str] = None  # the source failed (the run's own pass fails too)
        self._iterator: Iterator[Task] = iter(tasks)
        self._source_next = planned + 1  # the position the source iterator gives next
        self._digest = digest if digest is not None else PlanDigest()
        self._staged: List[Task] = []
        self._staged_digest = self._digest.copy()
        self._complete_written = False

    @property
    def next_position(self) -> int:
        return self.planned + len(self._staged) + 1

    @property
    def complete(self) -> bool:
        """Every job of the source is stored."""
        return self.exhausted and not self._staged and self._complete_written

    def has_work(self) -> bool:
        """Something to store in the background now."""
        if self._staged:
            return True
        if self.exhausted:
            return not self._complete_written
        if self.halted or self.failure is not None:
            return False
        return not self.bounded or self.next_position <= self.wanted + self.ahead

    def want(self, position: int) -> None:
        """The run started the task at ``position``: keep storing ahead of it."""
        if position > self.wanted:
            self.wanted = position

    def halt(self) -> None:
        """The run stops: jobs not stored by now are never started (they stay implicit)."""
        self.halted = True

    def give_up(self, reason: str) -> None:
        self.failure = reason
        self._staged = []  # not written: a resume reads them from the source again
        self._staged_digest = self._digest.copy()

    def stage_upfront(self) -> None:
        limit = min(UPFRONT_JOBS, self.ahead) if self.bounded else UPFRONT_JOBS
        self._stage(limit, time.monotonic() + UPFRONT_BUDGET, None)

    def stage_chunk(self) -> None:
        limit = PLAN_CHUNK
        if self.bounded:
            limit = min(limit, self.wanted + self.ahead - self.next_position + 1)
        self._stage(max(0, limit), None, None)

    def stage_through(self, position: int, known: Optional[Dict[int, Task]] = None) -> None:
        """Stage every job up to the one at ``position`` (a record names it). ``known``: tasks
        the records carry, by position; they are taken as they are, so a task that started is
        stored even if the source fails for this pass afterwards (a bad line found later)."""
        self.want(position)
        known = known or {}
        while self.next_position <= position:
            task = known.get(self.next_position)
            if task is None and not self.exhausted and self.failure is None:
                task = self._next_from_source()
            if task is None:
                return  # nothing more to get: the records of those tasks find no job to update
            self._add(task)

    def _add(self, task: Task) -> None:
        self._staged.append(task)
        self._staged_digest.add(task)

    def _next_from_source(self) -> Optional[Task]:
        """The source's task at :attr:`next_position` (skipping those staged from records)."""
        try:
            while True:
                task = next(self._iterator)
                self._source_next += 1
                if self._source_next > self.next_position:
                    break
        except StopIteration:
            self.exhausted = True
            return None
        except Exception as exc:  # the run's own pass of the source fails the same way
            self.failure = f"{exc}"
            return None
        if task.index != self.next_position:  # numbered by the core; never expected to differ
            self.failure = f"task {task.index} came where task {self.next_position} was expected"
            return None
        return task

    def _stage(self, limit: Optional[int], deadline: Optional[float], through: Optional[int]) -> None:
        added = 0
        while not self.exhausted and self.failure is None:
            if through is not None and self.next_position > through:
                break
            if limit is not None and added >= limit:
                break
            if deadline is not None and added % 64 == 0 and added and time.monotonic() >= deadline:
                break
            task = self._next_from_source()
            if task is None:
                break
            self._add(task)
            added += 1

    def write(self, store: JobStore, now: float) -> None:
        """Store the staged jobs and the run's planning columns, inside the caller's transaction."""
        if not self._staged and (self._complete_written or not self.exhausted):
            return
        if self._staged:
            store.add_jobs(self.run_id, self._staged, self.max_attempts, now)
        total = self.planned + len(self._staged)
        store.record_planned(self.run_id, total, self._staged_digest.hexdigest(),
                             total if self.exhausted else None)

    def committed(self) -> None:
        """The transaction that :meth:`write` wrote into was committed."""
        if self._staged or self.exhausted:
            self.planned += len(self._staged)
            self._staged = []
            self._digest = self._staged_digest.copy()
            self._complete_written = self._complete_written or self.exhausted


# -- resume: the tasks that were never stored -----------------------------------------------------
class SourceChanged(ParallelrError):
    """The run's source no longer gives the tasks the run had: its never-started tasks cannot be
    read from it."""


@attrs.frozen
class Tail:
    """The tasks of a resumed run that have no job yet: positions ``start + 1`` .. ``start + count``,
    read again from the source on each iteration; ``digest`` covers tasks 1..start."""

    tasks: Any  # re-iterable, numbered from 1 like the core numbers a new run's tasks
    start: int
    count: int
    digest: PlanDigest
    bounded: bool

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Task]:
        return itertools.islice(iter(self.tasks), self.start, None)


class _Numbered:
    """The sources' collections chained and numbered 1..N, as the core numbers a new run."""

    def __init__(self, collections: List[Any]) -> None:
        self.collections = collections

    def __iter__(self) -> Iterator[Task]:
        tasks = itertools.chain.from_iterable(self.collections)
        return (attrs.evolve(task, index=index) for index, task in enumerate(tasks, start=1))

    def count(self) -> int:
        if all(isinstance(found, Sized) for found in self.collections):
            return sum(len(found) for found in self.collections)
        return sum(1 for _ in self)


class _SourceConfig:
    """The resuming config, with the request's task options made absolute against the run's
    working directory (a resume may run from elsewhere)."""

    def __init__(self, config: Any, request: Any) -> None:
        self._config = config
        self.request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def derive_tail(config: Any, run: RunRecord) -> Optional[Tail]:
    """The never-stored tasks of ``run`` from its source, checked (None: every job is stored).

    Raises:
        SourceChanged: the source is not what the run had (see the module docstring).
    """
    unrecorded = run.unrecorded
    planned = run.planned or 0
    if run.planned is None or (run.task_count is not None and unrecorded == 0):
        return None
    stamp = dict(run.source_stamp or {})
    where = f"run {run.id} has {unrecorded} task(s) that never started, read again from its source"
    stamped = stamp.get("file")
    if stamped:
        try:
            now = file_stamp(stamped["path"])
        except OSError as exc:
            raise SourceChanged(f"cannot resume: {where}, but the arguments file {stamped['path']} cannot be"
                                f" read ({exc.strerror})") from None
        changed = [key for key in ("size", "mtime_ns", "head", "tail") if now.get(key) != stamped.get(key)]
        if changed:
            raise SourceChanged(
                f"cannot resume: {where}, but the arguments file {stamped['path']} changed since the run"
                f" started ({', '.join(_what(key) for key in changed)}); put the original back to resume"
            )
    tasks = _Numbered(_collect(config, stamp))
    digest = PlanDigest()
    seen = 0
    for task in itertools.islice(iter(tasks), planned):
        digest.add(task)
        seen += 1
    if seen != planned or digest.hexdigest() != run.plan_digest:
        raise SourceChanged(
            f"cannot resume: {where}, but the source no longer gives the {planned} task(s) the run stored"
            " (a task file, directory or the arguments file changed); its stored tasks can still be retried"
            " with 'dlq retry'"
        )
    total = tasks.count()
    if run.task_count is not None and total != run.task_count:
        raise SourceChanged(
            f"cannot resume: {where}, but the source now gives {total} task(s) instead of {run.task_count}"
        )
    return Tail(tasks, planned, total - planned, digest, bounded=bool(stamped))


def _what(key: str) -> str:
    return {"size": "size", "mtime_ns": "modification time", "head": "first 64 KiB",
            "tail": "last 64 KiB"}[key]


def _collect(config: Any, stamp: Dict[str, Any]) -> List[Any]:
    request = config.request
    cwd = stamp.get("cwd")
    changes: Dict[str, Any] = {}
    if stamp.get("file"):
        changes["arguments_file"] = stamp["file"]["path"]
    if cwd and request.task_paths:
        changes["TasksDir"] = [os.path.join(cwd, path) for path in request.task_paths]
    if changes:
        request = request.with_options(**changes)
    found = config.hook.parallelr_collect_tasks(config=_SourceConfig(config, request))
    collections = [collection for collection in found if collection is not None]
    if not collections:
        raise SourceChanged("cannot resume: no task source accepts the run's stored options any more")
    return collections
