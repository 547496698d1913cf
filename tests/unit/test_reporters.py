"""The built-in reporters, driven through their hooks with real files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from parallelr.config import LoggingSection, Settings
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters import csv_summary, main_log, output_log


def _run(tmp_path: Path, settings: Settings = None) -> RunInfo:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
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
        pid=4242,
        started_at=0.0,
        timestamp="t",
        settings=settings or Settings(),
        paths=paths,
        command_template="bash @TASK@",
        executor="thread",
        workers=2,
    )


def _result(status: TaskStatus, **fields) -> TaskResult:
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
    csv_summary.parallelr_run_start(run)
    csv_summary.parallelr_task_finish(run, _result(TaskStatus.SUCCESS))
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
    csv_summary.parallelr_task_finish(run, never)
    csv_summary.parallelr_run_finish(run, RunSummary(2, 1, 0, 0, 0, 1))
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
    output_log.parallelr_run_start(run)
    failed = _result(TaskStatus.FAILED, exit_code=1, error_message="Exit code 1")
    output_log.parallelr_task_retry(run, failed, 0.5)
    output_log.parallelr_task_finish(
        run,
        _result(
            TaskStatus.SUCCESS,
            task=failed.task.__class__(argv=["bash", "/t/a b.sh"], source="/t/a b.sh", index=1, attempt=2),
        ),
    )
    output_log.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))
    text = Path(run.paths.output_log).read_text(encoding="utf-8")
    assert text.count("Task: /t/a b.sh\n") == 2
    assert "Status: FAILED\nExit Code: 1\n" in text
    assert "Attempt: 1\nRetry: attempt 2 in 0.5s\nError: Exit code 1\n" in text
    assert "Status: SUCCESS\n" in text and "Attempt: 2\n" in text
    assert "STDOUT:\nout\n\nSTDERR:\nerr\n" in text
    assert text.startswith("=" * 80 + "\n")


@pytest.fixture
def _clean_main_log():
    yield
    for handler in list(logging.getLogger("parallelr").handlers):
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            logging.getLogger("parallelr").removeHandler(handler)


def test_main_log_rotates_at_its_size_and_keeps_backups(tmp_path: Path, _clean_main_log) -> None:
    settings = Settings(logging=LoggingSection(max_log_size_mb=1, backup_count=2))
    run = _run(tmp_path, settings)
    main_log.parallelr_run_start(run)
    handler = main_log._handler
    handler.maxBytes = 2000  # 1 MB is the smallest setting; shrink it to keep the test fast
    for index in range(60):
        main_log.parallelr_task_start(run, Task(argv=["x"], source=f"/t/{index:03d}" + "y" * 40, index=1), 1)
    main_log.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
    logs = Path(run.paths.log_dir)
    names = sorted(path.name for path in logs.iterdir() if path.name.startswith("m.log"))
    assert names == ["m.log", "m.log.1", "m.log.2"]
    for name in ("m.log.1", "m.log.2"):
        assert 1500 < (logs / name).stat().st_size <= 2000
    first = (logs / "m.log.2").read_text(encoding="utf-8").splitlines()[0]
    assert " - P4242 - INFO - [MainThread] - " in first
