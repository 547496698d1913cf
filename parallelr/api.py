"""``run_batch(request) -> RunSummary``: the one way to run a batch, for the CLI and for programs.

The CLI parses argv into a :class:`~parallelr.request.RunRequest` and ends here; so do
``dlq retry``, ``--resume`` and a program that imports parallelr. One call is one run: its own
plugin manager (so its reporters are its own objects), its own executor, scheduler and cancel
tokens. Two calls may run at the same time in one process.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Sized, Tuple

import attrs

from parallelr import daemon
from parallelr.config import LoadedSettings, load_settings
from parallelr.context import Config
from parallelr.errors import NoTasksError, UsageError
from parallelr.executor import ExecutorContext
from parallelr.model import ExecutionLimits, ResumePlan, RunInfo, RunPaths, RunSummary, Task
from parallelr.options import setting_overrides
from parallelr.paths import AppPaths, create_directory
from parallelr.pluginmanager import executor_factories
from parallelr.registry import Registry, entry_for_current_process
from parallelr.request import RunRequest
from parallelr.scheduler import RetryPolicy, RunControl, RunTally, Scheduler, StopLimits, call_each
from parallelr.signals import ShutdownOnSignal

log = logging.getLogger("parallelr")

DEFAULT_EXECUTOR = "thread"


def run_batch(
    request: RunRequest,
    plugins: Sequence[Any] = (),
    *,
    app_name: str = "parallelr",
    preset: Optional[str] = None,
    control: Optional[RunControl] = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Run the batch that ``request`` describes, for real, and return its summary.

    Args:
        request: the tasks, the command and the options (what the CLI parses from argv).
        plugins: plugin objects or module names to load besides the built-in and installed
            ones; ``"no:NAME"`` blocks one (as ``-p`` does).
        app_name, preset: ``"ptasker"`` for the ptasker preset (its files live in ~/ptasker).
        control: lets another thread stop the run, cancel one task or kill them all.
        handle_signals: install the SIGINT/SIGTERM/SIGHUP handlers (main thread only).

    Returns:
        The run's :class:`~parallelr.model.RunSummary`; its ``exit_code`` is what the CLI exits with.

    Raises:
        ParallelrError: a problem the user can fix (a missing path, a bad value), before any task ran.
        WriteError: a record of the run (the CSV, a log) could not be written, a full disk say: no
            task started after it, the running ones finished, and the run's end was reported.
    """
    from parallelr.pluginmanager import check_hooks, create_plugin_manager

    names = [plugin for plugin in plugins if isinstance(plugin, str)]
    manager = create_plugin_manager(names)
    for plugin in plugins:
        if not isinstance(plugin, str):
            manager.register(plugin)
    config = Config(request, manager, preset=preset, app_name=app_name)
    manager.hook.parallelr_configure(config=config)
    check_hooks(manager)  # the objects registered for this run too
    for warning in load(config).warnings:
        log.warning("%s", warning)
    tasks = collect(config)
    return execute(config, tasks, control=control, handle_signals=handle_signals)


def load(config: Config) -> LoadedSettings:
    """The settings of this invocation: the config files, then the request's overrides."""
    request = config.request
    values = {field.name: getattr(request, field.name) for field in attrs.fields(RunRequest)}
    sections: dict = {}
    for declared in config.hook.parallelr_settings_sections():
        sections.update(declared or {})
    loaded = load_settings(config.app_name, overrides=setting_overrides(values), extra_sections=sections)
    config.settings = loaded.settings
    return loaded


def executor_factory(config: Config) -> Callable[[ExecutorContext], Any]:
    """The factory of the executor the request names (or the default one)."""
    factories = executor_factories(config.pluginmanager)
    name = config.request.executor or DEFAULT_EXECUTOR
    if name not in factories:
        known = ", ".join(sorted(factories)) or "none (did -p no:... block them all?)"
        if config.request.executor is None:
            raise UsageError(
                f"the default executor {DEFAULT_EXECUTOR!r} is not loaded (blocked with -p no:{name}?): "
                f"choose one with --executor NAME; loaded executors: {known}"
            )
        raise UsageError(f"unknown executor {name!r}; loaded executors: {known}")
    return factories[name]


class Tasks:
    """The sources' tasks, chained and numbered 1..N the same way on every pass.

    It can be iterated more than once (a journal stores the tasks before the run starts): a
    list is walked again, an arguments file is read again, nothing is held in memory.
    """

    def __init__(self, collections: List[Iterable[Task]], count: Optional[int],
                 plan: Optional[ResumePlan] = None) -> None:
        self._collections = collections
        self.count = count
        self.plan = plan

    def __iter__(self) -> Iterator[Task]:
        tasks = itertools.chain.from_iterable(self._collections)
        if self.plan is not None:  # a resumed run keeps its numbering
            return iter(tasks)
        return (attrs.evolve(task, index=index) for index, task in enumerate(tasks, start=1))


def collect(config: Config) -> Tasks:
    """The run's tasks: a plugin's resume plan if one answers, else every source's tasks."""
    plan = config.hook.parallelr_resume(config=config)
    if plan is not None:
        return Tasks([plan.tasks], plan.count, plan)
    collections = [found for found in config.hook.parallelr_collect_tasks(config=config) if found is not None]
    if not collections:
        raise NoTasksError("no task source accepted the options")
    sized = all(isinstance(found, Sized) for found in collections)
    total = sum(len(found) for found in collections) if sized else None  # type: ignore[arg-type]
    if total == 0:
        raise NoTasksError()
    return Tasks(collections, total)


def new_run_id(started: float) -> str:
    """Sortable and readable: ``20261123-103644-a1b2c3``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + "-" + os.urandom(3).hex()


def execute(
    config: Config,
    tasks: Tasks,
    announcer: Optional[daemon.Announcer] = None,
    control: Optional[RunControl] = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Run ``tasks`` for real: files, registry entry, the scheduler, and the run's end."""
    request = config.request
    settings = config.settings
    factory = executor_factory(config)
    announcer = announcer or daemon.Announcer(None)
    pid = os.getpid()
    started = time.time()
    timestamp = time.strftime(settings.logging.custom_date_format, time.localtime(started))
    app_paths = AppPaths.of(config.app_name, config.home)
    paths = _claim_run_paths(app_paths, pid, timestamp, output_log=not request.no_task_output_log,
                             results_jsonl=not request.no_results_jsonl)
    for directory in (paths.log_dir, paths.workspace):
        create_directory(directory)
    run_info = RunInfo(
        app_name=config.app_name,
        pid=pid,
        started_at=started,
        timestamp=timestamp,
        settings=settings,
        paths=paths,
        command_template=request.command or "",
        executor=request.executor or DEFAULT_EXECUTOR,
        workers=settings.limits.max_workers,
        # a resumed run counts (and numbers) all its tasks, not only those it runs again
        task_count=tasks.count if tasks.plan is None else tasks.count + sum(tasks.plan.previous.values()),
        options=request.as_options(),
        run_id=tasks.plan.run_id if tasks.plan is not None else new_run_id(started),
        resumed=tasks.plan is not None,
    )
    registry = Registry(Path(app_paths.pid_file))
    entry = entry_for_current_process(
        config.app_name, started, paths.main_log, paths.summary_csv, paths.output_log,
        run_id=run_info.run_id, daemon=announcer.pending,
    )
    with _PROCESS_RUNS.registered(registry, entry), _PROCESS_RUNS.files(paths):
        # The executor first: one that cannot start (a cluster that does not answer) must not
        # leave a planned run behind in the journal, with every task pending, for --resume.
        executor, pool_size = _start_executor(config, run_info, factory, tasks)
        try:
            config.hook.parallelr_run_planned(run=run_info, tasks=tasks)
        except BaseException:
            executor.shutdown(cancel=True)
            raise
        return _schedule(config, run_info, executor, pool_size, tasks, announcer, control or RunControl(),
                         handle_signals)


class _ProcessRuns:
    """What the runs of this process share, because a process is what they are named after:
    the PID file lists processes (one line per PID, COMPAT.md), and run files are named
    ``<app>_<PID>_<TIMESTAMP>``. Two runs of one process keep one registry entry, and a second
    run started in the same second gets ``..._2`` file names instead of the first one's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered: Dict[str, int] = {}  # PID file -> runs of this process in it
        self._stems: Set[str] = set()

    @contextlib.contextmanager
    def registered(self, registry: Registry, entry: Any) -> Iterator[None]:
        key = str(registry.pid_file)
        with self._lock:
            first = self._registered.get(key, 0) == 0
            self._registered[key] = self._registered.get(key, 0) + 1
        if first:
            registry.register(entry)
        try:
            yield
        finally:
            with self._lock:
                self._registered[key] -= 1
                last = self._registered[key] == 0
            if last:
                registry.unregister(entry.pid)

    def claim(self, stem: str) -> bool:
        with self._lock:
            if stem in self._stems or os.path.exists(stem + ".log"):
                return False
            self._stems.add(stem)
            return True

    @contextlib.contextmanager
    def files(self, paths: RunPaths) -> Iterator[None]:
        try:
            yield
        finally:
            with self._lock:
                self._stems.discard(paths.main_log[: -len(".log")])


_PROCESS_RUNS = _ProcessRuns()


def _claim_run_paths(
    app_paths: AppPaths, pid: int, timestamp: str, output_log: bool, results_jsonl: bool,
) -> RunPaths:
    paths = app_paths.run_paths(pid, timestamp, output_log, results_jsonl)
    number = 1
    while not _PROCESS_RUNS.claim(paths.main_log[: -len(".log")]):
        number += 1
        paths = app_paths.run_paths(pid, f"{timestamp}_{number}", output_log, results_jsonl)
    return paths


def _daemon_banner(app_name: str, paths: RunPaths, pid: int, run_id: Optional[str]) -> str:
    return (
        f"Started {app_name} daemon with PID {pid} (run {run_id})\n"
        f"- Main Log: {paths.main_log}\n"
        f"- Summary: {paths.summary_csv}\n"
        f"- Output: {paths.output_log or 'disabled (--no-task-output-log)'}\n"
        + (f"- Results: {paths.results_jsonl}\n" if paths.results_jsonl else "")
        + f"Check it with '{app_name} --list-workers'; stop it with '{app_name} -k {pid}'.\n"
    )


def _start_executor(
    config: Config, run_info: RunInfo, factory: Callable[[ExecutorContext], Any], tasks: Tasks,
) -> Tuple[Any, int]:
    """The run's executor and its number of slots (never more than there are tasks)."""
    settings = config.settings
    limits = settings.limits
    advanced = settings.advanced
    execution_limits = ExecutionLimits(
        timeout=limits.timeout_seconds,
        workspace=run_info.paths.workspace,
        runner_pid=run_info.pid,
        workspace_isolation=settings.execution.workspace_isolation,
        max_output_capture=limits.max_output_capture,
        use_process_groups=settings.execution.use_process_groups,
        kill_grace=settings.execution.kill_grace_seconds,
        run_id=run_info.run_id,
        max_file_size=advanced.max_file_size,
    )
    pool_size = limits.max_workers if tasks.count is None else max(1, min(limits.max_workers, tasks.count))
    executor = factory(ExecutorContext(
        workers=pool_size, limits=execution_limits, settings=settings, options=config.request.as_options(),
    ))
    return executor, pool_size


def _schedule(
    config: Config, run_info: RunInfo, executor: Any, pool_size: int, tasks: Tasks,
    announcer: daemon.Announcer, control: RunControl, handle_signals: bool,
) -> RunSummary:
    settings = config.settings
    limits = settings.limits
    advanced = settings.advanced
    hook = config.hook
    tally = RunTally(tasks.plan.previous if tasks.plan is not None else None)
    scheduler = Scheduler(
        run_info, executor, hook,
        workers=pool_size,
        start_delay=limits.task_start_delay,
        stop_limits=StopLimits.from_settings(limits),
        control=control,
        retry=RetryPolicy(advanced.retries, advanced.retry_delay, advanced.retry_backoff,
                          advanced.retry_max_delay),
        tally=tally,
    )
    kill_now = getattr(executor, "kill", None) or (lambda: executor.shutdown(cancel=True))
    control.attach_kill(kill_now)
    # Signal handlers are process-wide and only the main thread may set them: the CLI asks for
    # them; a program running batches from threads keeps its own and uses ``control``.
    signals: Any = (
        ShutdownOnSignal(control.stop_request, config.app_name, kill_now, ignore_hangup=config.request.daemon)
        if handle_signals else contextlib.nullcontext()
    )
    with signals:
        hook.parallelr_run_start(run=run_info)
        # Only now do the log files exist: the caller of -D may tail them at once.
        announcer.started(_daemon_banner(config.app_name, run_info.paths, run_info.pid, run_info.run_id))
        try:
            outcome = scheduler.run(tasks)
        finally:
            executor.shutdown(cancel=control.stop_request.reason is not None)
        problems = [line for found in hook.parallelr_run_problems(run=run_info) for line in (found or ())]
        summary = tally.summary(outcome, problems)
        finish_error = call_each(hook.parallelr_run_finish, run=run_info, summary=summary)
    # After the summary, so that every record that could be written is; the first error wins.
    error = outcome.write_error or finish_error
    if error is not None:
        raise error
    return summary
