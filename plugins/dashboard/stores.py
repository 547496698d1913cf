"""The dashboard's connections to the store, and the feed of changes behind its live updates."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator, List, Optional

from parallelr.errors import ParallelrError
from parallelr.jobs.errors import StoreUnavailable
from parallelr.jobs.opening import is_url, open_existing_store, open_store

BUSY_TIMEOUT = 2.0  # a locked store is reported on the page after this long, not waited out
POLL_SECONDS = 0.25  # how often the feed asks SQLite whether another connection committed


class StoreMissing(ParallelrError):
    def __init__(self, location: str) -> None:
        super().__init__(f"there is no store at {location} yet: it is created when the first job is "
                         "enqueued or the first batch run is recorded")


class Stores:
    """Open stores, lent to one request at a time (SQLite connections are not shared between
    threads at once). Reads never create the database; an action that writes may."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._idle: List[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        with self._lent(create=False) as store:
            yield store

    @contextlib.contextmanager
    def writing(self) -> Iterator[Any]:
        with self._lent(create=True) as store:
            yield store

    @contextlib.contextmanager
    def _lent(self, create: bool) -> Iterator[Any]:
        store = self._take(create)
        try:
            yield store
        except StoreUnavailable:
            store.close()  # it may be the connection that is broken: never lend it again
            raise
        except BaseException:
            self._give(store)
            raise
        self._give(store)

    def _take(self, create: bool) -> Any:
        with self._lock:
            if self._idle:
                store = self._idle.pop()
                if is_url(self.location) or os.path.exists(self.location):
                    return store
                store.close()  # the file was deleted under us: start again
                self._close_idle()
        if create:
            return open_store(self.location, busy_timeout=BUSY_TIMEOUT)
        store = open_existing_store(self.location, busy_timeout=BUSY_TIMEOUT)
        if store is None:
            raise StoreMissing(self.location)
        return store

    def _give(self, store: Any) -> None:
        with self._lock:
            self._idle.append(store)

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def close(self) -> None:
        with self._lock:
            self._close_idle()


class ChangeFeed:
    """A counter that goes up when the store changes, for the server-sent events.

    SQLite tells no other process that it committed, so one thread asks the cheapest question
    there is, ``PRAGMA data_version`` (it reads shared memory, not the file), every
    ``POLL_SECONDS``; every open page then waits on this counter, not on the store.
    """

    def __init__(self, location: str, interval: float = POLL_SECONDS) -> None:
        self.location = location
        self.interval = interval
        self.version = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="dashboard-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self, seen: int, timeout: float) -> int:
        """The version once it differs from ``seen`` (or after ``timeout`` s, or on stop)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self.stopped, timeout)
            return self.version

    def _watch(self) -> None:
        store: Any = None
        last: Any = None
        while not self._stopping.is_set():
            try:
                if store is None:
                    store = open_existing_store(self.location, busy_timeout=BUSY_TIMEOUT)
                mark: Any = ("missing",) if store is None else ("open", store.change_counter())
            except StoreUnavailable as exc:
                if store is not None:
                    store.close()
                store, mark = None, ("unavailable", str(exc))
            if mark != last:
                last = mark
                with self._changed:
                    self.version += 1
                    self._changed.notify_all()
            self._stopping.wait(self.interval)
        if store is not None:
            store.close()
