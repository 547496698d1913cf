"""The plugin manager: built-in plugins, entry-point plugins, ``-p MODULE`` and ``-p no:NAME``.

The core knows built-in plugins only as module *names* (strings), never by importing them here,
so that a built-in is registered exactly like a third-party plugin and can be blocked the same way.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Iterable, List, Tuple

import pluggy

from parallelr import __version__, hookspecs
from parallelr.errors import UsageError

ENTRY_POINT_GROUP = "parallelr"

# name -> module. The name is what `-p no:NAME` blocks and what --version lists.
BUILTIN_PLUGINS: Tuple[Tuple[str, str], ...] = (
    ("task_files", "parallelr.plugins.sources.task_files"),
    ("arguments_file", "parallelr.plugins.sources.arguments_file"),
    ("thread", "parallelr.plugins.executors.thread"),
    ("process", "parallelr.plugins.executors.process"),
    ("dask", "parallelr.plugins.executors.dask"),
    ("console", "parallelr.plugins.reporters.console"),
    ("main_log", "parallelr.plugins.reporters.main_log"),
    ("csv_summary", "parallelr.plugins.reporters.csv_summary"),
    ("output_log", "parallelr.plugins.reporters.output_log"),
    ("junit", "parallelr.plugins.reporters.junit"),
    ("results_jsonl", "parallelr.plugins.reporters.results_jsonl"),
    ("html_report", "parallelr.plugins.reporters.html_report"),
    ("progress", "parallelr.plugins.reporters.progress"),
    ("ptasker", "parallelr.plugins.presets.ptasker"),
    ("journal", "parallelr.plugins.journal.plugin"),
    ("dashboard", "parallelr.plugins.dashboard.plugin"),
    ("queue", "parallelr.queue.plugin"),
)


def create_plugin_manager(specs: Iterable[str] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """Block the ``no:NAME`` specs first, register built-ins and entry points, then load the rest.

    ``specs`` are the values of ``-p``/``--plugin``: ``no:NAME`` blocks a plugin, anything else
    is a module to import and register.
    """
    specs = list(specs)
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for spec in specs:
        if spec.startswith("no:"):
            manager.set_blocked(spec[3:])
    for name, module_name in BUILTIN_PLUGINS:
        if not manager.is_blocked(name):
            manager.register(importlib.import_module(module_name), name=name)
    if load_entry_points and _may_declare_entry_points(ENTRY_POINT_GROUP):
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    apply_plugin_specs(manager, specs)
    return manager


def _may_declare_entry_points(group: str) -> bool:
    """Whether an installed distribution may declare an entry point of ``group``: False only when
    none can.

    pluggy's ``load_setuptools_entrypoints`` imports importlib.metadata (with email, zipfile, ...)
    and parses the metadata of every installed distribution: a good part of every run's start-up,
    where almost always no distribution declares a parallelr plugin. This looks for the group's
    header in the ``entry_points.txt`` files the stdlib's path finder would read, and leaves
    everything else (a zip on sys.path, another finder of distributions) to pluggy, whose loading
    (order, blocking, ``--version``'s "from DIST") stays the one that runs whenever a plugin may
    exist."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return True  # distributions we cannot list here
    for entry in sys.path:
        root = entry or "."
        try:
            names = os.listdir(root)
        except OSError:
            if os.path.exists(root):
                return True  # a zip file (or an unreadable folder): importlib.metadata decides
            continue
        for name in names:
            low = name.lower()
            if (low.endswith((".dist-info", ".egg-info")) or low == "egg-info") and _declares_group(
                os.path.join(root, name, "entry_points.txt"), group
            ):
                return True
    return False


def _declares_group(path: str, group: str) -> bool:
    """Whether the ``entry_points.txt`` at ``path`` (if any) has a ``[group]`` section; True when
    it cannot be read, so that importlib.metadata decides."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError):
        return True
    if group not in text:
        return False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]") and line.strip("[]").strip() == group:
            return True
    return False


def executor_factories(manager: pluggy.PluginManager) -> dict:
    """The executors the plugins provide, by name (here, not in parallelr.api, so that --help
    lists them without importing the machinery of a run)."""
    factories: dict = {}
    for provided in manager.hook.parallelr_executors():
        factories.update(provided or {})
    return factories


def check_hooks(manager: pluggy.PluginManager) -> None:
    """Every ``parallelr_*`` implementation must match a hook of the contract: a misspelled one
    (``parallelr_task_finsh``) would otherwise never be called, silently."""
    known = [name for name in dir(hookspecs) if name.startswith("parallelr_")]
    for name, caller in vars(manager.hook).items():
        if not name.startswith("parallelr_") or caller.spec is not None:
            continue
        plugins = ", ".join(
            manager.get_name(impl.plugin) or repr(impl.plugin) for impl in caller.get_hookimpls()
        )
        import difflib  # only for a misspelled hook's hint: a run need not import it

        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise UsageError(f"plugin {plugins} implements an unknown hook {name}{suggestion}")


def apply_plugin_specs(manager: pluggy.PluginManager, specs: Iterable[str]) -> None:
    """Apply ``-p`` values to a manager that is already populated (blocking unregisters)."""
    for spec in specs:
        if spec.startswith("no:"):
            name = spec[3:]
            if not name:
                raise UsageError("-p no: needs a plugin name, e.g. -p no:csv_summary")
            manager.set_blocked(name)
            continue
        if manager.is_blocked(spec) or manager.has_plugin(spec):
            continue
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            raise UsageError(f"cannot load plugin module {spec!r} given with -p: {exc}") from None
        manager.register(module, name=spec)
    check_hooks(manager)


def describe_plugins(manager: pluggy.PluginManager) -> List[str]:
    """One ``name-version (origin)`` line per loaded plugin, like pytest's header."""
    from_dists = {id(plugin): dist for plugin, dist in manager.list_plugin_distinfo()}
    lines = []
    for name, plugin in sorted(manager.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:  # a blocked name
            continue
        dist = from_dists.get(id(plugin))
        if dist is None and not inspect.ismodule(plugin):
            continue  # an object a plugin registered for this run (a reporter), not a plugin itself
        if dist is not None:
            lines.append(f"{name}-{dist.version} (from {dist.project_name})")
        elif any(name == builtin for builtin, _ in BUILTIN_PLUGINS):
            lines.append(f"{name}-{__version__} (built-in)")
        else:
            version = getattr(plugin, "__version__", "unknown")
            lines.append(f"{name}-{version} (-p {name})")
    return lines


def blocked_names(manager: pluggy.PluginManager) -> List[str]:
    return sorted(name for name, plugin in manager.list_name_plugin() if plugin is None)
