"""The journal's store, writer and resume planning, against a real SQLite file in tmp_path."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import psutil
import pytest

from parallelr.config import Settings
from parallelr.errors import UsageError
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.journal import processes
from parallelr.plugins.journal import store as store_module
from parallelr.plugins.journal.records import RunRecord
from parallelr.plugins.journal.resume import (
    Selection,
    build_plan,
    check_not_running,
    parse_only,
    restore_options,
)
from parallelr.plugins.journal.schema import SCHEMA_VERSION
from parallelr.plugins.journal.store import JournalStore, JournalUnavailable, journal_path
from parallelr.plugins.journal.writer import JournalWriter

RUN_ID = "20261123-104148-272c69"


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


@pytest.fixture
def db(tmp_path: Path) -> Iterator[JournalStore]:
    store = JournalStore.open(tmp_path / "home" / "state.db")
    assert store is not None
    yield store
    store.close()


def new_run(db: JournalStore, tmp_path: Path, count: int, run_id: str = RUN_ID) -> List[Task]:
    tasks = make_tasks(count)
    with db.transaction():
        db.insert_run(run_info(tmp_path, run_id), processes.own_create_time(), processes.this_host())
        assert db.insert_jobs(run_id, tasks, max_attempts=3, now=50.0) == count
    return tasks


def job_row(db: JournalStore, position: int, columns: str, run_id: str = RUN_ID) -> Tuple[Any, ...]:
    return db.connection.execute(
        f"SELECT {columns} FROM jobs WHERE run_id = ? AND position = ?", (run_id, position)
    ).fetchone()


# -- opening and schema -------------------------------------------------------------------------
def test_open_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.db"
    store = JournalStore.open(path)
    assert store is not None
    connection = store.connection
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs", "jobs", "attempts", "settings"}
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
               if not row[0].startswith("sqlite_autoindex")}
    assert indexes == {"runs_started", "jobs_due", "jobs_run_state", "jobs_queue_name"}
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()
    again = JournalStore.open(path)  # opening an up-to-date database changes nothing
    assert again is not None and again.connection.execute("PRAGMA user_version").fetchone()[0] == 1
    again.close()


def test_open_without_create_does_not_create(tmp_path: Path) -> None:
    path = tmp_path / "none" / "state.db"
    assert JournalStore.open(path, create=False) is None
    assert not path.parent.exists()


def test_a_corrupt_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(JournalUnavailable) as caught:
        JournalStore.open(path)
    assert str(caught.value) == (
        f"cannot use the journal {path}: file is not a database; run with --no-journal to run without it"
    )


def test_an_unusable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalUnavailable) as caught:
        JournalStore.open(blocker / "state.db")
    assert str(caught.value) == (
        f"cannot use the journal {blocker / 'state.db'}: not a directory; "
        "run with --no-journal to run without it"
    )


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(JournalUnavailable, match="schema version 2 is newer than this parallelr understands"):
        JournalStore.open(path)


def test_a_locked_database_fails_after_the_busy_timeout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(store_module.BUSY_TIMEOUT_VARIABLE, "0.1")
    path = tmp_path / "state.db"
    JournalStore.open(path).close()  # type: ignore[union-attr]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = JournalStore.open(path)
        assert store is not None
        with pytest.raises(JournalUnavailable) as caught, store.guarded():
            pass
        assert str(caught.value) == (
            f"cannot use the journal {path}: database is locked; run with --no-journal to run without it"
        )
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_busy_timeout_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(store_module.BUSY_TIMEOUT_VARIABLE, "0.25")
    assert store_module.busy_timeout() == 0.25
    monkeypatch.setenv(store_module.BUSY_TIMEOUT_VARIABLE, "soon")
    assert store_module.busy_timeout() == 5.0
    monkeypatch.delenv(store_module.BUSY_TIMEOUT_VARIABLE)
    assert store_module.busy_timeout() == 5.0


def test_journal_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings()
    assert journal_path(settings, tmp_path / "ptasker") == tmp_path / "ptasker" / "state.db"
    import attrs

    custom = attrs.evolve(settings, journal=attrs.evolve(settings.journal, path="~/j/x.db"))
    assert journal_path(custom, tmp_path / "parallelr") == tmp_path / "j" / "x.db"
    relative = attrs.evolve(settings, journal=attrs.evolve(settings.journal, path="db/x.db"))
    assert journal_path(relative, tmp_path / "parallelr") == tmp_path / "parallelr" / "db" / "x.db"


# -- state transitions --------------------------------------------------------------------------
def test_a_new_run_stores_every_task_as_pending(db: JournalStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 3)
    run = db.get_run(RUN_ID)
    assert run is not None
    assert (run.state, run.task_count, run.command, run.options["max"]) == ("running", 3, "bash @TASK@", 2)
    assert run.pid == os.getpid()
    jobs = list(db.iter_jobs(RUN_ID))
    assert [(job.id, job.position, job.state, job.attempts, job.max_attempts) for job in jobs] == [
        (1, 1, "pending", 0, 3), (2, 2, "pending", 0, 3), (3, 3, "pending", 0, 3)
    ]
    assert jobs[1].to_task() == Task(
        argv=tasks[1].argv, source=tasks[1].source, env=tasks[1].env, arguments=tasks[1].arguments,
        line_number=2, index=2, attempt=1,
    )


def test_task_states_through_start_retry_and_finish(db: JournalStore, tmp_path: Path) -> None:
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


def test_a_batch_skips_superseded_starts_and_keeps_order(db: JournalStore, tmp_path: Path) -> None:
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
    starts = [sql for sql in statements if sql.startswith("UPDATE jobs SET state = 'running'")]
    assert len(starts) == 2  # task 2's start was superseded by its end in the same batch
    assert [(a.job_id, a.attempt, a.status) for n in (1, 2) for a in db.attempts_of(n)] == [
        (1, 1, "FAILED"), (2, 1, "SUCCESS")
    ]


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
def test_finish_run_states(db: JournalStore, tmp_path: Path, summary: RunSummary, state: str) -> None:
    new_run(db, tmp_path, 2)
    with db.transaction():
        db.finish_run(RUN_ID, summary, 300.0)
    row = db.connection.execute(
        "SELECT state, ended_at, exit_code, total, succeeded, failed, cancelled FROM runs WHERE id = ?",
        (RUN_ID,),
    ).fetchone()
    assert row == (state, 300.0, summary.exit_code, 2, summary.succeeded, summary.failed, summary.cancelled)


def test_undecodable_text_round_trips(db: JournalStore, tmp_path: Path) -> None:
    odd = "/t/caf\udce9.sh"  # a file name with a Latin-1 byte, as os.fsdecode gives it
    task = Task(argv=["bash", odd], source=odd, arguments=("x\udcff",), index=1)
    with db.transaction():
        db.insert_run(run_info(tmp_path), None, "host")
        db.insert_jobs(RUN_ID, [task], 1, 1.0)
        db.attempt_ended(RUN_ID, result(task, TaskStatus.FAILED, error=f"cannot run {odd}"), 2.0, None)
    (job,) = list(db.iter_jobs(RUN_ID))
    assert (job.source, job.argv, job.arguments, job.last_error) == (odd, ("bash", odd), ("x\udcff",),
                                                                      f"cannot run {odd}")


def test_iter_jobs_pages_through_a_large_run(db: JournalStore, tmp_path: Path) -> None:
    count = store_module.PAGE_SIZE * 2 + 3
    new_run(db, tmp_path, count)
    with db.transaction():
        for position in range(1, count + 1, 2):
            db.connection.execute("UPDATE jobs SET state = 'succeeded' WHERE position = ?", (position,))
    assert [job.position for job in db.iter_jobs(RUN_ID)] == list(range(1, count + 1))
    unfinished = db.iter_jobs(RUN_ID, exclude_succeeded=True)
    assert [job.position for job in unfinished] == list(range(2, count + 1, 2))
    assert [job.position for job in db.iter_jobs(RUN_ID, states=["succeeded"])][:3] == [1, 3, 5]


# -- resume ---------------------------------------------------------------------------------------
def mixed_run(db: JournalStore, tmp_path: Path) -> List[Task]:
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


def test_resume_plans_everything_that_did_not_succeed(db: JournalStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    plan, chosen = build_plan(db, Selection(RUN_ID))
    assert chosen is None
    assert (plan.run_id, plan.count, len(plan.tasks)) == (RUN_ID, 5, 5)
    assert dict(plan.previous) == {TaskStatus.SUCCESS: 2}
    first = [(task.index, task.attempt) for task in plan.tasks]
    assert first == [(2, 3), (3, 2), (4, 1), (5, 2), (6, 1)]  # attempts count on
    assert [(task.index, task.attempt) for task in plan.tasks] == first  # iterable again


def test_resume_only_ids_counts_the_rest_as_they_ended(db: JournalStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    plan, chosen = build_plan(db, Selection(RUN_ID, "ids", (3,)))
    assert chosen == [3]
    assert [task.index for task in plan.tasks] == [3]
    assert dict(plan.previous) == {
        TaskStatus.SUCCESS: 2, TaskStatus.FAILED: 1, TaskStatus.CANCELLED: 3
    }
    dead_plan, dead = build_plan(db, Selection(RUN_ID, "dead"))
    assert dead == [2, 3]
    assert [task.index for task in dead_plan.tasks] == [2, 3]
    assert dict(dead_plan.previous) == {TaskStatus.SUCCESS: 2, TaskStatus.CANCELLED: 3}


def test_resume_only_rejects_foreign_or_succeeded_jobs(db: JournalStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    with pytest.raises(UsageError, match=f"job 1 of run {RUN_ID} already succeeded"):
        build_plan(db, Selection(RUN_ID, "ids", (1,)))
    with pytest.raises(UsageError, match=f"job 99 is not a task of run {RUN_ID}"):
        build_plan(db, Selection(RUN_ID, "ids", (2, 99)))


def test_requeue_records_the_attempt_a_dead_runner_left_open(db: JournalStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    with db.transaction():
        assert db.requeue(RUN_ID, None, 500.0, "runner died") == 5
    states = [(job.position, job.state) for job in db.iter_jobs(RUN_ID)]
    assert states == [(1, "succeeded"), (2, "pending"), (3, "pending"), (4, "pending"), (5, "pending"),
                      (6, "pending"), (7, "succeeded")]
    assert [(a.attempt, a.status, a.error) for a in db.attempts_of(5)] == [(1, "CANCELLED", "runner died")]
    assert [a.attempt for a in db.attempts_of(2)] == [2]  # finished attempts get no extra row
    with db.transaction():
        db.attempt_ended(RUN_ID, result(make_tasks(7)[1], TaskStatus.FAILED, attempt=3), 501.0, None)
        assert db.requeue(RUN_ID, [2], 502.0, "x") == 1
    assert job_row(db, 2, "state, next_attempt_at") == ("pending", 502.0)


def test_parse_only() -> None:
    assert parse_only(None) is None
    assert parse_only("dead") == ("dead", ())
    assert parse_only("3, 7,12") == ("ids", (3, 7, 12))
    with pytest.raises(UsageError, match="not 'x'"):
        parse_only("3,x")
    with pytest.raises(UsageError, match="at least one job ID"):
        parse_only(",")


def test_restore_options_fills_only_what_is_unset() -> None:
    options = argparse.Namespace(
        Command=None, TasksDir=[], arguments_file=None, env_var=(), max=5, timeout=None, retries=0,
        executor=None, shell=False,
    )
    stored = {"Command": "bash @TASK@", "TasksDir": ["/t"], "env_var": ["HOSTNAME"], "max": 2, "timeout": 30,
              "retries": 3, "executor": "process", "shell": True, "run": True, "debug": True}
    restored = restore_options(options, stored)
    assert sorted(restored) == ["Command", "TasksDir", "env_var", "executor", "shell", "timeout"]
    assert (options.Command, options.TasksDir, options.env_var, options.max, options.timeout) == (
        "bash @TASK@", ["/t"], ("HOSTNAME",), 5, 30
    )
    assert (options.retries, options.executor, options.shell) == (0, "process", True)  # --retries 0 is kept
    assert not hasattr(options, "run")
    explicit = argparse.Namespace(executor="thread")  # --executor thread given on the resume
    assert restore_options(explicit, {"executor": "process"}) == []
    assert explicit.executor == "thread"


# -- liveness -------------------------------------------------------------------------------------
def _record(pid: Optional[int], create_time: Optional[float], host: Optional[str], state: str = "running"):
    return RunRecord(
        id=RUN_ID, app_name="parallelr", pid=pid, create_time=create_time, host=host, started_at=1.0,
        ended_at=None, state=state, command="c", options={}, executor="thread", workers=1, task_count=1,
        exit_code=None, main_log=None, summary_csv=None, output_log=None, resumes=0,
    )


def test_runner_alive_needs_the_same_process() -> None:
    me, created, host = os.getpid(), psutil.Process().create_time(), processes.this_host()
    assert processes.runner_alive(me, created, host)
    assert not processes.runner_alive(me, created - 10, host)  # the PID was reused
    assert processes.runner_alive(me, created, "another-host")  # cannot tell: assume alive
    dead = psutil.Popen(["true"])
    dead.wait()
    assert not processes.runner_alive(dead.pid, None, host)
    assert processes.shown_state(_record(me, created, host)) == "running"
    assert processes.shown_state(_record(me, created - 10, host)) == "crashed"
    assert processes.shown_state(_record(me, created - 10, host, "finished")) == "finished"
    with pytest.raises(UsageError) as caught:
        check_not_running(_record(me, created, host))
    assert str(caught.value) == (
        f"run {RUN_ID} is still running (PID {me} on {host}); stop it with -k {me} first"
    )
    check_not_running(_record(me, created - 10, host))  # crashed: fine to resume


def test_find_leftovers_by_environment_marker(tmp_path: Path) -> None:
    run_id = f"leftover-test-{uuid.uuid4().hex}"
    env = dict(os.environ, PARALLELR_RUN_ID=run_id, PARALLELR_TASK_INDEX="4")
    got = tmp_path / "got"
    script = f'trap "echo TERM > {got}; kill $!; exit 0" TERM; touch {got}.ready; sleep 30 & wait'
    child = psutil.Popen(["sh", "-c", script], env=env, start_new_session=True)
    other_env = dict(env, PARALLELR_RUN_ID=f"another-{run_id}")
    other = psutil.Popen(["sleep", "30"], env=other_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not Path(f"{got}.ready").exists() and time.monotonic() < deadline:  # trap is set
            time.sleep(0.01)
        found = processes.find_leftovers(run_id)
        assert child.pid in {process.pid for process in found.processes}  # the task and its sleep
        assert {os.getpgid(process.pid) for process in found.processes} == found.groups == {child.pid}
        assert found.tasks == {"4"}
        assert processes.terminate(found, grace=2.0) == len(found.processes) == 2
        assert not child.is_running()
        assert got.read_text() == "TERM\n"  # SIGTERM first, through its process group
        assert other.is_running()
    finally:
        for process in (child, other):
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                process.wait(timeout=5)


# -- the writer -----------------------------------------------------------------------------------
class FakeStore:
    """Counts transactions and records; ``block`` holds the writer inside its first transaction."""

    def __init__(self) -> None:
        self.path = Path("fake.db")
        self.transactions = 0
        self.applied: List[int] = []
        self.inside = threading.Event()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.transactions += 1
        yield

    def apply_batch(self, records: List[Tuple[str, Tuple[Any, ...]]]) -> None:
        for name, args in records:
            getattr(self, name)(*args)

    def block(self, release: threading.Event) -> None:
        self.inside.set()
        release.wait(5)

    def note(self, number: int) -> None:
        self.applied.append(number)

    def broken(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")


def test_writer_commits_everything_queued_in_one_transaction() -> None:
    fake = FakeStore()
    writer = JournalWriter(fake)  # type: ignore[arg-type]
    release = threading.Event()
    writer.put("block", release)
    assert fake.inside.wait(5)
    for number in range(100):  # queued while the writer is busy: the next batch takes them all
        writer.put("note", number)
    release.set()
    assert writer.flush(5)
    assert (writer.batches, writer.records, fake.transactions) == (2, 101, 2)
    assert fake.applied == list(range(100))
    writer.close(5)
    writer.close(5)  # twice is fine


def test_writer_survives_a_failed_batch(caplog) -> None:
    fake = FakeStore()
    writer = JournalWriter(fake)  # type: ignore[arg-type]
    writer.put("broken")
    assert writer.flush(5)
    writer.put("note", 1)
    writer.close(5)
    assert writer.failure == "disk I/O error"
    assert fake.applied == [1]
    assert "cannot record 1 task update(s): disk I/O error" in caplog.text


def test_writer_commits_a_single_record_promptly(db: JournalStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 1)
    writer = JournalWriter(db)
    reader = sqlite3.connect(db.path)
    try:
        writer.put("attempt_ended", RUN_ID, result(tasks[0], TaskStatus.SUCCESS), 10.0, None)
        deadline = time.monotonic() + 5
        state = None
        while time.monotonic() < deadline:  # committed without a flush or close: another reader sees it
            state = reader.execute("SELECT state FROM jobs WHERE position = 1").fetchone()[0]
            if state == "succeeded":
                break
            time.sleep(0.005)
        assert state == "succeeded"
        assert writer.batches == 1
    finally:
        reader.close()
        writer.close(5)
