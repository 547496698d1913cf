"""Leases: claims that expire and are taken back, renewals that keep them, the run lease a resume
takes over, the liveness rule built on it, and the journal writer that renews it."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Optional

import psutil
import pytest
from test_jobs_sqlite import OWNER, RUN_ID, make_tasks, new_run, open_store, result, run_info

from parallelr.jobs.errors import LeaseLost
from parallelr.jobs.leases import LEASE_SECONDS, RENEW_EVERY, Lease, new_owner
from parallelr.jobs.liveness import is_alive, own_create_time, shown_state, this_host
from parallelr.jobs.records import RunRecord
from parallelr.jobs.sqlite import SQLiteJobStore
from parallelr.model import RunSummary, TaskStatus
from parallelr.plugins.journal.writer import JournalWriter, Renewal


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteJobStore]:
    store = open_store(tmp_path / "state.db")
    yield store
    store.close()


def test_the_numbers() -> None:
    assert (LEASE_SECONDS, RENEW_EVERY) == (30.0, 10.0)  # two renewals may fail before it expires
    assert Lease.starting("me", 100.0) == Lease("me", 130.0)
    assert not Lease("me", 130.0).expired(129.9) and Lease("me", 130.0).expired(130.0)
    first, second = new_owner("runner", 42, "h"), new_owner("runner", 42, "h")
    assert first.startswith("runner:42@h/") and first != second


# -- job claims ---------------------------------------------------------------------------------
def test_a_claim_takes_a_due_job_once(db: SQLiteJobStore) -> None:
    with db.transaction():
        assert db.enqueue("q", make_tasks(2), max_attempts=3, now=100.0) == [1, 2]
    with db.transaction():
        (claimed,) = db.claim("worker-a", 100.0, queue="q", lease_seconds=30.0)
    assert (claimed.job.id, claimed.job.state, claimed.job.attempts) == (1, "running", 1)
    assert claimed.lease == Lease("worker-a", 130.0)
    (second,) = db.claim("worker-b", 110.0, queue="q")  # outside a transaction: it opens its own
    assert second.job.id == 2
    assert db.claim("worker-b", 120.0, queue="q") == []  # nothing due: both are held
    assert db.claim("worker-b", 120.0, queue="other") == []


def test_an_expired_lease_is_reclaimable(db: SQLiteJobStore) -> None:
    with db.transaction():
        db.enqueue("q", make_tasks(1), max_attempts=3, now=100.0)
    db.claim("worker-a", 100.0, queue="q", lease_seconds=30.0)
    assert db.claim("worker-b", 129.0, queue="q") == []  # still worker-a's
    (taken,) = db.claim("worker-b", 130.5, queue="q", lease_seconds=30.0)  # worker-a is gone
    assert (taken.job.id, taken.job.attempts, taken.lease) == (1, 2, Lease("worker-b", 160.5))
    abandoned = db.attempts_of(1)
    assert [(a.attempt, a.status, a.ended_at) for a in abandoned] == [(1, "CANCELLED", 130.5)]
    assert db.renew_job_leases("worker-a", [1], 999.0) == 0  # the old holder cannot renew it


def test_a_renewed_lease_is_not_reclaimable(db: SQLiteJobStore) -> None:
    with db.transaction():
        db.enqueue("q", make_tasks(1), max_attempts=3, now=100.0)
    db.claim("worker-a", 100.0, queue="q", lease_seconds=30.0)
    assert db.renew_job_leases("worker-a", [1], 160.0) == 1
    assert db.claim("worker-b", 131.0, queue="q") == []
    (taken,) = db.claim("worker-b", 161.0, queue="q")
    assert taken.lease.owner == "worker-b"


def test_a_claim_in_a_run_takes_failed_jobs_when_due(db: SQLiteJobStore, tmp_path: Path) -> None:
    tasks = new_run(db, tmp_path, 2)
    with db.transaction():
        db.task_started(RUN_ID, tasks[0], 1, 60.0, "pid:1")
        db.attempt_ended(RUN_ID, result(tasks[0], TaskStatus.FAILED), 61.0, 10.0)  # due at 71
        db.task_started(RUN_ID, tasks[1], 2, 60.0, "pid:1")  # running, leased by its run: no expiry
    assert db.claim("w", 70.0, run_id=RUN_ID) == []
    (claimed,) = db.claim("w", 71.0, run_id=RUN_ID, limit=5)
    assert (claimed.job.position, claimed.job.attempts) == (1, 2)
    with pytest.raises(ValueError, match="a queue or a run_id"):
        db.claim("w", 71.0)


# -- the run lease ------------------------------------------------------------------------------
def test_a_runner_renews_its_run_lease_until_it_is_taken_over(db: SQLiteJobStore, tmp_path: Path) -> None:
    new_run(db, tmp_path, 1, lease=Lease("runner-a", 130.0))
    with db.transaction():
        db.renew_run_lease(RUN_ID, "runner-a", 160.0)
    assert db.get_run(RUN_ID).lease_expires_at == 160.0  # type: ignore[union-attr]
    with pytest.raises(LeaseLost) as caught:
        db.renew_run_lease(RUN_ID, "runner-b", 170.0)
    assert (caught.value.what, caught.value.owner) == (f"run {RUN_ID}", "runner-b")

    resumed = run_info(tmp_path, resumed=True)
    with db.transaction():  # a live lease of someone else: refused, nothing changes
        assert not db.reopen_run(resumed, None, "h", Lease("runner-b", 200.0), None, now=150.0)
    assert db.get_run(RUN_ID).lease_owner == "runner-a"  # type: ignore[union-attr]
    with db.transaction():  # expired: taken over
        assert db.reopen_run(resumed, None, "h", Lease("runner-b", 200.0), None, now=160.0)
    run = db.get_run(RUN_ID)
    assert run is not None and (run.lease_owner, run.lease_expires_at, run.resumes) == ("runner-b", 200.0, 1)
    with pytest.raises(LeaseLost):  # the old runner finds out at its next renewal
        db.renew_run_lease(RUN_ID, "runner-a", 190.0)


def test_a_resume_takes_over_a_live_lease_whose_runner_it_proved_dead(
    db: SQLiteJobStore, tmp_path: Path
) -> None:
    new_run(db, tmp_path, 1, lease=Lease("runner-a", 130.0))
    resumed = run_info(tmp_path, resumed=True)
    with db.transaction():  # kill -9 on this host: the PID says dead long before the lease expires
        assert db.reopen_run(resumed, None, "h", Lease("runner-b", 200.0), "runner-a", now=101.0)
    with db.transaction():  # a second resume that saw runner-a too comes too late
        assert not db.reopen_run(resumed, None, "h", Lease("runner-c", 200.0), "runner-a", now=102.0)


# -- liveness -----------------------------------------------------------------------------------
def _record(pid: Optional[int], create_time: Optional[float], host: Optional[str], state: str = "running",
            expires: Optional[float] = None) -> RunRecord:
    return RunRecord(
        id=RUN_ID, app_name="parallelr", pid=pid, create_time=create_time, host=host, started_at=1.0,
        ended_at=None, state=state, command="c", options={}, executor="thread", workers=1, task_count=1,
        exit_code=None, main_log=None, summary_csv=None, output_log=None, resumes=0,
        lease_owner=None if expires is None else OWNER, lease_expires_at=expires,
    )


def test_a_run_is_alive_while_its_lease_holds_and_its_pid_proves_it() -> None:
    me, created, host = os.getpid(), psutil.Process().create_time(), this_host()
    later, earlier = time.time() + 30, time.time() - 1
    assert is_alive(_record(me, created, host, expires=later))
    assert not is_alive(_record(me, created, host, expires=earlier))  # stopped renewing
    assert not is_alive(_record(me, created - 10, host, expires=later))  # kill -9: the PID is gone at once
    assert is_alive(_record(me, created, "another-host", expires=later))  # cannot check: the lease says
    assert not is_alive(_record(me, created, "another-host", expires=earlier))
    assert is_alive(_record(me, created, "another-host"))  # no lease (stored before leases): assume alive
    assert not is_alive(_record(me, created, host, state="finished", expires=later))
    assert shown_state(_record(me, created, host, expires=later)) == "running"
    assert shown_state(_record(me, created, host, expires=earlier)) == "crashed"
    assert shown_state(_record(me, created, host, state="stopped", expires=earlier)) == "stopped"
    dead = psutil.Popen(["true"])
    dead.wait()
    assert not is_alive(_record(dead.pid, None, host, expires=later))


# -- the writer keeps the lease -----------------------------------------------------------------
def _lease_of(path: Path) -> tuple:
    reader = sqlite3.connect(path)
    try:
        return reader.execute("SELECT lease_owner, lease_expires_at FROM runs").fetchone()
    finally:
        reader.close()


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_writer_renews_the_run_lease_while_the_run_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(path)
    new_run(store, tmp_path, 1, lease=Lease("runner-a", time.time() + 0.2))
    first = _lease_of(path)[1]
    writer = JournalWriter(store, Renewal(RUN_ID, "runner-a", every=0.05, length=0.2))
    try:
        assert _wait(lambda: writer.renewals >= 3)  # no task record needed to wake it
        assert _lease_of(path)[0] == "runner-a" and _lease_of(path)[1] > first
        assert (writer.records, writer.lost) == (0, None)
    finally:
        writer.close(5)
        store.close()


def test_a_writer_that_lost_its_lease_writes_nothing_more(tmp_path: Path, caplog) -> None:
    path = tmp_path / "state.db"
    store = open_store(path)
    tasks = new_run(store, tmp_path, 1, lease=Lease("runner-a", time.time() + 0.2))
    other = open_store(path)
    with other.transaction():  # the run looked dead and was resumed by runner-b
        assert other.reopen_run(run_info(tmp_path, resumed=True), own_create_time(), this_host(),
                                Lease("runner-b", time.time() + 60), None, now=time.time() + 1)
    other.close()
    writer = JournalWriter(store, Renewal(RUN_ID, "runner-a", every=0.05, length=0.2))
    try:
        assert _wait(lambda: writer.lost is not None)
        writer.put("attempt_ended", RUN_ID, result(tasks[0], TaskStatus.SUCCESS), 10.0, None)
        assert writer.flush(5)
    finally:
        writer.close(5)
        store.close()
    assert _lease_of(path)[0] == "runner-b"
    check = open_store(path)
    assert [job.state for job in check.iter_jobs(RUN_ID)] == ["pending"]  # not runner-a's to write
    check.close()
    assert f"the lease of run {RUN_ID} is no longer held by runner-a" in caplog.text


def test_the_writer_stops_renewing_once_the_run_is_finished(tmp_path: Path, caplog) -> None:
    path = tmp_path / "state.db"
    store = open_store(path)
    new_run(store, tmp_path, 1, lease=Lease("runner-a", time.time() + 0.2))
    writer = JournalWriter(store, Renewal(RUN_ID, "runner-a", every=0.005, length=0.2))
    try:
        assert _wait(lambda: writer.renewals >= 2)
        summary = RunSummary(total=1, succeeded=0, failed=0, timed_out=0, errored=0, cancelled=1)
        writer.put("finish_run", RUN_ID, summary, time.time())
        time.sleep(0.05)  # several renewals would be due meanwhile
    finally:
        writer.close(5)
        store.close()
    assert writer.lost is None and writer.failure is None and "lease" not in caplog.text
    assert _lease_of(path) == (None, None)  # released by finish_run, not renewed after it

