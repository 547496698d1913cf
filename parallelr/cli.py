"""The command line: parse, configure, then hand over to the runner or an info command.

Everything the user can get wrong ends here as one line on stderr (``<prog>: error: ...``) and
the exit status COMPAT.md names: 2 for usage errors, 1 for validation errors.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from parallelr import __version__, console
from parallelr.command import CommandTemplate, parse_env_names
from parallelr.commands import Command
from parallelr.context import Config
from parallelr.errors import CommandError, ParallelrError, UsageError
from parallelr.options import add_options
from parallelr.pluginmanager import apply_plugin_specs, check_hooks, create_plugin_manager, executor_factories
from parallelr.presets import Preset
from parallelr.request import RunRequest

KILL_ALL = "all"

log = logging.getLogger("parallelr")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and shared groups for plugins (``getgroup``)."""

    def __init__(self, *args: Any, preset: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.preset = preset
        self._groups: Dict[str, Any] = {}

    def getgroup(self, title: str, description: Optional[str] = None) -> Any:
        if title not in self._groups:
            self._groups[title] = self.add_argument_group(title, description)
        return self._groups[title]

    def error(self, message: str) -> Any:  # argparse prints usage + message; we want one line
        raise UsageError(f"{message} (see {self.prog} --help)")


def _prescan(argv: Sequence[str]) -> Tuple[Optional[str], List[str], List[str]]:
    """Find --preset and the plugin specs before the real parse (plugins add options).

    Returns (preset, --plugin values, -p values). Whether -p means --plugin depends on the
    preset, which is decided afterwards.
    """
    preset: Optional[str] = None
    long_specs: List[str] = []
    short_specs: List[str] = []
    items = list(argv)
    for position, item in enumerate(items):
        if item == "--":
            break
        following = items[position + 1] if position + 1 < len(items) else None
        if item == "--preset" and following is not None:
            preset = following
        elif item.startswith("--preset="):
            preset = item.split("=", 1)[1]
        elif item == "--plugin" and following is not None:
            long_specs.append(following)
        elif item.startswith("--plugin="):
            long_specs.append(item.split("=", 1)[1])
        elif item == "-p" and following is not None:
            short_specs.append(following)
        elif item.startswith("-p") and not item.startswith("--") and len(item) > 2:
            short_specs.append(item[2:])
    return preset, long_specs, short_specs


def _without_prescanned(argv: Sequence[str]) -> List[str]:
    """argv less --preset/--plugin (and their values): what may start with a subcommand name."""
    rest: List[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item in ("--preset", "--plugin"):
            skip = True
        elif not item.startswith(("--preset=", "--plugin=")):
            rest.append(item)
    return rest


def _known_presets(manager: Any) -> Dict[str, Preset]:
    presets: Dict[str, Preset] = {}
    for provided in manager.hook.parallelr_presets():
        presets.update(provided or {})
    return presets


def _commands(manager: Any) -> Dict[str, Command]:
    commands: Dict[str, Command] = {}
    for provided in manager.hook.parallelr_commands():
        commands.update(provided or {})
    return commands


def _command_of(commands: Dict[str, Command], rest: List[str], prog: str) -> Tuple[Command, str, List[str]]:
    """The command ``rest`` names, the name its help and errors show, and its arguments: ``queue
    dashboard ...`` (or ``queuectl [--db PATH] dashboard ...``) is the dashboard, whose parent is
    ``queue``."""
    command = commands[rest[0]]
    name = prog if prog == command.program else f"{prog} {command.name}"
    arguments = rest[1:]
    # The parent's own --db may come first: ``queuectl --db PATH dashboard``.
    first = arguments[0] if arguments else ""
    db = arguments[:2] if first == "--db" else arguments[:1] if first.startswith("--db=") else []
    after = arguments[len(db):]
    child = commands.get(after[0]) if after else None
    if child is not None and child.parent == command.name:
        return child, f"{name} {child.name}", [*after[1:], *db]
    return command, name, arguments


def _run_command(command: Command, argv: List[str], name: str, manager: Any, preset: Optional[Preset],
                 children: Sequence[Command] = ()) -> int:
    """``parallelr NAME ...``: a plugin's subcommand, with its own arguments and the settings;
    ``children``: the commands found under it (listed in its help)."""
    epilog = "".join(f"\n  {name} {child.name} ...  {child.help}" for child in children)
    parser = Parser(prog=name, description=command.help, epilog=f"also:{epilog}" if epilog else None,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    preset=preset.name if preset else None)
    command.add_arguments(parser)
    options = parser.parse_args(argv)
    config = Config(None, manager, preset=preset.name if preset else None,
                    app_name=preset.app_name if preset else "parallelr", options=options)
    from parallelr import runner  # the machinery of a run: after the arguments are parsed

    runner.setup_console_logging()
    for warning in runner.load(config).warnings:
        logging.getLogger("parallelr").warning("%s", warning)
    return command.run(config)


def build_parser(
    prog: str, preset: Optional[Preset], executors: Sequence[str], manager: Any,
    commands: Optional[Dict[str, Command]] = None,
) -> Parser:
    listing = "".join(
        f"\n  {prog} {name} ...  {command.help}" for name, command in sorted((commands or {}).items())
    )
    parser = Parser(
        prog=prog,
        description="Run many tasks in parallel with timeouts, stop limits, logs and a CSV summary.",
        epilog=(f"commands:{listing}\n\n" if listing else "")
        + "Without -r nothing runs: a dry run prints the commands. Docs: README.md, docs/.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        preset=preset.name if preset else None,
    )
    claims = set(preset.claims) if preset else set()
    add_options(parser, tuple(executors))

    manage = parser.getgroup("process management")
    manage.add_argument("--list-workers", action="store_true", help="list running parallelr processes")
    manage.add_argument(
        "-k", "--kill", nargs="?", const=KILL_ALL, metavar="PID",
        help="stop run PID, or all runs (asks for confirmation)",
    )

    info = parser.getgroup("configuration and plugins")
    info.add_argument("--check-dependencies", action="store_true", help="check Python modules and exit")
    info.add_argument("--validate-config", action="store_true", help="validate the config files and exit")
    info.add_argument("--show-config", action="store_true", help="show the effective configuration")
    info.add_argument("--version", action="store_true", help="show the version and loaded plugins")
    info.add_argument("--preset", metavar="NAME", help="use a preset (e.g. ptasker)")
    plugin_flags = ["--plugin"] if "-p" in claims else ["-p", "--plugin"]
    info.add_argument(
        *plugin_flags, dest="plugins", action="append", default=[], metavar="MODULE",
        help="load a plugin module; no:NAME disables a plugin",
    )
    manager.hook.parallelr_addoption(parser=parser)
    return parser


# Options of the invocation, not of a run: they choose what the command does (or load plugins).
INVOCATION_DESTS = (
    "list_workers", "kill", "check_dependencies", "validate_config", "show_config", "version", "preset",
    "plugins",
)


def _normalize(options: argparse.Namespace) -> None:
    """Flatten and check what argparse cannot: combinations and the -E names."""
    options.TasksDir = [path for group in options.TasksDir for path in group]
    options.env_var = parse_env_names(options.env_var) if options.env_var else ()
    if options.separator and not options.arguments_file:
        raise UsageError("-S/--separator splits the lines of an arguments file: it needs -A FILE")
    if options.env_var and not options.arguments_file:
        raise UsageError("-E/--env-var takes its values from an arguments file: it needs -A FILE")


def _is_info_command(options: argparse.Namespace) -> bool:
    return bool(
        options.version or options.check_dependencies or options.validate_config or options.show_config
        or options.list_workers or options.kill
    )


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0]) or "parallelr"
    if prog in ("__main__.py", "-c"):
        prog = "parallelr"
    # Start-up (plugins, the parser, the settings) makes many objects and no garbage worth a
    # collection: the cyclic GC ran some 40 times (~5 ms) before the first task. It is off until
    # the run or command starts (``started``); then start-up's objects are frozen, so that the
    # run's first collection does not scan them all (which would cost what was saved). They are
    # unfrozen when main() returns: a program calling main() again and again keeps collecting.
    collecting = gc.isenabled()
    unfreeze = gc.get_freeze_count() == 0  # never unfreeze what the caller froze

    def started() -> None:
        if collecting:
            gc.freeze()
            gc.enable()

    gc.disable()
    try:
        status = _main(argv, prog, started)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ParallelrError as exc:
        console.drop_status_line()  # a run's progress line its run could not end
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        console.drop_status_line()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        if collecting:
            if unfreeze:
                gc.unfreeze()
            gc.enable()


def main_ptasker() -> int:
    return main(prog="ptasker")


def main_queuectl() -> int:
    """``queuectl ARGS`` is ``parallelr queue ARGS``."""
    return main(["queue", *sys.argv[1:]], prog="queuectl")


def main_psr() -> int:
    """``psr ARGS`` (the old results viewer's name) is ``parallelr results ARGS``."""
    return main(["results", *sys.argv[1:]], prog="psr")


def _main(argv: List[str], prog: str, started: Callable[[], None]) -> int:
    """The invocation; ``started()`` is called once start-up is over, before the run or command."""
    preset_name, long_specs, short_specs = _prescan(argv)
    manager = create_plugin_manager(long_specs)
    presets = _known_presets(manager)
    if preset_name is None and prog in presets:
        preset_name = prog
    preset = None
    if preset_name is not None:
        if preset_name not in presets:
            raise UsageError(f"unknown preset {preset_name!r}; known presets: {', '.join(sorted(presets))}")
        preset = presets[preset_name]
    if "-p" not in (preset.claims if preset else ()):
        apply_plugin_specs(manager, short_specs)

    commands = _commands(manager)
    rest = _without_prescanned(argv)
    if rest and rest[0] in commands:
        command, name, arguments = _command_of(commands, rest, prog)
        children = sorted((child for child in commands.values() if child.parent == command.name),
                          key=lambda child: child.name)
        started()
        return _run_command(command, arguments, name, manager, preset, children)
    executors = executor_factories(manager)
    if not executors:
        raise UsageError("no executor plugin is loaded (did -p no:... block them all?)")
    parser = build_parser(prog, preset, list(executors), manager, commands)
    options = parser.parse_args(argv)
    # The machinery of a run (settings, scheduler, ...), imported only now: --help, and a usage
    # error argparse finds, need none of it.
    from parallelr import runner

    _normalize(options)
    request = RunRequest.from_namespace(options, ignore=INVOCATION_DESTS)
    _check_conflicts(options, request)
    config = Config(request, manager, preset=preset.name if preset else None,
                    app_name=preset.app_name if preset else "parallelr")
    manager.hook.parallelr_configure(config=config)
    check_hooks(manager)  # the objects plugins registered for this run too

    started()
    if options.version:
        return runner.show_version(config)
    if not _is_info_command(options):
        request = config.request  # as the plugins left it (a preset's command, a resumed run's)
        if not request.task_paths and not request.arguments_file:
            raise UsageError("nothing to run: give task files with -T, or an arguments file with -A")
        if not request.command:
            raise UsageError("no command: give the command template with -C, e.g. -C \"bash @TASK@\"")
        try:  # a template that cannot work is a bad command-line value: exit 2, before anything runs
            CommandTemplate.parse(request.command, request.env_names, shell=request.shell)
        except CommandError as exc:
            raise UsageError(str(exc)) from None
    return runner.run(config, options)


# What each info command conflicts with: it does one thing and exits, so a run's options with it
# are a mistake (``--list-workers -r -T tasks`` would silently run nothing).
_RUN_FLAGS = (("execute", "-r"), ("daemon", "-D"), ("task_paths", "-T"), ("arguments_file", "-A"),
              ("command", "-C"))
_INFO_FLAGS = (("version", "--version"), ("check_dependencies", "--check-dependencies"),
               ("validate_config", "--validate-config"), ("show_config", "--show-config"),
               ("list_workers", "--list-workers"), ("kill", "-k/--kill"))


def _check_conflicts(options: argparse.Namespace, request: RunRequest) -> None:
    infos = [flag for dest, flag in _INFO_FLAGS if getattr(options, dest)]
    if len(infos) > 1:
        raise UsageError(f"{' and '.join(infos)} cannot be combined: give one of them")
    if not infos:
        return
    # --validate-config and --show-config take the settings a run would use (-m, -t, ...).
    settings_only = infos[0] in ("--validate-config", "--show-config")
    conflicting = [flag for field, flag in _RUN_FLAGS
                   if getattr(request, field) and not (settings_only and flag in ("-T", "-A", "-C"))]
    if conflicting:
        raise UsageError(f"{infos[0]} runs no tasks: drop {', '.join(conflicting)}")


__all__ = ["Parser", "__version__", "build_parser", "main", "main_ptasker", "main_queuectl"]
