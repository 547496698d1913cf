"""PostgresJobStore: the job store in a PostgreSQL database, for workers on many hosts.

The statements are the ones SQLite runs (:mod:`.sql_store`, :mod:`.sql_queue`,
:mod:`.sql_workers`); :class:`_Connection` gives them the sqlite3 interface they expect (``?``
placeholders, ``execute`` returning a cursor, ``in_transaction``) over one psycopg 3 connection in
autocommit mode, and :data:`~.sql_dialect.POSTGRESQL` supplies the row locks. Parameters are
bound by the server and a statement is prepared on its second use (``prepare_threshold``): a
worker runs the same few statements per job, so the server plans each once per connection (the
drain rate rose by about a tenth). What differs from SQLite, and why:

* Writers run at once. A claim picks its rows with ``FOR UPDATE SKIP LOCKED``, so two workers never
  take one job and never wait for each other; a read followed by a write of the same row locks it
  (``FOR UPDATE``), and an enqueue locks the dependencies it counts (``FOR SHARE``) until it
  commits, so a dependency that completes meanwhile sees the new edges.
* Time is the database's. Workers on different hosts must agree on when a lease expires and when a
  job is due, so :meth:`PostgresJobStore.now` is the server's clock: its offset from this host's
  clock is measured when the store opens (half a round trip of error) and again every minute.
* Workers wake on ``LISTEN/NOTIFY``: :meth:`PostgresJobStore.notify_workers` sends a notification
  on the channel :data:`CHANNEL`, and :meth:`PostgresJobStore.listener` is a connection of its own
  whose socket becomes readable when one arrives. A notification carries nothing but "look again".
* The schema is the same list of migrations as SQLite's (:mod:`.schema`), its types translated;
  the version is kept in the table ``parallelr_schema``; a migration runs under an advisory lock,
  so two processes opening a new database do not both create the tables.
* PostgreSQL's text cannot hold a NUL character or bytes that are not UTF-8: such characters in
  an output tail or an odd file name are stored as U+FFFD (the one thing this store keeps less
  exactly than SQLite's).

Every psycopg error becomes :class:`~parallelr.jobs.errors.StoreUnavailable`, transient for the
ones worth trying again (a lost connection, a deadlock, a serialization failure).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from typing import Any, Iterable, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

from parallelr.jobs.errors import NewerSchemaError, StoreUnavailable
from parallelr.jobs.schema import MIGRATIONS, SCHEMA_VERSION
from parallelr.jobs.sql_dialect import POSTGRESQL
from parallelr.jobs.sql_store import SqlJobStore

CHANNEL = "parallelr_queue"
CONNECT_TIMEOUT = 10  # seconds: a host that does not answer is an error, not a hang
CLOCK_REFRESH = 60.0  # seconds between two measurements of the server's clock
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds, as SQLite's busy timeout
_MIGRATION_LOCK = 0x7061_7261_6C6C_6572  # "paraller": the advisory lock a migration holds
EXTRA_MISSING = 'the PostgreSQL store needs psycopg 3: pip install "parallelr[postgres]"'


def shown_url(url: str) -> str:
    """The URL for messages and listings: a password in it becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- SQLite's statements for psycopg -------------------------------------------------------------
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%|\binstr\(")


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``?`` placeholders become psycopg's ``%s`` (a literal ``%`` is doubled); ``instr(a, b)``
    becomes ``strpos(a, b)``. String literals are left as they are."""
    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if text.startswith("instr"):
            return "strpos("
        return text.replace("%", "%%")  # a literal: psycopg still reads % in it

    return _TOKENS.sub(token, sql)


def _text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:  # a lone surrogate (an undecodable byte of a file name)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _adapted(params: Sequence[Any]) -> Tuple[Any, ...]:
    """Parameters as PostgreSQL takes them: text without NUL, bytes as text, booleans as the
    integers the columns hold (SQLite has no booleans, so the schema uses integers)."""
    values = []
    for value in params:
        if isinstance(value, str):
            value = _text(value)
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = _text(bytes(value).decode("utf-8", "replace"))
        values.append(value)
    return tuple(values)


class _Connection:
    """The part of sqlite3's connection the shared statements use, over a psycopg connection."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), _adapted(params) if params else None)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [_adapted(row) for row in rows])
        return cursor

    @property
    def in_transaction(self) -> bool:
        from psycopg import pq

        if self.lost:
            return False
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def lost(self) -> bool:
        """The connection is gone (the server restarted, the network dropped it)."""
        return bool(self.raw.closed or self.raw.broken)

    def close(self) -> None:
        self.raw.close()


def _translated_ddl(statement: str) -> str:
    statement = re.sub(r"\bINTEGER PRIMARY KEY\b", "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                       statement)
    statement = re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)
    return re.sub(r"\)\s*WITHOUT ROWID", ")", statement)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


def _reason(exc: BaseException) -> str:
    """The first line of psycopg's message (the rest is libpq's hints), in a few words."""
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def _transient(exc: BaseException) -> bool:
    psycopg = _psycopg()
    if psycopg is None:
        return False
    errors = psycopg.errors
    return isinstance(exc, (psycopg.OperationalError, errors.SerializationFailure, errors.DeadlockDetected,
                            errors.LockNotAvailable))


def _connect(url: str, lock_timeout: Optional[float] = None) -> Any:
    """A connection in autocommit mode. ``lock_timeout``: seconds a statement waits for another
    transaction's lock before it fails (``lock_not_available``: transient), as SQLite's busy
    timeout; a lock held for hours must not hang a command."""
    psycopg = _psycopg()
    if psycopg is None:
        raise StoreUnavailable(shown_url(url), EXTRA_MISSING)
    options = {}
    if lock_timeout is not None:
        options["options"] = f"-c lock_timeout={max(1, int(lock_timeout * 1000))}"
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="parallelr", prepare_threshold=2, **options)
    except psycopg.Error as exc:
        raise StoreUnavailable(shown_url(url), _reason(exc), transient=_transient(exc)) from None
    except ValueError as exc:  # a malformed URL (psycopg parses it before connecting)
        raise StoreUnavailable(shown_url(url), f"not a valid PostgreSQL URL: {exc}") from None


def schema_version(connection: _Connection) -> Optional[int]:
    """The stored schema version; None when the database has no parallelr schema."""
    found = connection.execute("SELECT to_regclass('parallelr_schema')").fetchone()[0]
    if found is None:
        return None
    row = connection.execute("SELECT version FROM parallelr_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(connection: _Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction, under an advisory lock.

    Raises:
        NewerSchemaError: the database has a higher version than this parallelr knows.
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN")
    try:
        connection.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        connection.execute("CREATE TABLE IF NOT EXISTS parallelr_schema (version INTEGER NOT NULL)")
        version = schema_version(connection) or 0
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(version, SCHEMA_VERSION)
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(_translated_ddl(statement))
        connection.execute("DELETE FROM parallelr_schema")
        connection.execute("INSERT INTO parallelr_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class Listener:
    """A connection of its own that LISTENs on :data:`CHANNEL`: ``fileno()`` becomes readable when
    a notification arrives; :meth:`drain` reads every pending one (selector-friendly, like
    :class:`parallelr.queue.wake.WakeSocket`)."""

    def __init__(self, url: str) -> None:
        self.location = f"{shown_url(url)} (its LISTEN connection)"
        self.connection = _connect(url)
        self.connection.execute(f"LISTEN {CHANNEL}")
        self._fd = int(self.connection.pgconn.socket)  # kept: a lost connection has no socket to ask

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> int:
        """How many notifications arrived (they are read). Raises StoreUnavailable when the
        connection is lost: its socket would stay readable, so the caller must stop selecting it."""
        pgconn = self.connection.pgconn
        count = 0
        try:
            pgconn.consume_input()
        except Exception as exc:  # psycopg.OperationalError: the server went away
            raise StoreUnavailable(self.location, _reason(exc), transient=True) from None
        while pgconn.notifies() is not None:
            count += 1
        return count

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


class PostgresJobStore(SqlJobStore):
    """The :class:`~parallelr.jobs.store.JobStore` and
    :class:`~parallelr.jobs.store.QueueStore` in the PostgreSQL database ``url``.

    Not thread-safe: one thread uses it at a time.
    """

    dialect = POSTGRESQL

    def __init__(self, url: str, connection: _Connection, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.url = url
        self.connection = connection
        self.lock_timeout = lock_timeout
        psycopg = _psycopg()
        self.integrity_error = (psycopg.errors.IntegrityError,)
        self.database_errors = (psycopg.Error,)
        self._offset = 0.0
        self._measured_at = float("-inf")
        self._measure_clock()

    @property
    def location(self) -> str:
        return shown_url(self.url)

    @property
    def address(self) -> str:
        """What :func:`~parallelr.jobs.opening.open_store` takes to open this store again (the
        URL with its password: never printed)."""
        return self.url

    # -- the store itself -----------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, create: bool = True,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Optional[PostgresJobStore]:
        """Connect and (with ``create``) create or migrate the schema. ``lock_timeout``: seconds a
        statement waits for another transaction's lock (then a transient StoreUnavailable).

        Returns:
            The store; None when ``create`` is false and the database has no parallelr schema.

        Raises:
            StoreUnavailable: no connection (refused, unknown host, bad password, no psycopg), or
                a schema newer than this parallelr's.
        """
        connection = _Connection(_connect(url, lock_timeout))
        psycopg = _psycopg()
        try:
            version = schema_version(connection)
            if version is None and not create:
                connection.close()
                return None
            migrate(connection)
            return cls(url, connection, lock_timeout)
        except (psycopg.Error, NewerSchemaError) as exc:
            connection.close()
            transient = isinstance(exc, psycopg.Error) and _transient(exc)
            raise StoreUnavailable(shown_url(url), _reason(exc), transient=transient) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()

    def now(self) -> float:
        """The database server's clock (epoch seconds), from this host's clock and the measured offset."""
        if time.monotonic() - self._measured_at >= CLOCK_REFRESH and not self.connection.in_transaction:
            with contextlib.suppress(StoreUnavailable):
                self._measure_clock()
        return time.time() + self._offset

    def _measure_clock(self) -> None:
        with self._reading():
            before = time.time()
            (server,) = self.connection.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()
            after = time.time()
        self._offset = float(server) - (before + after) / 2
        self._measured_at = time.monotonic()

    def change_counter(self) -> int:
        """The newest transaction ID: it grows whenever anyone writes (a read-only transaction takes none)."""
        with self._reading():
            (value,) = self.connection.execute(
                "SELECT txid_snapshot_xmax(txid_current_snapshot())").fetchone()
        return int(value)

    def _before_use(self) -> None:
        """A lost connection is replaced before the next statement (a worker lives for days; the
        server may restart meanwhile). Raises StoreUnavailable (transient) while it cannot be."""
        if self.connection.lost:
            self.connection = _Connection(_connect(self.url, self.lock_timeout))

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self.location, _reason(exc), transient=_transient(exc))

    # -- waking workers --------------------------------------------------------------------------
    def notify_workers(self) -> bool:
        """Tell every listening worker to look at the queue (at the commit, inside a transaction)."""
        with self._reading():
            self.connection.execute(f"NOTIFY {CHANNEL}")
        return True

    def listener(self) -> Listener:
        """A new LISTEN connection (see :class:`Listener`); the caller closes it."""
        return Listener(self.url)
