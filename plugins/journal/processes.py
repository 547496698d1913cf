"""Processes a dead run left behind: which of its tasks outlived their runner, and stopping them.

Whether a runner is alive is the core's rule (:mod:`parallelr.jobs.liveness`). A task's processes
are recognised by the markers the core puts in every task's environment, ``PARALLELR_RUN_ID`` and
``PARALLELR_TASK_INDEX``: the runner never reports a running task's PID to the scheduler thread
(and a killed runner reports nothing), so the environment is what survives it.

An executor's own processes (the ``process`` executor's fork server, workers and resource
tracker) carry ``PARALLELR_RUN_ID`` without a task index. They die with their runner where the
system allows it; whatever is left of them is stopped with the tasks, one by one: they lead no
process group of their own.
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
    helpers: Set[int] = attrs.field(factory=set)  # PIDs of the executor's own processes


def find_leftovers(run_id: str) -> Leftovers:
    """This user's processes whose environment says they belong to run ``run_id``: its tasks and
    its executor's processes, save this process's own ancestors and descendants."""
    import psutil  # only resume and run listings need it

    me = os.getpid()
    own_group = os.getpgid(0)
    uid = os.getuid()
    myself = psutil.Process(me)
    ancestors = {process.pid for process in myself.parents()}
    # An executor process this process started for an earlier run of the same ID (run_batch
    # twice in one program) is ours, not a dead runner's.
    descendants = {process.pid for process in myself.children(recursive=True)}
    found: List[psutil.Process] = []
    groups: Set[int] = set()
    tasks: Set[str] = set()
    helpers: Set[int] = set()
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
        index = environ.get(TASK_INDEX_VARIABLE)
        if index is None:
            # An executor's process: in the dead runner's group, which may well be ours (a
            # script that starts the run and then the resume), so the group rule below would
            # spare it. Signalled alone, it is spared only if it runs us or is ours.
            if process.pid not in ancestors and process.pid not in descendants:
                found.append(process)
                helpers.add(process.pid)
            continue
        if group == own_group:  # never signal our own group (a resume started from a task)
            continue
        found.append(process)
        tasks.add(index)
        # The core starts each task as the leader of its own group; only such a group is
        # signalled as a whole. Without process groups, the processes are signalled one by one.
        if group == process.pid:
            groups.add(group)
    return Leftovers(found, groups, tasks, helpers)


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
