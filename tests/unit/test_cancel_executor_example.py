"""The executor plugin example of docs/plugins.md, taken from the page itself, really works."""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from parallelr.cancel import CancelToken
from parallelr.executor import ExecutorContext
from parallelr.model import ExecutionLimits, Task, TaskStatus
from parallelr.pluginmanager import create_plugin_manager

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
MODULE = "parallelr_pool_executor"


def limits_for(tmp_path: Path, kill_grace: float) -> ExecutionLimits:
    workspace = str(tmp_path / "ws")
    return ExecutionLimits(timeout=30, workspace=workspace, runner_pid=os.getpid(), kill_grace=kill_grace)


def started(marker: Path) -> None:
    deadline = time.monotonic() + 15
    while not (marker.exists() and marker.read_text().strip()):
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.02)


def example_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    (source,) = [block for block in blocks if block.startswith(f"# {MODULE}.py\n")]
    return source


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / f"{MODULE}.py").write_text(example_source())
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(MODULE, None)


def test_the_documented_executor_registers_and_runs_tasks(example: Any, tmp_path: Path) -> None:
    manager = create_plugin_manager([MODULE], load_entry_points=False)
    factories: dict = {}
    for provided in manager.hook.parallelr_executors():
        factories.update(provided or {})
    assert factories["pool"] is example.PoolExecutor

    executor = factories["pool"](ExecutorContext(workers=3, limits=limits_for(tmp_path, 0.5)))
    marker = tmp_path / "started"
    tasks = [
        Task(argv=["sh", "-c", "echo one"], source="one"),
        Task(argv=["sh", "-c", "exit 3"], source="two"),
        Task(argv=["sh", "-c", f"echo $$ > {marker}; exec sleep 300"], source="three"),
    ]
    token = CancelToken()
    futures = [executor.submit(tasks[0], 1), executor.submit(tasks[1], 2, CancelToken()),
               executor.submit(tasks[2], 3, token)]
    first, second = futures[0].result(timeout=30), futures[1].result(timeout=30)
    started(marker)
    token.cancel("Cancelled: the third one")
    third = futures[2].result(timeout=30)
    executor.shutdown(cancel=False)

    assert (first.status, first.stdout) == (TaskStatus.SUCCESS, "one\n")
    assert (second.status, second.exit_code) == (TaskStatus.FAILED, 3)
    assert (third.status, third.error_message) == (TaskStatus.CANCELLED, "Cancelled: the third one")
    assert third.pid is not None  # it ran, and was stopped
    late = executor.submit(tasks[0], 1).result(timeout=5)
    assert (late.status, late.error_message) == (TaskStatus.CANCELLED, "Cancelled by shutdown")


def test_the_documented_executor_shuts_down_and_kills(example: Any, tmp_path: Path) -> None:
    executor = example.PoolExecutor(ExecutorContext(workers=1, limits=limits_for(tmp_path, 60)))
    marker = tmp_path / "started"
    script = f"trap '' TERM; echo $$ > {marker}; sleep 300"
    running = executor.submit(Task(argv=["sh", "-c", script], source="r"), 1)
    started(marker)
    began = time.monotonic()
    executor.kill()  # without it the trapped SIGTERM would hold the task for the minute of grace
    result = running.result(timeout=10)
    assert time.monotonic() - began < 5
    executor.shutdown(cancel=True)
    assert (result.status, result.error_message) == (TaskStatus.CANCELLED, "Cancelled by shutdown")
