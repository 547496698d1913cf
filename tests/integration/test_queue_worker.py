"""The queue worker's semantics with real worker processes and real signals: exactly-once claims
across processes, leases taken back after a kill -9, retry back-off, claim order, pauses,
dependencies, graceful and forced stops, restarts, ``worker list|stop``, cancel and timeouts.

Every test runs against both stores (:mod:`store_support`): a SQLite file and a PostgreSQL
database of its own. Its store has ``lease-seconds 2``, ``heartbeat-seconds 0.5`` and
``backoff-base 1.5`` (lease and back-off tests are quick), is pointed at by ``$QUEUECTL_DB_PATH``,
and HOME is the test's temp home. Workers are started through the janitor, so none outlives its
test; eventual conditions are polled in the store with its own driver (cheap), and what is
asserted at the end is read through ``queuectl list|show --json``, the interface.
"""

from __future__ import annotations

import collections
import datetime
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import psutil
import pytest
from conftest import CliResult, cli_env
from store_support import StoreTarget

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
DB_VARIABLE = "QUEUECTL_DB_PATH"
LEASE = 2.0
HEARTBEAT = 0.5
BACKOFF_BASE = 1.5
OWNER_PID = re.compile(r"^worker:(\d+)@")


class Worker:
    """One ``queuectl worker start`` process, its output in a log file."""

    def __init__(self, popen: subprocess.Popen, log: Path) -> None:
        self.popen = popen
        self.log_path = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, pattern: str) -> List[re.Match]:
        """The log messages (after the ``time - LEVEL - `` prefix) that match ``pattern``."""
        regex = re.compile(pattern)
        found = []
        for line in self.log().splitlines():
            message = line.split(" - ", 2)[-1]
            match = regex.fullmatch(message)
            if match:
                found.append(match)
        return found

    def owner(self) -> str:
        started = self.lines(r"Worker (\S+) started: .*")
        assert len(started) == 1, self.log()
        return started[0].group(1)

    def send(self, number: int) -> None:
        self.popen.send_signal(number)

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.pid} did not exit within {timeout:g}s; its log:\n{self.log()}")


class Queue:
    """queuectl against one store, with HOME at the test's home; workers through the janitor."""

    def __init__(self, home: Path, root: Path, store: StoreTarget, janitor: Any, wait_until: Any) -> None:
        self.home = home
        self.root = root
        self.store = store
        self.db = store.location
        self.janitor = janitor
        self.wait_until = wait_until
        self._workers = 0

    # -- the CLI ---------------------------------------------------------------------------------
    def __call__(self, *args: str, timeout: float = 60) -> CliResult:
        done = subprocess.run(
            [*QUEUECTL, *args], env=cli_env(self.home, {DB_VARIABLE: str(self.db)}), cwd=str(self.root),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> CliResult:
        result = self(*args)
        assert result.returncode == 0, (args, result.output)
        return result

    def many(self, *calls: Sequence[str]) -> List[CliResult]:
        """Independent commands at the same time (each must succeed)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda call: self.ok(*call), calls))

    def enqueue(self, jobs: Iterable[Dict[str, Any]], name: str = "jobs.jsonl") -> List[str]:
        """``enqueue --file`` of these job objects (one transaction); returns the printed IDs."""
        jobs = list(jobs)
        path = self.root / name
        path.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
        result = self.ok("enqueue", "--file", str(path))
        assert result.stderr.strip().splitlines()[-1] == f"Enqueued {len(jobs)} job(s)", result.output
        keys = result.stdout.splitlines()
        assert len(keys) == len(jobs)
        return keys

    def jobs(self, *args: str) -> List[Dict[str, Any]]:
        return json.loads(self.ok("list", "--json", *args).stdout)

    def show(self, key: str) -> Dict[str, Any]:
        return json.loads(self.ok("show", key, "--json").stdout)

    # -- the store, read directly (polling) ------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] = ()) -> List[tuple]:
        return self.store.sql(query, params)

    def state(self, key: str) -> Optional[str]:
        rows = self.sql("SELECT state FROM jobs WHERE queue IS NOT NULL AND name = ?", (key,))
        return rows[0][0] if rows else None

    def count(self, state: str) -> int:
        return self.sql("SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state = ?", (state,))[0][0]

    def attempts(self, key: str) -> List[Dict[str, Any]]:
        """The attempts rows of job ``key`` (float times), in order."""
        rows = self.sql(
            "SELECT attempt, status, exit_code, worker, started_at, ended_at, error FROM attempts"
            " WHERE job_id = (SELECT id FROM jobs WHERE queue IS NOT NULL AND name = ?) ORDER BY attempt",
            (key,),
        )
        names = ("attempt", "status", "exit_code", "worker", "started_at", "ended_at", "error")
        return [dict(zip(names, row)) for row in rows]

    def wait_state(self, key: str, state: str, timeout: float = 20) -> None:
        self.wait_until(lambda: self.state(key) == state, timeout, f"job {key} to be {state} "
                        f"(it is {self.state(key)})")

    # -- workers -----------------------------------------------------------------------------------
    def start_worker(self, *args: str, started: bool = True) -> Worker:
        self._workers += 1
        log = self.root / f"worker-{self._workers}.log"
        with open(log, "wb") as handle:
            popen = self.janitor.popen(
                [*QUEUECTL, "worker", "start", *args], self.home, env={DB_VARIABLE: str(self.db)},
                cwd=str(self.root), stdout=handle, stderr=subprocess.STDOUT,
            )
        worker = Worker(popen, log)
        if started:
            self.wait_started(worker)
        return worker

    def wait_started(self, worker: Worker, timeout: float = 30) -> None:
        def ready() -> bool:
            if worker.popen.poll() is not None:
                pytest.fail(f"worker exited with {worker.popen.returncode}:\n{worker.log()}")
            return bool(worker.lines(r"Worker \S+ started: .*"))

        self.wait_until(ready, timeout, f"worker {worker.pid} to start")


@pytest.fixture
def queue(home: Path, tmp_path: Path, store_target: StoreTarget, janitor: Any, wait_until: Any) -> Queue:
    store_target.configure(heartbeat_seconds=HEARTBEAT, lease_seconds=LEASE, backoff_base=BACKOFF_BASE)
    return Queue(home, tmp_path, store_target, janitor, wait_until)


def append(path: Path, text: str) -> str:
    """A shell command that appends the line ``text`` to ``path``."""
    return f"echo {shlex.quote(text)} >> {shlex.quote(str(path))}"


def lines_of(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def descendants_alive(pid: int) -> List[psutil.Process]:
    """The live, non-zombie descendants of process ``pid`` (the jobs it runs)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    alive = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def iso_local(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat()


# -- 1. exactly once -------------------------------------------------------------------------------
def run_exactly_once(queue: Queue, out: Path, processes: int, slots: int, jobs: int) -> List[Worker]:
    """``processes`` workers of ``slots`` slots run ``jobs`` jobs, then stop: each job ran once,
    was picked once, has one SUCCESS attempt; returns the workers (stopped, exit 0)."""
    workers = [queue.start_worker("--count", str(slots), started=False) for _ in range(processes)]
    for worker in workers:
        queue.wait_started(worker)
    keys = [f"job-{number:03d}" for number in range(jobs)]
    assert queue.enqueue({"id": key, "command": append(out, key)} for key in keys) == keys

    queue.wait_until(lambda: queue.count("succeeded") == jobs, 60,
                     f"{jobs} completed jobs ({queue.count('succeeded')} so far)")
    stopped = queue.ok("worker", "stop")
    assert stopped.stdout == f"Asked {processes} worker(s) to stop once their running jobs finish\n"
    assert [worker.wait() for worker in workers] == [0] * processes

    ran = collections.Counter(lines_of(out))
    assert sorted(ran) == keys
    assert {key: n for key, n in ran.items() if n != 1} == {}
    assert len(queue.jobs("--state", "completed")) == jobs
    assert sorted((job["id"], job["state"], job["attempts"], job["exit_code"]) for job in queue.jobs()) == [
        (key, "completed", 1, 0) for key in keys
    ]
    assert queue.sql("SELECT attempt, status, COUNT(*) FROM attempts GROUP BY 1, 2") == [(1, "SUCCESS", jobs)]
    picked: collections.Counter = collections.Counter()
    for worker in workers:
        for match in worker.lines(r"Worker-(\d+): picked job (\S+) \(attempt 1\)"):
            assert 1 <= int(match.group(1)) <= slots, match.group(0)
            picked[match.group(2)] += 1
        assert worker.lines(r"Worker stopped: \d+ job\(s\) done"), worker.log()
    assert sorted(picked) == keys and set(picked.values()) == {1}
    return workers


def test_eight_worker_processes_run_each_of_500_jobs_exactly_once(queue: Queue, tmp_path: Path) -> None:
    workers = run_exactly_once(queue, tmp_path / "ran.txt", processes=8, slots=1, jobs=500)
    busy = [worker for worker in workers if worker.lines(r"Worker-1: picked job .*")]
    assert len(busy) >= 2, "the 500 jobs were not shared between the worker processes"


def test_two_worker_processes_of_four_slots_run_each_of_400_jobs_exactly_once(
    queue: Queue, tmp_path: Path
) -> None:
    run_exactly_once(queue, tmp_path / "ran.txt", processes=2, slots=4, jobs=400)


def test_an_idle_worker_of_a_postgresql_store_wakes_on_notify_alone(queue: Queue, tmp_path: Path) -> None:
    """The worker has no due time to wake for and no datagram can reach it (its wake address is
    gone, as for a worker on another host): only PostgreSQL's NOTIFY tells it of the new job."""
    if not queue.store.is_postgres:
        pytest.skip("SQLite has no notifications: its workers wake on datagrams (tested above)")
    out = tmp_path / "out"
    worker = queue.start_worker("--count", "1")
    queue.sql("UPDATE workers SET wake = NULL")
    time.sleep(1.2)  # a few heartbeats: an idle worker that polled would show it now
    queue.enqueue([{"id": "told", "command": append(out, "told")}])
    queue.wait_state("told", "succeeded")
    assert lines_of(out) == ["told"]
    assert len(worker.lines(r"Worker-1: picked job told \(attempt 1\)")) == 1, worker.log()


def test_a_worker_of_a_postgresql_store_survives_its_connections_being_cut(
    queue: Queue, tmp_path: Path
) -> None:
    """The server drops every connection of the worker (a restart, a network cut): it connects
    again, listens again, and runs the jobs enqueued meanwhile and afterwards."""
    if not queue.store.is_postgres:
        pytest.skip("a SQLite file has no connection to lose")
    out = tmp_path / "out"
    worker = queue.start_worker("--count", "1")
    queue.enqueue([{"id": "before", "command": append(out, "before")}])
    queue.wait_state("before", "succeeded")
    cut = queue.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name = 'parallelr'")
    assert len(cut) == 3, cut  # the worker's two store connections and its LISTEN connection
    queue.enqueue([{"id": "during", "command": append(out, "during")}], name="during.jsonl")
    queue.wait_state("during", "succeeded")
    queue.enqueue([{"id": "after", "command": append(out, "after")}], name="after.jsonl")
    queue.wait_state("after", "succeeded")
    assert lines_of(out) == ["before", "during", "after"]
    assert worker.popen.poll() is None, worker.log()
    assert worker.lines(r"Listening for new jobs again"), worker.log()


# -- 2. kill -9 -------------------------------------------------------------------------------------
def test_a_job_of_a_killed_worker_is_taken_over_after_its_lease(queue: Queue, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    first, second = (queue.start_worker("--count", "1") for _ in range(2))
    by_pid = {first.pid: first, second.pid: second}
    queue.enqueue([{"id": "victim", "command": f"sleep 1.5; {append(marker, 'done')}"}])
    queue.wait_state("victim", "running")
    (owner,) = queue.sql("SELECT lease_owner FROM jobs WHERE name = 'victim'")[0]
    match = OWNER_PID.match(owner)
    assert match and int(match.group(1)) in by_pid, owner
    doomed = by_pid.pop(int(match.group(1)))
    (survivor,) = by_pid.values()
    assert doomed.owner() == owner
    killed_at = time.time()
    doomed.send(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    queue.wait_state("victim", "succeeded", timeout=30)
    job = queue.show("victim")
    assert (job["state"], job["attempts"], job["exit_code"]) == ("completed", 2, 0)
    assert [(a["attempt"], a["status"], a["worker"]) for a in job["attempts_detail"]] == [
        (1, "LOST", owner), (2, "SUCCESS", survivor.owner()),
    ]
    assert "lease" in job["attempts_detail"][0]["error"]
    rows = queue.attempts("victim")
    # the lease was renewed at most a heartbeat before the kill, and lasts LEASE seconds
    assert rows[1]["started_at"] >= killed_at + LEASE - HEARTBEAT - 0.1, (killed_at, rows)
    assert survivor.lines(r"Worker-1: picked job victim \(attempt 2\)"), survivor.log()
    assert survivor.lines(r"Worker-1: job victim completed successfully \(.*\)"), survivor.log()


# -- 3. back-off, DLQ, dlq retry --------------------------------------------------------------------
def test_failed_attempts_wait_the_backoff_then_dead_and_dlq_retry_runs_it_again(
    queue: Queue, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    runs = tmp_path / "runs"
    worker = queue.start_worker()
    command = f"{append(runs, 'run')}; test -f {shlex.quote(str(flag))} || exit 1"
    queue.enqueue([{"id": "flaky", "command": command, "max_retries": 3}])
    queue.wait_state("flaky", "dead", timeout=30)

    rows = queue.attempts("flaky")
    assert [(row["attempt"], row["status"], row["exit_code"]) for row in rows] == [
        (1, "FAILED", 1), (2, "FAILED", 1), (3, "FAILED", 1),
    ]
    assert rows[1]["started_at"] - rows[0]["ended_at"] >= BACKOFF_BASE ** 1, rows
    assert rows[2]["started_at"] - rows[1]["ended_at"] >= BACKOFF_BASE ** 2, rows
    assert lines_of(runs) == ["run"] * 3
    assert [m.group(1) for m in worker.lines(r"Worker-1: job flaky failed \(attempt (\d): exit code 1\), "
                                              r"retrying in \d+\.\ds")] == ["1", "2"]
    assert len(worker.lines(r"Worker-1: job flaky failed \(attempt 3: exit code 1\), moving to DLQ")) == 1

    as_json, as_text, _paused = queue.many(("dlq", "list", "--json"), ("dlq", "list"), ("pause",))
    assert [(job["id"], job["state"], job["attempts"], job["exit_code"], job["last_error"])
            for job in json.loads(as_json.stdout)] == [("flaky", "dead", 3, 1, "Exit code 1")]
    text = as_text.stdout.splitlines()
    assert len(text) == 2 and text[1].split()[:3] == ["flaky", "3/3", "1"], text

    flag.touch()  # paused (above), so that the retried job can be seen pending before it runs
    retried = queue.ok("dlq", "retry", "flaky")
    assert retried.stdout == "Retrying 1 job(s): pending again with attempts 0\n"
    shown, dlq = queue.many(("show", "flaky", "--json"), ("dlq", "list"))
    job = json.loads(shown.stdout)
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert dlq.stdout == "The dead letter queue is empty\n"
    queue.ok("resume")
    queue.wait_state("flaky", "succeeded")
    job = queue.show("flaky")
    assert (job["state"], job["attempts"], job["exit_code"]) == ("completed", 1, 0)
    assert [a["status"] for a in job["attempts_detail"]] == ["FAILED", "FAILED", "FAILED", "SUCCESS"]
    assert lines_of(runs) == ["run"] * 4
    # the log numbers the attempt as the job counts it: the first after the retry is attempt 1
    assert [m.group(1) for m in worker.lines(r"Worker-1: picked job flaky \(attempt (\d+)\)")] == [
        "1", "2", "3", "1",
    ]


# -- 4. claim order -----------------------------------------------------------------------------------
def test_one_slot_runs_jobs_by_priority_then_due_time_then_enqueue_order(
    queue: Queue, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    worker = queue.start_worker("--count", "1")
    before = time.time()
    run_at = before + 1.5

    def job(key: str, **fields: Any) -> Dict[str, Any]:
        return {"id": key, "command": append(order, key), **fields}

    queue.enqueue([
        job("low", priority="low"),
        job("n1"),
        job("hi", priority="high"),
        job("p5", priority=5),
        job("n2", priority=0),
        job("past", run_at=iso_local(before - 3600)),  # due an hour ago: before n1 and n2
        job("hi2", priority=10),  # = high, enqueued later
        job("delayed", priority=100, delay=1.0),
        job("timed", priority=50, run_at=iso_local(run_at)),
    ])
    # "delayed" is due 1 s after the enqueue command stored it; a slow enqueue can make that later
    # than "timed", so the two are compared by the due times the store holds
    due = dict(queue.sql("SELECT name, next_attempt_at FROM jobs WHERE name IN ('delayed', 'timed')"))
    queue.wait_state("timed", "succeeded")
    queue.wait_state("delayed", "succeeded")
    ran = lines_of(order)
    # the jobs due at once by priority, then due time, then enqueue order; a busy machine may run
    # "delayed" (priority 100) among them once it is due, so its place is checked by time
    assert [key for key in ran if key not in ("delayed", "timed")] == [
        "hi", "hi2", "p5", "past", "n1", "n2", "low"], (before, worker.log())
    assert sorted(ran) == sorted(["hi", "hi2", "p5", "past", "n1", "n2", "low", "delayed", "timed"])
    first, second = sorted(("delayed", "timed"), key=lambda key: due[key])
    assert ran.index(first) < ran.index(second), due
    assert queue.attempts("delayed")[0]["started_at"] >= before + 1.0
    assert queue.attempts("timed")[0]["started_at"] >= run_at - 0.001
    assert {job["id"]: (job["state"], job["attempts"]) for job in queue.jobs()} == {
        key: ("completed", 1) for key in ("low", "n1", "hi", "p5", "n2", "past", "hi2", "delayed", "timed")
    }


# -- 5. pause -------------------------------------------------------------------------------------------
def test_pause_stops_claims_of_its_queue_only_and_resume_restarts_them(queue: Queue, tmp_path: Path) -> None:
    out = tmp_path / "out"
    worker = queue.start_worker("--count", "2")
    assert queue.ok("pause", "--queue", "alpha").stdout == "Paused queue alpha\n"
    queue.enqueue([{"id": "a1", "queue": "alpha", "command": append(out, "a1")},
                   {"id": "b1", "queue": "beta", "command": append(out, "b1")}])
    queue.wait_state("b1", "succeeded")
    time.sleep(0.8)
    assert queue.state("a1") == "pending"
    assert not worker.lines(r"Worker-\d: picked job a1 .*"), worker.log()
    assert queue.ok("resume", "--queue", "alpha").stdout == "Resumed queue alpha\n"
    queue.wait_state("a1", "succeeded")

    assert queue.ok("pause").stdout == "Paused every queue\n"
    queue.enqueue([{"id": "b2", "queue": "beta", "command": append(out, "b2")}], name="more.jsonl")
    time.sleep(0.8)
    assert {job["id"]: (job["state"], job["attempts"]) for job in queue.jobs("--state", "pending")} == {
        "b2": ("pending", 0),
    }
    assert not worker.lines(r"Worker-\d: picked job b2 .*"), worker.log()
    assert queue.ok("resume").stdout == "Resumed every queue\n"
    queue.wait_state("b2", "succeeded")
    assert lines_of(out) == ["b1", "a1", "b2"]
    assert worker.popen.poll() is None


# -- 6. dependencies ------------------------------------------------------------------------------------
def test_a_job_runs_after_its_dependencies_and_dies_with_a_dead_one(queue: Queue, tmp_path: Path) -> None:
    order = tmp_path / "order"
    queue.enqueue([
        {"id": "c", "command": append(order, "c"), "depends_on": ["a", "b"], "priority": 10},
        {"id": "a", "command": f"sleep 0.3; {append(order, 'a')}"},
        {"id": "b", "command": append(order, "b")},
        {"id": "d", "command": "exit 1", "max_retries": 1},
        {"id": "e", "command": append(order, "e"), "depends_on": "d"},
    ])
    assert {job["id"]: job["state"] for job in queue.jobs()} == {
        "c": "waiting", "a": "pending", "b": "pending", "d": "pending", "e": "waiting",
    }
    queue.start_worker("--count", "2")
    queue.wait_state("c", "succeeded")
    queue.wait_state("e", "dead")

    ran = lines_of(order)
    assert sorted(ran[:2]) == ["a", "b"] and ran[2:] == ["c"], ran
    c_started = queue.attempts("c")[0]["started_at"]
    assert c_started >= max(queue.attempts(key)[0]["ended_at"] for key in ("a", "b"))
    e = queue.show("e")
    assert (e["state"], e["attempts"], e["attempts_detail"]) == ("dead", 0, [])
    assert e["last_error"] == "its dependency d is dead"
    assert e["depends_on"] == [{"id": "d", "state": "dead"}]
    c = queue.show("c")
    assert (c["state"], c["attempts"]) == ("completed", 1)
    assert sorted(dep["id"] for dep in c["depends_on"]) == ["a", "b"]
    dead = json.loads(queue.ok("dlq", "list", "--json").stdout)
    assert sorted(job["id"] for job in dead) == ["d", "e"]


# -- 7. graceful and forced stops ------------------------------------------------------------------------
def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(queue: Queue, tmp_path: Path) -> None:
    out = tmp_path / "out"
    worker = queue.start_worker()
    queue.enqueue([{"id": "slow", "command": f"sleep 1; {append(out, 'done')}"}])
    queue.wait_state("slow", "running")
    worker.send(signal.SIGTERM)
    queue.wait_until(lambda: worker.lines(r"Stopping \(SIGTERM.*"), 10, "the worker to log the stop")
    queue.enqueue([{"id": "late", "command": append(out, "late")}], name="late.jsonl")
    assert worker.wait() == 0
    assert lines_of(out) == ["done"]
    slow, late = queue.show("slow"), queue.show("late")
    assert (slow["state"], slow["attempts"]) == ("completed", 1)
    assert [a["status"] for a in slow["attempts_detail"]] == ["SUCCESS"]
    assert (late["state"], late["attempts"], late["attempts_detail"]) == ("pending", 0, [])
    assert worker.lines(r"Worker-1: job slow completed successfully \(.*\)"), worker.log()
    assert worker.lines(r"Worker stopped: 1 job\(s\) done"), worker.log()


def test_a_second_sigint_stops_the_running_job_which_goes_back_to_pending(
    queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    worker = queue.start_worker()
    command = f"test -f {shlex.quote(str(marker))} || {{ touch {shlex.quote(str(marker))}; sleep 30; }}"
    queue.enqueue([{"id": "long", "command": command}])
    queue.wait_until(marker.exists, 20, "the job to start")
    queue.wait_until(lambda: any(p.name() == "sleep" for p in descendants_alive(worker.pid)), 10,
                     "the job's sleep")
    worker.send(signal.SIGINT)
    queue.wait_until(lambda: worker.lines(r"Stopping \(SIGINT.*"), 10, "the first SIGINT to be handled")
    worker.send(signal.SIGINT)
    assert worker.wait() == 130
    assert [p for p in queue.janitor.survivors()] == []  # the job's sleep went with it

    job = queue.show("long")
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert [(a["attempt"], a["status"]) for a in job["attempts_detail"]] == [(1, "INTERRUPTED")]
    assert worker.lines(r"Worker-1: job long interrupted; it is pending again"), worker.log()

    again = queue.start_worker()
    queue.wait_state("long", "succeeded")
    job = queue.show("long")
    assert (job["state"], job["attempts"], job["exit_code"]) == ("completed", 1, 0)
    assert [(a["attempt"], a["status"]) for a in job["attempts_detail"]] == [
        (1, "INTERRUPTED"), (2, "SUCCESS"),
    ]
    # the interrupted try is not counted: the log calls the one that ran the job attempt 1
    assert again.lines(r"Worker-1: picked job long \(attempt 1\)"), again.log()


# -- 8. restart ---------------------------------------------------------------------------------------------
def test_jobs_enqueued_without_a_worker_run_when_one_starts_again_and_again(
    queue: Queue, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    queue.enqueue({"id": f"r{n}", "command": append(out, f"r{n}")} for n in (1, 2, 3))
    assert [job["state"] for job in queue.jobs()] == ["pending"] * 3
    first = queue.start_worker("--count", "2")
    queue.wait_until(lambda: queue.count("succeeded") == 3, 20, "the first three jobs")
    first.send(signal.SIGTERM)
    assert first.wait() == 0

    queue.enqueue(({"id": f"r{n}", "command": append(out, f"r{n}")} for n in (4, 5, 6)), name="more.jsonl")
    time.sleep(0.3)
    assert queue.count("pending") == 3
    second = queue.start_worker("--count", "2")
    queue.wait_until(lambda: queue.count("succeeded") == 6, 20, "all six jobs")
    second.send(signal.SIGTERM)
    assert second.wait() == 0
    assert sorted(lines_of(out)) == [f"r{n}" for n in range(1, 7)]
    assert {job["id"]: (job["state"], job["attempts"]) for job in queue.jobs()} == {
        f"r{n}": ("completed", 1) for n in range(1, 7)
    }


# -- 9. worker list / worker stop ---------------------------------------------------------------------------
def test_worker_list_shows_the_running_worker_and_worker_stop_ends_it(queue: Queue) -> None:
    worker = queue.start_worker("--count", "3", "--queue", "alpha", "beta")
    text, as_json = queue.many(("worker", "list"), ("worker", "list", "--json"))
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["PID", "HOST", "SLOTS", "QUEUES", "DONE", "CURRENT", "HEARTBEAT", "STATE"]
    assert len(rows) == 1
    assert rows[0].split()[0] == str(worker.pid) and rows[0].split()[2] == "3", rows
    assert "alpha, beta" in rows[0] and rows[0].split()[-1] == "running"
    (listed,) = json.loads(as_json.stdout)
    assert (listed["pid"], listed["slots"], listed["queues"], listed["stop_requested"], listed["id"]) == (
        worker.pid, 3, ["alpha", "beta"], False, worker.owner(),
    )

    stopped = queue.ok("worker", "stop")
    assert stopped.stdout == "Asked 1 worker(s) to stop once their running jobs finish\n"
    assert worker.wait(timeout=10) == 0
    assert worker.lines(r"Stopping \(asked to stop\): no job is running"), worker.log()
    assert queue.ok("worker", "list").stdout == "No running workers\n"


# -- 10. cancel ---------------------------------------------------------------------------------------------
def test_cancel_stops_a_running_job_and_cancels_a_pending_one_unrun(queue: Queue, tmp_path: Path) -> None:
    out = tmp_path / "out"
    worker = queue.start_worker("--count", "1")
    queue.enqueue([
        {"id": "running", "command": f"{append(out, 'running')}; sleep 30"},
        {"id": "queued", "command": append(out, "queued")},
    ])
    queue.wait_until(lambda: lines_of(out) == ["running"], 20, "the first job to start")
    queue.wait_until(lambda: any(p.name() == "sleep" for p in descendants_alive(worker.pid)), 10,
                     "the job's sleep")
    assert queue.state("queued") == "pending"  # the one slot is busy

    assert queue.ok("cancel", "queued").stdout == "Cancelled job queued\n"
    assert queue.ok("cancel", "running").stdout == (
        "Job running is running: its worker stops it and records it cancelled\n"
    )
    queue.wait_state("running", "cancelled", timeout=15)
    queue.wait_until(lambda: not descendants_alive(worker.pid), 10, "the cancelled job's processes to end")
    time.sleep(0.5)  # the slot is free now: the cancelled pending job must still not run
    assert lines_of(out) == ["running"]
    running, queued = queue.show("running"), queue.show("queued")
    assert running["state"] == "cancelled"
    assert [(a["attempt"], a["status"]) for a in running["attempts_detail"]] == [(1, "CANCELLED")]
    assert (queued["state"], queued["attempts"], queued["attempts_detail"]) == ("cancelled", 0, [])
    assert worker.lines(r"Worker-1: job running cancelled"), worker.log()
    assert not worker.lines(r"Worker-1: picked job queued .*"), worker.log()
    assert worker.popen.poll() is None


# -- 11. timeout --------------------------------------------------------------------------------------------
def test_a_job_over_its_timeout_is_killed_and_dead_with_a_timeout_attempt(queue: Queue) -> None:
    worker = queue.start_worker()
    queue.enqueue([{"id": "sleepy", "command": "sleep 10", "timeout": 0.5, "max_retries": 1}])
    queue.wait_state("sleepy", "dead", timeout=15)
    job = queue.show("sleepy")
    assert (job["state"], job["attempts"]) == ("dead", 1)
    assert [(a["attempt"], a["status"]) for a in job["attempts_detail"]] == [(1, "TIMEOUT")]
    (row,) = queue.attempts("sleepy")
    assert row["ended_at"] - row["started_at"] >= 0.5
    queue.wait_until(lambda: not descendants_alive(worker.pid), 10, "the timed-out job's processes to end")
    assert worker.lines(r"Worker-1: job sleepy failed \(attempt 1: .*\), moving to DLQ"), worker.log()
    dead = json.loads(queue.ok("dlq", "list", "--json").stdout)
    assert [job["id"] for job in dead] == ["sleepy"]


# -- 12. an idle worker is woken --------------------------------------------------------------------------
def test_an_idle_worker_runs_a_job_enqueued_later(queue: Queue, tmp_path: Path) -> None:
    out = tmp_path / "out"
    worker = queue.start_worker()
    time.sleep(0.3)  # idle: nothing is due, so it waits for a wake-up
    queue.ok("enqueue", json.dumps({"id": "wake", "command": append(out, "woken")}))
    queue.wait_state("wake", "succeeded", timeout=10)
    assert lines_of(out) == ["woken"]
    assert worker.lines(r"Worker-1: job wake completed successfully \(.*\)"), worker.log()
