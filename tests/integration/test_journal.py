"""The journal from the outside: what real runs record, ``runs list|show``, ``--no-journal``, and a
database that cannot be used (corrupt, locked, unwritable, a PostgreSQL server that refuses)
stopping the run before any task runs. ``runs list|show`` runs with the journal in both stores."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from pg_server import free_port
from store_support import StoreTarget


def write_tasks(tmp_path: Path, **codes: int) -> Path:
    """A task file per name that appends its name to ``ran`` and exits with its code."""
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    for name, code in codes.items():
        (tasks / f"{name}.sh").write_text(f'echo {name} >> {tmp_path / "ran"}\nexit {code}\n')
    return tasks


def ran(tmp_path: Path) -> list:
    path = tmp_path / "ran"
    return path.read_text().split() if path.exists() else []


def database(home: Path, app: str = "parallelr") -> Path:
    return home / app / "state.db"


@pytest.fixture
def journal_at(store_target: StoreTarget, home: Path, user_config) -> str:
    """Where this test's journal is, as messages name it: the default file, or a PostgreSQL
    database that ``journal.path`` names."""
    if not store_target.is_postgres:
        return str(database(home))
    user_config(f"journal:\n  path: {store_target.location}\n")
    return store_target.location


def test_runs_list_and_show(tmp_path, home, run_cli, summary, journal_at) -> None:
    tasks = write_tasks(tmp_path, a=0, b=1, c=0)
    first = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"])
    assert first.returncode == 1, first.output
    first_id = summary(first.stdout, "Run ID:")
    good = tmp_path / "good"
    good.mkdir()
    (good / "x.sh").write_text("true\n")
    second = run_cli(["-T", str(good), "-C", "bash @TASK@", "-r"])
    assert second.returncode == 0, second.output
    second_id = summary(second.stdout, "Run ID:")

    listed = run_cli(["runs", "list"])
    assert listed.returncode == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "STARTED", "ENDED", "STATE", "TASKS", "SUCCEEDED", "FAILED",
                                "CANCELLED", "PENDING", "COMMAND"]
    rows = [line.split() for line in lines[1:]]
    assert [(row[0], *row[5:]) for row in rows] == [
        (second_id, "finished", "1", "1", "0", "0", "0", "bash", "@TASK@"),
        (first_id, "finished", "3", "2", "1", "0", "0", "bash", "@TASK@"),
    ]
    assert run_cli(["runs", "list", "--limit", "1"]).stdout.splitlines()[1].split()[0] == second_id

    shown = run_cli(["runs", "show", first_id])
    assert shown.returncode == 0, shown.output
    head, table = shown.stdout.split("\n\n", 1)
    assert f"Run ID:     {first_id}" in head.splitlines()
    assert "State:      finished" in head.splitlines()
    assert "Exit code:  1" in head.splitlines()
    assert "Tasks:      3 (succeeded 2, failed 1, cancelled 0, pending 0)" in head.splitlines()
    assert "  Command: bash @TASK@" in head.splitlines()
    assert "  max: 2" in head.splitlines()
    assert f"  TasksDir: [\"{tasks}\"]" in head.splitlines()
    assert [line.split() for line in table.splitlines()] == [
        ["POS", "JOB", "STATE", "ATTEMPTS", "EXIT", "LAST", "ERROR", "TASK"],
        ["1", "1", "succeeded", "1", "0", str(tasks / "a.sh")],
        ["2", "2", "dead", "1", "1", "Exit", "code", "1", str(tasks / "b.sh")],
        ["3", "3", "succeeded", "1", "0", str(tasks / "c.sh")],
    ]
    as_json = json.loads(run_cli(["runs", "show", "last", "--json"]).stdout)
    assert as_json["run"]["id"] == second_id
    assert as_json["run"]["counts"] == {"tasks": 1, "succeeded": 1, "failed": 0, "cancelled": 0, "pending": 0}
    assert [(task["position"], task["state"], task["exit_code"]) for task in as_json["tasks"]] == [
        (1, "succeeded", 0)
    ]

    unknown = run_cli(["runs", "show", "nope"])
    assert unknown.returncode == 2
    assert unknown.stderr == (
        f"parallelr: error: unknown run 'nope' (journal {journal_at}); see 'parallelr runs list'\n"
    )
    assert database(home).exists() == (journal_at == str(database(home)))


def test_arguments_file_tasks_are_stored(tmp_path, run_cli) -> None:
    arguments = tmp_path / "hosts.txt"
    arguments.write_text("alpha 1\nbeta 2\n")
    result = run_cli(["-A", str(arguments), "-S", "space", "-E", "HOST,N", "-C", "true @ARG_1@", "-r"])
    assert result.returncode == 0, result.output
    shown = json.loads(run_cli(["runs", "show", "last", "--json"]).stdout)
    assert [(task["source"], task["arguments"], task["env"], task["line_number"], task["argv"])
            for task in shown["tasks"]] == [
        (f"{arguments}:1", ["alpha", "1"], [["HOST", "alpha"], ["N", "1"]], 1, ["true", "alpha"]),
        (f"{arguments}:2", ["beta", "2"], [["HOST", "beta"], ["N", "2"]], 2, ["true", "beta"]),
    ]


def test_stop_limits_and_interrupt_states(tmp_path, home, run_cli, janitor, wait_until) -> None:
    failing = write_tasks(tmp_path, **{f"f{n}": 1 for n in range(1, 8)})
    stopped = run_cli(["-T", str(failing), "-C", "bash @TASK@", "-r", "-m", "1", "--enable-stop-limits"])
    assert stopped.returncode == 1, stopped.output
    (run,) = json.loads(run_cli(["runs", "list", "--json"]).stdout)
    assert (run["state"], run["states"]) == ("stopped", {"dead": 5, "cancelled": 2})

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "s1.sh").write_text(f"touch {tmp_path / 'started'}\nsleep 30\n")
    (slow / "s2.sh").write_text("true\n")
    argv = [sys.executable, "-m", "parallelr", "-T", str(slow), "-C", "bash @TASK@", "-r", "-m", "1"]
    runner = janitor.popen(argv, home, stdout=open(tmp_path / "out", "w"), stderr=open(tmp_path / "err", "w"))
    wait_until(lambda: (tmp_path / "started").exists(), 20, "the slow task to start")
    busy = run_cli(["--resume", "last", "-r"])
    assert busy.returncode == 2
    assert busy.stderr.startswith("parallelr: error: run ")
    assert f"is still running (PID {runner.pid} on " in busy.stderr
    assert busy.stderr.endswith(f"; stop it with -k {runner.pid} first\n")
    listed = json.loads(run_cli(["runs", "list", "--json"]).stdout)
    assert listed[0]["state"] == "running"

    runner.send_signal(signal.SIGINT)
    assert runner.wait(20) == 130
    interrupted = json.loads(run_cli(["runs", "list", "--json"]).stdout)[0]
    assert (interrupted["state"], interrupted["exit_code"]) == ("interrupted", 130)
    assert interrupted["states"] == {"cancelled": 2}


def test_no_journal_never_touches_the_database(tmp_path, home, run_cli, user_config) -> None:
    tasks = write_tasks(tmp_path, a=0)
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-journal"])
    assert result.returncode == 0, result.output
    assert not database(home).exists()
    assert "Run ID:" in result.stdout  # the run still has an ID (logs, --list-workers)

    assert run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"]).returncode == 0
    path = database(home)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    again = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-journal"])
    assert again.returncode == 0, again.output
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in path.parent.glob("state.db*")) == ["state.db"]

    user_config("journal:\n  enabled: false\n")
    disabled = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert disabled.returncode == 0, disabled.output
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert ran(tmp_path) == ["a", "a", "a", "a"]


def unusable_journal_error(path: Path, reason: str) -> str:
    return (f"parallelr: error: cannot use the journal {path}: {reason}; "
            "run with --no-journal to run without it\n")


def test_corrupt_database(tmp_path, home, run_cli) -> None:
    tasks = write_tasks(tmp_path, a=0)
    path = database(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not SQLite " * 100)
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert result.returncode == 1
    assert result.stderr == unusable_journal_error(path, "file is not a database")
    assert ran(tmp_path) == []
    assert not (home / "parallelr" / "pids" / "parallelr.pids").read_text().strip()  # registry cleaned
    ok = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-journal"])
    assert ok.returncode == 0, ok.output
    assert ran(tmp_path) == ["a"]


def test_locked_database(tmp_path, home, run_cli) -> None:
    tasks = write_tasks(tmp_path, a=0)
    assert run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"]).returncode == 0
    holder = sqlite3.connect(database(home), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        quick = {"PARALLELR_JOURNAL_BUSY_TIMEOUT": "0.2"}
        result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"], env=quick)
        assert result.returncode == 1
        assert result.stderr == unusable_journal_error(database(home), "database is locked")
        assert ran(tmp_path) == ["a"]  # only the first run's
        ok = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-journal"], env=quick)
        assert ok.returncode == 0, ok.output
        assert ran(tmp_path) == ["a", "a"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_unusable_journal_path(tmp_path, run_cli, user_config) -> None:
    tasks = write_tasks(tmp_path, a=0)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be\n")
    user_config(f"journal:\n  path: {blocker / 'state.db'}\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert result.returncode == 1
    assert result.stderr == unusable_journal_error(blocker / "state.db", "not a directory")
    assert ran(tmp_path) == []


def test_a_postgresql_journal_that_refuses_stops_the_run_before_any_task(tmp_path, run_cli, user_config):
    tasks = write_tasks(tmp_path, a=0)
    url = f"postgresql://parallelr:secret@127.0.0.1:{free_port()}/journal"  # nothing listens there
    user_config(f"journal:\n  path: {url}\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert result.returncode == 1
    shown = url.replace("secret", "***")
    prefix = f"parallelr: error: cannot use the journal {shown}: connection failed: "
    assert result.stderr.startswith(prefix), result.stderr
    assert result.stderr.endswith("; run with --no-journal to run without it\n"), result.stderr
    assert "Connection refused" in result.stderr and result.stderr.count("\n") == 1
    assert "secret" not in result.output
    assert ran(tmp_path) == []
    assert run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--no-journal"]).returncode == 0
    assert ran(tmp_path) == ["a"]


@pytest.mark.parametrize("how", ["console script", "--preset"])
def test_ptasker_keeps_its_own_journal(tmp_path, home, run_cli, how) -> None:
    tasks = write_tasks(tmp_path, a=0)
    args = ["-T", str(tasks), "-C", "bash @TASK@", "-r"]
    result = run_cli(["--preset", "ptasker", *args]) if how == "--preset" else run_cli(args, prog="ptasker")
    assert result.returncode == 0, result.output
    assert database(home, "ptasker").exists()
    assert not database(home).exists()
    (run,) = json.loads(run_cli(["runs", "list", "--json"], prog="ptasker").stdout)
    assert (run["app_name"], run["state"]) == ("ptasker", "finished")
