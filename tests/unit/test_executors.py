"""The thread and process executors: same results for the same tasks, and a shutdown that stops."""

from __future__ import annotations

import concurrent.futures
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
from executor_support import alive, limits_for, wait_for_pids

from parallelr.executor import ExecutorContext
from parallelr.model import Task, TaskStatus
from parallelr.plugins.executors import process as process_executor
from parallelr.plugins.executors import thread as thread_executor

EXECUTORS = {
    "thread": thread_executor.ThreadExecutor,
    "process": process_executor.ProcessExecutor,
}


@pytest.fixture(params=sorted(EXECUTORS))
def executor_factory(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return EXECUTORS[request.param]


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    yield path
    if path.exists():  # whatever a failed test left running is ours: kill it
        for pid in (int(word) for word in path.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


SAME_TASKS = [
    Task(argv=["true"], source="ok"),
    Task(argv=["sh", "-c", "exit 3"], source="fail"),
    Task(argv=["sleep", "30"], source="slow"),
    Task(argv=["no-such-command-parallelr-test"], source="missing"),
]
EXPECTED = [
    (TaskStatus.SUCCESS, 0, ""),
    (TaskStatus.FAILED, 3, "Exit code 3"),
    (TaskStatus.TIMEOUT, None, "Timeout after 1s"),
    (TaskStatus.ERROR, None, "command not found: no-such-command-parallelr-test"),
]


def test_hooks_name_the_executors() -> None:
    assert thread_executor.parallelr_executors() == {"thread": thread_executor.ThreadExecutor}
    assert process_executor.parallelr_executors() == {"process": process_executor.ProcessExecutor}


def test_both_executors_give_identical_results(tmp_path: Path) -> None:
    outcomes = {}
    for name, factory in sorted(EXECUTORS.items()):
        executor = factory(ExecutorContext(workers=4, limits=limits_for(tmp_path)))
        futures = [executor.submit(task, worker_id) for worker_id, task in enumerate(SAME_TASKS, start=1)]
        results = [future.result(timeout=30) for future in futures]
        executor.shutdown(cancel=False)
        assert [result.task for result in results] == SAME_TASKS
        assert [result.worker_id for result in results] == [1, 2, 3, 4]
        outcomes[name] = [(r.status, r.exit_code, r.error_message) for r in results]
    assert outcomes["thread"] == EXPECTED
    assert outcomes["process"] == EXPECTED


def test_process_executor_runs_tasks_in_pool_processes(tmp_path: Path) -> None:
    executor = process_executor.ProcessExecutor(ExecutorContext(workers=2, limits=limits_for(tmp_path)))
    result = executor.submit(Task(argv=["sh", "-c", "echo $PPID"], source="t"), 1).result(timeout=30)
    executor.shutdown(cancel=False)
    assert result.status is TaskStatus.SUCCESS
    assert int(result.stdout) != os.getpid()  # the task's parent was a pool worker


def test_shutdown_with_cancel_stops_running_and_queued_tasks(
    tmp_path: Path, pid_file: Path, executor_factory: Callable[..., Any]
) -> None:
    executor = executor_factory(ExecutorContext(workers=2, limits=limits_for(tmp_path, timeout=60)))
    task = Task(argv=["bash", "-c", f"echo $$ >> {pid_file}; sleep 300 & wait"], source="t")
    futures = [executor.submit(task, worker_id) for worker_id in (1, 2, 1, 2, 1)]
    running_pids = wait_for_pids(pid_file, 2)

    executor.shutdown(cancel=True)

    _done, not_done = concurrent.futures.wait(futures, timeout=15)
    assert not not_done
    statuses = []
    for future in futures:
        if future.cancelled():
            statuses.append("future cancelled")
        else:
            result = future.result()
            assert result.error_message == "Cancelled by shutdown"
            statuses.append(result.status)
    assert statuses[:2] == [TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    assert all(status in ("future cancelled", TaskStatus.CANCELLED) for status in statuses)
    assert len(wait_for_pids(pid_file, 2)) == 2  # queued tasks never started
    assert [pid for pid in running_pids if alive(pid)] == []

    late = executor.submit(task, 1).result(timeout=5)
    assert (late.status, late.error_message) == (TaskStatus.CANCELLED, "Cancelled by shutdown")


def test_a_broken_pool_gives_an_error_result_not_an_exception(tmp_path: Path, pid_file: Path) -> None:
    executor = process_executor.ProcessExecutor(
        ExecutorContext(workers=1, limits=limits_for(tmp_path, timeout=60))
    )
    task = Task(argv=["sh", "-c", f"echo $$ >> {pid_file}; exec sleep 300"], source="t")
    future = executor.submit(task, 1)
    (task_pid,) = wait_for_pids(pid_file, 1)
    worker = psutil.Process(task_pid).parent()
    assert worker is not None and worker.pid != os.getpid()
    worker.kill()  # the pool breaks; the orphaned task is killed by the pid_file fixture

    result = future.result(timeout=15)
    assert result.status is TaskStatus.ERROR
    assert result.error_message.startswith("executor failed: ")
    after = executor.submit(task, 1).result(timeout=5)
    assert after.status is TaskStatus.ERROR
    executor.shutdown(cancel=False)


def test_sigterm_to_a_pool_worker_stops_its_task_first(tmp_path: Path, pid_file: Path) -> None:
    executor = process_executor.ProcessExecutor(
        ExecutorContext(workers=1, limits=limits_for(tmp_path, timeout=60))
    )
    task = Task(
        argv=["bash", "-c", f"echo $$ >> {pid_file}; sleep 300 & echo $! >> {pid_file}; wait"], source="t"
    )
    future = executor.submit(task, 1)
    task_pids = wait_for_pids(pid_file, 2)
    worker = psutil.Process(task_pids[0]).parent()
    assert worker is not None and worker.pid != os.getpid()
    worker.terminate()

    result = future.result(timeout=15)
    assert result.status is TaskStatus.ERROR  # the worker is gone, and with it the pool
    worker.wait(timeout=15)  # it exits once its task is stopped
    assert [pid for pid in task_pids if alive(pid)] == []
    executor.shutdown(cancel=False)


def test_cancelling_a_queued_future(
    tmp_path: Path, pid_file: Path, executor_factory: Callable[..., Any]
) -> None:
    executor = executor_factory(ExecutorContext(workers=1, limits=limits_for(tmp_path, timeout=60)))
    blocker = executor.submit(Task(argv=["bash", "-c", f"echo $$ >> {pid_file}; sleep 300"], source="t"), 1)
    wait_for_pids(pid_file, 1)
    queued = [executor.submit(Task(argv=["true"], source=f"q{i}"), 1) for i in range(4)]
    assert blocker.cancel() is False  # already running
    assert queued[-1].cancel() is True  # still waiting for a slot
    assert queued[-1].cancelled()
    executor.shutdown(cancel=True)
    assert blocker.result(timeout=15).status is TaskStatus.CANCELLED
