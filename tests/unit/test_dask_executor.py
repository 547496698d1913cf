"""The ``dask`` executor as an object, on the session's real cluster: per-task cancel of a
running and of a queued attempt, shutdown, kill() from a signal handler, and that nothing of a
finished attempt stays on the scheduler. Plus what needs no cluster: sizing, addresses, imports.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from dask_support import DaskCluster, dask_cluster  # noqa: F401
from executor_support import alive, limits_for, wait_for_pids

from parallelr.cancel import CancelToken
from parallelr.errors import ConfigError, UsageError
from parallelr.executor import ExecutorContext
from parallelr.model import Task, TaskStatus
from parallelr.plugins.executors.dask import check_address

RESULT_WAIT = 30


def test_the_plugin_and_the_cli_start_without_importing_distributed() -> None:
    code = ("import sys; from parallelr.cli import main; main(['--version']); "
            "print('distributed' in sys.modules, 'dask' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert found.stdout.splitlines()[-1] == "False False", found.stdout + found.stderr
    assert "dask-" in found.stdout  # and the plugin is loaded


@pytest.mark.parametrize(("slots", "cpus", "processes", "threads"),
                         [(1, 8, 1, 1), (2, 2, 2, 1), (3, 2, 2, 2), (5, 8, 5, 1), (20, 2, 2, 10)])
def test_a_local_cluster_has_a_thread_for_every_slot(
    slots: int, cpus: int, processes: int, threads: int
) -> None:
    from parallelr.plugins.executors.dask_cluster import LocalSize

    assert LocalSize.for_slots(slots, cpus) == LocalSize(processes, threads)


def test_addresses_are_taken_as_dask_writes_them() -> None:
    assert check_address("127.0.0.1:8786", "--dask-scheduler") == "tcp://127.0.0.1:8786"
    assert check_address(" tls://sched.example.com:8786 ", "x") == "tls://sched.example.com:8786"
    assert check_address("tcp://[::1]:8786", "x") == "tcp://[::1]:8786"
    with pytest.raises(UsageError, match=r"^--dask-scheduler: 'tcp://x' is not a Dask scheduler address"):
        check_address("tcp://x", "--dask-scheduler")
    with pytest.raises(ConfigError, match=r"^dask.scheduler: 'udp://x:1' is not"):
        check_address("udp://x:1", "dask.scheduler", ConfigError)


# -- on the cluster -------------------------------------------------------------------------------
@pytest.fixture
def make_executor(tmp_path: Path, dask_cluster: DaskCluster) -> Iterator[Callable[..., Any]]:  # noqa: F811
    from parallelr.plugins.executors.dask_executor import DaskExecutor

    made: List[Any] = []

    def make(workers: int = 2, **limits: Any) -> Any:
        context = ExecutorContext(workers=workers, limits=limits_for(tmp_path, **limits),
                                  options={"dask_scheduler": dask_cluster.address})
        made.append(DaskExecutor(context))
        return made[-1]

    yield make
    for executor in made:
        executor.shutdown(cancel=True)


def sleeper(pids: Path, name: str, seconds: int = 30, trap: str = "") -> Task:
    return Task(argv=("bash", "-c", f'{trap}echo $$ >> "{pids}"; sleep {seconds}'), source=name)


def our_keys(cluster: DaskCluster, prefix: str) -> List[str]:
    def find(dask_scheduler: Any) -> List[str]:
        names = list(dask_scheduler.tasks) + list(dask_scheduler.task_metadata)
        return sorted({str(name) for name in names if str(name).startswith(prefix)})

    return cluster.client.run_on_scheduler(find)


def test_cancelling_one_attempt_stops_it_on_its_worker_and_a_queued_one_never_starts(
    make_executor: Any, tmp_path: Path, dask_cluster: DaskCluster, wait_until: Any  # noqa: F811
) -> None:
    executor = make_executor(timeout=60)
    pids = tmp_path / "pids"
    tokens = [CancelToken() for _ in range(3)]
    futures = [executor.submit(sleeper(pids, f"t{n}", seconds=2 if n == 0 else 30), n, tokens[n])
               for n in range(3)]  # two worker threads: t2 waits in Dask's queue
    running = wait_for_pids(pids, 2)
    tokens[2].cancel("not wanted")  # queued: cancelled in Dask before any worker takes it
    tokens[1].cancel("stop that one")  # running: stopped on its worker

    results = [future.result(timeout=RESULT_WAIT) for future in futures]
    assert [(r.status, r.error_message) for r in results] == [
        (TaskStatus.SUCCESS, ""),
        (TaskStatus.CANCELLED, "stop that one"),
        (TaskStatus.CANCELLED, "not wanted"),
    ]
    assert len(pids.read_text().split()) == 2  # t2 never ran
    assert sorted(result.pid for result in results[:2]) == sorted(running)
    wait_until(lambda: not any(alive(pid) for pid in running), 10, "the cancelled task to end")
    # Nothing of the finished attempts stays on the scheduler: no key, no start mark.
    wait_until(lambda: our_keys(dask_cluster, executor._run) == [], 10, "the keys to be released")


def test_shutdown_with_cancel_stops_the_running_attempts_and_refuses_new_ones(
    make_executor: Any, tmp_path: Path
) -> None:
    executor = make_executor(timeout=60)
    pids = tmp_path / "pids"
    futures = [executor.submit(sleeper(pids, f"t{n}"), n, CancelToken()) for n in (1, 2)]
    running = wait_for_pids(pids, 2)
    executor.shutdown(cancel=True)
    assert all(future.done() for future in futures)
    assert [(f.result().status, f.result().error_message) for f in futures] == \
        [(TaskStatus.CANCELLED, "Cancelled by shutdown")] * 2
    assert not any(alive(pid) for pid in running)
    late = executor.submit(sleeper(pids, "late"), 1)
    assert (late.result(timeout=1).status, late.result().error_message) == \
        (TaskStatus.CANCELLED, "Cancelled by shutdown")


def test_kill_from_a_signal_handler_sigkills_tasks_that_ignore_sigterm(
    make_executor: Any, tmp_path: Path
) -> None:
    executor = make_executor(timeout=60, kill_grace=60)  # a cancel alone would wait a minute
    pids = tmp_path / "pids"
    stubborn = [sleeper(pids, f"t{n}", trap="trap '' TERM; ") for n in (1, 2)]
    futures = [executor.submit(task, n, CancelToken()) for n, task in enumerate(stubborn, 1)]
    running = wait_for_pids(pids, 2)
    previous = signal.signal(signal.SIGUSR1, lambda *_: executor.kill())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        done, _ = concurrent.futures.wait(futures, timeout=RESULT_WAIT)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(done) == 2
    assert [f.result().status for f in futures] == [TaskStatus.CANCELLED] * 2
    executor.shutdown(cancel=True)
    assert not any(alive(pid) for pid in running)
