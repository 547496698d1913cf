"""Subcommands (``parallelr runs list``, ``parallelr dlq retry``): what a plugin returns from
``parallelr_commands``."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

import attrs


@attrs.frozen
class Command:
    """``parallelr NAME ...``. ``add_arguments(parser)`` defines its arguments (subparsers are
    fine); ``run(config)`` does the work with ``config.options`` parsed and ``config.settings``
    loaded, and returns the exit status.

    ``program`` names a console script that is this command (``queuectl`` is ``parallelr
    queue``): run as it, the command's help and errors name the script alone.

    ``parent`` names another command this one is also found under: the dashboard (``parent``
    ``"queue"``) is ``parallelr dashboard``, ``parallelr queue dashboard`` and ``queuectl
    dashboard``."""

    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], int]
    program: Optional[str] = None
    parent: Optional[str] = None


def imported_later(module: str, name: str) -> Callable[..., Any]:
    """A function that calls ``module.name``, importing ``module`` only then: a plugin that adds a
    command declares it with these, so that the command's code (and what it imports) stays out
    of the start-up of every run that does not use it."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)

    call.__name__ = call.__qualname__ = name
    return call
