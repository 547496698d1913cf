"""The plugin contract: every extension point of parallelr, in the order a run calls them.

Third-party plugins are written against these names and signatures; they are public API.
A plugin is any module or object with functions marked ``@parallelr.hookimpl`` whose names
are the hooks below. Implementations may accept fewer arguments than the spec lists
(pluggy passes only the ones they name).

Built-in plugins register directly; third-party ones are found through the entry-point group
``parallelr``; ``-p MODULE`` / ``--plugin MODULE`` imports one by name and ``-p no:NAME``
blocks one (by its registered name, which is the entry-point name for third-party plugins).

Order of a run::

    parallelr_presets              (once, to know which presets exist)
    parallelr_commands             (subcommands such as ``parallelr runs list``)
    parallelr_addoption(parser)    (build the command line)
    parallelr_configure(config)    (after parsing, before the YAML files are read; per-run
                                    plugin objects such as reporters register here)
    parallelr_settings_sections    (plugins' own config sections, read with the YAML files)
    parallelr_executors            (the --executor choices)
    parallelr_resume(config)       (first result wins; if a plugin resumes a run, no collection)
    parallelr_collect_tasks(config)
    parallelr_dispatch(config, tasks) (first result wins: --enqueue takes the tasks instead)
    parallelr_run_planned(run, tasks)
    parallelr_run_start(run)
    parallelr_task_start(run, task, worker_id)     } per attempt / per task, from
    parallelr_task_retry(run, result, delay)        } the scheduler's thread
    parallelr_task_finish(run, result)              }
    parallelr_run_problems(run)
    parallelr_run_finish(run, summary)

Reporter hooks are always called from the one thread that runs the scheduler, so a reporter
needs no locking. A reporter must not block for long: the next task waits for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # the contract names the real types; importing them at run time is not needed
    import argparse

    from parallelr.commands import Command
    from parallelr.context import Config
    from parallelr.executor import ExecutorFactory
    from parallelr.model import ResumePlan, RunInfo, RunSummary, Task, TaskResult
    from parallelr.presets import Preset

PROJECT_NAME = "parallelr"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- invocation: what the command line offers -----------------------------------------------
@hookspec
def parallelr_commands() -> Optional[Dict[str, Command]]:
    """Return ``{name: parallelr.commands.Command}``: subcommands such as ``parallelr runs``.

    ``parallelr NAME ...`` dispatches to the command instead of running a batch. The command
    adds its own arguments to a parser of its own and is run with a ``config`` whose
    ``options`` are those arguments and whose ``settings`` are loaded.
    """


@hookspec
def parallelr_addoption(parser: argparse.ArgumentParser) -> None:
    """Add command-line options.

    ``parser`` is an :class:`argparse.ArgumentParser` with two extras: ``parser.preset``, the
    name of the active preset (or None), and ``parser.getgroup(title)``, which returns a
    shared argument group so that several plugins can add to one ``--help`` section. Their
    values end up in ``config.request.plugin_options`` (read them with
    ``config.request.option(dest)``) and in ``run.options``.
    """


@hookspec
def parallelr_restored_options() -> Optional[Sequence[str]]:
    """The ``dest`` names of this plugin's options that ``--resume`` takes from the recorded run
    when the resuming command line does not give them (as it does for the core's ``--executor``,
    ``-m``, ``-t``, ...): an option that says *where* or *how* the tasks run, such as the Dask
    executor's ``--dask-scheduler``, so that a resumed run runs where the first one did.
    """


@hookspec
def parallelr_presets() -> Optional[Dict[str, Preset]]:
    """Return ``{name: parallelr.presets.Preset}`` for the presets this plugin provides.

    A preset is chosen with ``--preset NAME`` or by running a console script of that name
    (``ptasker``). Its ``app_name`` names its config files and its ``~/<app_name>/`` folder.
    """


# -- configuration: once per invocation, before any task exists --------------------------------
@hookspec
def parallelr_configure(config: Config) -> None:
    """Adjust the run's configuration after the command line is parsed.

    Called before the YAML config files are read, so a preset can still change
    ``config.app_name`` (which names the config files and home folder) and the request
    (``config.request = config.request.with_options(Command=...)``). ``config.preset`` is the
    active preset's name or None. A plugin that keeps state for one run registers a fresh
    object for it here (``config.pluginmanager.register(MyReporter(config))``), as pytest's
    terminal reporter does: each run has its own plugin manager, so two runs in one process
    never share it. Raise :class:`parallelr.errors.UsageError` for a bad combination of options.
    """


@hookspec
def parallelr_settings_sections() -> Optional[Dict[str, type]]:
    """Return ``{section name: attrs class}`` for config sections this plugin reads.

    Each class is an ``attrs.frozen`` class of :func:`parallelr.config.setting` fields (type,
    default, rule). The section is read from the script and user config files with the same
    layering, checks and warnings as the core's, and appears as ``settings.<name>``. A name the
    core already uses is an error.
    """


@hookspec
def parallelr_executors() -> Optional[Dict[str, ExecutorFactory]]:
    """Return ``{name: factory}`` for the executors this plugin provides.

    ``factory(context: parallelr.executor.ExecutorContext)`` returns a
    :class:`parallelr.executor.Executor`: ``submit(task, worker_id, cancel=None) ->
    concurrent.futures.Future[TaskResult]`` (``cancel``, a :class:`parallelr.cancel.CancelToken`,
    stops that one task) and ``shutdown(cancel: bool) -> None``.
    ``shutdown(cancel=True)`` must stop running tasks (their whole process groups) and not start
    queued ones. An optional ``kill()`` SIGKILLs the
    running tasks' groups at once (a second Ctrl+C); without it the core falls back to
    ``shutdown(cancel=True)``. Executors must run tasks with
    :func:`parallelr.process.run_task` so that every executor behaves the same.
    """


# -- collection: which tasks this run runs --------------------------------------------------
@hookspec(firstresult=True)
def parallelr_resume(config: Config) -> Optional[ResumePlan]:
    """Continue an earlier run instead of collecting tasks: return a
    :class:`parallelr.model.ResumePlan`, or None. The first plugin that returns a plan wins.

    The plan's tasks keep the run's numbering; the run keeps its ID; tasks that are not run
    again still count in the summary through ``plan.previous``.
    """


@hookspec
def parallelr_collect_tasks(config: Config) -> Optional[Iterable[Task]]:
    """Return the tasks this source produces, or None when the request is not for it.

    ``config.request`` and ``config.settings`` say what was asked for. Return a list of
    :class:`parallelr.model.Task`, or any iterable of them; an iterable with ``__len__``
    tells the core the count before the first task runs. A source that can stream (an
    arguments file) should validate everything first and then yield lazily, so that a bad
    line stops the run before anything runs and a huge file is never held in memory.
    Raise :class:`parallelr.errors.SourceError` (or CommandError) for bad input.
    """


@hookspec(firstresult=True)
def parallelr_dispatch(config: Config, tasks: Iterable[Task]) -> Optional[int]:
    """Take the collected tasks instead of running them, and return the exit status; None lets
    the run go ahead (first result wins).

    Called after the tasks are collected and checked, before a dry run or a real run starts:
    ``--enqueue`` puts them into the job queue here. ``tasks`` can be iterated again.
    """


# -- the run: called from the one thread that runs the scheduler ------------------------------
@hookspec
def parallelr_run_planned(run: RunInfo, tasks: Iterable[Task]) -> None:
    """Every task this run will start, numbered, before the first one starts.

    ``tasks`` can be iterated again (an arguments file is re-read, not held in memory). A
    journal stores them here so that a run killed half-way can be resumed.
    """


@hookspec
def parallelr_run_start(run: RunInfo) -> None:
    """A real run (not a dry run) is about to start its first task. ``run`` is a RunInfo."""


@hookspec
def parallelr_task_start(run: RunInfo, task: Task, worker_id: int) -> None:
    """``task`` was handed to worker slot ``worker_id`` (1..workers)."""


@hookspec
def parallelr_task_retry(run: RunInfo, result: TaskResult, delay: float) -> None:
    """An attempt failed (``result``) and the task runs again in ``delay`` seconds as attempt
    ``result.attempt + 1``. ``parallelr_task_finish`` comes only for the task's last attempt."""


@hookspec
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    """A task ended; ``result`` is its TaskResult (its final attempt). Called exactly once per
    task of the run, also for tasks that never started (status CANCELLED, worker_id 0)."""


@hookspec
def parallelr_run_problems(run: RunInfo) -> Optional[List[str]]:
    """Problems this plugin had with the run that the user must see, one line each (a journal
    that could not record every result, say). Called after the last task ended and before the
    summary is built; any problem is listed in the summary under ``Problems:`` and makes the run's
    exit status 1 (a run that was interrupted keeps its 128+N)."""


@hookspec
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    """The run is over; ``summary`` is a RunSummary. Close files here."""
