"""The queue worker: claims due jobs and runs them in N slots through the scheduler and an executor.

One worker process has ``slots`` slots. Its source claims at most as many jobs as there are free
slots (a claim takes a lease), the :class:`~parallelr.scheduler.Scheduler` runs them with the
run's executor (so a job runs with :func:`parallelr.process.run_task`, exactly like a batch
task), and the end of every attempt is written to the store before it is logged. When nothing
is due the source answers NOTHING_YET and the scheduler sleeps until the monitor wakes it: at the
next due time, or when a datagram (:mod:`.wake`) or the store's own notification (PostgreSQL's
LISTEN/NOTIFY) says that something changed. Every time the worker gives the store (a claim, a
lease, a heartbeat) is the store's clock, ``store.now()``, which workers on other hosts share.

The monitor thread, with a store connection of its own, renews the leases of the running jobs
and the worker's heartbeat every ``heartbeat-seconds``, stops a job whose cancel was asked for,
and begins a graceful stop when ``worker stop`` asks for one.

Stopping: :meth:`QueueWorker.drain` (the first Ctrl+C or SIGTERM, ``worker stop``) claims nothing
new and lets running jobs finish; :meth:`QueueWorker.interrupt` (a second Ctrl+C) stops them, and
they go back to pending without the attempt being counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from parallelr.executor import ExecutorContext
from parallelr.jobs.errors import LeaseLost, StoreError, StoreUnavailable
from parallelr.jobs.leases import new_owner
from parallelr.jobs.records import AttemptOutcome, QueueJob, WorkerRecord
from parallelr.jobs.states import JobState
from parallelr.model import ExecutionLimits, RunInfo, RunPaths, Task, TaskResult, TaskStatus
from parallelr.queue.settings import QueueSettings
from parallelr.queue.wake import WakeSocket
from parallelr.report import escape_line
from parallelr.scheduler import NOTHING_YET, RunControl, Scheduler
from parallelr.signals import TwoStageSignals

log = logging.getLogger("parallelr.queue")

LEASE_LOST_REASON = "Cancelled: the job's lease was lost (another worker may run it)"
JOB_ID_VARIABLE = "PARALLELR_JOB_ID"
RECLAIM_EVERY = 1.0  # seconds between two look-ups of expired leases while a worker is busy


class QueueWorker:
    """One worker process: ``slots`` jobs at a time from ``queues`` (empty: every queue).

    Args:
        open_store: opens a new connection to the store (the worker uses two: one per thread).
        make_executor: the executor factory (``thread`` by default), given an ExecutorContext.
        limits: the execution limits every job runs under (a job's timeout and cwd are its own).
        settings_of: reads the queue settings from a store (they may change while it runs).
    """

    def __init__(
        self, open_store: Callable[[], Any], *, slots: int, queues: Sequence[str],
        make_executor: Callable[[ExecutorContext], Any], limits: ExecutionLimits,
        settings_of: Callable[[Any], QueueSettings], run_settings: Any = None,
    ) -> None:
        self.open_store = open_store
        self.slots = slots
        self.queues = tuple(queues)
        self.make_executor = make_executor
        self.limits = limits
        self.settings_of = settings_of
        self.run_settings = run_settings
        self.owner = new_owner("worker", os.getpid(), socket.gethostname())
        self.control = RunControl()
        self.store = open_store()
        self.settings = settings_of(self.store)
        self.scheduler: Optional[Scheduler] = None
        self._draining = threading.Event()
        self._interrupted = False
        self._running: Dict[int, str] = {}  # job row -> job ID, of the attempts running now
        # job row -> its counted attempt (Task.attempt numbers its tries, interrupted ones too)
        self._counted: Dict[int, int] = {}
        self._claimed: Dict[int, QueueJob] = {}  # claimed, not handed to the scheduler yet
        self._next_reclaim = 0.0  # when a claim next takes back the jobs of vanished workers
        self.done = 0
        self._monitor: Optional[_Monitor] = None

    # -- from outside (signals, the monitor) ------------------------------------------------------
    def drain(self, why: str) -> None:
        """Claim nothing new; let the running jobs finish, then end (thread- and signal-safe)."""
        if self._draining.is_set():
            return
        self._draining.set()
        running = len(self._running)
        log.info("Stopping (%s): %s", why,
                 f"waiting for {running} running job(s) to finish" if running else "no job is running")
        if self.scheduler is not None:
            self.scheduler.wake()

    def interrupt(self, why: str, exit_code: Optional[int] = None) -> None:
        """Stop the running jobs now; they go back to pending."""
        self._interrupted = True
        self._draining.set()
        log.warning("Stopping now (%s): %d running job(s) are stopped and go back to pending",
                    why, len(self._running))
        self.control.stop(why, exit_code)

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped. Returns 0 after a graceful stop, 128+N after a forced one."""
        wake_socket = WakeSocket()
        now = self.store.now()
        self.store.forget_workers(now - 10 * self.settings.lease_seconds)
        self.store.register_worker(WorkerRecord(
            id=self.owner, pid=os.getpid(), host=socket.gethostname(), slots=self.slots, queues=self.queues,
            started_at=now, heartbeat_at=now, jobs_done=0, stop_requested=False, wake=wake_socket.address,
        ))
        executor = self.make_executor(ExecutorContext(
            workers=self.slots, limits=self.limits, settings=self.run_settings, options={},
        ))
        self.control.attach_kill(getattr(executor, "kill", None) or (lambda: executor.shutdown(cancel=True)))
        self.scheduler = Scheduler(
            self._run_info(now), executor, self, workers=self.slots, control=self.control,
            hand_back=lambda task: None,
        )
        self._monitor = _Monitor(self, wake_socket)
        self._monitor.start()
        where = ", ".join(self.queues) if self.queues else "every queue"
        log.info("Worker %s started: %d slot(s), %s", self.owner, self.slots, where)
        outcome = None
        try:
            outcome = self.scheduler.run(self._jobs())
        finally:
            executor.shutdown(cancel=self._interrupted)
            self._release_unstarted()
            self._monitor.stop()
            wake_socket.close()
            try:
                self.store.remove_worker(self.owner)
            except StoreError as exc:
                log.warning("%s", exc)
            self.store.close()
        log.info("Worker stopped: %d job(s) done", self.done)
        if outcome is not None and outcome.interrupted_by and outcome.signal_exit_code is not None:
            return outcome.signal_exit_code
        return 0

    def _run_info(self, now: float) -> RunInfo:
        paths = RunPaths(home="", log_dir="", workspace=self.limits.workspace, pid_file="", main_log="",
                         summary_csv="", output_log=None)
        return RunInfo(
            app_name="queue", pid=os.getpid(), started_at=now, timestamp="", settings=self.run_settings,
            paths=paths, command_template="", executor="", workers=self.slots, run_id=self.owner,
        )

    def _jobs(self) -> Iterator[Union[Task, Any]]:
        """Claimed jobs as tasks, NOTHING_YET when none is due; ends once draining."""
        while not self._draining.is_set():
            if self._claimed:  # claimed with the end of an attempt (see parallelr_task_finish)
                row = next(iter(self._claimed))
                yield self._task(self._claimed.pop(row))
                continue
            try:
                claimed = self._claim(max(1, self.slots - len(self._running)), reclaim=True)
            except StoreUnavailable as exc:
                log.warning("Cannot claim jobs now: %s", exc)
                self._monitor_wake_at(self.store.now() + 1.0)  # the store is busy or full: look again soon
                yield NOTHING_YET
                continue
            if not claimed:
                self._monitor_wake_at(self.store.next_due_at(self.queues, self.store.now()))
                yield NOTHING_YET

    def _claim(self, count: int, reclaim: bool) -> List[QueueJob]:
        """Claim up to ``count`` jobs into the buffer the source yields from. Taking back jobs of
        vanished workers costs a query: a busy worker does it once a second, an idle one each time."""
        now = self.store.now()
        reclaim = reclaim or now >= self._next_reclaim
        if reclaim:
            self._next_reclaim = now + RECLAIM_EVERY
        claimed = self.store.claim_queue_jobs(
            self.owner, now, self.queues, count, self.settings.lease_seconds, reclaim=reclaim
        )
        for job in claimed:
            self._claimed[job.row] = job
        return claimed

    def _task(self, job: QueueJob) -> Task:
        """The job as a task: its own timeout (else ``job-timeout``, read now) and its ID in the
        environment as PARALLELR_JOB_ID."""
        self._counted[job.row] = job.attempts
        timeout = job.timeout if job.timeout is not None else self.settings.job_timeout
        return job.to_task(timeout=timeout, env=((*job.env, (JOB_ID_VARIABLE, job.key))))

    def _monitor_wake_at(self, due: Optional[float]) -> None:
        if self._monitor is not None:
            self._monitor.wake_at(due)

    def _release_unstarted(self) -> None:
        """Jobs claimed but never started (a stop came in between) go back as they were."""
        if not self._claimed:
            return
        try:
            self.store.release_queue_jobs(self.owner, list(self._claimed), self.store.now())
        except StoreError as exc:
            log.warning("%s; their leases run out and another worker takes them", exc)
        self._claimed.clear()

    # -- the scheduler's hooks (its thread) -------------------------------------------------------
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        self._running[task.index] = task.source
        log.info("Worker-%d: picked job %s (attempt %d)", worker_id, escape_line(task.source),
                 self._counted.get(task.index, task.attempt))

    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        """Not called: the store schedules a queue job's retries (the scheduler's are off)."""

    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        task = result.task
        self._running.pop(task.index, None)
        attempt = self._counted.pop(task.index, result.attempt)
        settings = self.settings
        # The freed slot's next job is claimed in the same transaction: one commit per job.
        wanted = 0 if self._draining.is_set() else self.slots - len(self._running) - len(self._claimed)
        buffered = set(self._claimed)
        try:
            with self.store.transaction():
                outcome = self.store.finish_queue_attempt(
                    self.owner, result, self.store.now(), settings.backoff_base, settings.backoff_max,
                )
                if wanted > 0:
                    self._claim(wanted, reclaim=False)
        except LeaseLost:
            log.warning("Worker-%d: job %s was taken over by another worker (its lease ran out): "
                        "this attempt's end (%s) is not recorded", result.worker_id, escape_line(task.source),
                        result.status.value)
            return
        except StoreError as exc:
            for row in set(self._claimed) - buffered:  # rolled back with the rest: not ours
                del self._claimed[row]
            log.error("Worker-%d: cannot record the end of job %s: %s; its lease runs out and it runs again",
                      result.worker_id, escape_line(task.source), exc)
            return
        if outcome.state in (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED):
            self.done += 1
        _log_outcome(result, outcome, attempt, self.store.now())

    # -- the monitor's side ------------------------------------------------------------------------
    def running_rows(self) -> Sequence[int]:
        return list(self._running)

    def lease_lost(self, row: int) -> None:
        if row in self._running:  # another worker may run it now: stop ours (its end is not recorded)
            self.control.cancel_task(row, LEASE_LOST_REASON)

    def cancel_job(self, row: int) -> None:
        if self.control.cancel_task(row, "Cancelled by the user (queuectl cancel)"):
            log.info("Cancelling job %s at the user's request", escape_line(self._running.get(row, str(row))))


def _log_outcome(result: TaskResult, outcome: AttemptOutcome, attempt: int, now: float) -> None:
    slot, key = result.worker_id, escape_line(outcome.key)
    state = outcome.state
    if state is JobState.SUCCEEDED:
        log.info("Worker-%d: job %s completed successfully (%.2fs)", slot, key, result.duration)
    elif outcome.interrupted:
        log.info("Worker-%d: job %s interrupted; it is pending again", slot, key)
    elif state is JobState.CANCELLED:
        log.info("Worker-%d: job %s cancelled", slot, key)
    elif state is JobState.DEAD:
        log.warning("Worker-%d: job %s failed (attempt %d: %s), moving to DLQ", slot, key, attempt,
                    _why(result))
    else:
        delay = max(0.0, (outcome.due_at or now) - now)
        log.warning("Worker-%d: job %s failed (attempt %d: %s), retrying in %.1fs", slot, key, attempt,
                    _why(result), delay)


def _why(result: TaskResult) -> str:
    if result.status is TaskStatus.FAILED and result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return escape_line(result.error_message or result.status.value)


class _Monitor:
    """The worker's second thread: heartbeats, lease renewals, cancel and stop requests, and the
    wake-ups of an idle scheduler (at the next due time, or when a datagram or a notification
    of the store arrives)."""

    def __init__(self, worker: QueueWorker, wake_socket: WakeSocket) -> None:
        self.worker = worker
        self.wake_socket = wake_socket
        self._due: Optional[float] = None
        self._stopped = False
        self._poke_read, self._poke_write = os.pipe()
        os.set_blocking(self._poke_write, False)
        self._thread = threading.Thread(target=self._loop, name="queue-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._poke()
        self._thread.join(timeout=30)
        os.close(self._poke_read)
        os.close(self._poke_write)

    def wake_at(self, due: Optional[float]) -> None:
        """Wake the scheduler at ``due`` (epoch seconds; None: only when told)."""
        self._due = due
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full (a poke is pending anyway) or closed
            os.write(self._poke_write, b"x")

    def _loop(self) -> None:
        worker = self.worker
        try:
            store = worker.open_store()
        except StoreError as exc:
            log.error("The worker's monitor cannot open the store: %s; stopping", exc)
            worker.drain("no heartbeat possible")
            return
        selector = selectors.DefaultSelector()
        selector.register(self.wake_socket, selectors.EVENT_READ, "wake")
        selector.register(self._poke_read, selectors.EVENT_READ, "poke")
        listener = self._listen(store, selector)
        next_beat = time.monotonic() + worker.settings.heartbeat_seconds
        try:
            while not self._stopped:
                due = self._due
                wait = next_beat - time.monotonic()
                if due is not None:
                    wait = min(wait, due - store.now())
                events = selector.select(max(0.0, wait))
                woken = False
                for key, _mask in events:
                    if key.data == "wake":
                        woken = self.wake_socket.drain() > 0 or woken
                    elif key.data == "listen" and listener is not None:
                        try:
                            woken = listener.drain() > 0 or woken
                        except StoreError as exc:  # due times and datagrams still wake it
                            log.warning("Stopped listening for new jobs: %s", exc)
                            selector.unregister(listener)
                            listener.close()
                            listener, woken = None, True
                    else:
                        os.read(self._poke_read, 4096)
                if self._stopped:
                    return
                if woken:  # a hint only: look at the store (stop and cancel requests), then claim
                    self._check(store, heartbeat=False)
                    self._wake_scheduler()
                if self._due is not None and store.now() >= self._due:
                    self._due = None
                    self._wake_scheduler()
                if time.monotonic() >= next_beat:
                    self._check(store, heartbeat=True)
                    next_beat = time.monotonic() + worker.settings.heartbeat_seconds
                    if listener is None:  # lost (or never had): a SQLite store answers None at once
                        listener = self._listen(store, selector, again=True)
        finally:
            selector.close()
            if listener is not None:
                listener.close()
            store.close()

    def _listen(self, store: Any, selector: selectors.BaseSelector, again: bool = False) -> Any:
        """The store's notifications on ``selector`` (PostgreSQL's LISTEN), or None: a store without
        them, or one that cannot listen now (tried again at the next heartbeat). Listening again
        after a lost connection, the worker looks at the store at once: it may have missed one."""
        try:
            listener = store.listener()
        except StoreError as exc:
            if not again:
                log.warning("Cannot listen for new jobs now: %s (tried again at each heartbeat)", exc)
            return None
        if listener is not None:
            selector.register(listener, selectors.EVENT_READ, "listen")
            if again:
                log.info("Listening for new jobs again")
                self._wake_scheduler()
        return listener

    def _wake_scheduler(self) -> None:
        if self.worker.scheduler is not None:
            self.worker.scheduler.wake()

    def _check(self, store: Any, heartbeat: bool) -> None:
        worker = self.worker
        try:
            now = store.now()
            if heartbeat:
                worker.settings = worker.settings_of(store)
                rows = worker.running_rows()
                if rows:
                    expires = now + worker.settings.lease_seconds
                    held = set(store.renew_queue_leases(worker.owner, rows, expires))
                    for row in rows:
                        if row not in held:
                            worker.lease_lost(row)
                stop = store.worker_heartbeat(worker.owner, now, worker.done)
            else:
                stop = store.worker_stop_requested(worker.owner)
            for row in store.cancel_requested(worker.owner):
                worker.cancel_job(row)
        except StoreError as exc:
            log.warning("Heartbeat failed: %s (the leases last %gs; it is tried again)", exc,
                        worker.settings.lease_seconds)
            return
        if stop:
            worker.drain("asked to stop")


class StopOnSignals(TwoStageSignals):
    """SIGINT/SIGTERM: the first lets running jobs finish, the second stops them (exit 128+N)."""

    def __init__(self, worker: QueueWorker, ignore_hangup: bool = False) -> None:
        super().__init__((signal.SIGINT, signal.SIGTERM), ignore_hangup)
        self.worker = worker

    def first(self, name: str, signum: int) -> None:
        self.worker.drain(f"{name}; press Ctrl+C again to stop the running jobs now")

    def again(self, name: str, signum: int) -> None:
        self.worker.interrupt(name, 128 + signum)
