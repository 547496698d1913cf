"""From a parsed command line to a finished run: settings, tasks, dry run or real run.

Also the read-only info commands (--version, --check-dependencies, --validate-config,
--show-config), which share the settings loading with a run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable, List

from parallelr import __version__, api, console, daemon
from parallelr.command import CommandTemplate
from parallelr.config import LoadedSettings, settings_as_dict
from parallelr.context import Config
from parallelr.jobs.opening import is_url
from parallelr.model import Task
from parallelr.paths import AppPaths, store_location, store_path
from parallelr.pluginmanager import blocked_names, describe_plugins
from parallelr.registry import Registry
from parallelr.report import escape_line

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


# Variables a program needs to start at all: setting them from an arguments file is almost always
# a mistake (``-E PATH`` makes every task "command not found").
_STARTUP_VARIABLES = ("PATH", "HOME")


def execute(config: Config) -> int:
    request = config.request
    template = CommandTemplate.parse(request.command or "", request.env_names, shell=request.shell)
    for warning in template.operator_warnings():
        log.warning("%s", warning)
    for name in request.env_names:
        if name in _STARTUP_VARIABLES or name.startswith("LD_"):
            log.warning("-E %s replaces the %s every task needs to start (its program is looked up and "
                        "loaded with it): use another name unless that is what you want", name, name)
    log.info("Starting parallel execution")
    tasks = api.collect(config)
    if tasks.plan is not None:
        print(f"Resuming run {tasks.plan.run_id}: {tasks.count} task(s) to run again")
    elif request.arguments_file and tasks.count is not None:
        print(f"Created {tasks.count} tasks")
    dispatched = config.hook.parallelr_dispatch(config=config, tasks=tasks)
    if dispatched is not None:
        return int(dispatched)
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
        out.write(escape_line(task.command) + "\n")  # a file name must not write to the terminal
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
# The extras: what each adds, and the extra that installs it. Missing is not an error.
OPTIONAL_DEPENDENCIES = (
    ("Flask", "the dashboard", "dashboard"),
    ("distributed", "--executor dask", "dask"),
    ("psycopg", "a PostgreSQL store (--db postgresql://...)", "postgres"),
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
    for dist, purpose, extra in OPTIONAL_DEPENDENCIES:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:  # found without importing it (distributed: 0.3 s)
            print(f"- {dist}: not installed (optional) - {purpose} (pip install \"parallelr[{extra}]\")")
            continue
        print(f"✓ {dist} {version} - {purpose} (optional)")
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


_SQLITE_HEADER = b"SQLite format 3\x00"


def store_problems(settings: Any, home: Path) -> List[str]:
    """Why the journal's database (``journal.path``) cannot work, if it cannot: checked without
    creating or opening anything."""
    if not settings.journal.enabled or is_url(store_location(settings, home)):
        return []  # a database server is checked by connecting to it, when the run starts
    path = store_path(settings, home)
    if path.exists():
        if not path.is_file():
            return [f"journal.path {path} is not a regular file: point it at a database file"]
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            return [f"journal.path {path} cannot be read: {exc.strerror}"]
        if header and header != _SQLITE_HEADER:
            return [f"journal.path {path} is not a SQLite database"]
        if not os.access(path, os.W_OK):
            return [f"journal.path {path} is not writable"]
        return []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # what a run would create starts at the nearest existing folder
    if not parent.is_dir():
        return [f"journal.path {path}: {parent} is not a directory"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"journal.path {path} cannot be created: {parent} is not writable"]
    return []


def validate_config(config: Config, loaded: LoadedSettings) -> int:
    problems = list(loaded.warnings) + store_problems(loaded.settings, config.home)
    if problems:
        print("✗ Configuration has problems:")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("✓ Configuration is valid")
    for line in _validation_lines(config, loaded):
        print(line)
    return 1 if problems else 0


def show_config(config: Config, loaded: LoadedSettings) -> int:
    print(f"{config.app_name} {__version__} - effective configuration")
    for line in _validation_lines(config, loaded)[:4]:
        print(line)
    print()
    effective = settings_as_dict(loaded.settings)
    import yaml  # --show-config only; the settings import it when they read a file

    print(yaml.safe_dump(effective, sort_keys=False, default_flow_style=False).rstrip())
    print()
    print("Plugins:")
    for line in describe_plugins(config.pluginmanager):
        print(f"- {line}")
    for name in blocked_names(config.pluginmanager):
        print(f"- {name} (blocked with -p no:{name})")
    return 0
