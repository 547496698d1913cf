"""The console log: the old tool's ``%(asctime)s - %(levelname)s - %(message)s`` lines on stdout.

Scripts written for the old parallelr grep stdout for ``WARNING``, ``Starting parallel execution``
and ``Executing N tasks with M workers``, so the core's and plugins' messages (the ``parallelr``
logger) go to stdout in ``logging.console_format``. Fatal errors are not log records: the CLI
prints them as one ``<prog>: error: ...`` line on stderr.

The status line: a plugin may keep one line at the bottom of the terminal (the live progress
line) below the console lines. It installs a :class:`StatusLine` with :func:`set_status_line`;
every write to the console then goes through :func:`console_write` (the console lines of
:class:`ConsoleHandler` do the same in one write), which takes the console lock, erases the
status line, lets the text be written and draws the status line again below it. With no status
line installed a console line costs one module-attribute check more than before.

Records of the ``parallelr.files_only`` logger (:data:`FILES_ONLY_LOGGER`) reach the log files
(the main log's handler on the ``parallelr`` logger) but not the console: for what the console
shows in another form, such as the progress line of a run without a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Iterator, Optional, Protocol

DEFAULT_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
FILES_ONLY_LOGGER = "parallelr.files_only"


class StatusLine(Protocol):
    """A line kept below the console lines. It gives the console the text that erases it and the
    text that draws it again, so that a console line goes out in one write with both; it draws
    itself (its updates) under :data:`CONSOLE_LOCK`. Called with that lock held; must not raise."""

    def erase_text(self) -> str:
        """What erases the line, leaving the cursor at its start ('' when it is not shown)."""

    def draw_text(self) -> str:
        """What draws the line again at the cursor (the line then counts as shown)."""


# Held by whoever writes to the console while a status line may be installed: the console lines
# (ConsoleHandler, the summary) and the status line's own drawing, from any thread. Reentrant,
# because a signal handler on the same thread may write while a line is half written. Never log
# while holding it: a handler's own lock is taken before this one.
CONSOLE_LOCK = threading.RLock()
_status_line: Optional[StatusLine] = None
_writing = 0  # nesting depth of console_write(): only the outermost erases and redraws


def set_status_line(line: Optional[StatusLine]) -> None:
    """Install ``line`` as the status line (None: uninstall the current one). Neither draws nor
    erases anything: its owner draws it first and decides what stays on screen at the end."""
    global _status_line
    with CONSOLE_LOCK:
        _status_line = line


def status_line() -> Optional[StatusLine]:
    """The installed status line, or None."""
    return _status_line


def _write_now(stream: Any, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError, AttributeError):  # the console went away: nothing to erase on
        silence_stdout(stream)


def drop_status_line(stream: Any = None) -> None:
    """Erase and uninstall the status line, if any: for an error path about to write to the
    terminal itself (a fatal error on stderr) when the line's owner could not end it. ``stream``:
    the console's (sys.stdout)."""
    global _status_line
    with CONSOLE_LOCK:
        line, _status_line = _status_line, None
        if line is not None:
            text = line.erase_text()
            if text:
                _write_now(stream if stream is not None else sys.stdout, text)


@contextlib.contextmanager
def console_write(stream: Any = None) -> Iterator[None]:
    """Write to the console (``stream``, default sys.stdout) inside this block: under the console
    lock, with the status line (if one is installed) erased before and drawn again below what was
    written, and the stream flushed. The erase is flushed before the block runs, so the block may
    write to stderr too (a message on the same terminal). Not for the per-task lines:
    :class:`ConsoleHandler` writes those in one write with the erase and the redraw."""
    global _writing
    with CONSOLE_LOCK:
        line = _status_line if not _writing else None
        out = stream if stream is not None else sys.stdout
        _writing += 1
        try:
            if line is not None:
                _write_now(out, line.erase_text())
            yield
        finally:
            _writing -= 1
            if line is not None and _status_line is line:
                _write_now(out, line.draw_text())


def _not_files_only(record: logging.LogRecord) -> bool:
    name = record.name
    return not (name == FILES_ONLY_LOGGER or name.startswith(FILES_ONLY_LOGGER + "."))


def silence_stdout(stream: Any) -> None:
    """Point the console's descriptor at /dev/null: what is still buffered for it, and every
    later line, then goes nowhere instead of failing again (and again at interpreter exit)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor (a capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class LineWriting:
    """``emit`` and ``write_formatted`` for a logging handler that writes each line whole with its
    ``_write_line(line)``: the records of the ``parallelr`` logger and the lines a
    :class:`parallelr.report.LineLogger` formatted already take the same way out, and fail the
    same way."""

    def _write_line(self, line: str) -> None:
        raise NotImplementedError

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write_line(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_formatted(self, text: str) -> None:
        """A line formatted already; called under the handler's lock, as emit."""
        try:
            self._write_line(text + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": text}))


class ConsoleHandler(LineWriting, logging.StreamHandler):
    """A handler on stdout that a console which went away (``| head``, a closed terminal) or is
    full (stdout redirected to a full disk) cannot stop: the rest of the lines go to /dev/null,
    the run and its files go on."""

    def __init__(self, fmt: str = DEFAULT_FORMAT) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter(fmt))

    def _write_line(self, text: str) -> None:
        line = _status_line
        if line is None:
            self.stream.write(text)
            self.flush()
            return
        # One write for the erase, the line and the redraw: as many system calls as without a
        # status line, whether the stream is line-buffered (a terminal) or unbuffered (-u).
        with CONSOLE_LOCK:
            if _writing or _status_line is not line:  # inside a console_write(), or it just went
                self.stream.write(text)
            else:
                self.stream.write(line.erase_text() + text + line.draw_text())
            self.flush()

    def handleError(self, record: logging.LogRecord) -> None:
        # setStream flushes the failed stream once more: silence its descriptor first, so that
        # flush succeeds instead of raising out of the logging call.
        silence_stdout(self.stream)
        self.setStream(open(os.devnull, "w"))


_handler: Optional[ConsoleHandler] = None  # the one console of this process (stdout is one too)


def setup_console_logging(fmt: str = DEFAULT_FORMAT) -> ConsoleHandler:
    """Send the ``parallelr`` logger's records to stdout in ``fmt`` (but for those of
    :data:`FILES_ONLY_LOGGER`); calling it again replaces the handler, so the format of the loaded
    settings takes over from the default one."""
    global _handler
    root = logging.getLogger("parallelr")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = ConsoleHandler(fmt)
    _handler.addFilter(_not_files_only)
    root.addHandler(_handler)
    if root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.propagate = False
    return _handler


def files_only_logger() -> logging.Logger:
    """The logger whose records go to the log files (the main log) and not to the console."""
    return logging.getLogger(FILES_ONLY_LOGGER)
