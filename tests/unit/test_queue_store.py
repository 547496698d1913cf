"""The queue's store methods (SqlQueueMixin, the statements both stores run) against each store:
a real SQLite file in tmp_path and a fresh PostgreSQL database (``store`` yields
``SQLiteJobStore.open(path)`` or ``PostgresJobStore.open(url)``), with explicit times (``T`` and
offsets from it): enqueue, claims and their order, leases, an attempt's end, cancels, retries,
purges, counts, paging, settings, pauses, workers, text PostgreSQL cannot hold, and the migration
of a version-3 SQLite file (SQLite only: PostgreSQL's schema is tested in test_postgres_store.py)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import pytest
from store_support import StoreTarget
from test_jobs_sqlite import open_store  # shared helpers (tests/unit is on sys.path)

from parallelr.jobs import sqlite as sqlite_module
from parallelr.jobs.errors import DuplicateJob, LeaseLost, UnknownDependency
from parallelr.jobs.postgres import PostgresJobStore
from parallelr.jobs.records import NewJob, QueueJob, WorkerRecord
from parallelr.jobs.sql_queue import INTERRUPTED, LEASE_EXPIRED, LOST, LOST_LAST, PAUSED_ALL
from parallelr.jobs.sql_store import SqlJobStore
from parallelr.jobs.sqlite import SQLiteJobStore
from parallelr.jobs.states import JobState
from parallelr.model import TaskResult, TaskStatus

T = 1_800_000_000.0  # "now" of every test, and the times after it
LEASE = 30.0
W1 = "worker:1@host/aaaa"
W2 = "worker:2@host/bbbb"


def open_kind(target: StoreTarget) -> SqlJobStore:
    """A new store object on ``target``: its own connection, as another process would have."""
    if target.is_postgres:
        store: Optional[SqlJobStore] = PostgresJobStore.open(target.location)
    else:
        store = SQLiteJobStore.open(Path(target.location))
    assert store is not None
    return store


@pytest.fixture
def db(store_target: StoreTarget) -> Iterator[SqlJobStore]:
    """The store, once per kind: ``SQLiteJobStore.open(path)`` or ``PostgresJobStore.open(url)``."""
    store = open_kind(store_target)
    yield store
    store.close()


def new_job(key: str, queue: str = "default", *, depends_on: Sequence[str] = (), priority: int = 0,
            max_retries: int = 3, due_at: Optional[float] = None, **extra: Any) -> NewJob:
    return NewJob(key=key, queue=queue, argv=("/bin/sh", "-c", f"echo {key}"), shell=True,
                  depends_on=tuple(depends_on), priority=priority, max_retries=max_retries, due_at=due_at,
                  **extra)


def enqueue(db: SqlJobStore, *jobs: NewJob, now: float = T) -> int:
    return db.enqueue_jobs(jobs, now)


def job(db: SqlJobStore, key: str, now: float = T) -> QueueJob:
    found = db.get_queue_job(key, now)
    assert found is not None, key
    return found


def claim(db: SqlJobStore, now: float = T, owner: str = W1, queues: Sequence[str] = (),
          limit: int = 10, lease: float = LEASE) -> List[QueueJob]:
    return db.claim_queue_jobs(owner, now, queues, limit, lease)


def keys(jobs: Sequence[QueueJob]) -> List[str]:
    return [queue_job.key for queue_job in jobs]


def outcome_of(claimed: QueueJob, status: TaskStatus, error: str = "") -> TaskResult:
    """What a worker's executor reports for the claimed job (its task: row and try number)."""
    return TaskResult(
        task=claimed.to_task(), status=status, worker_id=1, pid=4242,
        exit_code={TaskStatus.SUCCESS: 0, TaskStatus.FAILED: 1}.get(status), start_time=T, end_time=T + 1,
        duration=1.0, memory_mb=2.0, cpu_percent=5.0, stdout="out", stderr="err", error_message=error,
    )


def finish(db: SqlJobStore, claimed: QueueJob, status: TaskStatus, now: float, owner: str = W1,
           base: float = 2.0, most: float = 3600.0) -> Any:
    return db.finish_queue_attempt(owner, outcome_of(claimed, status), now, base, most)


def run_once(db: SqlJobStore, key: str, status: TaskStatus, now: float = T, owner: str = W1) -> Any:
    """Claim job ``key`` (the others claimed with it go back) and end its attempt with ``status``."""
    claimed = claim(db, now, owner, limit=1000)
    assert key in keys(claimed), f"{key} was not claimable"
    return finish(db, release_all_but(db, claimed, key, now, owner), status, now, owner)


def release_all_but(db: SqlJobStore, claimed: Sequence[QueueJob], key: str, now: float,
                    owner: str = W1) -> QueueJob:
    db.release_queue_jobs(owner, [one.row for one in claimed if one.key != key], now)
    return next(one for one in claimed if one.key == key)


def fail_until_dead(db: SqlJobStore, key: str, now: float = T) -> None:
    """Job ``key`` (max_retries 1) fails its one attempt: dead."""
    claimed = claim(db, now, limit=1000)
    target = release_all_but(db, claimed, key, now)
    assert finish(db, target, TaskStatus.FAILED, now).state is JobState.DEAD


def history(db: SqlJobStore, key: str) -> List[Tuple[int, str, Optional[str]]]:
    return [(a.attempt, a.status, a.worker) for a in db.queue_attempts(job(db, key).row)]


# -- enqueue ------------------------------------------------------------------------------------
def test_enqueue_stores_every_field(db: SqlJobStore, tmp_path: Path) -> None:
    stored = enqueue(db, new_job("a", "q1", priority=7, max_retries=5, due_at=T + 60, timeout=12.5,
                                 cwd=str(tmp_path), env=(("A", "1"), ("B", "two"))))
    assert stored == 1
    found = job(db, "a")
    assert (found.key, found.queue, found.argv, found.shell, found.env, found.cwd, found.timeout) == (
        "a", "q1", ("/bin/sh", "-c", "echo a"), True, (("A", "1"), ("B", "two")), str(tmp_path), 12.5)
    assert (found.priority, found.max_retries, found.next_attempt_at, found.created_at, found.updated_at) == (
        7, 5, T + 60, T, T)
    assert (found.state, found.shown, found.attempts, found.tries, found.waiting_on) == (
        JobState.PENDING, "scheduled", 0, 0, 0)
    assert found.command == "echo a"
    assert db.get_queue_job("missing", T) is None
    assert db.queue_names() == ["q1"]


def test_a_duplicate_id_is_refused_and_nothing_is_stored(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"))
    with pytest.raises(DuplicateJob) as caught:
        enqueue(db, new_job("b"), new_job("a"))
    assert caught.value.key == "a"
    assert db.get_queue_job("b", T) is None  # all or none
    with pytest.raises(DuplicateJob) as caught:  # IDs are unique across queues
        enqueue(db, new_job("a", "other"))
    assert caught.value.key == "a"
    with pytest.raises(DuplicateJob) as caught:  # twice in one batch
        enqueue(db, new_job("c"), new_job("c"))
    assert caught.value.key == "c"
    assert db.get_queue_job("c", T) is None
    assert db.queue_counts(T) == {"pending": 1}


def test_an_unknown_dependency_is_refused_and_nothing_is_stored(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"))
    with pytest.raises(UnknownDependency) as caught:
        enqueue(db, new_job("b", depends_on=["a"]), new_job("c", depends_on=["a", "nope"]))
    assert (caught.value.key, caught.value.dependency) == ("c", "nope")
    assert db.get_queue_job("b", T) is None
    assert db.get_queue_job("c", T) is None
    assert db.queue_counts(T) == {"pending": 1}


def test_waiting_on_counts_the_dependencies_not_completed(db: SqlJobStore) -> None:
    enqueue(db, new_job("done"))
    run_once(db, "done", TaskStatus.SUCCESS)
    enqueue(db, new_job("old"), now=T + 1)
    # a dependency later in the same batch is known; a repeated one counts once
    enqueue(db, new_job("x", depends_on=["done", "old", "new", "old"]), new_job("new"),
            new_job("free", depends_on=["done"]), now=T + 2)
    x = job(db, "x", T + 2)
    assert (x.waiting_on, x.shown) == (2, "waiting")
    assert db.dependencies_of(x.row, T + 2) == [("done", "completed"), ("old", "pending"), ("new", "pending")]
    free = job(db, "free", T + 2)
    assert (free.waiting_on, free.shown) == (0, "pending")


def test_a_job_whose_dependency_is_already_dead_is_dead_at_once(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=1), new_job("gone", max_retries=1))
    fail_until_dead(db, "a")
    assert db.cancel_queue_job("gone", T) == "pending"
    # b waits for the dead a; c (same batch) waits for b: both are dead at once, as is d (cancelled)
    enqueue(db, new_job("b", depends_on=["a"]), new_job("c", depends_on=["b"]),
            new_job("d", depends_on=["gone"]), now=T + 1)
    b = job(db, "b", T + 1)
    assert (b.state, b.last_status, b.last_error) == (JobState.DEAD, "DEPENDENCY", "its dependency a is dead")
    c = job(db, "c", T + 1)
    assert (c.state, c.last_error) == (JobState.DEAD, "its dependency b is dead")
    d = job(db, "d", T + 1)
    assert (d.state, d.last_error) == (JobState.DEAD, "its dependency gone was cancelled")
    assert claim(db, T + 1) == []


# -- claiming -----------------------------------------------------------------------------------
def enqueue_in_mixed_order(db: SqlJobStore) -> List[str]:
    """Five jobs of three priorities and three due times; returns the order a claim takes them in."""
    enqueue(db,
            new_job("p0-late", due_at=T - 1), new_job("p0-early", due_at=T - 5),
            new_job("low", priority=-10, due_at=T - 100), new_job("high", priority=10, due_at=T - 1),
            new_job("p0-early-b", due_at=T - 5), now=T - 200)
    return ["high", "p0-early", "p0-early-b", "p0-late", "low"]


def test_claims_go_by_priority_then_due_time_then_enqueue_order(db: SqlJobStore) -> None:
    expected = enqueue_in_mixed_order(db)
    claimed = claim(db, T)
    assert keys(claimed) == expected
    assert all(one.lease_owner == W1 and one.lease_expires_at == T + LEASE for one in claimed)
    assert all((one.state, one.shown, one.attempts, one.tries, one.started_at) ==
               (JobState.RUNNING, "processing", 1, 1, T) for one in claimed)


def test_claims_one_at_a_time_follow_the_same_order(db: SqlJobStore) -> None:
    expected = enqueue_in_mixed_order(db)
    assert [keys(claim(db, T, limit=1)) for _ in range(6)] == [[key] for key in expected] + [[]]
    assert claim(db, T, queues=["default"]) == []


def test_a_claim_takes_at_most_limit_jobs(db: SqlJobStore) -> None:
    enqueue(db, *(new_job(f"j{n}") for n in range(7)))
    assert keys(claim(db, limit=3)) == ["j0", "j1", "j2"]
    assert keys(claim(db, limit=3, owner=W2)) == ["j3", "j4", "j5"]
    assert keys(claim(db, limit=3)) == ["j6"]
    assert claim(db, limit=3) == []


def test_a_claim_takes_only_the_queues_asked_for(db: SqlJobStore) -> None:
    enqueue(db, new_job("a1", "a"), new_job("b1", "b"), new_job("c1", "c"), new_job("a2", "a"))
    assert keys(claim(db, queues=["a"])) == ["a1", "a2"]
    assert keys(claim(db, queues=["b", "c", "nothing"])) == ["b1", "c1"]
    enqueue(db, new_job("d1", "d"), new_job("b2", "b"))
    assert keys(claim(db, queues=[])) == ["d1", "b2"]  # empty: every queue


def test_paused_queues_are_not_claimed(db: SqlJobStore) -> None:
    enqueue(db, new_job("a1", "a"), new_job("b1", "b"), new_job("a2", "a"), new_job("b2", "b"))
    db.set_paused("a", True)
    assert db.paused_queues() == ["a"]
    assert keys(claim(db, limit=1)) == ["b1"]
    assert claim(db, queues=["a"]) == []
    db.set_paused("b", True)
    assert claim(db) == []
    db.set_paused("b", False)
    db.set_paused(PAUSED_ALL, True)  # every queue
    assert sorted(db.paused_queues()) == [PAUSED_ALL, "a"]
    assert claim(db) == []
    assert claim(db, queues=["b"]) == []
    db.set_paused(PAUSED_ALL, False)  # resuming every queue lifts a's own pause too
    assert db.paused_queues() == []
    assert keys(claim(db)) == ["a1", "a2", "b2"]


def test_jobs_not_due_yet_are_not_claimed(db: SqlJobStore) -> None:
    enqueue(db, new_job("later", due_at=T + 10), new_job("now"))
    assert job(db, "later").shown == "scheduled"
    assert keys(claim(db, T)) == ["now"]
    assert claim(db, T + 9.999) == []
    assert job(db, "later", T + 10).shown == "pending"
    assert keys(claim(db, T + 10)) == ["later"]


def test_waiting_jobs_are_not_claimed_until_their_dependencies_complete(db: SqlJobStore) -> None:
    enqueue(db, new_job("p1"), new_job("p2"), new_job("child", depends_on=["p1", "p2"], priority=100))
    first = claim(db, limit=1)
    assert keys(first) == ["p1"]  # the child's priority does not matter while it waits
    finish(db, first[0], TaskStatus.SUCCESS, T + 1)
    child = job(db, "child", T + 1)
    assert (child.waiting_on, child.shown, child.updated_at) == (1, "waiting", T + 1)
    assert keys(claim(db, T + 1)) == ["p2"]
    assert claim(db, T + 1) == []
    p2 = job(db, "p2", T + 1)
    finish(db, p2, TaskStatus.SUCCESS, T + 2)
    child = job(db, "child", T + 2)
    assert (child.waiting_on, child.shown) == (0, "pending")
    assert keys(claim(db, T + 2)) == ["child"]


def test_two_stores_on_one_database_never_claim_the_same_job(store_target: StoreTarget) -> None:
    first = open_kind(store_target)
    enqueue(first, *(new_job(f"j{n:03}") for n in range(200)))
    second = open_kind(store_target)
    barrier = threading.Barrier(2)
    claimed: List[List[str]] = [[], []]
    errors: List[BaseException] = []

    def worker(index: int, store: SqlJobStore, owner: str) -> None:
        try:
            barrier.wait()
            while True:
                got = store.claim_queue_jobs(owner, T, (), 3, LEASE)
                if not got:
                    return
                claimed[index].extend(one.key for one in got)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(0, first, W1)),
               threading.Thread(target=worker, args=(1, second, W2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors
        assert not set(claimed[0]) & set(claimed[1])
        assert len(claimed[0]) + len(claimed[1]) == 200
        assert sorted(claimed[0] + claimed[1]) == [f"j{n:03}" for n in range(200)]
        owners = dict(first.connection.execute("SELECT name, lease_owner FROM jobs").fetchall())
        assert all(owners[key] == W1 for key in claimed[0])
        assert all(owners[key] == W2 for key in claimed[1])
        assert first.queue_counts(T) == {"processing": 200}
    finally:
        first.close()
        second.close()


# -- leases -------------------------------------------------------------------------------------
def test_an_expired_lease_is_taken_back_and_its_attempt_counts(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=2), new_job("child", depends_on=["a"]))
    assert keys(claim(db, T, W1)) == ["a"]
    assert claim(db, T + LEASE - 0.001, W2) == []  # the lease still holds
    again = claim(db, T + LEASE, W2)
    assert keys(again) == ["a"]
    assert (again[0].attempts, again[0].tries, again[0].lease_owner) == (2, 2, W2)
    assert history(db, "a") == [(1, LOST, W1)]
    lost = db.queue_attempts(again[0].row)[0]
    assert (lost.error, lost.ended_at) == (LEASE_EXPIRED, T + LEASE)
    with pytest.raises(LeaseLost):  # the first worker's end comes too late
        finish(db, again[0], TaskStatus.SUCCESS, T + LEASE + 1, owner=W1)
    # the second worker vanishes too, during the last attempt: dead, and its dependent with it
    assert claim(db, T + 2 * LEASE, W1) == []
    a = job(db, "a", T + 2 * LEASE)
    assert (a.state, a.attempts, a.last_status, a.last_error, a.lease_owner) == (
        JobState.DEAD, 2, LOST, LOST_LAST, None)
    assert history(db, "a") == [(1, LOST, W1), (2, LOST, W2)]
    child = job(db, "child", T + 2 * LEASE)
    assert (child.state, child.last_error) == (JobState.DEAD, "its dependency a is dead")


def test_renew_returns_only_the_leases_still_held(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"), new_job("b"), new_job("c"), new_job("d"))
    mine = claim(db, T, W1, limit=2)
    theirs = claim(db, T, W2, limit=1)
    rows = [one.row for one in mine]
    held = db.renew_queue_leases(W1, [*rows, theirs[0].row, 99999, job(db, "d").row], T + 100)
    assert sorted(held) == sorted(rows)
    assert [job(db, key).lease_expires_at for key in ("a", "b", "c")] == [T + 100, T + 100, T + LEASE]
    assert db.renew_queue_leases(W1, [], T + 200) == []


def test_released_jobs_go_back_as_they_were(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"), new_job("b"), now=T - 10)
    claimed = claim(db, T)
    assert db.release_queue_jobs(W2, [one.row for one in claimed], T + 1) == 0  # not W2's
    assert db.release_queue_jobs(W1, [one.row for one in claimed], T + 1) == 2
    for key in ("a", "b"):
        found = job(db, key, T + 1)
        assert (found.state, found.shown, found.attempts, found.tries, found.lease_owner,
                found.lease_expires_at) == (JobState.PENDING, "pending", 0, 0, None, None)
        assert db.queue_attempts(found.row) == []
    assert keys(claim(db, T + 1)) == ["a", "b"]
    assert db.release_queue_jobs(W1, [], T + 1) == 0


def test_a_released_job_keeps_its_place_in_line(db: SqlJobStore) -> None:
    """Released "as if never claimed": its due time stays, so it is next again, before a job
    that became due after it."""
    enqueue(db, new_job("first", due_at=T - 10), new_job("second", due_at=T - 5), now=T - 20)
    taken = claim(db, T, limit=1)
    assert keys(taken) == ["first"]
    db.release_queue_jobs(W1, [taken[0].row], T + 1)
    assert job(db, "first", T + 1).next_attempt_at == T - 10
    assert keys(claim(db, T + 2, limit=1)) == ["first"]


# -- an attempt's end ---------------------------------------------------------------------------
def test_a_success_completes_the_job_and_records_the_attempt(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"))
    claimed = claim(db, T)[0]
    outcome = finish(db, claimed, TaskStatus.SUCCESS, T + 1)
    assert (outcome.key, outcome.state, outcome.due_at, outcome.interrupted) == (
        "a", JobState.SUCCEEDED, None, False)
    a = job(db, "a", T + 1)
    assert (a.state, a.shown, a.attempts, a.exit_code, a.lease_owner, a.last_status, a.updated_at) == (
        JobState.SUCCEEDED, "completed", 1, 0, None, "SUCCESS", T + 1)
    [attempt] = db.queue_attempts(a.row)
    assert (attempt.attempt, attempt.status, attempt.exit_code, attempt.worker, attempt.stdout,
            attempt.stderr) == (1, "SUCCESS", 0, W1, "out", "err")
    assert claim(db, T + 1) == []


def test_a_failure_waits_for_its_backoff_then_the_last_one_is_dead(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=3), new_job("child", depends_on=["a"]))
    first = claim(db, T)[0]
    outcome = finish(db, first, TaskStatus.FAILED, T + 1, base=2.0, most=3600.0)
    assert (outcome.state, outcome.due_at) == (JobState.FAILED, T + 1 + 2.0)  # 2 ** 1
    a = job(db, "a", T + 1)
    assert (a.state, a.shown, a.attempts, a.next_attempt_at, a.lease_owner) == (
        JobState.FAILED, "failed", 1, T + 3, None)
    assert claim(db, T + 2.999) == []
    second = claim(db, T + 3)
    assert keys(second) == ["a"]
    assert (second[0].attempts, second[0].tries) == (2, 2)
    # 2 ** 2 = 4, but backoff_max is 3; a timeout waits as a failure does
    outcome = finish(db, second[0], TaskStatus.TIMEOUT, T + 4, base=2.0, most=3.0)
    assert (outcome.state, outcome.due_at) == (JobState.TIMEOUT, T + 7)
    assert job(db, "a", T + 4).shown == "failed"
    third = claim(db, T + 7)
    assert (third[0].attempts, third[0].tries) == (3, 3)
    outcome = finish(db, third[0], TaskStatus.ERROR, T + 8)
    assert (outcome.state, outcome.due_at) == (JobState.DEAD, None)
    a = job(db, "a", T + 8)
    assert (a.state, a.shown, a.attempts, a.last_status) == (JobState.DEAD, "dead", 3, "ERROR")
    assert [attempt.status for attempt in db.queue_attempts(a.row)] == ["FAILED", "TIMEOUT", "ERROR"]
    child = job(db, "child", T + 8)
    assert (child.state, child.last_status, child.last_error) == (
        JobState.DEAD, "DEPENDENCY", "its dependency a is dead")
    assert claim(db, T + 10_000) == []


def test_backoff_base_to_the_attempts_counts_the_counted_attempts(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=10))
    now = T
    waits = []
    for _ in range(4):
        claimed = claim(db, now)[0]
        outcome = finish(db, claimed, TaskStatus.FAILED, now, base=3.0, most=50.0)
        waits.append(outcome.due_at - now)
        now = outcome.due_at
    assert waits == [3.0, 9.0, 27.0, 50.0]


@pytest.mark.parametrize("max_retries", [0, 1])
def test_max_retries_0_and_1_both_mean_one_attempt(db: SqlJobStore, max_retries: int) -> None:
    enqueue(db, new_job("a", max_retries=max_retries))
    claimed = claim(db, T)[0]
    assert finish(db, claimed, TaskStatus.FAILED, T + 1).state is JobState.DEAD
    a = job(db, "a", T + 1)
    assert (a.state, a.attempts) == (JobState.DEAD, 1)
    assert claim(db, T + 10_000) == []


def test_an_interrupted_attempt_is_pending_again_and_not_counted(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=1), new_job("child", depends_on=["a"]))
    claimed = claim(db, T)[0]
    outcome = db.finish_queue_attempt(W1, TaskResult.cancelled(claimed.to_task(), "worker stopped"), T + 1,
                                      2.0, 3600.0)
    assert (outcome.key, outcome.state, outcome.due_at, outcome.interrupted) == (
        "a", JobState.PENDING, None, True)
    a = job(db, "a", T + 1)
    assert (a.state, a.shown, a.attempts, a.tries, a.next_attempt_at, a.lease_owner) == (
        JobState.PENDING, "pending", 0, 1, T + 1, None)
    assert history(db, "a") == [(1, INTERRUPTED, W1)]
    assert job(db, "child", T + 1).state is JobState.PENDING  # its dependent still waits
    again = claim(db, T + 1)
    assert (again[0].attempts, again[0].tries) == (1, 2)  # its one attempt is still there
    finish(db, again[0], TaskStatus.SUCCESS, T + 2)
    assert history(db, "a") == [(1, INTERRUPTED, W1), (2, "SUCCESS", W1)]


def test_a_running_job_cancelled_by_the_user_ends_cancelled(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"), new_job("child", depends_on=["a"]))
    claimed = claim(db, T)[0]
    assert db.cancel_requested(W1) == []
    assert db.cancel_queue_job("a", T + 1) == "running"
    assert job(db, "a", T + 1).state is JobState.RUNNING  # its worker stops it
    assert db.cancel_requested(W1) == [claimed.row]
    assert db.cancel_requested(W2) == []
    result = TaskResult.cancelled(claimed.to_task(), "cancelled by the user", worker_id=1)
    outcome = db.finish_queue_attempt(W1, result, T + 2, 2.0, 3600.0)
    assert (outcome.state, outcome.interrupted) == (JobState.CANCELLED, False)
    a = job(db, "a", T + 2)
    assert (a.state, a.shown, a.lease_owner) == (JobState.CANCELLED, "cancelled", None)
    assert history(db, "a") == [(1, "CANCELLED", W1)]
    child = job(db, "child", T + 2)
    assert (child.state, child.last_error) == (JobState.DEAD, "its dependency a was cancelled")
    assert db.cancel_requested(W1) == []


def test_an_end_from_a_worker_that_does_not_hold_the_job_is_refused(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"), new_job("b"))
    a, b = claim(db, T)
    for status in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED):
        with pytest.raises(LeaseLost) as caught:
            finish(db, a, status, T + 1, owner=W2)
        assert caught.value.owner == W2
    finish(db, b, TaskStatus.SUCCESS, T + 1)
    with pytest.raises(LeaseLost):  # ended once already
        finish(db, b, TaskStatus.SUCCESS, T + 2)
    with pytest.raises(LeaseLost):
        finish(db, b, TaskStatus.FAILED, T + 2)
    assert job(db, "a", T + 2).state is JobState.RUNNING  # nothing changed
    assert job(db, "b", T + 2).state is JobState.SUCCEEDED
    assert len(db.queue_attempts(b.row)) == 1


# -- cancel, retry, purge -----------------------------------------------------------------------
def test_cancelling_a_pending_job_kills_its_dependents_down_the_chain(db: SqlJobStore) -> None:
    enqueue(db, new_job("a"), new_job("b", depends_on=["a"]), new_job("c", depends_on=["b"]),
            new_job("d", depends_on=["c", "other"]), new_job("other"))
    assert db.cancel_queue_job("a", T + 1) == "pending"
    a = job(db, "a", T + 1)
    assert (a.state, a.last_status, a.last_error, a.ended_at) == (
        JobState.CANCELLED, "CANCELLED", "cancelled by the user", T + 1)
    assert [(key, job(db, key, T + 1).state, job(db, key, T + 1).last_error) for key in "bcd"] == [
        ("b", JobState.DEAD, "its dependency a was cancelled"),
        ("c", JobState.DEAD, "its dependency b is dead"),
        ("d", JobState.DEAD, "its dependency c is dead"),
    ]
    assert job(db, "other", T + 1).state is JobState.PENDING
    assert db.cancel_queue_job("missing", T + 1) is None
    assert db.cancel_queue_job("a", T + 2) == "cancelled"  # again: nothing changes
    assert job(db, "a", T + 2).updated_at == T + 1


def test_cancel_of_a_job_waiting_for_its_retry_or_finished(db: SqlJobStore) -> None:
    enqueue(db, new_job("retrying"), new_job("done"))
    claimed = {one.key: one for one in claim(db, T)}
    finish(db, claimed["retrying"], TaskStatus.FAILED, T + 1)
    finish(db, claimed["done"], TaskStatus.SUCCESS, T + 1)
    assert db.cancel_queue_job("retrying", T + 2) == "failed"
    assert job(db, "retrying", T + 2).state is JobState.CANCELLED
    assert db.cancel_queue_job("done", T + 2) == "succeeded"
    assert job(db, "done", T + 2).state is JobState.SUCCEEDED
    assert claim(db, T + 10_000) == []


def test_chains_of_a_thousand_die_in_one_cancel(db: SqlJobStore) -> None:
    chain = [new_job("n0")] + [new_job(f"n{n}", depends_on=[f"n{n - 1}"]) for n in range(1, 1000)]
    enqueue(db, *chain)
    db.cancel_queue_job("n0", T + 1)
    assert db.queue_counts(T + 1) == {"cancelled": 1, "dead": 999}


def test_retry_dead_jobs_resets_attempts_and_waits_again(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=1), new_job("b", depends_on=["a", "ok"]), new_job("ok"),
            new_job("lone", max_retries=1))
    claimed = {one.key: one for one in claim(db, T)}
    finish(db, claimed["ok"], TaskStatus.SUCCESS, T + 1)
    finish(db, claimed["a"], TaskStatus.FAILED, T + 1)
    finish(db, claimed["lone"], TaskStatus.FAILED, T + 1)
    assert job(db, "b", T + 1).state is JobState.DEAD
    assert db.retry_dead_jobs(["a", "b"], T + 2) == 2
    a = job(db, "a", T + 2)
    assert (a.state, a.shown, a.attempts, a.next_attempt_at, a.waiting_on) == (
        JobState.PENDING, "pending", 0, T + 2, 0)
    b = job(db, "b", T + 2)
    assert (b.state, b.shown, b.attempts, b.waiting_on) == (JobState.PENDING, "waiting", 0, 1)  # a, not ok
    assert job(db, "lone", T + 2).state is JobState.DEAD
    again = claim(db, T + 2)
    assert keys(again) == ["a"]
    assert (again[0].attempts, again[0].tries) == (1, 2)  # one more attempt; the history goes on
    finish(db, again[0], TaskStatus.SUCCESS, T + 3)
    assert job(db, "b", T + 3).waiting_on == 0
    assert keys(claim(db, T + 3)) == ["b"]
    assert db.retry_dead_jobs(None, T + 4) == 1  # every dead job: lone
    assert job(db, "lone", T + 4).state is JobState.PENDING
    assert db.retry_dead_jobs(None, T + 5) == 0


def test_purge_deletes_only_finished_jobs_changed_before_the_time(db: SqlJobStore) -> None:
    enqueue(db, new_job("done"), new_job("dead", max_retries=1), new_job("cancelled"), new_job("pending"),
            new_job("failed"), new_job("running"))
    claimed = {one.key: one for one in claim(db, T, limit=5)}
    assert "running" not in claimed and "pending" in claimed
    db.release_queue_jobs(W1, [claimed["pending"].row, claimed["cancelled"].row], T)
    finish(db, claimed["done"], TaskStatus.SUCCESS, T + 1)
    finish(db, claimed["dead"], TaskStatus.FAILED, T + 2)
    finish(db, claimed["failed"], TaskStatus.FAILED, T + 2)
    db.cancel_queue_job("cancelled", T + 3)
    claim(db, T + 3, queues=["default"], limit=1)  # "pending", by enqueue order
    done_row = job(db, "done").row
    assert db.purge_queue_jobs(["pending", "running", "failed", "timeout"], None) == 0
    assert db.purge_queue_jobs(["succeeded", "dead", "cancelled"], T + 2.5) == 2
    assert db.get_queue_job("done", T + 4) is None
    assert db.get_queue_job("dead", T + 4) is None
    assert db.queue_attempts(done_row) == []  # the history went with it
    left = db.connection.execute("SELECT COUNT(*) FROM attempts WHERE job_id = ?", (done_row,)).fetchone()
    assert left == (0,)
    assert db.purge_queue_jobs(["cancelled"], T + 3) == 0  # changed at T + 3, not before
    assert db.purge_queue_jobs(["cancelled"], None) == 1
    assert sorted(one.key for one in db.iter_queue_jobs(T + 4)) == ["failed", "pending", "running"]


# -- reading ------------------------------------------------------------------------------------
def test_queue_counts_name_every_shown_state(db: SqlJobStore) -> None:
    enqueue(db, new_job("pending", "q1"), new_job("scheduled", "q1", due_at=T + 100),
            new_job("waiting", "q2", depends_on=["pending"]), new_job("processing", "q2"),
            new_job("completed", "q2"), new_job("failed", "q2"), new_job("dead", "q2", max_retries=1),
            new_job("cancelled", "q2"))
    claimed = {one.key: one for one in claim(db, T, queues=["q2"])}
    finish(db, claimed["completed"], TaskStatus.SUCCESS, T)
    finish(db, claimed["failed"], TaskStatus.FAILED, T)
    finish(db, claimed["dead"], TaskStatus.FAILED, T)
    db.release_queue_jobs(W1, [claimed["cancelled"].row], T)
    db.cancel_queue_job("cancelled", T)
    shown = ["pending", "scheduled", "waiting", "processing", "completed", "failed", "dead", "cancelled"]
    assert db.queue_counts(T) == {state: 1 for state in shown}
    assert [job(db, key).shown for key in shown] == shown
    assert db.queue_counts(T, "q1") == {"pending": 1, "scheduled": 1}
    assert db.queue_counts(T + 100, "q1") == {"pending": 2}  # the scheduled one is due by then
    assert db.queue_counts(T, "nothing") == {}
    for state in shown:
        assert keys(list(db.iter_queue_jobs(T, states=[state]))) == [state]
    assert keys(list(db.iter_queue_jobs(T, states=["dead", "pending"]))) == ["pending", "dead"]
    assert keys(list(db.iter_queue_jobs(T, queue="q1"))) == ["pending", "scheduled"]


def test_iter_queue_jobs_pages_through_many_jobs(db: SqlJobStore) -> None:
    count = 1234
    enqueue(db, *(new_job(f"j{n:04}", due_at=T + 50 if n % 3 == 0 else None) for n in range(count)))
    everything = list(db.iter_queue_jobs(T))
    assert keys(everything) == [f"j{n:04}" for n in range(count)]
    assert len({one.row for one in everything}) == count
    scheduled = list(db.iter_queue_jobs(T, states=["scheduled"]))
    assert keys(scheduled) == [f"j{n:04}" for n in range(0, count, 3)]
    assert keys(list(db.iter_queue_jobs(T, states=["pending"], limit=600))) == [
        f"j{n:04}" for n in range(count) if n % 3][:600]
    assert len(list(db.iter_queue_jobs(T, limit=1000))) == 1000
    assert len(list(db.iter_queue_jobs(T, limit=500))) == 500
    assert list(db.iter_queue_jobs(T, limit=0)) == []
    # by last change: these three last, in the order they changed; ties by enqueue order
    for offset, key in enumerate(("j0005", "j1000", "j0001"), start=1):
        db.cancel_queue_job(key, T + offset)
    by_update = keys(list(db.iter_queue_jobs(T, order="updated")))
    rest = [f"j{n:04}" for n in range(count) if n not in (1, 5, 1000)]
    assert by_update == [*rest, "j0005", "j1000", "j0001"]
    assert keys(list(db.iter_queue_jobs(T, order="updated", states=["cancelled"]))) == [
        "j0005", "j1000", "j0001"]
    assert len(list(db.iter_queue_jobs(T, order="updated", limit=700))) == 700


# -- settings, pauses, when the next job is due ---------------------------------------------------
def test_settings_are_stored_overwritten_and_removed(db: SqlJobStore) -> None:
    assert db.get_settings("queue.") == {}
    db.set_setting("queue.max-retries", "5")
    db.set_setting("queue.backoff-base", "3")
    db.set_setting("queue.max-retries", "7")
    db.set_paused("q", True)
    assert db.get_settings("queue.") == {"queue.backoff-base": "3", "queue.max-retries": "7"}
    assert db.get_settings()["queue.max-retries"] == "7"
    db.set_setting("queue.max-retries", None)
    db.set_setting("queue.never-set", None)  # removing a missing key is fine
    assert db.get_settings("queue.") == {"queue.backoff-base": "3"}
    assert db.paused_queues() == ["q"]


def test_next_due_at_is_the_earliest_due_time_or_lease_expiry(db: SqlJobStore) -> None:
    assert db.next_due_at([], T) is None
    enqueue(db, new_job("later", "a", due_at=T + 50), new_job("soon", "b", due_at=T + 20),
            new_job("waits", "a", depends_on=["later"]), new_job("run", "c"))
    assert db.next_due_at([], T) == T  # "run" is due now
    claim(db, T, queues=["c"], lease=10)
    assert db.next_due_at([], T) == T + 10  # its lease runs out first
    assert db.next_due_at(["a"], T) == T + 50  # the waiting one does not count
    assert db.next_due_at(["a", "b"], T) == T + 20
    assert db.next_due_at(["nothing"], T) is None
    db.set_paused("c", True)
    assert db.next_due_at([], T) == T + 20
    assert db.next_due_at(["c"], T) is None
    db.set_paused(PAUSED_ALL, True)
    assert db.next_due_at([], T) is None
    assert db.next_due_at(["a"], T) is None
    db.set_paused(PAUSED_ALL, False)
    assert db.next_due_at([], T) == T + 10


# -- workers --------------------------------------------------------------------------------------
def worker(owner: str, heartbeat: float, queues: Tuple[str, ...] = (), wake: Optional[str] = None,
           started: float = T) -> WorkerRecord:
    return WorkerRecord(id=owner, pid=1000 + len(owner), host="host", slots=2, queues=queues,
                        started_at=started, heartbeat_at=heartbeat, jobs_done=0, stop_requested=False,
                        wake=wake)


def test_workers_register_beat_list_stop_and_are_forgotten(db: SqlJobStore) -> None:
    db.register_worker(worker(W1, T, ("a", "b"), wake="@w1"))
    db.register_worker(worker(W2, T - 100, wake=None, started=T - 200))
    enqueue(db, new_job("j1", "a"), new_job("j2", "a"), new_job("j3", "b"))
    claim(db, T, W1, queues=["a"])
    listed = db.list_workers()
    assert [one.id for one in listed] == [W2, W1]  # oldest first
    w1 = listed[1]
    assert (w1.pid, w1.host, w1.slots, w1.queues, w1.started_at, w1.heartbeat_at, w1.jobs_done,
            w1.stop_requested, w1.wake, w1.current) == (
        1000 + len(W1), "host", 2, ("a", "b"), T, T, 0, False, "@w1", ("j1", "j2"))
    assert listed[0].current == () and listed[0].queues == ()
    assert db.worker_heartbeat(W1, T + 5, jobs_done=3) is False
    assert [(one.id, one.heartbeat_at, one.jobs_done) for one in db.list_workers(alive_since=T)] == [
        (W1, T + 5, 3)]
    assert db.worker_wake_addresses(T - 1000) == ["@w1"]  # W2 has none
    assert db.worker_wake_addresses(T + 6) == []
    assert db.worker_stop_requested(W1) is False
    stopped = db.request_worker_stop(alive_since=T)  # only the live ones
    assert [(one.id, one.stop_requested) for one in stopped] == [(W1, True)]
    assert db.worker_stop_requested(W1) is True
    assert db.worker_heartbeat(W1, T + 6, jobs_done=3) is True
    assert db.worker_stop_requested(W2) is False
    assert db.forget_workers(heartbeat_before=T) == 1
    assert [one.id for one in db.list_workers()] == [W1]
    db.remove_worker(W1)
    assert db.list_workers() == []
    assert db.worker_heartbeat(W1, T + 7) is True  # its row is gone: it is not wanted either
    assert db.worker_stop_requested(W1) is True
    db.register_worker(worker(W1, T + 8))  # registering again starts afresh
    assert [(one.stop_requested, one.jobs_done) for one in db.list_workers()] == [(False, 0)]


# -- text PostgreSQL cannot hold ------------------------------------------------------------------
# A NUL (a program's binary output) and a lone surrogate (an undecodable byte of a file name, as
# os.fsdecode gives it). SQLite keeps both exactly; PostgreSQL's text holds neither, and its store
# keeps each as U+FFFD (the documented difference, parallelr/jobs/postgres.py). JSON columns (argv,
# env) hold them escaped, so they come back exactly from both.
WITH_NUL = "bin\x00ary \u2603 \x01 output"
WITH_NUL_ON_POSTGRESQL = "bin\ufffdary \u2603 \x01 output"
UNDECODABLE = "/srv/odd \udcff dir"
UNDECODABLE_ON_POSTGRESQL = "/srv/odd \ufffd dir"


def test_output_and_errors_with_a_nul(db: SqlJobStore, store_kind: str) -> None:
    command = f"printf '{WITH_NUL}'"
    enqueue(db, NewJob(key="nul", queue="default", argv=("/bin/sh", "-c", command), shell=True,
                       env=(("V", WITH_NUL),), max_retries=1))
    claimed = claim(db, T)[0]
    failed = TaskResult(task=claimed.to_task(), status=TaskStatus.FAILED, worker_id=1, exit_code=1,
                        start_time=T, end_time=T + 1, duration=1.0, stdout=WITH_NUL, stderr=WITH_NUL[::-1],
                        error_message=WITH_NUL)
    assert db.finish_queue_attempt(W1, failed, T + 1, 2.0, 3600.0).state is JobState.DEAD
    text = WITH_NUL_ON_POSTGRESQL if store_kind == "postgresql" else WITH_NUL
    nul = job(db, "nul", T + 1)
    assert (nul.argv, nul.env, nul.command) == (("/bin/sh", "-c", command), (("V", WITH_NUL),), command)
    assert nul.last_error == text
    [attempt] = db.queue_attempts(nul.row)
    assert (attempt.stdout, attempt.stderr, attempt.error) == (text, text[::-1], text)


def test_a_directory_and_an_error_with_undecodable_bytes(db: SqlJobStore, store_kind: str) -> None:
    enqueue(db, new_job("odd", cwd=UNDECODABLE, max_retries=1))
    text = UNDECODABLE_ON_POSTGRESQL if store_kind == "postgresql" else UNDECODABLE
    assert job(db, "odd").cwd == text
    [claimed] = claim(db, T)
    assert claimed.to_task().cwd == text
    error = f"cannot start: [Errno 2] No such file or directory: '{UNDECODABLE}'"
    failed = TaskResult(task=claimed.to_task(), status=TaskStatus.ERROR, worker_id=1, error_message=error)
    assert db.finish_queue_attempt(W1, failed, T + 1, 2.0, 3600.0).state is JobState.DEAD
    expected = error.replace(UNDECODABLE, text)
    odd = job(db, "odd", T + 1)
    assert (odd.cwd, odd.last_error) == (text, expected)
    assert [attempt.error for attempt in db.queue_attempts(odd.row)] == [expected]


# -- migration ------------------------------------------------------------------------------------
def test_a_version_3_database_is_migrated_to_version_4(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for step in sqlite_module.MIGRATIONS[:3]:
        for statement in step:
            connection.execute(statement)
    connection.execute("PRAGMA user_version = 3")
    connection.execute(
        "INSERT INTO runs (id, app_name, pid, started_at, state, planned) VALUES"
        " ('20261123-104148-272c69', 'parallelr', 1, 1.0, 'finished', 1)"
    )
    connection.execute(
        "INSERT INTO jobs (run_id, position, source, argv, state, attempts, max_attempts, created_at,"
        " updated_at) VALUES ('20261123-104148-272c69', 1, '/t/a.sh', '[\"bash\", \"/t/a.sh\"]', 'succeeded',"
        " 1, 3, 2.0, 3.0)"
    )
    connection.execute(
        "INSERT INTO jobs (queue, name, source, argv, state, max_attempts, next_attempt_at, created_at,"
        " updated_at) VALUES ('old', 'legacy', 'legacy', '[\"/bin/sh\", \"-c\", \"true\"]', 'pending', 2,"
        " 5.0, 4.0, 4.0)"
    )
    connection.close()
    store = open_store(path)
    try:
        assert sqlite_module.schema_version(store.connection) == 5
        tables = {row[0] for row in store.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"job_deps", "workers"} <= tables
        run = store.get_run("20261123-104148-272c69")
        assert run is not None and (run.state, run.planned) == ("finished", 1)
        [old] = store.connection.execute(
            "SELECT source, argv, state, attempts, max_attempts, priority, tries, waiting_on,"
            " cancel_requested, timeout, cwd FROM jobs WHERE run_id IS NOT NULL"
        ).fetchall()
        assert old == ("/t/a.sh", '["bash", "/t/a.sh"]', "succeeded", 1, 3, 0, 0, 0, 0, None, None)
        legacy = job(store, "legacy", 10.0)
        assert (legacy.queue, legacy.argv, legacy.state, legacy.shown, legacy.priority, legacy.max_retries,
                legacy.timeout, legacy.cwd, legacy.waiting_on) == (
            "old", ("/bin/sh", "-c", "true"), JobState.PENDING, "pending", 0, 2, None, None, 0)
        # and the new tables work
        enqueue(store, new_job("next", depends_on=["legacy"]), now=10.0)
        assert job(store, "next", 10.0).waiting_on == 1
        assert keys(claim(store, 10.0)) == ["legacy"]
    finally:
        store.close()
    again = open_store(path)  # opening it again changes nothing
    assert sqlite_module.schema_version(again.connection) == 5
    assert again.queue_counts(10.0) == {"processing": 1, "waiting": 1}
    again.close()


def test_a_cancel_asked_for_wins_over_a_failure_that_came_first(db: SqlJobStore) -> None:
    enqueue(db, new_job("a", max_retries=3))
    claimed = claim(db, T)[0]
    assert db.cancel_queue_job("a", T + 1) == "running"
    failed = TaskResult(task=claimed.to_task(), status=TaskStatus.FAILED, worker_id=1, exit_code=1,
                        error_message="Exit code 1")
    outcome = db.finish_queue_attempt(W1, failed, T + 2, 2.0, 3600.0)
    assert outcome.state is JobState.CANCELLED  # not retried: the user cancelled it
    assert history(db, "a") == [(1, "FAILED", W1)]  # the attempt's own ending is kept
    assert db.claim_queue_jobs(W1, T + 100, (), 1, 30.0) == []
