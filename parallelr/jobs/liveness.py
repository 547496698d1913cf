"""Is the holder of a run alive? Its lease decides; on the same host its PID proves it too.

A run recorded as ``running`` is alive when its lease has not expired AND, when the runner is on
this host, the runner's PID is still the same process (PID *and* process start time: a PID alone
may have been reused since). The PID check is what makes a ``kill -9``'ed runner count as dead at
once on its own host, without waiting for its lease to expire; a runner on another host is
judged by its lease alone. A run stored before leases existed (no expiry) is judged by its PID
(and a runner on another host counts as alive: never resume by mistake a run that may still be
going somewhere else).
"""

from __future__ import annotations

import socket
import time
from typing import Optional

from parallelr import registry
from parallelr.jobs.records import RunRecord
from parallelr.jobs.states import RunState
from parallelr.registry import CREATE_TIME_TOLERANCE


def this_host() -> str:
    return socket.gethostname()


def own_create_time() -> Optional[float]:
    return registry.own_create_time()  # the same figure as psutil's, without importing it


def runner_alive(pid: Optional[int], create_time: Optional[float], host: Optional[str]) -> bool:
    """True if the process that ran (or runs) a run is still that process.

    A runner on another host cannot be checked from here and counts as alive (its lease decides).
    """
    import psutil  # only resume and run listings need it

    if host and host != this_host():
        return True
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # exists, but not ours to inspect: assume it is that runner
        return True


def is_alive(run: RunRecord, now: Optional[float] = None) -> bool:
    """True if ``run`` is recorded as running and its runner still holds it (see the module)."""
    if run.state != RunState.RUNNING:
        return False
    now = time.time() if now is None else now
    if run.lease_expires_at is not None and run.lease_expires_at <= now:
        return False  # it stopped renewing: gone, or cut off, whatever its PID says
    return runner_alive(run.pid, run.create_time, run.host)


def shown_state(run: RunRecord) -> str:
    """The state to show: a ``running`` run whose runner is gone is ``crashed``."""
    if run.state == RunState.RUNNING and not is_alive(run):
        return RunState.CRASHED.value
    return run.state
