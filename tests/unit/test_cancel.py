"""Per-task cancellation: CancelToken, run_task under a token, and executors that stop one task,
all of their own tasks, and nothing of anyone else's."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import psutil
import pytest
from executor_support import alive, limits_for, wait_for_pids

from parallelr import process
from parallelr.cancel import CancelToken
from parallelr.executor import ExecutorContext
from parallelr.model import Task, TaskResult, TaskStatus
from parallelr.plugins.executors import process as process_executor
from parallelr.plugins.executors import thread as thread_executor

SLOW: Dict[str, Any] = {"timeout": 60, "kill_grace": 0.5}  # a task's own timeout never ends these tests

EXECUTORS: Dict[str, Callable[..., Any]] = {
    "thread": thread_executor.ThreadExecutor,
    "process": process_executor.ProcessExecutor,
}


def group_alive(pgid: int) -> bool:
    return any(alive(proc.pid) for proc in psutil.process_iter() if _pgid(proc.pid) == pgid)


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


@pytest.fixture
def pid_dir(tmp_path: Path) -> Iterator[Path]:
    """Each task writes "<pid>" into <pid_dir>/<name>; whatever a failed test left running dies."""
    path = tmp_path / "pids"
    path.mkdir()
    yield path
    for record in path.iterdir():
        for pid in (int(word) for word in record.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def sleeper(pid_dir: Path, name: str, seconds: float, trap_term: bool = False) -> Task:
    """A task that records its pid (the group's id) and a background child's, then sleeps."""
    trap = "trap '' TERM; " if trap_term else ""
    record = pid_dir / name
    script = f"{trap}echo $$ >> {record}; sleep {seconds} & echo $! >> {record}; wait"
    return Task(argv=["bash", "-c", script], source=name)


def pids_of(pid_dir: Path, name: str) -> List[int]:
    return wait_for_pids(pid_dir / name, 2, timeout=20)


# -- the token --------------------------------------------------------------------------------
def test_a_child_follows_its_parent_but_not_the_other_way() -> None:
    parent = CancelToken()
    first, second = parent.child(), parent.child()
    assert not parent.cancelled and parent.reason is None

    first.cancel("just this one")
    assert (first.cancelled, first.reason, first.killed) == (True, "just this one", False)
    assert not parent.cancelled and not second.cancelled

    parent.cancel("all of them")
    assert (second.cancelled, second.reason) == (True, "all of them")
    assert first.reason == "just this one"  # the first cancellation in its lineage wins
    assert not second.killed
    parent.kill("now")
    assert second.killed and first.killed and parent.reason == "all of them"


def test_a_child_of_a_cancelled_token_is_cancelled_at_birth() -> None:
    parent = CancelToken()
    parent.kill("gone")
    child = parent.child().child()
    assert (child.cancelled, child.killed, child.reason) == (True, True, "gone")


def test_a_linked_token_follows_each_of_its_parents() -> None:
    caller, executor = CancelToken(), CancelToken()
    task = CancelToken.linked(caller, executor)
    executor.cancel("shutdown")
    assert (task.cancelled, task.reason) == (True, "shutdown")
    assert not caller.cancelled
    other = CancelToken.linked(CancelToken(), CancelToken())
    assert not other.cancelled


def test_a_watch_wakes_for_the_cancel_and_again_for_the_kill() -> None:
    parent = CancelToken()
    token = parent.child()
    with token.watch() as watch:
        assert select.select([watch.fd], [], [], 0)[0] == []
        parent.cancel("stop")
        assert select.select([watch.fd], [], [], 0)[0] == [watch.fd]
        watch.drain()
        assert select.select([watch.fd], [], [], 0)[0] == []
        token.kill()
        assert select.select([watch.fd], [], [], 0)[0] == [watch.fd]
    assert parent._listeners == [] and token._listeners == []  # closing unsubscribed it


def test_a_watch_of_a_cancelled_token_is_readable_at_once() -> None:
    token = CancelToken()
    token.cancel()
    with token.watch() as watch:
        assert select.select([watch.fd], [], [], 0)[0] == [watch.fd]


# -- run_task under a token -------------------------------------------------------------------
def test_a_cancelled_token_returns_cancelled_without_a_process(tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel("not today")
    marker = tmp_path / "ran"
    task = Task(argv=["touch", str(marker)], source="t")
    result = process.run_task(task, 3, limits_for(tmp_path, **SLOW), token)
    assert (result.status, result.error_message, result.pid, result.worker_id) == (
        TaskStatus.CANCELLED, "not today", None, 3
    )
    assert not marker.exists()


def test_a_token_cancelled_from_a_signal_handler_stops_the_task(tmp_path: Path, pid_dir: Path) -> None:
    token = CancelToken()
    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: token.cancel("by a signal"))
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        result = process.run_task(sleeper(pid_dir, "t", 300), 1, limits_for(tmp_path, **SLOW), token)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "by a signal")
    assert result.duration < 5
    assert [pid for pid in pids_of(pid_dir, "t") if alive(pid)] == []


def test_kill_sigkills_at_once_without_the_grace_period(tmp_path: Path, pid_dir: Path) -> None:
    token = CancelToken()
    limits = limits_for(tmp_path, timeout=60, kill_grace=60)  # a cancel would wait a minute for SIGKILL
    executor = thread_executor.ThreadExecutor(ExecutorContext(workers=1, limits=limits))
    future = executor.submit(sleeper(pid_dir, "t", 300, trap_term=True), 1, token)
    pids = pids_of(pid_dir, "t")
    started = time.monotonic()
    token.kill("killed by test")
    result = future.result(timeout=10)
    assert time.monotonic() - started < 5
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "killed by test")
    assert [pid for pid in pids if alive(pid)] == []
    executor.shutdown(cancel=False)


def test_kill_after_cancel_cuts_the_grace_short(tmp_path: Path, pid_dir: Path) -> None:
    limits = limits_for(tmp_path, timeout=60, kill_grace=60)
    executor = thread_executor.ThreadExecutor(ExecutorContext(workers=1, limits=limits))
    future = executor.submit(sleeper(pid_dir, "t", 300, trap_term=True), 1)
    pids = pids_of(pid_dir, "t")
    executor.token.cancel("first")
    time.sleep(0.3)
    assert not future.done()  # it ignores SIGTERM and has a minute of grace
    executor.kill()  # the second Ctrl+C
    result = future.result(timeout=10)
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "first")
    assert [pid for pid in pids if alive(pid)] == []
    executor.shutdown(cancel=False)


def test_many_tasks_under_tokens_leave_no_descriptors_behind(tmp_path: Path) -> None:
    limits = limits_for(tmp_path, **SLOW)
    # Warm the one-time descriptors (/dev/null for stdin, the executable cache) first.
    process.run_task(Task(argv=["true"], source="t"), 1, limits, CancelToken())
    before = len(os.listdir("/proc/self/fd"))
    executor = thread_executor.ThreadExecutor(ExecutorContext(workers=4, limits=limits))
    run_token = CancelToken()
    futures = []
    for number in range(200):
        token = run_token.child() if number % 2 else None
        futures.append(executor.submit(Task(argv=["true"], source=f"t{number}"), number % 4 + 1, token))
    results = [future.result(timeout=60) for future in futures]
    executor.shutdown(cancel=False)
    cancelled = CancelToken()
    cancelled.cancel()
    for _ in range(20):  # the paths that return before a process starts hold nothing either
        process.run_task(Task(argv=["true"], source="t"), 1, limits, cancelled)
        process.run_task(Task(argv=["no-such-command-parallelr-test"], source="t"), 1, limits, CancelToken())
    assert {result.status for result in results} == {TaskStatus.SUCCESS}
    assert len(os.listdir("/proc/self/fd")) == before
    assert run_token._listeners == []


# -- executors ---------------------------------------------------------------------------------
@pytest.fixture(params=sorted(EXECUTORS))
def executor_factory(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return EXECUTORS[request.param]


def test_cancelling_one_task_of_three_stops_that_one_only(
    tmp_path: Path, pid_dir: Path, executor_factory: Callable[..., Any]
) -> None:
    executor = executor_factory(ExecutorContext(workers=3, limits=limits_for(tmp_path, **SLOW)))
    tokens = [CancelToken() for _ in range(3)]
    seconds = {"a": 2, "b": 300, "c": 2}
    futures = [
        executor.submit(sleeper(pid_dir, name, seconds[name]), slot, token)
        for slot, (name, token) in enumerate(zip("abc", tokens), start=1)
    ]
    victim = pids_of(pid_dir, "b")
    pids_of(pid_dir, "a")
    pids_of(pid_dir, "c")

    tokens[1].cancel("Cancelled: this one only")

    results: List[TaskResult] = [future.result(timeout=30) for future in futures]
    assert [r.status for r in results] == [TaskStatus.SUCCESS, TaskStatus.CANCELLED, TaskStatus.SUCCESS]
    assert results[1].error_message == "Cancelled: this one only"
    assert results[1].duration < 2  # stopped, not waited for
    assert not group_alive(victim[0])
    assert [pid for pid in victim if alive(pid)] == []
    executor.shutdown(cancel=False)


def test_shutdown_of_one_executor_leaves_another_executors_task_alone(
    tmp_path: Path, pid_dir: Path, executor_factory: Callable[..., Any]
) -> None:
    first = executor_factory(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    second = thread_executor.ThreadExecutor(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    spared_token = CancelToken()
    doomed = first.submit(sleeper(pid_dir, "doomed", 300), 1)
    spared = second.submit(sleeper(pid_dir, "spared", 300), 1, spared_token)
    doomed_pids, spared_pids = pids_of(pid_dir, "doomed"), pids_of(pid_dir, "spared")

    first.shutdown(cancel=True)

    assert (doomed.result(timeout=15).status, doomed.result().error_message) == (
        TaskStatus.CANCELLED, "Cancelled by shutdown"
    )
    assert [pid for pid in doomed_pids if alive(pid)] == []
    assert not spared.done()
    assert all(alive(pid) for pid in spared_pids)
    assert not second.token.cancelled
    spared_token.cancel("its own reason")  # and only now does it stop, for its own reason
    assert (spared.result(timeout=15).status, spared.result().error_message) == (
        TaskStatus.CANCELLED, "its own reason"
    )
    second.shutdown(cancel=False)


def test_a_token_cancelled_before_submit_starts_no_process(
    tmp_path: Path, executor_factory: Callable[..., Any]
) -> None:
    executor = executor_factory(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    token = CancelToken()
    token.cancel("never")
    marker = tmp_path / "ran"
    result = executor.submit(Task(argv=["touch", str(marker)], source="t"), 1, token).result(timeout=15)
    executor.shutdown(cancel=False)
    assert (result.status, result.error_message, result.pid) == (TaskStatus.CANCELLED, "never", None)
    assert not marker.exists()


def test_a_task_cancelled_while_it_waits_for_a_worker_never_starts(
    tmp_path: Path, pid_dir: Path, executor_factory: Callable[..., Any]
) -> None:
    executor = executor_factory(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    blocker = executor.submit(sleeper(pid_dir, "blocker", 1), 1)
    pids_of(pid_dir, "blocker")
    token = CancelToken()
    marker = tmp_path / "ran"
    waiting = executor.submit(Task(argv=["touch", str(marker)], source="t"), 1, token)
    token.cancel("changed my mind")
    assert blocker.result(timeout=15).status is TaskStatus.SUCCESS
    result = waiting.result(timeout=15)
    executor.shutdown(cancel=False)
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "changed my mind")
    assert result.pid is None
    assert not marker.exists()


def test_process_executor_kills_one_task_at_once(tmp_path: Path, pid_dir: Path) -> None:
    limits = limits_for(tmp_path, timeout=60, kill_grace=60)
    executor = process_executor.ProcessExecutor(ExecutorContext(workers=2, limits=limits))
    token = CancelToken()
    victim = executor.submit(sleeper(pid_dir, "victim", 300, trap_term=True), 1, token)
    other = executor.submit(sleeper(pid_dir, "other", 1.5), 2, CancelToken())
    victim_pids = pids_of(pid_dir, "victim")
    pids_of(pid_dir, "other")
    started = time.monotonic()
    token.kill("killed by test")
    result = victim.result(timeout=15)
    assert time.monotonic() - started < 5
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "killed by test")
    assert [pid for pid in victim_pids if alive(pid)] == []
    assert other.result(timeout=15).status is TaskStatus.SUCCESS
    # The worker that ran the cancelled task runs the next one normally.
    again = [executor.submit(Task(argv=["true"], source=f"t{n}"), n, CancelToken()) for n in (1, 2)]
    assert [future.result(timeout=15).status for future in again] == [TaskStatus.SUCCESS] * 2
    executor.shutdown(cancel=False)


def test_two_process_executors_signal_only_their_own_workers(tmp_path: Path, pid_dir: Path) -> None:
    first = process_executor.ProcessExecutor(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    second = process_executor.ProcessExecutor(ExecutorContext(workers=1, limits=limits_for(tmp_path, **SLOW)))
    doomed = first.submit(sleeper(pid_dir, "doomed", 300), 1)
    spared = second.submit(sleeper(pid_dir, "spared", 300), 1)
    doomed_pids, spared_pids = pids_of(pid_dir, "doomed"), pids_of(pid_dir, "spared")

    first.kill()
    first.shutdown(cancel=True)

    assert doomed.result(timeout=15).status is TaskStatus.CANCELLED
    assert [pid for pid in doomed_pids if alive(pid)] == []
    assert not spared.done() and all(alive(pid) for pid in spared_pids)
    second.shutdown(cancel=True)
    assert (spared.result(timeout=15).status, spared.result().error_message) == (
        TaskStatus.CANCELLED, "Cancelled by shutdown"
    )


def test_a_tasks_token_stops_with_its_executor_or_its_caller_and_stops_neither() -> None:
    owner, caller = CancelToken(), CancelToken()
    alone, with_caller, other = owner.for_task(), owner.for_task(caller), owner.for_task(CancelToken())

    caller.cancel("by the caller")
    assert (alone.cancelled, with_caller.reason, other.cancelled, owner.cancelled) == (
        False, "by the caller", False, False)

    with_caller.cancel("by itself")  # stopping one task stops no one else
    owner.kill("Cancelled by shutdown")
    stopped = "Cancelled by shutdown"
    assert (alone.reason, alone.killed, other.reason) == (stopped, True, stopped)
    assert with_caller.reason == "by the caller"  # the first reason stays
