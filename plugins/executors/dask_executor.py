"""The ``dask`` executor: each task attempt runs on a worker of a Dask cluster.

Each attempt is one Dask task, :func:`.dask_worker.run_attempt`, under a key of its own
(``parallelr-<run id>-<nonce>-<task>-<attempt>-<n>``, submitted with ``pure=False``), which runs
the task with :func:`parallelr.process.run_task_guarded` like every executor, so a task behaves
the same on a remote worker as in a local thread. What this side guarantees:

* **Results as they finish, nothing held.** Each Dask future has a done-callback (Dask runs them
  in one thread of its own) that takes the result, releases the future at once and resolves the
  future :meth:`DaskExecutor.submit` returned. A released key is forgotten by the scheduler, so
  a worker lost later never makes Dask compute a finished task again.
* **At most once.** A worker that dies while an attempt runs makes Dask run the key again; the
  attempt then finds its own start mark and ends FAILED ("Dask worker lost while the task ran
  (ADDRESS)") without running its command (see :mod:`.dask_worker`). A scheduler configured to
  give up instead (``allowed-failures: 0``) fails the future with KilledWorker: the same result.
  The run's retry policy then decides.
* **Stopping reaches the workers.** A task's cancel token, the executor's shutdown and ``kill()``
  are requests for one thread (signal-safe: a queue put), which asks the workers with
  ``Client.run`` to stop this run's attempts (their tokens: SIGTERM to the task's process group,
  SIGKILL after the grace period; ``kill``: SIGKILL now), then cancels in Dask the attempts that
  no worker runs yet (they end "Cancelled before it started", as queued tasks of the other
  executors do) and waits for the running ones to report CANCELLED. Only this run's keys are
  ever named: other runs on a shared cluster are not touched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from distributed.scheduler import KilledWorker

from parallelr.cancel import CancelToken
from parallelr.errors import ConfigError, ParallelrError
from parallelr.executor import SHUTDOWN_REASON, ExecutorContext
from parallelr.model import Task, TaskResult, TaskStatus
from parallelr.plugins.executors.dask import OPTION, DaskSection, check_address
from parallelr.plugins.executors.dask_cluster import Cluster
from parallelr.plugins.executors.dask_worker import LOST_MESSAGE, run_attempt, stop_attempts, stop_run
from parallelr.process import internal_error

log = logging.getLogger("parallelr")

NOT_STARTED_REASON = "Cancelled before it started"  # what the scheduler records for a queued task
# After a cancel, how long beyond the kill grace a worker may take to report its stopped tasks
# before the executor gives up on it (a worker that died meanwhile never reports).
GIVE_UP_AFTER = 30.0

_RUN = "run"  # a stop request for all of this run's attempts (the executor's token)


class _Attempt:
    """One submitted attempt: the future handed to the scheduler and Dask's future behind it."""

    __slots__ = ("dropped", "future", "inner", "taken", "task", "unsubscribe", "worker_id")

    def __init__(self, task: Task, worker_id: int, future: concurrent.futures.Future) -> None:
        self.task = task
        self.worker_id = worker_id
        self.future = future
        self.inner: Any = None
        self.unsubscribe: Any = None
        self.taken = False  # its result is being taken: stopping leaves it alone
        self.dropped: Optional[str] = None  # cancelled in Dask before any worker ran it: the reason

    def finish(self, result: TaskResult) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.future.set_result(result)


class DaskExecutor:
    """``submit(task, worker_id, cancel)`` runs the task on a Dask worker (see the module docstring)."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        section = getattr(context.settings, "dask", None) or DaskSection()
        self._cluster = Cluster.connect(_address(context, section), context.workers, section.connect_timeout)
        self._client = self._cluster.client
        try:
            _describe(self._cluster, context.workers)
        except Exception as exc:  # it answered the connect, then went away
            self._cluster.close()
            where = self._cluster.address
            raise ParallelrError(f"the Dask cluster at {where} stopped answering: {exc}") from None
        # Names this executor's keys: the workers stop "every attempt of this run" by it.
        self._run = f"parallelr-{self.limits.run_id or 'run'}-{os.urandom(4).hex()}"
        self._sequence = itertools.count(1)
        # reentrant: kill() may run in a signal handler while this thread holds it in submit()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # an attempt ended
        self._attempts: Dict[str, _Attempt] = {}
        self._seen_running: Set[str] = set()  # keys a worker said it ran when asked to stop them
        self._closing = False  # no new attempts (after shutdown or kill)
        self._closed = False
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._stopper = threading.Thread(target=self._serve_stops, name="parallelr-dask-stop", daemon=True)
        self._stopper.start()
        # The parent of all of this executor's attempts: shutdown cancels it, kill() kills it.
        self.token = CancelToken()
        self.token.subscribe(lambda: self._requests.put((_RUN, None)))

    # -- submitting -------------------------------------------------------------------------
    def submit(
        self, task: Task, worker_id: int, cancel: Optional[CancelToken] = None
    ) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises. Cancelling ``cancel`` stops this
        attempt only (on its worker); the executor's shutdown stops it too."""
        if cancel is not None and cancel.cancelled:
            return _finished(TaskResult.cancelled(task, cancel.reason or SHUTDOWN_REASON, worker_id))
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # like a pool's: it cannot be cancelled once submitted
        attempt = _Attempt(task, worker_id, future)
        key = f"{self._run}-{task.index}-{task.attempt}-{next(self._sequence)}"
        if cancel is not None:  # before Dask has it: a cancel cannot fall between the two
            attempt.unsubscribe = cancel.subscribe(lambda: self._requests.put((key, cancel)))
        with self._lock:
            if self._closing:
                attempt.finish(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
                return future
            try:
                attempt.inner = self._client.submit(
                    run_attempt, task, worker_id, self.limits, key, self._run, key=key, pure=False
                )
            except Exception as exc:  # a closed client: a result, not a raise
                attempt.finish(self._failure(task, worker_id, exc))
                return future
            self._attempts[key] = attempt
        if cancel is not None and cancel.cancelled:  # cancelled while it was being submitted
            self._requests.put((key, cancel))
        attempt.inner.add_done_callback(self._on_done)
        return future

    # -- results (in Dask's callback thread) --------------------------------------------------
    def _on_done(self, inner: Any) -> None:
        with self._lock:
            attempt = self._attempts.get(inner.key)
            if attempt is None or attempt.taken:  # given up on during a shutdown
                inner.release()
                return
            attempt.taken = True
        try:
            result = self._result_of(inner, attempt)
        except BaseException as exc:  # whatever goes wrong, the scheduler gets a result
            result = self._failure(attempt.task, attempt.worker_id, exc)
        finally:
            inner.release()  # at once: a finished key Dask forgets is never computed again
        attempt.finish(result)
        with self._lock:
            self._attempts.pop(inner.key, None)
            self._changed.notify_all()

    def _result_of(self, inner: Any, attempt: _Attempt) -> TaskResult:
        task, worker_id = attempt.task, attempt.worker_id
        status = inner.status
        if status == "cancelled":
            if attempt.dropped is not None:
                return TaskResult.cancelled(task, attempt.dropped, worker_id)
            return self._failure(task, worker_id, concurrent.futures.CancelledError(
                "the Dask scheduler cancelled the task (did it lose this client's connection?)"))
        if status == "error":
            return self._failure(task, worker_id, inner.exception())
        # Finished; or "lost" (the worker holding the result died before it came back): Dask
        # computes the key again, and the attempt's mark makes that a FAILED "worker lost".
        value = inner.result()
        if isinstance(value, TaskResult):
            return value
        return internal_error(task, worker_id, TypeError(f"a Dask worker returned {type(value).__name__}"))

    def _failure(self, task: Task, worker_id: int, error: BaseException) -> TaskResult:
        if isinstance(error, KilledWorker):  # the scheduler gave up on the key instead of rerunning it
            worker = getattr(getattr(error, "last_worker", None), "address", None) or "address unknown"
            return TaskResult(task=task, status=TaskStatus.FAILED, worker_id=worker_id,
                              error_message=LOST_MESSAGE.format(worker=worker))
        if self._closing and isinstance(error, concurrent.futures.CancelledError):
            return TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id)
        message = " ".join(str(error).split()) or type(error).__name__
        return TaskResult(task=task, status=TaskStatus.ERROR, worker_id=worker_id,
                          error_message=f"executor failed: {type(error).__name__}: {message}")

    # -- stopping (in the stopper thread) -----------------------------------------------------
    def _serve_stops(self) -> None:
        while True:
            batch = [self._requests.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._requests.get_nowait())
            requests = [request for request in batch if request is not None]
            try:
                self._stop(requests)
            except Exception as exc:  # a cluster that went away: the attempts end on their own
                log.warning("could not stop the run's tasks on the Dask workers: %s", exc)
            if len(requests) < len(batch):
                return

    def _stop(self, requests: List[Tuple[str, Any]]) -> None:
        """Per-attempt stops first (the first reason given wins), then the run's."""
        by_stop: Dict[Tuple[str, bool], List[str]] = {}
        whole_run = False
        for key, token in requests:
            if key == _RUN:
                whole_run = True
            else:
                by_stop.setdefault((token.reason or SHUTDOWN_REASON, token.killed), []).append(key)
        for (reason, kill), keys in by_stop.items():
            self._ask_workers(stop_attempts, keys, reason, kill, keys=set(keys))
        if whole_run:
            self._ask_workers(stop_run, self._run, SHUTDOWN_REASON, self.token.killed, keys=None)

    def _ask_workers(
        self, function: Any, what: Any, reason: str, kill: bool, keys: Optional[Set[str]]
    ) -> None:
        """Run ``function(what, reason, kill)`` on every worker, then cancel in Dask the attempts
        among ``keys`` (None: all of this run's) that no worker runs: they have not started."""
        replies = self._client.run(function, what, reason, kill, on_error="return")
        for reply in replies.values():
            if isinstance(reply, list):
                self._seen_running.update(reply)
        with self._lock:
            chosen = self._attempts if keys is None else {key: self._attempts[key] for key in keys
                                                          if key in self._attempts}
            # Not one that a worker ran (it may have ended since) or that Dask has finished:
            # its result is on its way.
            drop = [attempt for key, attempt in chosen.items()
                    if key not in self._seen_running and attempt.inner.status == "pending"
                    and not attempt.taken and attempt.dropped is None]
            reason_here = NOT_STARTED_REASON if keys is None else reason
            for attempt in drop:
                attempt.dropped = reason_here
        if drop:
            self._client.cancel([attempt.inner for attempt in drop])

    # -- the end ------------------------------------------------------------------------------
    def shutdown(self, cancel: bool) -> None:
        """Wait until none of this run's attempts runs, then close the client (and stop a local
        cluster). With ``cancel``: attempts not started are cancelled, running ones stopped with
        their whole process group (on their workers) and reported CANCELLED."""
        with self._lock:
            self._closing = True
        deadline = None
        if cancel:
            self.token.cancel(SHUTDOWN_REASON)
            deadline = time.monotonic() + self.limits.kill_grace + GIVE_UP_AFTER
        self._wait_idle(deadline)
        with self._lock:
            first, self._closed = not self._closed, True
        if first:
            self._requests.put(None)
            self._stopper.join()
            self._cluster.close()

    def _wait_idle(self, deadline: Optional[float]) -> None:
        with self._lock:
            while self._attempts:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            given_up = [attempt for attempt in self._attempts.values() if not attempt.taken]
            for attempt in given_up:
                attempt.taken = True
            self._attempts.clear()
        for attempt in given_up:  # their workers never answered: gone, or unreachable
            attempt.finish(TaskResult(
                task=attempt.task, status=TaskStatus.ERROR, worker_id=attempt.worker_id,
                error_message="executor failed: the Dask worker did not report the end of the cancelled task",
            ))
        if given_up:
            with contextlib.suppress(Exception):
                self._client.cancel([attempt.inner for attempt in given_up])

    def kill(self) -> None:
        """SIGKILL this run's running tasks on their workers now (a second Ctrl+C). Safe in a
        signal handler: the request goes to the stopper thread."""
        with self._lock:
            self._closing = True
        self.token.kill(SHUTDOWN_REASON)


def _finished(result: TaskResult) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(result)
    return future


def _address(context: ExecutorContext, section: DaskSection) -> Optional[str]:
    """The scheduler to use: ``--dask-scheduler``, else ``dask.scheduler``; None: a local cluster."""
    given = context.options.get(OPTION)
    if given:
        return check_address(given, "--dask-scheduler")
    if section.scheduler:
        return check_address(section.scheduler, "dask.scheduler", ConfigError)
    return None


def _describe(cluster: Cluster, slots: int) -> None:
    """One line about the cluster, and a warning when it has fewer threads than slots."""
    threads = sum(cluster.client.nthreads().values())
    workers = len(cluster.client.nthreads())
    where = "a local Dask cluster" if cluster.local is not None else "the Dask cluster"
    log.info("Running on %s at %s: %d worker(s), %d thread(s)", where, cluster.address, workers, threads)
    if threads < slots:
        log.warning("the Dask cluster has %d worker thread(s) for %d parallel tasks (-m): the rest wait "
                    "in the Dask scheduler's queue", threads, slots)
