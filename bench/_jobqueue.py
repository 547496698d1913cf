"""Workload q: the job queue (``queuectl``): enqueue rate, drain rate and pick-up latency.

Every command is ``sys.executable -m parallelr queue --db DB ...`` (what the ``queuectl`` console
script runs), with the benchmark's throw-away HOME and a fresh database in its own temporary folder
per measurement. Three kinds of variant:

- plain commands timed whole (enqueue of 1 job, of the 2,000-job file, of the big file; xargs);
- ``drain``: a ``worker start --count 4`` on the database the 2,000-job enqueue of the same
  repetition left behind, timed from its start until the store holds 2,000 succeeded jobs;
- ``latency``: an idle ``worker start --count 1``, then jobs enqueued one at a time, each writing
  ``date +%s.%N`` to a file: latency = that timestamp - the moment ``enqueue`` returned.

Workers run in their own session, their log goes to a file, and every worker started here is
stopped with SIGTERM and waited for (SIGKILL to its own process group after a grace period).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import time
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from _execute import STDERR_TAIL, Sample, Stats, Variant
from _workloads import Figure, Setup, Workload, at_least, at_most

Runner = Callable[[Dict[str, str], str], Sample]
JOBS_PER_S = "jobs/s"
MS = "ms"
POLL_S = 0.005  # the drain's look at the store, and the latency's look for the job's file
DRAIN_TIMEOUT = 300.0
LATENCY_TIMEOUT = 30.0  # one job must start within this
READY_TIMEOUT = 60.0  # a worker must register within this
STOP_GRACE = 30.0  # after SIGTERM, before SIGKILL
IDLE_SETTLE_S = 0.3  # after the worker registered: let it reach its idle wait
CALIBRATION_RUNS = 20
DATE_JOB = "date +%s.%N > {path}"
SUCCEEDED_SQL = "SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state = 'succeeded'"
STORE_TIMES_SQL = (
    "SELECT MIN(started_at), MAX(updated_at) FROM jobs WHERE queue IS NOT NULL AND state = 'succeeded'"
)
# The console log format's asctime: "2026-12-02 12:15:36,629" (local time, milliseconds).
_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?Worker-\d+: (picked job|job \S+ completed)"
)


class QueueBench:
    """The queue workload's commands; one fresh database folder per measurement."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.python = setup.tools.python
        self.root = os.path.join(setup.files_dir, "queue")
        os.makedirs(self.root, exist_ok=True)
        self._count = 0
        self._drain_dbs: List[str] = []  # left by the 2,000-job enqueue for the drain that follows

    # -- helpers --------------------------------------------------------------------------------
    def queuectl(self, db: str, *args: str) -> Tuple[str, ...]:
        return (self.python, "-m", "parallelr", "queue", "--db", db, *args)

    def fresh_db(self, name: str) -> str:
        self._count += 1
        folder = os.path.join(self.root, f"{self._count:03d}-{name}")
        os.makedirs(folder)
        return os.path.join(folder, "queue.db")

    @staticmethod
    def discard(db: str) -> None:
        shutil.rmtree(os.path.dirname(db), ignore_errors=True)

    def jobs_file(self, count: int) -> str:
        line = json.dumps({"command": "true"})
        return self.setup.lines_file(f"jobs-{count}.jsonl", [line] * count)

    # -- the plain commands ---------------------------------------------------------------------
    def enqueue_run(self, count: int, keep_for_drain: bool) -> Runner:
        """Enqueue ``count`` jobs (1: as a JSON argument, else from a file) into a fresh store."""

        def run(env: Dict[str, str], cwd: str) -> Sample:
            db = self.fresh_db(f"enqueue-{count}")
            one = ("enqueue", '{"command":"true"}')
            args = ("enqueue", "--file", self.jobs_file(count)) if count > 1 else one
            sample = _timed(self.queuectl(db, *args), env, cwd)
            if keep_for_drain and sample.exit_code == 0:
                self._drain_dbs.append(db)
            else:
                self.discard(db)
            return sample

        return run

    # -- drain ----------------------------------------------------------------------------------
    def drain_run(self, env: Dict[str, str], cwd: str) -> Sample:
        count, workers = self.setup.sizes.queue_jobs, self.setup.sizes.queue_workers
        if self._drain_dbs:
            db = self._drain_dbs.pop()
        else:  # the enqueue of this repetition failed: fill a store of our own (untimed)
            db = self.fresh_db("drain")
            filled = _timed(self.queuectl(db, "enqueue", "--file", self.jobs_file(count)), env, cwd)
            if filled.exit_code != 0:
                self.discard(db)
                return Sample(wall_s=0.0, exit_code=filled.exit_code, error=f"enqueue: {filled.error}")
        log_path = os.path.join(os.path.dirname(db), "worker.log")
        try:
            with _Worker(self.queuectl(db, "worker", "start", "--count", str(workers)), env, cwd,
                         log_path) as worker:
                started = worker.started_at
                polls = 0
                with _ReadOnly(db) as store:
                    while True:
                        polls += 1
                        done = store.scalar(SUCCEEDED_SQL)
                        if done is not None and done >= count:
                            seen = time.time()
                            break
                        worker.check_alive()
                        if time.time() - started > DRAIN_TIMEOUT:
                            raise TimeoutError(f"{done} of {count} jobs succeeded after {DRAIN_TIMEOUT:g} s")
                        time.sleep(POLL_S)
                    first_start, last_update = store.row(STORE_TIMES_SQL)
                exit_code, stop_s = worker.stop()
            picked, completed = _log_span(log_path)
            details = {
                "jobs": count,
                "workers": workers,
                "polls": polls,
                "poll_interval_s": POLL_S,
                "start_to_first_picked_s": _minus(picked, started),
                "first_picked_to_last_completed_s": _minus(completed, picked),
                "store_first_started_to_last_updated_s": _minus(last_update, first_start),
                "start_to_last_updated_s": _minus(last_update, started),
                "sigterm_to_exit_s": stop_s,
            }
            error = "" if exit_code == 0 else _tail(log_path)
            return Sample(wall_s=seen - started, exit_code=exit_code, error=error, details=details)
        finally:
            self.discard(db)

    # -- latency --------------------------------------------------------------------------------
    def latency_run(self, env: Dict[str, str], cwd: str) -> Sample:
        sizes = self.setup.sizes
        per_rep = math.ceil(sizes.queue_latency_samples / max(1, self.setup.reps))
        db = self.fresh_db("latency")
        folder = os.path.dirname(db)
        log_path = os.path.join(folder, "worker.log")
        latencies: List[float] = []
        from_created: List[float] = []
        from_started: List[float] = []
        returned_after: List[float] = []
        try:
            created = _timed(self.queuectl(db, "status"), env, cwd)  # the store exists before the worker
            if created.exit_code != 0:
                return Sample(wall_s=0.0, exit_code=created.exit_code, error=f"status: {created.error}")
            with _Worker(self.queuectl(db, "worker", "start", "--count", "1"), env, cwd, log_path) as worker:
                with _ReadOnly(db) as store:
                    worker.wait_registered(store)
                    time.sleep(IDLE_SETTLE_S)
                    for number in range(per_rep):
                        stamp_path = os.path.join(folder, f"stamp-{number}.txt")
                        job = json.dumps({"command": DATE_JOB.format(path=shlex.quote(stamp_path))})
                        done = subprocess.run(self.queuectl(db, "enqueue", job), cwd=cwd, env=env,
                                              capture_output=True, text=True, check=False)
                        returned = time.time()
                        if done.returncode != 0:
                            return Sample(wall_s=0.0, exit_code=done.returncode,
                                          error=done.stderr.strip()[-STDERR_TAIL:])
                        stamp = _wait_stamp(stamp_path, worker)
                        latencies.append(stamp - returned)
                        job_created, job_started = _job_times(store, done.stdout.strip())
                        from_created.append(_minus(stamp, job_created))
                        from_started.append(_minus(stamp, job_started))
                        returned_after.append(_minus(returned, job_created))
                exit_code, stop_s = worker.stop()
        finally:
            self.discard(db)
        calibration = _calibrate(self.root)
        details = {
            "latencies_s": latencies,
            "created_to_stamp_s": from_created,
            "store_started_to_stamp_s": from_started,
            "created_to_returned_s": returned_after,
            "calibration_spawn_to_stamp_s": calibration,
            "sigterm_to_exit_s": stop_s,
        }
        error = "" if exit_code == 0 else _tail(log_path)
        return Sample(wall_s=statistics.median(latencies), exit_code=exit_code, error=error, details=details)


# -- processes -----------------------------------------------------------------------------------
def _timed(argv: Sequence[str], env: Dict[str, str], cwd: str) -> Sample:
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False, timeout=DRAIN_TIMEOUT)
    wall = time.perf_counter() - start
    error = done.stderr.decode(errors="replace").strip()[-STDERR_TAIL:] if done.returncode else ""
    return Sample(wall_s=wall, exit_code=done.returncode, error=error)


class _Worker:
    """A ``queuectl worker start`` of our own: its log in a file, stopped (SIGTERM) and waited for."""

    def __init__(self, argv: Sequence[str], env: Dict[str, str], cwd: str, log_path: str) -> None:
        self.argv, self.env, self.cwd, self.log_path = list(argv), env, cwd, log_path
        self.child: Optional[subprocess.Popen] = None
        self.started_at = 0.0
        self._stopped: Optional[Tuple[int, float]] = None

    def __enter__(self) -> _Worker:
        self._log = open(self.log_path, "wb")
        self.started_at = time.time()
        self.child = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._log.close()

    def check_alive(self) -> None:
        assert self.child is not None
        if self.child.poll() is not None:
            code = self.child.returncode
            raise RuntimeError(f"the worker exited early (exit {code}): {_tail(self.log_path)}")

    def wait_registered(self, store: _ReadOnly) -> None:
        """Until the worker's row is in the store (it registers just before it looks for jobs)."""
        assert self.child is not None
        deadline = time.time() + READY_TIMEOUT
        while not store.scalar("SELECT COUNT(*) FROM workers WHERE pid = ?", (self.child.pid,)):
            self.check_alive()
            if time.time() > deadline:
                raise TimeoutError(f"the worker did not register within {READY_TIMEOUT:g} s")
            time.sleep(POLL_S)

    def stop(self) -> Tuple[int, float]:
        """SIGTERM (a graceful stop), wait; SIGKILL its process group after the grace period."""
        if self._stopped is not None:
            return self._stopped
        child = self.child
        assert child is not None
        asked = time.perf_counter()
        if child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # its own session: only what this worker started
                child.wait()
        self._stopped = (child.returncode, time.perf_counter() - asked)
        return self._stopped


class _ReadOnly:
    """A read-only connection to the store, opened (again) when opening fails (no WAL index yet)."""

    def __init__(self, db: str) -> None:
        self.uri = f"file:{db}?mode=ro"
        self.connection: Optional[sqlite3.Connection] = None

    def __enter__(self) -> _ReadOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.close()

    def row(self, sql: str, params: Sequence[object] = ()) -> Tuple:
        try:
            if self.connection is None:
                self.connection = sqlite3.connect(self.uri, uri=True, timeout=1.0)
            found = self.connection.execute(sql, tuple(params)).fetchone()
            return tuple(found) if found else ()
        except sqlite3.Error:
            if self.connection is not None:
                self.connection.close()
            self.connection = None
            return ()

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Optional[int]:
        found = self.row(sql, params)
        return found[0] if found else None


def _wait_stamp(path: str, worker: _Worker) -> float:
    """The timestamp a latency job wrote (the shell creates the file empty, then date fills it)."""
    deadline = time.time() + LATENCY_TIMEOUT
    while True:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            if text.endswith("\n"):
                return float(text)
        except FileNotFoundError:
            pass
        worker.check_alive()
        if time.time() > deadline:
            raise TimeoutError(f"the latency job did not run within {LATENCY_TIMEOUT:g} s")
        time.sleep(POLL_S / 5)


def _job_times(store: _ReadOnly, key: str) -> Tuple[Optional[float], Optional[float]]:
    for _ in range(200):  # the worker records the attempt just after the job ends
        found = store.row(
            "SELECT created_at, started_at FROM jobs WHERE name = ? AND state = 'succeeded'", (key,)
        )
        if found:
            return found[0], found[1]
        time.sleep(POLL_S)
    return None, None


def _calibrate(folder: str) -> List[float]:
    """What ``date +%s.%N`` in a shell adds by itself: Popen of ``/bin/sh -c 'date ... > f'`` until
    its timestamp, from this (idle) process. The worker spawns jobs the same way (/bin/sh -c)."""
    path = os.path.join(folder, "calibration.txt")
    spans = []
    for _ in range(CALIBRATION_RUNS):
        before = time.time()
        subprocess.run(["/bin/sh", "-c", DATE_JOB.format(path=shlex.quote(path))], check=True)
        with open(path, encoding="utf-8") as handle:
            spans.append(float(handle.read()) - before)
    os.unlink(path)
    return spans


def _log_times(path: str) -> Iterator[Tuple[str, float]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _LOG_LINE.match(line)
            if match:
                when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                yield ("picked" if match.group(2) == "picked job" else "completed"), when


def _log_span(path: str) -> Tuple[Optional[float], Optional[float]]:
    """The first "picked job" and the last "completed" line of the worker's log (ms resolution)."""
    picked: Optional[float] = None
    completed: Optional[float] = None
    for kind, when in _log_times(path):
        if kind == "picked" and picked is None:
            picked = when
        elif kind == "completed":
            completed = when
    return picked, completed


def _minus(later: Optional[float], earlier: Optional[float]) -> Optional[float]:
    return None if later is None or earlier is None else later - earlier


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()[-STDERR_TAIL:]
    except OSError:
        return ""


# -- the workload --------------------------------------------------------------------------------
def _rate(jobs: int, seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None or seconds <= 0 else jobs / seconds


def _detail_median(stats: Stats, key: str) -> Optional[float]:
    if stats.failed is not None:
        return None
    values = [sample.details.get(key) for sample in stats.samples]
    present = [float(value) for value in values if isinstance(value, (int, float))]
    return statistics.median(present) if present and len(present) == len(values) else None


def _pooled(stats: Stats, key: str) -> List[float]:
    if stats.failed is not None:
        return []
    values = [value for sample in stats.samples for value in sample.details.get(key, [])]  # type: ignore[union-attr]
    return [float(value) for value in values if isinstance(value, (int, float))]


def _percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile (p90 of 20 values is the 18th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ms(value: Optional[float]) -> Optional[float]:
    return None if value is None else value * 1000


def queue(setup: Setup) -> Workload:
    sizes = setup.sizes
    jobs, big, workers = sizes.queue_jobs, sizes.queue_big_jobs, sizes.queue_workers
    bench = QueueBench(setup)
    bench.jobs_file(jobs)
    bench.jobs_file(big)  # written before the timing starts
    lines = setup.numbers_file(jobs)
    per_rep = math.ceil(sizes.queue_latency_samples / max(1, setup.reps))

    def custom(key: str, label: str, run: Runner, argv: Tuple[str, ...]) -> Variant:
        return Variant(key=key, label=label, argv=argv, run=run)

    ctl = ("queuectl", "--db", "DB")
    variants: List[Variant] = [
        custom("startup", "queuectl enqueue of 1 job (CLI start-up)", bench.enqueue_run(1, False),
               (*ctl, "enqueue", '{"command":"true"}')),
        custom("enqueue", f"queuectl enqueue --file ({jobs} jobs)", bench.enqueue_run(jobs, True),
               (*ctl, "enqueue", "--file", f"jobs-{jobs}.jsonl")),
        custom("enqueue-big", f"queuectl enqueue --file ({big} jobs)", bench.enqueue_run(big, False),
               (*ctl, "enqueue", "--file", f"jobs-{big}.jsonl")),
        custom("drain", f"worker start --count {workers}: start -> {jobs} succeeded", bench.drain_run,
               (*ctl, "worker", "start", "--count", str(workers))),
    ]
    notes: List[str] = []
    if setup.tools.xargs is not None:
        variants.append(Variant(
            key="xargs", label=f"xargs -P{workers} -n1 sh -c true ({jobs} lines)",
            argv=(setup.tools.xargs, f"-P{workers}", "-n1", "sh", "-c", "true"), stdin_path=lines,
        ))
    else:
        notes.append("xargs not found: the drain's comparison is n/a")
    variants.append(custom(
        "latency", f"idle worker: enqueue returns -> job starts (median of {per_rep})", bench.latency_run,
        (*ctl, "worker", "start", "--count", "1"),
    ))

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        startup = stats["startup"].wall_s
        big_wall = stats["enqueue-big"].wall_s
        beyond = None if startup is None or big_wall is None else _rate(big - 1, big_wall - startup)
        drain = stats["drain"]
        drain_rate = _rate(jobs, drain.wall_s)
        xargs_rate = _rate(jobs, stats["xargs"].wall_s) if "xargs" in stats else None
        latency = stats["latency"]
        latencies = _pooled(latency, "latencies_s")
        stored = _pooled(latency, "created_to_stamp_s")
        figures = [
            at_least(f"enqueue rate, {jobs}-job file (whole command)", _rate(jobs, stats["enqueue"].wall_s),
                     20_000, JOBS_PER_S),
            at_least(f"enqueue rate, {big}-job file (whole command)", _rate(big, big_wall), 20_000,
                     JOBS_PER_S),
            Figure("CLI start-up (enqueue of 1 job)", startup, "s"),
            Figure(f"enqueue rate beyond start-up: ({big} - 1) / (time({big}) - time(1))", beyond,
                   JOBS_PER_S),
            at_least(f"drain rate, worker start -> {jobs} succeeded (polled)", drain_rate, 800, JOBS_PER_S),
            Figure("drain rate, first 'picked' -> last 'completed' (worker log)",
                   _rate(jobs, _detail_median(drain, "first_picked_to_last_completed_s")), JOBS_PER_S),
            Figure("worker start-up: start -> first 'picked' (log)",
                   _detail_median(drain, "start_to_first_picked_s"), "s"),
            Figure(f"xargs -P{workers} sh -c true rate", xargs_rate, JOBS_PER_S),
            Figure("drain rate / xargs rate",
                   None if not drain_rate or not xargs_rate else drain_rate / xargs_rate),
            at_most(f"latency median, enqueue returns -> job's date ({len(latencies)} jobs)",
                    _ms(_median_or_none(latencies)), 25, MS),
            Figure("latency p90, enqueue returns -> job's date", _ms(_percentile(latencies, 0.9)), MS),
            at_most("latency median, enqueue's created_at -> job's date", _ms(_median_or_none(stored)), 25,
                    MS),
            Figure("latency p90, enqueue's created_at -> job's date", _ms(_percentile(stored, 0.9)), MS),
            Figure("enqueue of 1 job: created_at -> the command returns (median)",
                   _ms(_median_or_none(_pooled(latency, "created_to_returned_s"))), MS),
            Figure("calibration: Popen of sh -c date -> its timestamp (median)",
                   _ms(_median_or_none(_pooled(latency, "calibration_spawn_to_stamp_s"))), MS),
        ]
        return figures

    params = {
        "jobs": jobs,
        "big_jobs": big,
        "workers": workers,
        "latency_samples": per_rep * setup.reps,
        "poll_interval_s": POLL_S,
        "latency_job": DATE_JOB,
    }
    return Workload("q", "queue", params, tuple(variants), judge, tuple(notes))


def _median_or_none(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None
