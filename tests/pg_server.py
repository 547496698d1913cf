"""A real, throwaway PostgreSQL server for the tests (and for bench/ scripts): the distribution's
own server binaries, a fresh cluster in a temporary directory, listening on 127.0.0.1 only.

``PostgresServer`` is plain Python (bench/ scripts use it as ``with PostgresServer() as server:``);
the pytest fixtures at the bottom wrap it: ``postgres_server`` (one server per test session) and
``postgres_url`` (a fresh database per test). Test modules import them by name, as they import
``dashboard_support`` (tests/ is on sys.path through tests/conftest.py), and name them once
at module level so that the linter sees them used (a test's argument would "redefine" them)::

    from pg_server import postgres_server, postgres_url

    FIXTURES = (postgres_server, postgres_url)

The binaries are found in ``$PARALLELR_PG_BINDIR``, else on PATH, else in Debian's
``/usr/lib/postgresql/<version>/bin`` (the newest version). Without them the tests that need the
server are skipped, unless ``PARALLELR_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.

initdb and pg_ctl refuse to run as root: as root they run as the ``postgres`` OS user (the one
Debian's package creates), otherwise as the current user. Authentication is ``trust``: the server
listens on 127.0.0.1 only and lives for one session. It is stopped by ``stop()``, at interpreter
exit and on SIGTERM; only a SIGKILL of the process that started it leaves it running (its files
are then in ``$TMPDIR/parallelr-pg-*``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

BINDIR_VARIABLE = "PARALLELR_PG_BINDIR"
REQUIRE_VARIABLE = "PARALLELR_REQUIRE_POSTGRES"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the OS user the server runs as when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates (-U), whoever runs it
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
PORT_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind: try another

# Tests only: durability is worth nothing here, speed is. The socket directory is our temp dir,
# not /var/run/postgresql (root-owned, maybe missing, shared with a system cluster).
SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


class PostgresStartError(RuntimeError):
    """initdb or the server failed; the message ends with the tail of the server's log."""


class PostgresBinaries(NamedTuple):
    initdb: Path
    pg_ctl: Path
    postgres: Path

    @classmethod
    def in_dir(cls, bindir: Path) -> Optional[PostgresBinaries]:
        paths = [bindir / name for name in cls._fields]
        if all(path.is_file() and os.access(path, os.X_OK) for path in paths):
            return cls(*paths)
        return None


def _version_key(path: Path) -> List[int]:
    return [int(part) for part in re.findall(r"\d+", path.name)] or [0]


def find_binaries() -> PostgresBinaries:
    """The server binaries, or PostgresNotFound saying where they were looked for."""
    override = os.environ.get(BINDIR_VARIABLE)
    if override:  # an explicit choice is never silently replaced by another installation
        found = PostgresBinaries.in_dir(Path(override))
        if found is None:
            raise PostgresNotFound(f"${BINDIR_VARIABLE}={override} holds no initdb, pg_ctl and postgres")
        return found
    candidates: List[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    if DEBIAN_ROOT.is_dir():
        candidates += sorted((d / "bin" for d in DEBIAN_ROOT.iterdir()), key=lambda b: _version_key(b.parent),
                             reverse=True)
    for bindir in candidates:
        found = PostgresBinaries.in_dir(bindir)
        if found is not None:
            return found
    raise PostgresNotFound(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in "
                           f"{DEBIAN_ROOT}/<version>/bin (Debian: apt-get install postgresql; or set "
                           f"${BINDIR_VARIABLE})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class _RunAs(NamedTuple):
    """Who initdb and pg_ctl run as: the current user, or (as root) the postgres user."""

    uid: int
    gid: int
    groups: List[int]
    home: str

    @classmethod
    def for_current_user(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid(), os.getgroups(), os.environ.get("HOME", "/"))
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresStartError(f"running as root, and there is no {SERVER_USER!r} OS user to run the "
                                     f"server as (initdb and pg_ctl refuse root)") from None
        return cls(entry.pw_uid, entry.pw_gid, os.getgrouplist(SERVER_USER, entry.pw_gid), entry.pw_dir)

    @property
    def switches(self) -> bool:
        return self.uid != os.getuid()

    def popen_args(self) -> Dict[str, object]:
        # subprocess's own user/group switch (Python 3.9+): no runuser/su, no tty, no shell, and
        # supplementary groups are reset too, so root's groups do not leak into the server.
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups}


def _server_env(run_as: _RunAs) -> Dict[str, str]:
    # No PG* variables of ours (PGDATA, PGPORT, PGHOST...) may redirect initdb/pg_ctl; C messages
    # so that the log tail in an error is readable whatever locales the machine has.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(HOME=run_as.home, LC_ALL="C", LANG="C")
    return env


def _base_dir_for(run_as: _RunAs) -> Optional[str]:
    """Where the temp dir goes: $TMPDIR, unless the server user could not reach it (e.g. root's
    TMPDIR under /root), then /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    if not run_as.switches:
        return None
    reachable = all(part.stat().st_mode & 0o001 for part in [base, *base.parents])
    return None if reachable else "/tmp"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's (we are not root and it is not ours)
        return True
    return True


# -- the servers this process started: stopped at exit and on SIGTERM, whoever forgot them --
_live_servers: List[PostgresServer] = []


def _stop_live_servers() -> None:
    for server in list(_live_servers):
        server.stop()


def _stop_live_servers_then_die(signum: int, _frame: object) -> None:
    # SIGTERM (e.g. from `timeout`) skips atexit: stop the servers, then die of SIGTERM as before.
    _stop_live_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _in_main_thread() -> bool:  # signal.signal() works there only
    return threading.current_thread() is threading.main_thread()


def _track(server: PostgresServer) -> None:
    _live_servers.append(server)
    if _in_main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # never replace a handler
        signal.signal(signal.SIGTERM, _stop_live_servers_then_die)


def _untrack(server: PostgresServer) -> None:
    with contextlib.suppress(ValueError):
        _live_servers.remove(server)
    ours = signal.getsignal(signal.SIGTERM) is _stop_live_servers_then_die
    if not _live_servers and ours and _in_main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


atexit.register(_stop_live_servers)  # an interrupted session still stops the servers it started


class PostgresServer:
    """One throwaway cluster: ``start()``, ``url(dbname)``, ``create_database()``,
    ``drop_database()``, ``stop()`` (idempotent; also run at interpreter exit and on SIGTERM)."""

    def __init__(self, binaries: Optional[PostgresBinaries] = None) -> None:
        self.binaries = binaries or find_binaries()
        self.run_as = _RunAs.for_current_user()
        self.port: Optional[int] = None
        self.base_dir: Optional[Path] = None
        self.server_version: Optional[int] = None  # e.g. 150004, once started

    # -- paths --
    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def log_path(self) -> Path:
        return self._base() / "server.log"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the PostgreSQL server is not started")
        return self.base_dir

    def pid(self) -> Optional[int]:
        """The postmaster's PID from its pid file, while that file exists."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, RuntimeError):
            return None

    # -- lifecycle --
    def start(self) -> PostgresServer:
        if self.port is not None:
            return self
        self.base_dir = Path(tempfile.mkdtemp(prefix="parallelr-pg-", dir=_base_dir_for(self.run_as)))
        _track(self)
        try:
            if self.run_as.switches:
                os.chown(self.base_dir, self.run_as.uid, self.run_as.gid)  # stays 0700: the user's own
            self._initdb()
            self._start_on_a_free_port()
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.base_dir is None:
            return
        try:
            if self.pid() is not None:
                self._shut_down()
        finally:
            pid = self.pid()
            if pid is None or not _pid_alive(pid):
                shutil.rmtree(self.base_dir, ignore_errors=True)
            else:  # never delete the files from under a live server: say where it is instead
                print(f"pg_server: PostgreSQL (pid {pid}) did not stop; left {self.base_dir}",
                      file=sys.stderr)
            self.base_dir = None
            self.port = None
            _untrack(self)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- steps --
    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), cwd=str(self._base()), env=_server_env(self.run_as), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, errors="replace", timeout=timeout, check=False,
            **self.run_as.popen_args(),  # type: ignore[arg-type]
        )

    def _initdb(self) -> None:
        # --auth=trust, local and host: the server listens on 127.0.0.1 only and its socket is in a
        # 0700 directory, so only processes on this machine reach it, for a test session's lifetime;
        # no password to hand around. -U: the superuser is "postgres" whoever runs the tests.
        done = self._run(str(self.binaries.initdb), "-D", str(self.data_dir), "-U", SUPERUSER,
                         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", timeout=120)
        if done.returncode != 0:
            raise PostgresStartError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        settings = {**SETTINGS, "unix_socket_directories": f"'{self._base()}'"}
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# parallelr tests (tests/pg_server.py)\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _start_on_a_free_port(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            done = self._pg_ctl("start", "-l", str(self.log_path), "-o", f"-p {port}", wait=START_TIMEOUT)
            if done.returncode == 0:
                self.port = port
                return
            log = _tail(self.log_path)
            if "could not bind" not in log or attempt == PORT_ATTEMPTS:
                raise PostgresStartError(f"pg_ctl start failed ({done.returncode}): "
                                         f"{done.stdout}{done.stderr}{self._log_tail()}")

    def _log_tail(self) -> str:
        return f"\n--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"

    def _pg_ctl(self, action: str, *args: str, wait: float) -> subprocess.CompletedProcess:
        """``pg_ctl ACTION`` that waits up to ``wait`` seconds for the server to be up (or down)."""
        return self._run(str(self.binaries.pg_ctl), action, "-D", str(self.data_dir), "-w",
                         "-t", str(int(wait)), *args, timeout=wait + 10)

    def _wait_until_accepting(self) -> None:
        # pg_ctl -w already waited for "ready"; this proves a TCP client gets in (and reads the version).
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    self.server_version = conn.info.server_version
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise PostgresStartError(f"the server accepts no connection on {HOST}:{self.port}: "
                                             f"{exc}{self._log_tail()}") from exc
                time.sleep(0.1)

    def _shut_down(self) -> None:
        for mode in ("fast", "immediate"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self._pg_ctl("stop", "-m", mode, wait=STOP_TIMEOUT).returncode == 0:
                    return
        pid = self.pid()
        if pid is not None:  # pg_ctl could not stop it: the last resort
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not _pid_alive(pid):
                    return
                time.sleep(0.1)

    # -- databases --
    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("the PostgreSQL server is not started")
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def _admin(self):  # -> psycopg.Connection; CREATE/DROP DATABASE cannot run in a transaction
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (from template0: no copy of a template1 someone changed) and
        return its URL."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists; on PostgreSQL 13+ the connections a test left open do not block it."""
        from psycopg import sql

        with self._admin() as conn:
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


def unique_database_name(hint: str = "") -> str:
    """A fresh database name, readable in the server's log: ``t_<hint>_<random>`` (63 bytes at most)."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40]
    return f"t_{cleaned}_{uuid.uuid4().hex[:10]}" if cleaned else f"t_{uuid.uuid4().hex[:16]}"


# -- pytest fixtures: pytest is only needed from here on, so bench/ scripts can import the above --
try:
    import pytest
except ImportError:  # pragma: no cover - bench/ without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def require_binaries() -> PostgresBinaries:
        """The server binaries; skip the test without them (fail it with PARALLELR_REQUIRE_POSTGRES=1)."""
        try:
            return find_binaries()
        except PostgresNotFound as exc:
            missing = str(exc)
        # outside the except block: the report shows the reason, not a chained traceback
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{missing} (and ${REQUIRE_VARIABLE}=1)", pytrace=False)
        pytest.skip(missing)

    @pytest.fixture(scope="session")
    def postgres_server() -> Iterator[PostgresServer]:
        """One PostgreSQL server for the whole test session, stopped (and its files removed) at the end."""
        server = PostgresServer(require_binaries()).start()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
        """The URL of a fresh, empty database of this test's own, dropped after it."""
        name = unique_database_name(request.node.name)
        url = postgres_server.create_database(name)
        try:
            yield url
        finally:
            postgres_server.drop_database(name)
