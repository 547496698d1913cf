"""``parallelr results FILE`` and the ``psr`` script through the real CLI: the old psr's default
CSV, dotted --columns, --filter (repeated: all must hold; != too), --stats figures, --output, the
jsonl and table formats, the CSV summary as input, invalid lines skipped with a warning, and every
bad input as one error line (no traceback) with exit 1 (usage errors 2)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import CliResult, cli_env

from parallelr.plugins.reporters.results_reading import TASK_FIELDS

DEFAULT_HEADER = ("START_TIME,END_TIME,STATUS,PROCESS_ID,WORKER_ID,COMMAND_EXECUTED,EXIT_CODE,"
                  "DURATION_SECONDS,MEMORY_MB,CPU_PERCENT,ERROR_MESSAGE")
SESSION = {
    "type": "session", "session_id": "4242_04Nov25_143015", "start_time": "2025-11-04T14:30:15.123456",
    "hostname": "build-01", "user": "ci", "command_template": "ping -c 1 @ARG@", "task_directories": [],
    "arguments_file": "hosts.txt", "env_var": "HOST", "file_extension": None, "separator": "comma",
    "config": {"max_workers": 2, "timeout_seconds": 60, "task_start_delay": 0.0, "max_output_capture": 1000,
               "workspace_isolation": False, "stop_limits_enabled": False},
}


def _task(number: int, status: str, host: str, duration: float, exit_code: Any, error: Any = None,
          started: bool = True) -> Dict[str, Any]:
    return {
        "type": "task", "session_id": SESSION["session_id"],
        "start_time": f"2025-11-04T14:30:1{number}.000001" if started else None,
        "end_time": f"2025-11-04T14:30:2{number}.500000" if started else None,
        "status": status, "process_id": 4242, "worker_id": number if started else 0, "task_file": None,
        "command_executed": f"HOST={host} ping -c 1 {host}", "env_vars": {"HOST": host},
        "arguments": [host, str(number)], "exit_code": exit_code, "duration_seconds": duration,
        "memory_mb": 1.5, "cpu_percent": 2.25, "error_message": error,
    }


TASKS = [
    _task(1, "SUCCESS", "web1", 1.25, 0),
    _task(2, "FAILED", "web2", 2.5, 3, "Exit code 3"),
    _task(3, "SUCCESS", "web2", 0.25, 0),
    _task(4, "CANCELLED", "db, \"1\"", 0.0, None, "Run interrupted by SIGINT", started=False),
]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results file as the spec describes it, with an invalid line and a blank one among the tasks."""
    folder = tmp_path / "rés ults"
    folder.mkdir()
    path = folder / "my results.jsonl"
    broken = "{\"type\": \"task\", broken"
    lines = [json.dumps(SESSION), json.dumps(TASKS[0]), broken, "", *map(json.dumps, TASKS[1:])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(text: str) -> List[List[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def warning(program: str, path: Path) -> str:
    return (f"{program}: warning: line 3 of {path} skipped: not valid JSON "
            "(Expecting property name enclosed in double quotes at column 18)\n")


def test_default_columns_as_the_old_psr(run_cli: Any, results: Path) -> None:
    result = run_cli(["results", str(results)])
    assert result.returncode == 0, result.output
    assert result.stderr == warning("parallelr", results)  # the invalid line is skipped, the rest kept
    assert result.stdout.splitlines()[0] == DEFAULT_HEADER
    assert rows(result.stdout)[1:] == [
        ["2025-11-04T14:30:11.000001", "2025-11-04T14:30:21.500000", "SUCCESS", "4242", "1",
         "HOST=web1 ping -c 1 web1", "0", "1.25", "1.5", "2.25", ""],
        ["2025-11-04T14:30:12.000001", "2025-11-04T14:30:22.500000", "FAILED", "4242", "2",
         "HOST=web2 ping -c 1 web2", "3", "2.5", "1.5", "2.25", "Exit code 3"],
        ["2025-11-04T14:30:13.000001", "2025-11-04T14:30:23.500000", "SUCCESS", "4242", "3",
         "HOST=web2 ping -c 1 web2", "0", "0.25", "1.5", "2.25", ""],
        ["", "", "CANCELLED", "4242", "0", 'HOST=db, "1" ping -c 1 db, "1"', "", "0.0", "1.5", "2.25",
         "Run interrupted by SIGINT"],
    ]


def test_columns_with_dotted_paths_and_two_filters_and_not_equal(run_cli: Any, results: Path) -> None:
    result = run_cli(["results", str(results), "-c", "status,env_vars.HOST,arguments.1,arguments.9,env_vars",
                      "-f", "status=SUCCESS", "--filter", "env_vars.HOST=web2"])
    assert result.returncode == 0, result.output
    assert rows(result.stdout) == [
        ["STATUS", "ENV_VARS.HOST", "ARGUMENTS.1", "ARGUMENTS.9", "ENV_VARS"],
        ["SUCCESS", "web2", "3", "", '{"HOST": "web2"}'],  # only the task where both hold
    ]
    different = run_cli(["results", str(results), "--columns", "worker_id,exit_code",
                         "-f", "status!=SUCCESS"])
    assert rows(different.stdout) == [["WORKER_ID", "EXIT_CODE"], ["2", "3"], ["0", ""]]
    numbers = run_cli(["results", str(results), "-c", "worker_id", "-f", "duration_seconds=2.50",
                       "-f", "exit_code!=None"])
    assert rows(numbers.stdout) == [["WORKER_ID"], ["2"]]


def test_stats_figures(run_cli: Any, results: Path) -> None:
    result = run_cli(["results", str(results), "--stats"])
    assert result.returncode == 0, result.output
    assert result.stdout == "\n".join([
        "=" * 60, "EXECUTION STATISTICS", "=" * 60, "",
        "Session ID: 4242_04Nov25_143015", "Hostname: build-01", "User: ci",
        "Command Template: ping -c 1 @ARG@", "",
        "Total Tasks: 4", "", "By Status:",
        "  CANCELLED: 1 (25.0%)", "  FAILED: 1 (25.0%)", "  SUCCESS: 2 (50.0%)", "",
        "Total Duration: 4.00s", "Average Duration: 1.00s per task", "=" * 60, "",
    ])
    filtered = run_cli(["results", str(results), "-s", "-f", "env_vars.HOST=web2"])
    assert "Total Tasks: 2\n\nBy Status:\n  FAILED: 1 (50.0%)\n  SUCCESS: 1 (50.0%)\n" in filtered.stdout
    assert "Total Duration: 2.75s\nAverage Duration: 1.38s per task\n" in filtered.stdout


def test_output_file_and_the_three_formats(tmp_path: Path, run_cli: Any, results: Path) -> None:
    out = tmp_path / "out dir" / "report é.csv"
    out.parent.mkdir()
    written = run_cli(["results", str(results), "-o", str(out)])
    assert written.returncode == 0 and written.stdout == "", written.output
    text = out.read_bytes().decode("utf-8")
    assert text.count("\r\n") == 5  # CRLF line ends, as the old psr wrote them (run_cli reads them as \n)
    assert text.replace("\r\n", "\n") == run_cli(["results", str(results)]).stdout

    jsonl = run_cli(["results", str(results), "--format", "jsonl", "-f", "status!=CANCELLED"])
    assert [json.loads(line) for line in jsonl.stdout.splitlines()] == [SESSION, *TASKS[:3]]
    picked = run_cli(["results", str(results), "--format", "jsonl", "-c", "status,arguments.0", "-f",
                      "worker_id=0"])
    assert [json.loads(line) for line in picked.stdout.splitlines()] == [
        {"status": "CANCELLED", "arguments.0": 'db, "1"'}]

    table = run_cli(["results", str(results), "--format", "table",
                     "-c", "status,worker_id,env_vars.HOST,exit_code"])
    assert table.stdout.splitlines() == [
        "STATUS     WORKER_ID  ENV_VARS.HOST  EXIT_CODE",
        "SUCCESS    1          web1           0",
        "FAILED     2          web2           3",
        "SUCCESS    3          web2           0",
        'CANCELLED  0          db, "1"        -',
    ]
    as_csv = run_cli(["results", str(results), "--format", "csv", "-c", "status"])
    assert rows(as_csv.stdout) == [["STATUS"], ["SUCCESS"], ["FAILED"], ["SUCCESS"], ["CANCELLED"]]


def test_a_real_run_and_its_csv_summary(tmp_path: Path, run_cli: Any, run_files: Any, summary: Any) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a ok.sh").write_text("echo a\n")
    (tasks / "b.sh").write_text("exit 4\n")
    run = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"])
    assert run.returncode == 1, run.output
    files = run_files()
    jsonl = summary(run.stdout, "- Results:")

    columns = "status,task_file,command_executed,exit_code"
    from_jsonl = run_cli(["results", jsonl, "-c", columns])
    assert from_jsonl.returncode == 0 and from_jsonl.stderr == "", from_jsonl.output
    expected = [["FAILED", str(tasks / "b.sh"), f"bash {tasks / 'b.sh'}", "4"],
                ["SUCCESS", str(tasks / "a ok.sh"), f"bash '{tasks / 'a ok.sh'}'", "0"]]
    assert sorted(rows(from_jsonl.stdout)[1:]) == expected
    from_csv = run_cli(["results", str(files.summary_csv), "-c", columns])
    assert from_csv.returncode == 0 and from_csv.stderr == "", from_csv.output
    assert sorted(rows(from_csv.stdout)[1:]) == expected
    assert rows(run_cli(["results", str(files.summary_csv)]).stdout)[0] == DEFAULT_HEADER.split(",")

    stats = run_cli(["results", str(files.summary_csv), "--stats"]).stdout
    assert "Session ID" not in stats  # a CSV summary has no session line
    assert "Total Tasks: 2\n\nBy Status:\n  FAILED: 1 (50.0%)\n  SUCCESS: 1 (50.0%)\n" in stats
    as_jsonl = [json.loads(line) for line in run_cli(["results", str(files.summary_csv), "--format",
                                                      "jsonl", "-f", "status=FAILED"]).stdout.splitlines()]
    assert [(line["status"], line["exit_code"], line["worker_id"] in (1, 2), line["error_message"])
            for line in as_jsonl] == [("FAILED", 4, True, "Exit code 4")]
    refused = run_cli(["results", str(files.summary_csv), "-c", "env_vars.HOST"])
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "parallelr: error: column 'env_vars.HOST': a CSV summary has no env_vars")


def test_many_invalid_lines_warn_ten_times_and_count_the_rest(tmp_path: Path, run_cli: Any) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(SESSION) + "\n" + "garbage\n" * 25 + json.dumps(TASKS[0]) + "\n")
    result = run_cli(["results", str(path), "-c", "status"])
    assert result.returncode == 0
    assert rows(result.stdout) == [["STATUS"], ["SUCCESS"]]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 11
    assert warnings[0] == (
        f"parallelr: warning: line 2 of {path} skipped: not valid JSON (Expecting value at column 1)")
    assert warnings[10] == f"parallelr: warning: 25 invalid lines skipped in {path}, 15 of them not shown"


def _one_error_line(result: CliResult, code: int, message: str) -> None:
    assert result.returncode == code, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_is_one_error_line(tmp_path: Path, run_cli: Any, results: Path) -> None:
    missing = tmp_path / "no such.jsonl"
    _one_error_line(run_cli(["results", str(missing)]), 1, f"parallelr: error: file not found: {missing}")
    _one_error_line(run_cli(["results", str(tmp_path)]), 1,
                    f"parallelr: error: {tmp_path} is a directory, not a results file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_error_line(run_cli(["results", str(empty)]), 1,
                    f"parallelr: error: {empty} is empty: no session or task lines")
    other = tmp_path / "notes.txt"
    other.write_bytes(b"just text\n\x00\xff binary\n")
    _one_error_line(run_cli(["results", str(other)]), 1,
                    f"parallelr: error: {other} is neither a JSONL results file nor a parallelr CSV summary")
    unknown = run_cli(["results", str(results), "-c", "status,colour"])
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.splitlines() == [
        "parallelr: error: unknown column 'colour'; the task fields are: " + ", ".join(sorted(TASK_FIELDS))]
    bad_filter = run_cli(["results", str(results), "-f", "status"])
    assert bad_filter.stderr.splitlines()[-1] == (
        "parallelr: error: bad filter expression 'status': give FIELD=VALUE or FIELD!=VALUE")
    assert bad_filter.returncode == 1 and bad_filter.stdout == ""
    unwritable = tmp_path / "missing dir" / "out.csv"
    cannot = run_cli(["results", str(results), "-o", str(unwritable)])
    assert cannot.returncode == 1 and not unwritable.exists()
    assert cannot.stderr.splitlines()[-1] == (
        f"parallelr: error: cannot write {unwritable}: No such file or directory")
    before = results.read_bytes()
    _one_error_line(run_cli(["results", str(results), "-o", str(results)]), 1,
                    f"parallelr: error: --output {results} is the file being read: give another path")
    assert results.read_bytes() == before  # not truncated
    _one_error_line(run_cli(["results", str(results), "--colour"]), 2,
                    "parallelr: error: unrecognized arguments: --colour (see parallelr results --help)")
    _one_error_line(run_cli(["results"]), 2, "parallelr: error: the following arguments are required: "
                                              "FILE (see parallelr results --help)")
    _one_error_line(run_cli(["results", str(results), "--format", "xml"]), 2,
                    "parallelr: error: argument --format: invalid choice: 'xml' (choose from 'csv', "
                    "'jsonl', 'table') (see parallelr results --help)")


def _psr(home: Path, tmp_path: Path, *args: str) -> CliResult:
    script = Path(sys.executable).parent / "psr"
    if not script.exists():
        pytest.skip(f"psr is not installed next to {sys.executable} (pip install -e . installs it)")
    completed = subprocess.run([str(script), *args], env=cli_env(home), capture_output=True, text=True,
                               cwd=str(tmp_path), timeout=60, stdin=subprocess.DEVNULL)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def test_the_psr_script_is_parallelr_results(tmp_path: Path, home: Path, run_cli: Any, results: Path) -> None:
    for options in ([], ["--stats"], ["-c", "status,env_vars.HOST", "-f", "status=SUCCESS"],
                    ["--columns", "exit_code", "--filter", "status!=SUCCESS",
                     "--output", str(tmp_path / "o.csv")]):
        psr = _psr(home, tmp_path, str(results), *options)
        same = run_cli(["results", str(results), *options])
        assert (psr.returncode, psr.stdout) == (same.returncode, same.stdout) == (0, psr.stdout)
        assert psr.stderr == warning("psr", results)
    assert (tmp_path / "o.csv").read_bytes() == b'EXIT_CODE\r\n3\r\n""\r\n'  # csv's empty row
    _one_error_line(_psr(home, tmp_path, str(tmp_path / "gone.jsonl")), 1,
                    f"psr: error: file not found: {tmp_path / 'gone.jsonl'}")
    _one_error_line(_psr(home, tmp_path), 2,
                    "psr: error: the following arguments are required: FILE (see psr --help)")
    assert _psr(home, tmp_path, "--help").stdout.startswith("usage: psr [-h] [-c A,B,...] [-f FIELD=VALUE]")


def test_the_psr_entry_point(tmp_path: Path, home: Path, results: Path) -> None:
    """What the console script runs, also where the script is not installed (an older env)."""
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from parallelr.cli import main_psr; sys.exit(main_psr())",
         str(results), "-c", "status", "-f", "status=FAILED"],
        env=cli_env(home), capture_output=True, cwd=str(tmp_path), timeout=60, stdin=subprocess.DEVNULL)
    assert (completed.returncode, completed.stdout) == (0, b"STATUS\r\nFAILED\r\n")  # the old psr's CRLF
    assert completed.stderr.decode("utf-8") == warning("psr", results)
