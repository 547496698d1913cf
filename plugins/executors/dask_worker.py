"""What runs inside a Dask worker process for the ``dask`` executor: one attempt of a task, and
the stopping of attempts the runner asks for.

**At most once.** Dask runs a task again when the worker that ran it dies (the scheduler's
``allowed-failures``), and a runner cannot change an external scheduler's config. So an attempt
first looks for, then leaves, a mark in the scheduler's metadata of its own key (the address of
the worker that started it). Finding the mark means a worker died while the attempt ran: the
command is not started again, the attempt ends FAILED saying which worker was lost, and the
runner's retry policy decides. The scheduler drops a key's metadata when it forgets the key
(the runner releases each future as soon as it has the result), so the marks clean up after
themselves and cost two small scheduler calls per attempt. A worker killed outright cannot stop
its task; when the key runs again on the same host, what the lost attempt left running is killed
first (:func:`_stop_leftovers`).

**Stopping.** A :class:`~parallelr.cancel.CancelToken` cannot cross into another process, so
each attempt runs under a token of this worker process, registered under the attempt's key.
The runner reaches them with ``Client.run`` (:func:`stop_attempts`, :func:`stop_run`): the
token is cancelled (SIGTERM to the task's group, SIGKILL after the grace period) or killed, and
a key or run that is not running here yet is remembered, so an attempt that starts later ends
CANCELLED without starting its command. Only keys of this registry are ever touched: other
users' tasks on a shared cluster are not ours. :class:`StopReleased` is the safety net for a
runner that vanished (``kill -9``, a lost network): the scheduler then releases its keys, and an
attempt whose key is released while it runs is cancelled too.

Everything here is per worker process by nature (a worker serves many runs), keyed by the
attempt's key, which names its run.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import attrs
from distributed import get_client, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from parallelr.cancel import CancelToken
from parallelr.model import (
    RUN_ID_VARIABLE,
    TASK_INDEX_VARIABLE,
    ExecutionLimits,
    Task,
    TaskResult,
    TaskStatus,
)
from parallelr.process import run_task_guarded

MARK = "parallelr-started"  # the metadata entry under an attempt's key: {"worker": address, "host": name}
LOST_MESSAGE = "Dask worker lost while the task ran ({worker})"
RELEASED_REASON = "Cancelled: the run's Dask client went away (the scheduler released the task)"
CLOSING_REASON = "Cancelled: the Dask worker is closing"
REMEMBERED = 4096  # stop requests kept for attempts not started here (most never will be)
TEARDOWN_WAIT = 5.0  # seconds a closing worker waits for its killed attempts to end


@attrs.frozen
class Stop:
    """A stop request: the reason the attempt ends CANCELLED with, and whether to SIGKILL now."""

    reason: str
    kill: bool = False

    def apply(self, token: CancelToken) -> None:
        if self.kill:
            token.kill(self.reason)
        else:
            token.cancel(self.reason)


class _Registry:
    """The attempts running in this worker process, and the stops asked for others."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.running: Dict[str, CancelToken] = {}
        self.stopped_keys: collections.OrderedDict = collections.OrderedDict()
        self.stopped_runs: collections.OrderedDict = collections.OrderedDict()

    def enter(self, key: str, run: str) -> CancelToken:
        token = CancelToken()
        with self.lock:
            self.running[key] = token
            stop = self.stopped_keys.pop(key, None) or self.stopped_runs.get(run)
        if stop is not None:
            stop.apply(token)
        return token

    def leave(self, key: str) -> None:
        with self.lock:
            self.running.pop(key, None)
            if not self.running:
                self.idle.notify_all()

    def stop(self, keys: Tuple[str, ...], run: Optional[str], stop: Stop) -> List[str]:
        """Apply ``stop`` to ``keys`` (or every attempt of ``run``); remember it for those not
        running here. Returns the keys it found running."""
        with self.lock:
            if run is not None:
                _remember(self.stopped_runs, run, stop)
                found = [(key, token) for key, token in self.running.items() if key.startswith(run + "-")]
            else:
                found = []
                for key in keys:
                    token = self.running.get(key)
                    if token is None:
                        _remember(self.stopped_keys, key, stop)
                    else:
                        found.append((key, token))
        for _, token in found:
            stop.apply(token)
        return [key for key, _ in found]

    def stop_all(self, stop: Stop, wait: float) -> None:
        """Stop every attempt here and wait up to ``wait`` seconds for them to end."""
        with self.lock:
            tokens = list(self.running.values())
        for token in tokens:
            stop.apply(token)
        deadline = time.monotonic() + wait
        with self.lock:
            while self.running and time.monotonic() < deadline:
                self.idle.wait(deadline - time.monotonic())


def _remember(stops: collections.OrderedDict, name: str, stop: Stop) -> None:
    stops[name] = stop
    while len(stops) > REMEMBERED:
        stops.popitem(last=False)


_registry = _Registry()


# -- the task function ------------------------------------------------------------------------
def run_attempt(task: Task, worker_id: int, limits: ExecutionLimits, key: str, run: str) -> TaskResult:
    """One attempt of ``task``, submitted under the Dask key ``key`` of the run ``run``: never
    twice (see the module docstring), stoppable through :func:`stop_attempts` / :func:`stop_run`."""
    client = get_client()
    started_by = client.get_metadata([key, MARK], default=None)
    if started_by is not None:
        # Dask runs it again because the worker that started it died: its command may have run.
        _stop_leftovers(task, limits, started_by.get("host"))
        return TaskResult(task=task, status=TaskStatus.FAILED, worker_id=worker_id,
                          error_message=LOST_MESSAGE.format(worker=started_by.get("worker")))
    client.set_metadata([key, MARK], {"worker": get_worker().address, "host": socket.gethostname()})
    token = _registry.enter(key, run)
    try:
        return run_task_guarded(task, worker_id, limits, token)
    finally:
        _registry.leave(key)


def _stop_leftovers(task: Task, limits: ExecutionLimits, host: Optional[str]) -> None:
    """SIGKILL what the lost attempt left running, when this is the host it ran on: a worker
    killed outright (``kill -9``, the OOM killer) leaves its task's process group behind, which
    would otherwise run on beside the retry. Its processes carry the run's markers in their
    environment (``parallelr.process``); the retry of this task cannot have started yet, as the
    runner has not had this attempt's result. On another host they run on until their end."""
    if limits.run_id is None or host != socket.gethostname():
        return
    import psutil

    uid = os.getuid()
    index = str(task.index)
    found = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"].real != uid:
                continue
            env = proc.environ()
        except psutil.Error:  # gone, or not ours to read
            continue
        if env.get(RUN_ID_VARIABLE) == limits.run_id and env.get(TASK_INDEX_VARIABLE) == index:
            found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error, OSError):
            if limits.use_process_groups and os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)  # a leader: its whole group, as run_task would
            proc.kill()  # psutil checks it is still the process it found


# -- called by the runner through Client.run (in the worker's event loop: quick, no waiting) --
def stop_attempts(keys: List[str], reason: str, kill: bool = False) -> List[str]:
    """Stop the attempts ``keys`` (those running here, and those that start here later)."""
    return _registry.stop(tuple(keys), None, Stop(reason, kill))


def stop_run(run: str, reason: str, kill: bool = False) -> List[str]:
    """Stop every attempt of ``run`` here, now and later; returns the keys that were running."""
    return _registry.stop((), run, Stop(reason, kill))


class StopReleased(WorkerPlugin):
    """Stops an attempt whose key the scheduler released while it ran: its runner is gone, or
    gave it up. A closing worker kills its attempts first, so no task group outlives it."""

    idempotent = True  # every run registers it; the first registration is the one that counts
    name = "parallelr-stop-released"

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # Called for every task of the worker, also other users': two comparisons for theirs.
        if start == "executing" and finish == "released" and key in _registry.running:
            _registry.stop((key,), None, Stop(RELEASED_REASON))

    def teardown(self, worker: Any) -> None:
        # Also called when the plugin is replaced (distributed without ``idempotent``): only a
        # closing worker stops what runs, as its threads are abandoned when the process ends.
        status = getattr(getattr(worker, "status", None), "name", "")
        if status in ("closing", "closing_gracefully", "closed", "failed"):
            _registry.stop_all(Stop(CLOSING_REASON, kill=True), TEARDOWN_WAIT)


# -- a local cluster's workers ----------------------------------------------------------------
def _ignore_signal(_signum: int, _frame: Any) -> None:
    """A Python-level handler rather than SIG_IGN: exec resets it, so tasks still get SIGINT."""


def dask_setup(worker: Any) -> None:
    """Preloaded by the workers of a local cluster: a Ctrl+C in the terminal reaches them too
    (they share the runner's process group), and the runner decides what it means."""
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, _ignore_signal)
