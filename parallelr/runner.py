"""From a parsed command line to a finished run: settings, tasks, dry run or real run.

Also the read-only info commands (--version, --check-dependencies, --validate-config,
--show-config), which share the settings loading with a run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, List

import yaml

from parallelr import __version__, api, console, daemon
from parallelr.command import CommandTemplate
from parallelr.config import LoadedSettings, settings_as_dict
from parallelr.context import Config
from parallelr.model import Task
from parallelr.paths import AppPaths
from parallelr.pluginmanager import blocked_names, describe_plugins
from parallelr.registry import Registry

log = logging.getLogger("parallelr")


def setup_console_logging() -> None:
    """The console log on stdout in the default format until the settings are loaded."""
    console.setup_console_logging()


def load(config: Config) -> LoadedSettings:
    """The settings (:func:`parallelr.api.load`), and the console log in their level and format."""
    loaded = api.load(config)
    logging.getLogger("parallelr").setLevel(loaded.settings.logging.level)
    console.setup_console_logging(loaded.settings.logging.console_format)
    return loaded


def run(config: Config, actions: argparse.Namespace) -> int:
    """The command line's invocation: an info command named in ``actions``, or the batch."""
    setup_console_logging()
    loaded = load(config)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    if actions.check_dependencies:
        return check_dependencies()
    if actions.validate_config:
        return validate_config(config, loaded)
    if actions.show_config:
        return show_config(config, loaded)
    if actions.list_workers or actions.kill:
        from parallelr import manage  # psutil and friends: only for these commands

        registry = Registry(Path(AppPaths.of(config.app_name, config.home).pid_file))
        if actions.list_workers:
            return manage.list_workers(registry)
        return manage.kill(registry, actions.kill)
    return execute(config)


def execute(config: Config) -> int:
    request = config.request
    template = CommandTemplate.parse(request.command or "", request.env_names, shell=request.shell)
    for warning in template.operator_warnings():
        log.warning("%s", warning)
    log.info("Starting parallel execution")
    tasks = api.collect(config)
    if tasks.plan is not None:
        print(f"Resuming run {tasks.plan.run_id}: {tasks.count} task(s) to run again")
    elif request.arguments_file and tasks.count is not None:
        print(f"Created {tasks.count} tasks")
    log.info("Executing %s tasks with %d workers", "?" if tasks.count is None else tasks.count,
             config.settings.limits.max_workers)
    if not request.execute:
        return dry_run(tasks)
    api.executor_factory(config)  # an unknown or blocked executor is reported before detaching
    # Everything above ran in the foreground, so a bad input is reported before detaching.
    if request.daemon:
        _announce_daemon(config)
    announcer = daemon.Announcer(daemon.daemonize() if request.daemon else None)
    try:
        return api.execute(config, tasks, announcer, handle_signals=True).exit_code
    except BaseException as exc:
        announcer.failed(str(exc) or type(exc).__name__)
        raise


def _announce_daemon(config: Config) -> None:
    """The old tool's lines before it detached; the PID and log paths follow once it runs."""
    request = config.request
    print(f"Starting {config.app_name} as daemon...")
    print(f"Task paths: {' '.join(request.task_paths) if request.task_paths else '(none)'}")
    if request.arguments_file:
        print(f"Arguments file: {request.arguments_file}")
    sys.stdout.flush()


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
    paths = AppPaths.of(config.app_name, config.home)
    return [
        _file_line("Script config", script),
        _file_line("User config", user),
        f"✓ Working dir: {paths.workspace}",
        f"✓ Log dir: {paths.log_dir}",
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
