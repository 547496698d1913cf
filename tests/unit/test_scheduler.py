"""The scheduler with an in-memory executor: slots, stop limits, stop requests, one row per task."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from parallelr.errors import WriteError
from parallelr.model import RunInfo, RunPaths, Task, TaskResult, TaskStatus
from parallelr.scheduler import (
    NOTHING_YET,
    RetryPolicy,
    RunControl,
    RunOutcome,
    RunTally,
    Scheduler,
    StopLimits,
)


class FakeExecutor:
    """Completes each task at once with the status its argv names (argv[0] = status)."""

    def __init__(self, hold: Optional[threading.Event] = None) -> None:
        self.submitted: List[Tuple[int, int]] = []
        self.hold = hold
        self.running: Dict[int, concurrent.futures.Future] = {}
        self.shutdowns: List[bool] = []

    def submit(self, task: Task, worker_id: int) -> concurrent.futures.Future:
        self.submitted.append((task.index, worker_id))
        future: concurrent.futures.Future = concurrent.futures.Future()
        status = TaskStatus(task.argv[0])
        if status is TaskStatus.CANCELLED:  # "CANCELLED" here means: keep running until shutdown
            self.running[task.index] = future
            return future
        future.set_result(
            TaskResult(
                task=task, status=status, worker_id=worker_id, start_time=1.0, end_time=2.0, duration=1.0,
                exit_code=0 if status is TaskStatus.SUCCESS else 1,
            )
        )
        return future

    def shutdown(self, cancel: bool) -> None:
        self.shutdowns.append(cancel)
        for index, future in list(self.running.items()):
            if not future.done():
                task = Task(argv=["CANCELLED"], source=f"t{index}", index=index)
                future.set_result(TaskResult.cancelled(task, "Cancelled by shutdown", worker_id=1))


class Recorder:
    def __init__(self) -> None:
        self.started: List[Tuple[int, int]] = []
        self.finished: List[TaskResult] = []

    def parallelr_task_start(self, run, task, worker_id) -> None:
        self.started.append((task.index, worker_id))

    def parallelr_task_finish(self, run, result) -> None:
        self.finished.append(result)


def _run_info() -> RunInfo:
    paths = RunPaths(home="/h", log_dir="/h/l", workspace="/h/w", pid_file="/h/p", main_log="/h/l/m.log",
                     summary_csv="/h/l/s.csv", output_log=None)
    return RunInfo(app_name="parallelr", pid=1, started_at=0.0, timestamp="t", settings=None, paths=paths,
                   command_template="x", executor="fake", workers=2)


def _tasks(*statuses: str) -> List[Task]:
    return [Task(argv=[status], source=f"t{n}") for n, status in enumerate(statuses, start=1)]


def _schedule(tasks, workers=2, limits=None, executor=None, control=None):
    executor = executor or FakeExecutor()
    recorder = Recorder()
    scheduler = Scheduler(_run_info(), executor, recorder, workers=workers,
                          stop_limits=limits or StopLimits(), control=control)
    summary = scheduler.tally.summary(scheduler.run(tasks))
    return summary, recorder, executor


def test_every_task_is_numbered_started_and_finished_once() -> None:
    summary, recorder, _ = _schedule(_tasks("SUCCESS", "SUCCESS", "FAILED", "SUCCESS", "TIMEOUT"))
    assert [index for index, _ in recorder.started] == [1, 2, 3, 4, 5]
    assert sorted(result.task.index for result in recorder.finished) == [1, 2, 3, 4, 5]
    assert (summary.total, summary.succeeded, summary.failed, summary.timed_out) == (5, 3, 2, 1)
    assert summary.exit_code == 1


def test_worker_ids_are_slots_within_the_pool() -> None:
    _, recorder, _ = _schedule(_tasks(*["SUCCESS"] * 7), workers=3)
    assert {worker for _, worker in recorder.started} <= {1, 2, 3}
    assert recorder.started[0] == (1, 1)


def test_all_success_exits_zero() -> None:
    summary, _, _ = _schedule(_tasks("SUCCESS", "SUCCESS"))
    assert summary.exit_code == 0
    assert summary.success_rate == 100.0


def test_consecutive_failures_stop_the_run_and_cancel_the_rest() -> None:
    limits = StopLimits(enabled=True, max_consecutive_failures=2, max_failure_rate=1.0)
    summary, recorder, executor = _schedule(_tasks("FAILED", "FAILED", "SUCCESS", "SUCCESS"), workers=1,
                                            limits=limits)
    statuses = [result.status for result in sorted(recorder.finished, key=lambda r: r.task.index)]
    assert statuses == [TaskStatus.FAILED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    assert len(executor.submitted) == 2
    assert summary.stop_reason == "2 consecutive failures (max_consecutive_failures)"
    assert summary.exit_code == 1
    cancelled = recorder.finished[-1]
    assert cancelled.worker_id == 0
    assert cancelled.error_message.startswith("Not started: stop limits reached")


def test_failure_rate_is_checked_only_after_the_minimum() -> None:
    limits = StopLimits(enabled=True, max_consecutive_failures=100, max_failure_rate=0.5,
                        min_tasks_for_rate_check=4)
    summary, _, _ = _schedule(_tasks("FAILED", "SUCCESS", "FAILED", "FAILED", "SUCCESS", "SUCCESS"),
                                     workers=1, limits=limits)
    assert summary.stop_reason == "failure rate 75% after 4 tasks exceeds 50% (max_failure_rate)"
    assert summary.cancelled == 2


def test_stop_limits_disabled_run_everything() -> None:
    summary, _, executor = _schedule(_tasks(*["FAILED"] * 12), workers=1)
    assert len(executor.submitted) == 12
    assert summary.stop_reason is None


def test_stop_request_cancels_running_and_unstarted_tasks() -> None:
    stop = RunControl()
    executor = FakeExecutor()
    tasks = _tasks("CANCELLED", "CANCELLED", "SUCCESS", "SUCCESS")
    timer = threading.Timer(0.2, stop.stop, args=("SIGTERM",), kwargs={"exit_code": 143})
    timer.start()
    summary, recorder, _ = _schedule(tasks, workers=2, executor=executor, control=stop)
    timer.join()
    assert executor.shutdowns == [True]
    assert summary.total == 4
    assert summary.cancelled == 4
    assert summary.exit_code == 143
    assert summary.interrupted_by == "SIGTERM"
    unstarted = [r for r in recorder.finished if r.worker_id == 0]
    assert [r.error_message for r in unstarted] == ["Not started: run interrupted by SIGTERM"] * 2


def test_source_is_pulled_lazily() -> None:
    pulled: List[int] = []
    pulled_at_submit: List[int] = []

    def source():
        for n in range(1, 6):
            pulled.append(n)
            yield Task(argv=["SUCCESS"], source=f"t{n}")

    class Watching(FakeExecutor):
        def submit(self, task, worker_id):
            pulled_at_submit.append(len(pulled))
            return super().submit(task, worker_id)

    summary, _, _ = _schedule(source(), workers=1, executor=Watching())
    assert pulled_at_submit == [1, 2, 3, 4, 5]
    assert summary.total == 5


def test_executor_exception_still_yields_a_row() -> None:
    class Broken(FakeExecutor):
        def submit(self, task, worker_id):
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_exception(RuntimeError("boom"))
            return future

    summary, recorder, _ = _schedule(_tasks("SUCCESS"), executor=Broken())
    assert recorder.finished[0].status is TaskStatus.ERROR
    assert recorder.finished[0].error_message == "executor error: boom"
    assert summary.exit_code == 1


@pytest.mark.parametrize("durations, expected", [((1.0, 3.0), (2.0, 3.0, 1.0))])
def test_tally_figures(durations, expected) -> None:
    builder = RunTally()
    for duration in durations:
        builder.add(TaskResult(task=Task(argv=["x"], source="s"), status=TaskStatus.SUCCESS, start_time=0.0,
                               duration=duration, memory_mb=duration * 10))
    builder.add(TaskResult.cancelled(Task(argv=["x"], source="s"), "never ran"))
    summary = builder.summary(RunOutcome())
    assert summary.exit_code == 1  # a task did not succeed
    assert (summary.avg_duration, summary.max_duration, summary.min_duration) == expected
    assert summary.peak_memory_mb == 30.0
    assert summary.total == 3
    assert summary.cancelled == 1


class FlakyExecutor(FakeExecutor):
    """argv ["FLAKY", "N"]: the first N attempts fail, later ones succeed."""

    def submit(self, task, worker_id):
        self.submitted.append((task.index, worker_id))
        future: concurrent.futures.Future = concurrent.futures.Future()
        ok = task.attempt > int(task.argv[1])
        future.set_result(TaskResult(
            task=task, status=TaskStatus.SUCCESS if ok else TaskStatus.FAILED, worker_id=worker_id,
            start_time=time.time(), end_time=time.time(), exit_code=0 if ok else 1,
            error_message="" if ok else "Exit code 1",
        ))
        return future


class RetryRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.retries: List[Tuple[int, int, float]] = []
        self.retry_times: List[float] = []

    def parallelr_task_retry(self, run, result, delay) -> None:
        self.retries.append((result.task.index, result.attempt, delay))
        self.retry_times.append(time.monotonic())


def _run_flaky(tasks, policy, workers=2, control=None):
    recorder = RetryRecorder()
    executor = FlakyExecutor()
    scheduler = Scheduler(_run_info(), executor, recorder, workers=workers, retry=policy, control=control)
    return scheduler.tally.summary(scheduler.run(tasks)), recorder, executor


def test_retries_until_success_with_exponential_backoff() -> None:
    policy = RetryPolicy(retries=3, delay=0.1, backoff=2.0)
    started = time.monotonic()
    summary, recorder, executor = _run_flaky([Task(argv=["FLAKY", "2"], source="f")], policy)
    elapsed = time.monotonic() - started
    assert recorder.retries == [(1, 1, 0.1), (1, 2, 0.2)]
    assert [result.attempt for result in recorder.finished] == [3]
    assert recorder.finished[0].status is TaskStatus.SUCCESS
    assert len(executor.submitted) == 3
    assert elapsed >= 0.3  # both backoff delays were waited for (a lower bound only)
    assert summary.exit_code == 0


def test_last_attempt_failure_is_final_and_counted_once() -> None:
    summary, recorder, executor = _run_flaky(
        [Task(argv=["FLAKY", "9"], source="f")], RetryPolicy(retries=2, delay=0.0)
    )
    assert len(executor.submitted) == 3
    assert [(r.status, r.attempt) for r in recorder.finished] == [(TaskStatus.FAILED, 3)]
    assert (summary.total, summary.failed) == (1, 1)


def test_waiting_retry_does_not_hold_a_slot() -> None:
    # one worker: while task 1 waits 0.3 s for its retry, tasks 2 and 3 use the slot
    tasks = [Task(argv=["FLAKY", "1"], source="a"), Task(argv=["FLAKY", "0"], source="b"),
             Task(argv=["FLAKY", "0"], source="c")]
    _, _, executor = _run_flaky(tasks, RetryPolicy(retries=1, delay=0.3), workers=1)
    assert [index for index, _ in executor.submitted] == [1, 2, 3, 1]


def test_delay_is_capped() -> None:
    assert RetryPolicy(retries=9, delay=1.0, backoff=10.0, max_delay=30.0).delay_after(4) == 30.0
    assert RetryPolicy(delay=0.5, backoff=2.0).delay_after(1) == 0.5
    assert RetryPolicy(delay=0.5, backoff=2.0).delay_after(3) == 2.0


def test_stop_cancels_a_waiting_retry_with_a_row() -> None:
    stop = RunControl()
    timer = threading.Timer(0.2, stop.stop, args=("SIGINT",), kwargs={"exit_code": 130})
    timer.start()
    summary, recorder, _ = _run_flaky([Task(argv=["FLAKY", "9"], source="f")],
                                      RetryPolicy(retries=1, delay=30.0), control=stop)
    timer.join()
    assert [(r.status, r.attempt) for r in recorder.finished] == [(TaskStatus.CANCELLED, 2)]
    assert recorder.finished[0].error_message == (
        "Retry not started: run interrupted by SIGINT (attempt 1: Exit code 1)"
    )
    assert summary.exit_code == 130


def test_previous_counts_seed_the_summary() -> None:
    recorder = Recorder()
    scheduler = Scheduler(_run_info(), FakeExecutor(), recorder, workers=1,
                          tally=RunTally({TaskStatus.SUCCESS: 4}))
    summary = scheduler.tally.summary(scheduler.run([Task(argv=["SUCCESS"], source="x", index=5)]))
    assert (summary.total, summary.succeeded) == (5, 5)
    assert recorder.finished[0].task.index == 5


# -- a source that may say "nothing yet" (a queue) and tasks handed back -----------------------
class TrickleSource:
    """Yields one task, then NOTHING_YET until another is fed, then the end."""

    def __init__(self) -> None:
        self.fed: queue.SimpleQueue = queue.SimpleQueue()
        self.scheduler: Optional[Scheduler] = None

    def __iter__(self):
        while True:
            try:
                item = self.fed.get_nowait()
            except queue.Empty:
                yield NOTHING_YET
                continue
            if item is None:
                return
            yield item


def test_a_source_that_says_nothing_yet_is_waited_for_and_woken() -> None:
    source = TrickleSource()
    source.fed.put(Task(argv=["SUCCESS"], source="q1"))
    recorder = Recorder()
    scheduler = Scheduler(_run_info(), FakeExecutor(), recorder, workers=2)

    def feed_later() -> None:
        source.fed.put(Task(argv=["SUCCESS"], source="q2"))
        source.fed.put(None)
        scheduler.wake()

    timer = threading.Timer(0.2, feed_later)
    timer.start()
    summary = scheduler.tally.summary(scheduler.run(source))
    timer.join()
    assert [result.task.source for result in recorder.finished] == ["q1", "q2"]
    assert [result.task.index for result in recorder.finished] == [1, 2]
    assert (summary.total, summary.succeeded, summary.exit_code) == (2, 2, 0)


def test_tasks_never_started_are_handed_back_instead_of_cancelled() -> None:
    handed: List[Task] = []
    control = RunControl()
    recorder = RetryRecorder()
    scheduler = Scheduler(_run_info(), FlakyExecutor(), recorder, workers=1, control=control,
                          retry=RetryPolicy(retries=1, delay=30.0), hand_back=handed.append)
    timer = threading.Timer(0.2, control.stop, args=("worker stopping",))
    timer.start()
    outcome = scheduler.run([Task(argv=["FLAKY", "9"], source="f")])
    timer.join()
    assert outcome.interrupted_by == "worker stopping"
    assert [(task.source, task.attempt) for task in handed] == [("f", 2)]  # its retry, given back
    assert recorder.finished == []  # no CANCELLED row for it


class TokenExecutor(FakeExecutor):
    """Accepts the per-task cancel token of the Executor protocol; CANCELLED-tasks run until
    their token is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: Dict[int, Any] = {}

    def submit(self, task: Task, worker_id: int, cancel: Any = None) -> concurrent.futures.Future:
        future = super().submit(task, worker_id)
        self.tokens[task.index] = cancel
        if not future.done():
            def watch() -> None:
                while not cancel.cancelled:
                    time.sleep(0.01)
                future.set_result(TaskResult.cancelled(task, cancel.reason, worker_id=worker_id))
            threading.Thread(target=watch, daemon=True).start()
        return future


def test_run_control_cancels_one_running_task_and_the_others_go_on() -> None:
    control = RunControl()
    recorder = Recorder()
    executor = TokenExecutor()
    scheduler = Scheduler(_run_info(), executor, recorder, workers=3, control=control)
    tasks = _tasks("SUCCESS", "CANCELLED", "SUCCESS")

    def cancel_when_running() -> None:
        while 2 not in control.running():
            time.sleep(0.01)
        assert control.cancel_task(2, "one job cancelled")

    helper = threading.Thread(target=cancel_when_running)
    helper.start()
    summary = scheduler.tally.summary(scheduler.run(tasks))
    helper.join(timeout=5)
    by_index = {result.task.index: result for result in recorder.finished}
    assert by_index[2].status is TaskStatus.CANCELLED
    assert by_index[2].error_message == "one job cancelled"
    assert [by_index[i].status for i in (1, 3)] == [TaskStatus.SUCCESS, TaskStatus.SUCCESS]
    assert (summary.cancelled, summary.succeeded, summary.interrupted_by) == (1, 2, None)
    assert control.running() == [] and control.cancel_task(2) is False


class FullDisk(Recorder):
    """A reporter whose file fills up when the first task ends."""

    def parallelr_task_finish(self, run, result) -> None:
        super().parallelr_task_finish(run, result)
        if len(self.finished) == 1:
            raise WriteError("cannot write the CSV summary /h/l/s.csv: No space left on device")


def test_a_record_that_cannot_be_written_stops_starting_tasks_and_ends_the_run_failed() -> None:
    recorder = FullDisk()
    scheduler = Scheduler(_run_info(), FakeExecutor(), recorder, workers=1)
    outcome = scheduler.run(_tasks("SUCCESS", "SUCCESS", "SUCCESS"))
    assert str(outcome.write_error) == "cannot write the CSV summary /h/l/s.csv: No space left on device"
    assert recorder.started == [(1, 1)]  # nothing started after the failure
    assert [(r.task.index, r.status) for r in recorder.finished] == [
        (1, TaskStatus.SUCCESS), (2, TaskStatus.CANCELLED), (3, TaskStatus.CANCELLED)]
    assert recorder.finished[1].error_message == (
        "Not started: a record could not be written "
        "(cannot write the CSV summary /h/l/s.csv: No space left on device)"
    )
    assert scheduler.tally.summary(outcome).exit_code == 1
