"""The ``process`` executor: a pool of worker processes, each running one task at a time.

The pool uses the ``forkserver`` start method on Linux: forking straight from the runner, which
has threads, is unsafe. Each worker installs signal handlers (see :func:`_init_worker`):

* SIGUSR1 means "cancel the task you are running": :meth:`ProcessExecutor.shutdown` sends it.
  The worker stays alive, hands back a CANCELLED result and leaves when the pool shuts down.
* SIGTERM means "cancel and exit": the task and its whole process group are stopped first, then
  the worker dies as SIGTERM would have killed it. ``ProcessPoolExecutor`` itself SIGTERMs its
  workers when the pool breaks and then joins them, so a worker must not survive SIGTERM; that is
  why the polite shutdown uses a signal of its own.
* SIGINT (a Ctrl-C that reached the whole terminal group) is left to the runner to decide.

Every future this executor returns resolves to a TaskResult: a pool that broke turns into
CANCELLED results during a shutdown and into ERROR results otherwise.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Optional, Set

from parallelr import process as task_process
from parallelr.executor import ExecutorContext
from parallelr.futures import ResultFuture
from parallelr.hookspecs import hookimpl
from parallelr.model import ExecutionLimits, Task, TaskResult, TaskStatus

SHUTDOWN_REASON = "Cancelled by shutdown"
TERMINATED_REASON = "Cancelled: worker process received SIGTERM"
CANCEL_SIGNAL = signal.SIGUSR1
KILL_SIGNAL = signal.SIGUSR2

# -- inside a pool worker ---------------------------------------------------------------------
_busy = False  # a task is running in this worker
_exit_requested = False  # SIGTERM arrived while busy: die as soon as the task is stopped


def _on_cancel_signal(_signum: int, _frame: Any) -> None:
    task_process.cancel_running(SHUTDOWN_REASON)


def _on_kill_signal(_signum: int, _frame: Any) -> None:
    task_process.kill_running_now(SHUTDOWN_REASON)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    global _exit_requested
    task_process.cancel_running(TERMINATED_REASON)
    if _busy:
        _exit_requested = True  # run_in_worker dies once run_task has killed the task's group
    else:
        _die_of_sigterm()


def _ignore_signal(_signum: int, _frame: Any) -> None:
    """A Python-level handler rather than SIG_IGN: exec resets it, so tasks still get SIGINT."""


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _init_worker() -> None:
    signal.signal(CANCEL_SIGNAL, _on_cancel_signal)
    signal.signal(KILL_SIGNAL, _on_kill_signal)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _ignore_signal)


def _warm_up() -> None:
    """Submitted once per slot by the constructor, so the workers start before the first task."""


def run_in_worker(task: Task, worker_id: int, limits: ExecutionLimits) -> TaskResult:
    """What a pool worker runs for each task."""
    global _busy
    _busy = True
    try:
        return task_process.run_task_guarded(task, worker_id, limits)
    finally:
        _busy = False
        if _exit_requested:
            _die_of_sigterm()


# -- in the runner ----------------------------------------------------------------------------
def _pool_context() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    import multiprocessing  # only when this executor is chosen: it is heavy to import

    context = multiprocessing.get_context("forkserver")
    # The fork server imports these once; every worker forked from it starts with them loaded.
    # Only effective before the server starts; harmless afterwards.
    context.set_forkserver_preload(["__main__", __name__])
    return context


class ProcessExecutor:
    """``submit(task, worker_id)`` runs the task in one of ``max_workers`` worker processes."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        max_workers = context.workers
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers, mp_context=_pool_context(), initializer=_init_worker
        )
        # reentrant: kill() may run in a signal handler while this thread holds the lock in submit()
        self._lock = threading.RLock()
        self._closing = False
        self._in_pool: Set[concurrent.futures.Future] = set()
        for _ in range(max_workers):
            self._pool.submit(_warm_up)

    def submit(self, task: Task, worker_id: int) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises."""
        future = ResultFuture()
        with self._lock:
            if self._closing:
                return ResultFuture.finished(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
            try:
                inner = self._pool.submit(run_in_worker, task, worker_id, self.limits)
            except (concurrent.futures.BrokenExecutor, RuntimeError) as exc:
                return ResultFuture.finished(self._failure(task, worker_id, exc))
            self._in_pool.add(inner)
            inner.add_done_callback(self._in_pool.discard)
        future.follow(inner, lambda error: self._failure(task, worker_id, error))
        return future

    def _failure(self, task: Task, worker_id: int, error: BaseException) -> TaskResult:
        """A pool that broke: expected during a shutdown, a real error otherwise."""
        if self._closing:
            return TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id)
        message = " ".join(str(error).split()) or type(error).__name__
        return TaskResult(
            task=task,
            status=TaskStatus.ERROR,
            worker_id=worker_id,
            error_message=f"executor failed: {message}",
        )

    def shutdown(self, cancel: bool) -> None:
        """Wait until the pool is done. With ``cancel``: queued tasks are cancelled (their futures
        report ``cancelled()``) and running ones are stopped with their whole process group and
        end as CANCELLED."""
        with self._lock:
            self._closing = True
            in_pool = list(self._in_pool)
        if cancel:
            for inner in in_pool:
                inner.cancel()
            self._signal_workers(CANCEL_SIGNAL)
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def kill(self) -> None:
        """Stop at once: every worker SIGKILLs its running task's group now (a second Ctrl+C)."""
        with self._lock:
            self._closing = True
        self._signal_workers(KILL_SIGNAL)

    def _signal_workers(self, signum: int) -> None:
        # After the pool shut down its process table is None: nothing left to signal.
        for worker in list((getattr(self._pool, "_processes", None) or {}).values()):
            if worker.is_alive() and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)


@hookimpl
def parallelr_executors():
    return {"process": ProcessExecutor}
