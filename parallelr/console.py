"""The console log: the old tool's ``%(asctime)s - %(levelname)s - %(message)s`` lines on stdout.

Scripts written for the old parallelr grep stdout for ``WARNING``, ``Starting parallel execution``
and ``Executing N tasks with M workers``, so the core's and plugins' messages (the ``parallelr``
logger) go to stdout in ``logging.console_format``. Fatal errors are not log records: the CLI
prints them as one ``<prog>: error: ...`` line on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Optional

DEFAULT_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


def silence_stdout(stream: Any) -> None:
    """Point the console's descriptor at /dev/null: what is still buffered for it, and every
    later line, then goes nowhere instead of failing again (and again at interpreter exit)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor (a capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class ConsoleHandler(logging.StreamHandler):
    """A handler on stdout that a console which went away (``| head``, a closed terminal) or is
    full (stdout redirected to a full disk) cannot stop: the rest of the lines go to /dev/null,
    the run and its files go on."""

    def __init__(self, fmt: str = DEFAULT_FORMAT) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter(fmt))

    def handleError(self, record: logging.LogRecord) -> None:
        # setStream flushes the failed stream once more: silence its descriptor first, so that
        # flush succeeds instead of raising out of the logging call.
        silence_stdout(self.stream)
        self.setStream(open(os.devnull, "w"))


_handler: Optional[ConsoleHandler] = None  # the one console of this process (stdout is one too)


def setup_console_logging(fmt: str = DEFAULT_FORMAT) -> ConsoleHandler:
    """Send the ``parallelr`` logger's records to stdout in ``fmt``; calling it again replaces the
    handler, so the format of the loaded settings takes over from the default one."""
    global _handler
    root = logging.getLogger("parallelr")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = ConsoleHandler(fmt)
    root.addHandler(_handler)
    if root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.propagate = False
    return _handler
