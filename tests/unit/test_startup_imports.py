"""What a plain run imports: the modules of features it does not use stay unimported (each cost
every run's start-up), and are imported once their feature is used.

Every case is a real ``python -m parallelr ...`` in a subprocess (a fresh interpreter: this
process has imported everything already), with HOME in tmp_path; it writes the names in
sys.modules at its end to a file. No timings: those belong to bench/bench_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set

import pytest
from conftest import cli_env

# Run as ``python -m parallelr`` would be, then list sys.modules (even after a SystemExit), and
# whether an installed distribution (on this process's sys.path) may declare a parallelr plugin.
PROBE = """
import json, runpy, sys
out = sys.argv.pop(1)
sys.argv[0] = "parallelr"
try:
    runpy.run_module("parallelr", run_name="__main__")
except SystemExit as exc:
    status = exc.code
else:
    status = 0
modules = sorted(sys.modules)
from parallelr.pluginmanager import ENTRY_POINT_GROUP, _may_declare_entry_points
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"status": status, "modules": modules,
               "plugin_may_exist": _may_declare_entry_points(ENTRY_POINT_GROUP)}, handle)
"""

# Modules a plain run must not import: the HTML report (and Jinja2 under it), the journal's
# and the queue's commands, the results viewer, the dashboard's Flask.
HEAVY = (
    "parallelr.html_report",
    "parallelr.timeline",
    "jinja2",
    "parallelr.plugins.journal.commands",
    "parallelr.plugins.reporters.results_viewer",
    "parallelr.queue.cli",
    "parallelr.queue.service",
    "parallelr.plugins.dashboard.server",
    "flask",
)


def probe(tmp_path: Path, args: Sequence[str], name: str = "run") -> Dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cwd = tmp_path / "cwd"  # empty: a folder holding parallelr/ would shadow the package
    cwd.mkdir(exist_ok=True)
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], env=cli_env(home),
                          cwd=str(cwd), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert out.is_file(), done.stderr
    found = json.loads(out.read_text(encoding="utf-8"))
    assert found["status"] in (0, None), done.stdout + done.stderr
    return found


def imported(tmp_path: Path, args: Sequence[str], name: str = "run") -> Set[str]:
    return set(probe(tmp_path, args, name)["modules"])


def plain_run(tmp_path: Path, extra: Sequence[str] = ()) -> List[str]:
    arguments = tmp_path / "args.txt"
    arguments.write_text("1\n", encoding="utf-8")
    return ["-A", str(arguments), "-C", "true @ARG@", "-r", "-m", "8", *extra]


def test_a_plain_run_imports_no_module_of_an_unused_feature(tmp_path: Path) -> None:
    modules = imported(tmp_path, plain_run(tmp_path))
    assert "parallelr.plugins.journal.run" in modules  # the run was journalled: it ran
    assert sorted(name for name in HEAVY if name in modules) == []


def test_a_plain_run_does_not_scan_the_metadata_of_every_distribution(tmp_path: Path) -> None:
    found = probe(tmp_path, plain_run(tmp_path))
    if found["plugin_may_exist"]:
        pytest.skip("an installed distribution declares a parallelr plugin: pluggy loads it")
    assert "importlib.metadata" not in found["modules"]


def test_help_imports_neither_the_run_nor_the_store(tmp_path: Path) -> None:
    modules = imported(tmp_path, ["--help"])
    unwanted = ("parallelr.runner", "parallelr.api", "parallelr.scheduler", "parallelr.jobs.records",
                "parallelr.plugins.journal.run", "sqlite3", "yaml", *HEAVY)
    assert sorted(name for name in unwanted if name in modules) == []


def test_the_html_report_is_imported_when_asked_for(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    modules = imported(tmp_path, plain_run(tmp_path, ["--html-report", str(report)]))
    assert report.is_file()
    assert {"parallelr.html_report", "parallelr.timeline", "jinja2"} <= modules


def test_the_journal_commands_are_imported_when_one_runs(tmp_path: Path) -> None:
    imported(tmp_path, plain_run(tmp_path), name="first")  # a run to list
    modules = imported(tmp_path, ["runs", "list"])
    assert "parallelr.plugins.journal.commands" in modules


def test_the_results_viewer_is_imported_when_it_runs(tmp_path: Path) -> None:
    imported(tmp_path, plain_run(tmp_path), name="first")  # a run's results to show
    [results] = (tmp_path / "home" / "parallelr" / "logs").glob("*_results.jsonl")
    modules = imported(tmp_path, ["results", str(results)])
    assert "parallelr.plugins.reporters.results_viewer" in modules


def test_the_queue_command_is_imported_when_it_runs(tmp_path: Path) -> None:
    modules = imported(tmp_path, ["queue", "--help"])
    assert {"parallelr.queue.cli", "parallelr.queue.service"} <= modules
