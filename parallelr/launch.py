"""Everything before a task is supervised: the checks before a spawn, the launch's values, and
the spawn itself, with glibc's ``posix_spawn`` (:mod:`parallelr.posix_spawn`) where it does
exactly what ``subprocess.Popen`` would, else with ``Popen``.

Every executor starts a task through :func:`prepare_launch` and :func:`spawn` (``run_task`` in a
pool process or a Dask worker, the thread executor's loop in the runner), so a task starts the
same way whoever runs it:

* :func:`prepare_launch`: cancelled already? the task file's size, the working directory; the
  launch's values, or the result that ends the task before it starts;
* :func:`spawn`: in its own session and process group, stdin /dev/null, two output pipes, every
  other descriptor closed, in its working directory; the ERROR result saying why it could not
  start.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Set, Tuple, Union

import attrs

from parallelr import posix_spawn
from parallelr.cancel import CancelToken
from parallelr.model import (
    RUN_ID_VARIABLE,
    TASK_INDEX_VARIABLE,
    ExecutionLimits,
    Task,
    TaskResult,
    TaskStatus,
)
from parallelr.supervise import SpawnedTask


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


_base_environment_dict: Optional[Dict[str, str]] = None
_base_lines: Optional[Dict[str, bytes]] = None
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


def _base_environment() -> Dict[str, str]:
    """Our environment, copied once: os.environ decodes on every read."""
    global _base_environment_dict
    if _base_environment_dict is None:
        _base_environment_dict = dict(os.environ)
    return _base_environment_dict


def _base_environment_lines() -> Dict[str, bytes]:
    """Our environment as ``NAME=value`` bytes by name, encoded once instead of once per task."""
    global _base_lines
    if _base_lines is None:
        _base_lines = {
            name: os.fsencode(name) + b"=" + os.fsencode(value) for name, value in _base_environment().items()
        }
    return _base_lines


def _added_variables(task: Task, limits: ExecutionLimits) -> List[Tuple[str, str]]:
    """What a task's environment adds to ours, in order: its own variables, the run markers."""
    added = list(task.env)
    if limits.run_id is not None:
        added.append((RUN_ID_VARIABLE, limits.run_id))
        added.append((TASK_INDEX_VARIABLE, str(task.index)))
    return added


def task_environment(task: Task, limits: ExecutionLimits) -> Optional[dict]:
    """The child's environment: ours, the task's variables and the run markers. None (inherit,
    nothing to copy) when there is nothing to add."""
    if not task.env and limits.run_id is None:
        return None
    env = dict(_base_environment())
    env.update(_added_variables(task, limits))
    return env


def _environment_block(task: Task, limits: ExecutionLimits) -> Union[bool, List[bytes], None]:
    """:func:`task_environment` as posix_spawn's ``NAME=value`` lines (the same variables in the
    same order); None to inherit ours, False for a variable ``Popen`` would refuse."""
    if not task.env and limits.run_id is None:
        return None
    lines = dict(_base_environment_lines())
    for name, value in _added_variables(task, limits):
        name_bytes, value_bytes = os.fsencode(name), os.fsencode(value)
        if b"=" in name_bytes or b"\0" in name_bytes or b"\0" in value_bytes:
            return False
        lines[name] = name_bytes + b"=" + value_bytes
    return list(lines.values())


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


# -- the launch -------------------------------------------------------------------------------
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
            return error_result(task, worker_id, start_time, refusal)
    if task.cwd is None and cwd not in _ready_dirs:  # a job's own directory must exist already
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError as exc:
            message = f"cannot create working directory {cwd}: {exc.strerror}"
            return error_result(task, worker_id, start_time, message)
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
    return error_result(task, launch.worker_id, launch.start_time, message)


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


def _program(launch: Launch) -> Optional[str]:
    """The path to execute, as ``Popen`` would: our PATH's match for a bare name, the name
    itself when it has a slash (relative to the working directory, which is set first; no PATH is
    searched then, the task's own included). None: only ``Popen`` can do it exactly (a bare name
    and a PATH of the task's own, a name not in our PATH)."""
    found = executable_path(launch.task)
    if found is not None:
        return found
    program = launch.task.argv[0]
    return program if os.sep in program else None


def spawn(launch: Launch) -> Union[SpawnedTask, TaskResult]:
    """Spawn the launch's task as :func:`spawn_with_popen` does, with posix_spawn where that does
    it exactly. Anything else goes to ``Popen``: a task whose program is looked up in a PATH of
    its own or is not found in ours, an argument or variable with a NUL byte, a variable name
    with ``=``, a C library without the file actions. A posix_spawn that fails is tried again
    with ``Popen``, so that the error message is the one ``Popen`` gives (posix_spawn reports one
    errno for a working directory and a program that are both missing)."""
    libc = posix_spawn.load()
    program = _program(launch) if libc is not None else None
    if libc is None or program is None:
        return spawn_with_popen(launch)
    argv = [os.fsencode(value) for value in launch.task.argv]
    environment = _environment_block(launch.task, launch.limits)
    if environment is False or any(b"\0" in value for value in argv):
        return spawn_with_popen(launch)
    rss_floor_kib = reset_own_peak_rss()
    try:
        out_read, out_write, err_read, err_write = output_pipes()
    except OSError as exc:
        return spawn_error(launch, exc)
    try:
        pid = libc.spawn(
            os.fsencode(program),
            argv,
            environment,  # type: ignore[arg-type]  # False was handled above
            os.fsencode(launch.cwd),
            (devnull_fd(), out_write, err_write),
            launch.limits.use_process_groups,
        )
    finally:
        os.close(out_write)
        os.close(err_write)
    if not pid:
        os.close(out_read)
        os.close(err_read)
        return spawn_with_popen(launch)
    return SpawnedTask(pid, out_read, err_read, rss_floor_kib)


def error_result(task: Task, worker_id: int, start_time: Optional[float], message: str) -> TaskResult:
    return TaskResult(
        task=task,
        status=TaskStatus.ERROR,
        worker_id=worker_id,
        start_time=start_time,
        end_time=time.time() if start_time is not None else None,
        error_message=message,
    )
