"""parallelr-jsonl-reporter: one JSON object per finished task, in a ``.jsonl`` file.

A complete third-party reporter for parallelr, written only against the public plugin contract
(``parallelr.hookspecs``). pip installing this package registers it through the entry point
``jsonl = parallelr_jsonl`` in the group ``parallelr``; ``-p no:jsonl`` switches it off again.

Each line is written and flushed as soon as its task ends, so the file is complete up to the last
finished task even when the run is killed.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Optional

from parallelr.hookspecs import hookimpl

__version__ = "0.1.0"

_SUMMARY_SUFFIX = "_summary.csv"
_RESULTS_SUFFIX = "_tasks.jsonl"

_file: Optional[IO[str]] = None


def default_path(summary_csv: str) -> str:
    """``.../parallelr_<PID>_<TIMESTAMP>_tasks.jsonl``: next to the run's summary CSV."""
    stem = summary_csv[: -len(_SUMMARY_SUFFIX)] if summary_csv.endswith(_SUMMARY_SUFFIX) else summary_csv
    return stem + _RESULTS_SUFFIX


def results_path(run: Any) -> str:
    """The path given with ``--jsonl``, else the default next to the summary CSV."""
    chosen = run.options.get("jsonl")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    return default_path(run.paths.summary_csv)


def result_record(result: Any) -> dict:
    """The JSON object written for one TaskResult."""
    return {
        "index": result.task.index,
        "source": result.task.source,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "duration": round(result.duration, 3),
        "worker_id": result.worker_id,
        "attempt": result.attempt,
    }


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    group = parser.getgroup("jsonl reporter")
    group.add_argument(
        "--jsonl", metavar="PATH", default=None,
        help="write one JSON line per finished task to PATH "
        "(default: <log dir>/<app>_<PID>_<TIMESTAMP>_tasks.jsonl, next to the summary CSV)",
    )


@hookimpl
def parallelr_run_start(run: Any) -> None:
    global _file
    path = results_path(run)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _file = open(path, "w", encoding="utf-8")


@hookimpl
def parallelr_task_finish(run: Any, result: Any) -> None:
    if _file is None:
        return
    _file.write(json.dumps(result_record(result), sort_keys=True) + "\n")
    _file.flush()  # a killed run keeps every line written so far


@hookimpl
def parallelr_run_finish(run: Any, summary: Any) -> None:
    global _file
    if _file is not None:
        _file.close()
    _file = None
