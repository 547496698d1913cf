"""Helpers shared by the executor and cancellation unit tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, List

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


def wait_for_pids(path: Path, count: int, timeout: float = 15) -> List[int]:
    """The first ``count`` PIDs the tasks wrote into ``path``, once they are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(word) for word in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.02)
    raise AssertionError(f"tasks did not start: {path}")
