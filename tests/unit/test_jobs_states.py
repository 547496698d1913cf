"""JobState and its transitions, and the batch planner that checks task events against them."""

from __future__ import annotations

import json

import pytest
from test_jobs_sqlite import RUN_ID, make_tasks, result  # shared helpers (tests/unit is on sys.path)

from parallelr.jobs.batch import job_keys, plan_batch
from parallelr.jobs.errors import IllegalTransition
from parallelr.jobs.states import (
    JOB_STATES,
    RUN_STATES,
    TRANSITIONS,
    JobState,
    RunState,
    can_move,
    check_transition,
    counted_as,
    final_state,
    retry_state,
    sources_of,
)
from parallelr.model import Task, TaskStatus

S = JobState


def test_values_are_the_strings_stored_before_the_enum() -> None:
    assert JOB_STATES == ("pending", "running", "succeeded", "failed", "timeout", "cancelled", "dead")
    assert RUN_STATES == ("running", "finished", "interrupted", "stopped", "crashed")
    assert S("dead") is S.DEAD and S.DEAD == "dead" and RunState.FINISHED == "finished"
    assert (str(S.DEAD), f"{S.DEAD}", json.dumps(S.DEAD), json.dumps({S.DEAD: 1})) == (
        "dead", "dead", '"dead"', '{"dead": 1}'
    )
    assert {"dead": 2}[S.DEAD] == 2  # counts keyed by the stored strings


def test_every_state_has_its_moves_and_succeeded_is_final() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert all(state not in moves for state, moves in TRANSITIONS.items())  # no move to itself


@pytest.mark.parametrize(("from_state", "to_state"), [
    ("pending", "running"), ("pending", "cancelled"), ("running", "succeeded"), ("running", "failed"),
    ("running", "timeout"), ("running", "dead"), ("running", "cancelled"), ("running", "pending"),
    ("failed", "running"), ("timeout", "running"), ("failed", "cancelled"), ("failed", "pending"),
    ("dead", "pending"), ("cancelled", "pending"), ("pending", "dead"),  # a queue job's dependency died
])
def test_legal_moves(from_state: str, to_state: str) -> None:
    assert can_move(from_state, to_state)
    assert check_transition(from_state, to_state) is JobState(to_state)


@pytest.mark.parametrize(("from_state", "to_state"), [
    ("succeeded", "running"), ("succeeded", "pending"), ("pending", "succeeded"),
    ("dead", "running"), ("cancelled", "running"), ("failed", "succeeded"), ("running", "running"),
])
def test_an_illegal_move_raises_a_typed_error(from_state: str, to_state: str) -> None:
    assert not can_move(from_state, to_state)
    with pytest.raises(IllegalTransition) as caught:
        check_transition(from_state, to_state, job="job 7")
    error = caught.value
    assert (error.job, error.from_state, error.to_state) == ("job 7", from_state, to_state)
    assert str(error) == f"job 7 cannot move from {from_state} to {to_state}"


def test_sources_of_a_state() -> None:
    assert sources_of(S.RUNNING) == (S.PENDING, S.FAILED, S.TIMEOUT)  # what a claim may take
    assert set(sources_of(S.PENDING)) == set(JobState) - {S.PENDING, S.SUCCEEDED}  # what a resume requeues


def test_states_from_task_statuses() -> None:
    assert [final_state(status) for status in TaskStatus] == [
        {TaskStatus.SUCCESS: S.SUCCEEDED, TaskStatus.CANCELLED: S.CANCELLED}.get(status, S.DEAD)
        for status in TaskStatus
    ]
    retried = [retry_state(status) for status in (TaskStatus.TIMEOUT, TaskStatus.FAILED, TaskStatus.ERROR)]
    assert retried == [S.TIMEOUT, S.FAILED, S.FAILED]
    assert counted_as("dead", "TIMEOUT") is TaskStatus.TIMEOUT
    assert counted_as("dead", "nonsense") is TaskStatus.FAILED
    assert counted_as("succeeded", None) is TaskStatus.SUCCESS
    assert counted_as("running", None) is TaskStatus.CANCELLED


# -- the batch planner --------------------------------------------------------------------------
def test_plan_replays_a_retry_within_one_batch() -> None:
    task = make_tasks(1)[0]
    second = Task(argv=task.argv, source=task.source, index=1, attempt=2)
    records = [
        ("task_started", (RUN_ID, task, 1, 10.0, "pid:7")),
        ("attempt_ended", (RUN_ID, result(task, TaskStatus.FAILED), 11.0, 0.5)),
        ("task_started", (RUN_ID, second, 1, 11.5, "pid:7")),
        ("attempt_ended", (RUN_ID, result(second, TaskStatus.SUCCESS), 12.0, None)),
        ("finish_run", (RUN_ID, None, 13.0)),
    ]
    assert job_keys(records) == {(RUN_ID, 1)}
    plan = plan_batch(records, {(RUN_ID, 1): "pending"})
    assert [(end.state, end.next_attempt_at, end.ran) for end in plan.ends] == [
        (S.FAILED, 11.5, True), (S.SUCCEEDED, 12.0, True)
    ]
    assert plan.starts == ()  # both starts are superseded by their ends
    assert [name for name, _ in plan.others] == ["finish_run"]


def test_plan_refuses_to_run_a_job_that_succeeded() -> None:
    task = make_tasks(1)[0]
    message = f"task 1 of run {RUN_ID} cannot move from succeeded to running"
    with pytest.raises(IllegalTransition, match=message):
        plan_batch([("task_started", (RUN_ID, task, 1, 10.0, "pid:7"))], {(RUN_ID, 1): "succeeded"})


def test_plan_lets_a_never_started_task_be_cancelled() -> None:
    task = make_tasks(1)[0]
    never = result(task, TaskStatus.CANCELLED, ran=False)
    for stored in ("pending", "running", "failed", "timeout"):
        (end,) = plan_batch([("attempt_ended", (RUN_ID, never, 5.0, None))], {(RUN_ID, 1): stored}).ends
        assert (end.state, end.ran) == (S.CANCELLED, False)


def test_plan_skips_jobs_it_does_not_know() -> None:
    task = make_tasks(1)[0]
    plan = plan_batch([("task_started", (RUN_ID, task, 1, 10.0, "pid:7"))], {})
    assert len(plan.starts) == 1  # no row to check against: the update will match nothing
