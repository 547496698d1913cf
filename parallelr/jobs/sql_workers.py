"""The queue's settings, pauses and workers for :class:`~parallelr.jobs.sql_store.SqlJobStore`
(a mixin of it, beside :mod:`.sql_queue`, which has the jobs)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from parallelr.jobs.records import WorkerRecord
from parallelr.jobs.sql_queue import PAUSE_PREFIX, PAUSED_ALL, text_of, to_json


def _worker_from_row(row: Sequence[Any], current: Tuple[str, ...]) -> WorkerRecord:
    (worker_id, pid, host, slots, queues, started_at, heartbeat_at, jobs_done, stop_requested, wake) = row
    return WorkerRecord(
        id=worker_id, pid=pid, host=host, slots=slots, queues=tuple(json.loads(queues)),
        started_at=started_at, heartbeat_at=heartbeat_at, jobs_done=jobs_done,
        stop_requested=bool(stop_requested), wake=wake, current=current,
    )


class SqlWorkersMixin:
    """The :class:`~parallelr.jobs.store.QueueStore` methods for settings, pauses and workers. The
    host class provides ``connection``, ``_reading()``, ``_writing()`` and ``_paused()``."""

    connection: Any

    def _reading(self) -> Any: ...  # provided by the store class

    def _writing(self) -> Any: ...  # provided by the store class

    def _paused(self) -> List[str]: ...  # provided by SqlQueueMixin

    # -- settings and pauses ---------------------------------------------------------------------
    def get_settings(self, prefix: str = "") -> Dict[str, str]:
        with self._reading():
            return dict(self.connection.execute(
                "SELECT key, value FROM settings WHERE key LIKE ? ORDER BY key", (prefix + "%",)
            ).fetchall())

    def set_setting(self, key: str, value: Optional[str]) -> None:
        """Store ``key`` = ``value``; None removes it."""
        with self._writing():
            if value is None:
                self.connection.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self.connection.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value),
                )

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (or resume) ``queue``; :data:`PAUSED_ALL` is every queue. Resuming every queue
        lifts each queue's own pause too."""
        with self._writing():
            if paused:
                self.connection.execute(
                    "INSERT INTO settings (key, value) VALUES (?, '1')"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (PAUSE_PREFIX + queue,)
                )
            elif queue == PAUSED_ALL:
                self.connection.execute("DELETE FROM settings WHERE key LIKE ?", (PAUSE_PREFIX + "%",))
            else:
                self.connection.execute("DELETE FROM settings WHERE key = ?", (PAUSE_PREFIX + queue,))

    def paused_queues(self) -> List[str]:
        with self._reading():
            return self._paused()

    # -- workers ---------------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> None:
        with self._writing():
            self.connection.execute(
                "INSERT INTO workers (id, pid, host, slots, queues, started_at, heartbeat_at,"
                " jobs_done, stop_requested, wake) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)"
                " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host,"
                " slots = excluded.slots, queues = excluded.queues, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, jobs_done = 0, stop_requested = 0,"
                " wake = excluded.wake",
                (worker.id, worker.pid, worker.host, worker.slots, to_json(list(worker.queues)),
                 worker.started_at, worker.heartbeat_at, worker.wake),
            )

    def worker_heartbeat(self, owner: str, now: float, jobs_done: int = 0) -> bool:
        """Record that ``owner`` is alive and has finished ``jobs_done`` jobs. Returns whether
        someone asked it to stop (or its row was removed: it is not wanted either)."""
        with self._writing():
            self.connection.execute(
                "UPDATE workers SET heartbeat_at = ?, jobs_done = ? WHERE id = ?", (now, jobs_done, owner)
            )
            found = self.connection.execute(
                "SELECT stop_requested FROM workers WHERE id = ?", (owner,)
            ).fetchone()
        return found is None or bool(found[0])

    def remove_worker(self, owner: str) -> None:
        with self._writing():
            self.connection.execute("DELETE FROM workers WHERE id = ?", (owner,))

    def list_workers(self, alive_since: Optional[float] = None) -> List[WorkerRecord]:
        """Workers whose last heartbeat is at or after ``alive_since`` (None: all), oldest first."""
        where, params = ("heartbeat_at >= ?", (alive_since,)) if alive_since is not None else ("1 = 1", ())
        with self._reading():
            rows = self.connection.execute(
                "SELECT id, pid, host, slots, queues, started_at, heartbeat_at, jobs_done, stop_requested,"
                f" wake FROM workers WHERE {where} ORDER BY started_at, id", params,
            ).fetchall()
            current: Dict[str, List[str]] = {}
            for owner, name in self.connection.execute(
                "SELECT lease_owner, name FROM jobs WHERE state = 'running' AND queue IS NOT NULL ORDER BY id"
            ).fetchall():
                current.setdefault(owner, []).append(text_of(name) or "")
        return [_worker_from_row(row, tuple(current.get(row[0], ()))) for row in rows]

    def worker_wake_addresses(self, alive_since: float) -> List[str]:
        """How to wake each live worker (see :mod:`parallelr.queue.wake`)."""
        with self._reading():
            return [wake for (wake,) in self.connection.execute(
                "SELECT wake FROM workers WHERE heartbeat_at >= ? AND wake IS NOT NULL", (alive_since,)
            ).fetchall()]

    def request_worker_stop(self, alive_since: float) -> List[WorkerRecord]:
        """Ask every live worker to stop; returns them (to wake them)."""
        with self._writing():
            self.connection.execute(
                "UPDATE workers SET stop_requested = 1 WHERE heartbeat_at >= ?", (alive_since,)
            )
        return self.list_workers(alive_since)

    def forget_workers(self, heartbeat_before: float) -> int:
        """Remove the rows of workers gone since ``heartbeat_before`` (killed, never cleaned up)."""
        with self._writing():
            return self.connection.execute(
                "DELETE FROM workers WHERE heartbeat_at < ?", (heartbeat_before,)
            ).rowcount
