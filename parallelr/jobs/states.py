"""The states of a job and of a run, and the moves a job may make between them.

The values are exactly the strings stored in the ``jobs.state`` and ``runs.state`` columns, so a
database written before these enums existed reads the same. Both are ``str`` enums: a state
compares equal to its string and prints as it (``str(JobState.DEAD) == "dead"`` on every
Python version).

A job's life::

    pending ──► running ──► succeeded
       │           ├──────► failed | timeout ──► running   (the retry)
       │           ├──────► dead                           (the last attempt failed)
       │           ├──────► cancelled                      (a shutdown stopped it)
       │           └──────► pending                        (its holder is gone: requeued)
       ├──► cancelled                                      (never started)
       └──► dead                                           (a queue job whose dependency died)
    failed | timeout ──► cancelled                         (the retry never started)
    failed | timeout | cancelled | dead ──► pending        (--resume, dlq retry)

``succeeded`` is final. Every state change a store makes goes through :func:`check_transition`
(row by row) or :func:`sources_of` (the ``WHERE state IN (...)`` of a set-based update).
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Optional, Tuple

from parallelr.jobs.errors import IllegalTransition
from parallelr.model import TaskStatus


class JobState(str, enum.Enum):
    """Where a job (a task of a run, or a queue job) stands; stored as its value."""

    PENDING = "pending"  # waits for a worker slot (or for its first start)
    RUNNING = "running"  # an attempt runs; its holder has the lease
    SUCCEEDED = "succeeded"  # final
    FAILED = "failed"  # an attempt failed; the retry is due at next_attempt_at
    TIMEOUT = "timeout"  # the same, after a timeout
    CANCELLED = "cancelled"  # never started, or stopped by a shutdown
    DEAD = "dead"  # the last attempt failed (FAILED, TIMEOUT or ERROR): the dead letters

    def __str__(self) -> str:  # "dead", not "JobState.DEAD", in tables and messages
        return self.value


class RunState(str, enum.Enum):
    """Where a batch run stands. ``crashed`` is never stored: it is how a ``running`` run whose
    holder is gone is shown (see :func:`parallelr.jobs.liveness.shown_state`)."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # a signal stopped it
    STOPPED = "stopped"  # stop limits
    CRASHED = "crashed"

    def __str__(self) -> str:
        return self.value


JOB_STATES: Tuple[str, ...] = tuple(state.value for state in JobState)
RUN_STATES: Tuple[str, ...] = tuple(state.value for state in RunState)

_S = JobState
# state -> the states it may move to. Retrying a failed attempt is FAILED/TIMEOUT -> RUNNING;
# taking a job back from a holder that is gone is RUNNING -> PENDING.
TRANSITIONS: Dict[JobState, FrozenSet[JobState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.CANCELLED, _S.DEAD}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.TIMEOUT, _S.DEAD, _S.CANCELLED, _S.PENDING}),
    _S.FAILED: frozenset({_S.RUNNING, _S.PENDING, _S.CANCELLED}),
    _S.TIMEOUT: frozenset({_S.RUNNING, _S.PENDING, _S.CANCELLED}),
    _S.CANCELLED: frozenset({_S.PENDING}),
    _S.DEAD: frozenset({_S.PENDING}),
    _S.SUCCEEDED: frozenset(),
}


def can_move(from_state: str, to_state: str) -> bool:
    """True if a job in ``from_state`` may move to ``to_state`` (both states or their strings)."""
    return JobState(to_state) in TRANSITIONS[JobState(from_state)]


def check_transition(from_state: str, to_state: str, job: str = "a job") -> JobState:
    """Return ``to_state`` as a JobState if the move is allowed.

    Raises:
        IllegalTransition: the move is not in :data:`TRANSITIONS` (``job`` names the job in it).
    """
    if not can_move(from_state, to_state):
        raise IllegalTransition(job, str(JobState(from_state)), str(JobState(to_state)))
    return JobState(to_state)


def sources_of(to_state: JobState) -> Tuple[JobState, ...]:
    """Every state that may move to ``to_state``, in declaration order (for ``state IN (...)``)."""
    return tuple(state for state in JobState if to_state in TRANSITIONS[state])


# The state a job ends in, by the status of its final attempt.
_FINAL_STATE = {
    TaskStatus.SUCCESS: JobState.SUCCEEDED,
    TaskStatus.FAILED: JobState.DEAD,
    TaskStatus.TIMEOUT: JobState.DEAD,
    TaskStatus.ERROR: JobState.DEAD,
    TaskStatus.CANCELLED: JobState.CANCELLED,
}
# How a job's state maps to the status it counts as when a resumed run does not run it again.
_NOT_RUN_AGAIN_STATUS = {JobState.SUCCEEDED: TaskStatus.SUCCESS, JobState.CANCELLED: TaskStatus.CANCELLED}


def final_state(status: TaskStatus) -> JobState:
    """The state of a job whose final attempt ended with ``status``."""
    return _FINAL_STATE[status]


def retry_state(status: TaskStatus) -> JobState:
    """The state of a job whose attempt ended with ``status`` and that waits for its retry."""
    return JobState.TIMEOUT if status is TaskStatus.TIMEOUT else JobState.FAILED


def counted_as(state: str, last_status: Optional[str]) -> TaskStatus:
    """The summary status of a job that a resumed run leaves alone."""
    if state == JobState.DEAD:
        try:
            return TaskStatus(last_status or "FAILED")
        except ValueError:
            return TaskStatus.FAILED
    # pending / running / failed / timeout: it did not (finish) running in this run
    return _NOT_RUN_AGAIN_STATUS.get(JobState(state), TaskStatus.CANCELLED)


# -- the queue's names ------------------------------------------------------------------------------
# What queue users see and filter by (the queuectl READMEs' names), derived from a job's state:
# pending | scheduled (not due yet) | waiting (for its dependencies) | processing | completed |
# failed (waiting for its retry) | dead | cancelled.
SHOWN_STATES: Tuple[str, ...] = (
    "pending", "scheduled", "waiting", "processing", "completed", "failed", "dead", "cancelled",
)
