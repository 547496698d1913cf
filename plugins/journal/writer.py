"""The journal's writer thread: task records leave the scheduler thread in microseconds.

The reporter hooks run on the scheduler's thread, where every millisecond delays the next task.
They only put a small record on a queue. One writer thread takes whatever is queued, applies
it all in ONE transaction and commits once (group commit).

A commit costs far more than the statements in it, so commits are spaced at least
:data:`COMMIT_INTERVAL` apart: when the run is quiet the writer commits a single record as soon
as it arrives; when tasks finish faster than that, the records that arrive within the interval
share one commit. Either way a finished task is on disk within a few milliseconds (a kill -9 of
the runner right after does not lose it). A flush or close never waits for the interval.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Any, List, Optional, Tuple

from parallelr.plugins.journal.store import JournalStore

log = logging.getLogger("parallelr.journal")

Record = Tuple[str, Tuple[Any, ...]]  # (name of a JournalStore method, its arguments)

_STOP = object()
COMMIT_INTERVAL = 0.005  # seconds: at most ~200 commits a second, whatever the task rate


class JournalWriter:
    """Applies records to ``store`` on its own thread; ``close()`` drains, commits and joins."""

    def __init__(self, store: JournalStore) -> None:
        self.store = store
        self.batches = 0  # transactions committed (tests check the grouping)
        self.records = 0
        self.failure: Optional[str] = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="parallelr-journal", daemon=True)
        self._thread.start()

    def put(self, method: str, *args: Any) -> None:
        """Queue ``store.<method>(*args)``: called later, on the writer thread, inside a
        transaction. The arguments must be immutable (they are read on another thread)."""
        self._queue.put((method, args))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued so far is committed (or failed)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Commit what is queued and stop the thread. Safe to call twice."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _take(self, not_before: float) -> List[Any]:
        """Block for one item; if it is a record and the last commit was less than
        COMMIT_INTERVAL ago, let more records gather until ``not_before`` (monotonic); then take
        everything queued. Sleeping instead of waiting on the queue item by item means one
        wake-up per commit, not one per task: the scheduler's thread keeps the GIL."""
        first = self._queue.get()
        if isinstance(first, tuple):
            remaining = not_before - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        items = [first]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _loop(self) -> None:
        last_commit = float("-inf")
        while True:
            items = self._take(last_commit + COMMIT_INTERVAL)
            records = [item for item in items if isinstance(item, tuple)]
            if records:
                self._apply(records)
                last_commit = time.monotonic()
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if any(item is _STOP for item in items):
                return

    def _apply(self, records: List[Record]) -> None:
        try:
            with self.store.transaction():
                self.store.apply_batch(records)
        except sqlite3.Error as exc:
            self._failed(exc, len(records))
            return
        except Exception as exc:  # a bug must not kill the writer: the run goes on
            self._failed(exc, len(records))
            return
        self.batches += 1
        self.records += len(records)

    def _failed(self, exc: BaseException, count: int) -> None:
        first = self.failure is None
        self.failure = f"{exc}"
        if first:
            log.warning(
                "journal %s: cannot record %d task update(s): %s; this run may not resume exactly",
                self.store.path, count, exc,
            )

