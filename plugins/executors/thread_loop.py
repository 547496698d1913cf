"""The one thread that supervises every running task of the thread executor.

Each running task is a :class:`parallelr.supervise.TaskSupervisor`, the same state machine that
``process.run_task`` drives with one poll loop per task in a pool process or a Dask worker. Here
one ``epoll`` waits on the descriptors of all of them (output pipes, pidfds)
and on one wake-up pipe, and a heap holds their timers; the wait's timeout is the
earliest timer, so nothing polls.

Threads: a task is spawned and its supervisor built in another thread (one of the executor's
spawners), then :meth:`SupervisionLoop.adopt` hands it over; from then on only the loop thread
touches it. Its descriptors go into ``epoll`` only at the hand-over (``epoll_ctl`` may be called
from any thread), so no event reaches a supervisor that is still being built. Its first timer goes
through the inbox; the starting thread writes to the wake-up pipe only when that timer is earlier
than the time the loop sleeps until, which with the default sample interval (1 s) and tasks
shorter than that is never: a task start costs the loop no wake-up. A task's cancel token is
listened to (:meth:`SupervisionLoop.watch`): its change queues the supervisor and writes the
wake-up pipe, so no task needs a pipe of its own for it. A finished task's future is completed
from the loop thread, after the whole batch of events has been handled.

``AVAILABLE`` is False where there is no epoll (not Linux): the executor then runs each task with
``process.run_task`` in a thread of its own.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import math
import os
import select
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from parallelr.cancel import CancelToken, TokenListener
from parallelr.supervise import Poller, TaskSupervisor, Wake

AVAILABLE = hasattr(select, "epoll")
_AWAKE = -math.inf  # _sleeping_until while the loop runs: it looks at the inbox before it sleeps

Finished = Callable[["Supervised", Optional[BaseException]], None]


class Supervised:
    """A running task as the loop holds it: its supervisor, its next timer, and what to call when
    it is done (``on_done(entry, error)``, error set when supervising it failed)."""

    __slots__ = ("context", "on_done", "supervisor", "wake")

    def __init__(self, supervisor: TaskSupervisor, wake: Wake, on_done: Finished, context: Any) -> None:
        self.supervisor = supervisor
        self.wake = wake
        self.on_done = on_done
        self.context = context  # the executor's own record of the task (future, task, slot)


class SupervisionLoop(Poller):
    """``adopt`` running tasks; the loop thread supervises them until each is done."""

    def __init__(self, name: str = "supervisor") -> None:
        self._epoll = select.epoll()
        self._wake_read, self._wake_write = os.pipe()  # close-on-exec, as every descriptor of ours
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._epoll.register(self._wake_read, select.EPOLLIN)
        # fd -> (supervisor, data) for every descriptor a supervisor registered.
        self._handlers: Dict[int, Tuple[TaskSupervisor, object]] = {}
        self._entries: Dict[int, Supervised] = {}  # id(supervisor) -> its entry, for running tasks
        self._inbox: Deque[Supervised] = collections.deque()
        # Supervisors whose token changed: appended by the cancelling thread (maybe a signal
        # handler), taken by the loop; one wake-up pipe for all instead of a pipe per task.
        self._cancelled: Deque[TaskSupervisor] = collections.deque()
        self._timers: List[Tuple[float, int, Supervised]] = []
        self._sequence = itertools.count()
        self._sleeping_until = _AWAKE
        self._stopping = False
        self._handling = threading.RLock()  # see adopt()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    # - the Poller of every supervisor -
    def register(self, fd: int, supervisor: TaskSupervisor, data: object) -> None:
        # Into epoll only at adopt(): until then the supervisor is being built in another thread.
        self._handlers[fd] = (supervisor, data)

    def unregister(self, fd: int) -> None:
        entry = self._handlers.pop(fd, None)
        if entry is not None and id(entry[0]) in self._entries:
            with contextlib.suppress(OSError, ValueError):  # not in epoll (yet)
                self._epoll.unregister(fd)

    def watch(self, token: CancelToken, supervisor: TaskSupervisor) -> TokenListener:
        def changed() -> None:  # signal-handler safe: a deque append and a pipe write
            self._cancelled.append(supervisor)
            self._wake_up()

        return token.listen(changed)

    # - hand-over, from any thread -
    def adopt(self, entry: Supervised) -> None:
        """Supervise ``entry`` from now on: its supervisor is built and started (``entry.wake``
        is its first timer). The calling thread must not touch it afterwards."""
        supervisor, wake = entry.supervisor, entry.wake
        # Under the lock the loop thread holds while it handles events: epoll_ctl lets the loop
        # thread run, and it must neither handle this supervisor before all of its descriptors
        # are in epoll (it could finish it and close one not yet registered) nor spin on an
        # event it may not handle yet; it blocks on the lock instead, without the GIL.
        with self._handling:
            self._entries[id(supervisor)] = entry
            for fd in supervisor.descriptors():
                self._epoll.register(fd, select.EPOLLIN)
            self._inbox.append(entry)
            watch = supervisor.watch
            if watch is not None and watch.token.cancelled:  # told before it was adopted: again
                self._cancelled.append(supervisor)
                self._wake_up()
        # Read after the append: either the loop has not yet looked at the inbox (it reads
        # _AWAKE here, or finds the entry before it sleeps), or it sleeps until this time.
        if wake is not None and wake < self._sleeping_until:
            self._wake_up()

    def stop(self) -> None:
        """End the loop thread once no task is left (call when no more will be adopted)."""
        self._stopping = True
        self._wake_up()

    def _wake_up(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe is readable already
            os.write(self._wake_write, b"x")

    # - the loop thread -
    def _run(self) -> None:
        try:
            while not (self._stopping and not self._entries):
                self._iterate()
        except BaseException as exc:  # a bug in the loop itself: no task may be left unreported
            self._give_up(exc)
            raise
        finally:
            self._close()

    def _give_up(self, error: BaseException) -> None:
        for entry in list(self._entries.values()):
            entry.supervisor.abandon()
        self._take_inbox()
        for entry in list(self._entries.values()):
            del self._entries[id(entry.supervisor)]
            entry.on_done(entry, error)

    def _iterate(self) -> None:
        self._take_inbox()
        timeout = self._timeout()
        self._sleeping_until = math.inf if timeout is None else time.monotonic() + timeout
        if self._inbox:  # adopted while the timeout was worked out: take it first
            self._sleeping_until = _AWAKE
            return
        events = self._epoll.poll(-1 if timeout is None else timeout)
        self._sleeping_until = _AWAKE
        with self._handling:
            done = self._handle(events)
        for entry, error in done:
            entry.on_done(entry, error)

    def _handle(self, events: List[Tuple[int, int]]) -> List[Tuple[Supervised, Optional[BaseException]]]:
        """Dispatch one wait's events and due timers; the entries that are done (removed)."""
        touched: Dict[int, Tuple[Supervised, List[Tuple[int, object]]]] = {}
        # Every descriptor is looked up before any is handled: handling one may close a
        # descriptor whose number a new task (started in another thread) then gets.
        for fd, _mask in events:
            handler = self._handlers.get(fd)
            if handler is None:
                if fd == self._wake_read:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_read, 4096)
                continue
            supervisor, data = handler
            entry = self._entries.get(id(supervisor))
            if entry is not None:
                touched.setdefault(id(supervisor), (entry, []))[1].append((fd, data))
        cancelled: Set[int] = set()
        while self._cancelled:
            supervisor = self._cancelled.popleft()
            entry = self._entries.get(id(supervisor))
            if entry is not None:  # not adopted yet: adopt() tells it again; done: nothing to do
                cancelled.add(id(supervisor))
                touched.setdefault(id(supervisor), (entry, []))
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _sequence, entry = heapq.heappop(timers)
            if entry.wake == when and id(entry.supervisor) in self._entries:
                touched.setdefault(id(entry.supervisor), (entry, []))
        done: List[Tuple[Supervised, Optional[BaseException]]] = []
        for entry, ready in touched.values():
            supervisor = entry.supervisor
            try:
                if ready or id(supervisor) in cancelled:
                    supervisor.dispatch(ready, cancelled=id(supervisor) in cancelled)
                wake = supervisor.resume()
            except Exception as exc:  # a bug: the task must still be stopped and reported
                supervisor.abandon()
                done.append((entry, exc))
                continue
            if supervisor.done:
                done.append((entry, None))
            elif wake != entry.wake:
                self._set_timer(entry, wake)
        for entry, _error in done:
            del self._entries[id(entry.supervisor)]
        return done

    def _take_inbox(self) -> None:
        while self._inbox:
            entry = self._inbox.popleft()
            if entry.wake is not None:
                self._push_timer(entry, entry.wake)

    def _set_timer(self, entry: Supervised, wake: Wake) -> None:
        entry.wake = wake
        if wake is not None:
            self._push_timer(entry, wake)

    def _push_timer(self, entry: Supervised, when: float) -> None:
        heapq.heappush(self._timers, (when, next(self._sequence), entry))

    def _timeout(self) -> Optional[float]:
        """Seconds until the earliest live timer, None when there is none. Timers of finished
        tasks and replaced timers are dropped from the top here, so they never wake the loop."""
        timers = self._timers
        while timers:
            when, _sequence, entry = timers[0]
            if entry.wake == when and id(entry.supervisor) in self._entries:
                return max(0.0, when - time.monotonic())
            heapq.heappop(timers)
        return None

    def _close(self) -> None:
        self._epoll.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
