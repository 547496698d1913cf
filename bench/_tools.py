"""Which tools the benchmark can compare against, and the facts of the machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import attrs

PROBE_TIMEOUT = 60
APT_TIMEOUT = 600


@attrs.define(frozen=True)
class Tools:
    """What is installed: paths (None when missing) and what the parallelr under test supports."""

    python: str
    xargs: Optional[str]
    parallel: Optional[str]
    executors: Sequence[str]
    has_no_journal: bool
    versions: Dict[str, str]


def _first_line(argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=env, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _succeeds(argv: Sequence[str], env: Dict[str, str], cwd: str) -> bool:
    done = subprocess.run(
        list(argv), capture_output=True, timeout=PROBE_TIMEOUT, env=env, cwd=cwd, check=False
    )
    return done.returncode == 0


def _is_gnu_parallel(path: str) -> bool:
    # moreutils also ships a "parallel" with a different interface; only GNU parallel fits here.
    return _first_line([path, "--version"]).startswith("GNU parallel")


def _apt_install_parallel(notes: List[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> bool:
        try:
            done = subprocess.run(
                ["apt-get", *args], capture_output=True, timeout=APT_TIMEOUT, env=env, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0

    print("bench: GNU parallel is missing; trying apt-get install -y parallel", file=sys.stderr)
    if apt("install", "-y", "parallel"):
        notes.append("GNU parallel was installed with apt-get for this run")
        return
    if apt("update") and apt("install", "-y", "parallel"):
        notes.append("GNU parallel was installed with apt-get (after apt-get update) for this run")


def find_gnu_parallel(notes: List[str]) -> Optional[str]:
    """GNU parallel's path, installing it with apt-get when that is possible; else None and a note."""
    path = shutil.which("parallel")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install_parallel(notes)
        path = shutil.which("parallel")
    if path is None:
        why = "apt-get install failed" if os.geteuid() == 0 else "not root, cannot apt-get install it"
        notes.append(f"GNU parallel not installed ({why}): its columns are skipped")
        return None
    if not _is_gnu_parallel(path):
        notes.append(f"{path} is not GNU parallel (moreutils?): its columns are skipped")
        return None
    return path


def find_tools(python: str, env: Dict[str, str], cwd: str, notes: List[str]) -> Tools:
    parallelr = [python, "-m", "parallelr"]
    xargs = shutil.which("xargs")
    if xargs is None:
        notes.append("xargs not found: the parallelr/xargs ratios are n/a")
    parallel = find_gnu_parallel(notes)
    help_text = subprocess.run(
        [*parallelr, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=PROBE_TIMEOUT,
    ).stdout
    # --executor is validated by argparse, so an unknown name fails fast even with --version.
    executors = [
        name
        for name in ("thread", "process")
        if _succeeds([*parallelr, "--executor", name, "--version"], env, cwd)
    ]
    versions = {
        "parallelr": _first_line([*parallelr, "--version"], env),
        "python": sys.version.split()[0],
        "xargs": _first_line([xargs, "--version"]) if xargs else "missing",
        "parallel": _first_line([parallel, "--version"]) if parallel else "missing",
    }
    return Tools(
        python=python,
        xargs=xargs,
        parallel=parallel,
        executors=tuple(executors),
        has_no_journal="--no-journal" in help_text,
        versions=versions,
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_mb() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return None


def _git_head(repo: str) -> Optional[str]:
    try:
        done = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine_facts(repo: str) -> Dict[str, object]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "host": socket.gethostname(),
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "loadavg_at_start": list(os.getloadavg()),
        "git_head": _git_head(repo),
    }
