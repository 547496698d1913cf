"""The future the scheduler sees from an executor that wraps a pool future (process pools,
remote engines): it always resolves to a TaskResult and never hangs ``wait`` when cancelled."""

from __future__ import annotations

import concurrent.futures
import contextlib
from typing import Callable, Optional

from parallelr.model import TaskResult


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
