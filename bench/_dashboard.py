"""Workload w: the web dashboard (``parallelr dashboard``): page times on a big store, and what an
open dashboard costs the queue's workers.

- Pages: a store of 100,000 [20,000] queue jobs in a realistic mix (see :func:`_fill`), built once
  per benchmark run (``queuectl enqueue --file``, then SQL sets states, times and attempts). Each
  measurement starts its own ``parallelr dashboard --port 0`` on it, sends it two requests
  untimed (the first one is kept as "first request after start-up"), then times a few GETs of
  one page over HTTP (a new connection each, as ``http.client`` does it), sequentially.
- Drain: as workload q's drain (``queuectl worker start --count 4`` on 2,000 ``true`` jobs, from
  spawn until the store holds them all succeeded), without and with a dashboard open: a real
  dashboard process, and a client that does what the page's script (static/dashboard.js) does:
  listen to ``/api/events`` and, on ``hello`` and every ``change``, fetch ``/`` with ``X-Live: 1``,
  one fetch at a time and at most one every 0.5 s. Once on a fresh store (as workload q), once
  on a copy of the big store (the new jobs in a queue of their own, the worker takes that queue).

Every process started here runs in its own session with its output in a file and is stopped
with SIGTERM and waited for (SIGKILL to its own process group after a grace period).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
from _execute import Sample, Stats, Variant
from _jobqueue import (
    POLL_S,
    _log_span,
    _minus,
    _percentile,
    _rate,
    _ReadOnly,
    _tail,
    _timed,
    _Worker,
)
from _workloads import QUICK, Figure, Setup, Workload, at_least, below

Runner = Callable[[Dict[str, str], str], Sample]
MS = "ms"
JOBS_PER_S = "jobs/s"
PAGE_TARGET_MS = 100.0  # the issue: each page answers in under 100 ms (median)
DRAIN_TARGET_PERCENT = -5.0  # the issue: the drain rate with a dashboard open within 5 % of without
WARMUP_REQUESTS = 2  # untimed, per dashboard process: its first connection to the store, caches
HTTP_TIMEOUT = 60.0
READY_TIMEOUT = 60.0  # the dashboard must print its URL (and the live client get its first page)
DRAIN_TIMEOUT = 300.0
LIVE_GAP_S = 0.5  # static/dashboard.js: MIN_GAP_MS, at most two fetches a second
REALIGN_AFTER_S = 60.0  # the store's times are moved to the present when they are older than this
DRAIN_QUEUE = "bench"  # the big store's drain jobs: a queue of their own
SEED = 20261203
_URL_LINE = re.compile(r"^Dashboard(?: \(read-only\))?: http://[^\s/]+:(\d+)/", re.MULTILINE)

# The big store's mix (shares of all jobs; the newest jobs are the backlog: running, then pending).
HISTORY_S = 86_400.0  # the finished jobs span a day...
RECENT_S = 1_800.0  # ...and the newest quarter of them the last half hour: the jobs/s chart has data
RECENT_SHARE = 0.25
BACKLOG_S = 600.0  # the running and pending jobs were enqueued over the last ten minutes
PENDING_SHARE = 0.05
SCHEDULED_SHARE = 0.10  # of the pending: due in an hour
RUNNING = 8  # two (listed) workers of 4 slots
DEAD_SHARE = 0.03
FAILED_SHARE = 0.01  # one failed attempt, waiting for the next
CANCELLED_SHARE = 0.005
MAX_ATTEMPTS = 3
QUEUES = ("default",) * 12 + ("emails",) * 4 + ("reports",) * 3 + ("media",)  # by job number % 20
SEARCH_JOB = 4242  # the text search looks for this job's file name: one match
DETAIL_JOB = 4200  # the detail page shows this job: dead, 3 attempts
NAMED_EVERY = 50  # every 50th job has an ID of its own, the others a generated UUID
DEEP_ROWS = 2_500  # the deep page: the 50 jobs below this row (near the oldest)
FAKE_WORKERS = ("worker:4242@bench-host/5f1c2a", "worker:4343@bench-host/9d0e7b")

_UPDATE_SQL = (
    "UPDATE jobs SET state = ?, attempts = ?, tries = ?, next_attempt_at = ?, lease_owner = ?,"
    " lease_expires_at = ?, pid = ?, worker_id = ?, exit_code = ?, started_at = ?, ended_at = ?,"
    " duration = ?, memory_mb = ?, cpu_percent = ?, last_error = ?, last_status = ?, created_at = ?,"
    " updated_at = ? WHERE id = ?"
)
_ATTEMPT_SQL = (
    "INSERT INTO attempts (job_id, attempt, status, exit_code, pid, worker_id, worker, started_at, ended_at,"
    " duration, memory_mb, cpu_percent, error, stdout, stderr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?)"
)
_WORKER_SQL = (
    "INSERT INTO workers (id, pid, host, slots, queues, started_at, heartbeat_at, jobs_done, stop_requested,"
    " wake) VALUES (?, ?, 'bench-host', 4, '[]', ?, ?, ?, 0, NULL)"
)
# The drain's poll: the new jobs only, by row range (NOT INDEXED: the state index would make the
# planner walk every succeeded job of the big store, 200 times a second).
_DONE_SQL = "SELECT COUNT(*) FROM jobs NOT INDEXED WHERE id > ? AND state = 'succeeded'"


@attrs.define(frozen=True)
class Sizes:
    store_jobs: int = 100_000
    requests: int = 30  # per page, in all, spread over the repetitions
    drain_jobs: int = 2_000
    workers: int = 4


FULL = Sizes()
QUICK_SIZES = Sizes(store_jobs=20_000, requests=10)


@attrs.define(frozen=True)
class Page:
    key: str
    label: str
    path: str
    live: bool = False  # with X-Live: 1, as the page's script asks for its live part


def pages(store_jobs: int) -> Tuple[Page, ...]:
    before = DEEP_ROWS + 1
    deep = (store_jobs - DEEP_ROWS) // 50
    return (
        Page("overview", "GET / (overview)", "/"),
        Page("overview-live", "GET / with X-Live: 1 (its live part)", "/", live=True),
        Page("api-status", "GET /api/status", "/api/status"),
        Page("jobs", "GET /jobs", "/jobs"),
        Page("jobs-dead", "GET /jobs?state=dead", "/jobs?state=dead"),
        Page("jobs-completed", "GET /jobs?state=completed", "/jobs?state=completed"),
        Page("jobs-search", f"GET /jobs?q=part-{SEARCH_JOB:05d} (1 match)", f"/jobs?q=part-{SEARCH_JOB:05d}"),
        Page("jobs-deep", f"GET /jobs?before={before} (page {deep + 1})", f"/jobs?before={before}"),
        Page("dead", "GET /dead", "/dead"),
        Page("job", f"GET /job?id={_key(DETAIL_JOB)} (dead, {MAX_ATTEMPTS} attempts)",
             f"/job?id={_key(DETAIL_JOB)}"),
    )


def _queue_of(number: int) -> str:
    return QUEUES[number % len(QUEUES)]


def _key(number: int) -> str:
    return f"{_queue_of(number)}-{number:06d}"


def _command(number: int) -> str:
    queue = _queue_of(number)
    if queue == "emails":
        return f"python3 send_mail.py --batch {number} --template weekly"
    if queue == "reports":
        return f"./report.sh --day 2026-11-{1 + number % 30:02d} --id {number}"
    if queue == "media":
        return f"ffmpeg -loglevel error -i in/{number}.mov -vf scale=1280:-1 out/{number}.mp4"
    return f"./process.sh --input data/part-{number:05d}.csv --output out/"


def _job_line(number: int) -> str:
    job: Dict[str, Any] = {"command": _command(number), "queue": _queue_of(number),
                           "max_retries": MAX_ATTEMPTS}
    if number % NAMED_EVERY == 0:
        job["id"] = _key(number)
    if job["queue"] == "emails":
        job["priority"] = "high"
    return json.dumps(job)


def progress(message: str) -> None:
    print(f"bench: w: {message}", file=sys.stderr, flush=True)


# -- the big store -------------------------------------------------------------------------------
def _fill(db: str, count: int, now: float) -> Dict[str, int]:
    """States, times, attempts and two live-looking workers for the ``count`` jobs just enqueued
    (rows 1..count, in file order): most completed after one attempt, some dead after three, some
    failed once and waiting, a few cancelled; the newest are the backlog (running, then pending)."""
    rng = random.Random(SEED)
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        rows = [row for (row,) in connection.execute("SELECT id FROM jobs ORDER BY id")]
        if rows != list(range(1, count + 1)):
            raise RuntimeError(f"expected rows 1..{count} in a fresh store, found {len(rows)} rows")
        pending_from = count - int(count * PENDING_SHARE)
        running_from = pending_from - RUNNING
        old = int(running_from * (1 - RECENT_SHARE))
        updates: List[Tuple[Any, ...]] = []
        attempts: List[Tuple[Any, ...]] = []
        tally: Dict[str, int] = {}
        for number in range(count):
            row = number + 1
            if number < old:
                created = now - HISTORY_S + number / old * (HISTORY_S - RECENT_S)
            elif number < running_from:  # up to a few seconds ago
                created = now - RECENT_S + (number - old) / max(1, running_from - old) * (RECENT_S - 5)
            else:  # the backlog: enqueued over the last BACKLOG_S
                created = now - BACKLOG_S + (number - running_from) / max(1, count - running_from) * BACKLOG_S
            slot = 1 + number % 4
            owner = FAKE_WORKERS[number % 2]
            pid = 10_000 + number % 50_000
            if number >= pending_from:
                state = "pending"
                due = now + 3_600 if rng.random() < SCHEDULED_SHARE else created
                updates.append((state, 0, 0, due, None, None, None, None, None, None, None, None, None, None,
                                None, None, created, created, row))
            elif number >= running_from:
                state = "running"
                started = now - rng.uniform(0.5, 5.0)
                updates.append((state, 1, 1, created, owner, now + HISTORY_S, pid, slot, None, started, None,
                                None, None, None, None, None, created, started, row))
            else:
                draw = rng.random()
                if number == DETAIL_JOB or draw < DEAD_SHARE:
                    state = "dead"
                elif draw < DEAD_SHARE + FAILED_SHARE:
                    state = "failed"
                elif draw < DEAD_SHARE + FAILED_SHARE + CANCELLED_SHARE:
                    state = "cancelled"
                else:
                    state = "succeeded"
                if number == SEARCH_JOB:
                    state = "succeeded"
                updates.append(_history(rng, state, row, created, now, owner, pid, slot, attempts))
            tally[state] = tally.get(state, 0) + 1
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(_UPDATE_SQL, updates)
        connection.executemany(_ATTEMPT_SQL, attempts)
        for number, owner in enumerate(FAKE_WORKERS):
            # Its heartbeat a day ahead: it counts as alive for the whole benchmark. No wake address,
            # so nothing is sent anywhere when the drain enqueues into a copy.
            connection.execute(_WORKER_SQL, (owner, 4242 + 101 * number, now - 3_600, now + HISTORY_S,
                                             tally.get("succeeded", 0) // 2))
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tally["attempts_rows"] = len(attempts)
        tally["attempts_in_last_300_s"] = sum(1 for attempt in attempts if attempt[8] >= now - 300)
        return tally
    finally:
        connection.close()


_TIMES = {
    "jobs": ("created_at", "updated_at", "started_at", "ended_at", "next_attempt_at", "lease_expires_at"),
    "attempts": ("started_at", "ended_at"),
    "workers": ("started_at", "heartbeat_at"),
}


def _shift(db: str, seconds: float) -> None:
    """Every time in the store ``seconds`` later: the store looks as busy now as when it was built
    (the jobs/s chart reads the attempts of the last 5 minutes)."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        for table, columns in _TIMES.items():
            moved = ", ".join(f"{column} = {column} + ?1" for column in columns)
            connection.execute(f"UPDATE {table} SET {moved}", (seconds,))
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _history(rng: random.Random, state: str, row: int, created: float, now: float, owner: str, pid: int,
             slot: int, attempts: List[Tuple[Any, ...]]) -> Tuple[Any, ...]:
    """The job's update (see _UPDATE_SQL) for a job that ran (or was cancelled while it waited);
    its attempts rows go to ``attempts``."""
    if state == "cancelled":
        ended = created + rng.uniform(1.0, 60.0)
        return (state, 0, 0, created, None, None, None, None, None, None, ended, None, None, None,
                "cancelled by the user", "CANCELLED", created, ended, row)
    tries = {"succeeded": 1, "failed": 1, "dead": MAX_ATTEMPTS}[state]
    started = created + rng.uniform(0.01, 1.0)
    for attempt in range(1, tries + 1):
        duration = rng.uniform(0.05, 2.0)
        ended = min(now - 0.01, started + duration)
        memory, cpu = round(rng.uniform(2.0, 40.0), 1), round(rng.uniform(5.0, 95.0), 1)
        if state == "succeeded":
            attempts.append((row, attempt, "SUCCESS", 0, pid, slot, owner, started, ended, duration, memory,
                             cpu, None, f"processed {rng.randrange(10, 5000)} rows\n", ""))
            exit_code, error, status = 0, None, "SUCCESS"
        else:
            attempts.append((row, attempt, "FAILED", 1, pid, slot, owner, started, ended, duration, memory,
                             cpu, "Exit code 1", "", "error: the input is not valid\n"))
            exit_code, error, status = 1, "Exit code 1", "FAILED"
        if attempt < tries:
            started = ended + 2.0 ** attempt  # the retry's backoff
    due = now + 3_600 if state == "failed" else created  # a failed job waits for its next attempt
    return (state, tries, tries, due, None, None, pid, slot, exit_code, started, ended, duration, memory, cpu,
            error, status, created, ended, row)


# -- processes -----------------------------------------------------------------------------------
class _Server(_Worker):
    """A ``parallelr dashboard --port 0`` of our own; ``port`` once it printed its URL."""

    def check_alive(self) -> None:
        assert self.child is not None
        if self.child.poll() is not None:
            code = self.child.returncode
            raise RuntimeError(f"the dashboard exited early (exit {code}): {_tail(self.log_path)}")

    def wait_port(self) -> int:
        deadline = time.time() + READY_TIMEOUT
        while True:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                found = _URL_LINE.search(handle.read())
            if found:
                return int(found.group(1))
            self.check_alive()
            if time.time() > deadline:
                raise TimeoutError(f"the dashboard printed no URL within {READY_TIMEOUT:g} s")
            time.sleep(POLL_S)

    def cpu_s(self) -> Optional[float]:
        """User + system CPU of the dashboard process so far (all its threads), from /proc."""
        assert self.child is not None
        try:
            with open(f"/proc/{self.child.pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None


def get(port: int, path: str, live: bool = False) -> Tuple[int, int, float]:
    """``(status, body bytes, seconds)`` of one GET on a new connection: request to last byte."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        start = time.perf_counter()
        connection.request("GET", path, headers={"X-Live": "1"} if live else {})
        response = connection.getresponse()
        body = response.read()
        return response.status, len(body), time.perf_counter() - start
    finally:
        connection.close()


class _LiveClient:
    """What an open overview page does (static/dashboard.js): it listens to ``/api/events`` and, on
    ``hello`` and on every ``change``, fetches ``/`` with ``X-Live: 1``: one fetch at a time, the
    next one no sooner than 0.5 s after the last one started, a change during a fetch fetched after."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port, self.path = port, path
        self.events = 0
        self.fetches: List[Tuple[float, float]] = []  # (started, seconds), time.time() clock
        self.errors: List[str] = []
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._stream: Optional[http.client.HTTPConnection] = None
        self._socket: Optional[socket.socket] = None
        self._threads = [threading.Thread(target=self._listen, name="bench-live-events", daemon=True),
                         threading.Thread(target=self._fetch, name="bench-live-fetch", daemon=True)]

    def __enter__(self) -> _LiveClient:
        self._stream = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        self._stream.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
        self._socket = self._stream.sock  # the response takes it over (Connection: close)
        response = self._stream.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET /api/events: HTTP {response.status}")
        self._response = response
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._changed.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # the listener's read returns at once
        for thread in self._threads:
            thread.join(timeout=HTTP_TIMEOUT)
        if self._stream is not None:
            self._stream.close()

    def wait_ready(self) -> None:
        """Until the page's first fetch (on ``hello``) has been answered."""
        deadline = time.time() + READY_TIMEOUT
        while not self.fetches:
            self.check()
            if time.time() > deadline:
                raise TimeoutError(f"the live client got no page within {READY_TIMEOUT:g} s")
            time.sleep(POLL_S)

    def check(self) -> None:
        if self.errors:
            raise RuntimeError(f"live client: {self.errors[0]}")

    def _listen(self) -> None:
        event = ""
        try:
            while not self._stopping.is_set():
                line = self._response.readline()
                if not line:
                    if not self._stopping.is_set():
                        self.errors.append("the event stream ended")
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text.startswith("event:"):
                    event = text[len("event:"):].strip()
                elif not text:  # a blank line ends an event
                    if event in ("hello", "change"):
                        self.events += 1
                        self._changed.set()
                    event = ""
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not self._stopping.is_set():
                self.errors.append(f"event stream: {type(exc).__name__}: {exc}")

    def _fetch(self) -> None:
        last = -math.inf
        while True:
            self._changed.wait()
            if self._stopping.is_set():
                return
            gap = last + LIVE_GAP_S - time.monotonic()
            if gap > 0 and self._stopping.wait(gap):
                return
            self._changed.clear()
            last = time.monotonic()
            started = time.time()
            try:
                status, _size, seconds = get(self.port, self.path, live=True)
            except (OSError, http.client.HTTPException) as exc:
                if not self._stopping.is_set():
                    self.errors.append(f"GET {self.path}: {type(exc).__name__}: {exc}")
                return
            if status != 200:
                self.errors.append(f"GET {self.path} (X-Live): HTTP {status}")
                return
            self.fetches.append((started, seconds))


# -- the measurements ----------------------------------------------------------------------------
class DashboardBench:
    """The base store (built once, at the first measurement that needs it) and the runs."""

    def __init__(self, setup: Setup, sizes: Sizes, params: Dict[str, object]) -> None:
        self.setup, self.sizes, self.params = setup, sizes, params
        self.python = setup.tools.python
        self.root = os.path.join(setup.files_dir, "dashboard")
        os.makedirs(self.root, exist_ok=True)
        self.base_db = os.path.join(self.root, "base", "queue.db")
        self._built: Optional[bool] = None  # False: building failed (it is not tried again)
        self._count = 0
        self._aligned_at = 0.0  # the time the store's times were last made current for
        self._shifts: List[float] = []  # seconds each of those updates took (untimed)
        self.per_rep = math.ceil(sizes.requests / max(1, setup.reps))

    def queuectl(self, db: str, *args: str) -> Tuple[str, ...]:
        return (self.python, "-m", "parallelr", "queue", "--db", db, *args)

    def dashboard_argv(self, db: str) -> Tuple[str, ...]:
        return (self.python, "-m", "parallelr", "dashboard", "--db", db, "--port", "0")

    def folder(self, name: str) -> str:
        self._count += 1
        path = os.path.join(self.root, f"{self._count:03d}-{name}")
        os.makedirs(path)
        return path

    def jobs_file(self, queue: Optional[str]) -> str:
        line = json.dumps({"command": "true", **({"queue": queue} if queue else {})})
        name = f"drain-{self.sizes.drain_jobs}{'-' + queue if queue else ''}.jsonl"
        return self.setup.lines_file(name, [line] * self.sizes.drain_jobs)

    def base(self, env: Dict[str, str], cwd: str) -> str:
        if self._built is None:
            self._built = False
            count = self.sizes.store_jobs
            progress(f"building the store of {count} jobs (once, untimed)")
            started = time.perf_counter()
            os.makedirs(os.path.dirname(self.base_db))
            source = self.setup.lines_file(f"dashboard-{count}.jsonl", [_job_line(n) for n in range(count)])
            filled = _timed(self.queuectl(self.base_db, "enqueue", "--file", source), env, cwd)
            if filled.exit_code != 0:
                raise RuntimeError(f"enqueue of the store's jobs (exit {filled.exit_code}): {filled.error}")
            self._aligned_at = time.time()
            tally = _fill(self.base_db, count, self._aligned_at)
            size = os.path.getsize(self.base_db)
            self.params["store"] = {
                "jobs": count, "states": tally, "enqueue_s": round(filled.wall_s, 3),
                "build_s": round(time.perf_counter() - started, 3), "file_mb": round(size / 2**20, 1),
                "time_shifts_s": self._shifts,
            }
            progress(f"store built in {time.perf_counter() - started:.1f} s ({size / 2**20:.0f} MB): {tally}")
            self._built = True
        if not self._built:
            raise RuntimeError("building the store failed before (see the first failed measurement)")
        late = time.time() - self._aligned_at
        if late > REALIGN_AFTER_S:
            started = time.perf_counter()
            _shift(self.base_db, late)
            self._aligned_at += late
            self._shifts.append(round(time.perf_counter() - started, 3))
        return self.base_db

    # -- pages ----------------------------------------------------------------------------------
    def page_run(self, page: Page) -> Runner:
        def run(env: Dict[str, str], cwd: str) -> Sample:
            db = self.base(env, cwd)
            folder = self.folder(page.key)
            times: List[float] = []
            with _Server(self.dashboard_argv(db), env, cwd, os.path.join(folder, "dashboard.log")) as server:
                port = server.wait_port()
                printed = time.time() - server.started_at
                answered: Optional[float] = None
                first: Optional[float] = None
                size = 0
                for number in range(WARMUP_REQUESTS + self.per_rep):
                    status, size, seconds = get(port, page.path, page.live)
                    if status != 200:
                        server.stop()
                        return Sample(wall_s=0.0, exit_code=1, error=f"GET {page.path}: HTTP {status}")
                    if number == 0:
                        answered, first = time.time() - server.started_at, seconds
                    elif number >= WARMUP_REQUESTS:
                        times.append(seconds)
                exit_code, stop_s = server.stop()
            details = {
                "latencies_s": times, "first_request_s": first, "body_bytes": size,
                "spawn_to_url_s": printed, "spawn_to_first_answer_s": answered, "sigterm_to_exit_s": stop_s,
            }
            error = "" if exit_code == 0 else _tail(os.path.join(folder, "dashboard.log"))
            return Sample(wall_s=statistics.median(times), exit_code=exit_code, error=error, details=details)

        return run

    # -- drain ----------------------------------------------------------------------------------
    def drain_run(self, big: bool, with_dashboard: bool) -> Runner:
        count, workers = self.sizes.drain_jobs, self.sizes.workers

        def run(env: Dict[str, str], cwd: str) -> Sample:
            folder = self.folder(f"drain-{'big' if big else 'fresh'}{'-dashboard' if with_dashboard else ''}")
            try:
                return drain(folder, env, cwd)
            finally:
                shutil.rmtree(folder, ignore_errors=True)  # a copy of the big store is 60 MB

        def drain(folder: str, env: Dict[str, str], cwd: str) -> Sample:
            db = os.path.join(folder, "queue.db")
            first_row = 0
            scope: Tuple[str, ...] = ()
            if big:
                _copy(self.base(env, cwd), db)
                first_row, scope = self.sizes.store_jobs, ("--queue", DRAIN_QUEUE)
            source = self.jobs_file(DRAIN_QUEUE if big else None)
            filled = _timed(self.queuectl(db, "enqueue", "--file", source), env, cwd)
            if filled.exit_code != 0:
                return Sample(wall_s=0.0, exit_code=filled.exit_code, error=f"enqueue: {filled.error}")
            log_path = os.path.join(folder, "worker.log")
            details: Dict[str, object] = {"jobs": count, "workers": workers, "store_jobs_before": first_row}
            with contextlib.ExitStack() as stack:
                server: Optional[_Server] = None
                client: Optional[_LiveClient] = None
                if with_dashboard:
                    server = stack.enter_context(
                        _Server(self.dashboard_argv(db), env, cwd, os.path.join(folder, "dashboard.log")))
                    client = stack.enter_context(_LiveClient(server.wait_port()))
                    client.wait_ready()
                    time.sleep(LIVE_GAP_S)  # past the first fetch's gap: the drain starts from a quiet page
                cpu_before = server.cpu_s() if server else None
                argv = self.queuectl(db, "worker", "start", "--count", str(workers), *scope)
                with _Worker(argv, env, cwd, log_path) as worker, _ReadOnly(db) as store:
                    started = worker.started_at
                    polls = 0
                    while True:
                        polls += 1
                        done = store.scalar(_DONE_SQL, (first_row,))
                        if done is not None and done >= count:
                            seen = time.time()
                            break
                        worker.check_alive()
                        if client is not None:
                            client.check()
                        if time.time() - started > DRAIN_TIMEOUT:
                            raise TimeoutError(f"{done} of {count} jobs succeeded after {DRAIN_TIMEOUT:g} s")
                        time.sleep(POLL_S)
                    cpu_after = server.cpu_s() if server else None
                    exit_code, stop_s = worker.stop()
                if client is not None:
                    during = [seconds for at, seconds in client.fetches if started <= at <= seen]
                    details.update({
                        "live_events": client.events, "live_fetches_during_drain": len(during),
                        "live_fetch_s": during,
                        "dashboard_cpu_during_drain_s": _minus(cpu_after, cpu_before),
                    })
            picked, completed = _log_span(log_path)
            details.update({
                "polls": polls, "poll_interval_s": POLL_S,
                "start_to_first_picked_s": _minus(picked, started),
                "first_picked_to_last_completed_s": _minus(completed, picked),
                "sigterm_to_exit_s": stop_s,
            })
            error = "" if exit_code == 0 else _tail(log_path)
            return Sample(wall_s=seen - started, exit_code=exit_code, error=error, details=details)

        return run


def _copy(source: str, target: str) -> None:
    """The store as one consistent file (SQLite's backup), for a drain that changes it."""
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as origin, \
            contextlib.closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
        copy.execute("PRAGMA journal_mode=WAL")


# -- the workload --------------------------------------------------------------------------------
def _pooled(stats: Stats, key: str) -> List[float]:
    if stats.failed is not None:
        return []
    found: List[float] = []
    for sample in stats.samples:
        value = sample.details.get(key)
        values = value if isinstance(value, list) else [value]
        found += [float(item) for item in values if isinstance(item, (int, float))]
    return found


def _ms(value: Optional[float]) -> Optional[float]:
    return None if value is None else value * 1000


def _change(top: Optional[float], bottom: Optional[float]) -> Optional[float]:
    return None if top is None or not bottom else (top / bottom - 1) * 100


def _paired(plain: Stats, opened: Stats) -> Optional[float]:
    """The rate change of each repetition (its two drains ran one after the other), median: drift
    of the machine's speed between repetitions cancels out."""
    if plain.failed is not None or opened.failed is not None:
        return None
    changes = [(without.wall_s / with_open.wall_s - 1) * 100
               for without, with_open in zip(plain.samples, opened.samples) if with_open.wall_s > 0]
    return _median(changes)


def dashboard(setup: Setup) -> Workload:
    sizes = QUICK_SIZES if setup.sizes == QUICK else FULL
    params: Dict[str, object] = {
        "store_jobs": sizes.store_jobs, "requests_per_page": None, "drain_jobs": sizes.drain_jobs,
        "workers": sizes.workers, "warmup_requests": WARMUP_REQUESTS, "live_gap_s": LIVE_GAP_S,
        "poll_interval_s": POLL_S,
        "mix": {"pending": PENDING_SHARE, "scheduled_of_pending": SCHEDULED_SHARE, "running": RUNNING,
                "dead": DEAD_SHARE, "failed": FAILED_SHARE, "cancelled": CANCELLED_SHARE,
                "recent_share": RECENT_SHARE, "recent_s": RECENT_S, "history_s": HISTORY_S},
    }
    bench = DashboardBench(setup, sizes, params)
    params["requests_per_page"] = bench.per_rep * setup.reps
    shown = pages(sizes.store_jobs)
    ctl = ("queuectl", "--db", "DB")
    web = ("parallelr", "dashboard", "--db", "DB", "--port", "0")
    variants: List[Variant] = [
        Variant(key=page.key, label=f"{page.label}: median of {bench.per_rep}", argv=(*web, "GET", page.path),
                run=bench.page_run(page))
        for page in shown
    ]
    jobs, workers = sizes.drain_jobs, sizes.workers
    drains = (
        ("drain", f"drain {jobs} jobs, fresh store, no dashboard", False, False),
        ("drain-dashboard", f"drain {jobs} jobs, fresh store, dashboard + live page", False, True),
        ("drain-big", f"drain {jobs} jobs, {sizes.store_jobs}-job store, no dashboard", True, False),
        ("drain-big-dashboard", f"drain {jobs} jobs, {sizes.store_jobs}-job store, dashboard + live page",
         True, True),
    )
    for key, label, big, with_dashboard in drains:
        variants.append(Variant(key=key, label=label, argv=(*ctl, "worker", "start", "--count", str(workers)),
                                run=bench.drain_run(big, with_dashboard)))

    cpus = os.cpu_count() or 1

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        figures: List[Figure] = []
        for page in shown:
            times = _pooled(stats[page.key], "latencies_s")
            what = f"{page.label}, {sizes.store_jobs} jobs"
            figures.append(below(f"{what}: median of {len(times)}", _ms(_median(times)), PAGE_TARGET_MS, MS))
            figures.append(Figure(f"{what}: p90", _ms(_percentile(times, 0.9)), MS))
        every = [stats[page.key] for page in shown]
        firsts = [value for one in every for value in _pooled(one, "first_request_s")]
        answered = [value for one in every for value in _pooled(one, "spawn_to_first_answer_s")]
        figures.append(Figure("first request after start-up, all pages (median)", _ms(_median(firsts)), MS))
        figures.append(Figure("dashboard start-up: spawn -> first page answered (median)",
                              _median(answered), "s"))
        for plain, opened, where in (("drain", "drain-dashboard", "fresh store"),
                                     ("drain-big", "drain-big-dashboard", f"{sizes.store_jobs}-job store")):
            without, with_open = _rate(jobs, stats[plain].wall_s), _rate(jobs, stats[opened].wall_s)
            span = "first_picked_to_last_completed_s"
            log_without = _rate(jobs, _median(_pooled(stats[plain], span)))
            log_with = _rate(jobs, _median(_pooled(stats[opened], span)))
            fetches = _pooled(stats[opened], "live_fetch_s")
            cpu = _median(_pooled(stats[opened], "dashboard_cpu_during_drain_s"))
            wall = stats[opened].wall_s
            figures += [
                Figure(f"{where}: drain rate without dashboard (start -> {jobs} succeeded)", without,
                       JOBS_PER_S),
                Figure(f"{where}: drain rate with dashboard + live page", with_open, JOBS_PER_S),
                at_least(f"{where}: drain rate with dashboard vs without", _change(with_open, without),
                         DRAIN_TARGET_PERCENT, "%"),
                Figure(f"{where}: the same, median of the repetitions' own changes",
                       _paired(stats[plain], stats[opened]), "%"),
                Figure(f"{where}: the same by the worker log (first 'picked' -> last 'completed')",
                       _change(log_with, log_without), "%"),
                Figure(f"{where}: live fetches of / per drain (median)",
                       _median(_pooled(stats[opened], "live_fetches_during_drain"))),
                Figure(f"{where}: live fetch of / during the drain, median", _ms(_median(fetches)), MS),
                Figure(f"{where}: live fetch of / during the drain, p90", _ms(_percentile(fetches, 0.9)), MS),
                Figure(f"{where}: dashboard CPU during the drain (median)", cpu, "s"),
                Figure(f"{where}: dashboard CPU / drain wall time (share of one CPU)",
                       None if cpu is None or not wall else cpu / wall),
                Figure(f"{where}: dashboard CPU / (drain wall time x {cpus} CPUs)",
                       None if cpu is None or not wall else cpu / wall / cpus),
            ]
        return figures

    return Workload("w", "dashboard", params, tuple(variants), judge)


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None
