"""The progress reporter and the console's status-line API, driven through their hooks.

The reporter draws on a stream it is given (a StringIO stands in for the terminal here; the real
pseudo-terminal is in tests/integration/test_progress_cli.py) and reads a clock it is given, so
that its rate limit can be checked without sleeping.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from parallelr import console
from parallelr.config import LoggingSection, Settings
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters import progress
from parallelr.plugins.reporters.console import ConsoleReporter
from parallelr.plugins.reporters.progress import (
    Progress,
    ProgressReporter,
    bar_text,
    clock,
    log_line,
    rate_text,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(io.StringIO):
    """A stream that also notes, in a shared list of events, each write (and what it wrote)."""

    def __init__(self, events: List[str]) -> None:
        super().__init__()
        self.events = events

    def write(self, text: str) -> int:
        self.events.append(f"write:{text}")
        return super().write(text)


class RecordingStatusLine:
    """A status line whose erase and draw texts are <E> and <D>."""

    def __init__(self, events: List[str]) -> None:
        self.events = events

    def erase_text(self) -> str:
        self.events.append("erase")
        return "<E>"

    def draw_text(self) -> str:
        self.events.append("draw")
        return "<D>"


@pytest.fixture(autouse=True)
def no_status_line() -> Iterator[None]:
    """No test leaves a status line installed for the next one."""
    console.set_status_line(None)
    yield
    console.set_status_line(None)


def _run(tmp_path: Path, task_count: Optional[int] = 3, options: Optional[Dict[str, Any]] = None,
         interval: float = 30.0, resumed: bool = False) -> RunInfo:
    logs = tmp_path / "logs"
    paths = RunPaths(home=str(tmp_path), log_dir=str(logs), workspace=str(tmp_path / "ws"),
                     pid_file=str(tmp_path / "p"), main_log=str(logs / "m.log"),
                     summary_csv=str(logs / "s.csv"), output_log=None)
    return RunInfo(app_name="parallelr", pid=4242, started_at=0.0, timestamp="t",
                   settings=Settings(logging=LoggingSection(progress_interval=interval)), paths=paths,
                   command_template="bash @TASK@", executor="thread", workers=2, task_count=task_count,
                   options=options if options is not None else {"progress": True}, resumed=resumed)


def _task(index: int) -> Task:
    return Task(argv=["bash", f"/t/{index}.sh"], source=f"/t/{index}.sh", index=index)


def _result(index: int, status: TaskStatus) -> TaskResult:
    return TaskResult(task=_task(index), status=status, worker_id=1, start_time=1.0, end_time=2.0,
                      duration=1.0)


def _summary() -> RunSummary:
    return RunSummary(3, 1, 1, 0, 0, 1)


def _bars(text: str) -> List[str]:
    """The texts the line was drawn with, in order."""
    return [piece.rstrip() for piece in text.split("\r") if "running" in piece]


# -- what the lines say ---------------------------------------------------------------------------
def test_the_log_line_shows_done_total_percent_running_failed_elapsed_rate_and_eta() -> None:
    assert log_line(Progress(120, 5000, 8, 3, 0, 60.0)) == (
        "Progress: 120/5000 (2.4%), 8 running, 3 failed, elapsed 0:01:00, 2.0 tasks/s, ETA 0:40:40")
    # before the first task ends there is no rate and no ETA
    assert log_line(Progress(0, 10, 2, 0, 0, 5.0)) == (
        "Progress: 0/10 (0.0%), 2 running, 0 failed, elapsed 0:00:05, ? tasks/s, ETA ?")
    # fewer than one a second: seconds per task; cancelled tasks once there are any
    assert log_line(Progress(2, 10, 1, 0, 4, 25.0)) == (
        "Progress: 2/10 (20.0%), 1 running, 0 failed, 4 cancelled, elapsed 0:00:25, 12.5 s/task, ETA 0:01:40")


def test_an_unknown_total_has_no_percent_and_no_eta() -> None:
    assert log_line(Progress(120, None, 8, 3, 0, 60.0)) == (
        "Progress: 120 done, 8 running, 3 failed, elapsed 0:01:00, 2.0 tasks/s")
    streaming = Progress(7, None, 2, 0, 0, 10.0)
    assert bar_text(streaming, 79) == "7 done | 2 running, 0 failed | 0:00:10, 1.4 s/task"
    assert streaming.percent is None and streaming.eta is None


def test_a_resumed_run_counts_its_earlier_tasks_as_done_but_not_in_the_rate() -> None:
    resumed = Progress(done=60, total=100, running=1, failed=0, cancelled=0, elapsed=5.0, initial=50)
    assert (resumed.rate, resumed.eta, resumed.percent) == (2.0, 20.0, 60.0)
    assert log_line(resumed) == (
        "Progress: 60/100 (60.0%), 1 running, 0 failed, elapsed 0:00:05, 2.0 tasks/s, ETA 0:00:20")


def test_times_and_rates_are_written_plainly() -> None:
    assert [clock(0), clock(59.99), clock(3725.9), clock(90000), clock(-3)] == [
        "0:00:00", "0:00:59", "1:02:05", "25:00:00", "0:00:00"]
    assert [rate_text(None), rate_text(0.0), rate_text(0.5), rate_text(123.456)] == [
        "? tasks/s", "? tasks/s", "2.0 s/task", "123.5 tasks/s"]


def test_the_bar_fits_the_terminal_and_falls_back_to_ascii() -> None:
    half = Progress(5, 10, 2, 1, 0, 10.0)
    assert bar_text(half, None, ascii=True) == (
        " 5/10  50%|#####     | 2 running, 1 failed | 0:00:10<0:00:10, 2.0 s/task")
    wide = bar_text(half, 79)
    assert len(wide) == 79 and re.fullmatch(
        r" 5/10  50%\|█+▌? +\| 2 running, 1 failed \| 0:00:10<0:00:10, 2\.0 s/task", wide), wide
    assert len(bar_text(half, 40)) <= 40  # a narrow terminal: cut, never wrapped
    assert bar_text(Progress(10, 10, 0, 0, 0, 3.0), 79).startswith("10/10 100%|████")
    # more ended than the total said (a source that grew): never above 100%
    assert bar_text(Progress(12, 10, 0, 0, 0, 3.0), None).startswith("12/10 100%|")


def test_the_terminal_line_erases_with_ansi_or_spaces_and_pads_a_shorter_text() -> None:
    for ansi, erase in ((True, "\r\x1b[K"), (False, "\r      \r")):
        stream = io.StringIO()
        line = progress.TerminalLine(stream, ansi=ansi)
        assert line.erase_text() == ""  # nothing shown yet: nothing to erase
        line.show("abcdef")
        line.show("ab")  # shorter than what is on screen: spaces over the rest
        assert stream.getvalue() == "\rabcdef\rab    "
        line.show("abcdef")
        assert (line.erase_text(), line.erase_text(), line.draw_text()) == (erase, "", "\rabcdef")


# -- the reporter's counts, drawing and rate limit -------------------------------------------------
def test_the_hooks_count_and_the_final_line_shows_100_percent(tmp_path: Path) -> None:
    stream, now = io.StringIO(), FakeClock()
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path)
    reporter.parallelr_run_start(run)
    assert console.status_line() is reporter.line
    assert _bars(stream.getvalue()) == ["0/3   0%|          | 0 running, 0 failed | 0:00:00<?, ? tasks/s"]
    reporter.parallelr_task_start()
    reporter.parallelr_task_start()
    reporter.parallelr_task_retry()  # attempt 1 of a task failed: it waits for attempt 2
    reporter.parallelr_task_start()
    reporter.parallelr_task_finish(_result(1, TaskStatus.SUCCESS))
    reporter.parallelr_task_finish(_result(2, TaskStatus.TIMEOUT))
    reporter.parallelr_task_finish(TaskResult.cancelled(_task(3), "Not started: run interrupted"))
    assert (reporter.done, reporter.running, reporter.failed, reporter.cancelled) == (3, 0, 1, 1)
    now.now += 2.0
    reporter.parallelr_run_finish(run, _summary())
    assert stream.getvalue().endswith(
        "\r3/3 100%|##########| 0 running, 1 failed, 1 cancelled | 0:00:02<0:00:00, 1.5 tasks/s\n")
    assert console.status_line() is None and reporter.ticker is None


def test_the_line_is_rendered_at_most_every_quarter_second(tmp_path: Path) -> None:
    stream, now = io.StringIO(), FakeClock()
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path, task_count=100)
    reporter.parallelr_run_start(run)
    for index in range(1, 51):  # 50 tasks end within the same instant: no render
        reporter.parallelr_task_start()
        reporter.parallelr_task_finish(_result(index, TaskStatus.SUCCESS))
    assert len(_bars(stream.getvalue())) == 1
    now.now += progress.RENDER_INTERVAL
    reporter.parallelr_task_start()  # due now: this hook renders
    bars = _bars(stream.getvalue())
    assert len(bars) == 2 and bars[-1].startswith(" 50/100  50%|") and " 1 running, " in bars[-1]
    reporter.parallelr_task_finish(_result(51, TaskStatus.FAILED))
    assert len(_bars(stream.getvalue())) == 2
    reporter.parallelr_run_finish(run, _summary())


def test_the_timer_moves_the_times_while_no_task_ends_and_stops_at_the_end(
    tmp_path: Path, wait_until: Callable[..., Any]
) -> None:
    stream, now = io.StringIO(), FakeClock()
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path, task_count=4)
    reporter.parallelr_run_start(run)
    reporter.parallelr_task_start()
    ticker = reporter.ticker
    assert ticker is not None and ticker.alive
    now.now += 61.0  # no hook runs: only the timer can draw the new elapsed time
    wait_until(lambda: " 0:01:01<" in stream.getvalue(), 10, "the timer's render")
    reporter.parallelr_run_finish(run, _summary())
    assert not ticker.alive
    assert "parallelr-progress-line" not in [thread.name for thread in threading.enumerate()]


def test_an_abandoned_run_erases_its_line_and_stops_its_timer(tmp_path: Path) -> None:
    stream = io.StringIO()
    reporter = ProgressReporter(stream, FakeClock())
    reporter.parallelr_run_start(_run(tmp_path))
    ticker = reporter.ticker
    assert ticker is not None
    drawn = _bars(stream.getvalue())[-1]
    reporter.abandon()  # what atexit calls when the run-finish hook never came
    assert console.status_line() is None and not ticker.alive
    assert stream.getvalue().endswith("\r" + " " * len(drawn) + "\r")


def test_a_line_dropped_by_the_core_stops_its_timer(tmp_path: Path, wait_until: Callable[..., Any]) -> None:
    reporter = ProgressReporter(io.StringIO(), FakeClock())
    reporter.parallelr_run_start(_run(tmp_path))
    ticker = reporter.ticker
    assert ticker is not None
    console.drop_status_line(io.StringIO())  # an error path of the core erased it
    wait_until(lambda: not ticker.alive, 10, "the timer to notice")


def test_a_stream_that_breaks_drops_the_line_without_an_error(tmp_path: Path) -> None:
    class Broken(io.StringIO):
        fail = False

        def write(self, text: str) -> int:
            if self.fail:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    stream, now = Broken(), FakeClock()
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path)
    reporter.parallelr_run_start(run)
    stream.fail = True
    now.now += 1.0
    reporter.parallelr_task_start()  # renders, the write fails: the line goes, the run goes on
    assert console.status_line() is None and reporter.line is not None and reporter.line.broken
    reporter.parallelr_task_finish(_result(1, TaskStatus.SUCCESS))
    reporter.parallelr_run_finish(run, _summary())
    assert reporter.done == 1


@pytest.mark.parametrize("options", [
    {"progress": False}, {"progress": None}, {"progress": True, "daemon": True},
])
def test_no_line_when_off_not_a_terminal_or_a_daemon(tmp_path: Path, options: Dict[str, Any]) -> None:
    stream = io.StringIO()  # not a terminal: None (auto) is off
    reporter = ProgressReporter(stream, FakeClock())
    run = _run(tmp_path, options=options)
    reporter.parallelr_run_start(run)
    reporter.parallelr_task_start()
    reporter.parallelr_run_finish(run, _summary())
    assert stream.getvalue() == "" and reporter.line is None


def test_a_second_run_of_the_process_leaves_the_terminal_to_the_first(tmp_path: Path) -> None:
    first, second = ProgressReporter(io.StringIO(), FakeClock()), ProgressReporter(io.StringIO(), FakeClock())
    run = _run(tmp_path)
    first.parallelr_run_start(run)
    second.parallelr_run_start(run)
    assert console.status_line() is first.line and second.line is None
    second.parallelr_run_finish(run, _summary())
    first.parallelr_run_finish(run, _summary())


def test_a_resumed_run_starts_from_its_earlier_tasks(tmp_path: Path) -> None:
    class Rerun(list):
        count = 2  # what parallelr.api.Tasks tells: 2 of the run's 10 tasks run again

    stream, now = io.StringIO(), FakeClock()
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path, task_count=10, resumed=True)
    reporter.parallelr_run_planned(run, Rerun())
    reporter.parallelr_run_start(run)
    assert _bars(stream.getvalue())[0].startswith(" 8/10  80%|")
    reporter.parallelr_task_start()
    reporter.parallelr_task_finish(_result(9, TaskStatus.SUCCESS))
    reporter.parallelr_task_finish(TaskResult.cancelled(_task(10), "Not started: run interrupted"))
    now.now += 1.0
    reporter.parallelr_run_finish(run, _summary())
    assert _bars(stream.getvalue())[-1] == (
        "10/10 100%|##########| 0 running, 0 failed, 1 cancelled | 0:00:01<0:00:00, 2.0 tasks/s")


# -- the main log's interval line -------------------------------------------------------------------
class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> List[str]:
        return [record.getMessage() for record in list(self.records)]


@pytest.fixture
def parallelr_records(monkeypatch: pytest.MonkeyPatch) -> Iterator[Records]:
    """The ``parallelr`` logger at INFO with the console handler on a StringIO (``.console``)
    and a handler that stands for the main log's."""
    shown = io.StringIO()
    monkeypatch.setattr(sys, "stdout", shown)
    root = logging.getLogger("parallelr")
    level, propagate = root.level, root.propagate
    console_handler = console.setup_console_logging("%(levelname)s - %(message)s")
    records = Records()
    records.console = shown  # type: ignore[attr-defined]
    root.addHandler(records)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.removeHandler(console_handler)
        root.setLevel(level)
        root.propagate = propagate


def test_files_only_records_reach_the_log_files_but_not_the_console(parallelr_records: Records) -> None:
    console.files_only_logger().info("for the files %d", 1)
    logging.getLogger("parallelr.scheduler").info("for both")
    assert parallelr_records.messages == ["for the files 1", "for both"]
    assert parallelr_records.console.getvalue() == "INFO - for both\n"  # type: ignore[attr-defined]


def test_without_a_terminal_the_main_log_gets_a_line_every_interval(
    tmp_path: Path, parallelr_records: Records, wait_until: Callable[..., Any]
) -> None:
    stream = io.StringIO()
    reporter = ProgressReporter(stream, FakeClock())
    run = _run(tmp_path, task_count=2, options={"progress": None}, interval=0.05)
    reporter.parallelr_run_start(run)
    reporter.parallelr_task_start()
    expected = "Progress: 0/2 (0.0%), 1 running, 0 failed, elapsed 0:00:00, ? tasks/s, ETA ?"
    wait_until(lambda: expected in parallelr_records.messages, 10, "a progress line")
    ticker = reporter.ticker
    reporter.parallelr_run_finish(run, _summary())
    assert ticker is not None and not ticker.alive
    lines = parallelr_records.messages
    assert {record.name for record in parallelr_records.records} == {console.FILES_ONLY_LOGGER}
    assert len(lines) >= 1 and set(lines) == {expected}
    assert stream.getvalue() == "" and parallelr_records.console.getvalue() == ""  # type: ignore[attr-defined]


def test_an_interval_of_0_writes_no_lines(tmp_path: Path) -> None:
    reporter = ProgressReporter(io.StringIO(), FakeClock())
    run = _run(tmp_path, options={"progress": False}, interval=0.0)
    reporter.parallelr_run_start(run)
    assert reporter.ticker is None
    reporter.parallelr_run_finish(run, _summary())


# -- the console's status-line API ------------------------------------------------------------------
def _console_handler(stream: Any) -> console.ConsoleHandler:
    handler = console.ConsoleHandler("%(message)s")
    handler.setStream(stream)
    return handler


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("parallelr.console", logging.INFO, __file__, 0, message, (), None)


def test_a_console_line_erases_the_status_line_first_and_draws_it_after_in_one_write() -> None:
    events: List[str] = []
    stream = Recorder(events)
    handler = _console_handler(stream)
    handler.handle(_record("before"))
    console.set_status_line(RecordingStatusLine(events))
    handler.handle(_record("during"))
    console.set_status_line(None)
    handler.handle(_record("after"))
    assert events == ["write:before\n", "erase", "draw", "write:<E>during\n<D>", "write:after\n"]
    assert stream.getvalue() == "before\n<E>during\n<D>after\n"


def test_console_write_erases_before_the_block_and_draws_after_it_once() -> None:
    events: List[str] = []
    stream = Recorder(events)
    console.set_status_line(RecordingStatusLine([]))
    with console.console_write(stream):
        stream.write("outer ")
        with console.console_write(stream):  # a signal handler writing while a line is half written
            stream.write("inner\n")
        _console_handler(stream).handle(_record("a console line inside"))  # no erase or draw of its own
    assert stream.getvalue() == "<E>outer inner\na console line inside\n<D>"


def test_a_status_line_uninstalled_inside_a_write_is_not_drawn_again() -> None:
    stream = io.StringIO()
    console.set_status_line(RecordingStatusLine([]))
    with console.console_write(stream):
        console.set_status_line(None)
    assert stream.getvalue() == "<E>"


def test_drop_status_line_erases_and_uninstalls() -> None:
    stream = io.StringIO()
    console.set_status_line(RecordingStatusLine([]))
    console.drop_status_line(stream)
    console.drop_status_line(stream)  # nothing installed: nothing to do
    assert stream.getvalue() == "<E>" and console.status_line() is None


def test_the_summary_block_is_written_below_the_status_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: List[str] = []
    monkeypatch.setattr(sys, "stdout", Recorder(events))
    reporter = ConsoleReporter()
    run = _run(tmp_path)
    reporter.parallelr_run_start(run)
    console.set_status_line(RecordingStatusLine([]))
    reporter.parallelr_run_finish(run, _summary())
    assert events[0] == "write:<E>" and events[-1] == "write:<D>"
    (summary,) = events[1:-1]
    assert summary.startswith("write:\nParallel Task Execution Summary\n")


def test_the_progress_line_and_console_lines_interleave_whole(tmp_path: Path) -> None:
    """The real TerminalLine with the real ConsoleHandler: the bytes a terminal gets."""
    stream, now = io.StringIO(), FakeClock()
    handler = _console_handler(stream)
    reporter = ProgressReporter(stream, now)
    run = _run(tmp_path, task_count=2)
    reporter.parallelr_run_start(run)
    handler.handle(_record("[1/2] Worker 1: Starting task /t/1.sh"))
    reporter.parallelr_task_start()
    first = "0/2   0%|          | 0 running, 0 failed | 0:00:00<?, ? tasks/s"
    erase = "\r" + " " * len(first) + "\r"
    assert stream.getvalue() == f"\r{first}{erase}[1/2] Worker 1: Starting task /t/1.sh\n\r{first}"
    reporter.parallelr_run_finish(run, _summary())
