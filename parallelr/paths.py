"""Where an app keeps its files (COMPAT.md fixes every name), computed in this one place.

``~/<app>/`` holds ``logs/``, ``workspace/``, ``pids/<app>.pids``, ``cfg/<app>.yaml`` and the
store ``state.db``; a run's three files are named ``<app>_<PID>_<TIMESTAMP>...`` in ``logs/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from parallelr.model import RunPaths


@attrs.frozen
class AppPaths:
    """The folders and files of one app (``parallelr`` or a preset's ``ptasker``). All absolute."""

    app_name: str
    home: str  # ~/parallelr
    log_dir: str
    workspace: str
    pid_file: str
    state_db: str  # the default store (journal.path may name another)

    @classmethod
    def of(cls, app_name: str, home: Path) -> AppPaths:
        return cls(
            app_name=app_name,
            home=str(home),
            log_dir=str(home / "logs"),
            workspace=str(home / "workspace"),
            pid_file=str(home / "pids" / f"{app_name}.pids"),
            state_db=str(home / "state.db"),
        )

    def run_paths(self, pid: int, timestamp: str, output_log: bool = True) -> RunPaths:
        """The files of the run of process ``pid`` started at ``timestamp``."""
        stem = str(Path(self.log_dir) / f"{self.app_name}_{pid}_{timestamp}")
        return RunPaths(
            home=self.home,
            log_dir=self.log_dir,
            workspace=self.workspace,
            pid_file=self.pid_file,
            main_log=f"{stem}.log",
            summary_csv=f"{stem}_summary.csv",
            output_log=f"{stem}_output.txt" if output_log else None,
        )


def store_path(settings: Any, home: Path) -> Path:
    """The store's database: ``journal.path`` (``~`` expanded; relative to ``~/<app>``), or
    ``~/<app>/state.db``."""
    configured = settings.journal.path if settings is not None else ""
    if not configured:
        return home / "state.db"
    path = Path(os.path.expanduser(configured))
    return path if path.is_absolute() else home / path
