"""Opening the store a location names: the one place that picks the store class."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from parallelr.jobs.errors import StoreUnavailable


def open_store(location: str, busy_timeout: float = 5.0) -> Any:
    """The store at ``location`` (a SQLite file path), created if missing (mode 0600).

    Raises:
        StoreUnavailable: it cannot be opened (corrupt, locked, newer schema, no permission).
    """
    from parallelr.jobs.sqlite import SQLiteJobStore

    store = SQLiteJobStore.open(Path(location), create=True, busy_timeout=busy_timeout)
    if store is None:  # create=True always opens or raises
        raise StoreUnavailable(location, "cannot be created")
    return store


def open_existing_store(location: str, busy_timeout: float = 5.0) -> Optional[Any]:
    """The store at ``location``, or None if there is none yet (nothing is created).

    Raises:
        StoreUnavailable: as for :func:`open_store`.
    """
    from parallelr.jobs.sqlite import SQLiteJobStore

    return SQLiteJobStore.open(Path(location), create=False, busy_timeout=busy_timeout)
