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
from typing import Any, Dict, Iterable, List, Optional, Sized

import yaml

from parallelr import __version__, daemon, manage
from parallelr.command import CommandTemplate
from parallelr.config import LoadedSettings, load_settings, settings_as_dict
from parallelr.context import Config
from parallelr.errors import NoTasksError
from parallelr.model import ExecutionLimits, RunInfo, RunPaths, Task
from parallelr.pluginmanager import blocked_names, describe_plugins
from parallelr.registry import Registry, entry_for_current_process
from parallelr.scheduler import Scheduler, StopLimits, StopRequest
from parallelr.signals import ShutdownOnSignal

log = logging.getLogger("parallelr")


class _StderrFormatter(logging.Formatter):
    """``parallelr: warning: ...``: the same shape as the CLI's error lines."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}"


def setup_console_logging(prog: str) -> None:
    """Warnings and errors of the core and plugins go to stderr, one line each."""
    root = logging.getLogger("parallelr")
    for handler in list(root.handlers):
        if getattr(handler, "_parallelr_stderr", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_StderrFormatter(prog))
    handler._parallelr_stderr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def _overrides(options: Any) -> Dict[str, Any]:
    return {
        "limits.max_workers": options.max,
        "limits.timeout_seconds": options.timeout,
        "limits.task_start_delay": options.sleep,
        "limits.stop_limits_enabled": True if options.enable_stop_limits else None,
        "logging.level": "DEBUG" if options.debug else None,
    }


def load(config: Config) -> LoadedSettings:
    loaded = load_settings(config.app_name, overrides=_overrides(config.options))
    config.settings = loaded.settings
    logging.getLogger("parallelr").setLevel(loaded.settings.logging.level)
    return loaded


def run(config: Config, executors: Dict[str, Any]) -> int:
    prog = config.app_name
    setup_console_logging(prog)
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
    if options.list_workers:
        return manage.list_workers(_registry(config))
    if options.kill:
        return manage.kill(_registry(config), options.kill)
    return execute(config, executors[options.executor])


def _registry(config: Config) -> Registry:
    return Registry(config.home / "pids" / f"{config.app_name}.pids")


def _collect(config: Config) -> Iterable[Task]:
    collections = [found for found in config.hook.parallelr_collect_tasks(config=config) if found is not None]
    if not collections:
        raise NoTasksError("no task source accepted the options")
    sized = all(isinstance(found, Sized) for found in collections)
    total = sum(len(found) for found in collections) if sized else None  # type: ignore[arg-type]
    if total == 0:
        raise NoTasksError()
    return _Tasks(itertools.chain.from_iterable(collections), total)


class _Tasks:
    """The chained sources with the total count, when every source knows its size."""

    def __init__(self, tasks: Iterable[Task], count: Optional[int]) -> None:
        self._tasks = tasks
        self.count = count

    def __iter__(self) -> Any:
        return iter(self._tasks)


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
    tasks = _collect(config)
    if options.arguments_file and tasks.count is not None:
        print(f"Created {tasks.count} tasks")
    if not options.run:
        return dry_run(tasks)

    announce_fd = daemon.daemonize() if options.daemon else None
    try:
        return _run_for_real(config, executor_factory, tasks, announce_fd)
    except BaseException as exc:
        if announce_fd is not None and not getattr(exc, "_announced", False):
            daemon.announce(announce_fd, str(exc) or type(exc).__name__, ok=False)
        raise


def _run_for_real(config: Config, executor_factory: Any, tasks: _Tasks, announce_fd: Optional[int]) -> int:
    options = config.options
    settings = config.settings
    pid = os.getpid()
    started = time.time()
    timestamp = time.strftime(settings.logging.custom_date_format, time.localtime(started))
    paths = _paths(config, pid, timestamp)
    os.makedirs(paths.log_dir, exist_ok=True)
    os.makedirs(paths.workspace, exist_ok=True)
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
        task_count=tasks.count,
        options=dict(vars(options)),
    )
    execution_limits = ExecutionLimits(
        timeout=limits.timeout_seconds,
        workspace=paths.workspace,
        runner_pid=pid,
        workspace_isolation=settings.execution.workspace_isolation,
        max_output_capture=limits.max_output_capture,
        use_process_groups=settings.execution.use_process_groups,
        kill_grace=settings.execution.kill_grace_seconds,
    )
    pool_size = limits.max_workers if tasks.count is None else max(1, min(limits.max_workers, tasks.count))
    registry = Registry(Path(paths.pid_file))
    registry.register(entry_for_current_process(
        config.app_name, started, paths.main_log, paths.summary_csv, paths.output_log,
        run_id=run_info.run_id, daemon=announce_fd is not None,
    ))
    try:
        if announce_fd is not None:
            daemon.announce(announce_fd, _daemon_banner(config.app_name, paths, pid))
            announce_fd = None
        return _schedule(config, run_info, executor_factory, pool_size, execution_limits, tasks)
    finally:
        registry.unregister(pid)


def _daemon_banner(app_name: str, paths: RunPaths, pid: int) -> str:
    return (
        f"Started {app_name} daemon with PID {pid}\n"
        f"- Main Log: {paths.main_log}\n"
        f"- Summary: {paths.summary_csv}\n"
        f"- Output: {paths.output_log or 'disabled (--no-task-output-log)'}\n"
        f"Check it with '{app_name} --list-workers'; stop it with '{app_name} -k {pid}'.\n"
    )


def _schedule(
    config: Config, run_info: RunInfo, executor_factory: Any, pool_size: int, limits: ExecutionLimits,
    tasks: _Tasks,
) -> int:
    settings = config.settings
    executor = executor_factory(pool_size, limits)
    hook = config.hook
    stop_request = StopRequest()
    scheduler = Scheduler(
        run_info, executor, hook,
        workers=pool_size,
        start_delay=settings.limits.task_start_delay,
        stop_limits=StopLimits.from_settings(settings.limits),
        stop_request=stop_request,
    )
    kill_now = getattr(executor, "kill", None) or (lambda: executor.shutdown(cancel=True))
    with ShutdownOnSignal(stop_request, config.app_name, kill_now, ignore_hangup=config.options.daemon):
        hook.parallelr_run_start(run=run_info)
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
