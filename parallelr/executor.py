"""The executor contract: what the scheduler hands tasks to, and what builds one for a run.

An executor plugin returns ``{name: factory}`` from ``parallelr_executors``; the core calls
``factory(context)`` once per run with an :class:`ExecutorContext` and gets an object that
satisfies :class:`Executor`. Every executor runs a task with :func:`parallelr.process.run_task`,
so a thread, a pool process and a remote worker run a task identically, and stops it through a
:class:`parallelr.cancel.CancelToken`. docs/plugins.md has a complete executor plugin.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Mapping, Optional, Protocol

import attrs

from parallelr.cancel import CancelToken
from parallelr.model import ExecutionLimits, Task

# The reason of a task an executor's shutdown stopped, or never started because of it: the same
# words in every executor's results (the CSV's error_message) and in the scheduler's.
SHUTDOWN_REASON = "Cancelled by shutdown"


@attrs.frozen
class ExecutorContext:
    """What a factory gets to build the executor of one run.

    ``workers`` is the number of slots the scheduler will use (never more tasks at once);
    ``limits`` is what every :func:`parallelr.process.run_task` call needs; ``settings`` is the
    run's :class:`parallelr.config.Settings` and ``options`` its request's options, for
    executors with settings of their own (a cluster address, say).
    """

    workers: int = attrs.field(validator=attrs.validators.ge(1))
    limits: ExecutionLimits
    settings: Any = None
    options: Mapping[str, Any] = attrs.field(factory=dict)


class Executor(Protocol):
    """Runs tasks; the scheduler decides when and in which worker slot.

    Every executor owns a :class:`~parallelr.cancel.CancelToken` that stands for all of its
    tasks and only its tasks: ``shutdown(cancel=True)`` cancels it, ``kill()`` kills it, and
    another executor in the same process is never touched. Each task runs under a token of its
    own (the caller's, or a child of the executor's), so one task can be stopped alone.
    """

    def submit(
        self, task: Task, worker_id: int, cancel: Optional[CancelToken] = None
    ) -> concurrent.futures.Future:
        """Start ``task`` in worker slot ``worker_id`` (or queue it until a slot is free).

        Args:
            task: what to run, with :func:`parallelr.process.run_task`.
            worker_id: the slot (1..workers) the scheduler gives it; it names the task's
                working directory under workspace isolation.
            cancel: the task's own token. Cancelling it stops this task only (SIGTERM to its
                process group, SIGKILL after the grace period; ``kill()`` on it: SIGKILL at
                once), which then ends CANCELLED with the token's reason; already cancelled,
                the task ends CANCELLED without starting a process. The executor's own
                shutdown stops the task as well. None: the executor makes a child of its own
                token.

        Returns:
            A future that always resolves to a :class:`parallelr.model.TaskResult`, never to an
            exception: a failure to run is an ERROR or CANCELLED result. It may report
            ``cancelled()`` when a shutdown cancelled the task before it started.

        Raises:
            Nothing: a submit after ``shutdown`` returns a future of a CANCELLED result.
        """
        ...

    def shutdown(self, cancel: bool) -> None:
        """Wait until none of this executor's tasks runs, and release its workers.

        Args:
            cancel: True: cancel the executor's token: queued tasks do not start (their
                futures report ``cancelled()`` or resolve CANCELLED) and running ones are
                stopped with their whole process group (SIGTERM, SIGKILL after the grace
                period) and end as CANCELLED. False: let the running and queued tasks finish.
        """
        ...

    def kill(self) -> None:
        """Kill the executor's token: SIGKILL the running tasks' process groups at once (a second
        Ctrl+C); they end as CANCELLED. Must be safe to call from a signal handler, and may
        be called during or after ``shutdown``. Optional: without it the core calls
        ``shutdown(cancel=True)``."""
        ...


ExecutorFactory = Callable[[ExecutorContext], Executor]
