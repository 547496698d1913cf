"""Opening the store a location names: the one place that picks the store class.

A location is a SQLite file path, or a ``postgresql://`` URL (:mod:`.postgres`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from parallelr.jobs.errors import StoreUnavailable

URL_SCHEMES = ("postgresql://", "postgres://")  # what names a PostgreSQL store rather than a file


def is_url(location: str) -> bool:
    """A database URL rather than a file path (it is not made absolute or expanded). Answered
    without importing the PostgreSQL store: a SQLite file's open does not pay for it."""
    return location.startswith(URL_SCHEMES)


def shown_location(location: str) -> str:
    """``location`` for messages: a URL's password becomes ``***``; a path stays as it is."""
    if not is_url(location):
        return location
    from parallelr.jobs.postgres import shown_url

    return shown_url(location)


def open_store(location: str, busy_timeout: float = 5.0) -> Any:
    """The store at ``location``, created if missing (a SQLite file: mode 0600).

    Raises:
        StoreUnavailable: it cannot be opened (corrupt, locked, newer schema, no permission, no
            connection).
    """
    store = _open(location, True, busy_timeout)
    if store is None:  # create=True always opens or raises
        raise StoreUnavailable(location, "cannot be created")
    return store


def open_existing_store(location: str, busy_timeout: float = 5.0) -> Optional[Any]:
    """The store at ``location``, or None if there is none yet (nothing is created).

    Raises:
        StoreUnavailable: as for :func:`open_store`.
    """
    return _open(location, False, busy_timeout)


def _open(location: str, create: bool, busy_timeout: float) -> Optional[Any]:
    if is_url(location):
        from parallelr.jobs.postgres import PostgresJobStore

        return PostgresJobStore.open(location, create=create, lock_timeout=busy_timeout)
    from parallelr.jobs.sqlite import SQLiteJobStore

    return SQLiteJobStore.open(Path(location), create=create, busy_timeout=busy_timeout)
