"""The journal plugin around the core store: where the journal is and its messages, resume
planning, leftover processes, the writer thread, and the per-run JournalRun objects."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pluggy
import psutil
import pytest
from test_jobs_sqlite import RUN_ID, make_tasks, mixed_run, new_run, open_store, result, run_info

from parallelr import hookspecs
from parallelr.config import Settings
from parallelr.errors import UsageError
from parallelr.jobs.errors import StoreUnavailable
from parallelr.jobs.liveness import this_host
from parallelr.jobs.records import RunRecord
from parallelr.jobs.sqlite import SQLiteJobStore
from parallelr.model import RunSummary, TaskStatus
from parallelr.paths import store_path as journal_path
from parallelr.plugins.journal import database, plugin, processes
from parallelr.plugins.journal.database import (
    JournalUnavailable,
    journal_transaction,
    open_journal,
)
from parallelr.plugins.journal.resume import (
    Selection,
    build_plan,
    check_not_running,
    parse_only,
    restore_options,
)
from parallelr.plugins.journal.run import JournalRun
from parallelr.plugins.journal.writer import JournalWriter
from parallelr.request import RunRequest


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    store = open_store(tmp_path / "home" / "state.db")
    yield store
    store.close()


def unusable(path: Path, reason: str) -> str:
    return f"cannot use the journal {path}: {reason}; run with --no-journal to run without it"


# -- where the journal is, and its messages -------------------------------------------------------
def test_a_corrupt_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(JournalUnavailable) as caught:
        open_journal(path)
    assert str(caught.value) == unusable(path, "file is not a database")
    assert str(caught.value.without_hint()) == f"cannot use the journal {path}: file is not a database"


def test_an_unusable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalUnavailable) as caught:
        open_journal(blocker / "state.db")
    assert str(caught.value) == unusable(blocker / "state.db", "not a directory")


def test_a_locked_journal_fails_after_the_busy_timeout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(database.BUSY_TIMEOUT_VARIABLE, "0.1")
    path = tmp_path / "state.db"
    open_journal(path).close()  # type: ignore[union-attr]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = open_journal(path)
        assert store is not None
        with pytest.raises(JournalUnavailable) as caught, journal_transaction(store):
            pass
        assert str(caught.value) == unusable(path, "database is locked")
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_busy_timeout_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(database.BUSY_TIMEOUT_VARIABLE, "0.25")
    assert database.busy_timeout() == 0.25
    monkeypatch.setenv(database.BUSY_TIMEOUT_VARIABLE, "soon")
    assert database.busy_timeout() == 5.0
    monkeypatch.delenv(database.BUSY_TIMEOUT_VARIABLE)
    assert database.busy_timeout() == 5.0


def test_journal_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings()
    assert journal_path(settings, tmp_path / "ptasker") == tmp_path / "ptasker" / "state.db"
    import attrs

    custom = attrs.evolve(settings, journal=attrs.evolve(settings.journal, path="~/j/x.db"))
    assert journal_path(custom, tmp_path / "parallelr") == tmp_path / "j" / "x.db"
    relative = attrs.evolve(settings, journal=attrs.evolve(settings.journal, path="db/x.db"))
    assert journal_path(relative, tmp_path / "parallelr") == tmp_path / "parallelr" / "db" / "x.db"


# -- resume ---------------------------------------------------------------------------------------
def test_resume_plans_everything_that_did_not_succeed(db: SQLiteJobStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    plan, chosen = build_plan(db, Selection(RUN_ID))
    assert chosen is None
    assert (plan.run_id, plan.count, len(plan.tasks)) == (RUN_ID, 5, 5)
    assert dict(plan.previous) == {TaskStatus.SUCCESS: 2}
    first = [(task.index, task.attempt) for task in plan.tasks]
    assert first == [(2, 3), (3, 2), (4, 1), (5, 2), (6, 1)]  # attempts count on
    assert [(task.index, task.attempt) for task in plan.tasks] == first  # iterable again


def test_resume_only_ids_counts_the_rest_as_they_ended(db: SQLiteJobStore, tmp_path: Path) -> None:
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


def test_resume_only_rejects_foreign_or_succeeded_jobs(db: SQLiteJobStore, tmp_path: Path) -> None:
    mixed_run(db, tmp_path)
    with pytest.raises(UsageError, match=f"job 1 of run {RUN_ID} already succeeded"):
        build_plan(db, Selection(RUN_ID, "ids", (1,)))
    with pytest.raises(UsageError, match=f"job 99 is not a task of run {RUN_ID}"):
        build_plan(db, Selection(RUN_ID, "ids", (2, 99)))


def test_parse_only() -> None:
    assert parse_only(None) is None
    assert parse_only("dead") == ("dead", ())
    assert parse_only("3, 7,12") == ("ids", (3, 7, 12))
    with pytest.raises(UsageError, match="not 'x'"):
        parse_only("3,x")
    with pytest.raises(UsageError, match="at least one job ID"):
        parse_only(",")


def test_restore_options_fills_only_what_is_unset() -> None:
    request = RunRequest(workers=5, retries=0)
    stored = {"Command": "bash @TASK@", "TasksDir": ["/t"], "env_var": ["HOSTNAME"], "max": 2, "timeout": 30,
              "retries": 3, "executor": "process", "shell": True, "run": True, "debug": True}
    request, restored = restore_options(request, stored)
    assert restored == ["Command", "TasksDir", "env_var", "executor", "shell", "timeout"]
    assert (request.command, request.task_paths, request.env_names, request.workers, request.timeout) == (
        "bash @TASK@", ("/t",), ("HOSTNAME",), 5, 30
    )
    assert (request.retries, request.executor, request.shell) == (0, "process", True)  # --retries 0 is kept
    assert (request.execute, request.debug) == (False, False)  # what to do now is not restored
    explicit = RunRequest(executor="thread")  # --executor thread given on the resume
    assert restore_options(explicit, {"executor": "process"}) == (explicit, [])


# -- liveness -------------------------------------------------------------------------------------
def _record(pid: Optional[int], create_time: Optional[float], host: Optional[str]) -> RunRecord:
    return RunRecord(
        id=RUN_ID, app_name="parallelr", pid=pid, create_time=create_time, host=host, started_at=1.0,
        ended_at=None, state="running", command="c", options={}, executor="thread", workers=1, task_count=1,
        exit_code=None, main_log=None, summary_csv=None, output_log=None, resumes=0,
        lease_owner="runner:1@h/x", lease_expires_at=time.time() + 30,
    )


def test_a_live_run_is_refused_for_resume() -> None:
    me, created, host = os.getpid(), psutil.Process().create_time(), this_host()
    with pytest.raises(UsageError) as caught:
        check_not_running(_record(me, created, host))
    assert str(caught.value) == (
        f"run {RUN_ID} is still running (PID {me} on {host}); stop it with -k {me} first"
    )
    check_not_running(_record(me, created - 10, host))  # its PID proves it dead: fine to resume


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
        # the trap is set and the background sleep started (a busy machine may take a while)
        while (not Path(f"{got}.ready").exists() or not child.children()) and time.monotonic() < deadline:
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
    """Counts transactions and records; ``block`` holds the writer inside its first transaction;
    ``busy`` makes the next commits fail as a locked database does."""

    def __init__(self) -> None:
        self.location = "fake.db"
        self.transactions = 0
        self.applied: List[int] = []
        self.inside = threading.Event()
        self.busy = 0  # how many more transactions fail as "database is locked"
        self.tried: List[float] = []  # when each failing transaction was tried (monotonic)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.busy:
            self.busy -= 1
            self.tried.append(time.monotonic())
            raise StoreUnavailable(self.location, "database is locked", transient=True)
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
        raise StoreUnavailable(self.location, "database disk image is malformed")  # trying again won't help


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
    assert writer.last_failure == "database disk image is malformed"
    assert fake.applied == [1]
    assert writer.dropped_updates == 1  # only the record that cannot be written is given up
    assert "cannot record 1 task update(s): database disk image is malformed" in caplog.text


def test_writer_keeps_what_a_lock_refused_and_writes_it_in_order(caplog) -> None:
    """A database locked by another process: nothing is dropped; the records wait, in order, and
    are tried again after a growing pause (not in a busy loop) until the lock is gone."""
    fake = FakeStore()
    fake.busy = 4
    writer = JournalWriter(fake)  # type: ignore[arg-type]
    writer.put("note", 1)
    time.sleep(0.02)
    for number in range(2, 6):  # queued while the first batch waits for the lock
        writer.put("note", number)
    assert writer.flush(10)  # a flush waits until they are written
    writer.close(5)
    assert fake.applied == [1, 2, 3, 4, 5]
    assert writer.problem() is None and writer.dropped_updates == 0
    pauses = [later - earlier for earlier, later in zip(fake.tried, fake.tried[1:])]
    assert len(pauses) == 3 and all(pause >= 0.04 for pause in pauses)  # a back-off, not a spin
    assert pauses[-1] > pauses[0]
    assert "cannot record 1 task update(s) yet: database is locked; keeping them" in caplog.text


def test_a_writer_whose_store_stays_locked_reports_what_is_missing() -> None:
    fake = FakeStore()
    fake.busy = 10**6
    writer = JournalWriter(fake)  # type: ignore[arg-type]
    task = make_tasks(1)[0]
    writer.put("attempt_ended", RUN_ID, result(task, TaskStatus.SUCCESS), 1.0, None)
    assert not writer.flush(0.3)  # still locked
    assert writer.problem() == (
        "journal: 1 task result(s) could not be recorded in fake.db (database is locked);"
        " --resume may run them again"
    )
    assert writer.close(0.2)  # gives up at its deadline
    assert writer.dropped_results == 1 and fake.applied == []


def test_writer_commits_a_single_record_promptly(db: SQLiteJobStore, tmp_path: Path) -> None:
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


# -- one JournalRun per run ---------------------------------------------------------------------
class StubConfig:
    """What the journal reads of a config: options, settings, home, the run's plugin manager."""

    def __init__(self, home: Path) -> None:
        self.request = RunRequest(execute=True)
        self.settings = Settings()
        self.home = home
        self.app_name = "parallelr"
        self.pluginmanager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pluginmanager.add_hookspecs(hookspecs)


def summary_of(total: int) -> RunSummary:
    return RunSummary(total=total, succeeded=total, failed=0, timed_out=0, errored=0, cancelled=0)


def test_configure_registers_a_journal_run_on_the_run_s_plugin_manager(tmp_path: Path) -> None:
    config = StubConfig(tmp_path)
    plugin.parallelr_configure(config)
    (journal,) = [obj for obj in config.pluginmanager.get_plugins() if isinstance(obj, JournalRun)]
    assert journal.config is config and journal.store is None  # nothing is opened before the run
    config.pluginmanager.check_pending()  # its methods are real hooks


def test_two_runs_at_once_keep_their_own_journal(tmp_path: Path) -> None:
    """Two runs in one process, each with its own plugin manager (as run_batch makes them)."""
    configs = [StubConfig(tmp_path), StubConfig(tmp_path)]
    for config in configs:
        plugin.parallelr_configure(config)
    hooks = [config.pluginmanager.hook for config in configs]
    runs = [run_info(tmp_path, "20261123-000000-aaaaaa"), run_info(tmp_path, "20261123-000000-bbbbbb")]
    tasks = [make_tasks(2), make_tasks(3)]
    for hook, run, planned in zip(hooks, runs, tasks):
        hook.parallelr_run_planned(run=run, tasks=planned)
    journals = [next(o for o in c.pluginmanager.get_plugins() if isinstance(o, JournalRun)) for c in configs]
    assert journals[0].store is not journals[1].store and journals[0].writer is not journals[1].writer
    for position in range(3):  # interleaved, as two scheduler threads would call them
        for hook, run, planned in zip(hooks, runs, tasks):
            if position < len(planned):
                hook.parallelr_task_start(run=run, task=planned[position], worker_id=1)
                hook.parallelr_task_finish(run=run, result=result(planned[position], TaskStatus.SUCCESS))
        if position == 1:  # the first run ends while the second still records
            hooks[0].parallelr_run_finish(run=runs[0], summary=summary_of(2))
            assert journals[0].writer is None and journals[1].writer is not None
    hooks[1].parallelr_run_finish(run=runs[1], summary=summary_of(3))
    store = open_store(tmp_path / "state.db")
    try:
        for run, planned in zip(runs, tasks):
            recorded = store.get_run(run.run_id)  # type: ignore[arg-type]
            assert recorded is not None and (recorded.state, recorded.lease_owner) == ("finished", None)
            jobs = list(store.iter_jobs(run.run_id))  # type: ignore[arg-type]
            assert [job.state for job in jobs] == ["succeeded"] * len(planned)
    finally:
        store.close()


def test_a_journal_run_records_its_own_run_only(tmp_path: Path) -> None:
    journal = JournalRun(StubConfig(tmp_path))
    mine, other = run_info(tmp_path, "20261123-000000-aaaaaa"), run_info(tmp_path, "20261123-000000-bbbbbb")
    journal.parallelr_run_planned(run=mine, tasks=make_tasks(1))
    journal.parallelr_run_planned(run=other, tasks=make_tasks(1))  # not a second run on this object
    task = make_tasks(1)[0]
    journal.parallelr_task_start(run=other, task=task, worker_id=1)
    journal.parallelr_task_finish(run=other, result=result(task, TaskStatus.FAILED))
    journal.parallelr_run_finish(run=other, summary=summary_of(1))
    assert journal.writer is not None  # another run's end does not end this one
    journal.parallelr_run_finish(run=mine, summary=summary_of(1))
    store = open_store(tmp_path / "state.db")
    try:
        assert store.get_run(other.run_id) is None  # type: ignore[arg-type]
        assert [job.state for job in store.iter_jobs(mine.run_id)] == ["pending"]  # type: ignore[arg-type]
    finally:
        store.close()


EXITS_WITHOUT_RUN_FINISH = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_jobs_sqlite import make_tasks, result, run_info
from test_journal_store import StubConfig
from parallelr.model import TaskStatus
from parallelr.plugins.journal.run import JournalRun
home = Path(sys.argv[1])
journal = JournalRun(StubConfig(home))
run, tasks = run_info(home), make_tasks(2)
journal.parallelr_run_planned(run=run, tasks=tasks)
for task in tasks:
    journal.parallelr_task_start(run=run, task=task, worker_id=1)
    journal.parallelr_task_finish(run=run, result=result(task, TaskStatus.SUCCESS))
sys.exit(3)  # an exception in the core: parallelr_run_finish never comes
"""


def test_records_queued_before_an_exit_are_written(tmp_path: Path) -> None:
    here = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", EXITS_WITHOUT_RUN_FINISH, str(tmp_path), here],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    store = open_store(tmp_path / "state.db")
    try:
        assert [job.state for job in store.iter_jobs(RUN_ID)] == ["succeeded", "succeeded"]
        run = store.get_run(RUN_ID)
        assert run is not None and run.state == "running"  # and its runner is gone: shown as crashed
    finally:
        store.close()



# -- big runs: jobs stored while the run goes on, never-started tasks in bulk ---------------------
def _stored(store: SQLiteJobStore, planner: Any) -> None:
    with store.transaction():
        planner.write(store, 1.0)
    planner.committed()


def test_a_stamped_source_is_stored_a_bounded_way_ahead_of_the_run(db: SQLiteJobStore, tmp_path: Path,
                                                                   monkeypatch) -> None:
    from parallelr.jobs.leases import Lease
    from parallelr.plugins.journal.planning import PlanDigest, Planner

    monkeypatch.setenv("PARALLELR_JOURNAL_PLAN_AHEAD", "10")
    tasks = make_tasks(100)
    with db.transaction():
        db.insert_run(run_info(tmp_path), None, "host", Lease("runner:1@h/x", 1.0))
    planner = Planner(RUN_ID, tasks, max_attempts=1, bounded=True)
    planner.stage_upfront()
    _stored(db, planner)
    assert (planner.planned, planner.has_work()) == (10, False)  # 10 ahead of a run that started nothing
    planner.stage_through(30)  # a record names task 30: it is stored with the record
    _stored(db, planner)
    assert planner.planned == 30 and planner.has_work()
    while planner.has_work():
        planner.stage_chunk()
        _stored(db, planner)
    assert planner.planned == 40  # 10 ahead of task 30
    digest = PlanDigest()
    for task in tasks[:40]:
        digest.add(task)
    run = db.get_run(RUN_ID)
    assert run is not None
    assert (run.planned, run.plan_digest, run.task_count) == (40, digest.hexdigest(), None)
    assert [job.position for job in db.iter_jobs(RUN_ID)] == list(range(1, 41))


def test_tasks_that_never_started_are_recorded_in_bulk(tmp_path: Path) -> None:
    """Ctrl+C with thousands of tasks left: one statement, not one record per task."""
    journal = JournalRun(StubConfig(tmp_path))
    run, tasks = run_info(tmp_path), make_tasks(3000)
    journal.parallelr_run_planned(run=run, tasks=tasks)
    deadline = time.monotonic() + 30
    while journal.planner is not None and not journal.planner.complete and time.monotonic() < deadline:
        time.sleep(0.01)  # every job stored, as a run that stored them all before it started
    assert journal.store is not None
    statements: List[str] = []
    journal.store.connection.set_trace_callback(statements.append)
    journal.parallelr_task_start(run=run, task=tasks[0], worker_id=1)
    journal.parallelr_task_finish(run=run, result=result(tasks[0], TaskStatus.SUCCESS))
    why = "Not started: run interrupted by SIGINT"
    for task in tasks[1:]:
        never = result(task, TaskStatus.CANCELLED, ran=False, error=why)
        journal.parallelr_task_finish(run=run, result=never)
    assert journal.parallelr_run_problems(run=run) is None
    journal.parallelr_run_finish(run=run, summary=summary_of(3000))
    cancels = [sql for sql in statements if sql.startswith("UPDATE jobs SET state = 'cancelled'")]
    assert len(cancels) == 1
    store = open_store(tmp_path / "state.db")
    try:
        counts = store.state_counts(RUN_ID)
        assert counts == {("succeeded", "SUCCESS"): 1, ("cancelled", "CANCELLED"): 2999}
        assert {job.last_error for job in store.iter_jobs(RUN_ID, states=["cancelled"])} == {why}
    finally:
        store.close()


def test_run_problems_names_what_a_locked_journal_could_not_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(database.BUSY_TIMEOUT_VARIABLE, "0.05")
    monkeypatch.setenv("PARALLELR_JOURNAL_FLUSH_TIMEOUT", "0.5")
    journal = JournalRun(StubConfig(tmp_path))
    run, tasks = run_info(tmp_path), make_tasks(3)
    journal.parallelr_run_planned(run=run, tasks=tasks)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for task in tasks:
            journal.parallelr_task_finish(run=run, result=result(task, TaskStatus.SUCCESS))
        assert journal.parallelr_run_problems(run=run) == [
            f"journal: 3 task result(s) could not be recorded in {tmp_path / 'state.db'}"
            " (database is locked); --resume may run them again"
        ]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    journal.parallelr_run_finish(run=run, summary=summary_of(3))  # the lock is gone: written now
    store = open_store(tmp_path / "state.db")
    try:
        assert [job.state for job in store.iter_jobs(RUN_ID)] == ["succeeded"] * 3
        recorded = store.get_run(RUN_ID)
        assert recorded is not None and recorded.state == "finished"
    finally:
        store.close()


def test_a_started_task_gets_its_job_even_when_the_source_fails_for_the_planner(db: SQLiteJobStore,
                                                                                 tmp_path: Path) -> None:
    """A bad line found later ends every pass of an arguments file, the planner's too; tasks the
    run already started are still stored, from the records that carry them."""
    from parallelr.errors import SourceError
    from parallelr.jobs.leases import Lease
    from parallelr.plugins.journal.planning import Planner

    tasks = make_tasks(5)

    def source() -> Iterator[Any]:
        yield from tasks[:2]
        raise SourceError("line 3 is bad")

    with db.transaction():
        db.insert_run(run_info(tmp_path), None, "host", Lease("runner:1@h/x", 1.0))
    planner = Planner(RUN_ID, source(), max_attempts=1)
    planner.stage_upfront()
    _stored(db, planner)
    assert (planner.planned, planner.failure) == (2, "line 3 is bad")
    planner.stage_through(4, {3: tasks[2], 4: tasks[3]})
    _stored(db, planner)
    assert [job.position for job in db.iter_jobs(RUN_ID)] == [1, 2, 3, 4]
