"""The ``thread`` executor (the default): one thread supervises every running task.

A task is a separate process, so supervising it is waiting on file descriptors. Rather than a
thread per worker slot each waiting on one task (a thread and its GIL hand-offs per task), one
:class:`~parallelr.plugins.executors.thread_loop.SupervisionLoop` thread waits on the
descriptors of all of them with one ``epoll``, and a heap holds their timers. Two spawner threads
start the tasks with glibc's ``posix_spawn`` where it does exactly what ``Popen`` would
(:func:`parallelr.launch.spawn`: vfork-fast on every Python): a vfork spawn blocks its thread until
the child has exec'd, and in threads of their own spawns hold up neither the supervision nor the
scheduler, which meanwhile reports the tasks that ended. The supervision itself is
:class:`parallelr.supervise.TaskSupervisor`, the code ``process.run_task`` runs in a pool process or
a Dask worker, so every executor gives the same results: the same process group, timeout,
kill-the-tree with grace and escalation, bounded output tail, resource figures and messages.
Where there is no epoll (not Linux) each task runs with ``process.run_task`` in a thread of its
own instead.

Slots: never more than ``context.workers`` tasks run at once; a task submitted while all run
waits in a queue (FIFO) and starts when one ends. The scheduler never submits more than there
are slots.

Cancellation is per executor and per task: the executor owns a
:class:`~parallelr.cancel.CancelToken`, every task runs under a child of it (or a token linked
to the caller's), so its shutdown stops its own tasks and no other executor's, and the caller
can stop one task by cancelling the token it passed. The loop listens to every task's token
(:meth:`SupervisionLoop.watch`): a cancel costs no descriptor per task.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from typing import Deque, List, Optional, Tuple

import attrs

from parallelr import launch as launching
from parallelr import process
from parallelr.cancel import CancelToken
from parallelr.executor import SHUTDOWN_REASON, ExecutorContext
from parallelr.hookspecs import hookimpl
from parallelr.model import Task, TaskResult
from parallelr.plugins.executors import thread_loop
from parallelr.plugins.executors.thread_loop import Supervised, SupervisionLoop

_Waiting = Tuple[Task, int, concurrent.futures.Future, CancelToken]
# Spawning threads. A spawn blocks its thread (vfork) until the child execs, ~0.2 ms; measured on
# 2 CPUs, 1,000 tasks of `true` on 8 slots: one spawner 1.1-1.4 s, two 0.65-0.8 s, three no better.
SPAWNERS = 2


@attrs.frozen
class _Running:
    """What the executor keeps of a running task, for its result."""

    task: Task
    worker_id: int
    future: concurrent.futures.Future
    start_time: float


class ThreadExecutor:
    """``submit(task, worker_id, cancel)`` runs the task under the executor's one loop thread."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        self.workers = context.workers
        self.token = CancelToken()  # the parent of every task's token: shutdown cancels it
        # Reentrant: kill() may run in a signal handler while this thread holds it in submit().
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)  # notified when nothing runs or waits
        self._waiting: Deque[_Waiting] = collections.deque()
        self._running = 0
        self._closed = False  # no new tasks (after shutdown or kill)
        # None where there is no epoll: each task then runs in a thread of its own (_run_alone).
        self._loop = SupervisionLoop(name="supervisor") if thread_loop.AVAILABLE else None
        # A spawn blocks its thread until the child has exec'd (vfork): in threads of their own,
        # spawns neither hold up the supervision of running tasks nor the scheduler, which
        # meanwhile reports the tasks that ended, and two of them overlap on two CPUs.
        self._spawn_requests: queue.SimpleQueue[bool] = queue.SimpleQueue()  # False: stop
        self._spawners: List[threading.Thread] = []
        if self._loop is not None:
            for number in range(1, min(SPAWNERS, self.workers) + 1):
                spawner = threading.Thread(target=self._spawn_loop, name=f"spawner-{number}", daemon=True)
                spawner.start()
                self._spawners.append(spawner)

    # - the contract -
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
            self._waiting.append((task, worker_id, future, token))
        self._wake_spawners()
        return future

    def shutdown(self, cancel: bool) -> None:
        """Wait until none of the executor's tasks runs or waits, then end the loop thread. With
        ``cancel``: waiting tasks are cancelled (their futures report ``cancelled()``) and running
        ones are stopped with their whole process group and end as CANCELLED."""
        with self._lock:
            self._closed = True
        if cancel:
            self._cancel_waiting()
            self.token.cancel(SHUTDOWN_REASON)
        if self._loop is not None and threading.current_thread() is self._loop.thread:
            return  # a done-callback: the loop thread cannot wait for itself
        with self._idle:
            self._idle.wait_for(lambda: not self._running and not self._waiting)
        if self._loop is not None:
            for _spawner in self._spawners:
                self._spawn_requests.put(False)
            for spawner in self._spawners:
                if spawner is not threading.current_thread():
                    spawner.join()
            self._loop.stop()
            self._loop.thread.join()

    def kill(self) -> None:
        """Stop at once: SIGKILL every running task's group now (a second Ctrl+C)."""
        with self._lock:
            self._closed = True
        self.token.kill(SHUTDOWN_REASON)

    # - slots -
    def _wake_spawners(self) -> None:
        if self._spawners:
            self._spawn_requests.put(True)
        else:
            self._start_waiting()

    def _spawn_loop(self) -> None:
        while self._spawn_requests.get():
            self._start_waiting()

    def _start_waiting(self) -> None:
        """Start waiting tasks while slots are free. Any thread; a task that ends at once (an
        error, already cancelled) frees its slot for the next one in this same loop."""
        while True:
            with self._lock:
                if not self._waiting or self._running >= self.workers:
                    return
                task, worker_id, future, token = self._waiting.popleft()
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                self._running += 1
            self._start(task, worker_id, future, token)

    def _cancel_waiting(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, collections.deque()
            if not self._running:
                self._idle.notify_all()
        for _task, _worker_id, future, _token in waiting:
            if future.cancel():
                # a cancelled future counts as done for concurrent.futures.wait only once notified
                future.set_running_or_notify_cancel()

    def _start(
        self, task: Task, worker_id: int, future: concurrent.futures.Future, token: CancelToken
    ) -> None:
        """Spawn the task and hand it to the loop, or finish it at once (cancelled already, an
        error before or at the spawn). Called by _start_waiting, which then starts the next."""
        if self._loop is None:
            arguments = (task, worker_id, future, token)
            alone = threading.Thread(target=self._run_alone, args=arguments, daemon=True)
            alone.start()
            return
        try:
            launch = launching.prepare_launch(task, worker_id, self.limits, token)
            if isinstance(launch, TaskResult):
                self._finish(future, launch, start_next=False)
                return
            spawned = launching.spawn(launch)
            if isinstance(spawned, TaskResult):
                self._finish(future, spawned, start_next=False)
                return
            supervisor = process.supervise(launch, spawned, self._loop, token)
            wake = supervisor.start()
        except Exception as exc:
            self._finish(future, process.internal_error(task, worker_id, exc), start_next=False)
            return
        running = _Running(task, worker_id, future, launch.start_time)
        self._loop.adopt(Supervised(supervisor, wake, self._on_done, running))

    def _run_alone(
        self, task: Task, worker_id: int, future: concurrent.futures.Future, token: CancelToken
    ) -> None:
        """Without epoll: the task in a thread of its own, supervised by ``process.run_task``."""
        self._finish(future, process.run_task_guarded(task, worker_id, self.limits, token))

    def _on_done(self, entry: Supervised, error: Optional[BaseException]) -> None:
        """In the loop thread: the task and everything it started are gone."""
        running: _Running = entry.context
        if error is None:
            try:
                result = entry.supervisor.result(running.task, running.worker_id, running.start_time)
            except Exception as exc:
                result = process.internal_error(running.task, running.worker_id, exc)
        else:
            result = process.internal_error(running.task, running.worker_id, error)
        self._finish(running.future, result)

    def _finish(self, future: concurrent.futures.Future, result: TaskResult, start_next: bool = True) -> None:
        # The slot is free before the result is out: the scheduler's next submit then starts its
        # task at once, in its own thread, instead of queueing it for the loop thread.
        with self._lock:
            self._running -= 1
            has_waiting = bool(self._waiting)
        future.set_result(result)
        if has_waiting and start_next:
            self._wake_spawners()
        with self._lock:
            if not self._running and not self._waiting:
                self._idle.notify_all()


@hookimpl
def parallelr_executors():
    return {"thread": ThreadExecutor}
