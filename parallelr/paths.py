"""Where an app keeps its files (COMPAT.md fixes every name), computed in this one place.

``~/<app>/`` holds ``logs/``, ``workspace/``, ``pids/<app>.pids``, ``cfg/<app>.yaml`` and the
store ``state.db``; a run's three files are named ``<app>_<PID>_<TIMESTAMP>...`` in ``logs/``.

``~`` is :func:`user_home`, the one source of "the user's home" for every file parallelr reads or
writes: ``$HOME`` when it is set, else this account's home directory in the password database
(as the shell does). A HOME that is set but empty or relative is refused with an error naming
HOME: Python would read ``HOME=''`` as ``/`` (or as the current directory), and a run would then
write its logs, workspace and journal outside the user's own directories.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import attrs

from parallelr.errors import ParallelrError
from parallelr.jobs.opening import is_url
from parallelr.model import RunPaths

HOME_FIX = "set HOME to your home directory (an absolute path)"


def user_home() -> Path:
    """The user's home directory: ``$HOME``, or the password database's entry when HOME is unset.

    Raises:
        ParallelrError: HOME is set but empty or not absolute, or it is unset and the password
            database has no absolute home directory for this user.
    """
    value = os.environ.get("HOME")
    if value is None:
        try:
            value = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            raise ParallelrError(
                f"HOME is not set and user ID {os.getuid()} has no entry in the password database: {HOME_FIX}"
            ) from None
        if not os.path.isabs(value):
            raise ParallelrError(
                f"HOME is not set and the password database gives user ID {os.getuid()} the home "
                f"directory {value!r}, which is not an absolute path: {HOME_FIX}"
            )
        return Path(value)
    if not value:
        raise ParallelrError(f"HOME is set but empty: {HOME_FIX}, or unset it to use the password database's")
    if not os.path.isabs(value):
        raise ParallelrError(f"HOME is a relative path ({value!r}): {HOME_FIX}")
    return Path(value)


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

    def run_paths(
        self, pid: int, timestamp: str, output_log: bool = True, results_jsonl: bool = True,
    ) -> RunPaths:
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
            results_jsonl=f"{stem}_results.jsonl" if results_jsonl else None,
        )


def create_directory(directory: str) -> None:
    """Create ``directory`` (and its parents) if missing.

    Raises:
        ParallelrError: it cannot be created, in one line that points at HOME.
    """
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ParallelrError(
            f"cannot create {directory}: {exc.strerror} (check HOME and its permissions)"
        ) from None


def store_location(settings: Any, home: Path) -> str:
    """Where the store is: a ``postgresql://`` URL in ``journal.path`` as it is, else the file of
    :func:`store_path`."""
    configured = settings.journal.path if settings is not None else ""
    if is_url(configured):
        return configured
    return str(store_path(settings, home))


def store_path(settings: Any, home: Path) -> Path:
    """The store's database: ``journal.path`` (``~`` expanded; relative to ``~/<app>``), or
    ``~/<app>/state.db``."""
    configured = settings.journal.path if settings is not None else ""
    if not configured:
        return home / "state.db"
    path = Path(expand_user(configured))
    return path if path.is_absolute() else home / path


def expand_user(path: str) -> str:
    """``os.path.expanduser`` with ``~`` and ``~/...`` taken from :func:`user_home`, so an empty
    HOME never turns ``~/x`` into ``/x``. ``~name`` is another user's home, looked up as usual."""
    if path == "~" or path.startswith("~/"):
        return str(user_home() / path[2:])
    return os.path.expanduser(path)
