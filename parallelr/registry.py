"""The process registry: which parallelr runs of this user are alive, proven, not guessed.

``~/parallelr/pids/parallelr.pids`` keeps one PID per line (COMPAT.md: scripts read it). Beside
it, ``<PID>.json`` records what proves that PID is still that run: the process's start time
(psutil ``create_time``), its owner and its log paths. A PID whose process is gone, or whose
number now belongs to another process (different start time), is pruned and never signalled.

Several runs start and end at once, so every change happens under an exclusive ``flock`` on
``parallelr.pids.lock`` and the PID file is replaced atomically (write + rename): no lost lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import attrs

# create_time is derived from the boot time and clock ticks; allow for rounding only.
CREATE_TIME_TOLERANCE = 0.05


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
        data: Dict[str, Any] = json.loads(text)
        fields = {field.name for field in attrs.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})

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


class Registry:
    def __init__(self, pid_file: Path) -> None:
        self.pid_file = Path(pid_file)
        self.directory = self.pid_file.parent
        self.lock_file = self.pid_file.with_name(self.pid_file.name + ".lock")

    def _entry_path(self, pid: int) -> Path:
        return self.directory / f"{pid}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_pids(self) -> List[int]:
        try:
            text = self.pid_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        pids = []
        for line in text.split():
            if line.isdigit() and int(line) not in pids:
                pids.append(int(line))
        return pids

    def _write_pids(self, pids: List[int]) -> None:
        temporary = self.pid_file.with_name(f".{self.pid_file.name}.{os.getpid()}.tmp")
        temporary.write_text("".join(f"{pid}\n" for pid in pids), encoding="utf-8")
        os.replace(temporary, self.pid_file)

    def _read_entry(self, pid: int) -> Optional[RunEntry]:
        try:
            return RunEntry.from_json(self._entry_path(pid).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None

    def register(self, entry: RunEntry) -> None:
        with self._locked():
            path = self._entry_path(entry.pid)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(entry.to_json(), encoding="utf-8")
            os.replace(temporary, path)
            pids = self._read_pids()
            if entry.pid not in pids:
                pids.append(entry.pid)
            self._write_pids(pids)

    def unregister(self, pid: int) -> None:
        with self._locked():
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        pids = self._read_pids()
        if pid in pids:
            pids.remove(pid)
            self._write_pids(pids)
        with contextlib.suppress(FileNotFoundError):
            self._entry_path(pid).unlink()

    def live_runs(self) -> List[RunEntry]:
        """Every verified live run; stale or reused PIDs are pruned on the way."""
        live: List[RunEntry] = []
        with self._locked():
            for pid in self._read_pids():
                entry = self._read_entry(pid)
                if entry is not None and entry.pid == pid and entry.is_alive():
                    live.append(entry)
                else:
                    self._forget(pid)
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
