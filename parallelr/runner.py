"""From a parsed command line to a finished run: settings, tasks, dry run or real run.

Also the read-only info commands (--version, --check-dependencies, --validate-config,
--show-config), which share the settings loading with a run.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sized

import attrs
import yaml

from parallelr import __version__, console, daemon
from parallelr.command import CommandTemplate
from parallelr.config import LoadedSettings, load_settings, settings_as_dict
from parallelr.context import Config
from parallelr.errors import NoTasksError, ParallelrError
from parallelr.executor import ExecutorContext
from parallelr.model import ExecutionLimits, ResumePlan, RunInfo, RunPaths, Task
from parallelr.pluginmanager import blocked_names, describe_plugins
from parallelr.registry import Registry, entry_for_current_process
from parallelr.scheduler import RetryPolicy, Scheduler, StopLimits, StopRequest
from parallelr.signals import ShutdownOnSignal

log = logging.getLogger("parallelr")


def setup_console_logging() -> None:
    """The console log on stdout in the default format until the settings are loaded."""
    console.setup_console_logging()


def _overrides(options: Any) -> Dict[str, Any]:
    """Command-line values that override the config files (None: not given)."""
    given = vars(options)
    return {
        "limits.max_workers": given.get("max"),
        "limits.timeout_seconds": given.get("timeout"),
        "limits.task_start_delay": given.get("sleep"),
        "limits.stop_limits_enabled": True if given.get("enable_stop_limits") else None,
        "logging.level": "DEBUG" if given.get("debug") else None,
        "advanced.retries": given.get("retries"),
        "advanced.retry_delay": given.get("retry_delay"),
        "advanced.retry_backoff": given.get("retry_backoff"),
        "advanced.retry_max_delay": given.get("retry_max_delay"),
    }


def load(config: Config) -> LoadedSettings:
    loaded = load_settings(config.app_name, overrides=_overrides(config.options))
    config.settings = loaded.settings
    logging.getLogger("parallelr").setLevel(loaded.settings.logging.level)
    console.setup_console_logging(loaded.settings.logging.console_format)
    return loaded


def run(config: Config, executors: Dict[str, Any]) -> int:
    setup_console_logging()
    options = config.options
    loaded = load(config)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    if options.check_dependencies:
        return check_dependencies()
    if options.validate_config:
        return validate_config(config, loaded)
    if options.show_config:
        return show_config(config, loaded)
    if options.list_workers or options.kill:
        from parallelr import manage  # psutil and friends: only for these commands

        if options.list_workers:
            return manage.list_workers(_registry(config))
        return manage.kill(_registry(config), options.kill)
    return execute(config, executors[options.executor])


def _registry(config: Config) -> Registry:
    return Registry(config.home / "pids" / f"{config.app_name}.pids")


def _collect(config: Config) -> _Tasks:
    """The run's tasks: a plugin's resume plan if one answers, else every source's tasks."""
    plan = config.hook.parallelr_resume(config=config)
    if plan is not None:
        return _Tasks([plan.tasks], plan.count, plan)
    collections = [found for found in config.hook.parallelr_collect_tasks(config=config) if found is not None]
    if not collections:
        raise NoTasksError("no task source accepted the options")
    sized = all(isinstance(found, Sized) for found in collections)
    total = sum(len(found) for found in collections) if sized else None  # type: ignore[arg-type]
    if total == 0:
        raise NoTasksError()
    return _Tasks(collections, total)


class _Tasks:
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


def new_run_id(started: float) -> str:
    """Sortable and readable: ``20261123-103644-a1b2c3``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + "-" + os.urandom(3).hex()


def _paths(config: Config, pid: int, timestamp: str) -> RunPaths:
    home = config.home
    app = config.app_name
    log_dir = home / "logs"
    stem = f"{app}_{pid}_{timestamp}"
    return RunPaths(
        home=str(home),
        log_dir=str(log_dir),
        workspace=str(home / "workspace"),
        pid_file=str(home / "pids" / f"{app}.pids"),
        main_log=str(log_dir / f"{stem}.log"),
        summary_csv=str(log_dir / f"{stem}_summary.csv"),
        output_log=None if config.options.no_task_output_log else str(log_dir / f"{stem}_output.txt"),
    )


def execute(config: Config, executor_factory: Any) -> int:
    options = config.options
    template = CommandTemplate.parse(options.Command, options.env_var, shell=options.shell)
    for warning in template.operator_warnings():
        log.warning("%s", warning)
    log.info("Starting parallel execution")
    tasks = _collect(config)
    if tasks.plan is not None:
        print(f"Resuming run {tasks.plan.run_id}: {tasks.count} task(s) to run again")
    elif options.arguments_file and tasks.count is not None:
        print(f"Created {tasks.count} tasks")
    log.info("Executing %s tasks with %d workers", "?" if tasks.count is None else tasks.count,
             config.settings.limits.max_workers)
    if not options.run:
        return dry_run(tasks)
    # Everything above ran in the foreground, so a bad input is reported before detaching.
    if options.daemon:
        _announce_daemon(config)
    announcer = daemon.Announcer(daemon.daemonize() if options.daemon else None)
    try:
        return _run_for_real(config, executor_factory, tasks, announcer)
    except BaseException as exc:
        announcer.failed(str(exc) or type(exc).__name__)
        raise


def _announce_daemon(config: Config) -> None:
    """The old tool's lines before it detached; the PID and log paths follow once it runs."""
    options = config.options
    print(f"Starting {config.app_name} as daemon...")
    print(f"Task paths: {' '.join(options.TasksDir) if options.TasksDir else '(none)'}")
    if options.arguments_file:
        print(f"Arguments file: {options.arguments_file}")
    sys.stdout.flush()


def _run_for_real(config: Config, executor_factory: Any, tasks: _Tasks, announcer: daemon.Announcer) -> int:
    options = config.options
    settings = config.settings
    pid = os.getpid()
    started = time.time()
    timestamp = time.strftime(settings.logging.custom_date_format, time.localtime(started))
    paths = _paths(config, pid, timestamp)
    for directory in (paths.log_dir, paths.workspace):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ParallelrError(
                f"cannot create {directory}: {exc.strerror} (check HOME and its permissions)"
            ) from None
    limits = settings.limits
    run_info = RunInfo(
        app_name=config.app_name,
        pid=pid,
        started_at=started,
        timestamp=timestamp,
        settings=settings,
        paths=paths,
        command_template=options.Command,
        executor=options.executor,
        workers=limits.max_workers,
        # a resumed run counts (and numbers) all its tasks, not only those it runs again
        task_count=tasks.count if tasks.plan is None else tasks.count + sum(tasks.plan.previous.values()),
        options=dict(vars(options)),
        run_id=tasks.plan.run_id if tasks.plan is not None else new_run_id(started),
        resumed=tasks.plan is not None,
    )
    registry = Registry(Path(paths.pid_file))
    registry.register(entry_for_current_process(
        config.app_name, started, paths.main_log, paths.summary_csv, paths.output_log,
        run_id=run_info.run_id, daemon=announcer.pending,
    ))
    try:
        config.hook.parallelr_run_planned(run=run_info, tasks=tasks)
        return _schedule(config, run_info, executor_factory, tasks, announcer)
    finally:
        registry.unregister(pid)


def _daemon_banner(app_name: str, paths: RunPaths, pid: int, run_id: Optional[str]) -> str:
    return (
        f"Started {app_name} daemon with PID {pid} (run {run_id})\n"
        f"- Main Log: {paths.main_log}\n"
        f"- Summary: {paths.summary_csv}\n"
        f"- Output: {paths.output_log or 'disabled (--no-task-output-log)'}\n"
        f"Check it with '{app_name} --list-workers'; stop it with '{app_name} -k {pid}'.\n"
    )


def _schedule(
    config: Config, run_info: RunInfo, executor_factory: Any, tasks: _Tasks, announcer: daemon.Announcer
) -> int:
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
    executor = executor_factory(ExecutorContext(
        workers=pool_size, limits=execution_limits, settings=settings, options=dict(vars(config.options)),
    ))
    hook = config.hook
    stop_request = StopRequest()
    scheduler = Scheduler(
        run_info, executor, hook,
        workers=pool_size,
        start_delay=limits.task_start_delay,
        stop_limits=StopLimits.from_settings(limits),
        stop_request=stop_request,
        retry=RetryPolicy(advanced.retries, advanced.retry_delay, advanced.retry_backoff,
                          advanced.retry_max_delay),
        previous=tasks.plan.previous if tasks.plan is not None else None,
    )
    kill_now = getattr(executor, "kill", None) or (lambda: executor.shutdown(cancel=True))
    with ShutdownOnSignal(stop_request, config.app_name, kill_now, ignore_hangup=config.options.daemon):
        hook.parallelr_run_start(run=run_info)
        # Only now do the log files exist: the caller of -D may tail them at once.
        announcer.started(_daemon_banner(config.app_name, run_info.paths, run_info.pid, run_info.run_id))
        try:
            summary = scheduler.run(tasks)
        finally:
            executor.shutdown(cancel=stop_request.reason is not None)
        hook.parallelr_run_finish(run=run_info, summary=summary)
    return summary.exit_code


def dry_run(tasks: Iterable[Task]) -> int:
    out = sys.stdout
    out.write("DRY RUN MODE - nothing is executed; add -r to run these commands:\n")
    count = 0
    for task in tasks:
        out.write(task.command + "\n")
        count += 1
    out.write(f"{count} task(s) would run.\n")
    return 0


def show_version(config: Config) -> int:
    print(f"{config.app_name} {__version__} (Python {sys.version.split()[0]})")
    print("plugins: " + ", ".join(describe_plugins(config.pluginmanager)))
    blocked = blocked_names(config.pluginmanager)
    if blocked:
        print("blocked: " + ", ".join(blocked))
    return 0


DEPENDENCIES = (
    ("PyYAML", "yaml", "configuration files"),
    ("psutil", "psutil", "live memory/CPU figures and process-tree cleanup"),
    ("pluggy", "pluggy", "plugins"),
    ("attrs", "attrs", "configuration and result values"),
)


def check_dependencies() -> int:
    from importlib import import_module, metadata

    missing = 0
    print(f"Python {sys.version.split()[0]} ({sys.executable})")
    for dist, module, purpose in DEPENDENCIES:
        try:
            import_module(module)
            version = metadata.version(dist)
        except Exception:  # an absent or broken module: report, do not crash
            missing += 1
            print(f"✗ {dist}: not available - {purpose} (pip install {dist})")
            continue
        print(f"✓ {dist} {version} - {purpose}")
    return 1 if missing else 0


def _file_line(label: str, config_file: Any) -> str:
    if config_file.loaded is None:
        return f"  {label}: Not found (using defaults)"
    suffix = f" (fallback from {config_file.wanted.name})" if config_file.fallback else ""
    return f"✓ {label}: {config_file.loaded}{suffix}"


def _validation_lines(config: Config, loaded: LoadedSettings) -> List[str]:
    settings = loaded.settings
    limits = settings.limits
    script, user = loaded.files
    home = config.home
    return [
        _file_line("Script config", script),
        _file_line("User config", user),
        f"✓ Working dir: {home / 'workspace'}",
        f"✓ Log dir: {home / 'logs'}",
        f"✓ Workspace mode: {'Isolated' if settings.execution.workspace_isolation else 'Shared'}",
        f"✓ Workers: {limits.max_workers} (max allowed: {limits.max_allowed_workers})",
        f"✓ Timeout: {limits.timeout_seconds}s (max allowed: {limits.max_allowed_timeout}s)",
    ]


def validate_config(config: Config, loaded: LoadedSettings) -> int:
    if loaded.warnings:
        print("✗ Configuration has problems:")
        for warning in loaded.warnings:
            print(f"  - {warning}")
    else:
        print("✓ Configuration is valid")
    for line in _validation_lines(config, loaded):
        print(line)
    return 1 if loaded.warnings else 0


def show_config(config: Config, loaded: LoadedSettings) -> int:
    print(f"{config.app_name} {__version__} - effective configuration")
    for line in _validation_lines(config, loaded)[:4]:
        print(line)
    print()
    effective = settings_as_dict(loaded.settings)
    print(yaml.safe_dump(effective, sort_keys=False, default_flow_style=False).rstrip())
    print()
    print("Plugins:")
    for line in describe_plugins(config.pluginmanager):
        print(f"- {line}")
    for name in blocked_names(config.pluginmanager):
        print(f"- {name} (blocked with -p no:{name})")
    return 0
