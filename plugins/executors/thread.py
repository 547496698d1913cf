"""The ``thread`` executor: a pool of threads, each running one task at a time in a child process.

Threads are enough here: a task is a separate process, so a worker thread only waits on file
descriptors (without the GIL) and a slot costs one small stack.

:class:`ResultFuture` is shared with the other executors: the future the scheduler sees.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from typing import Callable, Optional

from parallelr import process
from parallelr.hookspecs import hookimpl
from parallelr.model import ExecutionLimits, Task, TaskResult

SHUTDOWN_REASON = "Cancelled by shutdown"


class ResultFuture(concurrent.futures.Future):
    """The scheduler's view of a pool future (``inner``): it always resolves to a TaskResult.

    Like a pool future it cannot be cancelled once the pool has taken the task. Unlike one, a
    future cancelled by a shutdown counts as done for ``concurrent.futures.wait`` at once (the
    stdlib pools leave such futures "cancelled but not notified", so ``wait`` never returns them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.inner: Optional[concurrent.futures.Future] = None
        self._on_error: Callable[[BaseException], TaskResult] = _reraise

    @classmethod
    def finished(cls, result: TaskResult) -> ResultFuture:
        future = cls()
        future.set_result(result)
        return future

    def follow(
        self, inner: concurrent.futures.Future, on_error: Callable[[BaseException], TaskResult]
    ) -> None:
        """Resolve with ``inner``'s result; ``on_error`` turns its exception into a TaskResult."""
        self.inner = inner
        self._on_error = on_error
        inner.add_done_callback(self._relay)

    def _relay(self, inner: concurrent.futures.Future) -> None:
        if inner.cancelled():
            if concurrent.futures.Future.cancel(self):
                self.set_running_or_notify_cancel()
            return
        error = inner.exception()
        result = inner.result() if error is None else self._on_error(error)
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.set_result(result)

    def cancel(self) -> bool:
        inner = self.inner
        if inner is not None and not inner.cancel():
            return False  # the pool already runs it (or ran it)
        return super().cancel()

    def running(self) -> bool:
        inner = self.inner
        return inner.running() if inner is not None else super().running()


def _reraise(error: BaseException) -> TaskResult:
    raise error


class ThreadExecutor:
    """``submit(task, worker_id)`` runs the task in one of ``max_workers`` threads."""

    def __init__(self, max_workers: int, limits: ExecutionLimits) -> None:
        self.limits = limits
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="Worker")
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, task: Task, worker_id: int) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises (a bug becomes an ERROR result)."""
        future = ResultFuture()
        with self._lock:
            if self._closed:
                return ResultFuture.finished(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
            inner = self._pool.submit(process.run_task_guarded, task, worker_id, self.limits)
        future.follow(inner, lambda error: process.internal_error(task, worker_id, error))
        return future

    def shutdown(self, cancel: bool) -> None:
        """Wait until the pool is done. With ``cancel``: queued tasks are cancelled (their futures
        report ``cancelled()``) and running ones are stopped with their whole process group and
        end as CANCELLED. This cancels every task running in this process (see
        :func:`parallelr.process.cancel_running`)."""
        with self._lock:
            self._closed = True
        if cancel:
            self._pool.shutdown(wait=False, cancel_futures=True)
            process.cancel_running(SHUTDOWN_REASON)
        self._pool.shutdown(wait=True)

    def kill(self) -> None:
        """Stop at once: SIGKILL every running task's group now (a second Ctrl+C)."""
        with self._lock:
            self._closed = True
        process.kill_running_now(SHUTDOWN_REASON)


@hookimpl
def parallelr_executors():
    return {"thread": ThreadExecutor}
