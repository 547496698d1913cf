"""Ctrl+C with many tasks pending: how long from SIGINT to the runner's exit.

    python3 bench/bench_cancel_pending.py [LINES ...]   (default 100000 200000)

Each run is ``parallelr -A FILE -C "sleep 30 @ARG@" -r -m 1`` in a temporary HOME; SIGINT is
sent once the first task has started, so every other line is a task that never started (it still
gets its CSV row and journal record). Prints the time to the first start and to the exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(lines: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "home").mkdir()
        args = root / "args.txt"
        args.write_text("".join(f"h{number}\n" for number in range(lines)))
        env = dict(os.environ, HOME=str(root / "home"))
        began = time.monotonic()
        runner = subprocess.Popen(
            [sys.executable, "-m", "parallelr", "-A", str(args), "-C", "sleep 30 @ARG@", "-r", "-m", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert runner.stdout is not None
        first = None
        for line in runner.stdout:
            if "Starting task" in line:
                first = time.monotonic()
                break
        runner.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        runner.communicate()
        ended = time.monotonic()
        start = f"{first - began:.2f}s" if first is not None else "never"
        print(f"{lines:>9} lines: first start {start}, SIGINT to exit {ended - signalled:.2f}s "
              f"({(ended - signalled) / lines * 1e6:.1f} us per task not started), exit {runner.returncode}")


if __name__ == "__main__":
    for count in [int(arg) for arg in sys.argv[1:]] or [100_000, 200_000]:
        measure(count)
