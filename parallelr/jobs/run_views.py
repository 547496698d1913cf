"""A recorded batch run as its readers show it: ``parallelr runs`` and the dashboard."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from parallelr.jobs.liveness import shown_state
from parallelr.jobs.records import JobRecord, RunRecord
from parallelr.tables import iso_time

UNFINISHED_STATES = ("pending", "running", "failed", "timeout")  # counted as PENDING


def stored_counts(run: RunRecord, counts: Dict[str, int]) -> Tuple[int, int]:
    """``(tasks, never stored)`` of a run: its task count, and how many tasks have no job."""
    stored = sum(counts.values())
    unrecorded = run.unrecorded
    return max(stored + unrecorded, run.task_count or 0), unrecorded


def unstored_are_waiting(run: RunRecord) -> bool:
    """Whether the tasks of ``run`` that have no job still wait (the run runs, or it crashed and
    may be resumed) rather than count as cancelled (it ended)."""
    return shown_state(run) in ("running", "crashed")


def run_counts(store: Any, run: RunRecord) -> Dict[str, int]:
    """The run's tasks by how they stand (see :func:`counts_of`)."""
    return counts_of(run, store.job_counts(run.id))


def counts_of(run: RunRecord, counts: Dict[str, int]) -> Dict[str, int]:
    """The run's tasks by how they stand, from its jobs' ``{state: count}``. Tasks of a big run
    that have no job never started (the run ended before storing them): pending while the run
    runs or after it crashed, cancelled once it ended."""
    tasks, unrecorded = stored_counts(run, counts)
    waiting = unstored_are_waiting(run)
    return {
        "tasks": tasks,
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("dead", 0),
        "cancelled": counts.get("cancelled", 0) + (0 if waiting else unrecorded),
        "pending": sum(counts.get(state, 0) for state in UNFINISHED_STATES) + (unrecorded if waiting else 0),
    }


def run_dict(store: Any, run: RunRecord) -> Dict[str, Any]:
    states = store.job_counts(run.id)
    return {
        "id": run.id, "app_name": run.app_name, "state": shown_state(run),
        "started_at": iso_time(run.started_at), "ended_at": iso_time(run.ended_at),
        "command": run.command, "exit_code": run.exit_code,
        "pid": run.pid, "host": run.host, "resumes": run.resumes, "counts": counts_of(run, states),
        "states": states,
        "logs": {"main_log": run.main_log, "summary_csv": run.summary_csv, "output_log": run.output_log},
    }


def job_dict(job: JobRecord) -> Dict[str, Any]:
    data = job.as_dict()
    for key in ("started_at", "ended_at"):
        data[key] = iso_time(data[key])
    return data
