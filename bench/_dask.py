"""Workload k: the ``dask`` executor's makespan against ``--executor process``, same tasks, same -m.

200 [50] tasks of ``sleep 0.1`` with ``-m 2`` (ideal makespan 10 [2.5] s), three ways:

- ``--executor process``: the pool of two processes, the baseline;
- ``--executor dask`` without a scheduler: a local cluster of two worker processes (one thread
  each), started and stopped by every run, so its wall time includes the cluster's start-up;
- ``--executor dask --dask-scheduler ADDR``: an external cluster (``dask scheduler`` and two
  ``dask worker --nthreads 1``, all on 127.0.0.1) that this module starts once, before the first
  repetition, and stops when the benchmark ends: the steady-state cost of going through Dask.

The figures are informative (no targets): each Dask variant over the process executor, and the
cost per task above the ideal makespan.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional

from _execute import Stats
from _workloads import QUICK, Figure, Setup, Workload

TASKS, QUICK_TASKS = 200, 50
WORKERS = 2
SLEEP_S = 0.1
START_TIMEOUT = 60.0
LOCAL = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCAL, 0))
        return probe.getsockname()[1]


class _Cluster:
    """A scheduler and WORKERS workers, each in its own session with its output in a file."""

    def __init__(self, folder: str, env: Dict[str, str]) -> None:
        import distributed

        port = _free_port()
        self.address = f"tcp://{LOCAL}:{port}"
        http = ["--dashboard-address", f"{LOCAL}:0"]
        self.procs: List[subprocess.Popen] = [self._start(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", LOCAL, "--port", str(port),
             "--no-dashboard", *http], os.path.join(folder, "scheduler.log"), env)]
        for number in range(1, WORKERS + 1):
            self.procs.append(self._start(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--host", LOCAL,
                 "--nthreads", "1", "--no-dashboard", *http, "--memory-limit", "0"],
                os.path.join(folder, f"worker{number}.log"), env))
        atexit.register(self.stop)
        with distributed.Client(self.address, timeout=START_TIMEOUT, set_as_default=False) as client:
            client.wait_for_workers(WORKERS, timeout=START_TIMEOUT)

    @staticmethod
    def _start(argv: List[str], log: str, env: Dict[str, str]) -> subprocess.Popen:
        with open(log, "w", encoding="utf-8") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)

    def stop(self) -> None:
        """The workers first (without a scheduler they would wait to reconnect), then the scheduler:
        SIGTERM, and SIGKILL to the process group of what does not end within 10 s."""
        for group in (self.procs[1:], self.procs[:1]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 10
            for proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, 9)
                    proc.wait()


def dask(setup: Setup) -> Workload:
    tasks = QUICK_TASKS if setup.sizes == QUICK else TASKS
    sleeps = setup.lines_file(f"dask-sleep-{tasks}.txt", [f"{SLEEP_S:g}"] * tasks)
    ideal = tasks / WORKERS * SLEEP_S
    params = {"tasks": tasks, "workers": WORKERS, "sleep_s": SLEEP_S, "ideal_s": ideal}
    try:
        import distributed  # noqa: F401
    except ImportError:
        return Workload("k", "dask executor", params, (), lambda stats: [],
                        notes=('skipped: distributed is not installed (pip install "parallelr[dask]")',))
    folder = os.path.join(setup.files_dir, "dask-cluster")
    os.makedirs(folder, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HOME"] = folder
    cluster = _Cluster(folder, env)
    what = f"({tasks} x sleep {SLEEP_S:g})"
    variants = (
        setup.parallelr("process", f"--executor process -m {WORKERS} {what}", sleeps, "sleep @ARG@", WORKERS,
                        "--executor", "process"),
        setup.parallelr("dask-local", f"--executor dask, local cluster -m {WORKERS} {what}", sleeps,
                        "sleep @ARG@", WORKERS, "--executor", "dask"),
        setup.parallelr("dask-external", f"--executor dask, external 2 x 1 thread -m {WORKERS} {what}",
                        sleeps, "sleep @ARG@", WORKERS, "--executor", "dask", "--dask-scheduler",
                        cluster.address),
    )

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        base = stats["process"].wall_s
        figures = []
        for key in ("dask-local", "dask-external"):
            wall = stats[key].wall_s
            label = f"{key.replace('-', ' ')} / process"
            figures.append(Figure(label, None if wall is None or not base else wall / base))
        for key in ("process", "dask-local", "dask-external"):
            figures.append(Figure(f"{key}: ms per task above the ideal {ideal:g} s",
                                  _per_task_ms(stats[key].wall_s, ideal, tasks), "ms"))
        return figures

    notes = ("dask-local includes starting and stopping its local cluster in every run; dask-external "
             "uses one cluster started before the first repetition",)
    return Workload("k", "dask executor", params, variants, judge, notes)


def _per_task_ms(wall: Optional[float], ideal: float, tasks: int) -> Optional[float]:
    return None if wall is None else (wall - ideal) / tasks * 1000
