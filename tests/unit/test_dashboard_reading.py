"""The dashboard's pieces without a server: the store reads behind every page and API answer
(reading.py) against a real SQLite store in tmp_path, the query checks (JobFilter.parse), the
timeline's layout, the add-job form's conversion, the access rules (guard.Access), and the Flask
app's rules around every request through Flask's test client (401, 403, 400, 413, headers, the
live fragment)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import pytest
from test_jobs_sqlite import RUN_ID, make_tasks, run_info
from test_queue_store import open_store
from werkzeug.datastructures import MultiDict

from parallelr import timeline
from parallelr.errors import UsageError
from parallelr.jobs.leases import Lease
from parallelr.jobs.liveness import own_create_time, this_host
from parallelr.jobs.records import AttemptRecord, NewJob, QueueJob
from parallelr.jobs.sqlite import SCHEMA_VERSION, SQLiteJobStore
from parallelr.jobs.states import SHOWN_STATES
from parallelr.model import RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.dashboard import actions, guard, reading
from parallelr.plugins.dashboard.app import Dashboard, create_app
from parallelr.plugins.dashboard.guard import Access
from parallelr.plugins.dashboard.stores import ChangeFeed, Stores

T = 1_800_000_000.0  # "now" of the tests that pass the time explicitly
OWNER = "worker:1@host/aaaa"
LEASE = 30.0
STATES = ("pending", "scheduled", "waiting", "processing", "completed", "failed", "dead", "cancelled")


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    store = open_store(tmp_path / "state.db")
    yield store
    store.close()


def shell_job(key: str, command: Optional[str] = None, queue: str = "default", *, max_retries: int = 3,
              due_at: Optional[float] = None, depends_on: Sequence[str] = (), **extra: Any) -> NewJob:
    return NewJob(key=key, queue=queue, argv=("/bin/sh", "-c", command or f"echo {key}"), shell=True,
                  depends_on=tuple(depends_on), max_retries=max_retries, due_at=due_at, **extra)


def claim_one(db: SQLiteJobStore, key: str, now: float) -> QueueJob:
    """Claim job ``key`` alone (the others claimed with it go back)."""
    claimed = db.claim_queue_jobs(OWNER, now, (), 1000, LEASE)
    others = [job.row for job in claimed if job.key != key]
    db.release_queue_jobs(OWNER, others, now)
    return next(job for job in claimed if job.key == key)


def end_attempt(db: SQLiteJobStore, claimed: QueueJob, status: TaskStatus, started: float, ended: float,
                stdout: str = "", stderr: str = "", error: str = "") -> Any:
    exit_code = {TaskStatus.SUCCESS: 0, TaskStatus.FAILED: 1}.get(status)
    outcome = TaskResult(
        task=claimed.to_task(), status=status, worker_id=2, pid=4242, exit_code=exit_code,
        start_time=started, end_time=ended, duration=ended - started, memory_mb=2.0, cpu_percent=5.0,
        stdout=stdout, stderr=stderr, error_message=error,
    )
    return db.finish_queue_attempt(OWNER, outcome, ended, 2.0, 3600.0)


def run_job(db: SQLiteJobStore, key: str, status: TaskStatus, started: float, ended: float,
            **output: str) -> Any:
    return end_attempt(db, claim_one(db, key, started), status, started, ended, **output)


def new_run(db: SQLiteJobStore, tmp_path: Path, count: int, run_id: str = RUN_ID) -> List[Task]:
    tasks = make_tasks(count)
    with db.transaction():
        db.insert_run(run_info(tmp_path, run_id), own_create_time(), this_host(),
                      Lease.starting("runner:1@host/abcdef", time.time()))
        db.insert_jobs(run_id, tasks, max_attempts=3, now=50.0)
    return tasks


def task_result(task: Task, status: TaskStatus, started: float, ended: float, slot: int,
                attempt: int = 1) -> TaskResult:
    return TaskResult(
        task=task, status=status, worker_id=slot, pid=4242,
        exit_code=0 if status is TaskStatus.SUCCESS else 1, start_time=started, end_time=ended,
        duration=ended - started, memory_mb=1.0, cpu_percent=1.0,
        error_message="" if status is TaskStatus.SUCCESS else "Exit code 1", attempt=attempt,
    )


def attempt(job_id: int, number: int, status: str, slot: Optional[int], started: Optional[float],
            ended: Optional[float], exit_code: Optional[int] = 0) -> AttemptRecord:
    duration = None if started is None or ended is None else ended - started
    return AttemptRecord(job_id, number, status, exit_code, 100, slot, started, ended, duration, None)


# -- overview ------------------------------------------------------------------------------------
def test_the_overview_of_an_empty_store_has_every_state_at_zero(db: SQLiteJobStore) -> None:
    data = reading.overview(db, time.time())
    assert list(data["counts"].items()) == [(state, 0) for state in STATES]
    assert tuple(SHOWN_STATES) == STATES
    assert (data["total"], data["active"], data["workers"], data["paused"], data["queues"]) == (
        0, 0, [], [], [])
    assert data["rate"] == {"bucket_seconds": 10.0, "per_second": [0.0] * 30, "last_minute": 0.0}


def test_the_overview_counts_every_shown_state(db: SQLiteJobStore) -> None:
    now = time.time()
    db.enqueue_jobs([
        shell_job("p1", due_at=now - 400), shell_job("s1", due_at=now + 3600),
        shell_job("w1", depends_on=["p1"], due_at=now - 400),
        shell_job("r1", queue="other", due_at=now - 400),
        shell_job("c1", due_at=now - 400), shell_job("f1", due_at=now - 400),
        shell_job("d1", max_retries=1, due_at=now - 400), shell_job("x1", due_at=now - 400),
    ], now - 500)
    claim_one(db, "r1", now - 9)  # left running
    run_job(db, "c1", TaskStatus.SUCCESS, now - 8, now - 5)  # bucket 29 of 30
    run_job(db, "d1", TaskStatus.FAILED, now - 70, now - 65)  # bucket 23
    run_job(db, "f1", TaskStatus.FAILED, now - 296, now - 295)  # bucket 0; 2 retries left: failed
    assert db.cancel_queue_job("x1", now - 1) == "pending"
    data = reading.overview(db, now)
    assert data["counts"] == {"pending": 1, "scheduled": 1, "waiting": 1, "processing": 1, "completed": 1,
                              "failed": 1, "dead": 1, "cancelled": 1}
    assert (data["total"], data["active"]) == (8, 4)
    assert data["queues"] == ["default", "other"]
    assert data["read_at"] == now
    expected = [0.0] * 30
    expected[0] = expected[23] = expected[29] = 0.1
    assert data["rate"]["per_second"] == expected
    assert data["rate"]["last_minute"] == round(1 / 60, 2)


def test_the_overview_counts_at_the_time_it_is_given(db: SQLiteJobStore) -> None:
    """Like every read here, the overview is of the moment ``now`` (its counts and its rate agree)."""
    now = time.time() + 3600
    db.enqueue_jobs([shell_job("due-soon", due_at=now - 60), shell_job("due-later", due_at=now + 60)],
                    now - 120)
    data = reading.overview(db, now)
    assert (data["counts"]["pending"], data["counts"]["scheduled"]) == (1, 1)
    assert page_of(db, now, state="pending")["total"] == 1


def test_the_rate_counts_queue_attempts_by_their_end_only(db: SQLiteJobStore, tmp_path: Path) -> None:
    now = time.time()
    db.enqueue_jobs([shell_job(f"j{n}", due_at=now - 1000) for n in range(5)], now - 1000)
    run_job(db, "j0", TaskStatus.SUCCESS, now - 900, now - 400)  # ended before the window
    run_job(db, "j1", TaskStatus.SUCCESS, now - 900, now - 12)  # started before it, ended in bucket 28
    run_job(db, "j2", TaskStatus.SUCCESS, now - 15, now - 11)  # bucket 28 too
    run_job(db, "j3", TaskStatus.FAILED, now - 30, now - 25)  # bucket 27
    tasks = new_run(db, tmp_path, 1)  # a batch run's attempt is not the queue's throughput
    with db.transaction():
        db.attempt_ended(RUN_ID, task_result(tasks[0], TaskStatus.SUCCESS, now - 20, now - 15, 1), now, None)
    assert db.queue_finishes(now - 300, 10.0) == {27: 1, 28: 2}
    rate = reading.rate(db, now)
    assert rate["per_second"][26:] == [0.0, 0.1, 0.2, 0.0]
    assert sum(rate["per_second"]) == pytest.approx(0.3)
    assert rate["last_minute"] == 0.05  # 3 attempts / 60 s


# -- the jobs list -------------------------------------------------------------------------------
COMMANDS = {
    "plain": "echo plain",
    "quotes": 'echo "double" \'single\'',
    "slash": "printf 'a\\\\b\\n' C:\\temp",
    "unicode": "echo héllo wörld ☃ 日本",
    "dq1": "exit 1",
    "dq2": "exit 2",
    "other": "sleep 0",
}


@pytest.fixture
def listed(db: SQLiteJobStore) -> SQLiteJobStore:
    """Seven jobs, enqueued in COMMANDS' order: two dead, one in queue "q2"."""
    jobs = [shell_job(key, command, queue="q2" if key == "other" else "default",
                      max_retries=1 if key.startswith("dq") else 3) for key, command in COMMANDS.items()]
    db.enqueue_jobs(jobs, T)
    run_job(db, "dq1", TaskStatus.FAILED, T, T + 1)
    run_job(db, "dq2", TaskStatus.FAILED, T + 1, T + 2)
    return db


def page_of(db: SQLiteJobStore, now: float = T + 10, **query: Any) -> dict:
    return reading.jobs_page(db, reading.JobFilter.parse(MultiDict(query)), now)


def ids(page: dict) -> List[str]:
    return [job["id"] for job in page["jobs"]]


def test_jobs_page_is_newest_first_with_a_cursor_to_the_next_page(listed: SQLiteJobStore) -> None:
    first = page_of(listed, limit="3")
    assert ids(first) == ["other", "dq2", "dq1"]
    assert first["total"] == 7
    rows = {job.key: job.row for job in listed.find_queue_jobs(T + 10, limit=100)}
    assert first["next_before"] == rows["dq1"]
    second = page_of(listed, limit="3", before=str(first["next_before"]))
    assert ids(second) == ["unicode", "slash", "quotes"]
    assert (second["total"], second["next_before"]) == (7, rows["quotes"])
    third = page_of(listed, limit="3", before=str(second["next_before"]))
    assert ids(third) == ["plain"]
    assert (third["total"], third["next_before"]) == (7, None)
    whole = page_of(listed)
    assert ids(whole) == list(reversed(COMMANDS))
    assert whole["next_before"] is None  # 7 jobs, a page of 50: no next page
    assert whole["filter"] == {"state": [], "queue": None, "q": None}
    job = whole["jobs"][-1]
    assert (job["id"], job["command"], job["state"], job["queue"], job["attempts"], job["max_retries"]) == (
        "plain", "echo plain", "pending", "default", 0, 3)


def test_a_page_that_ends_exactly_at_the_last_job_has_no_next_page(listed: SQLiteJobStore) -> None:
    first = page_of(listed, limit="5", state="pending")
    assert ids(first) == ["other", "unicode", "slash", "quotes", "plain"]
    assert (first["total"], first["next_before"]) == (5, None)


@pytest.mark.parametrize(("query", "expected"), [
    ({"state": "dead"}, ["dq2", "dq1"]),
    ({"state": "pending"}, ["other", "unicode", "slash", "quotes", "plain"]),
    ({"state": ["dead", "pending"]}, ["other", "dq2", "dq1", "unicode", "slash", "quotes", "plain"]),
    ({"state": "completed"}, []),
    ({"queue": "q2"}, ["other"]),
    ({"queue": "q2", "state": "dead"}, []),
    ({"q": "dq"}, ["dq2", "dq1"]),  # an ID
    ({"q": "exit 2"}, ["dq2"]),  # a command
    ({"q": '"double" \'single\''}, ["quotes"]),  # quotes as typed, not as JSON escapes them
    ({"q": "a\\\\b"}, ["slash"]),  # backslashes
    ({"q": "C:\\temp"}, ["slash"]),
    ({"q": "wörld ☃"}, ["unicode"]),  # beyond ASCII (stored as \\u escapes)
    ({"q": "日本"}, ["unicode"]),
    ({"q": "  héllo  "}, ["unicode"]),  # the search text is stripped
    ({"q": "\\u00e9"}, []),  # the escape itself is not in any command
    ({"q": "nothing like it"}, []),
    ({"q": "e", "state": "dead"}, ["dq2", "dq1"]),
])
def test_jobs_page_filters_with_exact_totals(listed: SQLiteJobStore, query: dict,
                                             expected: List[str]) -> None:
    args = MultiDict([(key, item) for key, value in query.items()
                      for item in (value if isinstance(value, list) else [value])])
    page = reading.jobs_page(listed, reading.JobFilter.parse(args), T + 10)
    assert ids(page) == expected
    assert page["total"] == len(expected)
    assert page["next_before"] is None


@pytest.mark.parametrize("text", ["bin", "/bin/sh", "-c", '","'])
def test_the_text_search_looks_at_ids_and_commands_only(listed: SQLiteJobStore, text: str) -> None:
    """No ID or command holds these: the shell that runs a command is not part of it."""
    page = page_of(listed, q=text)
    assert (ids(page), page["total"]) == ([], 0)


def test_a_filtered_page_pages_through_the_matches_only(listed: SQLiteJobStore) -> None:
    first = page_of(listed, state="pending", limit="2")
    assert ids(first) == ["other", "unicode"]
    assert first["total"] == 5
    second = page_of(listed, state="pending", limit="2", before=str(first["next_before"]))
    assert ids(second) == ["slash", "quotes"]
    third = page_of(listed, state="pending", limit="2", before=str(second["next_before"]))
    assert (ids(third), third["next_before"]) == (["plain"], None)


# -- one job -------------------------------------------------------------------------------------
def test_job_detail_has_every_attempt_and_the_shown_state_of_each_dependency(db: SQLiteJobStore) -> None:
    db.enqueue_jobs([shell_job("base"), shell_job("later", due_at=T + 3600),
                     shell_job("flaky", max_retries=2),
                     shell_job("child", depends_on=["base", "later", "flaky"], env=(("A", "1"),))], T)
    run_job(db, "flaky", TaskStatus.FAILED, T, T + 1, stdout="out 1\n", stderr="err 1\n",
            error="Exit code 1")
    run_job(db, "base", TaskStatus.SUCCESS, T + 2, T + 3, stdout="done\n")
    data = reading.job_detail(db, "child", T + 5)
    assert data["depends_on"] == [{"id": "base", "state": "completed"}, {"id": "later", "state": "scheduled"},
                                  {"id": "flaky", "state": "failed"}]
    assert (data["state"], data["env"], data["attempts_detail"]) == ("waiting", {"A": "1"}, [])
    flaky = reading.job_detail(db, "flaky", T + 5)
    assert flaky["depends_on"] == []
    assert flaky["state"] == "failed"
    assert [(a["attempt"], a["status"], a["exit_code"], a["stdout"], a["stderr"], a["error"], a["worker"],
             a["slot"], a["duration"]) for a in flaky["attempts_detail"]] == [
        (1, "FAILED", 1, "out 1\n", "err 1\n", "Exit code 1", OWNER, 2, 1.0)]
    run_job(db, "flaky", TaskStatus.SUCCESS, T + 10, T + 12, stdout="ok\n")
    again = reading.job_detail(db, "flaky", T + 20)
    assert [(a["attempt"], a["status"], a["stdout"]) for a in again["attempts_detail"]] == [
        (1, "FAILED", "out 1\n"), (2, "SUCCESS", "ok\n")]
    assert reading.job_detail(db, "child", T + 20)["depends_on"][2] == {"id": "flaky", "state": "completed"}


def test_job_detail_of_an_unknown_id_is_not_found(db: SQLiteJobStore) -> None:
    with pytest.raises(reading.NotFound) as caught:
        reading.job_detail(db, "nope", T)
    assert str(caught.value) == "no job with ID 'nope'"


# -- batch runs ----------------------------------------------------------------------------------
def test_runs_lists_the_batch_runs_newest_first_with_their_counts(db: SQLiteJobStore, tmp_path: Path) -> None:
    assert reading.runs(db) == []
    older_id = "20261123-104148-aaaaaa"
    tasks = new_run(db, tmp_path, 3, older_id)
    with db.transaction():
        db.attempt_ended(older_id, task_result(tasks[0], TaskStatus.SUCCESS, 100, 101, 1), 101, None)
        failed = task_result(tasks[1], TaskStatus.FAILED, 100, 102, 2, attempt=3)
        db.attempt_ended(older_id, failed, 102, None)
    new_run(db, tmp_path, 1, "20261124-104148-bbbbbb")
    found = reading.runs(db)
    assert [run["id"] for run in found] == ["20261124-104148-bbbbbb", "20261123-104148-aaaaaa"]
    older = found[1]
    assert older["counts"] == {"tasks": 3, "succeeded": 1, "failed": 1, "cancelled": 0, "pending": 1}
    assert (older["state"], older["command"], older["workers"], older["app_name"]) == (
        "running", "bash @TASK@", 2, "parallelr")


def test_run_detail_pages_through_the_tasks(db: SQLiteJobStore, tmp_path: Path) -> None:
    new_run(db, tmp_path, 7)
    first, _drawn = reading.run_detail(db, RUN_ID, limit=3, now=T)
    assert [task["position"] for task in first["tasks"]] == [1, 2, 3]
    assert first["next_after"] == 3
    assert first["tasks"][0]["source"] == "/t/t1.sh"
    second, _drawn = reading.run_detail(db, RUN_ID, after=3, limit=3, now=T)
    assert [task["position"] for task in second["tasks"]] == [4, 5, 6]
    assert second["next_after"] == 6
    last, _drawn = reading.run_detail(db, RUN_ID, after=6, limit=3, now=T)
    assert ([task["position"] for task in last["tasks"]], last["next_after"]) == ([7], None)
    exact, _drawn = reading.run_detail(db, RUN_ID, after=4, limit=3, now=T)
    assert ([task["position"] for task in exact["tasks"]], exact["next_after"]) == ([5, 6, 7], None)
    assert first["counts"] == {"tasks": 7, "succeeded": 0, "failed": 0, "cancelled": 0, "pending": 7}
    assert first["timeline"] == {"slots": [], "start": T, "end": T, "bars": []}


def test_run_detail_draws_the_attempts_of_the_run(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 3)
    with db.transaction():
        db.attempt_ended(RUN_ID, task_result(tasks[0], TaskStatus.FAILED, 100.0, 102.0, 2), 102.0, 0.5)
        db.attempt_ended(RUN_ID, task_result(tasks[1], TaskStatus.SUCCESS, 101.0, 104.0, 1), 104.0, None)
        db.attempt_ended(RUN_ID, task_result(tasks[0], TaskStatus.SUCCESS, 104.0, 110.0, 2, attempt=2), 110.0,
                         None)
        db.finish_run(RUN_ID, RunSummary(total=3, succeeded=2, failed=0, timed_out=0, errored=0, cancelled=1),
                      111.0)
    data, drawn = reading.run_detail(db, RUN_ID, now=T)
    bars = data["timeline"]["bars"]
    assert [(bar["task"], bar["attempt"], bar["status"], bar["slot"]) for bar in bars] == [
        ("/t/t1.sh", 1, "FAILED", 2), ("/t/t2.sh", 1, "SUCCESS", 1), ("/t/t1.sh", 2, "SUCCESS", 2)]
    drawing = data["timeline"]
    assert (drawing["slots"], drawing["start"], drawing["end"]) == ([1, 2], 100.0, 110.0)
    assert drawn.span == 10.0
    assert data["state"] == "finished"


def test_a_running_task_of_a_running_run_is_drawn_up_to_now(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 2)
    with db.transaction():
        db.attempt_ended(RUN_ID, task_result(tasks[0], TaskStatus.SUCCESS, 100.0, 102.0, 1), 102.0, None)
        db.task_started(RUN_ID, tasks[1], 2, 101.0, "runner:1@host/abcdef")
    data, _drawn = reading.run_detail(db, RUN_ID, now=130.0)
    assert data["tasks"][1]["state"] == "running"
    bars = data["timeline"]["bars"]
    assert [(bar["task"], bar["slot"], bar["started_at"], bar["ended_at"]) for bar in bars] == [
        ("/t/t1.sh", 1, 100.0, 102.0), ("/t/t2.sh", 2, 101.0, 130.0)]


def test_run_detail_of_an_unknown_run_is_not_found(db: SQLiteJobStore) -> None:
    with pytest.raises(reading.NotFound) as caught:
        reading.run_detail(db, "nope")
    assert str(caught.value) == "no batch run with ID 'nope'"


# -- the query's checks ---------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "message"), [
    ({"state": "bogus"}, "unknown state 'bogus': one of pending, scheduled, waiting, processing, completed, "
                         "failed, dead, cancelled"),
    ({"state": "PENDING"}, "unknown state 'PENDING': one of pending, scheduled, waiting, processing, "
                           "completed, failed, dead, cancelled"),
    ({"before": "x"}, "before must be a whole number, not 'x'"),
    ({"before": "1.5"}, "before must be a whole number, not '1.5'"),
    ({"before": "0"}, "before must be from 1 to 9223372036854775807"),
    ({"before": "-3"}, "before must be from 1 to 9223372036854775807"),
    ({"limit": "0"}, "limit must be from 1 to 500"),
    ({"limit": "501"}, "limit must be from 1 to 500"),
    ({"limit": "ten"}, "limit must be a whole number, not 'ten'"),
    ({"queue": "no such/queue"}, "bad queue 'no such/queue': a queue name is 1 to 100 letters, digits or "
                                 "'_.:-', starting with a letter or digit"),
])
def test_job_filter_parse_refuses_bad_values_in_one_line(query: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        reading.JobFilter.parse(MultiDict(query))
    assert str(caught.value) == message


def test_job_filter_parse_reads_every_value() -> None:
    wanted = reading.JobFilter.parse(MultiDict([("state", "dead"), ("state", ""), ("state", "failed"),
                                                ("queue", "q1"), ("q", "  x y "), ("before", "17"),
                                                ("limit", "500")]))
    assert (wanted.states, wanted.queue, wanted.text, wanted.before, wanted.limit) == (
        ("dead", "failed"), "q1", "x y", 17, 500)
    assert wanted.query(9) == {"state": ["dead", "failed"], "queue": "q1", "q": "x y", "before": 9,
                               "limit": 500}
    empty = reading.JobFilter.parse(MultiDict({"limit": "", "before": "", "q": "   ", "queue": ""}))
    assert (empty.states, empty.queue, empty.text, empty.before, empty.limit) == ((), None, None, None, 50)
    assert empty.query(None) == {"state": []}
    forced = reading.JobFilter.parse(MultiDict({"state": "pending"}), states=("dead",))
    assert forced.states == ("dead",)


# -- the timeline --------------------------------------------------------------------------------
def test_timeline_build_lays_out_one_bar_per_started_attempt() -> None:
    now = 200.0
    attempts = [
        (1, "/t/a.sh", attempt(1, 1, "FAILED", 3, 100.0, 110.0, exit_code=1)),
        (2, "/t/b.sh", attempt(2, 1, "SUCCESS", 1, 105.0, 150.0)),
        (3, "/t/c.sh", attempt(3, 1, "CANCELLED", 2, None, None, exit_code=None)),  # never started
        (1, "/t/a.sh", attempt(1, 2, "RUNNING", 3, 160.0, None, exit_code=None)),  # still running
    ]
    drawn = timeline.build(attempts, now)
    assert drawn.slots == (1, 3)
    assert (drawn.start, drawn.end, drawn.span) == (100.0, 200.0, 100.0)
    assert [(bar.task, bar.attempt, bar.slot) for bar in drawn.bars] == [
        ("/t/a.sh", 1, 3), ("/t/b.sh", 1, 1), ("/t/a.sh", 2, 3)]
    running = drawn.bars[2]
    assert (running.started_at, running.ended_at, running.duration) == (160.0, 200.0, 40.0)
    scale = (1000.0 - 60.0) / 100.0
    assert [round(bar.x, 6) for bar in drawn.bars] == [60.0, round(60 + 5 * scale, 6),
                                                       round(60 + 60 * scale, 6)]
    assert [round(bar.width, 6) for bar in drawn.bars] == [round(10 * scale, 6), round(45 * scale, 6),
                                                           round(40 * scale, 6)]
    assert [bar.y for bar in drawn.bars] == [38.0, 20.0, 38.0]  # slot 1 is the first row, slot 3 the second
    assert drawn.height == 3 * 18.0 + 4
    assert drawn.bars[0].tooltip == "/t/a.sh (attempt 1): FAILED, 10.00 s, exit code 1"
    assert running.tooltip == "/t/a.sh (attempt 2): RUNNING, 40.00 s, no exit code"
    assert drawn.bars[1].as_dict() == {
        "slot": 1, "task": "/t/b.sh", "position": 2, "attempt": 1, "status": "SUCCESS", "exit_code": 0,
        "started_at": 105.0, "ended_at": 150.0, "duration": 45.0}
    assert [label for _x, label in drawn.ticks()] == [
        "0 s", "20 s", "40 s", "60 s", "80 s", "100 s"]


def test_timeline_bars_stay_inside_the_drawing() -> None:
    attempts = [
        (1, "first", attempt(1, 1, "SUCCESS", 1, T, T + 5.0)),
        (2, "long", attempt(2, 1, "SUCCESS", 2, T + 1.0, T + 999.5)),
        (3, "instant at the end", attempt(3, 1, "SUCCESS", 3, T + 999.5, T + 999.5)),
        (4, "instant at the start", attempt(4, 1, "ERROR", 4, T, T, exit_code=None)),
    ]
    drawn = timeline.build(attempts, T + 2000.0)
    assert (drawn.start, drawn.end, len(drawn.bars)) == (T, T + 999.5, 4)
    for bar in drawn.bars:
        assert 0.0 <= bar.x <= 1000.0, bar
        assert bar.width >= 1.0, bar
        assert bar.x + bar.width <= 1000.0, f"{bar.task}: x {bar.x} + width {bar.width} beyond 1000"


def test_timeline_of_attempts_at_one_instant_and_of_none() -> None:
    drawn = timeline.build([(1, "a", attempt(1, 1, "SUCCESS", None, 50.0, 50.0))], 80.0)
    assert drawn.slots == (0,)  # no slot recorded: row 0
    (bar,) = drawn.bars
    assert (bar.x, bar.width, bar.duration) == (60.0, 1.0, 0.0)
    assert drawn.ticks() == [(60.0, "0 s")]
    empty = timeline.build([(1, "a", attempt(1, 1, "CANCELLED", 1, None, None))], 80.0)
    assert (empty.slots, empty.bars, empty.start, empty.end) == ((), (), 80.0, 80.0)


@pytest.mark.parametrize(("status", "css"), [
    ("SUCCESS", "ok"), ("FAILED", "failed"), ("TIMEOUT", "timeout"), ("ERROR", "error"),
    ("CANCELLED", "cancelled"), ("LOST", "error"), ("INTERRUPTED", "cancelled"), ("RUNNING", "running"),
    ('ok" onmouseover="alert(1)', "other"), ("ok other", "other"), ("success", "other"), ("", "other"),
])
def test_a_bars_css_class_never_comes_from_the_data(status: str, css: str) -> None:
    (bar,) = timeline.build([(1, "t", attempt(1, 1, status, 1, 1.0, 2.0))], 3.0).bars
    assert bar.css == css
    assert bar.status == status  # shown as text (escaped), never as a class


# -- the add-job form ------------------------------------------------------------------------------
def test_job_from_form_converts_numbers_and_drops_empty_fields() -> None:
    form = {"id": "  job-1  ", "command": "  echo hi  ", "queue": "", "priority": "5", "delay": "1.5",
            "max_retries": "", "timeout": " 2e1 ", "unknown": "x"}
    assert actions.job_from_form(form) == {"id": "job-1", "command": "  echo hi  ", "priority": 5,
                                           "delay": 1.5, "timeout": 20.0}
    typed = actions.job_from_form({"command": "x", "priority": "-3", "max_retries": "+2", "delay": ".5"})
    assert typed == {"command": "x", "priority": -3, "max_retries": 2, "delay": 0.5}
    assert type(typed["priority"]) is int and type(typed["max_retries"]) is int
    assert type(typed["delay"]) is float


def test_job_from_form_passes_words_on_for_the_job_check_to_name() -> None:
    data = actions.job_from_form({"command": "x", "priority": "high", "max_retries": "1.5", "delay": "soon",
                                  "timeout": "inf", "queue": "  q1 "})
    assert data == {"command": "x", "priority": "high", "max_retries": "1.5", "delay": "soon",
                    "timeout": "inf", "queue": "q1"}


@pytest.mark.parametrize("form", [{}, {"command": ""}, {"command": "   \t "}, {"id": "a", "priority": "1"}])
def test_job_from_form_without_a_command_says_so(form: dict) -> None:
    with pytest.raises(UsageError) as caught:
        actions.job_from_form(form)
    assert str(caught.value) == "a job needs a command: the shell command line to run"


# -- the access rules ------------------------------------------------------------------------------
def test_access_on_loopback_needs_no_token_and_knows_its_host_names() -> None:
    access = Access.for_bind("127.0.0.1", 8765, None, False)
    assert access.token is None
    assert len(access.csrf) >= 32
    assert access.csrf != Access.for_bind("127.0.0.1", 8765, None, False).csrf
    for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765", "127.0.0.1",
                 "localhost"):
        assert access.host_allowed(host), host
    for host in ("evil.example:8765", "evil.example", "127.0.0.1:8766", "127.0.0.2:8765",
                 "localhost.evil:8765", "0.0.0.0:8765", ""):
        assert not access.host_allowed(host), host
    assert access.token_ok(None) and access.token_ok("anything")
    assert Access.for_bind("localhost", 80, None, True).read_only
    assert Access.for_bind("::1", 80, None, False).token is None
    assert Access.for_bind("::1", 80, None, False).host_allowed("[::1]:80")


def test_access_beyond_loopback_generates_a_token_and_answers_any_host() -> None:
    access = Access.for_bind("0.0.0.0", 8765, None, False)
    assert access.token is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", access.token)
    assert access.token != Access.for_bind("0.0.0.0", 8765, None, False).token
    assert access.host_allowed("dashboard.example:8765")  # the token guards it
    assert access.token_ok(access.token)
    assert not access.token_ok(None)
    assert not access.token_ok("")
    assert not access.token_ok(access.token + "x")
    assert Access.for_bind("192.168.1.5", 8765, "chosen", False).token == "chosen"


def test_token_ok_takes_any_text_without_failing() -> None:
    access = Access.for_bind("127.0.0.1", 8765, "sécret-tökén", False)
    assert access.token_ok("sécret-tökén")
    for given in ("secret-token", "sécret-tökén ", "日本語", "\udcff", "\x00", "a" * 10_000):
        assert not access.token_ok(given), given


# -- the app's rules (Flask's test client) ----------------------------------------------------------
class App:
    def __init__(self, tmp_path: Path, token: Optional[str] = None, read_only: bool = False,
                 populate: bool = True) -> None:
        self.location = str(tmp_path / "state.db")
        if populate:
            store = open_store(Path(self.location))
            jobs = [shell_job("one", "echo one"), shell_job("two", "echo two", max_retries=1)]
            store.enqueue_jobs(jobs, time.time() - 1)
            store.close()
        self.access = Access.for_bind("127.0.0.1", 8765, token, read_only)
        self.stores = Stores(self.location)
        dashboard = Dashboard(stores=self.stores, access=self.access, feed=ChangeFeed(self.location))
        self.app = create_app(dashboard)
        self.client = self.app.test_client()

    def jobs(self) -> List[str]:
        store = open_store(Path(self.location))
        try:
            return sorted(job.key for job in store.find_queue_jobs(time.time(), limit=1000))
        finally:
            store.close()

    def close(self) -> None:
        self.stores.close()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    made: List[App] = []

    def make(**kwargs: Any) -> App:
        made.append(App(tmp_path / str(len(made)), **kwargs))
        return made[-1]

    yield make
    for app in made:
        app.close()


def one_line_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body is not None and body["status"] == status, body
    assert "\n" not in body["error"]
    return body["error"]


def test_pages_and_api_answer_on_loopback(make_app: Any) -> None:
    app = make_app()
    for path in ("/", "/jobs", "/jobs/one", "/dead", "/runs", "/api/status", "/api/jobs", "/api/session",
                 "/static/dashboard.css", "/static/dashboard.js"):
        response = app.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert response.headers["Content-Security-Policy"] == guard.HEADERS["Content-Security-Policy"], path
    assert app.client.get("/api/jobs").get_json()["total"] == 2
    assert app.client.get("/api/session").get_json()["csrf_token"] == app.access.csrf


def test_a_token_is_needed_when_there_is_one(make_app: Any) -> None:
    app = make_app(token="s3cret")
    for path in ("/", "/api/status", "/api/session", "/jobs/one", "/static/dashboard.js"):
        message = one_line_error(app.client.get(path), 401)
        assert message == ("this dashboard needs its token: open the URL it printed, or send "
                           "'Authorization: Bearer TOKEN'")
    unauthorised = app.client.get("/")
    assert app.access.csrf not in unauthorised.get_data(as_text=True)
    assert unauthorised.headers["Content-Security-Policy"] == guard.HEADERS["Content-Security-Policy"]
    one_line_error(app.client.get("/api/status", headers={"Authorization": "Bearer wrong"}), 401)
    one_line_error(app.client.get("/api/status?token=wrong"), 401)
    assert app.client.get("/api/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert app.client.get("/api/status?token=s3cret").status_code == 200  # the API takes it as it is
    redirected = app.client.get("/jobs?state=dead&token=s3cret&q=x")
    assert redirected.status_code == 303
    assert redirected.headers["Location"] == "/jobs?state=dead&q=x"
    cookie = redirected.headers["Set-Cookie"]
    assert app.access.cookie == "parallelr_dashboard_token_8765"  # per port: a host's cookies go to all ports
    assert cookie.startswith("parallelr_dashboard_token_8765=s3cret;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert app.client.get("/jobs?state=dead").status_code == 200  # the client keeps the cookie now
    app.client.set_cookie(app.access.cookie, "wrong")
    one_line_error(app.client.get("/"), 401)
    fresh = app.client.get("/?token=s3cret")  # the printed URL wins over an old cookie
    assert (fresh.status_code, fresh.headers["Location"]) == (303, "/")
    assert app.client.get("/").status_code == 200
    app.client.set_cookie(guard.COOKIE, "s3cret")  # another port's cookie name
    app.client.delete_cookie(app.access.cookie)
    one_line_error(app.client.get("/"), 401)


def test_the_token_in_the_url_leads_back_to_the_same_page(make_app: Any) -> None:
    app = make_app(token="s3cret")
    store = open_store(Path(app.location))
    store.enqueue_jobs([shell_job("x?y#z", "true")], time.time())
    store.close()
    quoted = "/jobs/" + urllib.parse.quote("x?y#z", safe="")
    redirected = app.client.get(f"{quoted}?token=s3cret&q=1")
    assert redirected.status_code == 303
    location = urllib.parse.urlsplit(redirected.headers["Location"])
    assert (urllib.parse.unquote(location.path), location.query) == ("/jobs/x?y#z", "q=1")
    assert app.client.get(redirected.headers["Location"]).status_code == 200


def test_a_post_needs_the_csrf_token(make_app: Any) -> None:
    app = make_app()
    job = json.dumps({"id": "new", "command": "echo new"})
    refused = app.client.post("/api/jobs", data=job, content_type="application/json")
    assert one_line_error(refused, 403) == ("the request lacks the CSRF token of this page: reload it and "
                                            "try again")
    wrong = app.client.post("/api/jobs", data=job, content_type="application/json",
                            headers={"X-CSRF-Token": app.access.csrf[:-1]})
    one_line_error(wrong, 403)
    form = app.client.post("/actions/enqueue", data={"command": "echo form", "id": "form"})
    assert form.status_code == 403
    assert "the request lacks the CSRF token" in form.get_data(as_text=True)
    assert app.jobs() == ["one", "two"]
    accepted = app.client.post("/api/jobs", data=job, content_type="application/json",
                               headers={"X-CSRF-Token": app.access.csrf})
    assert (accepted.status_code, accepted.get_json()) == (201, {"ids": ["new"]})
    posted = app.client.post("/actions/enqueue",
                             data={"command": "echo form", "id": "form", "csrf_token": app.access.csrf})
    assert (posted.status_code, posted.headers["Location"]) == (303, "/job?id=form")
    assert app.jobs() == ["form", "new", "one", "two"]


CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


def test_every_form_of_a_page_carries_the_csrf_token(make_app: Any) -> None:
    """A browser posts the form as the page gave it: its hidden field must hold this server's token."""
    app = make_app()
    store = open_store(Path(app.location))
    run_job(store, "two", TaskStatus.FAILED, time.time() - 1, time.time())  # dead: it has a Retry button
    store.close()
    pages = {"/": 1, "/jobs/one": 1, "/jobs/two": 1, "/dead": 2}  # add-job; cancel; retry; retry all + one
    for path, forms in pages.items():
        page = app.client.get(path).get_data(as_text=True)
        assert page.count('method="post"') == forms, path
        assert CSRF_FIELD.findall(page) == [app.access.csrf] * forms, path
    page = app.client.get("/").get_data(as_text=True)
    (token,) = CSRF_FIELD.findall(page)
    posted = app.client.post("/actions/enqueue", data={"csrf_token": token, "command": "echo from the form",
                                                        "id": "typed"})
    assert (posted.status_code, posted.headers.get("Location")) == (303, "/job?id=typed")
    assert app.jobs() == ["one", "two", "typed"]


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
                                    "//evil.example", "/\\evil.example", "https://evil.example/",
                                    " //evil.example", "/ /x"])
def test_the_retry_forms_way_back_stays_on_this_site(make_app: Any, target: str) -> None:
    app = make_app()
    store = open_store(Path(app.location))
    run_job(store, "two", TaskStatus.FAILED, time.time() + 1, time.time() + 2)
    store.close()
    response = app.client.post("/actions/retry",
                               data={"id": "two", "next": target, "csrf_token": app.access.csrf})
    assert response.status_code == 303, response.get_data(as_text=True)[-300:]
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location, location
    assert app.client.get("/api/jobs/two").get_json()["state"] == "pending"


def test_a_bearer_token_needs_no_csrf_token_but_a_cookie_does(make_app: Any) -> None:
    app = make_app(token="s3cret")
    job = json.dumps({"id": "bearer", "command": "true"})
    sent = app.client.post("/api/jobs", data=job, content_type="application/json",
                           headers={"Authorization": "Bearer s3cret"})
    assert sent.status_code == 201
    app.client.set_cookie(app.access.cookie, "s3cret")
    by_cookie = app.client.post("/api/jobs", data=json.dumps({"id": "cookie", "command": "true"}),
                                content_type="application/json")
    one_line_error(by_cookie, 403)
    assert app.jobs() == ["bearer", "one", "two"]


def test_read_only_refuses_every_post(make_app: Any) -> None:
    app = make_app(read_only=True)
    csrf = {"X-CSRF-Token": app.access.csrf}
    message = "this dashboard is read-only (--read-only): it changes nothing"
    for path, body in (("/api/jobs", {"command": "true"}), ("/api/retry", {"all": True}),
                       ("/api/cancel", {"id": "one"})):
        assert one_line_error(app.client.post(path, json=body, headers=csrf), 403) == message, path
    for path, form in (("/actions/enqueue", {"command": "true"}), ("/actions/retry", {"all": "1"}),
                       ("/actions/cancel", {"id": "one"})):
        response = app.client.post(path, data={**form, "csrf_token": app.access.csrf})
        assert response.status_code == 403, path
        assert message in response.get_data(as_text=True)
    assert app.jobs() == ["one", "two"]
    assert app.client.get("/api/jobs/one").get_json()["state"] == "pending"
    page = app.client.get("/").get_data(as_text=True)
    assert 'method="post"' not in page and 'id="add-job"' not in page
    assert app.client.get("/api/session").get_json()["read_only"] is True


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1.evil.example",
                                  "localhost:9999", "127.0.0.2"])
def test_another_host_name_is_refused_before_anything(make_app: Any, host: str) -> None:
    app = make_app()
    for path in ("/", "/api/session", "/api/status"):
        response = app.client.get(path, headers={"Host": host})
        assert one_line_error(response, 400) == (f"this dashboard answers to 127.0.0.1, not {host!r}")
        assert app.access.csrf not in response.get_data(as_text=True)
        assert response.headers["Content-Security-Policy"] == guard.HEADERS["Content-Security-Policy"]
    posted = app.client.post("/api/jobs", json={"command": "true"},
                             headers={"Host": host, "X-CSRF-Token": app.access.csrf})
    one_line_error(posted, 400)
    assert app.jobs() == ["one", "two"]
    assert app.client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert app.client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_a_body_over_64_kib_is_refused(make_app: Any) -> None:
    app = make_app()
    csrf = {"X-CSRF-Token": app.access.csrf}
    big = json.dumps({"id": "big", "command": "echo " + "x" * (64 * 1024)})
    response = app.client.post("/api/jobs", data=big, content_type="application/json", headers=csrf)
    assert one_line_error(response, 413).startswith("Request Entity Too Large")
    form = app.client.post("/actions/enqueue",
                           data={"id": "big", "command": "echo " + "x" * (64 * 1024),
                                 "csrf_token": app.access.csrf})
    assert form.status_code == 413
    assert form.headers["Content-Security-Policy"] == guard.HEADERS["Content-Security-Policy"]
    assert app.jobs() == ["one", "two"]
    just_under = json.dumps({"id": "fits", "command": "echo " + "x" * (60 * 1024)})
    assert app.client.post("/api/jobs", data=just_under, content_type="application/json",
                           headers=csrf).status_code == 201


def test_every_response_carries_the_security_headers(make_app: Any) -> None:
    app = make_app()
    csp = guard.HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    responses = [
        app.client.get("/"), app.client.get("/jobs/nope"), app.client.get("/api/jobs/nope"),
        app.client.get("/api/jobs?state=bogus"), app.client.get("/no/such/page"),
        app.client.get("/actions/retry"),
        app.client.post("/api/jobs", json={}), app.client.get("/static/dashboard.css"),
        app.client.get("/", headers={"X-Live": "1"}),
    ]
    assert [response.status_code for response in responses] == [200, 404, 404, 400, 404, 405, 403, 200, 200]
    for response in responses:
        for name, value in guard.HEADERS.items():
            if name == "Cache-Control" and response.request.path.startswith("/static/"):
                assert response.headers[name] in ("no-store", "no-cache")  # Flask's own for files
                continue
            assert response.headers.get(name) == value, (response.request.path, name)


def test_errors_are_one_line_json_under_api_and_a_page_elsewhere(make_app: Any, tmp_path: Path) -> None:
    app = make_app()
    assert one_line_error(app.client.get("/api/jobs/nope"), 404) == "no job with ID 'nope'"
    assert one_line_error(app.client.get("/api/runs/nope"), 404) == "no batch run with ID 'nope'"
    assert one_line_error(app.client.get("/api/jobs?limit=0"), 400) == "limit must be from 1 to 500"
    assert one_line_error(app.client.get("/api/runs/x?after=-1"), 400) \
        == "after must be from 0 to 9223372036854775807"
    page = app.client.get("/jobs?state=bogus")
    assert page.status_code == 400 and page.mimetype == "text/html"
    shown = page.get_data(as_text=True)
    assert '<p class="error" id="error-message">unknown state &#39;bogus&#39;: one of pending,' in shown
    missing = make_app(populate=False)
    message = one_line_error(missing.client.get("/api/status"), 503)
    assert message == (f"there is no store at {missing.location} yet: it is created when the first job is "
                       "enqueued or the first batch run is recorded")
    overview = missing.client.get("/")  # zeros and a note: its add-job form creates the store
    assert overview.status_code == 200
    assert f'<p class="notice" id="store-notice">{message}</p>' in overview.get_data(as_text=True)
    for path in ("/jobs", "/dead", "/runs", "/jobs/one"):
        html = missing.client.get(path)
        assert html.status_code == 503, path
        shown = html.get_data(as_text=True)
        assert "The store cannot be read" in shown and f'id="error-message">{message}</p>' in shown, path
    for path in ("/api/jobs", "/api/dead", "/api/runs", "/api/jobs/one", "/api/runs/x"):
        assert one_line_error(missing.client.get(path), 503) == message, path
    assert not Path(missing.location).exists()
    assert not Path(missing.location).parent.exists()
    newer = make_app()
    connection = sqlite3.connect(newer.location)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    assert one_line_error(newer.client.get("/api/jobs"), 503) == (
        f"cannot use the job store {newer.location}: schema version 99 is newer than this parallelr "
        f"understands ({SCHEMA_VERSION})")
    assert newer.client.get("/").status_code == 503


LINKED_IDS = ["plain", "with space", "é ü", "100%", "x?y=1#z", "a//b", "trail/", "../dead", "a/../b", "./x"]


def test_every_job_link_leads_to_its_job(make_app: Any) -> None:
    """A link is followed as a browser does (dot segments resolved): it must show that job."""
    app = make_app()
    store = open_store(Path(app.location))
    store.enqueue_jobs([shell_job(key, "true") for key in LINKED_IDS], time.time())
    store.close()
    html = app.client.get("/jobs").get_data(as_text=True)
    found = re.findall(r'<a href="([^"]*)" class="job-id">([^<]*)</a>', html)
    links = {text: href for href, text in found}
    wrong = []
    for key in LINKED_IDS:
        href = links[key.replace("&", "&amp;")].replace("&amp;", "&")
        followed = urllib.parse.urlsplit(urllib.parse.urljoin("http://localhost/jobs", href))
        response = app.client.get(followed.path + (f"?{followed.query}" if followed.query else ""))
        shown = re.search(r'id="job-key">([^<]*)<', response.get_data(as_text=True))
        if response.status_code != 200 or shown is None or shown.group(1) != key:
            wrong.append((key, href, followed.path, response.status_code))
    assert wrong == []


def test_a_cursor_beyond_any_row_is_a_one_line_400(make_app: Any, tmp_path: Path) -> None:
    app = make_app()
    store = open_store(Path(app.location))
    new_run(store, tmp_path, 2)
    store.close()
    huge = "99999999999999999999"  # beyond SQLite's integers
    for path, name in ((f"/api/jobs?before={huge}", "before"), (f"/api/dead?before={huge}", "before"),
                       (f"/api/runs/{RUN_ID}?after={huge}", "after")):
        message = one_line_error(app.client.get(path), 400)
        assert message.startswith(f"{name} must be "), (path, message)
    page = app.client.get(f"/jobs?before={huge}")
    assert page.status_code == 400


def test_the_live_fragment_is_only_the_live_block(make_app: Any) -> None:
    app = make_app()
    for path, inside in (("/", "<h1>Queue</h1>"), ("/jobs", 'id="jobs-total">2<'),
                         ("/jobs/one", 'id="job-key">one<'), ("/dead", "<h1>Dead letters</h1>"),
                         ("/runs", "<h1>Batch runs</h1>")):
        whole = app.client.get(path).get_data(as_text=True)
        live = app.client.get(path, headers={"X-Live": "1"})
        fragment = live.get_data(as_text=True)
        assert live.status_code == 200, path
        assert inside in fragment and inside in whole, path
        for outside in ("<!doctype html>", "<header>", "<footer>", '<meta name="csrf-token"', 'id="live"'):
            assert outside in whole and outside not in fragment, (path, outside)
        opening = re.search(r'<div id="live"[^>]*>', whole)
        assert opening is not None, path
        assert whole[opening.end():opening.end() + len(fragment)] == fragment, path
        assert whole[opening.end() + len(fragment):].startswith("</div>"), path
        assert live.headers.get("X-Live-Block") == "1", path
        assert app.client.get(path).headers.get("X-Live-Block") is None, path
    overview = app.client.get("/", headers={"X-Live": "1"}).get_data(as_text=True)
    assert 'id="add-job"' not in overview  # outside the live block: a refresh keeps what was typed
    assert 'id="job-filters"' not in app.client.get("/jobs", headers={"X-Live": "1"}).get_data(as_text=True)


def test_the_api_reads_what_the_store_holds(make_app: Any) -> None:
    app = make_app()
    status = app.client.get("/api/status").get_json()
    assert list(status["counts"]) == list(STATES)
    assert (status["total"], status["queues"]) == (2, ["default"])
    jobs = app.client.get("/api/jobs?limit=1").get_json()
    assert ([job["id"] for job in jobs["jobs"]], jobs["total"]) == (["two"], 2)
    rest = app.client.get(f"/api/jobs?limit=1&before={jobs['next_before']}").get_json()
    assert ([job["id"] for job in rest["jobs"]], rest["next_before"]) == (["one"], None)
    assert app.client.get("/api/dead").get_json()["total"] == 0
    assert app.client.get("/api/dead?state=pending").get_json()["filter"]["state"] == ["dead"]
    assert app.client.get("/api/runs").get_json() == {"runs": []}

