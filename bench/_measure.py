"""Run parallelr in this very process, then write this process's own resource usage to a file.

Usage: ``PARALLELR_BENCH_USAGE=/tmp/usage.json python3 bench/_measure.py -A args.txt -C "true @ARG@" -r``

The figures are RUSAGE_SELF: the runner's peak RSS and CPU time, *not* its children's (the tasks
are children, and RUSAGE_SELF excludes them). Pool processes of ``--executor process`` are children
too, so for that executor this measures the coordinating process only.
"""

from __future__ import annotations

import json
import os
import resource
import sys

USAGE_ENV = "PARALLELR_BENCH_USAGE"


def _own_usage() -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    maxrss_kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return {"maxrss_kib": maxrss_kib, "user_s": usage.ru_utime, "system_s": usage.ru_stime}


def main() -> int:
    from parallelr.cli import main as parallelr_main

    status = parallelr_main(sys.argv[1:], prog="parallelr")
    path = os.environ.get(USAGE_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(_own_usage(), handle)
    return status


if __name__ == "__main__":
    sys.exit(main())
