"""Benchmark parallelr against xargs -P and GNU parallel; print medians and targets, save JSON.

    python3 bench/run.py                 # all workloads, 5 repetitions (several minutes)
    python3 bench/run.py --quick         # smaller sizes, 1 repetition (under a minute)
    python3 bench/run.py --only a,b --reps 3 --out /tmp/results
    python3 bench/run.py --only queue    # the job queue (queuectl) alone: workload q
    python3 bench/run.py --only dashboard   # the web dashboard alone: workload w
    python3 bench/run.py --only dask     # the dask executor against the process one: workload k
    python3 bench/run.py --profile       # py-spy profile of workload a instead of the benchmark

See bench/README.md for what each figure means. Exit status: 0 when every command ran (whether or
not the targets were met), 1 when a command failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import attrs
from _dashboard import dashboard
from _dask import dask
from _execute import Stats, run_once
from _jobqueue import queue
from _profile import profile_overhead
from _tools import Tools, find_tools, machine_facts
from _workloads import BUILDERS as BATCH_BUILDERS
from _workloads import FULL, QUICK, Figure, Setup, Workload

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
DEFAULT_REPS = 5
SCHEMA_VERSION = 1
BUILDERS = {**BATCH_BUILDERS, "q": queue, "w": dashboard, "k": dask}
ALIASES = {"queue": "q", "dashboard": "w", "dask": "k"}  # --only queue, --only dashboard, --only dask
ALIAS_HELP = "q: also queue, w: also dashboard, k: also dask"


@attrs.define(frozen=True)
class Outcome:
    workload: Workload
    stats: Dict[str, Stats]
    figures: List[Figure]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 repetition: a smoke run")
    parser.add_argument(
        "--reps", type=int, help=f"repetitions per command (default {DEFAULT_REPS}, --quick 1)"
    )
    parser.add_argument(
        "--only", help=f"comma-separated workloads out of {','.join(BUILDERS)} ({ALIAS_HELP}; default all)"
    )
    parser.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="folder for the JSON")
    parser.add_argument("--profile", action="store_true", help="profile workload a with py-spy and exit")
    parser.add_argument(
        "--executors",
        default="",
        help="comma-separated executors that workloads a-d also run (--executor NAME), side by side "
        "with the default one, e.g. --executors process",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="a git revision whose parallelr workloads a and b also run, side by side (before/after "
        "in one run), e.g. --baseline HEAD~3; it is checked out in a temporary work tree",
    )
    options = parser.parse_args(argv)
    options.executors = tuple(name.strip() for name in options.executors.split(",") if name.strip())
    options.reps = options.reps if options.reps is not None else (1 if options.quick else DEFAULT_REPS)
    if options.reps < 1:
        parser.error("--reps must be at least 1")
    options.only = (
        [ALIASES.get(key.strip(), key.strip()) for key in options.only.split(",") if key.strip()]
        if options.only
        else list(BUILDERS)
    )
    unknown = [key for key in options.only if key not in BUILDERS]
    if unknown:
        choices = ",".join(BUILDERS)
        parser.error(f"unknown workload(s) {','.join(unknown)}; choose from {choices} ({ALIAS_HELP})")
    return options


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def measure(workload: Workload, reps: int, env: Dict[str, str], cwd: str, usage_path: str) -> Outcome:
    """Run every variant `reps` times, alternating them (ABCABC...) so drift hits all of them alike."""
    samples: Dict[str, list] = {variant.key: [] for variant in workload.variants}
    for rep in range(1, reps + 1):
        for variant in workload.variants:
            sample = run_once(variant, env, cwd, usage_path)
            samples[variant.key].append(sample)
            status = "ok" if sample.exit_code == 0 else f"FAILED exit {sample.exit_code}"
            progress(f"{workload.key} rep {rep}/{reps} {variant.label}: {sample.wall_s:.3f} s {status}")
    stats = {key: Stats(tuple(runs)) for key, runs in samples.items()}
    figures = workload.judge(stats) if workload.variants else []
    return Outcome(workload, stats, figures)


def _format(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "%":
        return f"{value:+.1f} %"
    if unit == "":
        return f"{value:.2f}"
    if unit == "jobs/s":
        return f"{value:,.0f} {unit}"
    return f"{value:.{1 if unit == 'MB' else 3}f} {unit}"


def _verdict(figure: Figure) -> str:
    if not figure.target:
        return ""
    return "n/a" if figure.passed is None else ("PASS" if figure.passed else "FAIL")


def table(outcomes: Sequence[Outcome]) -> str:
    header = ("workload", "measurement", "median", "min..max", "target", "result")
    rows: List[Tuple[str, ...]] = []
    for outcome in outcomes:
        name = f"{outcome.workload.key} {outcome.workload.title}"
        for variant in outcome.workload.variants:
            stats = outcome.stats[variant.key]
            walls = [sample.wall_s for sample in stats.samples]
            median = "FAILED" if stats.failed else _format(stats.wall_s, "s")
            spread = f"{min(walls):.3f}..{max(walls):.3f}" if len(walls) > 1 else ""
            rows.append((name, variant.label, median, spread, "", ""))
            name = ""
        for figure in outcome.figures:
            rows.append(
                (name, figure.label, _format(figure.value, figure.unit), "", figure.target, _verdict(figure))
            )
            name = ""
        if not outcome.workload.variants:
            rows.append((name, "skipped (see notes)", "", "", "", ""))
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def notes_of(outcomes: Sequence[Outcome], general: Sequence[str]) -> List[str]:
    notes = list(general)
    for outcome in outcomes:
        notes += [f"{outcome.workload.key}: {note}" for note in outcome.workload.notes]
        for variant in outcome.workload.variants:
            failed = outcome.stats[variant.key].failed
            if failed is not None:
                notes.append(
                    f"{outcome.workload.key}: {variant.label} failed (exit {failed.exit_code}): "
                    f"{failed.error or 'no message'}"
                )
    return notes


def report_json(
    outcomes: Sequence[Outcome],
    options: argparse.Namespace,
    tools: Tools,
    machine: Dict[str, object],
    notes: Sequence[str],
    started: datetime.datetime,
) -> Dict[str, object]:
    figures = [figure for outcome in outcomes for figure in outcome.figures if figure.target]
    return {
        "schema": SCHEMA_VERSION,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {
            "quick": options.quick,
            "reps": options.reps,
            "only": options.only,
            "executors": list(options.executors),
            "baseline": options.baseline,
        },
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "tools": tools.versions,
        "notes": list(notes),
        "targets": {
            "passed": sum(1 for figure in figures if figure.passed),
            "failed": sum(1 for figure in figures if figure.passed is False),
            "not_measured": sum(1 for figure in figures if figure.passed is None),
        },
        "workloads": {
            outcome.workload.key: {
                "title": outcome.workload.title,
                "params": outcome.workload.params,
                "notes": list(outcome.workload.notes),
                "variants": {
                    variant.key: {
                        "label": variant.label,
                        "argv": list(variant.argv),
                        **outcome.stats[variant.key].as_json(),
                    }
                    for variant in outcome.workload.variants
                },
                "figures": [attrs.asdict(figure) for figure in outcome.figures],
            }
            for outcome in outcomes
        },
    }


def write_json(document: Dict[str, object], folder: str, started: datetime.datetime, quick: bool) -> str:
    os.makedirs(folder, exist_ok=True)
    host = socket.gethostname().split(".")[0] or "host"
    name = f"{started.strftime('%Y-%m-%dT%H%M%S')}-{host}{'-quick' if quick else ''}.json"
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    for target in (os.path.join(folder, name), os.path.join(folder, "latest.json")):
        partial = target + ".tmp"  # written whole, then renamed: a reader never sees half a file
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, target)
    return os.path.join(folder, name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parse_args(argv)
    started = datetime.datetime.now().astimezone()
    scratch = tempfile.mkdtemp(prefix="parallelr-bench-")
    try:
        return _run(options, started, scratch)
    finally:
        _remove_baseline(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _baseline_tree(revision: str, scratch: str) -> Tuple[str, str]:
    """(revision, a work tree of it): a detached git work tree in the scratch folder, with the
    ``parallelr/plugins`` link that an install would make (setup.py maps ``plugins/`` there)."""
    tree = os.path.join(scratch, "baseline")
    git = ["git", "-C", REPO_DIR, "worktree"]
    subprocess.run([*git, "add", "--detach", "--quiet", tree, revision], check=True)
    link = os.path.join(tree, "parallelr", "plugins")
    if not os.path.exists(link):
        os.symlink(os.path.join("..", "plugins"), link)
    subprocess.run([sys.executable, "-m", "compileall", "-q", tree], capture_output=True, check=False)
    return revision, tree


def _remove_baseline(scratch: str) -> None:
    tree = os.path.join(scratch, "baseline")
    if os.path.isdir(tree):
        git = ["git", "-C", REPO_DIR, "worktree", "remove", "--force", tree]
        subprocess.run(git, capture_output=True, check=False)


def _run(options: argparse.Namespace, started: datetime.datetime, scratch: str) -> int:
    # A temporary HOME keeps parallelr's logs out of the real one. Commands run in their own empty
    # folder: "python -m parallelr" puts the cwd first on sys.path, and HOME holds a "parallelr"
    # folder that would shadow the package if the cwd were HOME.
    home, cwd, files = (os.path.join(scratch, name) for name in ("home", "cwd", "files"))
    for folder in (home, cwd, files):
        os.makedirs(folder)
    env = {**os.environ, "HOME": home}
    general_notes: List[str] = []
    tools = find_tools(sys.executable, env, cwd, general_notes)
    machine = machine_facts(REPO_DIR)
    setup = Setup(
        tools=tools,
        sizes=QUICK if options.quick else FULL,
        files_dir=files,
        measure_script=os.path.join(BENCH_DIR, "_measure.py"),
        reps=options.reps,
        executors=options.executors,
        baseline=_baseline_tree(options.baseline, scratch) if options.baseline else None,
    )
    if options.profile:
        os.makedirs(options.out, exist_ok=True)
        out_path = os.path.join(options.out, f"profile-a-{started.strftime('%Y-%m-%dT%H%M%S')}.txt")
        print(profile_overhead(setup, env, cwd, out_path))
        return 0
    # Byte-compile parallelr as pip does on install: with PYTHONDONTWRITEBYTECODE set (as on this
    # machine) every timed run would otherwise compile its sources again.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.join(REPO_DIR, "parallelr"),
         os.path.join(REPO_DIR, "plugins")],
        capture_output=True, check=False,
    )
    # One untimed run first, so the first timed command does not pay for cold caches alone.
    subprocess.run(
        [sys.executable, "-m", "parallelr", "--version"], cwd=cwd, env=env, capture_output=True, check=False
    )
    outcomes = []
    for key in options.only:
        workload = BUILDERS[key](setup)
        progress(
            f"workload {key} ({workload.title}): {len(workload.variants)} commands x {options.reps} reps"
        )
        outcomes.append(measure(workload, options.reps, env, cwd, os.path.join(scratch, "usage.json")))
    notes = notes_of(outcomes, general_notes)
    print(
        f"parallelr benchmark ({'quick, ' if options.quick else ''}median of {options.reps} "
        f"repetition{'s' if options.reps > 1 else ''}; {machine['nproc']} CPUs, {machine['host']})"
    )
    print(table(outcomes))
    for note in notes:
        print(f"note: {note}")
    document = report_json(outcomes, options, tools, machine, notes, started)
    path = write_json(document, options.out, started, options.quick)
    print(f"JSON: {path} (and {os.path.join(options.out, 'latest.json')})")
    failed = any(stats.failed for outcome in outcomes for stats in outcome.stats.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
