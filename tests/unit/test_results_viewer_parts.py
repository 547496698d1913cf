"""The results viewer's parts on real files: telling a JSONL file from a CSV summary, the records
of each, dotted paths, filters, column checks, the warnings for invalid lines, and what the CSV,
JSONL, table and statistics writers print."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from parallelr.errors import ParallelrError
from parallelr.plugins.reporters import results_reading as reading
from parallelr.plugins.reporters import results_viewer as viewer

SESSION = {"type": "session", "session_id": "7_x", "hostname": "h", "user": "u", "command_template": "c"}


def _task(**fields: Any) -> Dict[str, Any]:
    task = {name: None for name in reading.TASK_FIELDS}
    task.update(type="task", session_id="7_x", status="SUCCESS", process_id=7, worker_id=1, env_vars={},
                arguments=[], exit_code=0, duration_seconds=1.0, memory_mb=0.0, cpu_percent=0.0)
    task.update(fields)
    return task


def _write_jsonl(path: Path, *records: Any) -> Path:
    path.write_text("".join((record if isinstance(record, str) else json.dumps(record)) + "\n"
                            for record in records), encoding="utf-8")
    return path


def _records(path: Path) -> List[Dict[str, Any]]:
    warnings: List[str] = []
    records = list(reading.ResultsFile.open(str(path)).records(warnings.append))
    assert warnings == []
    return records


def test_the_kind_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    jsonl = _write_jsonl(tmp_path / "results.csv", SESSION, _task())
    assert reading.detect_kind(str(jsonl)) == reading.JSONL
    summary = tmp_path / "summary.jsonl"
    summary.write_text(reading.CSV_HEADER + "\n", encoding="utf-8")
    assert reading.detect_kind(str(summary)) == reading.CSV
    broken_first = _write_jsonl(tmp_path / "b.jsonl", "{not json", _task())
    assert reading.detect_kind(str(broken_first)) == reading.JSONL


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty: no session or task lines"),
    (b"\n  \n", "is empty: no session or task lines"),
    (b"start;end\n1;2\n", "is neither a JSONL results file nor a parallelr CSV summary"),
    (b"\x7fELF\x00\x00\xff\xfe binary", "is neither a JSONL results file nor a parallelr CSV summary"),
    (b"[1, 2]\n\"text\"\n", "is neither a JSONL results file nor a parallelr CSV summary"),
])
def test_files_that_are_not_results_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "in put.jsonl"
    path.write_bytes(content)
    with pytest.raises(ParallelrError) as raised:
        reading.ResultsFile.open(str(path))
    assert str(raised.value) == f"{path} {message}"


def test_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ParallelrError, match=r"^file not found: .*/nope\.jsonl$"):
        reading.ResultsFile.open(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ParallelrError, match=r"is a directory, not a results file$"):
        reading.ResultsFile.open(str(tmp_path))


def test_invalid_lines_are_skipped_with_a_warning_and_counted_after_ten(tmp_path: Path) -> None:
    lines: List[Any] = [SESSION, _task(status="FAILED"), "", "{broken", "[1]", "42"]
    lines += ["nope"] * 10 + [_task()]
    path = _write_jsonl(tmp_path / "r.jsonl", *lines)
    warnings: List[str] = []
    records = list(reading.ResultsFile.open(str(path)).records(warnings.append))
    assert [record["type"] for record in records] == ["session", "task", "task"]
    assert warnings[:3] == [
        f"line 4 of {path} skipped: not valid JSON"
        " (Expecting property name enclosed in double quotes at column 2)",
        f"line 5 of {path} skipped: not a JSON object",
        f"line 6 of {path} skipped: not a JSON object",
    ]
    assert len(warnings) == 11
    assert warnings[10] == f"13 invalid lines skipped in {path}, 3 of them not shown"


def test_csv_rows_become_records_with_the_jsonl_names(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(reading.CSV_HEADER + "\n"
                    "2025-01-02T03:04:05;2025-01-02T03:04:07;FAILED;123;2;/t/a.sh;bash /t/a.sh;3;"
                    "2.00;1.50;7.5;Exit code 3\n"
                    ";;CANCELLED;;;/t/b.sh;\"bash '/t/b;c.sh'\";;;;;Not started\n"
                    "short;row\n", encoding="utf-8")
    warnings: List[str] = []
    records = list(reading.ResultsFile.open(str(path)).records(warnings.append))
    assert records == [
        {"type": "task", "start_time": "2025-01-02T03:04:05", "end_time": "2025-01-02T03:04:07",
         "status": "FAILED", "process_id": 123, "worker_id": 2, "task_file": "/t/a.sh",
         "command_executed": "bash /t/a.sh", "exit_code": 3, "duration_seconds": 2.0, "memory_mb": 1.5,
         "cpu_percent": 7.5, "error_message": "Exit code 3"},
        {"type": "task", "start_time": None, "end_time": None, "status": "CANCELLED", "process_id": None,
         "worker_id": 0, "task_file": "/t/b.sh", "command_executed": "bash '/t/b;c.sh'", "exit_code": None,
         "duration_seconds": None, "memory_mb": None, "cpu_percent": None, "error_message": "Not started"},
    ]
    assert warnings == [f"line 4 of {path} skipped: 2 columns, a CSV summary row has 12"]


def test_dotted_paths_reach_into_objects_and_lists() -> None:
    task = _task(env_vars={"HOST": "web1"}, arguments=["a", "b"])
    assert reading.value_at(task, ("env_vars", "HOST")) == "web1"
    assert reading.value_at(task, ("arguments", "1")) == "b"
    assert reading.value_at(task, ("arguments", "2")) is None
    assert reading.value_at(task, ("arguments", "-1")) is None
    assert reading.value_at(task, ("arguments", "x")) is None
    assert reading.value_at(task, ("env_vars", "HOST", "deeper")) is None
    assert reading.value_at(task, ("missing",)) is None


def test_filters_compare_as_the_csv_shows_numbers_as_numbers_and_null_as_empty() -> None:
    task = _task(exit_code=3, duration_seconds=2.0, error_message=None, env_vars={"HOST": "web 1"})
    assert reading.parse_filter("exit_code=3").matches(task)
    assert reading.parse_filter(" duration_seconds = 2 ").matches(task)  # 2 == 2.0
    assert reading.parse_filter("duration_seconds=2.0").matches(task)
    assert not reading.parse_filter("exit_code!=3").matches(task)
    assert reading.parse_filter("exit_code!=0").matches(task)
    assert all(reading.parse_filter(f"error_message={word}").matches(task) for word in ("", "None", "null"))
    assert reading.parse_filter("env_vars.HOST=web 1").matches(task)
    assert reading.parse_filter("env_vars.PORT=").matches(task)  # missing is null
    assert reading.parse_filter('env_vars={"HOST": "web 1"}').matches(task)
    check = reading.parse_filter("error_message=a=b!=c")
    assert (check.name, check.wanted, check.negated) == ("error_message", "a=b!=c", False)


@pytest.mark.parametrize("text", ["status", "=FAILED", "!=x", " =x", "env_vars.=x", "a..b=1"])
def test_bad_filter_expressions(text: str) -> None:
    with pytest.raises(ParallelrError) as raised:
        reading.parse_filter(text)
    assert str(raised.value) == f"bad filter expression {text!r}: give FIELD=VALUE or FIELD!=VALUE"


def test_columns_default_and_are_checked_against_the_fields(tmp_path: Path) -> None:
    assert reading.parse_columns(None) == reading.DEFAULT_COLUMNS
    assert reading.parse_columns(" status , env_vars.X ") == ("status", "env_vars.X")
    with pytest.raises(ParallelrError, match="empty column name"):
        reading.parse_columns("a,,b")
    jsonl = reading.ResultsFile(str(tmp_path / "r"), reading.JSONL)
    reading.check_names([("column", "env_vars.X"), ("column", "extra")], jsonl, {"extra": 1})
    with pytest.raises(ParallelrError, match=r"^unknown column 'nope'; the task fields are: arguments, "):
        reading.check_names([("column", "nope")], jsonl, None)
    summary = reading.ResultsFile(str(tmp_path / "s"), reading.CSV)
    reading.check_names([("filter field", "command_executed")], summary, None)
    with pytest.raises(ParallelrError, match=r"^filter field 'env_vars.HOST': a CSV summary has no env_vars"):
        reading.check_names([("filter field", "env_vars.HOST")], summary, None)


def test_csv_writer_quotes_like_the_old_psr() -> None:
    out = io.StringIO()
    tasks = [_task(command_executed='echo "a,b"', env_vars={"H": "é"}, arguments=["x"], error_message=None)]
    viewer.write_csv(out, tasks, ("command_executed", "env_vars", "arguments", "error_message", "exit_code"))
    assert out.getvalue() == ('COMMAND_EXECUTED,ENV_VARS,ARGUMENTS,ERROR_MESSAGE,EXIT_CODE\r\n'
                              '"echo ""a,b""","{""H"": ""é""}","[""x""]",,0\r\n')


def test_statistics_word_for_word() -> None:
    records = [SESSION, _task(duration_seconds=1.25), _task(status="FAILED", duration_seconds=2.5),
               _task(status="CANCELLED", duration_seconds=None), _task(duration_seconds=0.25)]
    out = io.StringIO()
    viewer.write_stats(out, records, [])
    assert out.getvalue() == "\n".join([
        "=" * 60, "EXECUTION STATISTICS", "=" * 60, "",
        "Session ID: 7_x", "Hostname: h", "User: u", "Command Template: c", "",
        "Total Tasks: 4", "", "By Status:",
        "  CANCELLED: 1 (25.0%)", "  FAILED: 1 (25.0%)", "  SUCCESS: 2 (50.0%)", "",
        "Total Duration: 4.00s", "Average Duration: 1.00s per task", "=" * 60, "",
    ])
    out = io.StringIO()
    viewer.write_stats(out, records, [reading.parse_filter("status=TIMEOUT")])
    assert out.getvalue() == "No tasks found.\n"


def test_jsonl_writer_gives_a_results_file_back_or_the_columns(tmp_path: Path) -> None:
    records = [SESSION, _task(status="FAILED", arguments=["a\u2028b"]), _task()]
    out = io.StringIO()
    viewer.write_jsonl(out, records, [reading.parse_filter("status=FAILED")], None)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == records[:2]
    out = io.StringIO()
    viewer.write_jsonl(out, records, [], ("status", "arguments.0", "env_vars.X"))
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"status": "FAILED", "arguments.0": "a\u2028b", "env_vars.X": None},
        {"status": "SUCCESS", "arguments.0": None, "env_vars.X": None},
    ]


def test_table_writer_aligns_and_shows_controls_as_escapes() -> None:
    out = io.StringIO()
    tasks = [_task(command_executed="printf '\x1b[31m'", env_vars={"A": "1"}), _task(status="FAILED")]
    viewer.write_table(out, tasks, ("status", "command_executed", "env_vars", "error_message"))
    assert out.getvalue().splitlines() == [
        "STATUS   COMMAND_EXECUTED   ENV_VARS    ERROR_MESSAGE",
        "SUCCESS  printf '\\x1b[31m'  {\"A\": \"1\"}  -",
        "FAILED   -" + " " * 18 + "{}          -",
    ]


def test_records_stream_one_at_a_time(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "r.jsonl", SESSION, *[_task(worker_id=number) for number in range(5)])
    stream = reading.ResultsFile.open(str(path)).records(lambda message: None)
    assert next(stream)["type"] == "session"
    assert next(stream)["worker_id"] == 0  # a generator: the rest is not read yet
    assert [record["worker_id"] for record in stream] == [1, 2, 3, 4]
    assert len(_records(path)) == 6
