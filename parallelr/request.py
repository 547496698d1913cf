"""What a caller asks a batch run to do: the command line's options as one immutable value.

The CLI parses argv into a :class:`RunRequest`; :func:`parallelr.run_batch` takes one directly,
so a program (a queue worker, ``dlq retry``, a test) runs a batch without argparse. Sources,
presets and plugins read it (``config.request``), never an argparse namespace.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from parallelr.options import BY_DEST, BY_FIELD, OPTIONS


def _strings(value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return dict(value or {})


@attrs.frozen
class RunRequest:
    """One batch run, as asked for. ``None`` for a setting means "not given": the config decides.

    ``plugin_options`` holds the options that plugins add to the command line (``resume``,
    ``no_journal``, ``project``, ...), by their argparse ``dest``; :meth:`option` reads any option,
    a core one or a plugin's, by that name.
    """

    task_paths: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    command: Optional[str] = None
    arguments_file: Optional[str] = None
    separator: Optional[str] = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(
            BY_FIELD["separator"].argparse["choices"]))
    )
    env_names: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    file_extension: Optional[str] = None
    shell: bool = False
    execute: bool = False  # -r; run_batch always executes
    workers: Optional[int] = None
    timeout: Optional[int] = None
    start_delay: Optional[float] = None
    executor: Optional[str] = None  # None: the default executor (and a resume takes the stored one)
    retries: Optional[int] = None
    retry_delay: Optional[float] = None
    retry_backoff: Optional[float] = None
    retry_max_delay: Optional[float] = None
    debug: bool = False
    daemon: bool = False
    stop_limits: bool = False
    no_task_output_log: bool = False
    no_results_jsonl: bool = False
    plugin_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunRequest:
        """From options keyed by argparse ``dest`` (a parsed namespace's ``vars``, or the options
        a journal stored): the core's become fields, every other one a plugin option."""
        core: Dict[str, Any] = {}
        plugins: Dict[str, Any] = {}
        for dest, value in options.items():
            option = BY_DEST.get(dest)
            if option is None:
                plugins[dest] = value
            elif value is not None:
                core[option.field] = value
        return cls(plugin_options=plugins, **core)

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace, ignore: Tuple[str, ...] = ()) -> RunRequest:
        return cls.from_options({dest: value for dest, value in vars(namespace).items()
                                 if dest not in ignore})

    def option(self, dest: str, default: Any = None) -> Any:
        """An option by its argparse name (``"max"``, ``"resume"``), None when not given."""
        option = BY_DEST.get(dest)
        if option is not None:
            return getattr(self, option.field)
        return self.plugin_options.get(dest, default)

    def as_options(self) -> Dict[str, Any]:
        """Every option by its argparse name: what the journal stores and ``--resume`` restores."""
        values: Dict[str, Any] = {option.dest: getattr(self, option.field) for option in OPTIONS}
        for name in ("task_paths", "env_names"):
            values[BY_FIELD[name].dest] = list(getattr(self, name))
        values.update(self.plugin_options)
        return values

    def with_options(self, **by_dest: Any) -> RunRequest:
        """A copy with options changed, named by their argparse ``dest`` (core or plugin)."""
        fields: Dict[str, Any] = {}
        plugins = dict(self.plugin_options)
        for dest, value in by_dest.items():
            option = BY_DEST.get(dest)
            if option is None:
                plugins[dest] = value
            else:
                fields[option.field] = value
        return attrs.evolve(self, plugin_options=plugins, **fields)

    def namespace(self) -> argparse.Namespace:
        """The options as an argparse namespace, for plugins written against ``config.options``."""
        return argparse.Namespace(**self.as_options())
