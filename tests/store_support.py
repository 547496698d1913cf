"""The queue's tests run against both stores: a SQLite file and a PostgreSQL database.

``store_target`` (parametrized by ``store_kind``) is where a test's store is: a file path in the
test's temp dir, or the URL of a fresh database on the session's PostgreSQL server (started on
first use, see :mod:`pg_server`). :meth:`StoreTarget.sql` reads (or writes) it directly with the
database's own driver, with SQLite's ``?`` placeholders in both cases, for the polling that is
cheaper than a CLI call; what tests assert at the end still goes through the CLI.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator, List, Sequence

import pytest

from parallelr.jobs.opening import open_store
from parallelr.jobs.postgres import translate
from parallelr.queue.settings import STORE_PREFIX

STORE_KINDS = ("sqlite", "postgresql")


class StoreTarget:
    """One test's store: ``location`` is what ``--db`` / ``$QUEUECTL_DB_PATH`` take."""

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"

    def sql(self, query: str, params: Sequence[Any] = ()) -> List[tuple]:
        """Run one statement (``?`` placeholders) in a connection of its own; its rows (none for a write)."""
        if self.is_postgres:
            import psycopg

            with contextlib.closing(psycopg.connect(self.location, autocommit=True,
                                                    cursor_factory=psycopg.ClientCursor)) as connection:
                cursor = connection.execute(translate(query), tuple(params) or None)
                return cursor.fetchall() if cursor.description else []
        connection = sqlite3.connect(self.location, timeout=10)
        try:
            with connection:
                return connection.execute(query, tuple(params)).fetchall()
        finally:
            connection.close()

    def configure(self, **settings: Any) -> None:
        """Store queue settings (``lease_seconds=2``, ...), as ``queuectl config set`` would."""
        store = open_store(self.location)
        try:
            for name, value in settings.items():
                store.set_setting(STORE_PREFIX + name.replace("_", "-"), f"{value:g}")
        finally:
            store.close()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_target(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreTarget]:
    """This test's store, empty: a file not created yet, or a new PostgreSQL database."""
    if store_kind == "postgresql":
        yield StoreTarget(store_kind, request.getfixturevalue("postgres_url"))
    else:
        yield StoreTarget(store_kind, str(tmp_path / "queue.db"))
