"""The adapter between a foreign future (a process pool's, later a Dask cluster's) and the
future the scheduler waits on.

An executor that hands tasks to an engine with futures of its own returns a
:class:`ResultFuture` from ``submit`` instead of the engine's future::

    def submit(self, task, worker_id, cancel=None):
        future = ResultFuture()
        try:
            inner = self.pool.submit(run_task_guarded, task, worker_id, self.limits)
        except RuntimeError as exc:  # the engine is shut down or broken: a result, not a raise
            return ResultFuture.finished(internal_error(task, worker_id, exc))
        future.follow(inner, on_error=lambda error: internal_error(task, worker_id, error))
        return future

What it guarantees, whatever the engine does:

* it resolves to a :class:`parallelr.model.TaskResult`, never to an exception: ``on_error``
  turns the engine's exception (a broken pool, a lost worker) into a result, and ``on_result``
  turns the engine's own result shape into one where it is not a TaskResult already;
* a future the engine cancelled (a shutdown with ``cancel_futures``) counts as done for
  ``concurrent.futures.wait`` and for done-callbacks at once (the stdlib pools leave such futures
  "cancelled but not notified", so ``wait`` would never return them), and reports
  ``cancelled()``, which the scheduler records as CANCELLED;
* ``cancel()`` succeeds only while the engine has not taken the task, like a pool future's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from typing import Any, Callable, Optional

from parallelr.model import TaskResult


class ResultFuture(concurrent.futures.Future):
    """The scheduler's view of a foreign future (``inner``): it always resolves to a TaskResult.

    Like a pool future it cannot be cancelled once the pool has taken the task. Unlike one, a
    future cancelled by a shutdown counts as done for ``concurrent.futures.wait`` at once.
    Build one with ``ResultFuture()`` and :meth:`follow`, or :meth:`finished` for a result that
    is known without the engine (the executor is shut down, the task was cancelled before).
    """

    def __init__(self) -> None:
        super().__init__()
        self.inner: Optional[concurrent.futures.Future] = None
        self._on_error: Callable[[BaseException], TaskResult] = _reraise
        self._on_result: Callable[[Any], TaskResult] = _as_is

    @classmethod
    def finished(cls, result: TaskResult) -> ResultFuture:
        """A future that is already done with ``result``."""
        future = cls()
        future.set_result(result)
        return future

    def follow(
        self,
        inner: concurrent.futures.Future,
        on_error: Callable[[BaseException], TaskResult],
        on_result: Optional[Callable[[Any], TaskResult]] = None,
    ) -> None:
        """Resolve with ``inner``'s result; ``on_error`` turns its exception into a TaskResult.

        Args:
            inner: the engine's future (anything with ``add_done_callback``, ``cancel``,
                ``cancelled``, ``exception`` and ``result`` as in ``concurrent.futures``).
            on_error: makes the TaskResult for an exception of ``inner`` (it must not raise).
            on_result: makes the TaskResult from ``inner``'s result when the engine's result
                is not one already, or adjusts it; None keeps the result as it is.
        """
        self.inner = inner
        self._on_error = on_error
        if on_result is not None:
            self._on_result = on_result
        inner.add_done_callback(self._relay)

    def _relay(self, inner: concurrent.futures.Future) -> None:
        if inner.cancelled():
            if concurrent.futures.Future.cancel(self):
                self.set_running_or_notify_cancel()
            return
        error = inner.exception()
        if error is None:
            try:
                result = self._on_result(inner.result())
            except Exception as exc:  # a converter bug must still give the task its result
                result = self._on_error(exc)
        else:
            result = self._on_error(error)
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


def _as_is(result: Any) -> TaskResult:
    return result
