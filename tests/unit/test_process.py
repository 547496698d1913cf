"""Running one task: statuses, output tail, timeouts that leave nothing behind, accounting, cancel."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest

from parallelr import process
from parallelr.cancel import CancelToken
from parallelr.model import ExecutionLimits, Task, TaskResult, TaskStatus


def limits_for(tmp_path: Path, **overrides: object) -> ExecutionLimits:
    values = {"timeout": 30, "workspace": str(tmp_path / "ws"), "runner_pid": os.getpid(), "kill_grace": 0.5}
    values.update(overrides)
    return ExecutionLimits(**values)  # type: ignore[arg-type]


def run(argv: List[str], tmp_path: Path, worker_id: int = 1, env=(), **overrides: object) -> TaskResult:
    return process.run_task(
        Task(argv=argv, source="t", env=env), worker_id, limits_for(tmp_path, **overrides)
    )


def bash(script: str, tmp_path: Path, **overrides: object) -> TaskResult:
    return run(["bash", "-c", script], tmp_path, **overrides)


def alive(pid: int) -> bool:
    """Running and not a zombie (orphans may stay zombies where init does not reap them)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pids(path: Path) -> List[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """A file tasks write their pids to; whatever is still alive afterwards is killed (it is ours)."""
    path = tmp_path / "pids"
    yield path
    if path.exists():
        for pid in read_pids(path):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- statuses ---------------------------------------------------------------------------------
def test_success_has_exit_code_stdout_and_accounting(tmp_path: Path) -> None:
    before = time.time()
    result = run(["echo", "hello"], tmp_path, worker_id=2)
    assert result.status is TaskStatus.SUCCESS
    assert (result.exit_code, result.stdout, result.stderr, result.error_message) == (0, "hello\n", "", "")
    assert result.worker_id == 2
    assert isinstance(result.pid, int) and result.pid > 0
    assert before <= result.start_time <= result.end_time <= time.time()
    assert result.duration > 0
    # echo is far smaller than the runner, whose size the kernel figure starts from: too small
    # and too short to measure, so it is reported as 0, not as the runner's size.
    assert result.memory_mb == 0.0
    assert result.cpu_percent >= 0


def test_failure_reports_exit_code_and_stderr(tmp_path: Path) -> None:
    result = bash("echo out; echo oops >&2; exit 3", tmp_path)
    assert result.status is TaskStatus.FAILED
    assert (result.exit_code, result.error_message) == (3, "Exit code 3")
    assert (result.stdout, result.stderr) == ("out\n", "oops\n")


def test_killed_by_a_signal_not_ours(tmp_path: Path) -> None:
    result = bash("kill -KILL $$", tmp_path)
    assert result.status is TaskStatus.FAILED
    assert (result.exit_code, result.error_message) == (-9, "Killed by signal SIGKILL")


def test_command_not_found_is_an_error(tmp_path: Path) -> None:
    result = run(["no-such-command-parallelr-test"], tmp_path)
    assert result.status is TaskStatus.ERROR
    assert result.error_message == "command not found: no-such-command-parallelr-test"
    assert (result.exit_code, result.pid) == (None, None)


def test_permission_denied_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.geteuid() == 0:
        script.chmod(0o644)  # root may read anything but still cannot execute without an x bit
    result = run([str(script)], tmp_path)
    assert result.status is TaskStatus.ERROR
    assert result.error_message == f"permission denied: {script}"


def test_missing_interpreter_is_named(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/no/such/interpreter\necho hi\n")
    script.chmod(0o755)
    result = run([str(script)], tmp_path)
    assert result.status is TaskStatus.ERROR
    assert result.error_message == (
        f"bad interpreter: the #! line of {script} names a program that does not exist"
    )


def test_nul_byte_in_argv_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = run(["echo", "a\0b"], tmp_path)
    assert result.status is TaskStatus.ERROR
    assert result.error_message.startswith("cannot start echo: ")


def test_uncreatable_workdir_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(["true"], tmp_path, workspace=str(blocker / "ws"))
    assert result.status is TaskStatus.ERROR
    assert result.error_message.startswith(f"cannot create working directory {blocker / 'ws'}: ")


# -- output -----------------------------------------------------------------------------------
def test_tail_keeps_exactly_the_last_n_characters(tmp_path: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(500))
    result = run(
        [sys.executable, "-c", f"import sys; sys.stdout.write({text!r})"], tmp_path, max_output_capture=25
    )
    assert result.stdout == text[-25:]


def test_twenty_megabytes_of_output_keep_only_the_tail(tmp_path: Path) -> None:
    result = bash("head -c 20000000 /dev/zero | tr '\\0' a; printf THE-END", tmp_path, max_output_capture=100)
    assert result.status is TaskStatus.SUCCESS
    assert len(result.stdout) == 100
    assert result.stdout == "a" * 93 + "THE-END"


def test_binary_and_nul_bytes_are_kept_replaced_not_fatal(tmp_path: Path) -> None:
    result = bash("printf 'a\\000b\\377\\376'; printf 'x\\000' >&2", tmp_path)
    assert result.status is TaskStatus.SUCCESS
    assert result.stdout == "a\x00b\ufffd\ufffd"
    assert result.stderr == "x\x00"


def test_multibyte_tail_counts_characters(tmp_path: Path) -> None:
    text = "é€😀" * 50
    result = run(
        [sys.executable, "-c", f"import sys; sys.stdout.write({text!r})"], tmp_path, max_output_capture=7
    )
    assert result.stdout == text[-7:]


def test_output_tail_unit() -> None:
    tail = process.OutputTail(3)
    for chunk in (b"ab", b"cdef", b"g"):
        tail.append(chunk)
    assert tail.text() == "efg"
    big = process.OutputTail(4)
    big.append(b"x" * 100_000 + b"1234")
    assert big.text() == "1234"
    nothing = process.OutputTail(0)
    nothing.append(b"data")
    assert nothing.text() == ""


# -- timeout and cleanup ----------------------------------------------------------------------
def test_timeout_kills_background_children(tmp_path: Path, pid_file: Path) -> None:
    script = (
        f"sleep 300 & echo $! >> {pid_file}; sleep 300 & echo $! >> {pid_file}; echo $$ >> {pid_file}; wait"
    )
    result = bash(script, tmp_path, timeout=1)
    assert result.status is TaskStatus.TIMEOUT
    assert (result.exit_code, result.error_message) == (None, "Timeout after 1s")
    pids = read_pids(pid_file)
    assert len(pids) == 3
    assert [pid for pid in pids if alive(pid)] == []


def test_timeout_kills_descendants_that_left_the_group(tmp_path: Path, pid_file: Path) -> None:
    script = f"setsid sleep 300 & echo $! >> {pid_file}; wait"
    result = bash(script, tmp_path, timeout=1)
    assert result.status is TaskStatus.TIMEOUT
    pids = read_pids(pid_file)
    assert len(pids) == 1
    assert not alive(pids[0])


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path, pid_file: Path) -> None:
    result = bash(
        f"trap '' TERM; echo $$ >> {pid_file}; sleep 300 & echo $! >> {pid_file}; wait",
        tmp_path,
        timeout=0.5,
        kill_grace=0.5,
    )
    assert result.status is TaskStatus.TIMEOUT
    assert result.error_message == "Timeout after 0.5s"
    assert result.duration >= 1.0  # the timeout plus the grace before SIGKILL
    pids = read_pids(pid_file)
    assert len(pids) == 2
    assert [pid for pid in pids if alive(pid)] == []


def test_background_child_holding_stdout_is_killed_when_leader_exits(tmp_path: Path, pid_file: Path) -> None:
    result = bash(f"sleep 300 & echo $! >> {pid_file}; echo done", tmp_path)
    assert result.status is TaskStatus.SUCCESS
    assert (result.exit_code, result.stdout) == (0, "done\n")
    assert not alive(read_pids(pid_file)[0])


def test_detached_group_member_is_killed_when_leader_exits(tmp_path: Path, pid_file: Path) -> None:
    result = bash(f"sleep 300 >/dev/null 2>&1 & echo $! >> {pid_file}; exit 4", tmp_path)
    assert (result.status, result.exit_code) == (TaskStatus.FAILED, 4)
    assert not alive(read_pids(pid_file)[0])


def test_group_member_ignoring_sigterm_gets_sigkill_after_leader_exits(
    tmp_path: Path, pid_file: Path
) -> None:
    script = f"(trap '' TERM; sleep 300) >/dev/null 2>&1 & echo $! >> {pid_file}; sleep 0.2; echo ok"
    result = bash(script, tmp_path, kill_grace=0.3)
    assert (result.status, result.stdout) == (TaskStatus.SUCCESS, "ok\n")
    assert result.duration >= 0.3
    assert not alive(read_pids(pid_file)[0])


def test_without_process_groups_timeout_kills_the_task(tmp_path: Path) -> None:
    result = run(["sleep", "30"], tmp_path, timeout=0.3, use_process_groups=False)
    assert result.status is TaskStatus.TIMEOUT
    assert not alive(result.pid)


def test_exit_watch_without_pidfd_falls_back_to_a_thread(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(process, "_pidfd_supported", False)
    assert run(["sh", "-c", "exit 5"], tmp_path).exit_code == 5
    assert run(["sleep", "30"], tmp_path, timeout=0.3).status is TaskStatus.TIMEOUT


def test_format_timeout() -> None:
    assert [process.format_timeout(t) for t in (45, 45.0, 0.5, 600)] == ["45", "45", "0.5", "600"]


# -- environment and working directory --------------------------------------------------------
def test_isolated_workdir_is_created_and_used(tmp_path: Path) -> None:
    result = run(["pwd"], tmp_path, worker_id=3, workspace_isolation=True)
    expected = tmp_path / "ws" / f"pid{os.getpid()}_worker3"
    assert result.stdout.strip() == str(expected)
    assert expected.is_dir()


def test_shared_workdir(tmp_path: Path) -> None:
    assert run(["pwd"], tmp_path).stdout.strip() == str(tmp_path / "ws")


def test_task_env_is_visible_and_stdin_is_empty(tmp_path: Path) -> None:
    result = run(
        ["sh", "-c", 'echo "$HOSTNAME_X/$PATH_OK"; cat'],
        tmp_path,
        env={"HOSTNAME_X": "server1", "PATH_OK": "y"},
    )
    assert result.stdout == "server1/y\n"


# -- accounting -------------------------------------------------------------------------------
def test_memory_of_an_allocating_task(tmp_path: Path) -> None:
    # 150 MB: well above the runner (pytest) itself, which is the floor of the kernel figure
    result = run([sys.executable, "-c", "x = bytearray(150 * 2**20)"], tmp_path)
    assert result.status is TaskStatus.SUCCESS
    assert result.memory_mb >= 150
    assert result.cpu_percent > 0


def test_live_sampling_sees_descendants_the_leader_did_not_wait_for(tmp_path: Path) -> None:
    # The leader never waits for the child, so the kernel's figure cannot include it: only the
    # live samples (every 0.1 s here) see its 80 MB.
    child = f"{sys.executable} -c 'import time; x = bytearray(80 * 2**20); time.sleep(5)'"
    result = bash(f"{child} & sleep 0.8; exit 0", tmp_path, sample_interval=0.1)
    assert result.status is TaskStatus.SUCCESS
    assert result.memory_mb >= 80


# -- cancellation -----------------------------------------------------------------------------
def test_cancelling_its_token_stops_a_task_from_another_thread(tmp_path: Path, pid_file: Path) -> None:
    started = threading.Event()
    token = CancelToken()

    def cancel_when_started() -> None:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.01)
        started.set()
        token.cancel("Cancelled by test")

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    task = Task(argv=["bash", "-c", f"echo $$ >> {pid_file}; sleep 300 & wait"], source="t")
    result = process.run_task(task, 1, limits_for(tmp_path), token)
    canceller.join()
    assert started.is_set()
    assert result.status is TaskStatus.CANCELLED
    assert (result.exit_code, result.error_message) == (None, "Cancelled by test")
    assert [pid for pid in read_pids(pid_file) if alive(pid)] == []

    later = process.run_task(Task(argv=["touch", str(tmp_path / "must-not-exist")], source="t"), 1,
                             limits_for(tmp_path), token)
    assert (later.status, later.error_message, later.pid) == (TaskStatus.CANCELLED, "Cancelled by test", None)
    assert not (tmp_path / "must-not-exist").exists()

    # The cancellation belongs to the token, not to the process: other tasks run on.
    assert run(["true"], tmp_path).status is TaskStatus.SUCCESS
    fresh = process.run_task(Task(argv=["true"], source="t"), 1, limits_for(tmp_path), CancelToken())
    assert fresh.status is TaskStatus.SUCCESS


def test_many_tasks_leave_no_descriptors_behind(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        run(["true"], tmp_path)
        run(["no-such-command-parallelr-test"], tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before


def test_waiting_does_not_spin(tmp_path: Path, pid_file: Path) -> None:
    # Half a second waiting for the leader, then half a second of grace for a member that ignores
    # SIGTERM: an event-driven wait costs this thread almost no CPU time over that second.
    script = f"(trap '' TERM; sleep 300) >/dev/null 2>&1 & echo $! >> {pid_file}; sleep 0.5"
    cpu_before = time.thread_time()
    result = bash(script, tmp_path, kill_grace=0.5)
    cpu_used = time.thread_time() - cpu_before
    assert result.status is TaskStatus.SUCCESS
    assert result.duration >= 1.0
    assert cpu_used < 0.3


def test_task_file_over_max_file_size_fails_as_that_task_before_its_command_starts(tmp_path):
    marker = tmp_path / "ran"
    big = tmp_path / "big.sh"
    big.write_text("x" * 2049)
    task = Task(argv=["touch", str(marker)], source=str(big), task_file=str(big))
    result = process.run_task(task, 1, limits_for(tmp_path, max_file_size=2048))
    assert result.status is TaskStatus.ERROR
    assert result.error_message == (
        f"task file is too large: {big} is 2049 bytes, the limit (advanced.max_file_size) is 2048 bytes"
    )
    assert result.pid is None and not marker.exists()
    big.write_text("x" * 2048)  # at the limit: it runs
    assert process.run_task(task, 1, limits_for(tmp_path, max_file_size=2048)).status is TaskStatus.SUCCESS
    assert marker.exists()


def test_task_file_that_vanished_before_it_runs_is_an_error(tmp_path):
    gone = tmp_path / "gone.sh"
    task = Task(argv=["true"], source=str(gone), task_file=str(gone))
    result = process.run_task(task, 1, limits_for(tmp_path, max_file_size=2048))
    assert result.status is TaskStatus.ERROR
    assert result.error_message == f"cannot read task file {gone}: No such file or directory"
