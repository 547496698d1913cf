"""Run ONE task: spawn it in its own process group, wait for it event-driven, enforce the timeout,
keep a bounded tail of its output, take its resource figures from the kernel, and leave nothing
it started running.

:func:`run_task` is a plain module-level function so that every executor (a thread, a pool
process, a remote worker) runs a task the same way. It is stopped early through the
:class:`parallelr.cancel.CancelToken` it is given: no state of a run lives in this module, so one
process can run many batches and cancel one task of many.

A task runs in three steps, which the event-loop executor also uses one by one, so that it runs
a task exactly as :func:`run_task` does:

* :func:`prepare_launch`: the checks before a spawn (cancelled already, the task file's size, the
  working directory) and the launch's values, or the result that ends the task before it starts;
* :func:`spawn_with_popen`: the spawn, or the ERROR result saying why it could not start;
* :func:`supervise`: a :class:`parallelr.supervise.TaskSupervisor` over the spawned leader, which
  :func:`run_task` drives with a poll loop of its own (``_supervise_alone``): it watches the
  two output pipes, a pidfd of the leader (readable when it exits, before it is reaped) and the
  pipe of its cancel token's watch. The loop's timeout is the next deadline, so nothing polls.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from typing import Dict, Optional, Set, Tuple, Union

import attrs

from parallelr.cancel import CancelToken
from parallelr.model import (
    RUN_ID_VARIABLE,
    TASK_INDEX_VARIABLE,
    ExecutionLimits,
    Task,
    TaskResult,
    TaskStatus,
)

# OutputTail, format_timeout and is_running are re-exported: other modules and tests use them here.
from parallelr.supervise import (  # noqa: F401
    READ_CHUNK,
    OutputTail,
    Poller,
    SpawnedTask,
    TaskSupervisor,
    format_timeout,
    is_running,
    killpg_quietly,
)


# The kernel's ru_maxrss of a spawned task also counts the memory of the process it was spawned
# from as it was at exec time (with vfork: that process's lifetime *peak*). Resetting our own
# peak to our current RSS just before each spawn keeps that floor at the runner's current size
# instead of the largest it ever was. Writing "5" to clear_refs does exactly that (Linux >= 4.0).
def _open_clear_refs() -> int:
    try:
        return os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return -1


_clear_refs_fd = _open_clear_refs()


def reset_own_peak_rss() -> int:
    """Reset our peak RSS to our current RSS and return it in KiB: the floor under the next
    task's kernel figure. A kernel figure not clearly above it measured us, not the task."""
    if _clear_refs_fd >= 0:
        with contextlib.suppress(OSError):
            os.write(_clear_refs_fd, b"5")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reinit_after_fork() -> None:
    """/proc/self named the parent when the descriptor was opened: a forked child (a pool
    worker) opens its own."""
    global _clear_refs_fd
    if _clear_refs_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(_clear_refs_fd)
    _clear_refs_fd = _open_clear_refs()


os.register_at_fork(after_in_child=_reinit_after_fork)


# -- small helpers ----------------------------------------------------------------------------
def _spawn_error_message(exc: BaseException, argv0: str, cwd: str) -> str:
    if isinstance(exc, OSError):
        target = exc.filename if exc.filename is not None else argv0
        if isinstance(exc, FileNotFoundError):
            if target == cwd:
                return f"working directory not found: {cwd}"
            if os.sep in argv0 and os.path.isfile(os.path.join(cwd, argv0)):
                return f"bad interpreter: the #! line of {argv0} names a program that does not exist"
            return f"command not found: {argv0}"
        if isinstance(exc, PermissionError):
            return f"permission denied: {target}"
        if isinstance(exc, NotADirectoryError):
            return f"not a directory: {target}"
        return f"cannot start {argv0}: {exc.strerror or exc}"
    return f"cannot start {argv0}: {exc}"  # ValueError: a NUL byte in argv or env


# pidfd (Linux >= 5.3) makes the leader's exit a selectable event; without it a helper thread
# blocks in waitid(WNOWAIT), which does not reap, and reports through a pipe.
_pidfd_supported = hasattr(os, "pidfd_open")


def exit_notifier(pid: int) -> int:
    """A file descriptor that becomes readable when ``pid`` exits (it is not reaped)."""
    global _pidfd_supported
    if _pidfd_supported:
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            if not isinstance(exc, ProcessLookupError):
                _pidfd_supported = False
    read_end, write_end = os.pipe()

    def wait_for_exit() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        finally:
            with contextlib.suppress(OSError):  # the supervisor may have given up on this task
                os.write(write_end, b"x")
            os.close(write_end)

    threading.Thread(target=wait_for_exit, name=f"exit-watch-{pid}", daemon=True).start()
    return read_end


_base_environment: Optional[dict] = None
# Per-task costs that need not be paid per task (each saves system calls on the hot path):
_ready_dirs: Set[str] = set()  # working directories known to exist
_executables: Dict[str, str] = {}  # program name -> its path in our PATH (found ones only)
_devnull_fd = -1


def devnull_fd() -> int:
    """One /dev/null for every task's stdin, instead of an open and close per task."""
    global _devnull_fd
    if _devnull_fd < 0:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


def executable_path(task: Task) -> Optional[str]:
    """The path of a bare program name, looked up in PATH once per run instead of once per
    task (argv[0] is unchanged). None: let the spawn search (a path, or the task sets PATH)."""
    program = task.argv[0]
    if os.sep in program or any(name == "PATH" for name, _ in task.env):
        return None
    path = _executables.get(program)
    if path is None:
        path = shutil.which(program)
        # not found (yet): the spawn reports it and the next task looks again; a relative PATH
        # entry would resolve against our directory, not the task's: leave that to the spawn
        if path is None or not os.path.isabs(path):
            return None
        _executables[program] = path
    return path


def task_environment(task: Task, limits: ExecutionLimits) -> Optional[dict]:
    """The child's environment: ours, the task's variables and the run markers. None (inherit,
    nothing to copy) when there is nothing to add."""
    global _base_environment
    if not task.env and limits.run_id is None:
        return None
    if _base_environment is None:  # os.environ decodes on every read: copy it once
        _base_environment = dict(os.environ)
    env = dict(_base_environment)
    env.update(task.env)
    if limits.run_id is not None:
        env[RUN_ID_VARIABLE] = limits.run_id
        env[TASK_INDEX_VARIABLE] = str(task.index)
    return env


def _task_file_refusal(path: str, max_file_size: int) -> Optional[str]:
    """Why the task file must not run (too large, unreadable), or None when it may."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return f"cannot read task file {path}: {exc.strerror}"
    if size > max_file_size:
        return (
            f"task file is too large: {path} is {size} bytes, the limit (advanced.max_file_size) is "
            f"{max_file_size} bytes"
        )
    return None


# -- the three steps --------------------------------------------------------------------------
@attrs.frozen
class Launch:
    """What a spawn needs, as :func:`prepare_launch` worked it out: ``limits`` with the task's own
    timeout, the working directory, and the start times (wall clock for the result, monotonic
    for the duration and the deadlines)."""

    task: Task
    worker_id: int
    limits: ExecutionLimits
    cwd: str
    start_time: float
    started: float


def prepare_launch(
    task: Task, worker_id: int, limits: ExecutionLimits, cancel: Optional[CancelToken] = None
) -> Union[Launch, TaskResult]:
    """The launch of ``task``, or the result that ends it before a spawn: CANCELLED when
    ``cancel`` already is, ERROR for a task file that must not run or a working directory that
    cannot be made."""
    if cancel is not None and cancel.cancelled:
        return TaskResult.cancelled(task, cancel.reason or "cancelled", worker_id)
    if task.timeout is not None:
        limits = attrs.evolve(limits, timeout=task.timeout)
    cwd = task.cwd or limits.workdir(worker_id)
    start_time = time.time()
    started = time.monotonic()
    if task.task_file is not None and limits.max_file_size is not None:
        refusal = _task_file_refusal(task.task_file, limits.max_file_size)
        if refusal is not None:
            return _error(task, worker_id, start_time, refusal)
    if task.cwd is None and cwd not in _ready_dirs:  # a job's own directory must exist already
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError as exc:
            message = f"cannot create working directory {cwd}: {exc.strerror}"
            return _error(task, worker_id, start_time, message)
        _ready_dirs.add(cwd)
    return Launch(task, worker_id, limits, cwd, start_time, started)


def output_pipes() -> Tuple[int, int, int, int]:
    """``(stdout_read, stdout_write, stderr_read, stderr_write)``: the task's two output pipes.
    The write ends go to the child (and are closed here after the spawn); the read ends are the
    supervisor's."""
    out_read, out_write = os.pipe()
    try:
        err_read, err_write = os.pipe()
    except BaseException:
        os.close(out_read)
        os.close(out_write)
        raise
    return out_read, out_write, err_read, err_write


def spawn_error(launch: Launch, exc: BaseException) -> TaskResult:
    """The ERROR result of a spawn that failed with ``exc``."""
    _ready_dirs.discard(launch.cwd)  # it may be the working directory that vanished
    task = launch.task
    message = _spawn_error_message(exc, task.argv[0], launch.cwd)
    return _error(task, launch.worker_id, launch.start_time, message)


def spawn_with_popen(launch: Launch) -> Union[SpawnedTask, TaskResult]:
    """Spawn the launch's task with ``subprocess.Popen`` (vfork where Python and the options
    allow it, from Python 3.10): in its own session and process group, stdin /dev/null, every
    other descriptor closed. The ERROR result when it cannot start."""
    task, limits = launch.task, launch.limits
    rss_floor_kib = reset_own_peak_rss()
    try:
        out_read, out_write, err_read, err_write = output_pipes()
    except OSError as exc:  # out of descriptors: as Popen's own pipe() would have said it
        return spawn_error(launch, exc)
    try:
        popen = subprocess.Popen(
            task.argv,
            executable=executable_path(task),
            stdin=devnull_fd(),
            stdout=out_write,
            stderr=err_write,
            cwd=launch.cwd,
            env=task_environment(task, limits),
            close_fds=True,
            bufsize=0,
            start_new_session=limits.use_process_groups,
        )
    except BaseException as exc:
        for fd in (out_read, err_read):
            os.close(fd)
        if isinstance(exc, (OSError, ValueError)):
            return spawn_error(launch, exc)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)

    def record_exit(exit_code: int) -> None:
        popen.returncode = exit_code  # reaped by us: Popen must never wait for this pid itself

    return SpawnedTask(popen.pid, out_read, err_read, rss_floor_kib, record_exit)


def kill_unsupervised(spawned: SpawnedTask, use_process_groups: bool) -> None:
    """SIGKILL and reap a spawned leader that no supervisor took over (it could not be built)."""
    if use_process_groups:
        killpg_quietly(spawned.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(spawned.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.wait4(spawned.pid, 0)
    if spawned.on_reaped is not None:
        spawned.on_reaped(-signal.SIGKILL)


def supervise(
    launch: Launch, spawned: SpawnedTask, poller: Poller, cancel: Optional[CancelToken] = None
) -> TaskSupervisor:
    """The supervisor of a spawned task, its descriptors registered with ``poller``. When it
    cannot be built (out of descriptors, say) the leader is killed and reaped, the pipes are
    closed, and the error is raised."""
    try:
        exit_fd = exit_notifier(spawned.pid)
    except BaseException:
        for fd in (spawned.stdout_fd, spawned.stderr_fd):
            os.close(fd)
        kill_unsupervised(spawned, launch.limits.use_process_groups)
        raise
    try:
        return TaskSupervisor(spawned, exit_fd, launch.limits, launch.started, poller, cancel)
    except BaseException:  # it closed its descriptors: do not leave the child behind
        kill_unsupervised(spawned, launch.limits.use_process_groups)
        raise


class _SelectorPoller(Poller):
    """One task's descriptors in a poll(2) selector: poll needs no kernel object per task,
    unlike epoll, so it is cheaper for four descriptors."""

    def __init__(self) -> None:
        self.selector = selectors.PollSelector()

    def register(self, fd: int, supervisor: TaskSupervisor, data: object) -> None:
        self.selector.register(fd, selectors.EVENT_READ, data)

    def unregister(self, fd: int) -> None:
        self.selector.unregister(fd)


def _supervise_alone(supervisor: TaskSupervisor, poller: _SelectorPoller) -> None:
    """Drive one supervisor until the task and everything it started are gone."""
    try:
        wake_at = supervisor.start()
        while not supervisor.done:
            timeout = None if wake_at is None else max(0.0, wake_at - time.monotonic())
            ready = poller.selector.select(timeout)
            if ready:
                supervisor.dispatch([(key.fd, key.data) for key, _events in ready])
            wake_at = supervisor.resume()
    finally:
        supervisor.abandon()
        poller.selector.close()


# -- the entry point --------------------------------------------------------------------------
def run_task(
    task: Task, worker_id: int, limits: ExecutionLimits, cancel: Optional[CancelToken] = None
) -> TaskResult:
    """Run ``task`` in worker slot ``worker_id`` under ``limits`` and say what happened.

    Args:
        task: what to run.
        worker_id: the worker slot (1..workers); it names the isolated working directory.
        limits: timeout, workspace, output cap, process-group and kill-grace settings.
        cancel: stops the task when it or an ancestor is cancelled (SIGTERM to the task's
            process group, SIGKILL after ``limits.kill_grace``) or killed (SIGKILL at once);
            the result is then CANCELLED with the token's reason. Already cancelled: the
            result is CANCELLED and no process is started. None: only the timeout stops it.

    Returns:
        The TaskResult. Never raises for anything the task does: a command that cannot start
        is an ERROR result.
    """
    launch = prepare_launch(task, worker_id, limits, cancel)
    if isinstance(launch, TaskResult):
        return launch
    spawned = spawn_with_popen(launch)
    if isinstance(spawned, TaskResult):
        return spawned
    poller = _SelectorPoller()
    try:
        supervisor = supervise(launch, spawned, poller, cancel)
    except BaseException:
        poller.selector.close()
        raise
    _supervise_alone(supervisor, poller)
    return supervisor.result(task, worker_id, launch.start_time)


def run_task_guarded(
    task: Task, worker_id: int, limits: ExecutionLimits, cancel: Optional[CancelToken] = None
) -> TaskResult:
    """:func:`run_task`, with a bug in parallelr itself turned into an ERROR result: executors
    call this so that the scheduler gets a TaskResult for every task, never an exception."""
    try:
        return run_task(task, worker_id, limits, cancel)
    except Exception as exc:
        return internal_error(task, worker_id, exc)


def internal_error(task: Task, worker_id: int, error: BaseException) -> TaskResult:
    """The ERROR result for a task that parallelr itself failed to run (a bug, a broken pool)."""
    message = " ".join(str(error).split()) or type(error).__name__
    return _error(task, worker_id, None, f"internal error: {type(error).__name__}: {message}")


def _error(task: Task, worker_id: int, start_time: Optional[float], message: str) -> TaskResult:
    return TaskResult(
        task=task,
        status=TaskStatus.ERROR,
        worker_id=worker_id,
        start_time=start_time,
        end_time=time.time() if start_time is not None else None,
        error_message=message,
    )
