"""What only the PostgreSQL store has (parallelr/jobs/postgres.py); the queue's semantics are tested
against both stores in test_queue_store.py. Here: the schema a fresh database gets (the same list
of migrations as SQLite's: same tables, columns and indexes, version 5 in ``parallelr_schema``), a
newer schema refused, errors (a refused connection, a lost one) as StoreUnavailable with the
password hidden, the ``?`` placeholders translated, the server's clock, LISTEN/NOTIFY wake-ups and
the change counter. Every test has a fresh database of its own (``postgres_url``)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from parallelr.jobs.errors import StoreUnavailable
from parallelr.jobs.opening import open_existing_store, open_store
from parallelr.jobs.postgres import CHANNEL, PostgresJobStore, shown_url, translate
from parallelr.jobs.records import NewJob
from parallelr.jobs.schema import SCHEMA_VERSION
from parallelr.jobs.sqlite import SQLiteJobStore

TABLES = {"runs", "jobs", "attempts", "settings", "job_deps", "workers", "parallelr_schema"}


def sql(url: str, query: str, params: Tuple[object, ...] = ()) -> List[tuple]:
    with contextlib.closing(psycopg.connect(url, autocommit=True)) as connection:
        cursor = connection.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


def with_password(url: str, password: str = "s3cr3t-Pa55") -> str:
    """``url`` with a password (the test server trusts 127.0.0.1, so any password is accepted)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def refused_url(password: Optional[str] = None) -> str:
    """A URL of 127.0.0.1 on a port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{credentials}@127.0.0.1:{port}/nothing"


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresJobStore]:
    opened = PostgresJobStore.open(postgres_url)
    assert opened is not None
    yield opened
    opened.close()


def job(key: str) -> NewJob:
    return NewJob(key=key, queue="default", argv=("/bin/sh", "-c", "true"), shell=True)


# -- the schema ---------------------------------------------------------------------------------
def postgres_schema(url: str) -> Dict[str, Set[str]]:
    """Table -> column names, and "indexes" -> the names of the indexes the migrations created."""
    columns = sql(url, "SELECT table_name, column_name FROM information_schema.columns"
                       " WHERE table_schema = 'public'")
    schema: Dict[str, Set[str]] = {}
    for table, column in columns:
        schema.setdefault(table, set()).add(column)
    schema["indexes"] = {name for (name,) in sql(  # not those of PRIMARY KEY and UNIQUE constraints
        url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
             " AND indexname NOT IN (SELECT conname FROM pg_constraint)")}
    return schema


def sqlite_schema(path: Path) -> Dict[str, Set[str]]:
    SQLiteJobStore.open(path).close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        schema = {table: {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
                  for table in tables}
        schema["indexes"] = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")}
    return schema


def test_a_fresh_database_gets_the_schema_at_version_5(postgres_url: str, tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 5
    assert sql(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    PostgresJobStore.open(postgres_url).close()
    assert sql(postgres_url, "SELECT version FROM parallelr_schema") == [(5,)]
    schema = postgres_schema(postgres_url)
    assert set(schema) - {"indexes"} == TABLES
    queue_indexes = {"jobs_claim", "jobs_queue_due", "jobs_queue_state", "jobs_state_row", "jobs_key"}
    assert queue_indexes <= schema["indexes"]
    # the same migrations as SQLite's: the same tables, columns and indexes (SQLite keeps its
    # version in PRAGMA user_version, not in a table)
    expected = sqlite_schema(tmp_path / "state.db")
    expected["parallelr_schema"] = {"version"}
    assert schema == expected


def test_opening_again_changes_nothing(postgres_url: str) -> None:
    first = PostgresJobStore.open(postgres_url)
    first.enqueue_jobs([job("kept")], 1.0)
    first.close()
    again = PostgresJobStore.open(postgres_url)
    try:
        assert sql(postgres_url, "SELECT version FROM parallelr_schema") == [(5,)]
        assert [one.key for one in again.iter_queue_jobs(2.0)] == ["kept"]
    finally:
        again.close()


def test_concurrent_first_opens_create_the_schema_once(postgres_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: List[BaseException] = []

    def open_it() -> None:
        try:
            barrier.wait()
            PostgresJobStore.open(postgres_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sql(postgres_url, "SELECT version FROM parallelr_schema") == [(5,)]


def test_opening_an_existing_store_of_an_empty_database_is_none_and_creates_nothing(
        postgres_url: str) -> None:
    assert PostgresJobStore.open(postgres_url, create=False) is None
    assert open_existing_store(postgres_url) is None
    assert sql(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_a_newer_schema_is_refused_and_left_as_it_is(postgres_url: str) -> None:
    PostgresJobStore.open(postgres_url).close()
    sql(postgres_url, "UPDATE parallelr_schema SET version = 99")
    with pytest.raises(StoreUnavailable) as caught:
        open_store(postgres_url)
    assert str(caught.value) == (f"cannot use the job store {postgres_url}: schema version 99 is newer than "
                                 f"this parallelr understands (5)")
    assert caught.value.transient is False
    assert sql(postgres_url, "SELECT version FROM parallelr_schema") == [(99,)]


# -- errors ------------------------------------------------------------------------------------
def test_a_refused_connection_is_transient_and_names_the_store() -> None:
    url = refused_url()
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert caught.value.location == url
    assert caught.value.transient is True
    assert "Connection refused" in caught.value.reason
    assert "\n" not in str(caught.value)


def test_a_password_is_never_shown() -> None:
    url = refused_url("s3cr3t-Pa55")
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert caught.value.location == url.replace("s3cr3t-Pa55", "***")
    assert "s3cr3t-Pa55" not in str(caught.value) and "s3cr3t-Pa55" not in caught.value.reason
    assert shown_url("postgresql://u:p%40ss@db.example:6543/q?sslmode=require") == (
        "postgresql://u:***@db.example:6543/q?sslmode=require")
    assert shown_url("postgres://u:pw@db.example/q") == "postgres://u:***@db.example/q"
    assert shown_url("postgresql://u@db.example:6543/q") == "postgresql://u@db.example:6543/q"
    assert shown_url("postgresql:///q") == "postgresql:///q"


def test_the_store_location_hides_the_password(postgres_url: str) -> None:
    url = with_password(postgres_url)
    opened = PostgresJobStore.open(url)
    try:
        assert opened.location == url.replace("s3cr3t-Pa55", "***")
    finally:
        opened.close()


def lose_connection(store: PostgresJobStore, postgres_url: str) -> None:
    """The server ends the store's connection (as a restart or a network cut would)."""
    pid = store.connection.raw.info.backend_pid
    assert sql(postgres_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    deadline = time.monotonic() + 10
    while sql(postgres_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.01)


def test_a_lost_connection_is_one_transient_error_then_replaced(store: PostgresJobStore,
                                                                 postgres_url: str) -> None:
    store.enqueue_jobs([job("a")], 1.0)
    lose_connection(store, postgres_url)
    with pytest.raises(StoreUnavailable) as caught:  # the statement that finds the loss fails
        store.queue_counts(1.0)
    assert (caught.value.location, caught.value.transient) == (postgres_url, True)
    store.enqueue_jobs([job("b")], 1.0)  # the next one runs on a new connection
    assert store.queue_counts(1.0) == {"pending": 2}
    lose_connection(store, postgres_url)
    with pytest.raises(StoreUnavailable) as caught:  # a write that finds the loss stores nothing
        store.enqueue_jobs([job("c")], 1.0)
    assert (caught.value.location, caught.value.transient) == (postgres_url, True)
    assert [one.key for one in store.iter_queue_jobs(1.0)] == ["a", "b"]
    assert sql(postgres_url, "SELECT name FROM jobs ORDER BY id") == [("a",), ("b",)]


# -- SQLite's statements for psycopg ---------------------------------------------------------------
@pytest.mark.parametrize(("statement", "translated"), [
    ("SELECT * FROM jobs WHERE id = ? AND name = ?", "SELECT * FROM jobs WHERE id = %s AND name = %s"),
    ("SELECT name FROM jobs WHERE name LIKE '%?%' AND queue = ?",
     "SELECT name FROM jobs WHERE name LIKE '%%?%%' AND queue = %s"),
    ("SELECT 'it''s ?', 100 % 7, instr(name, ?)", "SELECT 'it''s ?', 100 %% 7, strpos(name, %s)"),
    ("SELECT 1", "SELECT 1"),
])
def test_placeholders_are_translated_and_literals_kept(statement: str, translated: str) -> None:
    assert translate(statement) == translated


def test_translated_statements_run(store: PostgresJobStore) -> None:
    rows = store.connection.execute("SELECT 'it''s ?', 100 % 7, instr('abc?', ?), ?", ("?", 42)).fetchall()
    assert rows == [("it's ?", 2, 4, 42)]


# -- the server's clock, notifications, the change counter -------------------------------------------
def test_now_is_the_servers_clock(store: PostgresJobStore, postgres_url: str) -> None:
    [(server,)] = sql(postgres_url, "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
    mine = store.now()
    assert abs(mine - server) < 1.0, (mine, server)  # the same host: the offset is a round trip's error
    later = store.now()
    assert later >= mine


def test_notify_workers_wakes_a_listener(store: PostgresJobStore, postgres_url: str) -> None:
    listener = store.listener()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            assert selector.select(timeout=0.2) == []  # nothing yet
            assert store.notify_workers() is True
            assert selector.select(timeout=10), "no notification within 10 s"
            assert listener.drain() == 1
            # a notification sent inside a transaction arrives at its commit
            with store.transaction():
                store.notify_workers()
                assert selector.select(timeout=0.3) == []
            assert selector.select(timeout=10), "no notification after the commit"
            assert listener.drain() == 1
            sql(postgres_url, f"NOTIFY {CHANNEL}, 'from someone else'")
            assert selector.select(timeout=10)
            assert listener.drain() == 1
    finally:
        listener.close()


def test_the_change_counter_grows_when_another_connection_writes(store: PostgresJobStore) -> None:
    other = PostgresJobStore.open(store.url)
    try:
        before = store.change_counter()
        assert store.change_counter() == before  # reading takes no transaction ID
        other.enqueue_jobs([job("a")], 1.0)
        after = store.change_counter()
        assert after > before
        assert store.change_counter() == after  # and stays while nobody writes
    finally:
        other.close()


def true_job(key: str) -> NewJob:
    return NewJob(key=key, queue="default", argv=("true",), shell=False)


def test_a_lock_held_elsewhere_is_a_transient_error_after_the_lock_timeout(postgres_url: str) -> None:
    """As SQLite's busy timeout: a command waits ``lock_timeout`` seconds for another transaction's
    lock, then fails in one line (transient), instead of hanging for as long as the lock is held."""
    store = PostgresJobStore.open(postgres_url, lock_timeout=0.3)
    assert store is not None
    holder = psycopg.connect(postgres_url)  # a transaction of its own, open until rolled back
    try:
        holder.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StoreUnavailable) as caught, store.transaction():
            store.enqueue_jobs([true_job("blocked")], store.now())
        assert caught.value.transient
        assert caught.value.reason == "canceling statement due to lock timeout"
    finally:
        holder.rollback()
        holder.close()
    with store.transaction():  # the lock is gone: the same store works again
        assert store.enqueue_jobs([true_job("after")], store.now()) == 1
    store.close()
    assert sql(postgres_url, "SELECT name FROM jobs") == [("after",)]
