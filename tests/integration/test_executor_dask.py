"""The ``dask`` executor through the real CLI: a local cluster and an external one (a scheduler and
two worker processes, shared by the session), a worker killed mid-task, a timeout, Ctrl+C, a
vanished runner, and the errors for a missing extra and a bad or silent scheduler.

Spec: the executor protocol (parallelr/executor.py), docs/scale-out.md "Batches on a Dask
cluster"; COMPAT.md "Exit status".
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import psutil
import pytest
from dask_support import DaskCluster, dask_cluster, free_port  # noqa: F401
from ops_support import WaitUntil, none_running, output, read_csv, start_run, task_processes, write_tasks

from parallelr.plugins.executors.dask import EXTRA_MISSING

SLEEPING_TASK = 'echo $$ > "{pids}/{name}.pid"\nsleep 30 &\necho $! > "{pids}/{name}.child"\nwait\n'

# Six tasks, one of each outcome (and two successes), as an arguments file: command|args...
MIXED_LINES = (
    "bash|-c|exit 0\n"
    "bash|-c|exit 3\n"
    "bash|-c|sleep 5\n"
    "no-such-program-4711|-c|x\n"
    "bash|-c|kill -9 $$\n"
    "bash|-c|echo six\n"
)


def row_key(rows: List[Dict[str, str]]) -> List[Tuple[str, str, str, str]]:
    return sorted((row["task_file"], row["status"], row["exit_code"], row["error_message"]) for row in rows)


def clear_logs(home: Path) -> None:
    """So that the next run of the test finds only its own files."""
    for path in (home / "parallelr" / "logs").iterdir():
        path.unlink()


def csv_rows(home: Path) -> List[Dict[str, str]]:
    (summary,) = (home / "parallelr" / "logs").glob("*_summary.csv")
    return read_csv(summary)


def kill_group(pid_file: Path) -> None:
    """Stop what a task whose worker was killed left running: its own process group."""
    with contextlib.suppress(psutil.Error, ValueError, OSError):
        leader = psutil.Process(int(pid_file.read_text()))
        if leader.status() != psutil.STATUS_ZOMBIE and os.getpgid(leader.pid) == leader.pid:
            os.killpg(leader.pid, signal.SIGKILL)


# -- the same batch on every executor -----------------------------------------------------------
def test_a_batch_on_a_local_and_an_external_cluster_ends_as_with_threads(
    run_cli: Any, run_files: Any, home: Path, tmp_path: Path, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    arguments = tmp_path / "mixed.txt"
    arguments.write_text(MIXED_LINES, encoding="utf-8")
    argv = ["-A", str(arguments), "-S", "pipe", "-C", "@ARG_1@ @ARG_2@ @ARG_3@", "-r", "-t", "1", "-m", "2"]
    outcomes = {}
    consoles = {}
    for name, extra in (("thread", []), ("local", ["--executor", "dask"]),
                        ("external", ["--executor", "dask", "--dask-scheduler", dask_cluster.address])):
        result = run_cli([*argv, *extra])
        outcomes[name] = (result.returncode, row_key(run_files().rows))
        consoles[name] = result.console
        assert "Traceback" not in result.output
        clear_logs(home)

    line = f"{arguments}:{{}}"
    assert outcomes["thread"] == (1, [
        (line.format(1), "SUCCESS", "0", ""),
        (line.format(2), "FAILED", "3", "Exit code 3"),
        (line.format(3), "TIMEOUT", "", "Timeout after 1s"),
        (line.format(4), "ERROR", "", "command not found: no-such-program-4711"),
        (line.format(5), "FAILED", "-9", "Killed by signal SIGKILL"),
        (line.format(6), "SUCCESS", "0", ""),
    ])
    assert outcomes["local"] == outcomes["thread"]
    assert outcomes["external"] == outcomes["thread"]
    local = [message for level, message in consoles["local"] if message.startswith("Running on")]
    assert len(local) == 1 and re.fullmatch(
        r"Running on a local Dask cluster at tcp://127\.0\.0\.1:\d+: 2 worker\(s\), 2 thread\(s\)", local[0])
    external = [message for level, message in consoles["external"] if message.startswith("Running on")]
    assert external == [f"Running on the Dask cluster at {dask_cluster.address}: 2 worker(s), 2 thread(s)"]


# -- a worker that dies mid-task ------------------------------------------------------------------
VICTIM = (
    'echo "$$" >> "{out}/victim.runs"\n'
    'if [ "$(wc -l < "{out}/victim.runs")" -eq 1 ]; then\n'  # the first attempt: wait to be cut off
    '  echo $$ > "{pids}/victim.pid"\n'
    '  sleep 30 &\n'
    '  echo $! > "{pids}/victim.child"\n'
    '  echo $PPID > "{pids}/victim.tmp" && mv "{pids}/victim.tmp" "{pids}/victim.ppid"\n'
    "  wait\n"
    "fi\n"
)
OTHER = 'echo "$$" >> "{out}/{name}.runs"\nsleep 0.5\n'


def kill_the_victims_worker(pids: Path, cluster: DaskCluster, wait_until: WaitUntil) -> Tuple[str, Any]:
    """SIGKILL the worker process that runs the victim's first attempt (the task's parent):
    its address, and the attempt's processes (its leader and its child)."""
    wait_until(lambda: (pids / "victim.ppid").exists(), 30, "the victim task to start")
    worker_pid = int((pids / "victim.ppid").read_text())
    (address,) = [where for where, pid in cluster.worker_pids().items() if pid == worker_pid]
    processes = [psutil.Process(int((pids / f"victim.{kind}").read_text())) for kind in ("pid", "child")]
    os.kill(worker_pid, signal.SIGKILL)
    return address, processes


def test_a_killed_worker_fails_the_attempt_once_and_the_retry_runs_it(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    tasks = write_tasks(tmp_path, {"a_victim": VICTIM, "b": OTHER, "c": OTHER})
    pids = tmp_path / "taskpids"
    run = start_run(janitor, home, tmp_path, tasks, "-m", "2", "--executor", "dask",
                    "--dask-scheduler", dask_cluster.address, "--retries", "1", "--retry-delay", "0")
    try:
        address, first_attempt = kill_the_victims_worker(pids, dask_cluster, wait_until)
        assert run.wait(timeout=60) == 0, output(tmp_path)
        # The command outlived its worker; the worker that ran the key again stopped it.
        wait_until(lambda: none_running(first_attempt), 10, "the lost attempt's processes to be stopped")
    finally:
        kill_group(pids / "victim.pid")  # if the test failed before that
    stdout, stderr = output(tmp_path)
    victim = tasks / "a_victim.sh"
    lost = f"Dask worker lost while the task ran ({address})"
    assert [message for message in _warnings(stdout) if "attempt 1" in message] == [
        f"[1/3] Task FAILED (attempt 1): {victim}: {lost}; retrying in 0s"]
    assert "Traceback" not in stdout + stderr
    # Dask ran the lost attempt's key again, which did not run the command: the retry did.
    assert len((tmp_path / "victim.runs").read_text().split()) == 2
    assert len((tmp_path / "b.runs").read_text().split()) == 1
    assert len((tmp_path / "c.runs").read_text().split()) == 1
    assert sorted((Path(row["task_file"]).name, row["status"]) for row in csv_rows(home)) == [
        ("a_victim.sh", "SUCCESS"), ("b.sh", "SUCCESS"), ("c.sh", "SUCCESS")]
    dask_cluster.wait_for_workers()  # its nanny starts the worker again, for the next tests


def test_without_retries_the_lost_attempt_is_the_tasks_result(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    tasks = write_tasks(tmp_path, {"a_victim": VICTIM, "b": OTHER})
    pids = tmp_path / "taskpids"
    run = start_run(janitor, home, tmp_path, tasks, "-m", "2", "--executor", "dask",
                    "--dask-scheduler", dask_cluster.address)
    try:
        address, first_attempt = kill_the_victims_worker(pids, dask_cluster, wait_until)
        assert run.wait(timeout=60) == 1, output(tmp_path)
        wait_until(lambda: none_running(first_attempt), 10, "the lost attempt's processes to be stopped")
    finally:
        kill_group(pids / "victim.pid")
    rows = {Path(row["task_file"]).name: row for row in csv_rows(home)}
    victim = rows["a_victim.sh"]
    assert (victim["status"], victim["exit_code"], victim["error_message"]) == (
        "FAILED", "", f"Dask worker lost while the task ran ({address})")
    assert rows["b.sh"]["status"] == "SUCCESS"
    assert len((tmp_path / "victim.runs").read_text().split()) == 1
    assert "Failed: 1\n" in output(tmp_path)[0]
    dask_cluster.wait_for_workers()


# -- stopping tasks on the workers ----------------------------------------------------------------
def test_a_timeout_kills_the_whole_tree_on_the_worker(
    tmp_path: Path, home: Path, run_cli: Any, wait_until: WaitUntil, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    tasks = write_tasks(tmp_path, {"slow": SLEEPING_TASK})
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-t", "1", "--executor", "dask",
                      "--dask-scheduler", dask_cluster.address])
    assert result.returncode == 1, result.output
    (row,) = csv_rows(home)
    assert (row["status"], row["error_message"]) == ("TIMEOUT", "Timeout after 1s")
    started = task_processes(tmp_path, wait_until, ["slow"])
    pids = [int((tmp_path / "taskpids" / f"slow.{kind}").read_text()) for kind in ("pid", "child")]
    assert int(row["process_id"]) == pids[0]
    assert none_running(started)  # the leader and the child it put in the background


def test_sigint_stops_the_remote_task_groups(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    tasks = write_tasks(tmp_path, {f"t{n}": SLEEPING_TASK for n in range(1, 5)})
    run = start_run(janitor, home, tmp_path, tasks, "-m", "2", "--executor", "dask",
                    "--dask-scheduler", dask_cluster.address)
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])
    assert len(started) == 4
    wait_until(lambda: output(tmp_path)[0].count("Starting task") == 2, 10, "two 'Starting task' lines")

    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=30) == 130
    stdout, stderr = output(tmp_path)
    assert "received SIGINT: shutting down" in stderr
    assert "Total Tasks: 4\n" in stdout and "Cancelled: 4\n" in stdout
    assert "Run interrupted by SIGINT: 4 task(s) cancelled" in stdout
    assert "Traceback" not in stdout + stderr
    rows = csv_rows(home)
    assert sorted((Path(row["task_file"]).stem, row["status"], row["error_message"]) for row in rows) == [
        ("t1", "CANCELLED", "Cancelled by shutdown"),
        ("t2", "CANCELLED", "Cancelled by shutdown"),
        ("t3", "CANCELLED", "Not started: run interrupted by SIGINT"),
        ("t4", "CANCELLED", "Not started: run interrupted by SIGINT"),
    ]
    assert sorted(path.stem for path in (tmp_path / "taskpids").glob("*.pid")) == ["t1", "t2"]
    wait_until(lambda: none_running(started), 10, "the remote task processes to end")


def test_a_runner_killed_outright_leaves_nothing_running_on_the_workers(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    tasks = write_tasks(tmp_path, {"t1": SLEEPING_TASK, "t2": SLEEPING_TASK})
    run = start_run(janitor, home, tmp_path, tasks, "-m", "2", "--executor", "dask",
                    "--dask-scheduler", dask_cluster.address)
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])
    run.kill()
    run.wait(timeout=10)
    # The scheduler releases the keys of a client that is gone; the workers stop those attempts
    # (SIGTERM to their groups): within the kill grace and the scheduler's notice.
    wait_until(lambda: none_running(started), 20, "the orphaned remote tasks to be stopped")


# -- errors -------------------------------------------------------------------------------------------
def test_without_distributed_it_says_how_to_get_it(run_cli: Any, home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "no-distributed"
    (fake / "distributed").mkdir(parents=True)
    (fake / "distributed" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text("echo a\n")
    env = {"PYTHONPATH": str(fake)}

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "--executor", "dask"], env=env)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"parallelr: error: {EXTRA_MISSING}\n"
    assert list(home.rglob("*")) == []
    dry = run_cli(["-T", "tasks", "-C", "bash @TASK@", "--executor", "dask"], env=env)
    assert dry.returncode == 0 and "1 task(s) would run." in dry.stdout  # a dry run needs no cluster
    check = subprocess.run([sys.executable, "-c", "import distributed"], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=30)
    assert "No module named 'distributed'" in check.stderr  # the fake did stand in for it


@pytest.mark.parametrize("address", ["nope", "tcp://127.0.0.1", "http://127.0.0.1:8786", "tcp://h:99999",
                                     "tcp://a b:1"])
def test_a_malformed_scheduler_address_is_a_usage_error(run_cli: Any, tasks: Path, home: Path,
                                                        address: str) -> None:
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--executor", "dask",
                      "--dask-scheduler", address])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"parallelr: error: --dask-scheduler: {address!r} is not a Dask scheduler address; give "
        "SCHEME://HOST:PORT, e.g. tcp://10.0.0.5:8786 (schemes: tcp, tls, ws, wss, ucx)\n")
    assert list(home.rglob("*")) == []


def test_a_scheduler_address_needs_the_dask_executor(run_cli: Any, tasks: Path) -> None:
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--dask-scheduler", "tcp://127.0.0.1:8786"])
    assert result.returncode == 2
    assert result.stderr == "parallelr: error: --dask-scheduler needs --executor dask\n"


def test_a_scheduler_that_does_not_answer_is_one_line_after_the_connect_timeout(
    run_cli: Any, tasks: Path, user_config: Any
) -> None:
    user_config("dask:\n  connect_timeout: 1\n")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--executor", "dask",
                      "--dask-scheduler", address], timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"parallelr: error: cannot reach the Dask scheduler at {address} within 1s: is `dask scheduler` "
        "running there, and is the address right?\n")
    listed = run_cli(["runs", "list", "--json"])  # no planned run left behind for --resume
    assert (listed.returncode, listed.stdout) == (0, "[]\n"), listed.output


def test_the_scheduler_address_can_come_from_the_config(
    run_cli: Any, run_files: Any, tasks: Path, user_config: Any, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    user_config(f"dask:\n  scheduler: {dask_cluster.address}\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--executor", "dask"])
    assert result.returncode == 0, result.output
    assert f"Running on the Dask cluster at {dask_cluster.address}: 2 worker(s), 2 thread(s)" in result.stdout
    assert [row["status"] for row in run_files().rows] == ["SUCCESS"]


def _warnings(stdout: str) -> List[str]:
    return re.findall(r"^\S+ \S+ - WARNING - (.*)$", stdout, flags=re.M)


def test_resume_of_a_dask_run_runs_on_the_cluster_it_ran_on(
    run_cli: Any, tmp_path: Path, dask_cluster: DaskCluster  # noqa: F811
) -> None:
    flag = tmp_path / "fixed"
    tasks = write_tasks(tmp_path, {"ok": "true\n", "flaky": f'[ -e "{flag}" ]\n'})
    first = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2", "--executor", "dask",
                     "--dask-scheduler", dask_cluster.address])
    assert first.returncode == 1, first.output
    flag.touch()
    resumed = run_cli(["--resume", "last", "-r"])  # neither --executor nor --dask-scheduler again
    assert resumed.returncode == 0, resumed.output
    on_cluster = f"Running on the Dask cluster at {dask_cluster.address}: 2 worker(s), 2 thread(s)"
    assert on_cluster in resumed.stdout
    assert "Resuming run " in resumed.stdout and ": 1 task(s) to run again" in resumed.stdout
