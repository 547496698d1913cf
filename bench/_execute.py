"""Run one command once and measure it; fold repetitions into medians."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import attrs
from _measure import USAGE_ENV

RUN_TIMEOUT = 1800  # a hung run must not hang the benchmark
STDERR_TAIL = 400


@attrs.define(frozen=True)
class Variant:
    """One command of a workload: parallelr with some flags, xargs or GNU parallel."""

    key: str  # stable id in the JSON, e.g. "parallelr", "xargs", "parallelr-process"
    label: str  # what the table shows
    argv: Tuple[str, ...]
    stdin_path: Optional[str] = None  # fed on stdin (xargs, parallel)
    measures_usage: bool = False  # runs through bench/_measure.py, which reports the runner's usage
    # A measurement that is more than one command's wall time (the queue's drain and latency):
    # called as run(env, cwd) instead of running argv, it returns the Sample itself.
    run: Optional[Callable[[Dict[str, str], str], Sample]] = attrs.field(default=None, eq=False, repr=False)


@attrs.define(frozen=True)
class Sample:
    wall_s: float
    exit_code: int
    maxrss_mb: Optional[float] = None
    cpu_s: Optional[float] = None
    error: str = ""
    details: Dict[str, object] = attrs.field(factory=dict)  # a custom run's own figures (see Variant.run)


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


@attrs.define(frozen=True)
class Stats:
    """All repetitions of one variant. Figures are None when any repetition failed."""

    samples: Tuple[Sample, ...]

    @property
    def failed(self) -> Optional[Sample]:
        return next((sample for sample in self.samples if sample.exit_code != 0), None)

    def _median_of(self, field: str) -> Optional[float]:
        if self.failed is not None or not self.samples:
            return None
        return _median([getattr(sample, field) for sample in self.samples])

    @property
    def wall_s(self) -> Optional[float]:
        return self._median_of("wall_s")

    @property
    def maxrss_mb(self) -> Optional[float]:
        return self._median_of("maxrss_mb")

    @property
    def cpu_s(self) -> Optional[float]:
        return self._median_of("cpu_s")

    def as_json(self) -> Dict[str, object]:
        failed = self.failed
        return {
            "median_wall_s": self.wall_s,
            "median_maxrss_mb": self.maxrss_mb,
            "median_cpu_s": self.cpu_s,
            "runs": [attrs.asdict(sample) for sample in self.samples],
            "error": f"exit {failed.exit_code}: {failed.error}" if failed else None,
        }


def _read_usage(path: str) -> Tuple[Optional[float], Optional[float]]:
    try:
        with open(path, encoding="utf-8") as handle:
            usage = json.load(handle)
    except (OSError, ValueError):
        return None, None
    return usage["maxrss_kib"] / 1024, usage["user_s"] + usage["system_s"]


def run_once(variant: Variant, env: Dict[str, str], cwd: str, usage_path: str) -> Sample:
    """Run the variant once; wall time covers the whole command, interpreter start included."""
    if variant.run is not None:
        try:
            return variant.run(env, cwd)
        except Exception as exc:  # a broken measurement is a failed run with its message, not a crash
            return Sample(wall_s=0.0, exit_code=-1, error=f"{type(exc).__name__}: {exc}")
    if variant.measures_usage:
        env = {**env, USAGE_ENV: usage_path}
        if os.path.exists(usage_path):
            os.unlink(usage_path)
    stdin = open(variant.stdin_path, "rb") if variant.stdin_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        # Own session: on a timeout the whole tree the command started can be killed by its group id.
        child = subprocess.Popen(
            variant.argv,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        try:
            _, stderr = child.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            _, stderr = child.communicate()
            return Sample(wall_s=time.perf_counter() - start, exit_code=-1, error="timed out")
        wall = time.perf_counter() - start
    finally:
        if variant.stdin_path:
            stdin.close()  # type: ignore[union-attr]
    error = stderr.decode(errors="replace").strip()[-STDERR_TAIL:] if child.returncode else ""
    maxrss, cpu = _read_usage(usage_path) if variant.measures_usage else (None, None)
    return Sample(wall_s=wall, exit_code=child.returncode, maxrss_mb=maxrss, cpu_s=cpu, error=error)
