"""The thread executor: what is its own (one thread supervises every task, timers from one heap,
posix_spawn) and the edge cases where posix_spawn must give exactly Popen's results."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from executor_support import alive, limits_for, wait_for_pids

from parallelr import posix_spawn
from parallelr.cancel import CancelToken
from parallelr.executor import ExecutorContext
from parallelr.model import Task, TaskResult, TaskStatus
from parallelr.plugins.executors import thread as thread_executor
from parallelr.plugins.executors import thread_loop


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    yield path
    if path.exists():  # whatever a failed test (or an escaped child) left running is ours: kill it
        for pid in (int(word) for word in path.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def executor_for(tmp_path: Path, workers: int = 4, **limits: Any) -> thread_executor.ThreadExecutor:
    limits.setdefault("timeout", 30)  # a loaded test machine must not turn a result into TIMEOUT
    context = ExecutorContext(workers=workers, limits=limits_for(tmp_path, **limits))
    return thread_executor.ThreadExecutor(context)


def run_all(executor: Any, tasks: List[Task], timeout: float = 30) -> List[TaskResult]:
    futures = [executor.submit(task, slot) for slot, task in enumerate(tasks, start=1)]
    results = [future.result(timeout=timeout) for future in futures]
    executor.shutdown(cancel=False)
    return results


def outcome(result: TaskResult) -> Tuple[Any, ...]:
    return (result.status, result.exit_code, result.error_message, result.stdout, result.stderr)


def loop_threads() -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "supervisor"]


def test_tasks_are_spawned_with_posix_spawn_here() -> None:
    # glibc >= 2.34 on the test machines: without it every spawn would go through Popen.
    assert posix_spawn.available() is True


def test_many_tasks_at_once_run_on_one_thread(tmp_path: Path, pid_file: Path) -> None:
    before = len(loop_threads())
    executor = executor_for(tmp_path, workers=24, timeout=60)
    script = f"echo $$ >> {pid_file}; read line < {tmp_path / 'go'}; echo done $PARALLELR_TEST_N"
    os.mkfifo(tmp_path / "go")
    tasks = [
        Task(argv=["sh", "-c", script], source=f"t{n}", env=(("PARALLELR_TEST_N", str(n)),))
        for n in range(24)
    ]
    futures = [executor.submit(task, slot) for slot, task in enumerate(tasks, start=1)]
    wait_for_pids(pid_file, 24)  # all 24 run at the same time ...
    assert len(loop_threads()) == before + 1  # ... supervised by one thread
    assert [thread for thread in threading.enumerate() if thread.name.startswith("Worker_")] == []
    with open(tmp_path / "go", "w") as fifo:  # every reader gets its line (or EOF) at once
        fifo.write("\n" * 24)
    results = [future.result(timeout=30) for future in futures]
    executor.shutdown(cancel=False)
    assert [(r.status, r.stdout) for r in results] == [(TaskStatus.SUCCESS, f"done {n}\n") for n in range(24)]
    assert len(loop_threads()) == before  # the shutdown ended it


def test_timeouts_of_many_tasks_come_from_one_heap(tmp_path: Path) -> None:
    executor = executor_for(tmp_path, workers=4, timeout=60, kill_grace=0.2)
    tasks = [
        Task(argv=["sleep", "30"], source="a", timeout=0.6),
        Task(argv=["sleep", "30"], source="b", timeout=0.2),
        Task(argv=["sh", "-c", "exit 0"], source="c"),
        Task(argv=["sleep", "30"], source="d", timeout=0.4),
    ]
    results = run_all(executor, tasks)
    assert [(r.status, r.error_message) for r in results] == [
        (TaskStatus.TIMEOUT, "Timeout after 0.6s"),
        (TaskStatus.TIMEOUT, "Timeout after 0.2s"),
        (TaskStatus.SUCCESS, ""),
        (TaskStatus.TIMEOUT, "Timeout after 0.4s"),
    ]
    assert [r.pid for r in results if alive(r.pid)] == []


def test_cancelling_one_task_of_many_stops_only_that_one(tmp_path: Path, pid_file: Path) -> None:
    executor = executor_for(tmp_path, workers=3, timeout=60)
    go = tmp_path / "go"
    tokens = [CancelToken() for _ in range(3)]
    script = f"echo $$ >> {pid_file}; while [ ! -e {go} ]; do sleep 0.05; done"
    futures = [
        executor.submit(Task(argv=["sh", "-c", script], source=f"t{n}"), n + 1, cancel=token)
        for n, token in enumerate(tokens)
    ]
    pids = wait_for_pids(pid_file, 3)
    tokens[1].cancel("Cancelled by the test")
    middle = futures[1].result(timeout=15)
    assert (middle.status, middle.error_message) == (TaskStatus.CANCELLED, "Cancelled by the test")
    assert not futures[0].done() and not futures[2].done()
    go.touch()
    assert [futures[n].result(timeout=15).status for n in (0, 2)] == [TaskStatus.SUCCESS] * 2
    executor.shutdown(cancel=False)
    assert [pid for pid in pids if alive(pid)] == []


def test_a_task_that_closes_its_output_early_but_runs_on(tmp_path: Path) -> None:
    executor = executor_for(tmp_path)
    script = "echo first; exec >&- 2>&-; sleep 0.3; exit 4"
    (result,) = run_all(executor, [Task(argv=["sh", "-c", script], source="t")])
    assert outcome(result) == (TaskStatus.FAILED, 4, "Exit code 4", "first\n", "")


def test_a_background_child_in_the_group_is_stopped_when_the_leader_ends(
    tmp_path: Path, pid_file: Path
) -> None:
    executor = executor_for(tmp_path)
    script = f"sleep 30 & echo $! >> {pid_file}; echo started"
    (result,) = run_all(executor, [Task(argv=["sh", "-c", script], source="t")])
    assert outcome(result) == (TaskStatus.SUCCESS, 0, "", "started\n", "")
    assert not alive(wait_for_pids(pid_file, 1)[0])


def test_an_escaped_child_holding_the_pipe_does_not_hold_the_result(tmp_path: Path, pid_file: Path) -> None:
    # setsid leaves the task's group: nothing signals it, and it keeps stdout open; the drain of
    # the pipes after the leader's exit is bounded by the grace period.
    executor = executor_for(tmp_path, kill_grace=0.3)
    script = f"setsid sh -c 'echo $$ >> {pid_file}; exec sleep 30' & echo started; sleep 0.2"
    (result,) = run_all(executor, [Task(argv=["sh", "-c", script], source="t")])
    assert outcome(result) == (TaskStatus.SUCCESS, 0, "", "started\n", "")
    assert alive(wait_for_pids(pid_file, 1)[0])  # it escaped on purpose; the fixture kills it


def test_huge_and_binary_output_keep_a_bounded_tail(tmp_path: Path) -> None:
    executor = executor_for(tmp_path, max_output_capture=100)
    tasks = [
        Task(argv=["sh", "-c", "head -c 30000000 /dev/zero | tr '\\0' x; printf END"], source="huge"),
        Task(argv=["sh", "-c", "printf 'a\\000b'; printf 'caf\\303\\251' >&2"], source="binary"),
    ]
    huge, binary = run_all(executor, tasks)
    assert (huge.status, huge.stdout) == (TaskStatus.SUCCESS, "x" * 97 + "END")
    assert (binary.stdout, binary.stderr) == ("a\x00b", "café")


def test_edge_cases_give_popens_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_executable = tmp_path / "script with space ü.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    bad_interpreter = tmp_path / "bad.sh"
    bad_interpreter.write_text("#!/no/such/interpreter\n")
    bad_interpreter.chmod(0o755)
    no_shebang = tmp_path / "no-shebang.sh"  # execve says ENOEXEC; a shell fallback would run it
    no_shebang.write_text("echo ran\n")
    no_shebang.chmod(0o755)
    tasks = [
        Task(argv=["no-such-command-parallelr-spawn"], source="enoent"),
        Task(argv=[str(not_executable)], source="eacces"),
        Task(argv=[str(bad_interpreter)], source="interpreter"),
        Task(argv=["./bad.sh"], source="relative", cwd=str(tmp_path)),
        Task(argv=["pwd"], source="no cwd", cwd=str(tmp_path / "missing dir")),
        Task(argv=["echo", "nul\0byte"], source="nul"),
        Task(argv=["sh", "-c", "kill -9 $$"], source="signal"),
        Task(argv=["sh", "-c", "kill -TERM $$"], source="term"),
        Task(argv=["sh", "-c", 'echo "$PARALLELR_RUN_ID $PARALLELR_TASK_INDEX $MINE"'], source="env",
             index=7, env=(("MINE", "a b;$c"),)),
        Task(argv=["sh", "-c", "pwd"], source="unicode cwd", cwd=str(tmp_path)),
        Task(argv=["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"], source="signals"),
        Task(argv=["sh", "-c", "echo $PATH"], source="own PATH", env=(("PATH", "/usr/bin:/bin"),)),
        Task(argv=["sh", "-c", "ls /proc/self/fd | wc -l"], source="descriptors"),
        Task(argv=[str(no_shebang)], source="no #! line"),
        Task(argv=["/bin/sh", "-c", "echo $PATH"], source="a path, own PATH", env=(("PATH", "/nowhere"),)),
    ]
    inherited = os.open(os.devnull, os.O_RDONLY)  # an inheritable descriptor must not reach a task
    os.set_inheritable(inherited, True)
    try:
        outcomes = {}
        for name in ("posix_spawn", "Popen"):
            if name == "Popen":  # as on a C library without posix_spawn's file actions
                monkeypatch.setattr(posix_spawn, "load", lambda: None)
            executor = executor_for(tmp_path, workers=4, run_id="run-1")
            outcomes[name] = [outcome(result) for result in run_all(executor, tasks)]
    finally:
        os.close(inherited)
    assert outcomes["posix_spawn"] == outcomes["Popen"]
    messages = [(status, message) for status, _code, message, _out, _err in outcomes["posix_spawn"][:6]]
    assert messages == [
        (TaskStatus.ERROR, "command not found: no-such-command-parallelr-spawn"),
        (TaskStatus.ERROR, f"permission denied: {not_executable}"),
        (TaskStatus.ERROR, f"bad interpreter: the #! line of {bad_interpreter} {NO_PROGRAM}"),
        (TaskStatus.ERROR, f"bad interpreter: the #! line of ./bad.sh {NO_PROGRAM}"),
        (TaskStatus.ERROR, f"working directory not found: {tmp_path / 'missing dir'}"),
        (TaskStatus.ERROR, "cannot start echo: embedded null byte"),
    ]
    assert outcomes["posix_spawn"][6][:3] == (TaskStatus.FAILED, -9, "Killed by signal SIGKILL")
    assert outcomes["posix_spawn"][7][:3] == (TaskStatus.FAILED, -15, "Killed by signal SIGTERM")
    assert outcomes["posix_spawn"][8][3] == "run-1 7 a b;$c\n"
    assert outcomes["posix_spawn"][9][3] == f"{tmp_path}\n"
    assert outcomes["posix_spawn"][12][3] == "4\n"  # 0, 1, 2 and ls's own handle on the folder
    assert outcomes["posix_spawn"][13][:4] == (
        TaskStatus.ERROR, None, f"cannot start {no_shebang}: Exec format error", ""
    )
    assert outcomes["posix_spawn"][14][:4] == (TaskStatus.SUCCESS, 0, "", "/nowhere\n")


NO_PROGRAM = "names a program that does not exist"


def test_shutdown_without_cancel_runs_the_waiting_tasks_too(tmp_path: Path) -> None:
    before = len(loop_threads())
    executor = executor_for(tmp_path, workers=2)
    tasks = [Task(argv=["sh", "-c", f"sleep 0.1; echo {n}"], source=f"t{n}") for n in range(5)]
    futures = [executor.submit(task, 1) for task in tasks]
    executor.shutdown(cancel=False)
    assert all(future.done() for future in futures)
    assert [(f.result().status, f.result().stdout) for f in futures] == [
        (TaskStatus.SUCCESS, f"{n}\n") for n in range(5)
    ]
    assert len(loop_threads()) == before
    late = executor.submit(Task(argv=["true"], source="late"), 1).result(timeout=5)
    assert (late.status, late.error_message) == (TaskStatus.CANCELLED, "Cancelled by shutdown")


def test_shutdown_with_cancel_while_tasks_run_and_wait(tmp_path: Path, pid_file: Path) -> None:
    executor = executor_for(tmp_path, workers=2, timeout=60)
    task = Task(argv=["sh", "-c", f"echo $$ >> {pid_file}; sleep 30"], source="t")
    futures = [executor.submit(task, slot) for slot in (1, 2, 1, 2)]
    pids = wait_for_pids(pid_file, 2)
    executor.shutdown(cancel=True)
    _done, not_done = concurrent.futures.wait(futures, timeout=15)
    assert not not_done
    assert [f.result().status for f in futures[:2]] == [TaskStatus.CANCELLED] * 2
    assert [f.cancelled() for f in futures[2:]] == [True, True]
    assert [pid for pid in pids if alive(pid)] == []


def test_kill_stops_tasks_that_ignore_sigterm_at_once(tmp_path: Path, pid_file: Path) -> None:
    executor = executor_for(tmp_path, workers=2, timeout=60, kill_grace=60)
    script = f"trap '' TERM; echo $$ >> {pid_file}; sleep 30 & echo $! >> {pid_file}; wait"
    futures = [executor.submit(Task(argv=["sh", "-c", script], source=f"t{n}"), n) for n in (1, 2)]
    pids = wait_for_pids(pid_file, 4)
    executor.kill()  # a grace of 60 s: only SIGKILL ends these within the test's timeout
    results = [future.result(timeout=15) for future in futures]
    expected = (TaskStatus.CANCELLED, "Cancelled by shutdown")
    assert [(r.status, r.error_message) for r in results] == [expected] * 2
    executor.shutdown(cancel=True)
    assert [pid for pid in pids if alive(pid)] == []


def test_a_task_cancelled_before_it_starts_spawns_nothing(tmp_path: Path, pid_file: Path) -> None:
    executor = executor_for(tmp_path)
    token = CancelToken()
    token.cancel("not wanted")
    task = Task(argv=["sh", "-c", f"echo $$ >> {pid_file}"], source="t")
    result = executor.submit(task, 1, cancel=token).result(timeout=5)
    executor.shutdown(cancel=False)
    assert (result.status, result.error_message, result.pid) == (TaskStatus.CANCELLED, "not wanted", None)
    assert not pid_file.exists()


def test_without_epoll_each_task_runs_in_a_thread_of_its_own(
    tmp_path: Path, pid_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a Unix without epoll: the same results, from process.run_task in a thread per task.
    monkeypatch.setattr(thread_loop, "AVAILABLE", False)
    before = len(loop_threads())
    executor = executor_for(tmp_path, workers=2, kill_grace=0.2)
    tasks = [
        Task(argv=["sh", "-c", "echo one"], source="a"),
        Task(argv=["sleep", "30"], source="b", timeout=0.2),
        Task(argv=["sh", "-c", "exit 3"], source="c"),
    ]
    results = run_all(executor, tasks)
    assert len(loop_threads()) == before
    assert [(r.status, r.error_message, r.stdout) for r in results] == [
        (TaskStatus.SUCCESS, "", "one\n"),
        (TaskStatus.TIMEOUT, "Timeout after 0.2s", ""),
        (TaskStatus.FAILED, "Exit code 3", ""),
    ]
    executor = executor_for(tmp_path, workers=2, timeout=60)
    task = Task(argv=["sh", "-c", f"echo $$ >> {pid_file}; sleep 30"], source="t")
    futures = [executor.submit(task, slot) for slot in (1, 2, 1)]
    pids = wait_for_pids(pid_file, 2)
    executor.shutdown(cancel=True)
    assert [f.result(timeout=15).status for f in futures[:2]] == [TaskStatus.CANCELLED] * 2
    assert futures[2].cancelled()
    assert [pid for pid in pids if alive(pid)] == []
