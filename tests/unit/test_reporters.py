"""The built-in reporters, driven through their hooks with real files.

Each reporter module registers one reporter object per run (``parallelr_configure``); the tests
drive those objects directly, and two of them side by side for two runs of one process.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import shlex
import sys
import types
from pathlib import Path
from typing import Any, List, Optional

import attrs
import pytest

from parallelr.config import LoggingSection, Settings
from parallelr.errors import WriteError
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.pluginmanager import create_plugin_manager
from parallelr.plugins.reporters import console, csv_summary, main_log, output_log
from parallelr.report import ReportFile, escape_line, iso_seconds

REPORTER_MODULES = {"console": console, "main_log": main_log, "csv_summary": csv_summary,
                    "output_log": output_log}


def _run(
    tmp_path: Path, settings: Optional[Settings] = None, task_count: Optional[int] = None, pid: int = 4242
) -> RunInfo:
    logs = tmp_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(
        home=str(tmp_path),
        log_dir=str(logs),
        workspace=str(tmp_path / "ws"),
        pid_file=str(tmp_path / "p"),
        main_log=str(logs / "m.log"),
        summary_csv=str(logs / "s.csv"),
        output_log=str(logs / "o.txt"),
    )
    return RunInfo(
        app_name="parallelr",
        pid=pid,
        started_at=0.0,
        timestamp="t",
        settings=settings or Settings(),
        paths=paths,
        command_template="bash @TASK@",
        executor="thread",
        workers=2,
        task_count=task_count,
    )


def _result(status: TaskStatus, **fields: Any) -> TaskResult:
    task = Task(argv=["bash", "/t/a b.sh"], source="/t/a b.sh", env={"HOST": "h1"}, index=1)
    values = dict(
        task=task,
        status=status,
        worker_id=2,
        pid=99,
        exit_code=0,
        start_time=1_700_000_000.0,
        end_time=1_700_000_002.5,
        duration=2.5,
        memory_mb=12.345,
        cpu_percent=7.25,
        stdout="out\n",
        stderr="err\n",
    )
    values.update(fields)
    return TaskResult(**values)


def test_csv_has_the_spec_columns_and_one_flushed_row_per_task(tmp_path: Path) -> None:
    run = _run(tmp_path)
    reporter = csv_summary.CsvSummaryReporter()
    reporter.parallelr_run_start(run)
    reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))
    # flushed: readable before the run ends
    rows = list(csv.reader(open(run.paths.summary_csv, encoding="utf-8"), delimiter=";"))
    assert rows[0] == [
        "start_time",
        "end_time",
        "status",
        "process_id",
        "worker_id",
        "task_file",
        "command",
        "exit_code",
        "duration_seconds",
        "memory_mb",
        "cpu_percent",
        "error_message",
    ]
    assert rows[1][2:] == [
        "SUCCESS",
        "99",
        "2",
        "/t/a b.sh",
        "HOST=h1 bash '/t/a b.sh'",
        "0",
        "2.50",
        "12.35",
        "7.2",
        "",
    ]
    never = TaskResult.cancelled(Task(argv=["x"], source="/t/c", index=2), "Not started:\nrun interrupted")
    reporter.parallelr_task_finish(run, never)
    reporter.parallelr_run_finish(run, RunSummary(2, 1, 0, 0, 0, 1))
    rows = list(csv.reader(open(run.paths.summary_csv, encoding="utf-8"), delimiter=";"))
    assert rows[2] == [
        "",
        "",
        "CANCELLED",
        "",
        "",
        "/t/c",
        "x",
        "",
        "",
        "",
        "",
        "Not started: run interrupted",
    ]


def test_output_log_block_and_every_attempt(tmp_path: Path) -> None:
    run = _run(tmp_path)
    reporter = output_log.OutputLogReporter()
    reporter.parallelr_run_start(run)
    failed = _result(TaskStatus.FAILED, exit_code=1, error_message="Exit code 1")
    reporter.parallelr_task_retry(run, failed, 0.5)
    reporter.parallelr_task_finish(
        run,
        _result(
            TaskStatus.SUCCESS,
            task=failed.task.__class__(argv=["bash", "/t/a b.sh"], source="/t/a b.sh", index=1, attempt=2),
        ),
    )
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))
    text = Path(run.paths.output_log).read_text(encoding="utf-8")
    assert text.count("Task: /t/a b.sh\n") == 2
    assert "Status: FAILED\nExit Code: 1\n" in text
    assert "Attempt: 1\nRetry: attempt 2 in 0.5s\nError: Exit code 1\n" in text
    assert "Status: SUCCESS\n" in text and "Attempt: 2\n" in text
    assert "STDOUT:\nout\n\nSTDERR:\nerr\n" in text
    assert text.startswith("=" * 80 + "\n")


@pytest.fixture
def _clean_main_log() -> Any:
    yield
    for handler in list(logging.getLogger("parallelr").handlers):
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            logging.getLogger("parallelr").removeHandler(handler)


def test_main_log_rotates_at_its_size_and_keeps_backups(tmp_path: Path, _clean_main_log) -> None:
    settings = Settings(logging=LoggingSection(max_log_size_mb=1, backup_count=2))
    run = _run(tmp_path, settings)
    reporter = main_log.MainLogReporter()
    reporter.parallelr_run_start(run)
    handler = reporter._handler
    handler.maxBytes = 2000  # 1 MB is the smallest setting; shrink it to keep the test fast
    for index in range(60):
        reporter.parallelr_task_start(run, Task(argv=["x"], source=f"/t/{index:03d}" + "y" * 40, index=1), 1)
    reporter.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
    logs = Path(run.paths.log_dir)
    names = sorted(path.name for path in logs.iterdir() if path.name.startswith("m.log"))
    assert names == ["m.log", "m.log.1", "m.log.2"]
    for name in ("m.log.1", "m.log.2"):
        assert 1500 < (logs / name).stat().st_size <= 2000
    first = (logs / "m.log.2").read_text(encoding="utf-8").splitlines()[0]
    assert " - P4242 - INFO - [MainThread] - " in first


# -- one reporter object per run -----------------------------------------------------------------


def _configure_reporters(manager: Any) -> None:
    """Call only the reporter modules' parallelr_configure (the others want a full Config)."""
    others = [plugin for name, plugin in manager.list_name_plugin()
              if plugin is not None and name not in REPORTER_MODULES]
    manager.subset_hook_caller("parallelr_configure", remove_plugins=others)(
        config=types.SimpleNamespace(pluginmanager=manager)
    )


def test_configure_registers_a_fresh_reporter_object_per_run() -> None:
    manager = create_plugin_manager(load_entry_points=False)
    _configure_reporters(manager)
    first = {name: manager.get_plugin(name) for name in
             ("console-reporter", "main-log-reporter", "csv-summary-reporter", "output-log-reporter")}
    assert isinstance(first["console-reporter"], console.ConsoleReporter)
    assert isinstance(first["main-log-reporter"], main_log.MainLogReporter)
    assert isinstance(first["csv-summary-reporter"], csv_summary.CsvSummaryReporter)
    assert isinstance(first["output-log-reporter"], output_log.OutputLogReporter)

    _configure_reporters(manager)  # the next run on the same manager replaces them

    for name, old in first.items():
        new = manager.get_plugin(name)
        assert new is not old and type(new) is type(old)
        assert not manager.is_registered(old)
    # The modules themselves keep no per-run hooks: only their parallelr_configure.
    for module in REPORTER_MODULES.values():
        assert [hook for hook in vars(module) if hook.startswith("parallelr_")] == ["parallelr_configure"]


def test_a_blocked_reporter_module_registers_no_object() -> None:
    manager = create_plugin_manager(["no:console", "no:csv_summary"], load_entry_points=False)
    _configure_reporters(manager)
    assert manager.get_plugin("console-reporter") is None
    assert manager.get_plugin("csv-summary-reporter") is None
    assert isinstance(manager.get_plugin("main-log-reporter"), main_log.MainLogReporter)


def test_reporters_are_called_after_the_other_plugins_in_their_old_order() -> None:
    """The objects run after plugins without an order (the journal's), even ones registered later,
    and among themselves in the order the modules did (output log, CSV, main log, console), so a
    plugin's last messages in a hook still reach the main log before it closes."""

    class Other:
        @hookimpl
        def parallelr_task_finish(self) -> None: ...

        @hookimpl
        def parallelr_run_finish(self) -> None: ...

    manager = create_plugin_manager(["no:journal"], load_entry_points=False)
    _configure_reporters(manager)
    manager.register(Other(), name="other")
    for hook in (manager.hook.parallelr_task_finish, manager.hook.parallelr_run_finish):
        called = [impl.plugin_name for impl in reversed(hook.get_hookimpls())]
        assert called == ["other", "output-log-reporter", "csv-summary-reporter", "main-log-reporter",
                          "console-reporter"]


def _rows(path: str) -> List[List[str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=";"))


def test_two_runs_interleaved_write_separate_files_and_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture, _clean_main_log: Any
) -> None:
    # No time stamps in the formats, so the lines can be compared exactly.
    settings = Settings(logging=LoggingSection(
        console_format="%(levelname)s - %(message)s", file_format="%(name)s - %(levelname)s - %(message)s",
    ))
    run_a = _run(tmp_path / "a", settings, task_count=2)
    run_b = _run(tmp_path / "b", settings, task_count=1, pid=4343)
    kinds = (console.ConsoleReporter, main_log.MainLogReporter, csv_summary.CsvSummaryReporter)
    for_a = [kind() for kind in kinds]
    for_b = [kind() for kind in kinds]

    def each(reporters: List[Any], hook: str, *args: Any) -> None:
        for reporter in reporters:
            if hasattr(reporter, hook):
                getattr(reporter, hook)(*args)

    task_a1 = Task(argv=["bash", "/a/1.sh"], source="/a/1.sh", index=1)
    task_a2 = Task(argv=["bash", "/a/2.sh"], source="/a/2.sh", index=2)
    task_b1 = Task(argv=["sh", "/b/1.sh"], source="/b/1.sh", arguments=("h1",), index=1)
    a1 = _result(TaskStatus.SUCCESS, task=task_a1, worker_id=1, pid=11, duration=1.0)
    a2 = _result(TaskStatus.FAILED, task=task_a2, worker_id=2, pid=12, exit_code=3,
                 error_message="Exit code 3")
    b1 = _result(TaskStatus.TIMEOUT, task=task_b1, worker_id=1, pid=21, exit_code=None,
                 error_message="Timeout after 5s")

    each(for_a, "parallelr_run_start", run_a)
    each(for_b, "parallelr_run_start", run_b)
    each(for_a, "parallelr_task_start", run_a, task_a1, 1)
    each(for_a, "parallelr_task_start", run_a, task_a2, 2)
    each(for_b, "parallelr_task_start", run_b, task_b1, 1)
    each(for_a, "parallelr_task_finish", run_a, a1)
    each(for_b, "parallelr_task_finish", run_b, b1)
    each(for_a, "parallelr_task_finish", run_a, a2)
    each(for_a, "parallelr_run_finish", run_a, RunSummary(2, 1, 1, 0, 0, 0))
    each(for_b, "parallelr_run_finish", run_b, RunSummary(1, 0, 1, 1, 0, 0))

    start, end = iso_seconds(1_700_000_000.0), iso_seconds(1_700_000_002.5)  # local time, as written
    assert _rows(run_a.paths.summary_csv) == [
        list(csv_summary.COLUMNS),
        [start, end, "SUCCESS", "11", "1", "/a/1.sh", "bash /a/1.sh", "0", "1.00", "12.35", "7.2", ""],
        [start, end, "FAILED", "12", "2", "/a/2.sh", "bash /a/2.sh", "3", "2.50", "12.35", "7.2",
         "Exit code 3"],
    ]
    assert _rows(run_b.paths.summary_csv) == [
        list(csv_summary.COLUMNS),
        [start, end, "TIMEOUT", "21", "1", "/b/1.sh", "sh /b/1.sh", "", "2.50", "12.35", "7.2",
         "Timeout after 5s"],
    ]

    def log_lines(run: RunInfo) -> List[str]:
        text = Path(run.paths.main_log).read_text(encoding="utf-8")
        return text.split("\n- Working Dir")[0].splitlines()  # up to the paths of the summary

    assert log_lines(run_a)[:5] == [
        "P4242 - INFO - Starting parallel execution: 2 tasks, 2 workers, executor thread, command"
        " bash @TASK@",
        "P4242 - INFO - Worker 1: Starting task /a/1.sh",
        "P4242 - INFO - Worker 2: Starting task /a/2.sh",
        "P4242 - INFO - Task completed: /a/1.sh (1.00s)",
        "P4242 - WARNING - Task FAILED: /a/2.sh: Exit code 3",
    ]
    assert log_lines(run_a)[5:8] == ["P4242 - INFO - Run finished", "Parallel Task Execution Summary",
                                     "==============================="]
    assert "Total Tasks: 2" in log_lines(run_a)
    assert log_lines(run_b)[:4] == [
        "P4343 - INFO - Starting parallel execution: 1 tasks, 2 workers, executor thread, command"
        " bash @TASK@",
        "P4343 - INFO - Worker 1: Starting task /b/1.sh (h1)",
        "P4343 - WARNING - Task TIMEOUT: /b/1.sh (h1): Timeout after 5s",
        "P4343 - INFO - Run finished",
    ]
    assert "Total Tasks: 1" in log_lines(run_b)
    assert not [handler for handler in logging.getLogger("parallelr").handlers
                if isinstance(handler, logging.handlers.RotatingFileHandler)]  # both closed and removed

    out = capsys.readouterr().out
    task_lines = [line for line in out.splitlines() if line.startswith(("INFO - [", "WARNING - ["))]
    assert task_lines == [
        "INFO - [1/2] Worker 1: Starting task /a/1.sh",
        "INFO - [2/2] Worker 2: Starting task /a/2.sh",
        "INFO - [1/1] Worker 1: Starting task /b/1.sh (h1)",
        "INFO - [1/2] Task completed: /a/1.sh (1.00s)",
        "WARNING - [1/1] Task TIMEOUT: /b/1.sh (h1): Timeout after 5s",
        "WARNING - [2/2] Task FAILED: /a/2.sh: Exit code 3",
    ]
    assert out.count("Parallel Task Execution Summary") == 2
    assert out.index("Total Tasks: 2") < out.index("Total Tasks: 1")  # A finished first


def test_console_and_main_log_word_a_failure_without_message_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture, _clean_main_log: Any
) -> None:
    settings = Settings(logging=LoggingSection(
        console_format="%(message)s", file_format="%(message)s",
    ))
    run = _run(tmp_path, settings)
    reporters = [console.ConsoleReporter(), main_log.MainLogReporter()]
    retried = _result(TaskStatus.FAILED, exit_code=1, error_message="Exit code 1")
    again = _result(TaskStatus.ERROR, task=Task(argv=["x"], source="/t/x", index=1, attempt=2),
                    exit_code=None)
    for reporter in reporters:
        reporter.parallelr_run_start(run)
        reporter.parallelr_task_retry(run, retried, 0.5)
        reporter.parallelr_task_start(run, again.task, 1)
        reporter.parallelr_task_finish(run, again)
        reporter.parallelr_run_finish(run, RunSummary(1, 0, 1, 0, 1, 0))
    assert capsys.readouterr().out.splitlines()[:3] == [
        "[1/?] Task FAILED (attempt 1): /t/a b.sh: Exit code 1; retrying in 0.5s",
        "[1/?] Worker 1: Starting task /t/x (attempt 2)",
        "[1/?] Task ERROR: /t/x: no details",
    ]
    assert Path(run.paths.main_log).read_text(encoding="utf-8").splitlines()[1:4] == [
        "Task FAILED (attempt 1): /t/a b.sh: Exit code 1; retrying in 0.5s",
        "Worker 1: Starting task /t/x (attempt 2)",
        "Task ERROR: /t/x: ",
    ]


# -- faults and hostile input ----------------------------------------------------------------------

FULL = "/dev/full"  # every write fails with ENOSPC, as on a full disk
needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="needs /dev/full")


def _run_writing_to(tmp_path: Path, **paths: str) -> RunInfo:
    run = _run(tmp_path)
    return attrs.evolve(run, paths=attrs.evolve(run.paths, **paths))


def test_a_report_file_cuts_a_short_write_back_and_fails_once(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.txt"
    report = ReportFile(str(path), "CSV summary")
    report.write("whole row\n")
    real_write = os.write
    calls: List[int] = []

    def short_then_full(fd: int, data: Any) -> int:  # what a disk that fills mid-write does
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:4]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(WriteError) as raised:
        report.write("half a row\n")
    assert str(raised.value) == f"cannot write the CSV summary {path}: No space left on device"
    assert path.read_text() == "whole row\n"  # the four bytes that made it are gone again
    report.write("later\n")  # nothing written, nothing raised
    assert len(calls) == 2 and report.closed


@needs_dev_full
def test_csv_on_a_full_disk_raises_one_write_error_then_writes_nothing(tmp_path: Path) -> None:
    run = _run_writing_to(tmp_path, summary_csv=FULL)
    reporter = csv_summary.CsvSummaryReporter()
    with pytest.raises(WriteError, match=r"^cannot write the CSV summary /dev/full: No space left on device"):
        reporter.parallelr_run_start(run)
    reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))  # silent: reported once
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))


@needs_dev_full
def test_output_log_on_a_full_disk_raises_one_write_error(tmp_path: Path) -> None:
    run = _run_writing_to(tmp_path, output_log=FULL)
    reporter = output_log.OutputLogReporter()
    reporter.parallelr_run_start(run)  # opening works; the first block does not
    with pytest.raises(WriteError, match=r"^cannot write the output log /dev/full: No space left on device$"):
        reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))
    reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))
    reporter.parallelr_task_retry(run, _result(TaskStatus.FAILED), 1.0)
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))


@needs_dev_full
def test_main_log_on_a_full_disk_raises_once_and_core_messages_stay_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture, _clean_main_log: Any
) -> None:
    run = _run_writing_to(tmp_path, main_log=FULL)
    reporter = main_log.MainLogReporter()
    with pytest.raises(WriteError, match=r"^cannot write the main log /dev/full: No space left on device$"):
        reporter.parallelr_run_start(run)
    logging.getLogger("parallelr").warning("a core message")  # no "--- Logging error ---"
    reporter.parallelr_task_start(run, _result(TaskStatus.SUCCESS).task, 1)
    reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))
    assert "Logging error" not in capsys.readouterr().err
    assert not [handler for handler in logging.getLogger("parallelr").handlers
                if isinstance(handler, logging.handlers.RotatingFileHandler)]


@needs_dev_full
def test_a_full_stdout_stays_silent(tmp_path: Path, monkeypatch) -> None:
    full = open(FULL, "w")
    monkeypatch.setattr(sys, "stdout", full)
    run = _run(tmp_path)
    reporter = console.ConsoleReporter()
    reporter.parallelr_run_start(run)
    reporter.parallelr_task_start(run, _result(TaskStatus.SUCCESS).task, 1)
    reporter.parallelr_task_finish(run, _result(TaskStatus.FAILED, error_message="x" * 10000))
    reporter.parallelr_run_finish(run, RunSummary(1, 0, 1, 0, 0, 0))
    full.close()


def test_escape_line_makes_control_characters_visible_and_keeps_plain_text() -> None:
    for plain in ("plain ascii", "tab\tkept", "é 日本 ü", ""):
        assert escape_line(plain) == plain
    assert escape_line("a\nb\rc") == "a\\nb\\rc"
    assert escape_line("\x1b[31mred\x1b[0m\x07\x00\x7f\x9b") == "\\x1b[31mred\\x1b[0m\\x07\\x00\\x7f\\x9b"
    assert escape_line("x\u2028y\u2029") == "x\\u2028y\\u2029"


def test_csv_fields_with_cr_lf_semicolon_and_quotes_round_trip(tmp_path: Path) -> None:
    run = _run(tmp_path)
    reporter = csv_summary.CsvSummaryReporter()
    reporter.parallelr_run_start(run)
    values = ["a\rb", "c\nd", "e;f", 'g"h', "i\r\nj", "\r"]
    for index, value in enumerate(values, 1):
        task = Task(argv=["echo", value], source=f"/t/{value}", index=index)
        reporter.parallelr_task_finish(run, _result(TaskStatus.SUCCESS, task=task))
    reporter.parallelr_run_finish(run, RunSummary(6, 6, 0, 0, 0, 0))
    raw = Path(run.paths.summary_csv).read_bytes()
    assert raw.startswith(b"start_time;") and b"\r\n" not in raw.split(b"\n", 1)[0] + raw[-2:]
    with open(run.paths.summary_csv, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert [row["task_file"] for row in rows] == [f"/t/{value}" for value in values]
    assert [row["command"] for row in rows] == [shlex.join(["echo", value]) for value in values]
    assert rows[0]["status"] == "SUCCESS"


def test_task_lines_and_output_log_headers_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture, _clean_main_log: Any
) -> None:
    settings = Settings(logging=LoggingSection(console_format="%(message)s", file_format="%(message)s"))
    run = _run(tmp_path, settings)
    task = Task(argv=["bash", "/t/x\ny.sh", "\x1b[2J"], source="/t/x\ny.sh", arguments=("\x1b[2J",), index=1)
    failed = _result(TaskStatus.FAILED, task=task, exit_code=1, error_message="bad\nWARNING forged")
    reporters = [console.ConsoleReporter(), main_log.MainLogReporter(), output_log.OutputLogReporter()]
    for reporter in reporters:
        reporter.parallelr_run_start(run)
        if hasattr(reporter, "parallelr_task_start"):
            reporter.parallelr_task_start(run, task, 1)
        reporter.parallelr_task_finish(run, failed)
        reporter.parallelr_run_finish(run, RunSummary(1, 0, 1, 0, 0, 0))
    label = "/t/x\\ny.sh (\\x1b[2J)"
    expected = [f"Worker 1: Starting task {label}", f"Task FAILED: {label}: bad\\nWARNING forged"]
    assert capsys.readouterr().out.splitlines()[:2] == [f"[1/?] {line}" for line in expected]
    assert Path(run.paths.main_log).read_text(encoding="utf-8").splitlines()[1:3] == expected
    text = Path(run.paths.output_log).read_text(encoding="utf-8")
    assert "Task: /t/x\\ny.sh\nArguments: \\x1b[2J\nWorker: 2\n" in text
    assert "Command: bash '/t/x\\ny.sh' '\\x1b[2J'\n" in text
    assert "Error: bad\\nWARNING forged\n" in text


def test_output_that_looks_like_block_structure_is_marked() -> None:
    separator = "=" * 80
    forged = f"ok\n{separator}\nTask: /fake\nSTDOUT:\nSTDERR:\n STDERR:\n==\nx\r{separator}\x1b[1m\n"
    assert output_log.output_text(forged).split("\n") == [
        "ok", "\\" + separator, "Task: /fake", "\\STDOUT:", "\\STDERR:", " STDERR:", "\\==",
        f"x\\r{separator}\\x1b[1m",
    ]
    plain = "line one\n\tindented = 1\nlast\n"
    assert output_log.output_text(plain) == plain.rstrip("\n")  # ordinary output is unchanged


def test_never_started_tasks_get_rows_one_line_and_no_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture, _clean_main_log: Any
) -> None:
    settings = Settings(logging=LoggingSection(console_format="%(message)s", file_format="%(message)s"))
    run = _run(tmp_path, settings, task_count=4)
    reporters = [output_log.OutputLogReporter(), csv_summary.CsvSummaryReporter(), main_log.MainLogReporter(),
                 console.ConsoleReporter()]
    started = _result(TaskStatus.CANCELLED, exit_code=None, error_message="Cancelled by shutdown")
    never = [TaskResult.cancelled(Task(argv=["x"], source=f"/t/{n}", index=n), f"Not started: why {n}")
             for n in (2, 3, 4)]
    for reporter in reporters:
        reporter.parallelr_run_start(run)
        for result in [started, *never]:
            reporter.parallelr_task_finish(run, result)
        reporter.parallelr_run_finish(run, RunSummary(4, 0, 0, 0, 0, 4))
    assert len(_rows(run.paths.summary_csv)) == 1 + 4
    line = "3 task(s) not started: Not started: why 2"
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["[1/4] Task CANCELLED: /t/a b.sh: Cancelled by shutdown", line]
    log = Path(run.paths.main_log).read_text(encoding="utf-8").splitlines()
    assert log[1:4] == ["Task CANCELLED: /t/a b.sh: Cancelled by shutdown", line, "Run finished"]
    blocks = Path(run.paths.output_log).read_text(encoding="utf-8")
    assert blocks.count("\nTask: ") == 1 and "Task: /t/a b.sh\n" in blocks
