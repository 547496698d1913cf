"""The HTML report of big runs: spool and render time, file size, memory, and how the page behaves.

Usage::

    python3 bench/bench_html_report.py                    # 1k, 10k and 100k attempts
    python3 bench/bench_html_report.py --sizes 1000,300000
    python3 bench/bench_html_report.py --browser          # also open each page in headless Chromium

For each size N it feeds N synthetic attempts to :class:`parallelr.html_report.Spool`, the way
the ``--html-report`` reporter does during a run (every tenth task is retried once, every
twentieth fails for good with 1,000 characters of stdout and of stderr, 8 worker slots), then
renders the page with :func:`parallelr.html_report.render`. Each size runs in a fresh child
process, so its peak RSS is its own. It prints:

* **spool**: seconds to add the items (the per-task hooks' share, spread over the run);
* **render**: seconds from the end of the run to the renamed file;
* **size**: the page in MB, and what the timeline drew (bars, or grid cells past MAX_BARS);
* **RSS**: the child's peak resident memory (the interpreter and Jinja2 included);
* with ``--browser``: seconds until Chromium has loaded the page and drawn the table's first
  page, and seconds for one sort by a column (a click on its heading) over every row.

Like everything in bench/, this is a measurement, not a test: nothing asserts a duration.

Measured on the shared 2-core VM (Python 3.11, load average about 2; the figures double when the
machine is busy). 100,000 attempts are 90,910 tasks, past MAX_BARS: the timeline is a grid of 8
slots x 200 columns:

==========  =======  =======  ========================  ======  =========  ======
attempts    spool    render   size (timeline)           RSS     page load  sort
==========  =======  =======  ========================  ======  =========  ======
1,000       0.01 s   0.04 s   0.4 MB (1,000 bars)       27 MB   0.45 s     0.14 s
10,000      0.17 s   0.21 s   3.8 MB (10,000 bars)      30 MB   1.27 s     0.15 s
100,000     1.45 s   0.78 s   12.1 MB (1,600 cells)     30 MB   0.99 s     0.13 s
==========  =======  =======  ========================  ======  =========  ======

The spool's share is what the reporter adds to the run's hooks: about 15 microseconds per attempt.
The RSS stays flat: the run is spooled to disk and the page streamed from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

SLOTS = 8
OUTPUT = ("x" * 79 + "\n") * 12 + "y" * 40  # 1,000 characters, as max_output_capture keeps by default


def measure(size: int, browser: bool) -> Dict[str, Any]:
    from parallelr import html_report

    directory = tempfile.mkdtemp(prefix="bench-html-")
    path = os.path.join(directory, "report.html")
    facts = html_report.RunFacts(title=f"bench run of {size} attempts", command="bash @TASK@",
                                 started_at=1_800_000_000.0, ended_at=None, origin="bench")
    began = time.perf_counter()
    spool = html_report.Spool(path)
    clock = 1_800_000_000.0
    attempts = position = 0
    arguments = ("alpha", "beta")
    while attempts < size:
        position += 1
        slot = position % SLOTS + 1
        retried = position % 10 == 0 and attempts + 2 <= size
        failed = position % 20 == 0
        if retried:
            spool.add(html_report.Attempt(position, f"/data/tasks/task-{position}.sh", 1, "FAILED", slot, 1,
                                          clock, clock + 0.5))
            attempts += 1
        status = "FAILED" if failed else "SUCCESS"
        started = clock + 0.6
        spool.add(html_report.Attempt(position, f"/data/tasks/task-{position}.sh", 1 + retried, status, slot,
                                      1 if failed else 0, started, started + 1.0))
        attempts += 1
        spool.add(html_report.TaskRow(position, f"/data/tasks/task-{position}.sh", arguments,
                                      status, 1 + retried, slot, 1 if failed else 0, started, 1.0, 12.5, 93.0,
                                      "Exit code 1" if failed else ""))
        if failed and spool.wants_output():
            spool.add(html_report.Output(position, f"/data/tasks/task-{position}.sh", arguments, status,
                                         1 + retried, 1, "Exit code 1", OUTPUT, OUTPUT))
        clock += 1.6 / SLOTS
    spooled = time.perf_counter()
    html_report.render(path, facts, ["Parallel Task Execution Summary", f"Total Tasks: {position}"], spool)
    rendered = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the page is read back
    with open(path, encoding="utf-8") as page:
        lines = [line.startswith('<rect class="bar ') - line.startswith('<g class="cell">') for line in page]
    figures: Dict[str, Any] = {
        "attempts": size, "tasks": position, "spool_s": round(spooled - began, 3),
        "render_s": round(rendered - spooled, 3), "size_mb": round(os.path.getsize(path) / 1e6, 2),
        "bars": lines.count(1), "cells": lines.count(-1), "rss_mb": round(rss, 1),
    }
    if browser:
        figures.update(_in_browser(path))
    os.unlink(path)
    os.rmdir(directory)
    return figures


def _in_browser(path: str) -> Dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            page = chromium.new_page()
            began = time.perf_counter()
            page.goto("file://" + path)
            page.wait_for_selector("#task-table tbody tr")
            loaded = time.perf_counter()
            page.click("#task-table th:nth-child(9) button")  # the duration column
            page.wait_for_selector("#task-table th:nth-child(9)[aria-sort=ascending]")
            sorted_at = time.perf_counter()
            return {"load_s": round(loaded - began, 2), "sort_s": round(sorted_at - loaded, 2)}
        finally:
            chromium.close()


def _chromium() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium here: apt-get install chromium")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="attempts per report, comma-separated")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's size
    options = parser.parse_args(argv)
    if options.one:
        print(json.dumps(measure(options.one, options.browser)))
        return 0
    print(f"{'attempts':>9} {'tasks':>7} {'spool':>8} {'render':>8} {'size':>9} {'bars':>6} {'cells':>6}"
          f" {'RSS':>8}" + (f" {'load':>7} {'sort':>7}" if options.browser else ""))
    for size in (int(part) for part in options.sizes.split(",")):
        child = [sys.executable, __file__, "--one", str(size)] + (["--browser"] if options.browser else [])
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{size:>9} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(done.stdout)
        line = (f"{row['attempts']:>9} {row['tasks']:>7} {row['spool_s']:>7.2f}s {row['render_s']:>7.2f}s"
                f" {row['size_mb']:>7.1f}MB {row['bars']:>6} {row['cells']:>6} {row['rss_mb']:>6.0f}MB")
        if options.browser:
            line += f" {row['load_s']:>6.2f}s {row['sort_s']:>6.2f}s"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
