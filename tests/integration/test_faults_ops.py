"""Process management under faults and hostile input: a runner killed with SIGKILL while the
``process`` executor runs, a corrupt PID file, a read-only HOME, an empty or relative HOME.

Every error is one ``parallelr: error: ...`` line on stderr, never a traceback. The read-only
HOME is a real read-only mount (a tmpfs remounted ``ro``: as root, ``chmod`` would not stop a
write), so these tests need root, as CI has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest
from conftest import CliResult

from parallelr.model import RUN_ID_VARIABLE

SLEEPER = """\
if [ -e {fast} ]; then exit 0; fi
echo $$ > {pids}/{name}.pid
sleep 60
"""


def assert_one_error(result: CliResult, status: int = 1) -> str:
    """The one error line of ``result`` (without its prefix)."""
    assert "Traceback" not in result.output, result.output
    assert result.returncode == status, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("parallelr: error: "), result.stderr
    return lines[0][len("parallelr: error: "):]


def sleeping_tasks(tmp_path: Path, count: int) -> Path:
    """``count`` tasks that sleep 60 s, or end at once when the file ``fast`` exists."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tmp_path / "pids").mkdir()
    for number in range(1, count + 1):
        name = f"s{number}"
        (tasks / f"{name}.sh").write_text(
            SLEEPER.format(fast=tmp_path / "fast", pids=tmp_path / "pids", name=name), encoding="utf-8"
        )
    return tasks


def started(tmp_path: Path) -> List[str]:
    return sorted(path.stem for path in (tmp_path / "pids").glob("*.pid") if path.read_text().strip())


def registered_run_id(home: Path, pid: int) -> str:
    entry = home / "parallelr" / "pids" / f"{pid}.json"
    return json.loads(entry.read_text(encoding="utf-8"))["run_id"]


def environ_of(proc: psutil.Process) -> dict:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


# -- kill -9 of a runner with --executor process ----------------------------------------------------
def test_kill_9_of_a_process_executor_runner_leaves_no_process_behind(
    tmp_path, home, janitor, wait_until, run_cli, summary
) -> None:
    tasks = sleeping_tasks(tmp_path, 3)
    runner = janitor.popen(
        [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r",
         "--executor", "process", "-m", "2"],
        home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path),
    )
    wait_until(lambda: len(started(tmp_path)) == 2, 30, "two tasks to start")
    run_id = wait_until(lambda: registered_run_id(home, runner.pid), 10, "the run's entry")
    pool = [proc for proc in psutil.Process(runner.pid).children(recursive=True)
            if "PARALLELR_TASK_INDEX" not in environ_of(proc)]
    # the fork server, the resource tracker and two workers: findable by the run's marker
    assert len(pool) == 4, [proc.cmdline() for proc in pool]
    assert {environ_of(proc).get(RUN_ID_VARIABLE) for proc in pool} == {run_id}

    os.kill(runner.pid, signal.SIGKILL)
    # Nothing holds the dead runner's stdout and stderr open: they reach their end at once.
    runner.communicate(timeout=20)
    wait_until(lambda: not janitor.survivors(), 20, "every process of the dead run to end")

    (tmp_path / "fast").touch()
    resumed = run_cli(["--resume", "last", "-r"], env=janitor.env)
    assert resumed.returncode == 0, resumed.output
    assert summary(resumed.stdout, "Run ID:") == run_id
    assert summary(resumed.stdout, "Total Tasks:") == "3"
    assert summary(resumed.stdout, "Completed Successfully:") == "3"
    wait_until(lambda: not janitor.survivors(), 10, "the resumed run's processes to end")


def test_resume_stops_what_is_left_of_a_dead_runners_pool(
    tmp_path, home, janitor, wait_until, run_cli
) -> None:
    """Where nothing stopped an executor's process with its runner, --resume does: it carries the
    run's marker but no task index, and lives in the dead runner's process group, which is also
    the group of a resume started by the same script."""
    tasks = sleeping_tasks(tmp_path, 1)
    runner = janitor.popen([sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r"],
                           home, stdout=subprocess.DEVNULL, cwd=str(tmp_path))
    wait_until(lambda: started(tmp_path) == ["s1"], 30, "the task to start")
    run_id = wait_until(lambda: registered_run_id(home, runner.pid), 10, "the run's entry")
    helper = janitor.popen(["sleep", "60"], home, env={RUN_ID_VARIABLE: run_id})  # in our group
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    task = psutil.Process(int((tmp_path / "pids" / "s1.pid").read_text()))

    (tmp_path / "fast").touch()
    resumed = run_cli(["--resume", "last", "-r"], env=janitor.env)
    assert resumed.returncode == 0, resumed.output
    terminated = f"Terminated 1 leftover task(s) of run {run_id} (3 process(es); its runner is gone)"
    assert terminated in resumed.stdout
    assert helper.wait(timeout=10) == -signal.SIGTERM
    wait_until(lambda: not task.is_running() or task.status() == psutil.STATUS_ZOMBIE, 10, "the task to end")


FIND_LEFTOVERS = """
import json, sys
from parallelr.plugins.journal import processes
print(json.dumps(sorted(proc.pid for proc in processes.find_leftovers(sys.argv[1]).processes)))
"""


def test_resume_never_stops_a_process_that_runs_it(tmp_path, home) -> None:
    """A shell with the run's marker (no task index) that runs the cleanup is spared."""
    run_id = f"ancestor-{os.getpid()}"
    env = dict(os.environ, **{RUN_ID_VARIABLE: run_id})
    env.pop("PARALLELR_TASK_INDEX", None)
    # ``; true`` keeps the shell from exec'ing Python: it stays the parent, marker and all.
    script = 'echo $$; "$0" -c "$1" "$2"; true'
    shell = subprocess.run(["sh", "-c", script, sys.executable, FIND_LEFTOVERS, run_id],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    shell_pid, found = shell.stdout.splitlines()
    assert json.loads(found) == []
    assert int(shell_pid) > 0


# -- a corrupt PID file -------------------------------------------------------------------------------
@pytest.fixture
def pid_file(home: Path) -> Path:
    path = home / "parallelr" / "pids" / "parallelr.pids"
    path.parent.mkdir(parents=True)
    return path


def test_junk_in_the_pid_file_is_pruned_with_a_warning(tmp_path, pid_file, run_cli) -> None:
    junk = b"\xff\xfe\x00\x1b[31m\n12x\n\n-5\n"
    shown = "'\\xff\\xfe\\x00\\x1b[31m', '12x', '-5'"
    warning = f"Pruned 3 unreadable entries from the PID file {pid_file}: {shown}"
    pid_file.write_bytes(junk)
    listed = run_cli(["--list-workers"])
    assert (listed.returncode, listed.stderr) == (0, ""), listed.output
    assert listed.warnings == [warning]
    assert "No running parallelr processes found." in listed.stdout
    assert pid_file.read_bytes() == b""

    pid_file.write_bytes(junk)
    killed = run_cli(["-k", "1"])
    assert killed.warnings == [warning]
    assert assert_one_error(killed) == (
        "1 is not a running parallelr process of this user (see --list-workers); nothing was signalled"
    )

    pid_file.write_bytes(junk)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text("echo hi\n", encoding="utf-8")
    ran = run_cli(["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", "-r"])
    assert (ran.returncode, ran.stderr) == (0, ""), ran.output
    assert warning in ran.warnings
    assert pid_file.read_bytes() == b""  # the run's own line came and went


@pytest.mark.parametrize("arguments", [["--list-workers"], ["-k", "1"], ["-k"], ["-r"]],
                         ids=["list-workers", "kill-pid", "kill-all", "run"])
def test_a_directory_in_place_of_the_pid_file_is_one_error(tmp_path, pid_file, run_cli, arguments) -> None:
    pid_file.mkdir()
    if arguments == ["-r"]:
        (tmp_path / "tasks").mkdir()
        (tmp_path / "tasks" / "a.sh").write_text("echo hi\n", encoding="utf-8")
        arguments = ["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", "-r"]
    result = run_cli(arguments, input="yes\n")
    assert assert_one_error(result) == (
        f"cannot read the PID file {pid_file}: Is a directory (remove or rename what is in its place)"
    )
    if "-r" in arguments:
        assert list((tmp_path / "home" / "parallelr" / "logs").glob("*_summary.csv")) == []


# -- a read-only HOME -----------------------------------------------------------------------------
@contextlib.contextmanager
def read_only_home(mount_point: Path, populate) -> Iterator[Path]:
    """A tmpfs at ``mount_point``, filled by ``populate(path)``, then remounted read-only."""
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only mount needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        populate(mount_point)
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, capture_output=True)
        with pytest.raises(OSError):
            (mount_point / "probe").touch()
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_fresh_read_only_home(tmp_path, run_cli) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text("echo hi\n", encoding="utf-8")
    with read_only_home(tmp_path / "ro", lambda path: None) as home:
        listed = run_cli(["--list-workers"], env={"HOME": str(home)})
        assert (listed.returncode, listed.stderr) == (0, ""), listed.output
        assert "No running parallelr processes found." in listed.stdout

        ran = run_cli(["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", "-r"], env={"HOME": str(home)})
        assert "Read-only file system" in assert_one_error(ran)


def test_a_used_read_only_home(tmp_path, run_cli, janitor) -> None:
    """Reading commands list what can be read without the lock; writing ones fail in one line."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text("echo hi\n", encoding="utf-8")
    sleeper = janitor.popen(["sleep", "60"], tmp_path)
    proc = psutil.Process(sleeper.pid)

    def use(home: Path) -> None:
        first = run_cli(["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", "-r"], env={"HOME": str(home)})
        assert first.returncode == 0, first.output
        pids = home / "parallelr" / "pids"
        entry = {"pid": proc.pid, "create_time": proc.create_time(), "uid": os.getuid(),
                 "app_name": "parallelr", "started_at": time.time(), "main_log": "/l/parallelr_1.log",
                 "summary_csv": "/l/parallelr_1_summary.csv", "run_id": "20260101-000000-abcdef"}
        (pids / f"{proc.pid}.json").write_text(json.dumps(entry), encoding="utf-8")
        (pids / "parallelr.pids").write_text(f"{proc.pid}\n1\njunk\n", encoding="utf-8")  # 1: a stale entry

    with read_only_home(tmp_path / "ro", use) as home:
        pid_file = home / "parallelr" / "pids" / "parallelr.pids"
        listed = run_cli(["--list-workers"], env={"HOME": str(home)})
        assert (listed.returncode, listed.stderr) == (0, ""), listed.output
        assert "Found 1 running parallel-tasker process(es):" in listed.stdout
        assert any(line.startswith(f"{proc.pid} ") and "20260101-000000-abcdef" in line
                   for line in listed.stdout.splitlines()), listed.stdout
        assert listed.warnings == [
            f"Ignored 1 unreadable entry of the PID file {pid_file} (it cannot be rewritten): 'junk'"
        ]

        ran = run_cli(["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", "-r"], env={"HOME": str(home)})
        assert assert_one_error(ran) == (
            f"cannot write the PID file's lock {pid_file}.lock: Read-only file system "
            "(check HOME and its permissions)"
        )

        killed = run_cli(["-k", str(proc.pid)], env={"HOME": str(home)})
        assert (killed.returncode, killed.stderr) == (0, ""), killed.output
        assert f"Process {proc.pid} stopped." in killed.stdout
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        removal = f"Could not remove PID {proc.pid} from the PID file: cannot write"
        assert killed.warnings[-1].startswith(removal), killed.warnings


# -- HOME that is no home -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "relative/home", "."], ids=["empty", "relative", "dot"])
@pytest.mark.parametrize("arguments", [["-r"], [], ["--list-workers"]],
                         ids=["run", "dry-run", "list-workers"])
def test_an_empty_or_relative_home_is_one_error_and_writes_nothing(
    tmp_path, run_cli, value, arguments
) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text("echo hi\n", encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if arguments != ["--list-workers"]:
        arguments = ["-T", str(tmp_path / "tasks"), "-C", "bash @TASK@", *arguments]
    root_had = os.path.lexists("/parallelr")

    result = run_cli(arguments, env={"HOME": value}, cwd=cwd)

    message = assert_one_error(result)
    assert message.startswith("HOME is "), message
    assert "set HOME to your home directory (an absolute path)" in message
    assert list(cwd.iterdir()) == []
    assert os.path.lexists("/parallelr") == root_had
