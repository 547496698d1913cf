"""A PostgreSQL URL without the ``postgres`` extra installed (psycopg missing): every command that
opens the store says in one line how to get it, and nothing else happens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import cli_env

EXTRA_MISSING = 'the PostgreSQL store needs psycopg 3: pip install "parallelr[postgres]"'
URL = "postgresql://queue:secret@127.0.0.1:1/jobs"
SHOWN = "postgresql://queue:***@127.0.0.1:1/jobs"


def test_without_psycopg_a_postgresql_url_says_how_to_get_it(home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "no-psycopg"
    fake.mkdir()
    (fake / "psycopg.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n", encoding="utf-8")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text(f"touch {tmp_path / 'ran'}\n", encoding="utf-8")
    config = home / "parallelr" / "cfg" / "parallelr.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"journal:\n  path: {URL}\n", encoding="utf-8")
    env = cli_env(home, {"PYTHONPATH": str(fake)})
    queuectl = [sys.executable, "-c",
                "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())"]
    cases = [
        ([*queuectl, "--db", URL, "enqueue", '{"command": "true"}'],
         f"queuectl: error: cannot use the job store {SHOWN}: {EXTRA_MISSING}\n"),
        ([*queuectl, "--db", URL, "status"],
         f"queuectl: error: cannot use the job store {SHOWN}: {EXTRA_MISSING}\n"),
        ([sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r"],
         f"parallelr: error: cannot use the journal {SHOWN}: {EXTRA_MISSING}; run with --no-journal to run"
         " without it\n"),
    ]
    for argv, expected in cases:
        done = subprocess.run(argv, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert (done.returncode, done.stderr) == (1, expected), argv
        assert "secret" not in done.stdout + done.stderr
    assert not (tmp_path / "ran").exists()
    check = subprocess.run([sys.executable, "-c", "import psycopg"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert "No module named 'psycopg'" in check.stderr  # the fake did stand in for psycopg
