"""Progress reporter: ``--progress`` / ``--no-progress``, the live progress line of a run.

On a terminal one line stays at the bottom, below the per-task lines::

     120/5000   2%|▌                 | 8 running, 3 failed | 0:01:00<0:40:40, 2.0 tasks/s

(done/total, percent, bar, running, failed (and cancelled, once there are any), elapsed<ETA,
rate). It is kept there through the core's status-line API (:mod:`parallelr.console`): every
console line erases it and draws it again below itself, in the same write. Its text is rendered
(counts, times, terminal width) at most every :data:`RENDER_INTERVAL` seconds: from the hooks when
that is due, and by a timer thread, so that the times move while nothing ends. At the end of the
run it shows the final state (N/N, 100%) and stays; the summary block follows below it.

It is on by default when stdout is a terminal, never for a daemon (its stdout is /dev/null) and
there is none for a dry run. ``--progress`` draws it even when stdout is not a terminal (the user
asked for it); ``--no-progress`` turns it off.

Without the line stdout is left as it is; instead the main log (only: not the console) gets a
plain line every ``logging.progress_interval`` seconds (0: none), from a timer thread::

    Progress: 120/5000 (2.4%), 8 running, 3 failed, elapsed 0:01:00, 2.0 tasks/s, ETA 0:40:40

The hooks only count (a few attribute updates and, with the line on, one clock read); drawing is
rate-limited, so a run of thousands of short tasks does not pay for the line per task.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Optional

import attrs

from parallelr import console
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.report import never_started, register_reporter

OPTION = "progress"
REPORTER_NAME = "progress-reporter"
RENDER_INTERVAL = 0.25  # seconds: the line's text is rendered at most ~4 times a second
TICK = 0.5  # seconds between the timer's renders: elapsed and ETA move while no task ends
FAILURES = (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.ERROR)

# tqdm's format_meter renders the bar and trims the line to the terminal's width; the fields in
# braces other than tqdm's own (percentage, bar, total_fmt) are Progress's.
BAR_FORMAT = ("{done_text}/{total_fmt} {percentage:3.0f}%|{bar}| {running} running, {failed} failed"
              "{cancelled_text} | {elapsed_text}<{eta_text}, {rate_text}")
BAR_FORMAT_NO_TOTAL = ("{done_text} done | {running} running, {failed} failed{cancelled_text}"
                       " | {elapsed_text}, {rate_text}")


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    choice = parser.getgroup("reports").add_mutually_exclusive_group()
    choice.add_argument(
        "--progress", dest=OPTION, action="store_const", const=True, default=None,
        help="show a live progress line at the bottom of the terminal (default: only when stdout "
             "is a terminal; with --progress also on a pipe)",
    )
    choice.add_argument(
        "--no-progress", dest=OPTION, action="store_const", const=False,
        help="no progress line (the main log gets a progress line every logging.progress_interval s)",
    )


@hookimpl
def parallelr_configure(config: Any) -> None:
    if config.request.execute:  # a dry run runs nothing: no progress
        register_reporter(config.pluginmanager, REPORTER_NAME, ProgressReporter())


def clock(seconds: float) -> str:
    """``H:MM:SS``, as in the log line (and the line on the terminal)."""
    whole = int(max(0.0, seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def rate_text(rate: Optional[float]) -> str:
    """``2.0 tasks/s``; ``12.5 s/task`` below one a second; ``? tasks/s`` before the first end."""
    if not rate:
        return "? tasks/s"
    if rate < 1.0:
        return f"{1.0 / rate:.1f} s/task"
    return f"{rate:.1f} tasks/s"


@attrs.frozen
class Progress:
    """A run's counts at one moment: what the line on the terminal and the log line show."""

    done: int  # tasks ended, whatever their status (of the whole run: a resumed run counts its earlier ones)
    total: Optional[int]  # None: a streaming source that does not know its size
    running: int
    failed: int  # FAILED, TIMEOUT and ERROR
    cancelled: int
    elapsed: float  # seconds since this invocation started the run
    initial: int = 0  # ended before this invocation (a resumed run): not part of the rate

    @property
    def percent(self) -> Optional[float]:
        if not self.total:
            return None
        return 100.0 * min(self.done, self.total) / self.total

    @property
    def rate(self) -> Optional[float]:
        """Tasks ended per second in this invocation, or None before the first."""
        ended = self.done - self.initial
        return ended / self.elapsed if ended > 0 and self.elapsed > 0 else None

    @property
    def eta(self) -> Optional[float]:
        """Seconds until the last task ends at the rate so far, or None when unknown."""
        rate = self.rate
        if self.total is None or rate is None:
            return None
        return max(0, self.total - self.done) / rate

    def fields(self) -> dict:
        """The format fields both lines share."""
        eta = self.eta
        width = len(str(self.total)) if self.total else 0
        return {
            "done_text": str(self.done).rjust(width),  # a fixed width: the line does not jitter
            "running": self.running,
            "failed": self.failed,
            "cancelled_text": f", {self.cancelled} cancelled" if self.cancelled else "",
            "elapsed_text": clock(self.elapsed),
            "eta_text": clock(eta) if eta is not None else "?",
            "rate_text": rate_text(self.rate),
        }


def log_line(progress: Progress) -> str:
    """The main log's plain progress line."""
    fields = progress.fields()
    percent = progress.percent
    if progress.total is None or percent is None:
        head = f"{progress.done} done"
    else:
        head = f"{progress.done}/{progress.total} ({percent:.1f}%)"
    text = (f"Progress: {head}, {fields['running']} running, {fields['failed']} failed"
            f"{fields['cancelled_text']}, elapsed {fields['elapsed_text']}, {fields['rate_text']}")
    return text if progress.total is None else f"{text}, ETA {fields['eta_text']}"


def bar_text(progress: Progress, width: Optional[int], ascii: bool = False) -> str:
    """The line on the terminal, at most ``width`` columns (None: not trimmed, a 10-column bar)."""
    from tqdm import tqdm  # here: a run without a terminal line never needs it

    total = progress.total if progress.total else None
    return tqdm.format_meter(
        progress.done if total is None else min(progress.done, total),
        total,
        progress.elapsed,
        ncols=width,
        ascii=ascii,
        bar_format=BAR_FORMAT_NO_TOTAL if total is None else BAR_FORMAT,
        initial=progress.initial,
        **progress.fields(),
    )


def terminal_width(fd: Optional[int]) -> Optional[int]:
    """Columns to draw in: one less than the terminal's, so that a full line does not wrap on a
    terminal that wraps at once; None when ``fd`` is not a terminal (``--progress`` on a pipe)."""
    if fd is None:
        return None
    try:
        columns = os.get_terminal_size(fd).columns
    except OSError:
        return None
    return columns - 1 if columns > 1 else None


def _fileno(stream: Any) -> Optional[int]:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a capture without a descriptor
        return None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _draws_unicode(stream: Any) -> bool:
    try:
        "\u2588\u258f".encode(getattr(stream, "encoding", None) or "ascii")
    except (LookupError, UnicodeError):
        return False
    return True


def _erases_with_escape(stream: Any) -> bool:
    """Whether the line is erased with ANSI "erase line" (4 bytes) rather than written over with
    spaces (a line's width): every terminal but a dumb one understands it; a pipe gets spaces."""
    return _isatty(stream) and os.environ.get("TERM", "") not in ("", "dumb")


class TerminalLine:
    """The progress line on the terminal: the :class:`parallelr.console.StatusLine` this plugin
    installs. The console writes its erase and redraw texts in the same write as each console
    line (one system call, as without the line); its updates it writes itself. It is not a tqdm
    instance: tqdm's clear and redraw write and flush on their own (measured: some 25 us and two
    more system calls per console line), and cannot re-use the last rendered text. tqdm renders
    that text."""

    def __init__(self, stream: Any, ansi: bool = False) -> None:
        self.stream = stream
        self.ansi = ansi  # erase with ESC [ K instead of spaces
        self.text = ""  # what draw_text() draws: the last rendered text
        self._shown = 0  # columns now on screen (0: erased)
        self.broken = False

    def erase_text(self) -> str:
        shown, self._shown = self._shown, 0
        if not shown or self.broken:
            return ""
        return "\r\x1b[K" if self.ansi else "\r" + " " * shown + "\r"

    def draw_text(self) -> str:
        text = self.text
        # spaces over the rest of a longer text drawn before; the cursor stays at the end
        drawn = "\r" + text + " " * (self._shown - len(text))
        self._shown = len(text)
        return "" if self.broken else drawn

    def show(self, text: str) -> None:
        """Draw ``text`` over the line now on screen (under the console lock)."""
        self.text = text
        self._write(self.draw_text())

    def end(self) -> None:
        """Leave the line as it is and move below it: what follows starts on a line of its own."""
        self._write("\n")
        self._shown = 0

    def erase(self) -> None:
        self._write(self.erase_text())

    def _write(self, data: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away (or the pipe of --progress closed)
            self.broken = True
            if console.status_line() is self:
                console.set_status_line(None)
            console.silence_stdout(self.stream)


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until :meth:`stop`: it waits on
    an Event with a timeout, so stopping wakes it at once and it never polls."""

    def __init__(self, interval: float, tick: Callable[[], None], name: str) -> None:
        self.interval = interval
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self._tick()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class ProgressReporter:
    """The progress of one run: counts from the hooks, and either the line on the terminal or the
    main log's interval line. ``stream`` (default: sys.stdout at run start) and ``clock`` are for
    the tests."""

    def __init__(self, stream: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self.done = 0
        self.running = 0
        self.failed = 0
        self.cancelled = 0
        self.total: Optional[int] = None
        self.initial = 0
        self._started = 0.0
        self._rerun: Optional[int] = None  # tasks a resumed run runs again
        self.line: Optional[TerminalLine] = None
        self.ticker: Optional[Ticker] = None
        self._next_render = 0.0
        self._fd: Optional[int] = None
        self._ascii = False

    def progress(self) -> Progress:
        return Progress(self.done, self.total, max(0, self.running), self.failed, self.cancelled,
                        self._clock() - self._started, self.initial)

    # -- the hooks: counting, and a render when one is due ----------------------------------------
    @hookimpl
    def parallelr_run_planned(self, run: RunInfo, tasks: Iterable[Task]) -> None:
        count = getattr(tasks, "count", None)  # parallelr.api.Tasks knows how many it runs
        self._rerun = count if isinstance(count, int) else None

    @hookimpl
    def parallelr_run_start(self, run: RunInfo) -> None:
        self.total = run.task_count
        if run.resumed:  # the earlier tasks count as done; unknown how many: no total then
            if self.total is not None and self._rerun is not None:
                self.initial = self.done = max(0, self.total - self._rerun)
            else:
                self.total = None
        self._started = self._clock()
        stream = self._stream if self._stream is not None else sys.stdout
        wanted = run.options.get(OPTION)
        draw = (wanted if wanted is not None else _isatty(stream)) and not run.options.get("daemon")
        if draw and console.status_line() is None:  # one terminal, one line: the first run's
            self._start_line(stream)
        else:
            interval = float(run.settings.logging.progress_interval)
            if interval > 0:
                self.ticker = Ticker(interval, self._log_progress, "parallelr-progress-log")
                self.ticker.start()
        atexit.register(self.abandon)

    @hookimpl
    def parallelr_task_start(self) -> None:
        self.running += 1
        if self.line is not None and self._clock() >= self._next_render:
            self.render()

    @hookimpl
    def parallelr_task_retry(self) -> None:
        self.running -= 1  # the attempt ended; the next one starts (task_start) after its delay
        if self.line is not None and self._clock() >= self._next_render:
            self.render()

    @hookimpl
    def parallelr_task_finish(self, result: TaskResult) -> None:
        self.done += 1
        status = result.status
        if status in FAILURES:
            self.failed += 1
        elif status is TaskStatus.CANCELLED:
            self.cancelled += 1
        if not never_started(result):  # a task that never started was never counted running
            self.running -= 1
        if self.line is not None and self._clock() >= self._next_render:
            self.render()

    @hookimpl(tryfirst=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        """First of the run-finish hooks: the final state is drawn and the line left behind
        before any other plugin (the console's summary) writes its end of the run."""
        self._stop_ticker()
        atexit.unregister(self.abandon)
        with console.CONSOLE_LOCK:
            line, self.line = self.line, None
            if line is not None and console.status_line() is line:
                line.show(bar_text(self.progress(), terminal_width(self._fd), self._ascii))
                line.end()
                console.set_status_line(None)

    # -- drawing ----------------------------------------------------------------------------------
    def _start_line(self, stream: Any) -> None:
        self._fd = _fileno(stream) if _isatty(stream) else None
        self._ascii = not _draws_unicode(stream)
        line = TerminalLine(stream, ansi=_erases_with_escape(stream))
        with console.CONSOLE_LOCK:
            self.line = line
            console.set_status_line(line)
            self.render()
        self.ticker = Ticker(TICK, self._tick, "parallelr-progress-line")
        self.ticker.start()

    def render(self) -> None:
        """Render the line from the counts now and draw it (under the console lock, from the
        scheduler's thread or the timer's)."""
        with console.CONSOLE_LOCK:
            line = self.line
            if line is None or console.status_line() is not line:
                return
            now = self._clock()
            self._next_render = now + RENDER_INTERVAL
            line.show(bar_text(self.progress(), terminal_width(self._fd), self._ascii))

    def _tick(self) -> None:
        line = self.line
        if line is None or console.status_line() is not line:  # ended, or dropped by the core
            if self.ticker is not None:
                self.ticker.stop()
            return
        if self._clock() >= self._next_render:
            self.render()

    def _log_progress(self) -> None:
        console.files_only_logger().info("%s", log_line(self.progress()))

    # -- the end ----------------------------------------------------------------------------------
    def _stop_ticker(self) -> None:
        ticker, self.ticker = self.ticker, None
        if ticker is not None:
            ticker.stop()

    def abandon(self) -> None:
        """The run ended without its run-finish hook (an exception out of the scheduler) and the
        process exits: stop the timer and erase the line, so that neither outlives the run."""
        self._stop_ticker()
        with console.CONSOLE_LOCK:
            line, self.line = self.line, None
            if line is not None and console.status_line() is line:
                console.set_status_line(None)
                line.erase()
