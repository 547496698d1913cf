"""The batch runner's options, each declared once: flag, help text, request field, config key and
whether ``--resume`` restores it.

The command line (:func:`add_options`), the config overrides (:func:`setting_overrides`), the
flag named in a bad value's error (:data:`FLAGS_BY_SETTING`), the run request's fields and the
journal's resume all derive from :data:`OPTIONS`: a new option is one new entry here (plus a field
on :class:`parallelr.model.RunRequest` when it belongs to a run). Defaults of options that set a
config key come from the config schema (``None`` here means "not given": the config decides).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import attrs

SEPARATORS = ("space", "whitespace", "tab", "comma", "semicolon", "pipe", "colon")


@attrs.frozen
class Option:
    """One command-line option of a batch run.

    ``field`` is the :class:`~parallelr.model.RunRequest` attribute, ``dest`` the argparse name
    (also the key under which the journal stores the option, so it never changes), ``flags`` and
    ``argparse`` what the parser needs. ``setting`` is the dotted config key the option overrides,
    with ``to_setting`` turning the option's value into the setting's (None: leave the config
    alone). ``restored``: ``--resume`` takes it from the stored run unless it is given again;
    ``names_tasks``: it says which tasks run, so ``--resume`` (which runs stored tasks) refuses it.
    """

    field: str
    dest: str
    flags: Tuple[str, ...]
    group: str
    help: str
    argparse: Mapping[str, Any] = attrs.field(factory=dict)
    setting: Optional[str] = None
    to_setting: Callable[[Any], Any] = attrs.field(default=lambda value: value)
    restored: bool = False
    names_tasks: bool = False

    @property
    def flag(self) -> str:
        """``-m/--max``: how error messages name it."""
        return "/".join(self.flags)


TASKS = "tasks"
EXECUTION = "execution"


def _true_or_none(value: Any) -> Optional[bool]:
    return True if value else None


OPTIONS: Tuple[Option, ...] = (
    Option("task_paths", "TasksDir", ("-T", "--TasksDir"), TASKS,
           "directory, task files or glob patterns (repeatable); with -A: one template file",
           {"action": "append", "nargs": "+", "default": [], "metavar": "PATH"},
           restored=True, names_tasks=True),
    Option("command", "Command", ("-C", "--Command"), TASKS, "command template with @TASK@, @ARG@, @ARG_N@",
           {"metavar": "CMD"}, restored=True, names_tasks=True),
    Option("arguments_file", "arguments_file", ("-A", "--arguments-file"), TASKS,
           "one task per line of FILE", {"metavar": "FILE"}, restored=True, names_tasks=True),
    Option("separator", "separator", ("-S", "--separator"), TASKS,
           f"split each -A line into columns: {', '.join(SEPARATORS)}",
           {"choices": SEPARATORS, "metavar": "SEP"}, restored=True),
    Option("env_names", "env_var", ("-E", "--env-var"), TASKS,
           "environment variable name(s) set from the columns, comma-separated (e.g. HOSTNAME)",
           {"action": "append", "default": [], "metavar": "NAMES"}, restored=True),
    Option("file_extension", "file_extension", ("--file-extension",), TASKS,
           "only files with these extensions: txt or csv,tsv", {"metavar": "EXT"}, restored=True),
    Option("shell", "shell", ("--shell",), TASKS,
           "run the command through /bin/sh -c (pipes, redirections); values stay quoted data",
           {"action": "store_true"}, restored=True),
    Option("execute", "run", ("-r", "--run"), EXECUTION, "execute (default: dry run)",
           {"action": "store_true"}),
    Option("workers", "max", ("-m", "--max"), EXECUTION, "parallel workers (default 20, max 100)",
           {"type": int, "metavar": "N"}, setting="limits.max_workers", restored=True),
    Option("timeout", "timeout", ("-t", "--timeout"), EXECUTION, "task timeout in seconds (default 600)",
           {"type": int, "metavar": "N"}, setting="limits.timeout_seconds", restored=True),
    Option("start_delay", "sleep", ("-s", "--sleep"), EXECUTION, "seconds between task starts (0-60)",
           {"type": float, "metavar": "N"}, setting="limits.task_start_delay", restored=True),
    Option("executor", "executor", ("--executor",), EXECUTION, "how tasks run (default thread)",
           {"metavar": "NAME"}, restored=True),
    Option("retries", "retries", ("--retries",), EXECUTION,
           "run a failed or timed-out task up to N more times", {"type": int, "metavar": "N"},
           setting="advanced.retries", restored=True),
    Option("retry_delay", "retry_delay", ("--retry-delay",), EXECUTION,
           "seconds before the first retry (default 1)", {"type": float, "metavar": "S"},
           setting="advanced.retry_delay", restored=True),
    Option("retry_backoff", "retry_backoff", ("--retry-backoff",), EXECUTION,
           "each further retry waits F times longer (default 2)", {"type": float, "metavar": "F"},
           setting="advanced.retry_backoff", restored=True),
    Option("retry_max_delay", "retry_max_delay", ("--retry-max-delay",), EXECUTION,
           "longest wait before a retry (300)", {"type": float, "metavar": "S"},
           setting="advanced.retry_max_delay", restored=True),
    Option("debug", "debug", ("-d", "--debug"), EXECUTION, "log level DEBUG", {"action": "store_true"},
           setting="logging.level", to_setting=lambda value: "DEBUG" if value else None),
    Option("daemon", "daemon", ("-D", "--daemon"), EXECUTION, "run detached in the background",
           {"action": "store_true"}),
    Option("stop_limits", "enable_stop_limits", ("--enable-stop-limits",), EXECUTION,
           "halt on excessive failures", {"action": "store_true"},
           setting="limits.stop_limits_enabled", to_setting=_true_or_none, restored=True),
    Option("no_task_output_log", "no_task_output_log", ("--no-task-output-log",), EXECUTION,
           "do not write the task output log", {"action": "store_true"}, restored=True),
    Option("no_results_jsonl", "no_results_jsonl", ("--no-results-jsonl",), EXECUTION,
           "do not write the JSONL results file", {"action": "store_true"}, restored=True),
)

BY_FIELD: Dict[str, Option] = {option.field: option for option in OPTIONS}
BY_DEST: Dict[str, Option] = {option.dest: option for option in OPTIONS}
FLAGS_BY_SETTING: Dict[str, str] = {option.setting: option.flag for option in OPTIONS if option.setting}
RESTORED_DESTS: Tuple[str, ...] = tuple(option.dest for option in OPTIONS if option.restored)
TASK_OPTIONS: Tuple[Option, ...] = tuple(option for option in OPTIONS if option.names_tasks)


def add_options(parser: Any, executors: Tuple[str, ...] = ()) -> None:
    """Add every option to ``parser`` (a :class:`parallelr.cli.Parser`), in declaration order."""
    for option in OPTIONS:
        extra = dict(option.argparse)
        help_text = option.help
        if option.field == "executor" and executors:
            extra["choices"] = sorted(executors)
            help_text = f"how tasks run: {', '.join(sorted(executors))} (default thread)"
        parser.getgroup(option.group).add_argument(*option.flags, dest=option.dest, help=help_text, **extra)


def setting_overrides(values: Mapping[str, Any]) -> Dict[str, Any]:
    """``{dotted config key: value}`` for the options in ``values`` (keyed by field) that set one;
    None values mean "not given" and leave the config files' value."""
    overrides: Dict[str, Any] = {}
    for option in OPTIONS:
        if option.setting is not None:
            overrides[option.setting] = option.to_setting(values.get(option.field))
    return overrides
