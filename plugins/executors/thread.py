"""The ``thread`` executor: one thread per worker slot, each running one task at a time in a
child process.

Threads are enough here: a task is a separate process, so a worker thread only waits on file
descriptors (without the GIL) and a slot costs one small stack. The scheduler never hands out
more tasks than there are free slots, so the executor needs no queue policy of its own: a task
goes into one shared inbox and the next idle thread takes it. Compared with a
ThreadPoolExecutor this saves a work item, a second future and a thread-count check per task.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import List, Optional, Tuple

from parallelr import process
from parallelr.executor import ExecutorContext
from parallelr.hookspecs import hookimpl
from parallelr.model import Task, TaskResult

SHUTDOWN_REASON = "Cancelled by shutdown"

_Item = Optional[Tuple[Task, int, concurrent.futures.Future]]  # None tells a thread to stop


class ThreadExecutor:
    """``submit(task, worker_id)`` runs the task in one of ``max_workers`` threads."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        max_workers = context.workers
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # reentrant: kill() may run in a signal handler while this thread holds the lock in submit()
        self._lock = threading.RLock()
        self._closed = False
        self._threads: List[threading.Thread] = [
            threading.Thread(target=self._work, name=f"Worker_{slot}", daemon=True)
            for slot in range(1, max_workers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Task, worker_id: int) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises (a bug becomes an ERROR result)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                future.set_result(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
                return future
            self._inbox.put((task, worker_id, future))
        return future

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            task, worker_id, future = item
            if not future.set_running_or_notify_cancel():
                continue
            future.set_result(process.run_task_guarded(task, worker_id, self.limits))

    def shutdown(self, cancel: bool) -> None:
        """Wait until the threads are done. With ``cancel``: tasks not yet taken are cancelled
        (their futures report ``cancelled()``) and running ones are stopped with their whole
        process group and end as CANCELLED. This cancels every task running in this process
        (see :func:`parallelr.process.cancel_running`)."""
        with self._lock:
            first = not self._closed
            self._closed = True
        if cancel:
            self._cancel_waiting()
            process.cancel_running(SHUTDOWN_REASON)
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
        process.kill_running_now(SHUTDOWN_REASON)


@hookimpl
def parallelr_executors():
    return {"thread": ThreadExecutor}
