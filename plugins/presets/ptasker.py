"""The ptasker preset: run TASKER test cases as ``tasker @TASK@ -p <project> -r``.

Chosen by the ``ptasker`` console script or ``parallelr --preset ptasker``. It uses its own
config files (``ptasker.yaml``, falling back to parallelr's) and its own ``~/ptasker/`` folder.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Dict

from parallelr.hookspecs import hookimpl
from parallelr.presets import Preset

NAME = "ptasker"


def new_project_id() -> str:
    """``parallelr_`` + 6 hex digits, as the old tool generated (e.g. ``parallelr_1a811c``)."""
    return f"parallelr_{os.urandom(3).hex()}"


@hookimpl
def parallelr_presets() -> Dict[str, Preset]:
    return {
        NAME: Preset(
            name=NAME,
            app_name=NAME,
            description="TASKER test cases: tasker @TASK@ -p <project> -r",
            claims=("-p",),
        )
    }


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    if parser.preset != NAME:
        return
    group = parser.getgroup("ptasker")
    group.add_argument(
        "-p", "--project", metavar="NAME",
        help="TASKER project name (default: an auto ID such as parallelr_1a811c)",
    )


@hookimpl
def parallelr_configure(config: Any) -> None:
    if config.preset != NAME:
        return
    request = config.request
    project = request.option("project") or new_project_id()
    changes: Dict[str, Any] = {"project": project}
    if not request.command:
        changes["Command"] = f"tasker @TASK@ -p {shlex.quote(project)} -r"
    if request.arguments_file and not request.env_names:
        changes["env_var"] = ("HOSTNAME",)
    config.request = request.with_options(**changes)
