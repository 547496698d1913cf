"""The executor contract: what the scheduler hands tasks to, and what builds one for a run.

An executor plugin returns ``{name: factory}`` from ``parallelr_executors``; the core calls
``factory(context)`` once per run with an :class:`ExecutorContext` and gets an object that
satisfies :class:`Executor`. Every executor runs a task with :func:`parallelr.process.run_task`,
so a thread, a pool process and a remote worker run a task identically.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Mapping, Protocol

import attrs

from parallelr.model import ExecutionLimits, Task


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

    ``submit`` returns a future that always resolves to a :class:`parallelr.model.TaskResult`
    (never an exception: a failure to run is an ERROR or CANCELLED result).
    ``shutdown(cancel)`` waits until nothing runs; with ``cancel`` it does not start what is
    queued and stops what runs (its whole process group), which then ends as CANCELLED.
    ``kill()`` SIGKILLs the running tasks' groups at once (a second Ctrl+C).
    """

    def submit(self, task: Task, worker_id: int) -> concurrent.futures.Future: ...

    def shutdown(self, cancel: bool) -> None: ...

    def kill(self) -> None: ...


ExecutorFactory = Callable[[ExecutorContext], Executor]
