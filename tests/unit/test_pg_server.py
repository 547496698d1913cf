"""tests/pg_server.py: the session's PostgreSQL server answers, listens on 127.0.0.1 only, gives
every test a database of its own, and delivers LISTEN/NOTIFY (the PostgreSQL store relies on it)."""

from __future__ import annotations

import threading
from typing import List

import psycopg
from pg_server import PostgresServer, postgres_server, postgres_url

FIXTURES = (postgres_server, postgres_url)  # the tests take them by name: here they count as used

SEEN_DATABASES: List[str] = []  # filled by the two "distinct" tests below, in file order


def test_server_answers(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.info.encoding == "utf-8"
    assert postgres_server.url("x") == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/x"


def _database_of(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE mine (x int)")  # an empty database: this would fail if it were reused
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        return row[0]


def test_databases_are_distinct_first(postgres_url: str) -> None:
    SEEN_DATABASES.append(_database_of(postgres_url))


def test_databases_are_distinct_second(postgres_server: PostgresServer, postgres_url: str) -> None:
    SEEN_DATABASES.append(_database_of(postgres_url))
    assert len(set(SEEN_DATABASES)) == len(SEEN_DATABASES)
    with psycopg.connect(postgres_server.url()) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert SEEN_DATABASES[-1] in names
    assert not set(SEEN_DATABASES[:-1]) & names  # the earlier tests' databases were dropped


def test_drop_database_with_a_connection_left_open(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("left_open")
    conn = psycopg.connect(url)
    try:
        postgres_server.drop_database("left_open")  # WITH (FORCE): the open connection does not block it
    finally:
        conn.close()
    with psycopg.connect(postgres_server.url()) as admin:
        names = [row[0] for row in admin.execute("SELECT datname FROM pg_database")]
    assert "left_open" not in names


def test_listen_notify_between_two_connections(postgres_url: str) -> None:
    # LISTEN must be committed to take effect, and notifications arrive between transactions:
    # the listener runs in autocommit.
    with psycopg.connect(postgres_url, autocommit=True) as listener, \
            psycopg.connect(postgres_url, autocommit=True) as sender:
        listener.execute("LISTEN jobs_ready")
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # nothing sent yet
        timer = threading.Timer(0.2, sender.execute, ("SELECT pg_notify('jobs_ready', 'queue-a')",))
        timer.start()
        try:
            received = list(listener.notifies(timeout=10, stop_after=1))
        finally:
            timer.join()
    assert [(n.channel, n.payload) for n in received] == [("jobs_ready", "queue-a")]
