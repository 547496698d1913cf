"""Feed tasks to an executor, one per free worker slot, and account for every one of them.

The scheduler is the only place that knows about time, slots and stopping. It is event-driven:
it sleeps in ``concurrent.futures.wait(FIRST_COMPLETED)`` until a task ends (or the start delay
or a stop request is due), never on a polling interval. Tasks are pulled from the source one at a
time, so a streaming source is never materialised.

Every task gets exactly one ``parallelr_task_finish`` call: the ones that ran with their result,
the ones that never started (stop limits, shutdown) as CANCELLED, unless the caller takes them
back (``hand_back``: a queue puts them back to pending).

The scheduler only schedules. The run's statistics and its exit-status rule are a subscriber of
its events (:class:`RunTally`); outside control (a signal, a test, a queue worker) comes in
through :class:`RunControl`. A source may answer :data:`NOTHING_YET` (a queue with no due job):
the scheduler then waits for :meth:`Scheduler.wake` instead of ending the run.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import inspect
import logging
import queue
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from parallelr.errors import ParallelrError, WriteError
from parallelr.executor import SHUTDOWN_REASON
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.report import escape_line

log = logging.getLogger("parallelr.scheduler")


@attrs.frozen
class StopLimits:
    """The auto-stop protection of the spec (``--enable-stop-limits``)."""

    enabled: bool = False
    max_consecutive_failures: int = 5
    max_failure_rate: float = 0.5
    min_tasks_for_rate_check: int = 10

    @classmethod
    def from_settings(cls, limits: Any) -> StopLimits:
        return cls(
            enabled=limits.stop_limits_enabled,
            max_consecutive_failures=limits.max_consecutive_failures,
            max_failure_rate=limits.max_failure_rate,
            min_tasks_for_rate_check=limits.min_tasks_for_rate_check,
        )


class RunTally:
    """The run's statistics and its exit-status rule: a subscriber of every final task result.

    Running totals, O(1) memory whatever the number of tasks. A resumed run starts from the
    counts of its earlier tasks (``previous``), so its summary counts the whole run.
    """

    def __init__(self, previous: Optional[Mapping[TaskStatus, int]] = None) -> None:
        self.counts: Dict[TaskStatus, int] = {status: 0 for status in TaskStatus}
        for status, count in (previous or {}).items():
            self.counts[status] += count
        self.consecutive_failures = 0
        self._ran = 0
        self._duration_sum = 0.0
        self._duration_max = 0.0
        self._duration_min: Optional[float] = None
        self._memory_sum = 0.0
        self._memory_peak = 0.0

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(count for status, count in self.counts.items() if status.is_failure)

    def add(self, result: TaskResult) -> None:
        status = result.status
        self.counts[status] += 1
        if status.is_failure:
            self.consecutive_failures += 1
        elif status is TaskStatus.SUCCESS:
            self.consecutive_failures = 0
        if result.start_time is None:  # never ran: no figures to count
            return
        self._ran += 1
        self._duration_sum += result.duration
        self._duration_max = max(self._duration_max, result.duration)
        self._duration_min = (
            result.duration if self._duration_min is None else min(self._duration_min, result.duration)
        )
        self._memory_sum += result.memory_mb
        self._memory_peak = max(self._memory_peak, result.memory_mb)

    def stop_reason(self, limits: StopLimits) -> Optional[str]:
        """Why the stop limits say to halt now, or None."""
        if not limits.enabled:
            return None
        if self.consecutive_failures >= limits.max_consecutive_failures:
            return f"{self.consecutive_failures} consecutive failures (max_consecutive_failures)"
        done = self.counts[TaskStatus.SUCCESS] + self.failures
        if done >= limits.min_tasks_for_rate_check:
            rate = self.failures / done
            if rate > limits.max_failure_rate:
                return (
                    f"failure rate {rate:.0%} after {done} tasks exceeds "
                    f"{limits.max_failure_rate:.0%} (max_failure_rate)"
                )
        return None

    def exit_code(self, outcome: RunOutcome, problems: Sequence[str] = ()) -> int:
        """COMPAT exit status: 0 when every task succeeded (and nothing went wrong around them),
        128+N after signal N, else 1."""
        if outcome.interrupted_by is not None and outcome.signal_exit_code is not None:
            return outcome.signal_exit_code
        if (outcome.stop_reason or outcome.interrupted_by or outcome.write_error is not None
                or self.finished != self.counts[TaskStatus.SUCCESS]):
            return 1
        return 1 if problems else 0

    def summary(self, outcome: RunOutcome, problems: Sequence[str] = ()) -> RunSummary:
        counts = self.counts
        exit_code = self.exit_code(outcome, problems)
        stop_reason, interrupted_by = outcome.stop_reason, outcome.interrupted_by
        return RunSummary(
            total=self.finished,
            succeeded=counts[TaskStatus.SUCCESS],
            failed=self.failures,
            timed_out=counts[TaskStatus.TIMEOUT],
            errored=counts[TaskStatus.ERROR],
            cancelled=counts[TaskStatus.CANCELLED],
            avg_duration=self._duration_sum / self._ran if self._ran else 0.0,
            max_duration=self._duration_max,
            min_duration=self._duration_min or 0.0,
            avg_memory_mb=self._memory_sum / self._ran if self._ran else 0.0,
            peak_memory_mb=self._memory_peak,
            stop_reason=stop_reason,
            interrupted_by=interrupted_by,
            exit_code=exit_code,
            problems=problems,
        )


class StopRequest:
    """A request to stop the run from outside the scheduler (a signal handler, a test).

    It is a Future in the scheduler's wait set, so a request wakes the scheduler at once.
    ``reason`` names the cause ("SIGINT"); ``exit_code`` is the status the run then ends with.
    """

    def __init__(self) -> None:
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.exit_code: Optional[int] = None

    def request(self, reason: str, exit_code: Optional[int] = None) -> None:
        if not self.future.done():
            self.exit_code = exit_code
            self.future.set_result(reason)

    @property
    def reason(self) -> Optional[str]:
        return self.future.result() if self.future.done() else None


@attrs.frozen
class RunOutcome:
    """How the scheduling ended: stopped by the stop limits, interrupted (by a signal), or neither."""

    stop_reason: Optional[str] = None
    interrupted_by: Optional[str] = None
    signal_exit_code: Optional[int] = None  # 128+N when signal N interrupted the run
    write_error: Optional[WriteError] = None  # a record could not be written: the run stopped


class _NothingYet:
    def __repr__(self) -> str:
        return "NOTHING_YET"


NOTHING_YET: Any = _NothingYet()
"""What a source yields when it has no task *now* but may have one later (a queue): the
scheduler stops pulling until someone calls :meth:`Scheduler.wake` (or a task ends)."""


class RunControl:
    """Steers one run from outside the scheduler's thread: a signal handler, a test, a worker.

    ``stop`` lets running tasks be stopped and starts nothing new (the CLI's Ctrl+C), ``kill``
    SIGKILLs the running tasks at once, ``cancel_task`` stops one running task, which ends
    CANCELLED while the others go on. All of them are safe from any thread and from a signal
    handler (no locks).
    """

    def __init__(self) -> None:
        self.stop_request = StopRequest()
        self._kill: Optional[Callable[[], None]] = None
        self._tokens: Dict[int, Any] = {}  # task index -> the cancel token of its running attempt

    def stop(self, reason: str = "stopped", exit_code: Optional[int] = None) -> None:
        self.stop_request.request(reason, exit_code)

    def kill(self, reason: str = "killed") -> None:
        self.stop(reason)
        if self._kill is not None:
            self._kill()

    def cancel_task(self, index: int, reason: str = "Cancelled") -> bool:
        """Stop the running task with this index; False when it is not running (now)."""
        token = self._tokens.get(index)
        if token is None:
            return False
        token.cancel(reason)
        return True

    def running(self) -> List[int]:
        """The indexes of the tasks running now."""
        return sorted(self._tokens)

    # -- the scheduler's side --
    def attach_kill(self, kill: Callable[[], None]) -> None:
        self._kill = kill

    def track(self, index: int, token: Any) -> None:
        self._tokens[index] = token

    def untrack(self, index: int) -> None:
        self._tokens.pop(index, None)


@attrs.frozen
class RetryPolicy:
    """``--retries N``: attempt k+1 starts ``delay * backoff**(k-1)`` seconds (at most
    ``max_delay``) after attempt k ended. A timeout counts as a failure."""

    retries: int = 0
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0

    def delay_after(self, attempt: int) -> float:
        return min(self.max_delay, self.delay * self.backoff ** (attempt - 1))


class Scheduler:
    def __init__(
        self,
        run: RunInfo,
        executor: Any,
        hook: Any,
        *,
        workers: int,
        start_delay: float = 0.0,
        stop_limits: Optional[StopLimits] = None,
        control: Optional[RunControl] = None,
        retry: Optional[RetryPolicy] = None,
        tally: Optional[RunTally] = None,
        hand_back: Optional[Callable[[Task], None]] = None,
    ) -> None:
        self.run_info = run
        self.executor = executor
        self.hook = hook
        self.workers = workers
        self.start_delay = start_delay
        self.stop_limits = stop_limits or StopLimits()
        self.control = control or RunControl()
        self.stop_request = self.control.stop_request
        self.retry = retry or RetryPolicy()
        self.tally = tally or RunTally()
        self.hand_back = hand_back
        # Per-task cancel tokens, for executors whose submit takes one (the Executor protocol's):
        # children of one run token, so cancelling the run reaches every attempt.
        self._run_token = _new_token() if _accepts_cancel(executor) else None
        self._nothing_yet = False  # the source said NOTHING_YET: pull again only after a wake
        self.write_error: Optional[WriteError] = None  # the first record that could not be written
        self._callers: Dict[int, EachCaller] = {}
        self.stop_reason: Optional[str] = None
        self._source_failed = False
        self._running_cancelled = False
        # Failed attempts waiting for their retry: (due, sequence, task). They hold no slot.
        self._retries: List[Tuple[float, int, Task, TaskResult]] = []
        self._retry_sequence = 0
        self._done: queue.SimpleQueue[concurrent.futures.Future] = queue.SimpleQueue()
        self.stop_request.future.add_done_callback(self._done.put)

    def wake(self) -> None:
        """A source that said NOTHING_YET may have a task now (thread-safe)."""
        self._done.put(_WAKE)

    def _finish(self, result: TaskResult) -> None:
        self.tally.add(result)
        self._report(self.hook.parallelr_task_finish, result=result)
        if self.stop_reason is None and result.status.is_failure:
            reason = self.tally.stop_reason(self.stop_limits)
            if reason:
                self.stop_reason = reason
                log.warning("Stop limits reached: %s; no new tasks are started", reason)

    def _settle(self, result: TaskResult) -> None:
        """A finished attempt: retry it later, or record the task's final result."""
        task = result.task
        if result.status.is_failure and task.attempt <= self.retry.retries and not self._stopping:
            delay = self.retry.delay_after(task.attempt)
            self._report(self.hook.parallelr_task_retry, result=result, delay=delay)
            self._retry_sequence += 1
            due = time.monotonic() + delay
            again = attrs.evolve(task, attempt=task.attempt + 1)
            heapq.heappush(self._retries, (due, self._retry_sequence, again, result))
            return
        self._finish(result)

    @property
    def _stopping(self) -> bool:
        return self.stop_reason is not None or self.write_error is not None or self.stop_request.future.done()

    def _report(self, hook: Any, **kwargs: Any) -> None:
        """Call a run hook. A record that cannot be written (a full disk) stops the run: nothing new
        starts, what runs finishes and is still reported; the error ends the run afterwards."""
        caller = self._callers.get(id(hook))
        if caller is None or caller.hook is not hook:
            caller = self._callers[id(hook)] = EachCaller(hook)
        error = caller(run=self.run_info, **kwargs)
        if error is not None and self.write_error is None:
            self.write_error = error

    def _pull(self, numbered: Iterator[Union[Task, Any]]) -> Union[Task, Any, None]:
        """The next new task, NOTHING_YET, or None when the source is exhausted (or failed)."""
        try:
            return next(numbered, None)
        except ParallelrError as exc:  # e.g. the arguments file changed under the run
            log.error("%s", exc)
            self.stop_reason = f"the task source failed: {exc}"
            self._source_failed = True
            return None

    def run(self, tasks: Iterable[Task]) -> RunOutcome:
        """Run every task of ``tasks`` (pulled one at a time) and say how the scheduling ended;
        the tally then has every task's final result."""
        numbered = _numbered(tasks)
        free_slots: List[int] = list(range(1, self.workers + 1))  # already a heap
        pending: Dict[concurrent.futures.Future, Tuple[Task, int]] = {}
        next_start = 0.0  # monotonic time before which no task may start (-s delay)
        exhausted = False  # no new tasks left (retries may still be waiting)
        while True:
            while free_slots and not self._stopping:
                now = time.monotonic()
                if self.start_delay and now < next_start:
                    break
                if self._retries and self._retries[0][0] <= now:
                    task = heapq.heappop(self._retries)[2]
                elif exhausted or self._nothing_yet:
                    break
                else:
                    task = self._pull(numbered)
                    if task is None:
                        exhausted = True
                        break
                    if task is NOTHING_YET:
                        self._nothing_yet = True
                        break
                worker_id = heapq.heappop(free_slots)
                future = self._submit(task, worker_id)
                pending[future] = (task, worker_id)
                future.add_done_callback(self._done.put)
                self._report(self.hook.parallelr_task_start, task=task, worker_id=worker_id)
                if self.start_delay:
                    next_start = time.monotonic() + self.start_delay
            if not pending and (self._stopping or (exhausted and not self._retries)):
                break
            done = self._completed(self._wake_in(free_slots, next_start, exhausted))
            if _WAKE in done:
                self._nothing_yet = False
            if self.stop_request.reason is not None and pending and not self._running_cancelled:
                self._running_cancelled = True
                if self._run_token is not None:
                    self._run_token.cancel(SHUTDOWN_REASON)
                self.executor.shutdown(cancel=True)
                done += self._completed(0.0)
            for future in done:
                if future is self.stop_request.future or future not in pending:
                    continue
                task, worker_id = pending.pop(future)
                self._nothing_yet = False  # a slot is free and the source may have work again
                self.control.untrack(task.index)
                self._settle(_result_of(future, task, worker_id))
                heapq.heappush(free_slots, worker_id)
        self._cancel_waiting(numbered)
        request = self.stop_request
        return RunOutcome(self.stop_reason, request.reason, request.exit_code if request.reason else None,
                          self.write_error)

    def _submit(self, task: Task, worker_id: int) -> concurrent.futures.Future:
        if self._run_token is None:
            return self.executor.submit(task, worker_id)
        token = self._run_token.child()
        self.control.track(task.index, token)
        return self.executor.submit(task, worker_id, cancel=token)

    def _completed(self, timeout: Optional[float]) -> List[concurrent.futures.Future]:
        """Futures that completed (and the stop request, once it is made), waiting up to
        ``timeout`` seconds (None: until one completes) for the first. Every future reports
        itself through a done-callback into one queue: a wait costs one queue read, however many
        tasks run, where concurrent.futures.wait locks and unlocks every pending future."""
        done: List[concurrent.futures.Future] = []
        try:
            done.append(self._done.get(timeout=timeout) if timeout != 0.0 else self._done.get_nowait())
        except queue.Empty:
            return done
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                return done

    def _wake_in(self, free_slots: List[int], next_start: float, exhausted: bool) -> Optional[float]:
        """How long the scheduler may sleep: until a task ends, or a start or retry is due."""
        if not free_slots or self._stopping:
            return None
        now = time.monotonic()
        due: List[float] = []
        if self._retries:
            due.append(self._retries[0][0])
        if self.start_delay and (not exhausted or self._retries):
            due.append(next_start)
        return max(0.0, min(due) - now) if due else None

    def _cancel_waiting(self, remaining: Iterator[Task]) -> None:
        """After a stop: every task that will not run now still gets its row, as CANCELLED."""
        if self.write_error is not None:
            why = f"a record could not be written ({self.write_error})"
        elif self.stop_reason:
            why = f"stop limits reached ({self.stop_reason})"
        elif self.stop_request.reason:
            why = f"run interrupted by {self.stop_request.reason}"
        else:
            return
        while self._retries:
            _, _, task, last = heapq.heappop(self._retries)
            if self.hand_back is not None:
                self.hand_back(task)
                continue
            self._finish(TaskResult.cancelled(
                task, f"Retry not started: {why} (attempt {last.attempt}: {last.error_message})"
            ))
        # A failed source cannot be iterated further; one that takes tasks back keeps its own.
        if self._source_failed or self.hand_back is not None:
            return
        try:
            for task in remaining:
                self._finish(TaskResult.cancelled(task, f"Not started: {why}"))
        except ParallelrError as exc:  # the source failed while it was read to the end
            log.error("%s", exc)


def call_each(hook: Any, **kwargs: Any) -> Optional[WriteError]:
    """Call every implementation of ``hook`` in pluggy's order, each even when one before it could
    not write its file: a full output log must not cost the task its CSV row. Returns the first
    WriteError. Hooks with wrappers (and a plain callable) are called as usual."""
    return EachCaller(hook)(**kwargs)


class EachCaller:
    """:func:`call_each` for one hook, with its implementations looked up once: the run hooks
    are called for every task, and the plugins of a run are registered before it starts."""

    def __init__(self, hook: Any) -> None:
        get_impls = getattr(hook, "get_hookimpls", None)
        impls = get_impls() if get_impls is not None else []
        self.hook = hook
        self.direct = get_impls is None or any(impl.hookwrapper or impl.wrapper for impl in impls)
        # pluggy calls the last registered (and tryfirst) implementation first
        self.calls = [(impl.function, tuple(impl.argnames)) for impl in reversed(impls)]

    def __call__(self, **kwargs: Any) -> Optional[WriteError]:
        if self.direct:
            try:
                self.hook(**kwargs)
            except WriteError as exc:
                return exc
            return None
        first: Optional[WriteError] = None
        for function, names in self.calls:
            try:
                function(*[kwargs[name] for name in names])
            except WriteError as exc:
                first = first or exc
        return first


_WAKE: Any = concurrent.futures.Future()  # put into the completion queue by Scheduler.wake


def _new_token() -> Any:
    from parallelr.cancel import CancelToken

    return CancelToken()


def _accepts_cancel(executor: Any) -> bool:
    """Whether ``executor.submit`` takes a per-task ``cancel`` token (the Executor protocol's);
    an executor written before it still works, without per-task cancel."""
    try:
        return "cancel" in inspect.signature(executor.submit).parameters
    except (TypeError, ValueError):
        return False


def _numbered(tasks: Iterable[Any]) -> Iterator[Any]:
    """Number the tasks 1, 2, ... unless their source already did (a resumed run);
    NOTHING_YET passes through and takes no number."""
    index = 0
    for task in tasks:
        if task is NOTHING_YET:
            yield task
            continue
        index += 1
        yield task if task.index else attrs.evolve(task, index=index)


def _result_of(future: concurrent.futures.Future, task: Task, worker_id: int) -> TaskResult:
    """The executor's result; an executor that raised still yields a row for the task."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        return TaskResult.cancelled(task, "Cancelled before it started", worker_id=worker_id)
    except Exception as exc:  # an executor bug must not lose the task's row
        log.error("executor failed on task %s: %s", escape_line(task.source), escape_line(str(exc)))
        return TaskResult(
            task=task, status=TaskStatus.ERROR, worker_id=worker_id, error_message=f"executor error: {exc}"
        )
