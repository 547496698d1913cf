"""Where the journal is and how it is opened: the journal's settings around the core store.

The store (:class:`parallelr.jobs.sqlite.SQLiteJobStore`) knows nothing of the journal; this
module adds what is the journal's own: ``journal.path``, the lock wait from
``PARALLELR_JOURNAL_BUSY_TIMEOUT``, and messages that say how to run without the journal.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Optional

from parallelr.errors import ParallelrError
from parallelr.jobs.errors import StoreUnavailable
from parallelr.jobs.opening import open_existing_store, open_store, shown_location
from parallelr.jobs.sqlite import DEFAULT_BUSY_TIMEOUT

BUSY_TIMEOUT_VARIABLE = "PARALLELR_JOURNAL_BUSY_TIMEOUT"  # seconds; tests make it short


class JournalUnavailable(ParallelrError):
    """The database cannot be opened or written; the run stops before its first task."""

    def __init__(self, location: str, reason: str) -> None:
        shown = shown_location(location)
        super().__init__(f"cannot use the journal {shown}: {reason}; run with --no-journal to run without it")
        self.path = shown
        self.reason = reason

    def without_hint(self) -> ParallelrError:
        """The same problem where --no-journal is no way out (reading the journal, --resume)."""
        return ParallelrError(f"cannot use the journal {self.path}: {self.reason}")


def seconds_from_environment(variable: str, default: float) -> float:
    """A number of seconds from the environment variable ``variable``; ``default`` when it is
    unset, not a number or negative (these variables are for tests and tuning, not for errors)."""
    raw = os.environ.get(variable, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value >= 0 else default


def busy_timeout() -> float:
    """How long to wait for another process's lock before giving up (seconds)."""
    return seconds_from_environment(BUSY_TIMEOUT_VARIABLE, DEFAULT_BUSY_TIMEOUT)


def open_journal(location: str, create: bool = True) -> Optional[Any]:
    """The journal at ``location`` (a file, or a ``postgresql://`` URL; created with ``create``),
    or None if it does not exist yet.

    Raises:
        JournalUnavailable: it cannot be opened.
    """
    try:
        if create:
            return open_store(str(location), busy_timeout=busy_timeout())
        return open_existing_store(str(location), busy_timeout=busy_timeout())
    except StoreUnavailable as exc:
        raise JournalUnavailable(str(location), exc.reason) from None


@contextlib.contextmanager
def reading_journal(store: Any) -> Iterator[None]:
    """Reads whose failure (a corrupt page) is one line naming the journal, as for a run, without
    the --no-journal hint (a command that reads the journal cannot do without it)."""
    try:
        yield
    except StoreUnavailable as exc:
        raise JournalUnavailable(store.location, exc.reason).without_hint() from None


@contextlib.contextmanager
def journal_transaction(store: Any) -> Iterator[None]:
    """A write transaction whose failure is a :class:`JournalUnavailable`."""
    try:
        with store.transaction():
            yield
    except StoreUnavailable as exc:
        raise JournalUnavailable(store.location, exc.reason) from None
