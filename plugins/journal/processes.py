"""Processes a dead run left behind: which of its tasks outlived their runner, and stopping them.

Whether a runner is alive is the core's rule (:mod:`parallelr.jobs.liveness`). A task's processes
are recognised by the markers the core puts in every task's environment, ``PARALLELR_RUN_ID`` and
``PARALLELR_TASK_INDEX``: the runner never reports a running task's PID to the scheduler thread
(and a killed runner reports nothing), so the environment is what survives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, List, Set

import attrs

from parallelr.model import RUN_ID_VARIABLE, TASK_INDEX_VARIABLE

if TYPE_CHECKING:
    import psutil

TERMINATE_GRACE = 3.0  # seconds between SIGTERM and SIGKILL for a dead run's leftover tasks


@attrs.frozen
class Leftovers:
    """A dead run's task processes that are still alive, and the process groups they lead."""

    processes: List[psutil.Process]
    groups: Set[int]
    tasks: Set[str] = attrs.field(factory=set)  # their PARALLELR_TASK_INDEX values


def find_leftovers(run_id: str) -> Leftovers:
    """This user's processes whose environment says they are tasks of run ``run_id``."""
    import psutil  # only resume and run listings need it

    me = os.getpid()
    own_group = os.getpgid(0)
    uid = os.getuid()
    found: List[psutil.Process] = []
    groups: Set[int] = set()
    tasks: Set[str] = set()
    for process in psutil.process_iter(["uids"]):
        try:
            uids = process.info["uids"]
            if process.pid == me or uids is None or uids.real != uid:
                continue
            environ = process.environ()
            if environ.get(RUN_ID_VARIABLE) != run_id:
                continue
            group = os.getpgid(process.pid)
        except (psutil.Error, OSError):  # gone meanwhile, or not readable
            continue
        if group == own_group:  # never signal our own group (a resume started from a task)
            continue
        found.append(process)
        tasks.add(environ.get(TASK_INDEX_VARIABLE, "?"))
        # The core starts each task as the leader of its own group; only such a group is
        # signalled as a whole. Without process groups, the processes are signalled one by one.
        if group == process.pid:
            groups.add(group)
    return Leftovers(found, groups, tasks)


def _signal(leftovers: Leftovers, signum: int) -> None:
    import psutil  # only resume and run listings need it

    for group in leftovers.groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signum)
    for process in leftovers.processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signum)


def terminate(leftovers: Leftovers, grace: float = TERMINATE_GRACE) -> int:
    """SIGTERM the leftovers (their whole groups), SIGKILL what is left after ``grace`` seconds.

    Returns how many processes were found.
    """
    import psutil  # only resume and run listings need it

    if not leftovers.processes:
        return 0
    _signal(leftovers, signal.SIGTERM)
    _, alive = psutil.wait_procs(leftovers.processes, timeout=grace)
    if alive:
        _signal(Leftovers(alive, leftovers.groups), signal.SIGKILL)
        psutil.wait_procs(alive, timeout=1.0)
    return len(leftovers.processes)
