"""Where parallelr spends its CPU on workload a: py-spy samples, summarised per function and per task."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time
from typing import Callable, Counter, Dict, List, Tuple

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


def summarise(path: str, tasks: int, wall_s: float) -> str:
    stacks = _read_stacks(path)
    own: Counter[str] = collections.Counter()
    inclusive: Counter[str] = collections.Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = sum(count for _, count in stacks)

    def per_task_ms(samples: int) -> float:
        return samples / SAMPLE_RATE / tasks * 1000

    lines = [
        f"workload a: {tasks} tasks of 'true', -m 8; wall {wall_s:.2f} s under py-spy "
        f"({SAMPLE_RATE} Hz, on-CPU samples of all threads)",
        f"CPU sampled: {total / SAMPLE_RATE:.2f} s = {per_task_ms(total):.3f} ms per task",
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


def profile_overhead(setup: Setup, env: Dict[str, str], cwd: str, out_path: str) -> str:
    """Profile one run of workload a and write the summary to out_path; return the summary."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return "py-spy is not installed: python3 -m pip install py-spy, then run --profile again"
    tasks = setup.sizes.overhead_tasks
    raw = os.path.join(setup.files_dir, "profile-a.raw")
    parallelr = setup.parallelr("profile", "", setup.numbers_file(tasks), "true @ARG@", 8)
    argv = [py_spy, "record", "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", raw, "--",
            *parallelr.argv]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0 or not os.path.exists(raw):
        return f"py-spy failed (exit {done.returncode}): {done.stderr.strip()[-400:]}"
    summary = summarise(raw, tasks, wall)
    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write(summary + "\n")
    return summary
