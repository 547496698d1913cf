"""The process registry: which parallelr runs of this user are alive, proven, not guessed.

``~/parallelr/pids/parallelr.pids`` keeps one PID per line (COMPAT.md: scripts read it). Beside
it, ``<PID>.json`` records what proves that PID is still that run: the process's start time
(psutil ``create_time``), its owner and its log paths. A PID whose process is gone, or whose
number now belongs to another process (different start time), is pruned and never signalled.

Several runs start and end at once, so every change happens under an exclusive ``flock`` on
``parallelr.pids.lock`` and the PID file is replaced atomically (write + rename): no lost lines.
Because of that replace, a reader that cannot take the lock (a read-only HOME) still reads a
whole file, so ``--list-workers`` works there, only without pruning.

The file is the user's to edit and break: a line that is not a PID (binary junk, text) or an
entry that cannot be read is pruned with a warning on the ``parallelr`` logger, never a
traceback. A PID file or lock that cannot be a file (a directory in its place), or a change that
cannot be written, is a :class:`RegistryError`: one line that names the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

import attrs

from parallelr.errors import ParallelrError

log = logging.getLogger("parallelr")

# create_time is derived from the boot time and clock ticks; allow for rounding only.
CREATE_TIME_TOLERANCE = 0.05
PID_PATTERN = re.compile(rb"[0-9]{1,10}")  # ASCII digits only: "١٢" is a digit to str.isdigit()
PID_LIMIT = 2**31 - 1  # pid_t; a larger number is no PID (Linux hands out at most 2**22)
SHOWN_JUNK = 5  # unreadable lines named in a warning; the rest are counted
# What each field of <PID>.json must hold (bool is an int to Python: daemon accepts 0/1 too).
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {
    "pid": (int,), "create_time": (int, float), "uid": (int,), "app_name": (str,),
    "started_at": (int, float), "main_log": (str,), "summary_csv": (str,),
    "output_log": (str, type(None)), "run_id": (str, type(None)), "daemon": (bool, int),
}


class RegistryError(ParallelrError):
    """The PID file (or its lock, its directory, an entry) cannot be read or written."""


@attrs.frozen
class RunEntry:
    pid: int
    create_time: float
    uid: int
    app_name: str
    started_at: float
    main_log: str
    summary_csv: str
    output_log: Optional[str] = None
    run_id: Optional[str] = None
    daemon: bool = False

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunEntry:
        """Raises ValueError (or TypeError) unless ``text`` is an entry with fields of the right
        types: an entry is proof about a process, and half a proof is none."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an entry is a JSON object")
        fields = {field.name for field in attrs.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        for key, value in values.items():
            if key in _FIELD_TYPES and not isinstance(value, _FIELD_TYPES[key]):
                raise ValueError(f"{key} is {type(value).__name__}")
        return cls(**values)

    def is_alive(self) -> bool:
        """True only if PID is still *this* run: same start time, same owner, not a zombie."""
        import psutil  # imported here: a plain run never verifies other PIDs

        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > CREATE_TIME_TOLERANCE:
                return False
            if process.uids().real != self.uid:
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _entries(junk: List[bytes]) -> str:
    return "1 unreadable entry" if len(junk) == 1 else f"{len(junk)} unreadable entries"


def _junk_text(junk: List[bytes]) -> str:
    # bytes' repr without its b: printable ASCII as is, every other byte escaped (one safe line)
    shown = ", ".join(repr(line[:40])[1:] for line in junk[:SHOWN_JUNK])
    more = f" and {len(junk) - SHOWN_JUNK} more" if len(junk) > SHOWN_JUNK else ""
    return shown + more


class Registry:
    def __init__(self, pid_file: Path) -> None:
        self.pid_file = Path(pid_file)
        self.directory = self.pid_file.parent
        self.lock_file = self.pid_file.with_name(self.pid_file.name + ".lock")

    def _entry_path(self, pid: int) -> Path:
        return self.directory / f"{pid}.json"

    def _error(self, doing: str, path: Path, exc: OSError) -> RegistryError:
        what = {self.pid_file: "the PID file", self.lock_file: "the PID file's lock"}.get(path, "")
        what = what or ("the PID file's directory" if path == self.directory else "the run entry")
        in_the_way = exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST)
        fix = "remove or rename what is in its place" if in_the_way else (
            "check HOME and its permissions")
        return RegistryError(f"cannot {doing} {what} {path}: {_describe(exc)} ({fix})")

    def _open_lock(self) -> IO[str]:
        """The lock file, opened for writing as a change needs (on a read-only HOME this fails,
        which tells a reader that it may read but not prune)."""
        return open(self.lock_file, "a")

    @contextlib.contextmanager
    def _hold(self, lock: IO[str]) -> Iterator[None]:
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock for a change; a change that cannot be made is a RegistryError."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error("create", self.directory, exc) from None
        try:
            lock = self._open_lock()
        except OSError as exc:
            raise self._error("write", self.lock_file, exc) from None
        with self._hold(lock):
            yield

    @contextlib.contextmanager
    def _locked_if_possible(self) -> Iterator[bool]:
        """The lock, for reading and pruning: yields False (nothing locked, nothing may be
        pruned) when it cannot be taken, e.g. on a read-only HOME. Creates nothing when there is
        no PID directory yet: then there is nothing to read either."""
        lock: Optional[IO[str]] = None
        if self.directory.is_dir():
            with contextlib.suppress(OSError):
                lock = self._open_lock()
        if lock is None:
            yield False
            return
        with self._hold(lock):
            yield True

    def _read_pids(self) -> Tuple[List[int], List[bytes]]:
        """The PIDs of the file, in order and once each, and the words that are no PID."""
        try:
            data = self.pid_file.read_bytes()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise self._error("read", self.pid_file, exc) from None
        pids: List[int] = []
        junk: List[bytes] = []
        for word in data.split():
            pid = int(word) if PID_PATTERN.fullmatch(word) else 0
            if not 0 < pid <= PID_LIMIT:
                junk.append(word)
            elif pid not in pids:
                pids.append(pid)
        return pids, junk

    def _write_pids(self, pids: List[int], junk: List[bytes]) -> None:
        temporary = self.pid_file.with_name(f".{self.pid_file.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text("".join(f"{pid}\n" for pid in pids), encoding="utf-8")
            os.replace(temporary, self.pid_file)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise self._error("write", self.pid_file, exc) from None
        if junk:
            log.warning("Pruned %s from the PID file %s: %s", _entries(junk), self.pid_file, _junk_text(junk))

    def _read_entry(self, pid: int) -> Tuple[Optional[RunEntry], bool]:
        """The entry of ``pid`` and whether it exists: (None, True) is an entry that cannot be
        read; (None, False) a PID without one (as the old tool wrote them)."""
        path = self._entry_path(pid)
        try:
            return RunEntry.from_json(path.read_text(encoding="utf-8")), True
        except FileNotFoundError:
            return None, False
        except (OSError, ValueError, TypeError):
            return None, True

    def register(self, entry: RunEntry) -> None:
        """Add ``entry``; raises RegistryError when it cannot be written (a run must be findable)."""
        with self._locked():
            pids, junk = self._read_pids()  # first: a PID file that cannot be read leaves nothing
            path = self._entry_path(entry.pid)
            temporary = path.with_name(f".{path.name}.tmp")
            try:
                temporary.write_text(entry.to_json(), encoding="utf-8")
                os.replace(temporary, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise self._error("write", path, exc) from None
            if entry.pid not in pids:
                pids.append(entry.pid)
            try:
                self._write_pids(pids, junk)
            except RegistryError:
                with contextlib.suppress(OSError):
                    path.unlink()  # an entry without its line would only be pruned later
                raise

    def unregister(self, pid: int) -> None:
        """Remove ``pid``. Best effort, with a warning when it cannot: the entry of a process
        that is gone is pruned by the next command that can write, so a run that ends never
        fails for this."""
        try:
            with self._locked():
                self._forget([pid])
        except RegistryError as exc:
            log.warning("Could not remove PID %d from the PID file: %s", pid, exc)

    def _forget(self, forgotten: List[int]) -> None:
        pids, junk = self._read_pids()
        kept = [pid for pid in pids if pid not in forgotten]
        if kept != pids or junk:
            self._write_pids(kept, junk)
        for pid in forgotten:
            with contextlib.suppress(FileNotFoundError):
                self._entry_path(pid).unlink()

    def live_runs(self) -> List[RunEntry]:
        """Every verified live run; stale or reused PIDs and unreadable lines are pruned on the
        way, when the PID file can be written (otherwise they are only left out)."""
        live: List[RunEntry] = []
        gone: List[int] = []
        with self._locked_if_possible() as writable:
            pids, junk = self._read_pids()
            for pid in pids:
                entry, exists = self._read_entry(pid)
                if entry is not None and entry.pid == pid and entry.is_alive():
                    live.append(entry)
                    continue
                gone.append(pid)
                if entry is None and exists:
                    log.warning("%s PID %d of the PID file %s: its entry %s cannot be read",
                                "Pruned" if writable else "Ignored", pid, self.pid_file,
                                self._entry_path(pid))
            if writable and (gone or junk):
                try:
                    self._forget(gone)
                except (RegistryError, OSError) as exc:  # listing still works; pruning waits
                    log.warning("Could not prune the PID file: %s", exc)
            elif junk:
                log.warning("Ignored %s of the PID file %s (it cannot be rewritten): %s",
                            _entries(junk), self.pid_file, _junk_text(junk))
        return live

    def find(self, pid: int) -> Optional[RunEntry]:
        for entry in self.live_runs():
            if entry.pid == pid:
                return entry
        return None


def own_create_time() -> float:
    """This process's start time as psutil reports it (``Process().create_time()``), read from
    /proc without importing psutil on every run's start-up path."""
    try:
        with open("/proc/self/stat", "rb") as stat_file:
            fields = stat_file.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as system_stat:
            boot = next(float(line.split()[1]) for line in system_stat if line.startswith(b"btime"))
        return float(fields[19]) / os.sysconf("SC_CLK_TCK") + boot
    except (OSError, ValueError, IndexError, StopIteration):
        import psutil

        return psutil.Process().create_time()


def entry_for_current_process(
    app_name: str, started_at: float, main_log: str, summary_csv: str, output_log: Optional[str],
    run_id: Optional[str] = None, daemon: bool = False,
) -> RunEntry:
    return RunEntry(
        pid=os.getpid(),
        create_time=own_create_time(),
        uid=os.getuid(),
        app_name=app_name,
        started_at=started_at,
        main_log=main_log,
        summary_csv=summary_csv,
        output_log=output_log,
        run_id=run_id,
        daemon=daemon,
    )
