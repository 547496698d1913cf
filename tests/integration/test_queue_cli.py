"""``queuectl`` (= ``parallelr queue``) as users type it: the READMEs' commands word for word, the
fields of a job, ``--file``, ``config``, ``purge``/``pause``/``cancel``/``dlq retry``, the choice
of the store, and the batch runner's ``--enqueue``. Every command runs as a real subprocess with
HOME at a temp dir; commands that do not depend on each other run at the same time.

Every test of what the queue does runs against both stores (:mod:`store_support`): a SQLite file
and a PostgreSQL database of its own, read directly with ``store_target.sql``. The choice of a
SQLite file (``--db`` paths, the default under HOME, mode 0600) is SQLite's alone; a PostgreSQL URL
by ``--db`` or ``$QUEUECTL_DB_PATH`` has its own test."""

from __future__ import annotations

import contextlib
import datetime
import json
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
from conftest import CliResult, cli_env
from store_support import StoreTarget

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
PARALLELR = (sys.executable, "-m", "parallelr")
DB_VARIABLE = "QUEUECTL_DB_PATH"
RULE = "=" * 50
FINISHED = ("succeeded", "dead", "cancelled")


class Queue:
    """``queuectl`` against one store (``$QUEUECTL_DB_PATH``), with HOME at the test's home."""

    def __init__(self, home: Path, cwd: Path, store: StoreTarget) -> None:
        self.home = home
        self.cwd = cwd
        self.store = store
        self.db = store.location  # what --db and $QUEUECTL_DB_PATH take: a path or a URL

    def env(self, extra: Optional[Dict[str, Optional[str]]] = None) -> Dict[str, str]:
        env = cli_env(self.home, {DB_VARIABLE: self.db})
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def __call__(self, *args: str, input: Optional[str] = None, cwd: Optional[Path] = None,
                 env: Optional[Dict[str, Optional[str]]] = None, prog: Sequence[str] = QUEUECTL,
                 umask: int = -1, timeout: float = 60) -> CliResult:
        completed = subprocess.run(
            [*prog, *args], env=self.env(env), input=input, capture_output=True, encoding="utf-8",
            errors="surrogateescape", timeout=timeout, cwd=str(cwd or self.cwd), umask=umask,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def many(self, *calls: Any) -> List[CliResult]:
        """Run independent calls at once; each is a tuple of arguments, optionally ending with a dict
        of keywords (``("list", {"env": ...})`` or ``(("list",), {"env": ...})``)."""
        def one(call: Any) -> CliResult:
            keywords: Dict[str, Any] = {}
            if call and isinstance(call[-1], dict):
                call, keywords = call[:-1], call[-1]
                if len(call) == 1 and isinstance(call[0], tuple):
                    call = call[0]
            return self(*call, **keywords)

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(one, calls))

    def ok(self, *args: str, **kwargs: Any) -> CliResult:
        result = self(*args, **kwargs)
        assert result.returncode == 0, (args, result.output)
        return result

    def jobs(self, *args: str) -> List[Dict[str, Any]]:
        """``list --json [ARGS]``, parsed."""
        return json.loads(self.ok("list", "--json", *args).stdout)

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[Any]:
        return self.store.sql(sql, params)

    def finished(self) -> int:
        marks = ", ".join("?" * len(FINISHED))
        return self.query(f"SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state IN ({marks})",
                          FINISHED)[0][0]

    def start_worker(self, janitor: Any, *args: str, log: Path) -> subprocess.Popen:
        handle = log.open("w", encoding="utf-8")
        try:
            return janitor.popen([*QUEUECTL, "worker", "start", *args], self.home,
                                 env={DB_VARIABLE: self.db}, cwd=str(self.cwd), stdout=handle,
                                 stderr=subprocess.STDOUT)
        finally:
            handle.close()

    def run_worker(self, janitor: Any, wait_until: Any, finished: int, *args: str,
                   log: Optional[Path] = None, timeout: float = 30) -> str:
        """Start ``worker start ARGS``, wait until ``finished`` jobs are finished, SIGTERM it;
        returns its log (it must have stopped with 0)."""
        log = log or self.cwd / "worker.log"
        worker = self.start_worker(janitor, *args, log=log)
        wait_until(lambda: self.finished() >= finished or worker.poll() is not None, timeout,
                   f"{finished} finished job(s)")
        assert worker.poll() is None, log.read_text(encoding="utf-8")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text(encoding="utf-8")
        return log.read_text(encoding="utf-8")


@pytest.fixture
def queue(home: Path, tmp_path: Path, store_target: StoreTarget) -> Queue:
    """queuectl on this test's store: once on a SQLite file, once on a PostgreSQL database."""
    return Queue(home, tmp_path, store_target)


def sqlite_file(path: Path) -> StoreTarget:
    return StoreTarget("sqlite", str(path))


@pytest.fixture
def file_queue(home: Path, tmp_path: Path) -> Queue:
    """queuectl on a SQLite file, for the tests of how a file is chosen."""
    return Queue(home, tmp_path, sqlite_file(tmp_path / "queue.db"))


def one_error_line(result: CliResult) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert result.returncode in (1, 2), result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def status_lines(result: CliResult) -> List[str]:
    assert result.returncode == 0, result.output
    return result.stdout.splitlines()


def expected_status(pending: int, processing: int, completed: int, failed: int, dead: int) -> List[str]:
    """The first README's block, line by line (its alignment: label in 12, count in 7)."""
    total = pending + processing + completed + failed + dead

    def percent(part: int) -> str:
        return f"{100.0 * part / total if total else 0.0:.1f}% ({part}/{total})"

    return [
        "Job Queue Status",
        RULE,
        "",
        "Jobs by State:",
        f"  {'Pending:':<12}{pending:>7}",
        f"  {'Processing:':<12}{processing:>7}",
        f"  {'Completed:':<12}{completed:>7}",
        f"  {'Failed:':<12}{failed:>7}",
        f"  {'Dead (DLQ):':<12}{dead:>7}",
        "-" * 50,
        f"  {'Total:':<12}{total:>7}",
        "",
        "Completion Rate:",
        f"  {percent(completed)}",
        "",
        "Permanent Failures:",
        f"  {percent(dead)}",
        "",
        f"Active/Pending Work: {pending + processing} job(s)",
    ]


def table(result: CliResult) -> List[List[str]]:
    """The rows (split on whitespace) of a table printed by ``list``/``dlq list``, header first."""
    assert result.returncode == 0, result.output
    return [line.split() for line in result.stdout.splitlines()]


# -- the READMEs' commands --------------------------------------------------------------------------
def test_readme_quick_start_then_worker_status_dlq_and_purge(queue: Queue, janitor, wait_until) -> None:
    hello, done, failing, mine, config = queue.many(
        ("enqueue", '{"command":"echo Hello World"}'),
        ("enqueue", '{"command":"sleep 0.3 && echo Done"}'),
        ("enqueue", '{"command":"exit 1"}'),
        ("enqueue", '{"id":"my-job-1","command":"echo mine"}'),
        ("config", "set", "backoff-max", "0"),  # failed attempts are retried at once
    )
    assert config.returncode == 0, config.output
    for result in (hello, done, failing):
        assert result.returncode == 0, result.output
        key = result.stdout.strip()
        assert result.stdout == key + "\n"
        assert str(uuid.UUID(key)) == key  # a generated ID is a UUID
    assert mine.returncode == 0 and mine.stdout == "my-job-1\n", mine.output
    assert len({hello.stdout, done.stdout, failing.stdout}) == 3

    before, listed = queue.many(("status",), ("list",))
    lines = status_lines(before)
    assert lines[:19] == expected_status(4, 0, 0, 0, 0)
    assert lines[-1] == RULE
    assert "  Pending:          4" in lines  # the README's alignment
    rows = table(listed)
    assert rows[0] == ["ID", "STATE", "ATTEMPTS", "PRIORITY", "QUEUE", "UPDATED", "COMMAND"]
    assert sorted(row[0] for row in rows[1:]) == sorted(
        [hello.stdout.strip(), done.stdout.strip(), failing.stdout.strip(), "my-job-1"])
    assert {row[1] for row in rows[1:]} == {"pending"}

    log = queue.run_worker(janitor, wait_until, 4, "--count", "2")
    assert "Worker-1: picked job" in log and "Worker-2: picked job" in log  # two slots worked
    assert "job my-job-1 completed successfully" in log
    assert f"job {failing.stdout.strip()} failed (attempt 3: exit code 1), moving to DLQ" in log

    status, completed, dead, dlq, show, young = queue.many(
        ("status",), ("list", "--state", "completed"), ("list", "--state", "dead"), ("dlq", "list"),
        ("show", "my-job-1"), ("purge", "--state", "completed", "--older-than", "7d"),
    )
    lines = status_lines(status)
    assert lines[:19] == expected_status(0, 0, 3, 0, 1)
    assert "  Completed:        3" in lines and "  Dead (DLQ):       1" in lines
    assert "  75.0% (3/4)" in lines and "  25.0% (1/4)" in lines
    assert "Active/Pending Work: 0 job(s)" in lines
    rows = table(completed)
    assert sorted(row[0] for row in rows[1:]) == sorted(
        [hello.stdout.strip(), done.stdout.strip(), "my-job-1"])
    assert {(row[1], row[2]) for row in rows[1:]} == {("completed", "1/3")}
    rows = table(dead)
    assert [(row[0], row[1], row[2]) for row in rows[1:]] == [(failing.stdout.strip(), "dead", "3/3")]
    rows = table(dlq)
    assert rows[0] == ["ID", "ATTEMPTS", "EXIT", "DIED", "LAST", "ERROR", "COMMAND"]
    assert len(rows) == 2 and rows[1][:3] == [failing.stdout.strip(), "3/3", "1"]
    assert rows[1][-2:] == ["exit", "1"]
    assert show.returncode == 0 and "  State:      completed" in show.stdout, show.output
    assert young.returncode == 0 and young.stdout == "Purged 0 completed job(s) older than 7d\n", young.output

    retried = queue.ok("dlq", "retry", "--all")
    assert retried.stdout == "Retrying 1 job(s): pending again with attempts 0\n"
    purged, pending, again = queue.many(("purge", "--state", "completed"), ("list", "--state", "pending"),
                                        ("dlq", "list"))
    assert [row[:3] for row in table(pending)[1:]] == [[failing.stdout.strip(), "pending", "0/3"]]
    assert again.returncode == 0 and again.stdout == "The dead letter queue is empty\n", again.output
    assert purged.returncode == 0 and purged.stdout == "Purged 3 completed job(s)\n", purged.output


def test_list_json_limit_and_queue(queue: Queue) -> None:
    lines = [
        {"id": "j1", "command": "echo one", "queue": "alpha", "priority": 2, "timeout": 1.5},
        {"id": "j2", "command": "echo two"},
        {"id": "j3", "command": "echo three", "queue": "alpha", "max_retries": 0},
    ]
    queue.ok("enqueue", "--file", "-", input="".join(json.dumps(line) + "\n" for line in lines))
    assert queue.ok("enqueue", "--queue", "beta", '{"id":"j4","command":"true"}').stdout == "j4\n"
    everything, limited, alpha, text, beta = queue.many(
        ("list", "--json"), ("list", "--json", "--limit", "2"), ("list", "--json", "--queue", "alpha"),
        ("list", "--queue", "alpha", "--limit", "1"), ("list", "--json", "--queue", "beta"),
    )
    jobs = json.loads(everything.stdout)
    assert isinstance(jobs, list) and [job["id"] for job in jobs] == ["j1", "j2", "j3", "j4"]
    for job in jobs:
        for name in ("attempts", "max_retries", "priority"):
            assert type(job[name]) is int, (name, job)
        assert job["state"] == "pending"
        assert job["exit_code"] is None
    assert [(job["queue"], job["priority"], job["max_retries"]) for job in jobs] == [
        ("alpha", 2, 3), ("default", 0, 3), ("alpha", 0, 0), ("beta", 0, 3)]
    assert jobs[0]["timeout"] == 1.5 and type(jobs[0]["timeout"]) is float
    assert jobs[1]["timeout"] is None
    assert [job["id"] for job in json.loads(limited.stdout)] == ["j1", "j2"]
    assert [job["id"] for job in json.loads(alpha.stdout)] == ["j1", "j3"]
    assert [row[0] for row in table(text)[1:]] == ["j1"]
    assert [job["id"] for job in json.loads(beta.stdout)] == ["j4"]


def test_show_and_logs(queue: Queue, janitor, wait_until) -> None:
    lines = [
        {"id": "talks", "command": "echo to-stdout; echo to-stderr >&2"},
        {"id": "breaks", "command": "echo partial; echo boom >&2; exit 3", "max_retries": 1},
        {"id": "later", "command": "echo never", "delay": 3600},
    ]
    queue.ok("enqueue", "--file", "-", input="".join(json.dumps(line) + "\n" for line in lines))
    queue.run_worker(janitor, wait_until, 2)
    show, as_json, talks, breaks, later = queue.many(
        ("show", "talks"), ("show", "talks", "--json"), ("logs", "talks"), ("logs", "breaks"),
        ("logs", "later"),
    )
    assert show.returncode == 0, show.output
    lines = show.stdout.splitlines()
    assert lines[0] == "Job talks"
    assert "  State:      completed" in lines
    assert "  Command:    echo to-stdout; echo to-stderr >&2" in lines
    assert "Attempts (1):" in lines
    assert any(line.startswith("  #1 SUCCESS, exit code 0: ") for line in lines), lines
    assert lines[lines.index("     stdout (tail):") + 1] == "       to-stdout"
    assert lines[lines.index("     stderr (tail):") + 1] == "       to-stderr"

    data = json.loads(as_json.stdout)
    assert (data["id"], data["state"], data["attempts"], data["exit_code"]) == ("talks", "completed", 1, 0)
    [attempt] = data["attempts_detail"]
    assert (attempt["attempt"], attempt["status"], attempt["exit_code"]) == (1, "SUCCESS", 0)
    assert (attempt["stdout"], attempt["stderr"]) == ("to-stdout\n", "to-stderr\n")

    assert (talks.returncode, talks.stdout, talks.stderr) == (0, "to-stdout\n", "to-stderr\n")
    assert (breaks.returncode, breaks.stdout, breaks.stderr) == (0, "partial\n", "boom\n")
    assert later.returncode == 1 and later.stdout == "", later.output
    assert "has not run yet" in one_error_line(later)

    retried = queue.ok("dlq", "retry", "breaks")  # the README's dlq retry <JOB_ID>
    assert retried.stdout == "Retrying 1 job(s): pending again with attempts 0\n"
    assert [(job["id"], job["attempts"]) for job in queue.jobs("--state", "pending")] == [("breaks", 0)]


# -- --file -------------------------------------------------------------------------------------------
def test_enqueue_file_is_one_transaction_and_stdin_works(queue: Queue, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id":"f1","command":"true"}\n{"id":"f2","command":"true"}\n{"id":"f3"}\n'
                   '{"id":"f4","command":"true"}\n', encoding="utf-8")
    good = tmp_path / "good.jsonl"
    good.write_text('{"command":"echo a"}\n\n{"command":"echo b"}\n   \n{"command":"echo c"}\n',
                    encoding="utf-8")
    refused, from_file, from_stdin = queue.many(
        ("enqueue", "--file", str(bad)),
        ("enqueue", "--file", "good.jsonl"),
        ("enqueue", "-f", "-", {"input": '\n{"id":"s1","command":"true"}\n\n{"id":"s2","command":"true"}\n'}),
    )
    assert "line 3" in one_error_line(refused)
    assert refused.stdout == ""
    assert from_file.returncode == 0, from_file.output
    keys = from_file.stdout.splitlines()
    assert len(keys) == 3 and all(str(uuid.UUID(key)) == key for key in keys)
    assert from_file.stderr == "Enqueued 3 job(s)\n"
    assert from_stdin.returncode == 0 and from_stdin.stdout == "s1\ns2\n", from_stdin.output
    assert from_stdin.stderr == "Enqueued 2 job(s)\n"
    stored = {job["id"] for job in queue.jobs()}
    assert stored == {*keys, "s1", "s2"}  # nothing of bad.jsonl


# -- a job's fields -----------------------------------------------------------------------------------
def epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def utc(*fields: int) -> float:
    return datetime.datetime(*fields, tzinfo=datetime.timezone.utc).timestamp()


def test_job_fields_are_stored(queue: Queue) -> None:
    lines = [
        {"id": "p-int", "command": "true", "priority": 5},
        {"id": "p-high", "command": "true", "priority": "high"},
        {"id": "p-medium", "command": "true", "priority": "medium"},
        {"id": "p-low", "command": "true", "priority": "low"},
        {"id": "at-z", "command": "true", "run_at": "2099-01-02T03:04:05Z"},
        {"id": "at-offset", "command": "true", "run_at": "2099-01-02T03:04:05+02:00"},
        {"id": "at-naive", "command": "true", "run_at": "2099-01-02T03:04:05"},
        {"id": "delayed", "command": "true", "delay": 3600},
        {"id": "timed", "command": "true", "timeout": 2.5},
        {"id": "needs", "command": "true", "depends_on": ["p-int", "timed"]},
        {"id": "queued", "command": "true", "queue": "reports"},
        {"id": "withenv", "command": "true", "env": {"A_B": "x y", "EMPTY": ""}},
        {"id": "hyphens", "command": "true", "max-retries": 7, "depends-on": ["p-int"],
         "run-at": "2099-01-01"},
    ]
    started = time.time()
    # run_at without an offset is the enqueuer's local time: here UTC+3
    queue.ok("enqueue", "--file", "-", input="".join(json.dumps(line) + "\n" for line in lines),
             env={"TZ": "<+03>-3"})
    listed, needs, scheduled, waiting = queue.many(
        ("list", "--json"), ("show", "needs", "--json"), ("list", "--json", "--state", "scheduled"),
        ("list", "--json", "--state", "waiting"),
    )
    jobs = {job["id"]: job for job in json.loads(listed.stdout)}
    assert list(jobs) == [line["id"] for line in lines]
    assert [jobs[key]["priority"] for key in ("p-int", "p-high", "p-medium", "p-low")] == [5, 10, 0, -10]
    assert jobs["at-z"]["state"] == "scheduled" and epoch(jobs["at-z"]["run_at"]) == utc(2099, 1, 2, 3, 4, 5)
    assert jobs["at-offset"]["state"] == "scheduled"
    assert epoch(jobs["at-offset"]["run_at"]) == utc(2099, 1, 2, 1, 4, 5)
    assert jobs["at-naive"]["state"] == "scheduled"
    assert epoch(jobs["at-naive"]["run_at"]) == utc(2099, 1, 2, 0, 4, 5)
    assert jobs["delayed"]["state"] == "scheduled"
    assert started + 3600 - 1 <= epoch(jobs["delayed"]["run_at"]) <= time.time() + 3600 + 1
    assert jobs["timed"]["timeout"] == 2.5 and jobs["timed"]["state"] == "pending"
    assert jobs["needs"]["state"] == "waiting"
    assert json.loads(needs.stdout)["depends_on"] == [{"id": "p-int", "state": "pending"},
                                                      {"id": "timed", "state": "pending"}]
    assert jobs["queued"]["queue"] == "reports" and jobs["p-int"]["queue"] == "default"
    assert jobs["withenv"]["env"] == {"A_B": "x y", "EMPTY": ""}
    assert (jobs["hyphens"]["max_retries"], jobs["hyphens"]["state"]) == (7, "waiting")
    assert {job["cwd"] for job in jobs.values()} == {str(queue.cwd)}
    assert [job["id"] for job in json.loads(scheduled.stdout)] == ["at-z", "at-offset", "at-naive", "delayed"]
    assert [job["id"] for job in json.loads(waiting.stdout)] == ["needs", "hyphens"]


def test_job_fields_take_effect_in_the_worker(queue: Queue, tmp_path: Path, janitor, wait_until) -> None:
    work = tmp_path / "work"
    (work / "sub dir").mkdir(parents=True)
    order = tmp_path / "order.txt"
    lines = [
        {"id": "low", "command": f"echo low >> '{order}'", "priority": "low"},
        {"id": "zero", "command": f"echo zero >> '{order}'"},
        {"id": "high", "command": f"echo high >> '{order}'", "priority": "high"},
        {"id": "five", "command": f"echo five >> '{order}'", "priority": 5},
        {"id": "env", "command": 'echo "V=$MY_VAR"', "env": {"MY_VAR": "hello world"}, "priority": -20},
        {"id": "cwd", "command": "pwd", "cwd": "sub dir", "priority": -20},
        {"id": "here", "command": "pwd", "priority": -20},
        {"id": "slow", "command": "sleep 10", "timeout": 0.5, "max_retries": 1, "priority": -20},
        {"id": "after", "command": "echo after", "depends_on": ["env"], "priority": 100},
    ]
    queue.ok("enqueue", "--file", "-", input="".join(json.dumps(line) + "\n" for line in lines), cwd=work)
    queue.run_worker(janitor, wait_until, len(lines), "--count", "1")
    env, cwd, here, slow, after = queue.many(("logs", "env"), ("logs", "cwd"), ("logs", "here"),
                                             ("show", "slow", "--json"), ("logs", "after"))
    assert order.read_text().split() == ["high", "five", "zero", "low"]  # higher priority first
    assert env.stdout == "V=hello world\n", env.output
    assert cwd.stdout == f"{work / 'sub dir'}\n", cwd.output  # relative to where enqueue ran
    assert here.stdout == f"{work}\n", here.output
    data = json.loads(slow.stdout)
    assert data["state"] == "dead"
    [attempt] = data["attempts_detail"]
    assert attempt["status"] == "TIMEOUT" and attempt["duration"] < 5, attempt
    assert after.stdout == "after\n", after.output  # ran once its dependency completed


# -- config -------------------------------------------------------------------------------------------
def test_config_set_get_list_and_defaults(queue: Queue, tmp_path: Path) -> None:
    listing, by_hyphen, by_underscore, timeout, before = queue.many(
        ("config", "list"), ("config", "get", "max-retries"), ("config", "get", "max_retries"),
        ("config", "get", "job_timeout"), ("enqueue", '{"id":"before","command":"true"}'),
    )
    assert before.returncode == 0, before.output
    assert listing.returncode == 0, listing.output
    for line in ("max-retries = 3 (default)", "backoff-base = 2 (default)", "job-timeout = 300 (default)",
                 "lease-seconds = 30 (default)", "heartbeat-seconds = 10 (default)"):
        assert line in listing.stdout.splitlines(), listing.stdout
    assert [r.stdout for r in (by_hyphen, by_underscore, timeout)] == ["3\n", "3\n", "300\n"]

    first = queue.many(("config", "set", "max-retries", "5"), ("config", "set", "backoff_base", "3"))
    assert [r.stdout for r in first] == ["max-retries = 5\n", "backoff-base = 3\n"], first
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    # in the store, not in a per-home file: another HOME on the same store sees them
    retries, base, enqueued = queue.many(
        (("config", "get", "max_retries"), {"env": {"HOME": str(other_home)}}),
        ("config", "get", "backoff-base"),
        ("enqueue", "--file", "-", {"input": '{"id":"after","command":"true"}\n'
                                             '{"id":"own","command":"true","max_retries":1}\n'}),
    )
    assert (retries.stdout, base.stdout) == ("5\n", "3\n"), (retries.output, base.output)
    assert enqueued.returncode == 0, enqueued.output
    jobs = {job["id"]: job["max_retries"] for job in queue.jobs()}
    assert jobs == {"before": 3, "after": 5, "own": 1}  # the default applies to new jobs only


# -- pause, resume, cancel ------------------------------------------------------------------------------
def test_pause_resume_and_cancel(queue: Queue) -> None:
    queue.ok("enqueue", "--file", "-", input='{"id":"c1","command":"true"}\n{"id":"c2","command":"true"}\n')
    # one pause after the other: status lists the paused queues in the order the store returns
    # them, which is the order they were paused in (the store's query has no ORDER BY)
    paused, cancelled = queue.many(("pause",), ("cancel", "c1"))
    paused_one = queue("pause", "--queue", "reports")
    assert paused.stdout == "Paused every queue\n", paused.output
    assert paused_one.stdout == "Paused queue reports\n", paused_one.output
    assert cancelled.returncode == 0 and cancelled.stdout == "Cancelled job c1\n", cancelled.output
    status, jobs = queue.many(("status",), ("list", "--json"))
    assert "Paused: every queue, reports (queuectl resume)" in status.stdout.splitlines(), status.stdout
    states = {job["id"]: job["state"] for job in json.loads(jobs.stdout)}
    assert states == {"c1": "cancelled", "c2": "pending"}
    resumed_one, resumed = queue.many(("resume", "--queue", "reports"), ("resume",))
    assert resumed_one.stdout == "Resumed queue reports\n", resumed_one.output
    assert resumed.stdout == "Resumed every queue\n", resumed.output


# -- the store -----------------------------------------------------------------------------------------
def test_store_is_chosen_by_db_option_or_variable(file_queue: Queue, tmp_path: Path, home: Path) -> None:
    queue = file_queue
    stores = tmp_path / "stores"
    stores.mkdir()
    results = queue.many(
        (("enqueue", '{"id":"by-variable","command":"true"}'), {"env": {DB_VARIABLE: str(stores / "var.db")},
                                                               "umask": 0}),
        (("--db", str(stores / "before.db"), "enqueue", '{"id":"db-before","command":"true"}'),
         {"env": {DB_VARIABLE: None}, "umask": 0}),
        (("enqueue", '{"id":"db-after","command":"true"}', "--db", str(stores / "after.db")),
         {"env": {DB_VARIABLE: None}, "umask": 0}),
        (("--db", str(stores / "wins.db"), "enqueue", '{"id":"db-wins","command":"true"}'),
         {"env": {DB_VARIABLE: str(stores / "loses.db")}, "umask": 0}),
        (("enqueue", '{"id":"relative","command":"true"}', "--db", "rel.db"),
         {"env": {DB_VARIABLE: None}, "cwd": stores, "umask": 0}),
        (("enqueue", '{"id":"default","command":"true"}'), {"env": {DB_VARIABLE: None}, "umask": 0}),
    )
    assert [r.returncode for r in results] == [0] * 6, [r.output for r in results]
    expected = {"var.db": "by-variable", "before.db": "db-before", "after.db": "db-after",
                "wins.db": "db-wins", "rel.db": "relative"}
    default = home / "parallelr" / "state.db"
    for path, key in [*((stores / name, key) for name, key in expected.items()), (default, "default")]:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
        assert sqlite_file(path).sql("SELECT name FROM jobs WHERE queue IS NOT NULL") == [(key,)]
    assert not (stores / "loses.db").exists()
    assert not Path(queue.db).exists()
    # both spellings read the same store back
    shown = queue.many(("list", "--db", str(stores / "before.db")),
                       ("--db", str(stores / "after.db"), "list"))
    assert shown[0].returncode == 0 and "db-before" in shown[0].stdout, shown[0].output
    assert shown[1].returncode == 0 and "db-after" in shown[1].stdout, shown[1].output


def test_a_postgresql_url_is_taken_by_db_option_or_variable(postgres_url: str, tmp_path: Path,
                                                            home: Path) -> None:
    queue = Queue(home, tmp_path, StoreTarget("postgresql", postgres_url))  # $QUEUECTL_DB_PATH is the URL
    file_store = tmp_path / "file.db"
    unset = {"env": {DB_VARIABLE: None}}
    results = queue.many(  # four first opens of an empty database at once: one creates the schema
        ("enqueue", '{"id":"by-variable","command":"true"}'),
        (("--db", postgres_url, "enqueue", '{"id":"db-before","command":"true"}'), unset),
        (("enqueue", '{"id":"db-after","command":"true"}', "--db", postgres_url), unset),
        (("--db", postgres_url, "enqueue", '{"id":"db-wins","command":"true"}'),
         {"env": {DB_VARIABLE: str(tmp_path / "loses.db")}}),
    )
    assert [(r.returncode, r.stdout) for r in results] == [
        (0, "by-variable\n"), (0, "db-before\n"), (0, "db-after\n"), (0, "db-wins\n")], [
        r.output for r in results]
    file_wins = queue("enqueue", '{"id":"file-wins","command":"true"}', "--db", str(file_store))
    assert file_wins.returncode == 0, file_wins.output  # a file given by --db wins over the URL
    assert sorted(name for (name,) in queue.query("SELECT name FROM jobs WHERE queue IS NOT NULL")) == [
        "by-variable", "db-after", "db-before", "db-wins"]
    assert sqlite_file(file_store).sql("SELECT name FROM jobs WHERE queue IS NOT NULL") == [("file-wins",)]
    assert queue.query("SELECT version FROM parallelr_schema") == [(5,)]
    # the URL is neither a file nor made absolute: no file appeared but the one named by --db
    assert not (tmp_path / "loses.db").exists() and not (home / "parallelr" / "state.db").exists()
    assert not [path for path in tmp_path.rglob("*") if "postgres" in path.name or "127.0.0.1" in path.name]
    shown = queue.many((("list", "--db", postgres_url), unset), (("--db", postgres_url, "list"), unset))
    for result in shown:
        assert result.returncode == 0, result.output
        assert sorted(row[0] for row in table(result)[1:]) == [
            "by-variable", "db-after", "db-before", "db-wins"]


def test_python_m_parallelr_queue_is_queuectl(queue: Queue) -> None:
    queue.ok("enqueue", "--file", "-", input='{"id":"a","command":"true"}\n{"id":"b","command":"false"}\n')
    ours, theirs = queue.many(("status",), ("queue", "status", {"prog": PARALLELR}))
    assert ours.returncode == 0 and theirs.returncode == 0, (ours.output, theirs.output)
    assert theirs.stdout == ours.stdout and "  Pending:          2" in ours.stdout.splitlines()


# -- the batch runner's --enqueue ----------------------------------------------------------------------
def test_batch_runner_enqueues_tasks_for_workers(queue: Queue, tmp_path: Path, run_cli, janitor,
                                                 wait_until) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text("echo task-a\n", encoding="utf-8")
    (tasks / "b.sh").write_text("echo task-b >&2\n", encoding="utf-8")
    arguments = tmp_path / "args.txt"
    arguments.write_text("one\n# a comment\ntwo words\n", encoding="utf-8")
    with ThreadPoolExecutor(max_workers=3) as pool:
        by_dir, by_args, no_enqueue = pool.map(lambda argv: run_cli(argv[1], env=argv[0]), [
            ({DB_VARIABLE: str(queue.db)}, ["-T", str(tasks), "-C", "bash @TASK@", "--enqueue"]),
            ({}, ["-A", str(arguments), "-E", "FOO", "-C", "echo @ARG@", "--enqueue", "--queue", "batch",
                  "-t", "42", "--db", str(queue.db)]),
            ({DB_VARIABLE: str(queue.db)}, ["-A", str(arguments), "-C", "echo @ARG@", "--queue", "batch"]),
        ])
    assert by_dir.returncode == 0, by_dir.output
    assert f"Enqueued 2 task(s) as jobs in queue default (store {queue.db})" in by_dir.stdout
    assert by_args.returncode == 0, by_args.output
    assert f"Enqueued 2 task(s) as jobs in queue batch (store {queue.db})" in by_args.stdout
    assert "--enqueue" in one_error_line(no_enqueue) and no_enqueue.returncode == 2

    jobs = queue.jobs()
    assert len(jobs) == 4 and {job["state"] for job in jobs} == {"pending"}
    default = sorted((job for job in jobs if job["queue"] == "default"), key=lambda job: job["command"])
    assert [(job["command"], job["timeout"], job["env"]) for job in default] == [
        (f"bash {tasks / 'a.sh'}", 600, {}), (f"bash {tasks / 'b.sh'}", 600, {})]
    batch = sorted((job for job in jobs if job["queue"] == "batch"), key=lambda job: job["env"]["FOO"])
    assert [(job["timeout"], job["env"]) for job in batch] == [
        (42, {"FOO": "one"}), (42, {"FOO": "two words"})]
    argvs = sorted(json.loads(argv) for (argv,) in queue.query("SELECT argv FROM jobs WHERE queue = 'batch'"))
    assert argvs == [["echo", "one"], ["echo", "two words"]]  # the same argv, no shell

    queue.run_worker(janitor, wait_until, 4, "--count", "2")
    expected = {f"bash {tasks / 'a.sh'}": ("task-a\n", ""), f"bash {tasks / 'b.sh'}": ("", "task-b\n"),
                "echo one": ("one\n", ""), "echo 'two words'": ("two words\n", "")}
    assert sorted(job["command"] for job in jobs) == sorted(expected)
    outputs = queue.many(*(("logs", job["id"]) for job in jobs))
    assert {job["command"]: (r.stdout, r.stderr) for job, r in zip(jobs, outputs)} == expected
    assert {job["state"] for job in queue.jobs()} == {"completed"}


def test_ptasker_enqueues_into_queuectls_default_store(tmp_path: Path, home: Path, run_cli) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text("echo a\n", encoding="utf-8")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "--enqueue"], prog="ptasker",
                     env={DB_VARIABLE: ""})
    store = home / "parallelr" / "state.db"  # queuectl's, not ~/ptasker's: one queue for both
    assert result.returncode == 0, result.output
    assert f"Enqueued 1 task(s) as jobs in queue default (store {store})" in result.stdout
    with contextlib.closing(sqlite3.connect(str(store))) as connection:
        rows = connection.execute("SELECT argv, state FROM jobs WHERE queue = 'default'").fetchall()
    assert [(json.loads(argv), state) for argv, state in rows] == [(["bash", str(tasks / "a.sh")], "pending")]
    assert not (home / "ptasker" / "state.db").exists()
