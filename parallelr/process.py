"""Run ONE task: spawn it in its own process group, wait for it event-driven, enforce the timeout,
keep a bounded tail of its output, take its resource figures from the kernel, and leave nothing
it started running.

:func:`run_task` is a plain module-level function so that every executor that runs one task at a
time in a thread or process of its own (a pool process, a remote worker) runs a task the same way.
It is stopped early through the :class:`parallelr.cancel.CancelToken` it is given: no state of a
run lives in this module, so one process can run many batches and cancel one task of many.

A task runs in three steps, which the thread executor also takes one by one, so that its one
supervising thread runs a task exactly as :func:`run_task` does:

* :func:`parallelr.launch.prepare_launch`: the checks before a spawn and the launch's values, or
  the result that ends the task before it starts;
* :func:`parallelr.launch.spawn`: the spawn, or the ERROR result saying why it could not start;
* :func:`supervise`: a :class:`parallelr.supervise.TaskSupervisor` over the spawned leader, which
  :func:`run_task` drives with a poll loop of its own (``_supervise_alone``): it watches the
  two output pipes, a pidfd of the leader (readable when it exits, before it is reaped) and the
  pipe of its cancel token's watch. The loop's timeout is the next deadline, so nothing polls.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from typing import Optional

from parallelr import launch as launching
from parallelr.cancel import CancelToken
from parallelr.launch import Launch, error_result
from parallelr.model import ExecutionLimits, Task, TaskResult

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

# -- small helpers ----------------------------------------------------------------------------
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


# -- supervision ------------------------------------------------------------------------------
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
    launch = launching.prepare_launch(task, worker_id, limits, cancel)
    if isinstance(launch, TaskResult):
        return launch
    spawned = launching.spawn(launch)
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
    return error_result(task, worker_id, None, f"internal error: {type(error).__name__}: {message}")


