"""The JSONL results file through the real CLI (results-jsonl.md): its path in the summary, the
session line and then exactly one line per task with the spec's fields and types, in file mode and
arguments mode (-A with -E), every status, written as each task ends, and no file with
--no-results-jsonl or for a dry run; ptasker's own path; hostile names, arguments and output."""

from __future__ import annotations

import datetime
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from conftest import CliResult

from parallelr.plugins.reporters.results_reading import TASK_FIELDS

SESSION_FIELDS = ("type", "session_id", "start_time", "hostname", "user", "command_template",
                  "task_directories", "arguments_file", "env_var", "file_extension", "separator", "config")
CONFIG_FIELDS = ("max_workers", "timeout_seconds", "task_start_delay", "max_output_capture",
                 "workspace_isolation", "stop_limits_enabled")
ISO_MICROSECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
STATUSES = ("SUCCESS", "FAILED", "TIMEOUT", "ERROR", "CANCELLED")


def read_results(path: Path) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The session line and the task lines; the file must be strict UTF-8 and one object a line."""
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.split("\n")[:-1]]
    assert len(text.splitlines()) == len(lines)  # no raw line separator anywhere
    session, *tasks = lines
    return session, tasks


def results_path(result: Any, summary: Any, run_files: Any, app: str = "parallelr", **where: Any) -> Path:
    files = run_files(app, **where)
    path = Path(summary(result.stdout, "- Results:"))
    assert path == files.main_log.parent / f"{app}_{files.pid}_{files.timestamp}_results.jsonl"
    assert path.is_file()
    return path


def is_time(value: Any) -> bool:
    return isinstance(value, str) and ISO_MICROSECONDS.fullmatch(value) is not None


def check_session(session: Dict[str, Any], pid: int, timestamp: str) -> None:
    assert tuple(session) == SESSION_FIELDS
    assert session["type"] == "session"
    assert session["session_id"] == f"{pid}_{timestamp}"
    assert is_time(session["start_time"])
    assert isinstance(session["hostname"], str) and isinstance(session["user"], str)
    assert isinstance(session["command_template"], str)
    assert isinstance(session["task_directories"], list)
    assert all(isinstance(path, str) for path in session["task_directories"])
    for field in ("arguments_file", "env_var", "file_extension", "separator"):
        assert session[field] is None or isinstance(session[field], str), field
    config = session["config"]
    assert tuple(config) == CONFIG_FIELDS
    assert [type(config[name]) for name in CONFIG_FIELDS] == [int, int, float, int, bool, bool]


def check_task(task: Dict[str, Any], session_id: str, pid: int) -> None:
    """The fields of a task line, in order, and the type of each (results-jsonl.md)."""
    assert tuple(task) == TASK_FIELDS
    assert (task["type"], task["session_id"], task["process_id"]) == ("task", session_id, pid)
    assert task["status"] in STATUSES
    assert type(task["worker_id"]) is int
    for field in ("start_time", "end_time"):
        assert task[field] is None or is_time(task[field]), field
    task_file = task["task_file"]
    assert task_file is None or (isinstance(task_file, str) and task_file.startswith("/"))
    assert isinstance(task["command_executed"], str)
    env = task["env_vars"]
    assert isinstance(env, dict) and all(isinstance(value, str) for value in env.values())
    assert isinstance(task["arguments"], list) and all(isinstance(value, str) for value in task["arguments"])
    assert task["exit_code"] is None or type(task["exit_code"]) is int
    for field in ("duration_seconds", "memory_mb", "cpu_percent"):
        value = task[field]
        assert type(value) is float and value == round(value, 2), (field, value)
    assert task["error_message"] is None or isinstance(task["error_message"], str)


def test_file_mode_every_field_every_status_and_the_summary_line(
    tmp_path: Path, run_cli: Any, run_files: Any, summary: Any
) -> None:
    tasks = tmp_path / "task dir"
    tasks.mkdir()
    (tasks / "ok.sh").write_text("echo fine\n")
    (tasks / "fail.sh").write_text("echo oops >&2; exit 3\n")
    (tasks / "slow.sh").write_text("sleep 5\n")
    odd = "ünï cödé $(touch x); & | 'q' \"d\".sh"
    (tasks / odd).write_text("printf '\\000\\033[31mred\\377\\n'; head -c 300000 /dev/zero\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-t", "1", "-m", "4"])
    assert result.returncode == 1, result.output

    path = results_path(result, summary, run_files)
    files = run_files()
    session, lines = read_results(path)
    check_session(session, files.pid, files.timestamp)
    assert (session["command_template"], session["task_directories"], session["arguments_file"],
            session["env_var"], session["file_extension"], session["separator"]) == (
        "bash @TASK@", [str(tasks)], None, None, None, None)
    assert session["config"] == {"max_workers": 4, "timeout_seconds": 1, "task_start_delay": 0.0,
                                 "max_output_capture": 1000, "workspace_isolation": False,
                                 "stop_limits_enabled": False}
    assert len(lines) == 4
    for line in lines:
        check_task(line, session["session_id"], files.pid)
    by_file = {line["task_file"]: line for line in lines}
    assert {name: by_file[str(tasks / name)]["status"] for name in ("ok.sh", "fail.sh", "slow.sh", odd)} == {
        "ok.sh": "SUCCESS", "fail.sh": "FAILED", "slow.sh": "TIMEOUT", odd: "SUCCESS"}
    assert [by_file[str(tasks / name)]["exit_code"] for name in ("ok.sh", "fail.sh", odd)] == [0, 3, 0]
    assert by_file[str(tasks / "ok.sh")]["error_message"] is None
    assert by_file[str(tasks / "fail.sh")]["error_message"] == "Exit code 3"
    for line in lines:
        assert line["command_executed"] == shlex.join(["bash", line["task_file"]])
        assert (line["env_vars"], line["arguments"]) == ({}, [])
        assert line["worker_id"] in (1, 2, 3, 4)
        start = datetime.datetime.fromisoformat(line["start_time"])
        assert datetime.datetime.fromisoformat(line["end_time"]) >= start
    slow = by_file[str(tasks / "slow.sh")]
    assert slow["duration_seconds"] >= 0.9 and slow["error_message"] == "Timeout after 1s"
    # the same tasks, statuses, commands and messages as the CSV summary
    rows = {row["task_file"]: row for row in files.rows}
    assert sorted(rows) == sorted(by_file)
    for name, line in by_file.items():
        row = rows[name]
        assert (row["status"], row["command"], row["error_message"]) == (
            line["status"], line["command_executed"], line["error_message"] or "")
    assert not (tmp_path / "x").exists()  # the name's $(...) stayed text


def test_arguments_mode_with_env_vars(tmp_path: Path, run_cli: Any, run_files: Any, summary: Any) -> None:
    hosts = tmp_path / "host list.txt"
    hosts.write_text("web 1,80\nwebü2,8080\n$(touch x);&|,9\n", encoding="utf-8")
    result = run_cli(["-A", str(hosts), "-S", "comma", "-E", "HOST,PORT", "-C", "echo @ARG_1@ @ARG_2@",
                      "-r", "-m", "2"])
    assert result.returncode == 0, result.output
    files = run_files()
    session, lines = read_results(results_path(result, summary, run_files))
    check_session(session, files.pid, files.timestamp)
    assert (session["command_template"], session["task_directories"], session["arguments_file"],
            session["env_var"], session["separator"]) == (
        "echo @ARG_1@ @ARG_2@", [], str(hosts), "HOST,PORT", "comma")
    assert len(lines) == 3
    for line in lines:
        check_task(line, session["session_id"], files.pid)
    by_host = {line["env_vars"]["HOST"]: line for line in lines}
    assert sorted(by_host) == sorted(["web 1", "webü2", "$(touch x);&|"])
    first = by_host["web 1"]
    assert (first["status"], first["task_file"], first["env_vars"], first["arguments"],
            first["exit_code"]) == ("SUCCESS", None, {"HOST": "web 1", "PORT": "80"}, ["web 1", "80"], 0)
    assert first["command_executed"] == "HOST='web 1' PORT=80 echo 'web 1' 80"
    metachars = by_host["$(touch x);&|"]
    assert shlex.split(metachars["command_executed"]) == [
        "HOST=$(touch x);&|", "PORT=9", "echo", "$(touch x);&|", "9"]
    assert {row["command"] for row in files.rows} == {line["command_executed"] for line in lines}
    assert not (tmp_path / "x").exists()


def test_an_argument_line_with_a_template_names_the_template(
    tmp_path: Path, run_cli: Any, run_files: Any, summary: Any
) -> None:
    template = tmp_path / "template.sh"
    template.write_text('echo "$1"\n')
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("h1\nh2\n")
    result = run_cli(["-A", str(hosts), "-T", str(template), "-C", "bash @TASK@ @ARG@", "-r", "-m", "2"])
    assert result.returncode == 0, result.output
    session, lines = read_results(results_path(result, summary, run_files))
    assert session["task_directories"] == [str(template)]
    assert sorted((line["task_file"], tuple(line["arguments"])) for line in lines) == [
        (str(template), ("h1",)), (str(template), ("h2",))]


def test_tasks_a_stop_limit_cancels_have_no_times(tmp_path: Path, run_cli: Any, run_files: Any,
                                                 summary: Any) -> None:
    lines_file = tmp_path / "hosts.txt"
    lines_file.write_text("".join(f"host{number} exit1\n" for number in range(1, 8)))
    result = run_cli(["-A", str(lines_file), "-S", "space", "-C", "sh -c 'exit 1' @ARG_1@", "-r", "-m", "1",
                      "--enable-stop-limits"])
    assert result.returncode == 1, result.output
    files = run_files()
    session, lines = read_results(results_path(result, summary, run_files))
    assert session["config"]["stop_limits_enabled"] is True
    assert len(lines) == 7
    for line in lines:
        check_task(line, session["session_id"], files.pid)
    assert [line["status"] for line in lines] == ["FAILED"] * 5 + ["CANCELLED"] * 2
    assert [line["arguments"][0] for line in lines] == [f"host{number}" for number in range(1, 8)]
    for line in lines[5:]:
        assert (line["start_time"], line["end_time"], line["worker_id"], line["exit_code"],
                line["duration_seconds"], line["memory_mb"], line["cpu_percent"]) == (
            None, None, 0, None, 0.0, 0.0, 0.0)
        assert line["error_message"] == files.rows[lines.index(line)]["error_message"] != ""
    assert all(line["exit_code"] == 1 and line["error_message"] == "Exit code 1" for line in lines[:5])


def test_each_task_line_is_in_the_file_as_soon_as_the_task_ends(
    tmp_path: Path, home: Path, janitor: Any, wait_until: Any
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    go = tmp_path / "go"
    (tasks / "a.sh").write_text("echo a\n")
    (tasks / "b.sh").write_text("exit 2\n")
    (tasks / "c.sh").write_text(f"while [ ! -e '{go}' ]; do sleep 0.05; done\n")
    runner = janitor.popen([sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r",
                            "-m", "2"], home, cwd=str(tmp_path), stdout=open(tmp_path / "out", "w"))
    logs = home / "parallelr" / "logs"

    def finished_lines() -> List[Dict[str, Any]]:
        found = list(logs.glob("*_results.jsonl")) if logs.is_dir() else []
        if not found:
            return []
        lines = [json.loads(line) for line in found[0].read_text(encoding="utf-8").splitlines()]
        return lines if len(lines) == 3 else []

    lines = wait_until(finished_lines, 60, "the two quick tasks' lines")
    assert runner.poll() is None  # c.sh still waits: the run is not over
    assert [line["type"] for line in lines] == ["session", "task", "task"]
    assert sorted((Path(line["task_file"]).name, line["status"]) for line in lines[1:]) == [
        ("a.sh", "SUCCESS"), ("b.sh", "FAILED")]
    go.touch()
    assert runner.wait(timeout=60) == 1
    (path,) = logs.glob("*_results.jsonl")
    _, final = read_results(path)
    assert [(Path(line["task_file"]).name, line["status"]) for line in final][2] == ("c.sh", "SUCCESS")


def test_no_results_file_with_the_option_or_for_a_dry_run(tmp_path: Path, run_cli: Any, home: Path,
                                                          tasks: Path) -> None:
    dry = run_cli(["-T", str(tasks), "-C", "bash @TASK@"])
    assert dry.returncode == 0, dry.output
    assert list(home.rglob("*_results.jsonl")) == []
    assert "- Results:" not in dry.stdout

    off = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-results-jsonl"])
    assert off.returncode == 0, off.output
    assert list(home.rglob("*_results.jsonl")) == []
    assert "- Results:" not in off.stdout
    assert len(list((home / "parallelr" / "logs").glob("*_summary.csv"))) == 1


def test_ptasker_writes_its_own_results_file(tmp_path: Path, run_cli: Any, run_files: Any, summary: Any,
                                             home: Path, fake_programs: Any) -> None:
    fake_programs.add("tasker")
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "case_a.txt").write_text("# a case\n")
    result = run_cli(["-T", str(cases), "-r"], prog="ptasker", env=fake_programs.env)
    assert result.returncode == 0, result.output
    path = results_path(result, summary, run_files, app="ptasker")
    assert path.parent == home / "ptasker" / "logs" and path.name.startswith("ptasker_")
    _, lines = read_results(path)
    (line,) = lines
    assert line["status"] == "SUCCESS" and line["task_file"] == str(cases / "case_a.txt")
    assert shlex.split(line["command_executed"])[:2] == ["tasker", str(cases / "case_a.txt")]
    assert line["command_executed"] == run_files("ptasker").rows[0]["command"]


def test_undecodable_arguments_and_line_separators_keep_the_file_valid(
    tmp_path: Path, home_env: Dict[str, str], run_files: Any, summary: Any
) -> None:
    arguments = tmp_path / "args.txt"
    arguments.write_bytes(b"caf\xe9\n" + "one\u2028two\x85three\n".encode("utf-8") + b"plain\n")
    # run directly: the console echoes the Latin-1 byte, which run_cli's strict decoding refuses
    completed = subprocess.run(
        [sys.executable, "-m", "parallelr", "-A", str(arguments), "-C", "printf '\\000\\033[0m%s\\n' @ARG@",
         "-r", "-m", "2"], env=home_env, cwd=str(tmp_path), capture_output=True, timeout=120,
        stdin=subprocess.DEVNULL)
    result = CliResult(completed.returncode, completed.stdout.decode("utf-8", "surrogateescape"),
                       completed.stderr.decode("utf-8", "surrogateescape"))
    assert result.returncode == 0, result.output
    _, lines = read_results(results_path(result, summary, run_files))  # strict UTF-8, 1 object a line
    assert len(lines) == 3
    by_argument = {line["arguments"][0]: line for line in lines}
    latin = by_argument["caf\udce9"]  # the byte that is not UTF-8, as surrogateescape keeps it
    assert latin["arguments"][0].encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert latin["status"] == "SUCCESS"
    assert by_argument["one\u2028two\x85three"]["status"] == "SUCCESS"
    assert by_argument["plain"]["command_executed"] == "printf '\\000\\033[0m%s\\n' plain"
