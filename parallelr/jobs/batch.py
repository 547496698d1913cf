"""Task events of a batch run, checked against the job transitions before a store writes them.

The journal's writer hands a store everything that happened in the last few milliseconds as one
list of records, ``(name, arguments)`` in the order they happened:

* ``("task_started", (run_id, task, worker_id, now, owner))``: an attempt was handed to a worker;
* ``("attempt_ended", (run_id, result, now, retry_delay))``: an attempt ended; ``retry_delay`` is
  set when the task runs again after it (the job waits as failed/timeout), None for its final one;
* ``("finish_run", (run_id, summary, now))``, ``("renew_run_lease", (run_id, owner, expires_at))``
  and ``("cancel_not_started", (run_id, first, last, error, now))`` (the tasks at positions
  first..last never got a slot: one set-based update, whose ``WHERE state IN (...)`` comes from
  the transition table, instead of a record each): store methods of the same name, applied after
  the task records, in order.

:func:`plan_batch` replays the records on the jobs' current states, checking every move with
:func:`~parallelr.jobs.states.check_transition`, and returns what a store has to write: the ends,
and the starts whose attempt did not also end within the batch (the end writes every column the
start would). Nothing here is specific to one database, so every store plans the same way.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Set, Tuple

import attrs

from parallelr.jobs.states import JobState, can_move, check_transition, final_state, retry_state
from parallelr.model import TaskResult

TASK_STARTED = "task_started"
ATTEMPT_ENDED = "attempt_ended"

Record = Tuple[str, Tuple[Any, ...]]
JobKey = Tuple[str, int]  # (run ID, position)


@attrs.frozen
class JobStart:
    """Write: the job at ``position`` of ``run_id`` runs attempt ``attempt`` since ``at``."""

    run_id: str
    position: int
    attempt: int
    worker_id: int
    at: float
    owner: str


@attrs.frozen
class AttemptEnd:
    """Write: an attempt of the job ended at ``at``; the job is now ``state``."""

    run_id: str
    position: int
    state: JobState
    next_attempt_at: float
    result: TaskResult
    at: float

    @property
    def ran(self) -> bool:
        """False for a task that never started (cancelled before it got a slot)."""
        return self.result.start_time is not None


@attrs.frozen
class BatchPlan:
    """What a store writes for one batch: ``ends`` first, then ``starts``, then ``others``.

    Ends go first: a start left in the plan is, for its job, later than any end in the batch
    (the start of attempt k+1 follows the end of attempt k).
    """

    ends: Tuple[AttemptEnd, ...]
    starts: Tuple[JobStart, ...]
    others: Tuple[Record, ...]


def job_keys(records: Sequence[Record]) -> Set[JobKey]:
    """The jobs a batch touches: the store reads their states before :func:`plan_batch`."""
    keys: Set[JobKey] = set()
    for name, args in records:
        if name == TASK_STARTED:
            keys.add((args[0], args[1].index))
        elif name == ATTEMPT_ENDED:
            keys.add((args[0], args[1].task.index))
    return keys


def plan_batch(records: Sequence[Record], current: Mapping[JobKey, str]) -> BatchPlan:
    """Replay ``records`` on ``current`` (the stored state of every job in :func:`job_keys`).

    A job missing from ``current`` is not checked (there is no row to change).

    Raises:
        IllegalTransition: a record would move a job between states that are not linked.
    """
    ended = {
        (args[0], args[1].task.index, args[1].attempt) for name, args in records if name == ATTEMPT_ENDED
    }
    states: Dict[JobKey, str] = dict(current)
    ends: List[AttemptEnd] = []
    starts: List[JobStart] = []
    others: List[Record] = []
    for name, args in records:
        if name == TASK_STARTED:
            run_id, task, worker_id, now, owner = args
            _move(states, (run_id, task.index), JobState.RUNNING)
            if (run_id, task.index, task.attempt) not in ended:
                starts.append(JobStart(run_id, task.index, task.attempt, worker_id, now, owner))
        elif name == ATTEMPT_ENDED:
            run_id, result, now, retry_delay = args
            if retry_delay is not None:
                state, next_attempt = retry_state(result.status), now + retry_delay
            else:
                state, next_attempt = final_state(result.status), now
            _end(states, (run_id, result.task.index), state)
            ends.append(AttemptEnd(run_id, result.task.index, state, next_attempt, result, now))
        else:
            others.append((name, args))
    return BatchPlan(tuple(ends), tuple(starts), tuple(others))


def _label(key: JobKey) -> str:
    return f"task {key[1]} of run {key[0]}"


def _move(states: Dict[JobKey, str], key: JobKey, to_state: JobState) -> None:
    if key in states:
        states[key] = check_transition(states[key], to_state, _label(key))


def _end(states: Dict[JobKey, str], key: JobKey, to_state: JobState) -> None:
    current = states.get(key)
    if current is None:
        return
    if not can_move(current, to_state) and can_move(current, JobState.RUNNING) and can_move(
        JobState.RUNNING, to_state
    ):
        # Its start was never committed (a batch that failed, e.g. a lock held too long): an
        # attempt that ended was started, so the end implies the start.
        current = JobState.RUNNING
    states[key] = check_transition(current, to_state, _label(key))
