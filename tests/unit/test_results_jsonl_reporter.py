"""The JSONL results reporter driven through its hooks with real files: the session line, one task
line per finished task in the spec's field order and types, what a never-started task writes,
text that is not UTF-8 or splits lines, a full disk, and no file when there is nothing to write."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
import pytest

from parallelr.config import LimitsSection, Settings
from parallelr.errors import WriteError
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters import results_jsonl
from parallelr.plugins.reporters.results_jsonl import (
    ResultsJsonlReporter,
    TaskLines,
    one_line,
    session_record,
)
from parallelr.plugins.reporters.results_reading import TASK_FIELDS

STARTED = datetime.datetime(2025, 11, 4, 14, 30, 15, 123456).timestamp()


def _run(tmp_path: Path, results: Optional[str] = "default", options: Optional[Dict[str, Any]] = None,
         **fields: Any) -> RunInfo:
    logs = tmp_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(
        home=str(tmp_path), log_dir=str(logs), workspace=str(tmp_path / "ws"), pid_file=str(tmp_path / "p"),
        main_log=str(logs / "m.log"), summary_csv=str(logs / "s.csv"), output_log=None,
        results_jsonl=str(logs / "r.jsonl") if results == "default" else results,
    )
    values: Dict[str, Any] = dict(
        app_name="parallelr", pid=4242, started_at=STARTED, timestamp="04Nov25_143015",
        settings=Settings(limits=LimitsSection(max_workers=3, timeout_seconds=60, task_start_delay=0.5)),
        paths=paths, command_template="bash @TASK@", executor="thread", workers=3,
        options={"TasksDir": ["tasks/", "more tasks"], "arguments_file": None, "env_var": [],
                 "file_extension": "sh", "separator": None, **(options or {})},
    )
    values.update(fields)
    return RunInfo(**values)


def _lines(run: RunInfo) -> List[Dict[str, Any]]:
    assert run.paths.results_jsonl is not None
    data = Path(run.paths.results_jsonl).read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert data.endswith("\n")
    return [json.loads(line) for line in data.split("\n")[:-1]]


def _finished(status: TaskStatus = TaskStatus.SUCCESS, **fields: Any) -> TaskResult:
    task = Task(argv=["bash", "/t/a b.sh"], source="/t/a b.sh", task_file="/t/a b.sh", index=1)
    values: Dict[str, Any] = dict(task=task, status=status, worker_id=2, pid=99, exit_code=0,
                                  start_time=STARTED + 1, end_time=STARTED + 3.5, duration=2.499,
                                  memory_mb=12.345, cpu_percent=7.255, stdout="out\n")
    values.update(fields)
    return TaskResult(**values)


def test_session_line_then_one_flushed_line_per_task(tmp_path: Path) -> None:
    run = _run(tmp_path)
    reporter = ResultsJsonlReporter()
    reporter.parallelr_run_start(run)
    (session,) = _lines(run)
    assert list(session) == ["type", "session_id", "start_time", "hostname", "user", "command_template",
                             "task_directories", "arguments_file", "env_var", "file_extension", "separator",
                             "config"]
    assert session == {
        "type": "session", "session_id": "4242_04Nov25_143015", "start_time": "2025-11-04T14:30:15.123456",
        "hostname": socket.gethostname(), "user": session["user"], "command_template": "bash @TASK@",
        "task_directories": ["tasks/", "more tasks"], "arguments_file": None, "env_var": None,
        "file_extension": "sh", "separator": None,
        "config": {"max_workers": 3, "timeout_seconds": 60, "task_start_delay": 0.5,
                   "max_output_capture": 1000, "workspace_isolation": False, "stop_limits_enabled": False},
    }
    assert isinstance(session["user"], str) and session["user"]

    reporter.parallelr_task_finish(run, _finished())
    lines = _lines(run)  # readable before the run ends: each line is written whole at once
    assert len(lines) == 2
    task = lines[1]
    assert tuple(task) == TASK_FIELDS
    assert task == {
        "type": "task", "session_id": "4242_04Nov25_143015", "start_time": "2025-11-04T14:30:16.123456",
        "end_time": "2025-11-04T14:30:18.623456", "status": "SUCCESS", "process_id": 4242, "worker_id": 2,
        "task_file": "/t/a b.sh", "command_executed": "bash '/t/a b.sh'", "env_vars": {}, "arguments": [],
        "exit_code": 0, "duration_seconds": 2.5, "memory_mb": 12.35, "cpu_percent": 7.25,
        "error_message": None,
    }
    failed = _finished(TaskStatus.FAILED, exit_code=3, error_message="Exit code 3", duration=1)
    reporter.parallelr_task_finish(run, failed)
    reporter.parallelr_run_finish(run, RunSummary(2, 1, 1, 0, 0, 0))
    lines = _lines(run)
    assert len(lines) == 3
    last = lines[2]
    assert (last["status"], last["exit_code"], last["error_message"], last["duration_seconds"]) == (
        "FAILED", 3, "Exit code 3", 1)
    reporter.parallelr_task_finish(run, _finished())  # after the run: the file is closed, nothing added
    assert len(_lines(run)) == 3


def test_a_never_started_task_has_null_times_worker_0_and_its_reason(tmp_path: Path) -> None:
    run = _run(tmp_path, options={"TasksDir": [], "arguments_file": "hosts.txt", "env_var": ["HOST", "PORT"],
                                  "separator": "comma", "file_extension": None})
    reporter = ResultsJsonlReporter()
    reporter.parallelr_run_start(run)
    task = Task(argv=["ping", "-c", "1", "web 1"], source="/in/hosts.txt:7",
                env={"HOST": "web 1", "PORT": "80"}, arguments=["web 1", "80"], line_number=7, index=7)
    reporter.parallelr_task_finish(run, TaskResult.cancelled(task, "Run interrupted by SIGINT"))
    session, line = _lines(run)
    assert (session["task_directories"], session["arguments_file"], session["env_var"], session["separator"],
            session["file_extension"]) == ([], "hosts.txt", "HOST,PORT", "comma", None)
    assert line == {
        "type": "task", "session_id": "4242_04Nov25_143015", "start_time": None, "end_time": None,
        "status": "CANCELLED", "process_id": 4242, "worker_id": 0, "task_file": None,
        "command_executed": "HOST='web 1' PORT=80 ping -c 1 'web 1'",
        "env_vars": {"HOST": "web 1", "PORT": "80"},
        "arguments": ["web 1", "80"], "exit_code": None, "duration_seconds": 0.0, "memory_mb": 0.0,
        "cpu_percent": 0.0, "error_message": "Run interrupted by SIGINT",
    }
    assert shlex.split(line["command_executed"]) == ["HOST=web 1", "PORT=80", "ping", "-c", "1", "web 1"]


def test_an_argument_line_with_a_template_names_the_template(tmp_path: Path) -> None:
    run = _run(tmp_path, options={"TasksDir": ["/t/template.sh"], "arguments_file": "hosts.txt"})
    lines = TaskLines(run)
    task = Task(argv=["bash", "/t/template.sh", "h1"], source="/t/template.sh", arguments=["h1"],
                line_number=1)
    assert json.loads(lines(_finished(task=task)))["task_file"] == "/t/template.sh"
    only = TaskLines(_run(tmp_path, options={"TasksDir": [], "arguments_file": "hosts.txt"}))
    bare = Task(argv=["echo", "h1"], source="/in/hosts.txt:1", arguments=["h1"], line_number=1)
    assert json.loads(only(_finished(task=bare)))["task_file"] is None


def test_a_shell_task_shows_its_script_and_microseconds_are_always_there(tmp_path: Path) -> None:
    lines = TaskLines(_run(tmp_path))
    task = Task(argv=["/bin/sh", "-c", "echo a | wc -l > 'out file'"], source="/t/x", shell=True,
                env={"A": "1"})
    line = json.loads(lines(_finished(task=task, start_time=STARTED - 0.123456, end_time=None)))
    assert line["command_executed"] == "A=1 echo a | wc -l > 'out file'"  # as the CSV's command column
    assert line["start_time"] == "2025-11-04T14:30:15.000000"
    assert line["end_time"] is None


def test_numbers_json_cannot_hold_are_null(tmp_path: Path) -> None:
    line = json.loads(TaskLines(_run(tmp_path))(_finished(cpu_percent=float("nan"), memory_mb=float("inf"))))
    assert (line["cpu_percent"], line["memory_mb"], line["duration_seconds"]) == (None, None, 2.5)


ODD = ("nul\x00 esc\x1b[31m bell\x07 del\x7f nel\x85 ls\u2028 ps\u2029 cr\r lf\n tab\t quote\" back\\ "
       "\U0001F600")


def test_controls_line_separators_and_undecodable_bytes_keep_one_line_per_object(tmp_path: Path) -> None:
    run = _run(tmp_path)
    reporter = ResultsJsonlReporter()
    reporter.parallelr_run_start(run)
    name = os.fsdecode(b"/t/caf\xe9 " + ODD.encode("utf-8"))  # a file name in Latin-1: \udce9
    task = Task(argv=["bash", name], source=name, task_file=name, env={"V": ODD}, arguments=[ODD])
    reporter.parallelr_task_finish(run, _finished(task=task, error_message=ODD))
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))
    raw = Path(run.paths.results_jsonl or "").read_bytes()
    text = raw.decode("utf-8")  # valid UTF-8, whatever the task held
    assert len(text.splitlines()) == 2  # str.splitlines breaks at \x85, U+2028, ...: none is left raw
    for raw_break in ("\x85", "\u2028", "\u2029", "\x00", "\x1b", "\r"):
        assert raw_break not in text
    line = _lines(run)[1]
    assert line["task_file"] == name and line["task_file"].encode("utf-8", "surrogateescape") == (
        b"/t/caf\xe9 " + ODD.encode("utf-8"))
    assert (line["env_vars"], line["arguments"], line["error_message"]) == ({"V": ODD}, [ODD], ODD)
    assert shlex.split(line["command_executed"]) == [f"V={ODD}", "bash", name]


def test_one_line_escapes_only_the_unicode_line_separators() -> None:
    assert one_line('{"a": "x\u2028y\x85z\u2029"}') == '{"a": "x\\u2028y\\u0085z\\u2029"}'
    assert one_line('{"a": "plain é"}') == '{"a": "plain é"}'


def test_no_file_without_a_path_or_for_a_dry_run(tmp_path: Path) -> None:
    for run in (_run(tmp_path, results=None), _run(tmp_path, dry_run=True)):
        reporter = ResultsJsonlReporter()
        reporter.parallelr_run_start(run)
        reporter.parallelr_task_finish(run, _finished())
        reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))
    assert list((tmp_path / "logs").iterdir()) == []


def test_session_record_of_a_run_with_isolation_and_stop_limits(tmp_path: Path) -> None:
    settings = Settings()
    settings = attrs.evolve(settings, execution=attrs.evolve(settings.execution, workspace_isolation=True),
                            limits=attrs.evolve(settings.limits, stop_limits_enabled=True))
    record = session_record(_run(tmp_path, settings=settings, options={"env_var": ["A", "B", "C"]}))
    assert record["config"] == {"max_workers": 20, "timeout_seconds": 600, "task_start_delay": 0.0,
                                "max_output_capture": 1000, "workspace_isolation": True,
                                "stop_limits_enabled": True}
    assert record["env_var"] == "A,B,C"


FULL = "/dev/full"  # every write fails with ENOSPC, as on a full disk


@pytest.mark.skipif(not os.path.exists(FULL), reason="needs /dev/full")
def test_a_full_disk_is_one_write_error_and_then_silence(tmp_path: Path) -> None:
    run = _run(tmp_path, results=FULL)
    reporter = ResultsJsonlReporter()
    message = r"^cannot write the JSONL results /dev/full: No space left on device$"
    with pytest.raises(WriteError, match=message):
        reporter.parallelr_run_start(run)
    reporter.parallelr_task_finish(run, _finished())  # reported once: nothing more is raised
    reporter.parallelr_run_finish(run, RunSummary(1, 1, 0, 0, 0, 0))


def test_the_module_registers_a_reporter_per_run_and_the_results_command() -> None:
    from parallelr.pluginmanager import create_plugin_manager

    manager = create_plugin_manager()
    commands: Dict[str, Any] = {}
    for provided in manager.hook.parallelr_commands():
        commands.update(provided or {})
    assert commands["results"].program == "psr"
    config = type("Config", (), {"pluginmanager": manager})()
    results_jsonl.parallelr_configure(config)
    first = manager.get_plugin(results_jsonl.REPORTER_NAME)
    results_jsonl.parallelr_configure(config)
    second = manager.get_plugin(results_jsonl.REPORTER_NAME)
    assert isinstance(first, ResultsJsonlReporter) and isinstance(second, ResultsJsonlReporter)
    assert first is not second


def test_a_line_is_exactly_what_json_dumps_writes_for_its_object(tmp_path: Path) -> None:
    lines = TaskLines(_run(tmp_path))
    task = Task(argv=["ssh", "hôst 1", "echo \"q\" \\ $x"], source="/in/h.txt:1", line_number=1,
                env={"HOST": "hôst 1", "N": "\t"}, arguments=["hôst 1", "echo \"q\" \\ $x"])
    for result in (_finished(task=task, error_message="Exit code 1\nand more"),
                   TaskResult.cancelled(task, "Stop limit reached")):
        line = lines(result)
        assert line == json.dumps(json.loads(line), ensure_ascii=False) + "\n"
