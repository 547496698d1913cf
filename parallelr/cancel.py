"""Cancellation as a value: a :class:`CancelToken` says "stop this" to the tasks that watch it.

An executor owns one token and gives each task a child of it, so cancelling the executor's token
stops all of its tasks (and no other executor's), while cancelling one child stops one task.
:func:`parallelr.process.run_task` watches the token it is given and every ancestor of it.

Why it looks the way it does:

* ``cancel`` and ``kill`` run inside signal handlers (Ctrl+C), so they take no lock a signal
  could deadlock on: they set plain attributes and call the token's subscribers. The only lock
  involved is the reentrant :data:`_fd_lock` around a watch's pipe, and a signal handler that
  interrupts its own thread inside it just enters it again.
* A waiting task must wake at once, without polling, so :meth:`CancelToken.watch` gives it a
  pipe that becomes readable when the token or an ancestor is cancelled or killed. The pipe is
  made only when something waits (a task that never runs costs no descriptor) and closed when
  the waiting ends. A child keeps a reference to its parents, never the other way round, so a
  finished task's token is freed with the task.
* "First cancellation wins": when several tokens of a lineage are cancelled, :attr:`reason` is
  the reason of the one cancelled first, as it was when one process-wide reason existed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from typing import Callable, Iterator, List, Optional, Set, Tuple, Union

DEFAULT_REASON = "cancelled"

# next() on itertools.count is one C call: atomic under the GIL, and safe in a signal handler.
_sequence = itertools.count(1)

# Guards the write end of every watch pipe against being closed (and its number reused by an
# unrelated file) while a canceller in another thread is about to write to it. Reentrant: a
# signal handler that interrupts a thread holding it, in the same thread, enters it again.
_fd_lock = threading.RLock()

Listener = Callable[[], None]


class CancelToken:
    """A request to stop, for one task or many: cancel it, and what watches it stops.

    ``cancel(reason)`` stops the tasks politely (SIGTERM to each task's process group, SIGKILL
    after the grace period); ``kill(reason)`` SIGKILLs them at once. Either way they end as
    CANCELLED with :attr:`reason` as their error message, and a task started under a cancelled
    token ends CANCELLED without starting a process. Both are safe in a signal handler and may
    be called any number of times, from any thread; the first reason given stays.
    """

    __slots__ = ("_killed", "_lineage_cache", "_listeners", "_order", "_parents", "_reason")

    def __init__(self) -> None:
        self._parents: Tuple[CancelToken, ...] = ()
        self._lineage_cache: Optional[Tuple[CancelToken, ...]] = None  # see _lineage()
        self._reason: Optional[str] = None
        self._order = 0  # when it was cancelled (a global sequence number): the first one wins
        self._killed = False
        # Appended and removed by watchers, copied by cancellers: single list operations,
        # atomic under the GIL, so neither side needs a lock.
        self._listeners: List[Listener] = []

    # -- building -----------------------------------------------------------------------------
    def child(self) -> CancelToken:
        """A token that is cancelled (killed) whenever this one is, and that can be cancelled on
        its own without touching this one. A child of a cancelled token is cancelled at birth."""
        return CancelToken.linked(self)

    def for_task(self, cancel: Optional[CancelToken] = None) -> CancelToken:
        """The token of one task run by an executor that owns this token: a child of it, also
        linked to ``cancel`` (the caller's token for that task) when given, so that either the
        caller or the executor's shutdown stops the task."""
        return self.child() if cancel is None else CancelToken.linked(cancel, self)

    @classmethod
    def linked(cls, *parents: CancelToken) -> CancelToken:
        """A token that is cancelled (killed) whenever any of ``parents`` is, or on its own.

        An executor uses this to run a task that the caller may cancel (the caller's token)
        and that its own shutdown must stop too (the executor's token)."""
        token = cls()
        token._parents = tuple(parents)
        return token

    # -- stopping -----------------------------------------------------------------------------
    def cancel(self, reason: str = DEFAULT_REASON) -> None:
        """Stop the watching tasks: SIGTERM to their process groups, SIGKILL after the grace
        period; they end CANCELLED with ``reason``. Signal-handler safe; no-op when already
        cancelled (the first reason stays)."""
        if self._reason is not None:
            return
        self._order = next(_sequence)
        self._reason = reason
        self._notify()

    def kill(self, reason: str = DEFAULT_REASON) -> None:
        """Like :meth:`cancel`, but SIGKILL the tasks' process groups at once, without a grace
        period (a second Ctrl+C). Signal-handler safe; a token cancelled before keeps its
        reason."""
        if self._killed:
            return
        if self._reason is None:
            self._order = next(_sequence)
            self._reason = reason
        self._killed = True
        self._notify()

    def _notify(self) -> None:
        for listener in tuple(self._listeners):
            listener()

    # -- state --------------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once this token or an ancestor was cancelled or killed."""
        return any(token._reason is not None for token in self._lineage())

    @property
    def killed(self) -> bool:
        """True once this token or an ancestor was killed."""
        return any(token._killed for token in self._lineage())

    @property
    def reason(self) -> Optional[str]:
        """The reason of the first cancellation in this token's lineage, or None."""
        first: Optional[CancelToken] = None
        for token in self._lineage():
            if token._reason is not None and (first is None or token._order < first._order):
                first = token
        return None if first is None else first._reason

    def _lineage(self) -> Tuple[CancelToken, ...]:
        """This token and every ancestor, each once. A token's parents are fixed when it is made,
        so the tuple is worked out once: a task's token is asked several times per task."""
        lineage = self._lineage_cache
        if lineage is None:
            lineage = self._lineage_cache = tuple(self._walk_lineage())
        return lineage

    def _walk_lineage(self) -> Iterator[CancelToken]:
        token = self
        while len(token._parents) == 1:  # the common case, a chain of children: no set needed
            yield token
            token = token._parents[0]
        if not token._parents:
            yield token
            return
        # Several parents (linked tokens) may share ancestors. Nothing already yielded can
        # come again: a token's parents exist before it, so there are no cycles.
        seen: Set[int] = set()
        stack: List[CancelToken] = [token]
        while stack:
            token = stack.pop()
            if id(token) in seen:
                continue
            seen.add(id(token))
            yield token
            stack.extend(reversed(token._parents))

    # -- waiting ------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener()`` whenever this token or an ancestor is cancelled or killed (once
        for the cancel and once more for a later kill); returns the function that unsubscribes.

        The listener runs in the thread that cancels, possibly inside a signal handler: it
        must be quick, take no lock that is not reentrant, and not raise. It is not called for a
        cancellation that happened before it subscribed: check :attr:`cancelled` after
        subscribing."""
        tokens = self._lineage()
        for token in tokens:
            token._listeners.append(listener)

        def unsubscribe() -> None:
            for token in tokens:
                with contextlib.suppress(ValueError):  # unsubscribing twice is harmless
                    token._listeners.remove(listener)

        return unsubscribe

    def watch(self) -> TokenWatch:
        """A descriptor to wait on: readable once this token or an ancestor is cancelled or
        killed (at once when it already is). Close it when the waiting is over."""
        return TokenWatch(self)

    def listen(self, listener: Listener) -> TokenListener:
        """A watch without a descriptor: ``listener()`` is called as :meth:`subscribe` calls it,
        and at once when the token is cancelled already. Close it when the waiting is over."""
        return TokenListener(self, listener)

    def __repr__(self) -> str:
        state = "killed" if self.killed else "cancelled" if self.cancelled else "active"
        return f"<CancelToken {state} reason={self.reason!r}>"


class TokenWatch:
    """A pipe that a poll loop registers to wake when its token's state changes.

    One watcher owns it, so it can be drained after each wake-up and wake again for a later
    change (a kill after a cancel). Costs one pipe while it is open."""

    __slots__ = ("_unsubscribe", "_write_fd", "fd", "token")

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self.fd, self._write_fd = _nonblocking_pipe()
        self._unsubscribe = token.subscribe(self._wake)
        # Subscribed first, checked second: a cancel in between is seen by one or the other.
        if token.cancelled:
            self._wake()

    def _wake(self) -> None:
        with _fd_lock:
            if self._write_fd >= 0:
                # A full pipe (BlockingIOError) is already readable, which is all that matters.
                with contextlib.suppress(OSError):
                    os.write(self._write_fd, b"x")

    def drain(self) -> None:
        """Empty the pipe after a wake-up, so that the next change wakes the watcher again."""
        with contextlib.suppress(OSError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        """Stop watching and release the pipe; safe to call twice."""
        self._unsubscribe()
        with _fd_lock:
            write_fd, self._write_fd = self._write_fd, -1
            read_fd, self.fd = self.fd, -1
        for fd in (write_fd, read_fd):
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> TokenWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TokenListener:
    """A :class:`TokenWatch` for a driver that has a wake-up of its own: no pipe (``fd`` is -1),
    its listener is called instead (in the cancelling thread, possibly a signal handler)."""

    __slots__ = ("_unsubscribe", "fd", "token")

    def __init__(self, token: CancelToken, listener: Listener) -> None:
        self.token = token
        self.fd = -1
        self._unsubscribe = token.subscribe(listener)
        # Subscribed first, checked second: a cancel in between is seen by one or the other.
        if token.cancelled:
            listener()

    def drain(self) -> None:
        """Nothing to empty."""

    def close(self) -> None:
        """Stop listening; safe to call twice."""
        self._unsubscribe()


Watch = Union[TokenWatch, TokenListener]


def _nonblocking_pipe() -> Tuple[int, int]:
    """A non-inheritable, non-blocking pipe: one system call where pipe2 exists (Linux)."""
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd
