"""Where parallelr spends its CPU on workload a: py-spy samples, summarised per function and per task."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time
from typing import Callable, Counter, Dict, List, Tuple

from _execute import run_once
from _workloads import Setup

SAMPLE_RATE = 500  # samples per second and thread; high enough for a run of a second or two
TOP = 25
_LINE_NUMBER = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    # "run_task (parallelr/process.py:512)" -> "run_task (parallelr/process.py)": one row per function.
    return _LINE_NUMBER.sub(")", frame)


def _read_stacks(path: str) -> List[Tuple[List[str], int]]:
    stacks = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                stacks.append(([_function(frame) for frame in stack.split(";")], int(count)))
    return stacks


def _innermost_own_code(frames: List[str]) -> str:
    for frame in reversed(frames):
        if "(parallelr/" in frame or "(plugins/" in frame:
            return frame
    return "(no parallelr frame: interpreter start-up, imports, thread pool)"


def summarise(path: str, tasks: int, wall_s: float, calibration: str) -> str:
    stacks = _read_stacks(path)
    own: Counter[str] = collections.Counter()
    inclusive: Counter[str] = collections.Counter()
    ours: Counter[str] = collections.Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        ours[_innermost_own_code(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = sum(count for _, count in stacks)

    def per_task_ms(samples: int) -> float:
        return samples / SAMPLE_RATE / tasks * 1000

    lines = [
        f"workload a: {tasks} tasks of 'true', -m 8; wall {wall_s:.2f} s under py-spy",
        f"({SAMPLE_RATE} Hz, --gil: only the thread holding the GIL is sampled, i.e. the runner's",
        " Python work; C code that releases the GIL, such as fork/exec and waiting, is not counted)",
        calibration,
        f"GIL held: {total / SAMPLE_RATE:.2f} s = {per_task_ms(total):.3f} ms per task",
        "",
        _table(
            "by parallelr function (innermost parallelr/plugins frame, the stdlib it calls included)",
            ours,
            total,
            per_task_ms,
        ),
        "",
        _table("own time (the function itself)", own, total, per_task_ms),
        "",
        _table("inclusive time (the function and what it calls)", inclusive, total, per_task_ms),
    ]
    return "\n".join(lines)


def _table(title: str, counts: Dict[str, int], total: int, per_task_ms: Callable[[int], float]) -> str:
    rows = [f"{title}:", f"  {'ms/task':>8}  {'share':>6}  function"]
    for function, samples in sorted(counts.items(), key=lambda item: -item[1])[:TOP]:
        rows.append(f"  {per_task_ms(samples):8.3f}  {samples / total:6.1%}  {function}")
    return "\n".join(rows)


def _calibrate(setup: Setup, numbers: str, env: Dict[str, str], cwd: str) -> str:
    """The same run without a profiler attached: its wall time and the runner's own CPU."""
    tasks = setup.sizes.overhead_tasks
    variant = setup.parallelr("calibrate", "", numbers, "true @ARG@", 8, measured=True)
    sample = run_once(variant, env, cwd, os.path.join(setup.files_dir, "usage.json"))
    if sample.exit_code != 0 or sample.cpu_s is None:
        return f"unprofiled run failed (exit {sample.exit_code}): {sample.error}"
    return (
        f"unprofiled: wall {sample.wall_s:.2f} s, runner CPU (RUSAGE_SELF, all threads) "
        f"{sample.cpu_s:.2f} s = {sample.cpu_s / tasks * 1000:.3f} ms per task"
    )


def profile_overhead(setup: Setup, env: Dict[str, str], cwd: str, out_path: str) -> str:
    """Profile one run of workload a and write the summary to out_path; return the summary."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return "py-spy is not installed: python3 -m pip install py-spy, then run --profile again"
    numbers = setup.numbers_file(setup.sizes.overhead_tasks)
    calibration = _calibrate(setup, numbers, env, cwd)
    raw = os.path.join(setup.files_dir, "profile-a.raw")
    parallelr = setup.parallelr("profile", "", numbers, "true @ARG@", 8)
    record = [py_spy, "record", "--gil", "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", raw]
    start = time.perf_counter()
    done = subprocess.run(
        [*record, "--", *parallelr.argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0 or not os.path.exists(raw):
        return f"py-spy failed (exit {done.returncode}): {done.stderr.strip()[-400:]}"
    summary = summarise(raw, setup.sizes.overhead_tasks, wall, calibration)
    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write(summary + "\n")
    return summary
