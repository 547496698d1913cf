"""What the dashboard shows, read from the store as JSON-ready values: the pages render these
and ``/api/`` returns them, so the two never disagree.

Each function takes an open store and the time now; none writes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from parallelr import timeline
from parallelr.errors import UsageError
from parallelr.jobs.liveness import shown_state
from parallelr.jobs.run_views import job_dict as task_dict
from parallelr.jobs.run_views import run_counts, run_dict
from parallelr.jobs.states import SHOWN_STATES
from parallelr.queue import service, views
from parallelr.queue.spec import queue_name
from parallelr.tables import iso_time

PAGE = 50  # jobs or tasks per page
MAX_PAGE = 500
RATE_WINDOW = 300.0  # seconds of jobs/s history on the overview
RATE_BUCKET = 10.0
RUNS_SHOWN = 100
MAX_ROW = 2 ** 63 - 1  # SQLite's largest integer: a cursor beyond it is a bad request, not an overflow
LAST = "last"  # the newest run, as in 'parallelr runs show last'


class NotFound(UsageError):
    """An ID that names no job or run: the page says so (404)."""


@attrs.frozen
class JobFilter:
    """The jobs list's filters, checked once from the request's query."""

    states: Sequence[str] = ()
    queue: Optional[str] = None
    text: Optional[str] = None
    before: Optional[int] = None
    limit: int = PAGE

    @classmethod
    def parse(cls, args: Any, states: Sequence[str] = ()) -> JobFilter:
        """From a query (``state`` repeatable, ``queue``, ``q``, ``before``, ``limit``).

        Raises:
            UsageError: a value that cannot be used (one line, for a 400).
        """
        wanted = tuple(states) or tuple(value for value in args.getlist("state") if value)
        for state in wanted:
            if state not in SHOWN_STATES:
                raise UsageError(f"unknown state {state!r}: one of {', '.join(SHOWN_STATES)}")
        queue = args.get("queue") or None
        if queue is not None:
            queue = queue_name(queue, "queue")
        text = (args.get("q") or "").strip() or None
        return cls(states=wanted, queue=queue, text=text,
                   before=whole(args.get("before"), "before", 1, MAX_ROW),
                   limit=whole(args.get("limit"), "limit", 1, MAX_PAGE) or PAGE)

    def query(self, before: Optional[int]) -> Dict[str, Any]:
        """The query string's values for the page starting below row ``before``."""
        values: Dict[str, Any] = {"state": list(self.states)}
        if self.queue:
            values["queue"] = self.queue
        if self.text:
            values["q"] = self.text
        if before is not None:
            values["before"] = before
        if self.limit != PAGE:
            values["limit"] = self.limit
        return values


def whole(text: Optional[str], name: str, low: int, high: Optional[int]) -> Optional[int]:
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {text!r}") from None
    if value < low or (high is not None and value > high):
        raise UsageError(f"{name} must be from {low} to {high}" if high else f"{name} must be at least {low}")
    return value


def overview(store: Any, now: Optional[float] = None) -> Dict[str, Any]:
    """Counts by state, jobs/s over the last minutes, workers, paused queues."""
    now = store.now() if now is None else now
    data = views.status_dict(service.status(store, now=now), now)
    data["counts"] = {state: data["counts"].get(state, 0) for state in SHOWN_STATES}
    data["queues"] = store.queue_names()
    data["rate"] = rate(store, now)
    data["read_at"] = now
    return data


def empty_overview() -> Dict[str, Any]:
    """The overview of a store that does not exist yet."""
    return {"counts": {state: 0 for state in SHOWN_STATES}, "total": 0, "active": 0, "paused": [],
            "workers": [], "queues": [], "read_at": time.time(), "rate": _rate_of({})}


def rate(store: Any, now: float) -> Dict[str, Any]:
    """Attempts ended per second in ``RATE_BUCKET`` s buckets over the last ``RATE_WINDOW`` s,
    oldest first; ``last_minute``: the mean over the last 60 s."""
    return _rate_of(store.queue_finishes(now - RATE_WINDOW, RATE_BUCKET))


def _rate_of(found: Dict[int, int]) -> Dict[str, Any]:
    """The rate figures from ``{bucket: attempts ended in it}`` (bucket 0 the oldest)."""
    buckets = int(RATE_WINDOW / RATE_BUCKET)
    series = [round(found.get(number, 0) / RATE_BUCKET, 2) for number in range(buckets)]
    recent = int(60 / RATE_BUCKET)
    return {"bucket_seconds": RATE_BUCKET, "per_second": series,
            "last_minute": round(sum(found.get(n, 0) for n in range(buckets - recent, buckets)) / 60.0, 2)}


def jobs_page(store: Any, wanted: JobFilter, now: Optional[float] = None) -> Dict[str, Any]:
    """One page of jobs, newest first, with the total and the cursor of the next page."""
    now = store.now() if now is None else now
    jobs = store.find_queue_jobs(now, states=wanted.states, queue=wanted.queue, text=wanted.text,
                                 before=wanted.before, limit=wanted.limit + 1)
    more = len(jobs) > wanted.limit
    jobs = jobs[:wanted.limit]
    return {
        "jobs": [views.job_dict(job) for job in jobs],
        "total": store.count_queue_jobs(now, states=wanted.states, queue=wanted.queue, text=wanted.text),
        "next_before": jobs[-1].row if more and jobs else None,
        "filter": {"state": list(wanted.states), "queue": wanted.queue, "q": wanted.text},
    }


def job_detail(store: Any, key: str, now: Optional[float] = None) -> Dict[str, Any]:
    """A job as ``queuectl show --json`` gives it: every attempt with its output tail."""
    now = store.now() if now is None else now
    job = store.get_queue_job(key, now)
    if job is None:
        raise NotFound(f"no job with ID {key!r}")
    data = views.job_dict(job, store.dependencies_of(job.row, now))
    data["attempts_detail"] = [views.attempt_dict(attempt) for attempt in store.queue_attempts(job.row)]
    return data


def runs(store: Any, limit: int = RUNS_SHOWN) -> List[Dict[str, Any]]:
    """The journal's batch runs, newest first, with their counts and duration."""
    return [_run_summary(store, run) for run in store.list_runs(limit)]


def _run_summary(store: Any, run: Any) -> Dict[str, Any]:
    return {
        "id": run.id, "app_name": run.app_name, "state": shown_state(run), "command": run.command,
        "started_at": iso_time(run.started_at), "ended_at": iso_time(run.ended_at),
        "duration": _duration(run), "exit_code": run.exit_code, "workers": run.workers,
        "counts": run_counts(store, run),
    }


def _duration(run: Any) -> float:
    end = run.ended_at if run.ended_at is not None else time.time()
    return round(max(0.0, end - run.started_at), 3)


def run_detail(store: Any, run_id: str, after: int = -1, limit: int = PAGE,
               now: Optional[float] = None) -> Tuple[Dict[str, Any], timeline.Timeline]:
    """A run: its record, a page of its tasks (positions after ``after``) and its timeline (as
    values, and laid out for drawing)."""
    now = store.now() if now is None else now
    run = store.latest_run() if run_id == LAST else store.get_run(run_id)
    if run is None:
        raise NotFound("no batch run is recorded yet" if run_id == LAST
                       else f"no batch run with ID {run_id!r}")
    tasks = list(itertools.islice(store.iter_jobs(run.id, after=after), limit + 1))
    more = len(tasks) > limit
    tasks = tasks[:limit]
    drawn = timeline.build(store.run_attempts(run.id), now)
    data = run_dict(store, run)  # the summary's fields and more, but its duration and workers
    data.update(duration=_duration(run), workers=run.workers)
    data["tasks"] = [task_dict(job) for job in tasks]
    data["next_after"] = tasks[-1].position if more and tasks else None
    data["timeline"] = {"slots": list(drawn.slots), "start": drawn.start, "end": drawn.end,
                        "bars": [bar.as_dict() for bar in drawn.bars]}
    return data, drawn
