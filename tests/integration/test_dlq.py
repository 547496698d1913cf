"""Dead letters: a task whose last attempt failed is listed by ``dlq list`` and run again by
``dlq retry``; one that then succeeds leaves the list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

GATED = 'echo "{name} ran" >> {log}\nif [ -e {flag} ]; then exit 0; fi\necho "no flag" >&2\nexit 3\n'


def make_tasks(tmp_path: Path) -> Tuple[Path, Path, Path]:
    """t1 succeeds; t2 and t3 fail (exit 3) until their flag file exists."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t1.sh").write_text(f'echo "t1 ran" >> {tmp_path / "log"}\n')
    for name in ("t2", "t3"):
        (tasks / f"{name}.sh").write_text(GATED.format(name=name, log=tmp_path / "log", flag=tmp_path / name))
    return tasks, tasks / "t2.sh", tasks / "t3.sh"


def ran(tmp_path: Path) -> list:
    return (tmp_path / "log").read_text().split("\n")[:-1]


def first_run(tmp_path: Path, run_cli, summary) -> Tuple[str, Path, Path]:
    tasks, t2, t3 = make_tasks(tmp_path)
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "1"])
    assert result.returncode == 1, result.output
    return summary(result.stdout, "Run ID:"), t2, t3


def test_dlq_list_and_retry_all(tmp_path, run_cli, summary) -> None:
    run_id, t2, t3 = first_run(tmp_path, run_cli, summary)

    listed = run_cli(["dlq", "list"])
    assert listed.returncode == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["JOB", "RUN", "ATTEMPTS", "STATUS", "LAST", "ERROR", "TASK"]
    assert lines[1].split() == ["2", run_id, "1", "FAILED", "Exit", "code", "3", str(t2)]
    assert lines[2].split() == ["3", run_id, "1", "FAILED", "Exit", "code", "3", str(t3)]
    assert len(lines) == 3

    as_json = json.loads(run_cli(["dlq", "list", "--json"]).stdout)
    assert [(job["id"], job["run_id"], job["position"], job["state"], job["attempts"], job["last_status"],
             job["last_error"], job["source"]) for job in as_json] == [
        (2, run_id, 2, "dead", 1, "FAILED", "Exit code 3", str(t2)),
        (3, run_id, 3, "dead", 1, "FAILED", "Exit code 3", str(t3)),
    ]

    (tmp_path / "t2").touch()
    (tmp_path / "t3").touch()
    retried = run_cli(["dlq", "retry", "--all"])
    assert retried.returncode == 0, retried.output
    assert f"Retrying 2 dead task(s) of run {run_id}" in retried.stdout
    assert summary(retried.stdout, "Run ID:") == run_id
    assert summary(retried.stdout, "Total Tasks:") == "3"
    assert summary(retried.stdout, "Completed Successfully:") == "3"
    assert retried.stdout.rstrip().endswith("dlq retry: 2 of 2 task(s) succeeded, 0 did not")
    assert ran(tmp_path) == ["t1 ran", "t2 ran", "t3 ran", "t2 ran", "t3 ran"]  # t1 did not run again

    empty = run_cli(["dlq", "list"])
    assert (empty.returncode, empty.stdout) == (0, "No dead tasks.\n")
    (run,) = json.loads(run_cli(["runs", "list", "--json"]).stdout)
    assert (run["state"], run["exit_code"], run["resumes"]) == ("finished", 0, 1)
    assert run["states"] == {"succeeded": 3}


def test_dlq_retry_by_id_keeps_what_still_fails(tmp_path, run_cli, summary) -> None:
    run_id, _, _ = first_run(tmp_path, run_cli, summary)
    (tmp_path / "t3").touch()  # t3 would succeed now, but only t2 (still failing) is retried

    retried = run_cli(["dlq", "retry", "2", "--run", run_id])
    assert retried.returncode == 1, retried.output
    assert f"Retrying 1 dead task(s) of run {run_id}" in retried.stdout
    assert summary(retried.stdout, "Total Tasks:") == "3"
    assert summary(retried.stdout, "Completed Successfully:") == "1"
    assert summary(retried.stdout, "Failed:") == "2"  # t2 again, and t3 as it ended before
    assert retried.stdout.rstrip().endswith("dlq retry: 0 of 1 task(s) succeeded, 1 did not")
    assert ran(tmp_path) == ["t1 ran", "t2 ran", "t3 ran", "t2 ran"]

    as_json = json.loads(run_cli(["dlq", "list", "--run", "last", "--json"]).stdout)
    assert [(job["id"], job["attempts"]) for job in as_json] == [(2, 2), (3, 1)]


def test_dlq_errors(tmp_path, run_cli, summary) -> None:
    nothing = run_cli(["dlq", "list"])
    assert (nothing.returncode, nothing.stdout) == (0, "No dead tasks.\n")
    assert run_cli(["dlq", "retry", "--all"]).stdout == "No dead tasks to retry.\n"

    first_run(tmp_path, run_cli, summary)
    unknown = run_cli(["dlq", "retry", "99"])
    assert unknown.returncode == 2
    assert unknown.stderr == "parallelr: error: no task with job ID 99; see 'parallelr dlq list'\n"

    alive = run_cli(["dlq", "retry", "1"])
    assert alive.returncode == 2
    assert alive.stderr == (
        "parallelr: error: job 1 is not a dead task (it is succeeded); see 'parallelr dlq list'\n"
    )

    neither = run_cli(["dlq", "retry"])
    assert neither.returncode == 2
    assert "dlq retry needs job IDs or --all" in neither.stderr

    other_run = run_cli(["dlq", "list", "--run", "20000101-000000-000000"])
    assert other_run.returncode == 2
    assert "unknown run '20000101-000000-000000'" in other_run.stderr
    assert ran(tmp_path) == ["t1 ran", "t2 ran", "t3 ran"]  # nothing ran again
