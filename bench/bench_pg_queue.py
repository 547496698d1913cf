"""The queue on PostgreSQL against SQLite: drain rate with 4 slots in 2 worker processes, and the
pick-up latency of an idle worker (woken by NOTIFY on PostgreSQL, by a datagram on SQLite).

    python3 bench/bench_pg_queue.py [--jobs 2000] [--reps 3] [--latency 10]

A throwaway PostgreSQL server on 127.0.0.1 is started for the run (tests/pg_server.py: the
distribution's binaries, fsync off as in the tests, so the figures compare the stores' own work,
not the disk); each measurement gets a fresh database or SQLite file. ``drain``: the jobs
(``true``) are enqueued first, then two ``queuectl worker start --count 2`` processes start, and
the time runs from their start until the store holds every job succeeded (polled every 5 ms).
``latency``: one idle worker; a job that writes ``date +%s.%N`` is enqueued; latency = that
time - the job's ``created_at`` in the store (the enqueue's time, just before its commit).
Medians are printed; the raw figures with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import PostgresServer, unique_database_name

QUEUECTL = (sys.executable, "-m", "parallelr", "queue")
POLL_S = 0.005
SUCCEEDED_SQL = "SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state = 'succeeded'"
WORKERS_SQL = "SELECT COUNT(*) FROM workers"
CREATED_SQL = "SELECT MAX(created_at) FROM jobs WHERE queue IS NOT NULL"


def read_float(location: str, sql: str) -> float:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as connection:
            return float(connection.execute(sql).fetchone()[0])
    with contextlib.closing(sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=5)) as connection:
        return float(connection.execute(sql).fetchone()[0])


def scalar_reader(location: str) -> Callable[[str], int]:
    """A function that runs one counting query on the store, with a connection kept open."""
    if location.startswith("postgresql://"):
        import psycopg

        connection = psycopg.connect(location, autocommit=True)
        return lambda sql: int(connection.execute(sql).fetchone()[0])
    connection_box: List[Any] = []

    def read(sql: str) -> int:
        if not connection_box:
            if not os.path.exists(location):
                return 0
            connection_box.append(sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=5))
        try:
            return int(connection_box[0].execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0

    return read


def queuectl(location: str, *args: str, env: Dict[str, str]) -> None:
    done = subprocess.run([*QUEUECTL, "--db", location, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"queuectl {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def workers(location: str, count: int, slots: int, env: Dict[str, str], folder: Path) -> Iterator[float]:
    """``count`` worker processes of ``slots`` slots; yields when they were started."""
    procs = []
    started = time.time()
    for number in range(count):
        log = open(folder / f"worker-{number}.log", "wb")
        procs.append(subprocess.Popen([*QUEUECTL, "--db", location, "worker", "start", "--count", str(slots)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
    try:
        yield started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def drain(location: str, jobs: int, env: Dict[str, str], folder: Path) -> float:
    """jobs/s of two workers of two slots over ``jobs`` queued ``true`` jobs."""
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps({"command": "true"}) + "\n" for _ in range(jobs)), encoding="utf-8")
    queuectl(location, "enqueue", "--file", str(path), env=env)
    read = scalar_reader(location)
    with workers(location, 2, 2, env, folder) as started:
        while read(SUCCEEDED_SQL) < jobs:
            if time.time() - started > 600:
                raise TimeoutError("the drain took over 10 minutes")
            time.sleep(POLL_S)
        elapsed = time.time() - started
    return jobs / elapsed


def latencies(location: str, count: int, env: Dict[str, str], folder: Path) -> List[float]:
    """Seconds from ``enqueue`` returning to the job's first command, ``count`` times, one idle worker."""
    read = scalar_reader(location)
    queuectl(location, "status", env=env)  # creates the schema
    found: List[float] = []
    with workers(location, 1, 1, env, folder):
        deadline = time.time() + 60
        while read(WORKERS_SQL) < 1 and time.time() < deadline:
            time.sleep(POLL_S)
        time.sleep(0.5)  # let it reach its idle wait
        for number in range(count):
            stamp = folder / f"stamp-{number}"
            queuectl(location, "enqueue", json.dumps({"command": f"date +%s.%N > {stamp}"}), env=env)
            returned = time.time()
            while not stamp.exists() or not stamp.read_text().strip():
                if time.time() - returned > 30:
                    raise TimeoutError("a job was not picked up within 30 s")
                time.sleep(POLL_S / 5)
            # from the job's enqueue time in the store (the same clock: one host), not from the
            # CLI's exit, which comes after the commit and the wake-up
            found.append(float(stamp.read_text()) - read_float(location, CREATED_SQL))
            time.sleep(0.2)
    return found


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency", type=int, default=10, help="pick-ups measured per store")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(list(argv) or None)
    results: Dict[str, Dict[str, List[float]]] = {"sqlite": {"drain": [], "latency": []},
                                                 "postgresql": {"drain": [], "latency": []}}
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as scratch, PostgresServer() as server:
        root = Path(scratch)
        (root / "home").mkdir()
        env = dict(os.environ, HOME=str(root / "home"))
        for rep in range(options.reps):
            for kind in ("sqlite", "postgresql"):
                folder = root / f"{kind}-{rep}"
                folder.mkdir()
                for what in ("drain", "latency"):
                    if kind == "postgresql":
                        location = server.create_database(unique_database_name(what))
                    else:
                        location = str(folder / f"{what}.db")
                    if what == "drain":
                        results[kind]["drain"].append(drain(location, options.jobs, env, folder))
                    else:
                        results[kind]["latency"].extend(latencies(location, options.latency, env, folder))
    if options.json:
        print(json.dumps(results, indent=2))
    print(f"queue drain of {options.jobs} x true, 2 worker processes x 2 slots, {options.reps} rep(s):")
    for kind, figures in results.items():
        drain_rates = figures["drain"]
        pickups = [value * 1000 for value in figures["latency"]]
        print(f"  {kind:10s} drain {statistics.median(drain_rates):7.1f} jobs/s"
              f" (runs: {', '.join(f'{rate:.1f}' for rate in drain_rates)});"
              f" idle pick-up latency median {statistics.median(pickups):6.1f} ms,"
              f" max {max(pickups):6.1f} ms ({len(pickups)} pick-ups)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
