"""SQLiteJobStore against a real SQLite file in tmp_path: opening, schema and migrations, file
mode, and the state a batch run's events leave in the tables. Its helpers are shared by the other
test_jobs_* modules and test_journal_store.py."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

from parallelr.config import Settings
from parallelr.jobs import sql_store
from parallelr.jobs import sqlite as sqlite_module
from parallelr.jobs.errors import IllegalTransition, StoreUnavailable
from parallelr.jobs.leases import Lease
from parallelr.jobs.liveness import is_alive, own_create_time, this_host
from parallelr.jobs.sqlite import SCHEMA_VERSION, SQLiteJobStore
from parallelr.jobs.states import JobState
from parallelr.jobs.store import JobStore
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus

RUN_ID = "20261123-104148-272c69"
OWNER = "runner:1@host/abcdef"


def run_info(tmp_path: Path, run_id: str = RUN_ID, resumed: bool = False, **options: Any) -> RunInfo:
    logs = tmp_path / "logs"
    paths = RunPaths(
        home=str(tmp_path), log_dir=str(logs), workspace=str(tmp_path / "ws"), pid_file=str(tmp_path / "p"),
        main_log=str(logs / "main.log"), summary_csv=str(logs / "s.csv"), output_log=str(logs / "o.txt"),
    )
    return RunInfo(
        app_name="parallelr", pid=os.getpid(), started_at=time.time(), timestamp="23Nov26_104148",
        settings=Settings(), paths=paths, command_template="bash @TASK@", executor="thread", workers=2,
        task_count=None, options={"Command": "bash @TASK@", "max": 2, **options}, run_id=run_id,
        resumed=resumed,
    )


def make_tasks(count: int) -> List[Task]:
    return [
        Task(argv=["bash", f"/t/t{n}.sh"], source=f"/t/t{n}.sh", env={"HOSTNAME": f"h{n}"},
             arguments=(f"h{n}",), line_number=n, index=n)
        for n in range(1, count + 1)
    ]


def result(task: Task, status: TaskStatus, attempt: Optional[int] = None, ran: bool = True,
           error: str = "") -> TaskResult:
    return TaskResult(
        task=task, status=status, worker_id=1 if ran else 0, pid=4242 if ran else None,
        exit_code=(0 if status is TaskStatus.SUCCESS else 1) if ran else None,
        start_time=100.0 if ran else None, end_time=101.5 if ran else None, duration=1.5 if ran else 0.0,
        memory_mb=3.0, cpu_percent=12.5, error_message=error, attempt=attempt or task.attempt,
    )


def open_store(path: Path) -> SQLiteJobStore:
    store = SQLiteJobStore.open(path)
    assert store is not None
    return store


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    store = open_store(tmp_path / "home" / "state.db")
    yield store
    store.close()


def new_run(db: SQLiteJobStore, tmp_path: Path, count: int, run_id: str = RUN_ID,
            lease: Optional[Lease] = None) -> List[Task]:
    tasks = make_tasks(count)
    with db.transaction():
        db.insert_run(run_info(tmp_path, run_id), own_create_time(), this_host(),
                      lease or Lease.starting(OWNER, time.time()))
        assert db.insert_jobs(run_id, tasks, max_attempts=3, now=50.0) == count
    return tasks


def job_row(db: SQLiteJobStore, position: int, columns: str, run_id: str = RUN_ID) -> Tuple[Any, ...]:
    return db.connection.execute(
        f"SELECT {columns} FROM jobs WHERE run_id = ? AND position = ?", (run_id, position)
    ).fetchone()


# -- opening, schema, file mode -----------------------------------------------------------------
def test_open_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.db"
    store = open_store(path)
    assert isinstance(store, JobStore)  # it implements the protocol
    assert store.location == str(path)
    connection = store.connection
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs", "jobs", "attempts", "settings", "job_deps", "workers"}
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
               if not row[0].startswith("sqlite_autoindex")}
    assert indexes == {"runs_started", "jobs_due", "jobs_run_state", "jobs_key", "jobs_claim",
                       "jobs_queue_due", "job_deps_on", "jobs_queue_state", "jobs_state_row"}
    run_columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
    assert run_columns[-5:] == ["lease_owner", "lease_expires_at", "planned", "plan_digest", "source_stamp"]
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()
    again = open_store(path)  # opening an up-to-date database changes nothing
    assert again.connection.execute("PRAGMA user_version").fetchone()[0] == 5
    again.close()


def test_a_new_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask would make a plain new file 0644
    try:
        path = tmp_path / "state.db"
        store = open_store(path)
        new_run(store, tmp_path, 1)  # a write: the -wal and -shm files exist now
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("state.db*")}
        store.close()
    finally:
        os.umask(old_umask)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_store(path).close()
    path.chmod(0o640)  # the user chose to share it with the group
    open_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_open_without_create_does_not_create(tmp_path: Path) -> None:
    path = tmp_path / "none" / "state.db"
    assert SQLiteJobStore.open(path, create=False) is None
    assert not path.parent.exists()


def test_a_corrupt_file_is_refused_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreUnavailable) as caught:
        SQLiteJobStore.open(path)
    assert (caught.value.location, caught.value.reason) == (str(path), "file is not a database")


def test_an_unusable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable) as caught:
        SQLiteJobStore.open(blocker / "state.db")
    assert caught.value.reason == "not a directory"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreUnavailable) as caught:
        SQLiteJobStore.open(path)
    assert caught.value.reason == "schema version 6 is newer than this parallelr understands (5)"


def test_a_locked_database_fails_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = SQLiteJobStore.open(path, busy_timeout=0.1)
        assert store is not None
        with pytest.raises(StoreUnavailable) as caught, store.transaction():
            pass
        assert caught.value.reason == "database is locked"
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_two_threads_opening_one_new_database_at_once_both_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL takes a lock SQLite does not wait for: without the retry about
    # one pair in twelve failed here at once with "database is locked" (two batches of one
    # process, or two runners started together on a fresh HOME).
    errors: List[BaseException] = []

    def open_and_close(path: Path) -> None:
        try:
            SQLiteJobStore.open(path).close()
        except BaseException as exc:
            errors.append(exc)

    for attempt in range(60):
        path = tmp_path / f"state-{attempt}.db"
        threads = [threading.Thread(target=open_and_close, args=(path,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == [], f"attempt {attempt}"
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    """A journal written before leases: its runs read back without a lease and are judged by PID."""
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_module.MIGRATIONS[0]:
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO runs (id, app_name, pid, create_time, host, started_at, state)"
        " VALUES (?, 'parallelr', ?, ?, ?, 1.0, 'running')",
        (RUN_ID, os.getpid(), own_create_time(), this_host()),
    )
    connection.close()
    store = open_store(path)
    try:
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == 5
        run = store.get_run(RUN_ID)
        assert run is not None and (run.lease_owner, run.lease_expires_at) == (None, None)
        assert (run.planned, run.unrecorded) == (None, 0)  # stored up front, as every run was then
        assert is_alive(run)  # no lease: this very process is its runner
    finally:
        store.close()


# -- a batch run's events -----------------------------------------------------------------------
def test_a_new_run_stores_every_task_as_pending(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 3, lease=Lease(OWNER, 1234.5))
    run = db.get_run(RUN_ID)
    assert run is not None
    assert (run.state, run.task_count, run.command, run.options["max"]) == ("running", 3, "bash @TASK@", 2)
    assert (run.pid, run.lease_owner, run.lease_expires_at) == (os.getpid(), OWNER, 1234.5)
    jobs = list(db.iter_jobs(RUN_ID))
    assert [(job.id, job.position, job.state, job.attempts, job.max_attempts) for job in jobs] == [
        (1, 1, "pending", 0, 3), (2, 2, "pending", 0, 3), (3, 3, "pending", 0, 3)
    ]
    assert jobs[0].state is JobState.PENDING
    assert jobs[1].to_task() == Task(
        argv=tasks[1].argv, source=tasks[1].source, env=tasks[1].env, arguments=tasks[1].arguments,
        line_number=2, index=2, attempt=1,
    )
    assert jobs[1].as_dict()["state"] == "pending" and type(jobs[1].as_dict()["state"]) is str


def test_task_states_through_start_retry_and_finish(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 5)
    with db.transaction():
        db.task_started(RUN_ID, tasks[0], 1, now=200.0, owner="pid:7")
    assert job_row(db, 1, "state, attempts, worker_id, started_at, lease_owner") == (
        "running", 1, 1, 200.0, "pid:7"
    )
    with db.transaction():
        db.attempt_ended(RUN_ID, result(tasks[0], TaskStatus.FAILED, error="Exit code 1"), 201.0, 0.5)
        db.attempt_ended(RUN_ID, result(tasks[1], TaskStatus.TIMEOUT, error="Timeout"), 201.0, 2.0)
        db.attempt_ended(RUN_ID, result(tasks[2], TaskStatus.ERROR, 3, error="not found"), 202.0, None)
        db.attempt_ended(RUN_ID, result(tasks[3], TaskStatus.SUCCESS, attempt=2), 203.0, None)
        never_ran = result(tasks[4], TaskStatus.CANCELLED, ran=False, error="Not started")
        db.attempt_ended(RUN_ID, never_ran, 204.0, None)
    columns = "state, attempts, next_attempt_at, lease_owner, exit_code, last_status, last_error"
    assert job_row(db, 1, columns) == ("failed", 1, 201.5, None, 1, "FAILED", "Exit code 1")
    assert job_row(db, 2, columns) == ("timeout", 1, 203.0, None, 1, "TIMEOUT", "Timeout")
    assert job_row(db, 3, columns) == ("dead", 3, 202.0, None, 1, "ERROR", "not found")
    assert job_row(db, 4, columns) == ("succeeded", 2, 203.0, None, 0, "SUCCESS", None)
    assert job_row(db, 5, columns) == ("cancelled", 0, 204.0, None, None, "CANCELLED", "Not started")
    assert job_row(db, 4, "pid, duration, memory_mb, cpu_percent") == (4242, 1.5, 3.0, 12.5)
    history = [(a.job_id, a.attempt, a.status, a.exit_code) for n in range(1, 6) for a in db.attempts_of(n)]
    assert history == [(1, 1, "FAILED", 1), (2, 1, "TIMEOUT", 1), (3, 3, "ERROR", 1), (4, 2, "SUCCESS", 0)]


def test_a_batch_skips_superseded_starts_and_keeps_order(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 3)
    again = Task(argv=tasks[0].argv, source=tasks[0].source, index=1, attempt=2)
    records = [
        ("task_started", (RUN_ID, tasks[0], 1, 10.0, "pid:7")),
        ("task_started", (RUN_ID, tasks[1], 2, 10.0, "pid:7")),
        ("attempt_ended", (RUN_ID, result(tasks[0], TaskStatus.FAILED, error="Exit code 1"), 11.0, 0.5)),
        ("task_started", (RUN_ID, again, 1, 11.5, "pid:7")),  # attempt 2 still runs at the end
        ("attempt_ended", (RUN_ID, result(tasks[1], TaskStatus.SUCCESS), 12.0, None)),
        ("task_started", (RUN_ID, tasks[2], 2, 12.0, "pid:7")),
    ]
    statements: List[str] = []
    db.connection.set_trace_callback(statements.append)
    with db.transaction():
        db.apply_batch(records)
    db.connection.set_trace_callback(None)
    columns = "state, attempts, started_at, lease_owner"
    assert job_row(db, 1, columns) == ("running", 2, 11.5, "pid:7")
    assert job_row(db, 2, columns) == ("succeeded", 1, 100.0, None)
    assert job_row(db, 3, columns) == ("running", 1, 12.0, "pid:7")
    starts = [sql for sql in statements if sql.startswith("UPDATE jobs SET state = 'running', attempts = ")]
    assert len(starts) == 2  # task 2's start was superseded by its end in the same batch
    reads = [sql for sql in statements if sql.startswith("SELECT position, state FROM jobs")]
    assert len(reads) == 1  # the states the transitions are checked against: one query per batch
    assert [(a.job_id, a.attempt, a.status) for n in (1, 2) for a in db.attempts_of(n)] == [
        (1, 1, "FAILED"), (2, 1, "SUCCESS")
    ]


def test_an_illegal_transition_writes_nothing_of_the_batch(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 2)
    with db.transaction():
        db.attempt_ended(RUN_ID, result(tasks[0], TaskStatus.SUCCESS), 10.0, None)
    with pytest.raises(IllegalTransition) as caught, db.transaction():
        db.apply_batch([
            ("task_started", (RUN_ID, tasks[1], 1, 11.0, "pid:7")),
            ("task_started", (RUN_ID, tasks[0], 1, 11.0, "pid:7")),  # succeeded is final
        ])
    assert (caught.value.job, caught.value.from_state, caught.value.to_state) == (
        f"task 1 of run {RUN_ID}", "succeeded", "running"
    )
    assert job_row(db, 1, "state") == ("succeeded",)
    assert job_row(db, 2, "state") == ("pending",)  # rolled back with the rest


def test_an_end_whose_start_was_lost_implies_it(db: SQLiteJobStore, tmp_path: Path) -> None:
    """A batch that failed (a lock held too long) loses a start; the end still counts."""
    tasks = new_run(db, tmp_path, 1)
    with db.transaction():
        db.attempt_ended(RUN_ID, result(tasks[0], TaskStatus.SUCCESS), 10.0, None)
    assert job_row(db, 1, "state, attempts") == ("succeeded", 1)


@pytest.mark.parametrize(
    ("summary", "state"),
    [
        (RunSummary(total=2, succeeded=2, failed=0, timed_out=0, errored=0, cancelled=0), "finished"),
        (RunSummary(total=2, succeeded=1, failed=0, timed_out=0, errored=0, cancelled=1,
                    interrupted_by="SIGINT", exit_code=130), "interrupted"),
        (RunSummary(total=2, succeeded=0, failed=1, timed_out=0, errored=0, cancelled=1,
                    stop_reason="5 consecutive failures", exit_code=1), "stopped"),
    ],
)
def test_finish_run_states(db: SQLiteJobStore, tmp_path: Path, summary: RunSummary, state: str) -> None:
    new_run(db, tmp_path, 2)
    with db.transaction():
        db.finish_run(RUN_ID, summary, 300.0)
    row = db.connection.execute(
        "SELECT state, ended_at, exit_code, total, succeeded, failed, cancelled, lease_owner,"
        " lease_expires_at FROM runs WHERE id = ?",
        (RUN_ID,),
    ).fetchone()
    assert row == (state, 300.0, summary.exit_code, 2, summary.succeeded, summary.failed, summary.cancelled,
                   None, None)  # the lease is released


def test_undecodable_text_round_trips(db: SQLiteJobStore, tmp_path: Path) -> None:
    odd = "/t/caf\udce9.sh"  # a file name with a Latin-1 byte, as os.fsdecode gives it
    task = Task(argv=["bash", odd], source=odd, arguments=("x\udcff",), index=1)
    with db.transaction():
        db.insert_run(run_info(tmp_path), None, "host", Lease(OWNER, 1.0))
        db.insert_jobs(RUN_ID, [task], 1, 1.0)
        db.attempt_ended(RUN_ID, result(task, TaskStatus.FAILED, error=f"cannot run {odd}"), 2.0, None)
    (job,) = list(db.iter_jobs(RUN_ID))
    assert (job.source, job.argv, job.arguments, job.last_error) == (odd, ("bash", odd), ("x\udcff",),
                                                                      f"cannot run {odd}")


def test_iter_jobs_pages_through_a_large_run(db: SQLiteJobStore, tmp_path: Path) -> None:
    count = sql_store.PAGE_SIZE * 2 + 3
    new_run(db, tmp_path, count)
    with db.transaction():
        for position in range(1, count + 1, 2):
            db.connection.execute("UPDATE jobs SET state = 'succeeded' WHERE position = ?", (position,))
    assert [job.position for job in db.iter_jobs(RUN_ID)] == list(range(1, count + 1))
    unfinished = db.iter_jobs(RUN_ID, exclude_succeeded=True)
    assert [job.position for job in unfinished] == list(range(2, count + 1, 2))
    assert [job.position for job in db.iter_jobs(RUN_ID, states=["succeeded"])][:3] == [1, 3, 5]
    assert [job.position for job in db.iter_jobs(RUN_ID, states=[JobState.SUCCEEDED])][:2] == [1, 3]


def mixed_run(db: SQLiteJobStore, tmp_path: Path) -> List[Task]:
    """Seven tasks: succeeded, dead (FAILED), dead (TIMEOUT), cancelled, running (runner died),
    pending (never started), succeeded."""
    tasks = new_run(db, tmp_path, 7)
    with db.transaction():
        db.attempt_ended(RUN_ID, result(tasks[0], TaskStatus.SUCCESS), 1.0, None)
        db.attempt_ended(RUN_ID, result(tasks[1], TaskStatus.FAILED, attempt=2), 1.0, None)
        db.attempt_ended(RUN_ID, result(tasks[2], TaskStatus.TIMEOUT), 1.0, None)
        db.attempt_ended(RUN_ID, result(tasks[3], TaskStatus.CANCELLED, ran=False), 1.0, None)
        db.task_started(RUN_ID, tasks[4], 2, 1.0, "pid:1")
        db.attempt_ended(RUN_ID, result(tasks[6], TaskStatus.SUCCESS), 1.0, None)
    return tasks


def test_requeue_records_the_attempt_a_dead_runner_left_open(db: SQLiteJobStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    with db.transaction():
        assert db.requeue(RUN_ID, None, 500.0, "runner died") == 5
    states = [(job.position, job.state) for job in db.iter_jobs(RUN_ID)]
    assert states == [(1, "succeeded"), (2, "pending"), (3, "pending"), (4, "pending"), (5, "pending"),
                      (6, "pending"), (7, "succeeded")]
    assert [(a.attempt, a.status, a.error) for a in db.attempts_of(5)] == [(1, "CANCELLED", "runner died")]
    assert [a.attempt for a in db.attempts_of(2)] == [2]  # finished attempts get no extra row
    with db.transaction():
        db.task_started(RUN_ID, make_tasks(7)[1], 1, 501.0, "pid:1")
        db.attempt_ended(RUN_ID, result(make_tasks(7)[1], TaskStatus.FAILED, attempt=3), 501.0, None)
        assert db.requeue(RUN_ID, [2, 1], 502.0, "x") == 1  # job 1 succeeded: never requeued
    assert job_row(db, 2, "state, next_attempt_at") == ("pending", 502.0)
    assert job_row(db, 1, "state") == ("succeeded",)


def test_a_corrupt_page_found_by_a_read_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(path)
    new_run(store, tmp_path, 300)
    page_size = store.connection.execute("PRAGMA page_size").fetchone()[0]
    schema_pages = {row[0] for row in store.connection.execute(
        "SELECT pageno FROM dbstat WHERE name IN ('sqlite_schema', 'sqlite_master')"
    )}
    store.close()
    pages = path.stat().st_size // page_size
    with open(path, "r+b") as handle:  # the schema's pages stay: the file opens, the tables are garbage
        for page in range(1, pages + 1):
            if page not in schema_pages:
                handle.seek((page - 1) * page_size)
                handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    store = open_store(path)
    try:
        for read in (lambda: store.get_run(RUN_ID), store.list_runs, lambda: list(store.iter_jobs(RUN_ID)),
                     lambda: list(store.dead_jobs()), lambda: store.job_counts(RUN_ID)):
            with pytest.raises(StoreUnavailable) as caught:
                read()
            assert caught.value.reason == "database disk image is malformed"
            assert not caught.value.transient  # trying again would not help
    finally:
        store.close()
