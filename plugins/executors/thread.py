"""The ``thread`` executor: one thread per worker slot, each running one task at a time in a
child process.

Threads are enough here: a task is a separate process, so a worker thread only waits on file
descriptors (without the GIL) and a slot costs one small stack. The scheduler never hands out
more tasks than there are free slots, so the executor needs no queue policy of its own: a task
goes into one shared inbox and the next idle thread takes it. Compared with a
ThreadPoolExecutor this saves a work item, a second future and a thread-count check per task.

Cancellation is per executor and per task: the executor owns a
:class:`~parallelr.cancel.CancelToken` and runs every task under a child of it (or under a token
linked to the caller's), so its shutdown stops its own tasks and no other executor's, and the
caller can stop one task by cancelling the token it passed.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import List, Optional, Tuple

from parallelr import process
from parallelr.cancel import CancelToken
from parallelr.executor import SHUTDOWN_REASON, ExecutorContext
from parallelr.hookspecs import hookimpl
from parallelr.model import Task, TaskResult

_Item = Optional[Tuple[Task, int, concurrent.futures.Future, CancelToken]]  # None: a thread stops


class ThreadExecutor:
    """``submit(task, worker_id, cancel)`` runs the task in one of ``context.workers`` threads."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        self.token = CancelToken()  # the parent of every task's token: shutdown cancels it
        max_workers = context.workers
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # reentrant: kill() may run in a signal handler while this thread holds the lock in submit()
        self._lock = threading.RLock()
        self._closed = False  # no new tasks (after shutdown or kill)
        self._threads_told = False  # every thread has its stop signal in the inbox
        self._threads: List[threading.Thread] = [
            threading.Thread(target=self._work, name=f"Worker_{slot}", daemon=True)
            for slot in range(1, max_workers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, task: Task, worker_id: int, cancel: Optional[CancelToken] = None
    ) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises (a bug becomes an ERROR result).
        Cancelling ``cancel`` stops this task only; the executor's shutdown stops it too."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        token = self.token.for_task(cancel)
        with self._lock:
            if self._closed:
                future.set_result(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
                return future
            self._inbox.put((task, worker_id, future, token))
        return future

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            task, worker_id, future, token = item
            # Dropped before the next wait: a finished task's token must not live on here.
            del item
            if future.set_running_or_notify_cancel():
                future.set_result(process.run_task_guarded(task, worker_id, self.limits, token))
            del task, future, token

    def shutdown(self, cancel: bool) -> None:
        """Wait until the threads are done. With ``cancel``: tasks not yet taken are cancelled
        (their futures report ``cancelled()``) and running ones are stopped with their whole
        process group and end as CANCELLED. Only this executor's tasks are touched."""
        with self._lock:
            # Not _closed: a kill() before the shutdown closes without telling the threads.
            first = not self._threads_told
            self._closed = self._threads_told = True
        if cancel:
            self._cancel_waiting()
            self.token.cancel(SHUTDOWN_REASON)
        if first:
            for _ in self._threads:
                self._inbox.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _cancel_waiting(self) -> None:
        """Cancel what no thread has taken yet; keep the threads' stop signals."""
        stops = 0
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stops += 1
            elif item[2].cancel():
                # a cancelled future counts as done for concurrent.futures.wait only once notified
                item[2].set_running_or_notify_cancel()
        for _ in range(stops):
            self._inbox.put(None)

    def kill(self) -> None:
        """Stop at once: SIGKILL every running task's group now (a second Ctrl+C)."""
        with self._lock:
            self._closed = True
        self.token.kill(SHUTDOWN_REASON)


@hookimpl
def parallelr_executors():
    return {"thread": ThreadExecutor}
