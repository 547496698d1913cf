"""Graceful shutdown on SIGINT, SIGTERM and SIGHUP: stop starting, stop running, account for all.

The first signal asks the scheduler to stop (it wakes at once: the request is a Future in its
wait set); the executor then terminates the running tasks' process groups (SIGTERM, SIGKILL after
the grace period) and every task still gets its CSV row. A second signal kills the running task
groups at once. A daemon ignores SIGHUP (it has no terminal to lose).
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from parallelr import console
from parallelr.scheduler import StopRequest

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TwoStageSignals:
    """Handlers for ``handled`` signals while the ``with`` block runs: :meth:`first` for the
    first signal, :meth:`again` for every later one; SIGHUP is ignored with ``ignore_hangup``
    (a daemon has no terminal to lose). The previous handlers come back at the end."""

    def __init__(self, handled: Sequence[int], ignore_hangup: bool = False) -> None:
        self.handled = tuple(handled)
        self.ignore_hangup = ignore_hangup
        self._count = 0
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> Any:
        numbers = set(self.handled) | ({signal.SIGHUP} if self.ignore_hangup else set())
        for signum in sorted(numbers):
            ignored = signum == signal.SIGHUP and self.ignore_hangup
            handler: Any = signal.SIG_IGN if ignored else self._handle
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count == 1:
            self.first(name, signum)
        else:
            self.again(name, signum)

    def first(self, name: str, signum: int) -> None:
        raise NotImplementedError

    def again(self, name: str, signum: int) -> None:
        raise NotImplementedError


class ShutdownOnSignal(TwoStageSignals):
    def __init__(
        self,
        stop_request: StopRequest,
        prog: str,
        kill_now: Callable[[], None],
        ignore_hangup: bool = False,
    ) -> None:
        super().__init__(HANDLED, ignore_hangup)
        self.stop_request = stop_request
        self.prog = prog
        self.kill_now = kill_now
        self.received: Optional[int] = None

    def _say(self, text: str) -> None:
        try:
            with console.console_write():  # on a line of its own, not after the progress line
                sys.stderr.write(f"{self.prog}: {text}\n")
                sys.stderr.flush()
        # a closed or broken stderr, or one this thread was writing to when the signal came
        # (a reentrant write), must not stop the shutdown
        except (OSError, ValueError, RuntimeError):
            pass

    def first(self, name: str, signum: int) -> None:
        self.received = signum
        self._say(f"received {name}: shutting down; running tasks are being stopped, "
                  "tasks not yet started are cancelled (signal again to kill at once)")
        self.stop_request.request(name, exit_code=128 + signum)

    def again(self, name: str, signum: int) -> None:
        self._say(f"received {name} again: killing running tasks now")
        self.kill_now()
