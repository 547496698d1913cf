"""The live progress line through the real CLI: under a real pseudo-terminal (pexpect) it appears,
stays below the per-task lines, ends at N/N 100% and leaves the summary intact, also after Ctrl+C;
with stdout a pipe (auto) stdout is byte for byte what ``--no-progress`` gives and the main log gets
the plain progress lines instead; bad input is one line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import pexpect

# The line on the terminal (see plugins/reporters/progress.py BAR_FORMAT), for a run of `total`.
BAR = (r" *(?P<done>\d+)/{total} +(?P<percent>\d+)%\|[^|\r\n]*\| (?P<running>\d+) running, "
       r"(?P<failed>\d+) failed(?:, (?P<cancelled>\d+) cancelled)? \| \d+:\d\d:\d\d<(?:\d+:\d\d:\d\d|\?), "
       r"(?:\d+\.\d tasks/s|\d+\.\d s/task|\? tasks/s)")
CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (INFO|WARNING) - .+")
TASK_LINE = re.compile(r"\[\d+/\d+\] (Worker \d+: Starting task \S+|Task completed: \S+ \(\d+\.\d\ds\)|"
                       r"Task (FAILED|CANCELLED): \S+: .+)")
ERASE_LINE = "\x1b[K"  # how the line is erased on a terminal whose TERM is not dumb
SUMMARY_HEAD = ["", "Parallel Task Execution Summary", "==============================="]


def bar(total: int) -> re.Pattern[str]:
    return re.compile(BAR.format(total=total))


def screen(raw: str) -> List[str]:
    """The lines a terminal shows for ``raw``: CR goes back to the start of the line, LF to the
    start of the next one (as the pty's CR LF does), ESC [ K erases the rest of the line, other
    characters overwrite what is under the cursor (lines do not wrap here; the bar itself is never
    wider than the terminal). Without the empty line after the last line end."""
    lines: List[List[str]] = [[]]
    row = column = 0
    for char in raw.replace(ERASE_LINE, "\x00"):
        if char == "\x00":  # erase from the cursor to the end of the line
            del lines[row][column:]
        elif char == "\r":
            column = 0
        elif char == "\n":
            row += 1
            column = 0
            if row == len(lines):
                lines.append([])
        else:
            line = lines[row]
            line.extend(" " * (column + 1 - len(line)))
            line[column] = char
            column += 1
    shown = ["".join(line).rstrip() for line in lines]
    return shown[:-1] if shown and not shown[-1] else shown


def spawn_run(tmp_path: Path, env: Dict[str, str], args: Sequence[str], term: str = "xterm") -> pexpect.spawn:
    """The CLI on a new pty of 80x24; ``term``: its TERM (a dumb one gets spaces, not ESC [ K)."""
    return pexpect.spawn(sys.executable, ["-m", "parallelr", *args], env={**env, "TERM": term},
                         cwd=str(tmp_path),
                         encoding="utf-8", codec_errors="replace", timeout=60, dimensions=(24, 80))


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    return str(child.before)


def write_tasks(tmp_path: Path, bodies: Dict[str, str]) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, body in bodies.items():
        (tasks / name).write_text(body)
    return tasks


def summary_block(lines: List[str]) -> List[str]:
    start = lines.index("Parallel Task Execution Summary") - 1
    return lines[start:]


def test_on_a_terminal_the_line_stays_below_the_task_lines_and_ends_at_100_percent(
    tmp_path: Path, home_env: Dict[str, str], janitor: Any
) -> None:
    tasks = write_tasks(tmp_path, {**{f"t{n}.sh": "sleep 0.3\n" for n in range(1, 5)}, "bad.sh": "exit 3\n"})
    child = spawn_run(tmp_path, {**home_env, **janitor.env},
                      ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"])
    raw = finish(child)
    assert child.exitstatus == 1, raw
    drawn = [match.groupdict() for match in bar(5).finditer(raw)]
    assert len(drawn) >= 2, raw  # the first state and the final one at least
    assert drawn[0]["done"] == "0" and drawn[0]["percent"] == "0"
    assert drawn[-1] == {"done": "5", "percent": "100", "running": "0", "failed": "1", "cancelled": None}
    assert ERASE_LINE in raw  # TERM=xterm: erased with ESC [ K

    lines = screen(raw)
    block = summary_block(lines)
    above = lines[: len(lines) - len(block)]
    assert bar(5).fullmatch(above[-1]) and above[-1].startswith("5/5 100%|"), above[-1]  # left behind, whole
    console_lines = above[:-1]
    assert all(CONSOLE_LINE.fullmatch(line) for line in console_lines), console_lines  # none cut or mixed
    task_lines = [line for line in console_lines if TASK_LINE.search(line)]
    assert len(task_lines) == 10, console_lines  # a start and an end line for each of the 5 tasks
    assert block[:3] == SUMMARY_HEAD and "Total Tasks: 5" in block and "Failed: 1" in block
    assert block[-1] == "- Executor: thread"
    assert not any("running," in line for line in block)


def test_no_progress_on_a_terminal_draws_nothing(
    tmp_path: Path, home_env: Dict[str, str], janitor: Any
) -> None:
    tasks = write_tasks(tmp_path, {"a.sh": "echo a\n", "b.sh": "echo b\n"})
    child = spawn_run(tmp_path, {**home_env, **janitor.env},
                      ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2", "--no-progress"])
    raw = finish(child)
    assert child.exitstatus == 0, raw
    assert "\r" not in raw.replace("\r\n", "\n")  # nothing is drawn over: only the pty's line ends
    assert not bar(2).search(raw) and " running, " not in raw
    assert screen(raw)[-1] == "- Executor: thread"


def test_ctrl_c_ends_the_line_at_100_percent_with_the_summary_intact(
    tmp_path: Path, home_env: Dict[str, str], janitor: Any
) -> None:
    tasks = write_tasks(tmp_path, {f"t{n}.sh": "sleep 30\n" for n in range(1, 5)})
    child = spawn_run(tmp_path, {**home_env, **janitor.env},
                      ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"], term="dumb")
    child.expect(r"\| 2 running, 0 failed \|")  # both slots busy, the line drawn
    child.sendintr()  # Ctrl+C from the terminal: SIGINT to the foreground process group
    raw = str(child.after) + finish(child)
    assert child.exitstatus == 128 + signal.SIGINT, raw
    drawn = [match.groupdict() for match in bar(4).finditer(raw)]
    assert drawn[-1] == {"done": "4", "percent": "100", "running": "0", "failed": "0", "cancelled": "4"}
    assert "\x1b" not in raw  # TERM=dumb: erased with spaces
    lines = screen(raw)
    block = summary_block(lines)
    assert block[:3] == SUMMARY_HEAD and "Cancelled: 4" in block
    assert block[-1] == "Run interrupted by SIGINT: 4 task(s) cancelled"
    above = lines[: len(lines) - len(block)]
    final = [index for index, line in enumerate(above) if line.startswith("4/4 100%|")]
    assert len(final) == 1 and bar(4).fullmatch(above[final[0]])
    # after the final line: the one line for the tasks that never started, then the summary
    assert above[final[0] + 1:] == [] or all(CONSOLE_LINE.fullmatch(line) for line in above[final[0] + 1:])
    for line in above[: final[0]]:  # every console line whole; the signal's stderr line ends one line
        assert CONSOLE_LINE.fullmatch(line) or line.endswith("(signal again to kill at once)"), line


def _normalised(stdout: str) -> str:
    """What differs between two runs of the same tasks: PID, the file-name timestamp, the run ID,
    the durations and the memory figures (psutil's samples of a short task)."""
    text = re.sub(r"parallelr_\d+_\d\d[A-Z][a-z]{2}\d\d_\d{6}", "parallelr_PID_TIME", stdout)
    text = re.sub(r"(?m)^Run ID: \d{8}-\d{6}-[0-9a-f]{6}$", "Run ID: ID", text)
    text = re.sub(r"(?m)^(INFO - \[\d+/\d+\] Task completed: .+) \(\d+\.\d\ds\)$", r"\1 (D)", text)
    text = re.sub(r"(?m)^- (Average|Maximum|Minimum) Duration: \d+\.\d\ds$", r"- \1 Duration: D", text)
    text = re.sub(r"(?m)^- (Average|Peak) Memory Usage: \d+\.\d\dMB$", r"- \1 Memory Usage: M", text)
    return re.sub(r"(?m)^- Process ID: \d+$", "- Process ID: PID", text)


def test_on_a_pipe_stdout_is_byte_identical_to_no_progress(
    tmp_path: Path, run_cli: Any, user_config: Callable[[str], Path]
) -> None:
    user_config('logging:\n  console_format: "%(levelname)s - %(message)s"\n')
    tasks = write_tasks(tmp_path, {"a.sh": "echo a\n", "b b.sh": "echo b\n", "c.sh": "exit 4\n"})
    args = ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "1"]
    auto = run_cli(args)
    off = run_cli([*args, "--no-progress"])
    assert (auto.returncode, off.returncode) == (1, 1), auto.output
    assert "\r" not in auto.stdout and "Progress:" not in auto.stdout
    assert _normalised(auto.stdout) == _normalised(off.stdout)
    assert _normalised(auto.stdout).count("INFO - [") == 5  # the comparison compared the task lines
    assert auto.stderr == off.stderr == ""


def test_progress_forced_on_a_pipe_is_drawn_anyway(tmp_path: Path, run_cli: Any) -> None:
    tasks = write_tasks(tmp_path, {"a.sh": "echo a\n", "b.sh": "echo b\n", "c.sh": "echo c\n"})
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2", "--progress"])
    assert result.returncode == 0, result.output
    lines = screen(result.stdout)
    block = summary_block(lines)
    final = lines[len(lines) - len(block) - 1]
    assert final.startswith("3/3 100%|") and bar(3).fullmatch(final), final
    assert block[:3] == SUMMARY_HEAD


def _progress_lines(main_log: Path) -> List[str]:
    return re.findall(r"(?m) - INFO - \[[^]]+\] - (Progress: .*)$", main_log.read_text(encoding="utf-8"))


PROGRESS_LINE = re.compile(r"Progress: [0-2]/2 \(\d+\.\d%\), [0-2] running, 0 failed, elapsed \d:\d\d:\d\d, "
                           r"(\d+\.\d tasks/s|\d+\.\d s/task|\? tasks/s), ETA (\d:\d\d:\d\d|\?)")


def test_without_a_terminal_the_main_log_gets_the_progress_lines(
    tmp_path: Path, run_cli: Any, user_config: Callable[[str], Path], run_files: Any
) -> None:
    user_config("logging:\n  progress_interval: 0.2\n")
    tasks = write_tasks(tmp_path, {"a.sh": "sleep 1\n", "b.sh": "sleep 1\n"})
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"])
    assert result.returncode == 0, result.output
    found = _progress_lines(run_files().main_log)
    assert len(found) >= 1 and all(PROGRESS_LINE.fullmatch(line) for line in found), found
    assert "Progress:" not in result.stdout and "\r" not in result.stdout


def test_an_interval_of_0_writes_no_progress_lines(
    tmp_path: Path, run_cli: Any, user_config: Callable[[str], Path], run_files: Any
) -> None:
    user_config("logging:\n  progress_interval: 0\n")
    tasks = write_tasks(tmp_path, {"a.sh": "sleep 0.5\n"})
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert result.returncode == 0, result.output
    assert _progress_lines(run_files().main_log) == []


def test_a_daemon_never_draws_and_logs_its_progress(
    tmp_path: Path, home: Path, janitor: Any, user_config: Callable[[str], Path],
    wait_until: Callable[..., Any],
) -> None:
    user_config("logging:\n  progress_interval: 0.2\n")
    tasks = write_tasks(tmp_path, {"a.sh": "sleep 1\n", "b.sh": "sleep 1\n"})
    argv = [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2",
            "-D", "--progress"]
    cli = janitor.popen(argv, home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        cwd=str(tmp_path))
    stdout, stderr = cli.communicate(timeout=30)
    assert cli.returncode == 0 and stderr == "", stdout + stderr
    assert "\r" not in stdout and " running, " not in stdout
    match = re.search(r"(?m)^- Main Log: (\S+)$", stdout)
    assert match, stdout
    main_log = Path(match.group(1))
    wait_until(lambda: "Run finished" in main_log.read_text(encoding="utf-8"), 30, "the daemon's end")
    found = _progress_lines(main_log)
    assert len(found) >= 1 and all(PROGRESS_LINE.fullmatch(line) for line in found), found


def test_a_bad_progress_interval_is_the_configs_one_line_warning(
    tmp_path: Path, run_cli: Any, user_config: Callable[[str], Path]
) -> None:
    tasks = write_tasks(tmp_path, {"a.sh": "echo a\n"})
    config = user_config("logging:\n  progress_interval: -1\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@"])  # a dry run reads the config too
    assert result.returncode == 0, result.output
    assert result.warnings == [f"{config}: logging.progress_interval = -1 is not valid "
                               "(must be between 0 and 86400); using 30"]
    user_config('logging:\n  progress_interval: "abc"\n')
    checked = run_cli(["--validate-config"])
    assert checked.returncode == 1
    assert (f"  - {config}: logging.progress_interval = 'abc' is not valid (expected a number); using 30"
            in checked.stdout.splitlines()), checked.stdout


def test_progress_and_no_progress_together_is_a_usage_error(tmp_path: Path, run_cli: Any) -> None:
    tasks = write_tasks(tmp_path, {"a.sh": "echo a\n"})
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--progress", "--no-progress"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == ("parallelr: error: argument --no-progress: not allowed with argument --progress "
                             "(see parallelr --help)\n")
    assert not (tmp_path / "home" / "parallelr" / "logs").exists()  # nothing ran
