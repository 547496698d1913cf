"""The workloads: the commands each one compares, and the figures (with targets) it derives."""

from __future__ import annotations

import os
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
from _execute import Stats, Variant
from _tools import Tools

MB = "MB"
SECONDS = "s"


@attrs.define(frozen=True)
class Sizes:
    overhead_tasks: int = 1000
    refill_tasks: int = 400
    refill_workers: int = 20
    refill_sleep: float = 0.1
    scale_tasks: Tuple[int, int] = (10_000, 100_000)
    flood_bytes: int = 1_000_000_000
    queue_jobs: int = 2000  # workload q: the size, also in --quick
    queue_big_jobs: int = 100_000
    queue_workers: int = 4
    queue_latency_samples: int = 20  # in all, spread over the repetitions

    @property
    def refill_ideal_s(self) -> float:
        return self.refill_tasks / self.refill_workers * self.refill_sleep


FULL = Sizes()
QUICK = Sizes(
    overhead_tasks=200,
    refill_tasks=100,
    scale_tasks=(2_000, 20_000),
    flood_bytes=100_000_000,
    queue_big_jobs=20_000,
)


@attrs.define(frozen=True)
class Figure:
    """A derived number; target/passed are empty for figures that are only informative."""

    label: str
    value: Optional[float]
    unit: str = ""
    target: str = ""
    passed: Optional[bool] = None


Judge = Callable[[Mapping[str, Stats]], List[Figure]]


@attrs.define(frozen=True)
class Workload:
    key: str
    title: str
    params: Dict[str, object]
    variants: Tuple[Variant, ...]
    judge: Judge
    notes: Tuple[str, ...] = ()


@attrs.define(frozen=True)
class Setup:
    """Everything a workload builder needs: tools, sizes and a folder for its input files."""

    tools: Tools
    sizes: Sizes
    files_dir: str
    measure_script: str
    reps: int = 1  # repetitions of the run (workload q spreads its latency samples over them)
    # --executors: a and b also run parallelr with each of these, side by side with the default
    executors: Tuple[str, ...] = ()
    # --baseline REV: (REV, a work tree of it) whose parallelr a and b also run, side by side
    baseline: Optional[Tuple[str, str]] = None

    def lines_file(self, name: str, lines: Sequence[str]) -> str:
        path = os.path.join(self.files_dir, name)
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("".join(f"{line}\n" for line in lines))
        return path

    def numbers_file(self, count: int) -> str:
        return self.lines_file(f"numbers-{count}.txt", [str(number) for number in range(1, count + 1)])

    def parallelr(
        self,
        key: str,
        label: str,
        args_file: str,
        command: str,
        workers: int,
        *extra: str,
        measured: bool = False,
        tree: Optional[str] = None,
    ) -> Variant:
        start = (
            [self.tools.python, self.measure_script] if measured else [self.tools.python, "-m", "parallelr"]
        )
        if tree is not None:  # another parallelr's sources first on the path (env adds ~1 ms)
            start = ["env", f"PYTHONPATH={tree}", *start]
        argv = (*start, "-A", args_file, "-C", command, "-r", "-m", str(workers), *extra)
        return Variant(key=key, label=label, argv=argv, measures_usage=measured)

    def xargs(self, key: str, args_file: str, workers: int, program: str, prefix: str = "") -> List[Variant]:
        if self.tools.xargs is None:
            return []
        argv = (self.tools.xargs, f"-P{workers}", "-n1", program)
        label = f"{prefix}xargs -P{workers} -n1 {program}"
        return [Variant(key=key, label=label, argv=argv, stdin_path=args_file)]

    def gnu_parallel(self, key: str, args_file: str, workers: int, program: str) -> List[Variant]:
        if self.tools.parallel is None:
            return []
        argv = (self.tools.parallel, "--will-cite", f"-j{workers}", program, "{}")
        label = f"GNU parallel -j{workers} {program} {{}}"
        return [Variant(key=key, label=label, argv=argv, stdin_path=args_file)]


# The targets of issue 15 (one event loop supervising every task); a and b have their own on
# Python 3.9, the interpreter that runs the benchmark and parallelr.
_PYTHON_39 = sys.version_info[:2] == (3, 9)
OVERHEAD_TARGET = 1.4 if _PYTHON_39 else 1.25  # a: parallelr / xargs
REFILL_TARGET = 1.08 if _PYTHON_39 else 1.05  # b: parallelr / xargs
SCALE_TARGET = 11  # c: time(100k) / time(10k)
SCALE_RSS_MB = 60  # c: the runner's peak RSS


def _with_executors(
    setup: Setup, label: str, args_file: str, command: str, workers: int
) -> List[Variant]:
    """The same parallelr command once per ``--executors`` name, keys ``parallelr-NAME``, and
    with the ``--baseline`` tree's parallelr, key ``parallelr-baseline``."""
    variants = [
        setup.parallelr(
            f"parallelr-{name}", f"{label} --executor {name}", args_file, command, workers, "--executor", name
        )
        for name in setup.executors
    ]
    if setup.baseline is not None:
        revision, tree = setup.baseline
        variants.append(
            setup.parallelr(
                "parallelr-baseline", f"{label} [{revision}]", args_file, command, workers, tree=tree
            )
        )
    return variants


def _parallelr_keys(setup: Setup) -> List[Tuple[str, str]]:
    """(variant key, name in the figures) of the default parallelr, of each --executors run and of
    the --baseline revision."""
    keys = [("parallelr", "parallelr")] + [
        (f"parallelr-{name}", f"parallelr --executor {name}") for name in setup.executors
    ]
    if setup.baseline is not None:
        keys.append(("parallelr-baseline", f"parallelr [{setup.baseline[0]}]"))
    return keys


def _ratio(stats: Mapping[str, Stats], top: str, bottom: str) -> Optional[float]:
    if top not in stats or bottom not in stats:
        return None
    numerator, denominator = stats[top].wall_s, stats[bottom].wall_s
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def at_most(label: str, value: Optional[float], limit: float, unit: str = "") -> Figure:
    passed = None if value is None else value <= limit
    return Figure(label, value, unit, f"<= {limit:g}{' ' + unit if unit else ''}", passed)


def at_least(label: str, value: Optional[float], limit: float, unit: str = "") -> Figure:
    passed = None if value is None else value >= limit
    return Figure(label, value, unit, f">= {limit:g}{' ' + unit if unit else ''}", passed)


def below(label: str, value: Optional[float], limit: float, unit: str = "") -> Figure:
    passed = None if value is None else value < limit
    return Figure(label, value, unit, f"< {limit:g}{' ' + unit if unit else ''}", passed)


def overhead(setup: Setup) -> Workload:
    tasks = setup.sizes.overhead_tasks
    numbers = setup.numbers_file(tasks)
    variants = (
        setup.parallelr("parallelr", f"parallelr -m 8 ({tasks} x true)", numbers, "true @ARG@", 8),
        *_with_executors(setup, f"parallelr -m 8 ({tasks} x true)", numbers, "true @ARG@", 8),
        *setup.xargs("xargs", numbers, 8, "true"),
        *setup.gnu_parallel("parallel", numbers, 8, "true"),
        # One task: start-up and shutdown alone, so the per-task cost can be told from the fixed cost.
        setup.parallelr("parallelr-one", "parallelr -m 8 (1 x true)", setup.numbers_file(1), "true @ARG@", 8),
    )

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        figures = []
        for key, name in _parallelr_keys(setup):
            figures.append(at_most(f"{name} / xargs", _ratio(stats, key, "xargs"), OVERHEAD_TARGET))
            if "parallel" in stats:
                figures.append(at_least(f"GNU parallel / {name}", _ratio(stats, "parallel", key), 3))
        many, one = stats["parallelr"].wall_s, stats["parallelr-one"].wall_s
        per_task = None if many is None or one is None else (many - one) / (tasks - 1) * 1000
        figures.append(Figure("parallelr wall per task beyond the 1-task run", per_task, "ms"))
        if "xargs" in stats:
            xargs = stats["xargs"].wall_s
            figures.append(
                Figure("xargs wall per task", None if xargs is None else xargs / tasks * 1000, "ms")
            )
        return figures

    return Workload("a", "overhead", {"tasks": tasks, "workers": 8}, variants, judge)


def _sleep_file(setup: Setup) -> str:
    sizes = setup.sizes
    return setup.lines_file(
        f"sleep-{sizes.refill_tasks}.txt", [f"{sizes.refill_sleep:g}"] * sizes.refill_tasks
    )


def refill(setup: Setup) -> Workload:
    sizes = setup.sizes
    sleeps = _sleep_file(setup)
    workers = sizes.refill_workers
    label = f"parallelr -m {workers} ({sizes.refill_tasks} x sleep {sizes.refill_sleep:g})"
    variants = (
        setup.parallelr("parallelr", label, sleeps, "sleep @ARG@", workers),
        *_with_executors(setup, label, sleeps, "sleep @ARG@", workers),
        *setup.xargs("xargs", sleeps, workers, "sleep"),
        *setup.gnu_parallel("parallel", sleeps, workers, "sleep"),
    )
    ideal = sizes.refill_ideal_s

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        figures = []
        for key, name in _parallelr_keys(setup):
            wall = stats[key].wall_s
            figures += [
                Figure(f"{name} / ideal makespan ({ideal:g} s)", None if wall is None else wall / ideal),
                at_most(f"{name} / xargs", _ratio(stats, key, "xargs"), REFILL_TARGET),
            ]
            if "parallel" in stats:
                figures.append(Figure(f"{name} / GNU parallel", _ratio(stats, key, "parallel")))
        return figures

    params = {
        "tasks": sizes.refill_tasks,
        "workers": workers,
        "sleep_s": sizes.refill_sleep,
        "ideal_s": ideal,
    }
    return Workload("b", "refill", params, variants, judge)


def scale(setup: Setup) -> Workload:
    small, large = setup.sizes.scale_tasks
    small_file, large_file = setup.numbers_file(small), setup.numbers_file(large)
    variants: List[Variant] = []
    for suffix, flags in _executor_flags(setup):
        for size, path, key in ((small, small_file, "small"), (large, large_file, "large")):
            label = f"parallelr -m 8 ({size} x true){' ' if flags else ''}{' '.join(flags)}"
            key = f"parallelr-{key}{suffix}"
            variants.append(setup.parallelr(key, label, path, "true @ARG@", 8, *flags, measured=True))
    variants += setup.xargs("xargs-large", large_file, 8, "true")

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        figures = []
        for suffix, flags in _executor_flags(setup):
            name = f" ({' '.join(flags)})" if flags else ""
            small_key, large_key = f"parallelr-small{suffix}", f"parallelr-large{suffix}"
            rss = _max_present(stats[small_key].maxrss_mb, stats[large_key].maxrss_mb)
            cpu = stats[large_key].cpu_s
            figures += [
                at_most(
                    f"time {large} / time {small}{name}", _ratio(stats, large_key, small_key), SCALE_TARGET
                ),
                below(f"runner peak RSS{name}", rss, SCALE_RSS_MB, MB),
                Figure(f"parallelr / xargs at {large}{name}", _ratio(stats, large_key, "xargs-large")),
                Figure(f"runner CPU per task{name}", None if cpu is None else cpu / large * 1000, "ms"),
            ]
        return figures

    notes = ("GNU parallel is left out here: at several ms per task it would dominate the run time",)
    return Workload("c", "scale", {"tasks": [small, large], "workers": 8}, tuple(variants), judge, notes)


def _executor_flags(setup: Setup) -> List[Tuple[str, Tuple[str, ...]]]:
    """(key suffix, extra flags) of the default run and of each --executors run."""
    return [("", ())] + [(f"-{name}", ("--executor", name)) for name in setup.executors]


def _max_present(*values: Optional[float]) -> Optional[float]:
    present = [value for value in values if value is not None]
    return max(present) if len(present) == len(values) else None


def flood(setup: Setup) -> Workload:
    size = setup.sizes.flood_bytes
    size_file = setup.lines_file(f"flood-{size}.txt", [str(size)])
    variants = tuple(
        setup.parallelr(
            f"parallelr{suffix}",
            f"parallelr: 1 task printing {size / 1e6:g} MB{' ' if flags else ''}{' '.join(flags)}",
            size_file,
            "head -c @ARG@ /dev/zero",
            1,
            *flags,
            measured=True,
        )
        for suffix, flags in _executor_flags(setup)
    )

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        return [
            below(f"runner peak RSS{' (' + ' '.join(flags) + ')' if flags else ''}",
                  stats[f"parallelr{suffix}"].maxrss_mb, 100, MB)
            for suffix, flags in _executor_flags(setup)
        ]

    return Workload("d", "flood", {"bytes": size}, variants, judge)


def executors(setup: Setup) -> Workload:
    sizes = setup.sizes
    numbers, sleeps = setup.numbers_file(sizes.overhead_tasks), _sleep_file(setup)
    workers = sizes.refill_workers
    names = setup.tools.executors
    variants: List[Variant] = []
    for name in names:
        variants.append(
            setup.parallelr(
                f"a-{name}", f"a: parallelr --executor {name}", numbers, "true @ARG@", 8, "--executor", name
            )
        )
    variants += setup.xargs("a-xargs", numbers, 8, "true", "a: ")
    for name in names:
        variants.append(
            setup.parallelr(
                f"b-{name}",
                f"b: parallelr --executor {name}",
                sleeps,
                "sleep @ARG@",
                workers,
                "--executor",
                name,
            )
        )
    variants += setup.xargs("b-xargs", sleeps, workers, "sleep", "b: ")

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        figures = [
            at_most(f"a: {name} / xargs", _ratio(stats, f"a-{name}", "a-xargs"), 1.5) for name in names
        ]
        figures += [
            at_most(f"b: {name} / xargs", _ratio(stats, f"b-{name}", "b-xargs"), 1.10) for name in names
        ]
        return figures

    missing = [name for name in ("thread", "process") if name not in names]
    notes = tuple(f"executor {name!r} is not available: skipped" for name in missing)
    params = {"executors": list(names), "a_tasks": sizes.overhead_tasks, "b_tasks": sizes.refill_tasks}
    return Workload("e", "executors", params, tuple(variants), judge, notes)


def journal(setup: Setup) -> Workload:
    tasks = setup.sizes.overhead_tasks
    numbers = setup.numbers_file(tasks)
    if not setup.tools.has_no_journal:
        note = "parallelr has no --no-journal flag (per --help): skipped"
        return Workload("f", "journal cost", {"tasks": tasks}, (), lambda stats: [], (note,))
    variants = (
        setup.parallelr("journal", f"parallelr -m 8 ({tasks} x true)", numbers, "true @ARG@", 8),
        setup.parallelr(
            "no-journal", "parallelr -m 8 --no-journal", numbers, "true @ARG@", 8, "--no-journal"
        ),
    )

    def judge(stats: Mapping[str, Stats]) -> List[Figure]:
        ratio = _ratio(stats, "journal", "no-journal")
        return [at_most("journal cost (time added)", None if ratio is None else (ratio - 1) * 100, 10, "%")]

    return Workload("f", "journal cost", {"tasks": tasks, "workers": 8}, variants, judge)


BUILDERS: Dict[str, Callable[[Setup], Workload]] = {
    "a": overhead,
    "b": refill,
    "c": scale,
    "d": flood,
    "e": executors,
    "f": journal,
}
