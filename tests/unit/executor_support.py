"""Helpers shared by the executor and cancellation unit tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

from parallelr.model import ExecutionLimits


def limits_for(
    tmp_path: Path, timeout: float = 1, kill_grace: float = 0.3, **overrides: Any
) -> ExecutionLimits:
    values = {"timeout": timeout, "workspace": str(tmp_path / "ws"), "runner_pid": os.getpid(),
              "kill_grace": kill_grace}
    values.update(overrides)
    return ExecutionLimits(**values)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
