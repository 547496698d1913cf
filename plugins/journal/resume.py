"""``--resume RUN_ID|last``: find the stored run, restore its options, plan what runs again.

What runs again is every job of the run that did not succeed (never started, cancelled,
interrupted, failed, timed out, or still marked running by a runner that died), or with
``--resume-only`` just the listed jobs (``dlq retry``). Tasks keep their place in the run and
count their attempts on: a task that ran twice before runs now as attempt 3.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import attrs

from parallelr.errors import ParallelrError, UsageError
from parallelr.jobs.liveness import is_alive
from parallelr.jobs.records import RunRecord
from parallelr.jobs.states import counted_as as status_counted_as
from parallelr.jobs.store import JobStore
from parallelr.model import ResumePlan, Task, TaskStatus
from parallelr.options import RESTORED_DESTS, TASK_OPTIONS
from parallelr.plugins.journal.database import open_journal, reading_journal
from parallelr.plugins.journal.planning import Tail
from parallelr.request import RunRequest

LAST = "last"
ONLY_DEAD = "dead"  # --resume-only dead: every dead job of the run (dlq retry --all)

def is_unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (list, tuple)) and not value)


def given_task_options(request: RunRequest) -> List[str]:
    """The flags given that name the tasks: a resumed run runs the stored tasks instead."""
    return [option.flag for option in TASK_OPTIONS if not is_unset(getattr(request, option.field))]


def restore_options(request: RunRequest, stored: Mapping[str, Any],
                    plugin_dests: Sequence[str] = ()) -> Tuple[RunRequest, List[str]]:
    """The request with its unset options filled from the stored run's (the options declared
    ``restored`` in parallelr.options, and ``plugin_dests``: the plugins' own, from
    ``parallelr_restored_options``); and the names restored."""
    restored: Dict[str, Any] = {}
    for dest in (*RESTORED_DESTS, *plugin_dests):
        value = stored.get(dest)
        if value is None or not is_unset(request.option(dest)):  # given on this command line: it wins
            continue
        restored[dest] = tuple(value) if isinstance(value, list) else value
    return request.with_options(**restored), sorted(restored)


def parse_only(text: Optional[str]) -> Optional[Tuple[str, Tuple[int, ...]]]:
    """``--resume-only``: ``dead`` or a comma list of job IDs. None when not given."""
    if text is None:
        return None
    if text.strip() == ONLY_DEAD:
        return (ONLY_DEAD, ())
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise UsageError(f"--resume-only takes job IDs such as 3,7,12 (or 'dead'), not {part!r}")
        ids.append(int(part))
    if not ids:
        raise UsageError("--resume-only needs at least one job ID (see parallelr dlq list)")
    return ("ids", tuple(ids))


def find_run(store: JobStore, wanted: str, app_name: str) -> RunRecord:
    """The run named by ``--resume``: an ID, or ``last`` (the newest run of this app)."""
    if wanted == LAST:
        run = store.latest_run(app_name)
        if run is None:
            raise UsageError(f"--resume last: no {app_name} run is recorded in {store.location} yet")
        return run
    run = store.get_run(wanted)
    if run is None:
        raise UsageError(f"unknown run {wanted!r} in {store.location}; see '{app_name} runs list'")
    if run.app_name != app_name:
        raise UsageError(
            f"run {wanted} is a {run.app_name} run; resume it with {run.app_name} --resume {wanted}"
        )
    return run


def check_not_running(run: RunRecord) -> None:
    if is_alive(run):  # the lease rule of parallelr.jobs.liveness
        where = f" on {run.host}" if run.host else ""
        raise UsageError(
            f"run {run.id} is still running (PID {run.pid}{where}); stop it with -k {run.pid} first"
        )


@attrs.frozen
class Selection:
    """Which jobs of ``run_id`` run again: all not succeeded, the dead ones, or ``job_ids``."""

    run_id: str
    mode: str = "unfinished"  # "unfinished", "dead" or "ids"
    job_ids: Tuple[int, ...] = ()

    def chosen_ids(self, store: JobStore) -> Optional[List[int]]:
        """The explicit job IDs (checked), or None for "every job not succeeded"."""
        if self.mode == "unfinished":
            return None
        if self.mode == ONLY_DEAD:
            return [job.id for job in store.dead_jobs(self.run_id)]
        jobs = {job.id: job for job in store.jobs_by_ids(self.job_ids)}
        for job_id in self.job_ids:
            job = jobs.get(job_id)
            if job is None or job.run_id != self.run_id:
                raise UsageError(f"job {job_id} is not a task of run {self.run_id}; see 'parallelr dlq list'")
            if job.state == "succeeded":
                raise UsageError(f"job {job_id} of run {self.run_id} already succeeded; nothing to run again")
        return sorted(set(self.job_ids))


class StoredTasks:
    """The tasks of a stored run that run again, read from the database on every pass.

    Iterating twice (the journal marks them, then the scheduler runs them) queries twice; only a
    page of rows is in memory at a time, so a run of 100,000 tasks costs no more than one of 100.
    """

    def __init__(self, path: str, run_id: str, job_ids: Optional[Sequence[int]], count: int,
                 last_position: Optional[int] = None) -> None:
        self.path = path
        self.run_id = run_id
        self.job_ids = job_ids
        self.count = count
        # The jobs stored when the resume was planned: the resumed run stores more while it
        # runs (its tail), and those run as the tail, not a second time as stored jobs.
        self.last_position = last_position

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Task]:
        store = open_journal(self.path, create=False)
        if store is None:
            raise ParallelrError(f"the journal {self.path} disappeared while run {self.run_id} resumed")
        try:
            with reading_journal(store):
                if self.job_ids is None:
                    jobs = store.iter_jobs(self.run_id, exclude_succeeded=True)
                else:
                    jobs = store.iter_jobs_by_ids(self.job_ids)
                for job in jobs:
                    if self.last_position is not None and (job.position or 0) > self.last_position:
                        return
                    yield job.to_task()
        finally:
            store.close()


class ResumeTasks:
    """The stored jobs that run again, then the tasks that never had a job (from the source)."""

    def __init__(self, stored: StoredTasks, tail: Tail) -> None:
        self.stored = stored
        self.tail = tail

    def __len__(self) -> int:
        return len(self.stored) + len(self.tail)

    def __iter__(self) -> Iterator[Task]:
        yield from self.stored
        yield from self.tail


def previous_counts(
    store: JobStore, run_id: str, chosen: Optional[Sequence[int]]
) -> Dict[TaskStatus, int]:
    """How the jobs that do not run again count in the summary (by their stored outcome)."""
    counts = store.state_counts(run_id)
    if chosen is None:  # everything not succeeded runs again
        succeeded = sum(count for (state, _), count in counts.items() if state == "succeeded")
        return {TaskStatus.SUCCESS: succeeded} if succeeded else {}
    for job in store.jobs_by_ids(chosen):
        key = (job.state, job.last_status or "")
        counts[key] -= 1
    previous: Dict[TaskStatus, int] = {}
    for (state, last_status), count in counts.items():
        if count:
            status = status_counted_as(state, last_status)
            previous[status] = previous.get(status, 0) + count
    return previous


def build_plan(store: JobStore, selection: Selection,
               tail: Optional[Tail] = None) -> Tuple[ResumePlan, Optional[List[int]]]:
    """The resume plan for ``selection``, and the explicit job IDs it runs (None: all not
    succeeded); ``tail``: the run's tasks that never had a job, run after the stored ones."""
    chosen = selection.chosen_ids(store)
    if chosen is None:
        counts = store.job_counts(selection.run_id)
        count = sum(number for state, number in counts.items() if state != "succeeded")
    else:
        count = len(chosen)
    if tail is None or tail.count == 0:
        tasks: Any = StoredTasks(store.address, selection.run_id, chosen, count)
    else:
        tasks = ResumeTasks(StoredTasks(store.address, selection.run_id, chosen, count, tail.start), tail)
    previous = previous_counts(store, selection.run_id, chosen)
    return ResumePlan(run_id=selection.run_id, tasks=tasks, count=len(tasks), previous=previous), chosen
