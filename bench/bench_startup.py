"""What a run costs before and after its tasks: the wall time of a one-task run and of ``--help``,
and the modules a plain run imports.

    python3 bench/bench_startup.py [--runs N] [--python PY] [--json OUT]   (default 15, this Python)

Each run is ``PY -m parallelr -A FILE -C "true @ARG@" -r -m 8`` (one argument line) from an empty
folder (a folder holding parallelr/ would shadow the installed package) with HOME in a fresh
temporary folder, so every run creates its logs and journal as a first run does. ``PY -c pass`` is
measured the same way: the interpreter's own start-up, which no change here can remove. Medians
are printed.

Bytecode is cached as for any installed program (a run after the first reads .pyc files): the
runs write and read it under a temporary PYTHONPYCACHEPREFIX, whatever PYTHONDONTWRITEBYTECODE
says, and one run of each command before the measured ones fills that cache. With
PYTHONPATH=DIR another tree (a copy of the code before a change) is measured.

Timings are of this machine at this moment: run it on an idle one. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

# Printed at the end of a plain run by the probe below: what it imported.
_PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['parallelr', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('parallelr', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
)


TIMEOUT = 30.0  # seconds: a run that hangs is reported and run again, never waited for forever


def _environment(home: str, pycache: str) -> Dict[str, str]:
    env = {**os.environ, "HOME": home, "PYTHONPYCACHEPREFIX": pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _wall(argv: Sequence[str], cwd: str, runs: int, cpu: List[float], pycache: str) -> List[float]:
    """Wall seconds of ``runs`` runs of ``argv`` (after one to fill the bytecode cache), each with
    a new empty HOME; their CPU seconds (user + system: finer-grained than the wall time of a
    busy machine) go to ``cpu``."""
    times: List[float] = []
    hung = 0
    with tempfile.TemporaryDirectory() as home:
        subprocess.run(argv, cwd=cwd, env=_environment(home, pycache), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=TIMEOUT)
    while len(times) < runs:
        with tempfile.TemporaryDirectory() as home:
            env = _environment(home, pycache)
            used = _children_cpu()
            start = time.perf_counter()
            try:
                done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, check=False, timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                hung += 1
                print(f"warning: {' '.join(argv)} hung ({TIMEOUT:.0f} s); run again", file=sys.stderr)
                if hung > runs:
                    raise SystemExit("too many runs hung") from None
                continue
            times.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - used)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} exited {done.returncode}")
    return times


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _imported(python: str, run_args: Sequence[str], cwd: str, pycache: str) -> List[str]:
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run([python, "-c", _PROBE, *run_args], cwd=cwd, env=_environment(home, pycache),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
                              timeout=TIMEOUT)
    for line in done.stderr.splitlines():
        if line.startswith("MODULES "):
            return line.split()[1:]
    raise SystemExit(f"the probe printed no module list:\n{done.stderr}")


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (15)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure (this one)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to OUT as JSON")
    parser.add_argument("--modules", action="store_true", help="print every module a plain run imports")
    options = parser.parse_args(list(argv) or None)

    with tempfile.TemporaryDirectory() as scratch:
        args_file = Path(scratch) / "args"
        args_file.write_text("1\n", encoding="utf-8")
        cwd = Path(scratch) / "empty"
        cwd.mkdir()
        pycache = str(Path(scratch) / "pycache")
        run_args = ["-A", str(args_file), "-C", "true @ARG@", "-r", "-m", "8"]
        python = options.python
        cpu: Dict[str, List[float]] = {name: [] for name in ("python -c pass", "one-task run", "--help")}
        measured: Dict[str, List[float]] = {
            "python -c pass": _wall([python, "-c", "pass"], str(cwd), options.runs, cpu["python -c pass"],
                                    pycache),
            "one-task run": _wall([python, "-m", "parallelr", *run_args], str(cwd), options.runs,
                                  cpu["one-task run"], pycache),
            "--help": _wall([python, "-m", "parallelr", "--help"], str(cwd), options.runs, cpu["--help"],
                            pycache),
        }
        modules = _imported(python, run_args, str(cwd), pycache)

    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(f"Python {version}, {options.runs} runs each (seconds of wall time)")
    print(f"{'':16s} {'median':>8s} {'min':>8s} {'max':>8s} {'cpu med':>8s}")
    for name, times in measured.items():
        print(f"{name:16s} {statistics.median(times):8.3f} {min(times):8.3f} {max(times):8.3f}"
              f" {statistics.median(cpu[name]):8.3f}")
    ours = [name for name in modules if name == "parallelr" or name.startswith("parallelr.")]
    print(f"modules imported by a plain run: {len(modules)} ({len(ours)} of parallelr)")
    if options.modules:
        print("\n".join(f"  {name}" for name in modules))
    if options.json:
        result = {
            "python": version,
            "runs": options.runs,
            "median": {name: statistics.median(times) for name, times in measured.items()},
            "times": measured,
            "cpu_median": {name: statistics.median(times) for name, times in cpu.items()},
            "modules": modules,
        }
        Path(options.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
