"""The checks of every line of an arguments file: each line's task, the column counts, the -E
widths. :class:`LineChecks` checks in one pass that can stop at a deadline and go on later;
:class:`BackgroundChecks` does the rest of a big file's check in a child process while its
first tasks run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from parallelr.errors import CommandError, ParallelrError, SourceError
from parallelr.plugins.sources.argument_lines import argument_lines, split_columns

if TYPE_CHECKING:
    from parallelr.plugins.sources.arguments_file import ArgumentsPlan

logger = logging.getLogger("parallelr.sources")
_DEADLINE_EVERY = 256  # lines between two looks at the clock (the check before the first task)


class LineChecks:
    """The checks of every line of one file (each line's task, the column counts, the -E widths)
    in one pass that can stop at a deadline and go on from there later."""

    def __init__(self, plan: ArgumentsPlan, after: int = 0) -> None:
        self.plan = plan
        self.after = after  # lines up to this number were checked already (by another process)
        self.count = 0  # argument lines checked
        self.checked_through = 0  # the line number checked up to (comments and blanks included)
        self.finished = False
        self.wider_lines = 0  # lines with more columns than -E names: one warning for the whole file
        self.first_wider: Tuple[int, int] = (0, 0)
        # columns -> (the first line numbers with that many, how many lines): a huge file keeps
        # a few numbers per column count, not all of them
        self.widths: Dict[int, Tuple[List[int], int]] = {}
        self.first_error: Optional[ParallelrError] = None
        self._lines = argument_lines(plan.path)

    def run(self, deadline: Optional[float] = None, stop_at_error: bool = False,
            lines: Optional[int] = None) -> None:
        """Check lines until the end of the file, until ``time.monotonic()`` passes ``deadline``,
        or for ``lines`` lines; with ``stop_at_error``, also at the first problem."""
        plan = self.plan
        separator = plan.separator
        stop_after = None if lines is None else self.count + lines
        after = self.after
        try:
            for number, line in self._lines:
                if number <= after:
                    continue
                self.count += 1
                self.checked_through = number
                if separator is not None:
                    self._note_width(len(split_columns(line, separator)), number)
                if self.first_error is None:
                    try:
                        columns = plan.check_line(number, line)[0]
                    except ParallelrError as error:
                        self.first_error = error
                    else:
                        if plan.env_names and len(columns) > len(plan.env_names):
                            self.wider_lines += 1
                            if self.wider_lines == 1:
                                self.first_wider = (number, len(columns))
                if stop_at_error and (self.first_error is not None or len(self.widths) > 1):
                    return
                if stop_after is not None and self.count >= stop_after:
                    return
                timed_out = deadline is not None and self.count % _DEADLINE_EVERY == 0
                if timed_out and time.monotonic() >= deadline:  # type: ignore[operator]
                    return
            self.finished = True
        except OSError as error:
            raise SourceError(f"cannot read arguments file {plan.path}: {error.strerror}") from None

    def _note_width(self, width: int, number: int) -> None:
        numbers, count = self.widths.get(width, ([], 0))
        if len(numbers) < _LISTED_LINES:
            numbers.append(number)
        self.widths[width] = (numbers, count + 1)

    def error(self) -> Optional[ParallelrError]:
        """What refuses the file, as far as it was checked: different column counts come first
        (they decide which error is reported), then the first bad line."""
        if len(self.widths) > 1:
            return SourceError(_inconsistent_counts(self.plan.path, self.widths))
        return self.first_error

    def warn_wider(self, complete: bool) -> None:
        if not self.wider_lines:
            return
        number, columns = self.first_wider
        logger.warning(
            "mismatch: -E names %s but %s%d lines of %s have more columns (first: line %d with %d); "
            "the extra columns are not set as variables",
            variables_phrase(self.plan.env_names),
            "" if complete else "at least ",
            self.wider_lines,
            self.plan.path,
            number,
            columns,
        )


class BackgroundChecks:
    """The rest of a big file's check while its first tasks run, in a child process.

    A process, not a thread: the check is pure Python, and a thread would share the GIL with the
    scheduler and the journal's writer (each of their system calls would wait for it: a run
    measurably slower for as long as the check lasts). The child checks from the line after the
    part checked before the run, reports ``W <line> <columns>`` for the first line wider than
    the -E names and ``E <kind>\t<message>`` for the first problem, then exits; a thread of this
    process waits on its output (blocked in a read, holding no GIL) and sets ``error``, so the
    run stops before its next task. The child ends early when this process is gone. In a forked
    process (``-D``) the first iteration starts the check again.
    """

    def __init__(self, checks: LineChecks) -> None:
        self._state = (checks.plan, checks.checked_through, checks.count, checks.widths, checks.wider_lines)
        self.error: Optional[ParallelrError] = None
        self._done = False  # a plain flag, not an Event: it is read again in a forked process
        self._pid = 0
        self._warned = checks.wider_lines > 0  # the warning before the run already said so
        self._thread: Optional[threading.Thread] = None
        self.start()

    def start(self) -> None:
        """Start the child (again, in a forked process whose parent started it)."""
        self._pid = os.getpid()
        self._done = False
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, json.dumps(sys.path)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
            )
            assert process.stdin is not None
            import pickle  # only a big arguments file is checked in a child: not every run's start-up

            process.stdin.write(pickle.dumps(self._state))
            process.stdin.close()
        except (OSError, ValueError) as error:  # no process to spare: every line is still checked as it runs
            logger.debug("cannot check %s ahead of the run: %s", self._state[0].path, error)
            self._done = True
            return
        self._thread = threading.Thread(target=self._wait, args=(process,), name="parallelr-arguments-check",
                                        daemon=True)
        self._thread.start()

    def _wait(self, process: subprocess.Popen) -> None:
        plan = self._state[0]
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                kind, _, rest = raw.decode("utf-8", "surrogateescape").rstrip("\n").partition(" ")
                if kind == "W" and not self._warned:
                    self._warned = True
                    number, columns = rest.split()
                    logger.warning(
                        "mismatch: -E names %s but line %s of %s has %s columns (and maybe more lines after "
                        "it); the extra columns are not set as variables",
                        variables_phrase(plan.env_names), number, plan.path, columns,
                    )
                elif kind == "E":
                    name, _, message = rest.partition("\t")
                    self.error = CommandError(message) if name == "CommandError" else SourceError(message)
            process.wait()
        finally:
            self._done = True

    def ensure_running(self) -> None:
        if self._pid != os.getpid() and not self.done:  # forked (-D): the thread did not come along
            self.start()

    @property
    def done(self) -> bool:
        return self._done

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


# The child of BackgroundChecks: argv[1] is the parent's sys.path, stdin the pickled state.
_CHILD = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from parallelr.plugins.sources.argument_checks import check_in_child
check_in_child()
"""


def check_in_child() -> None:
    """The body of the child process of :class:`BackgroundChecks` (see there)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl+C is for the run; this ends with its parent
    parent = os.getppid()
    import pickle

    plan, through, count, widths, wider = pickle.load(sys.stdin.buffer)
    checks = LineChecks(plan, after=through)
    checks.count, checks.widths, checks.wider_lines = count, widths, wider
    out = sys.stdout
    while not checks.finished:
        checks.run(stop_at_error=True, lines=50_000)
        if not wider and checks.wider_lines:
            wider = checks.wider_lines
            out.write("W {} {}\n".format(*checks.first_wider))
            out.flush()
        error = checks.error()
        if error is not None:
            message = f"{error}".replace("\n", " ")
            out.write(f"E {type(error).__name__}\t{message}\n")
            out.flush()
            return
        if os.getppid() != parent:  # the run is gone: nobody waits for the answer
            return


_LISTED_LINES = 10  # line numbers named per column count; a huge file must still give one line


def _inconsistent_counts(path: str, widths: Dict[int, Tuple[List[int], int]]) -> str:
    """``Inconsistent argument counts in F: 3 argument(s): lines 1, 3; 2 argument(s): lines 2``."""
    groups = []
    for width, (numbers, count) in sorted(widths.items(), key=lambda item: (item[1][0][0], item[0])):
        listed = ", ".join(str(number) for number in numbers)
        more = f" and {count - len(numbers)} more" if count > len(numbers) else ""
        groups.append(f"{width} argument(s): lines {listed}{more}")
    return (
        f"Inconsistent argument counts in {path}: {'; '.join(groups)} "
        "(every line must split into the same number of columns)"
    )


def variables_phrase(names: Tuple[str, ...]) -> str:
    """``2 variables (HOST,PORT)``: the -E names, as the mismatch messages name them."""
    return f"{len(names)} variable{'' if len(names) == 1 else 's'} ({','.join(names)})"
