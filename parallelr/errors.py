"""Errors that end a run with a one-line message instead of a traceback.

The CLI catches :class:`ParallelrError` at the top, prints ``<prog>: error: <message>`` on
stderr and exits with :attr:`ParallelrError.exit_code`.
"""

from __future__ import annotations

from typing import Optional


class ParallelrError(Exception):
    """A problem the user can fix; the message names it and, where possible, the fix."""

    exit_code = 1


class UsageError(ParallelrError):
    """The command line itself is wrong (bad flag combination): exit status 2."""

    exit_code = 2


class ConfigError(ParallelrError):
    """A configuration file cannot be read or holds an invalid value."""


class CommandError(ParallelrError):
    """A command template cannot be rendered for a task (placeholder, length, NUL byte)."""


class SourceError(ParallelrError):
    """A task source cannot produce its tasks (missing path, empty or unreadable file)."""


class NoTasksError(SourceError):
    """Sources found nothing to run. The message starts with the exact COMPAT string."""

    def __init__(self, detail: str = "", extensions: Optional[str] = None) -> None:
        message = "No task files found in specified paths"
        if extensions:
            message = f"{message} matching extensions: {extensions}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


class WriteError(ParallelrError):
    """A file the run must write (the CSV, a log, the journal) cannot be written: a full disk, a
    read-only file system. Raised from a reporter hook, it stops the run: no new task starts, the
    running ones finish, and the CLI prints this one line and exits non-zero."""
