"""The arguments file (-A): one task per argument line, checked first, then streamed.

Lines end with ``\n``, ``\r\n`` or a lone ``\r`` (old Mac files). The argument lines are
counted first, at C speed (:func:`count_argument_lines`: 10 million lines in well under a second),
for ``Created N tasks``. Then every line is checked: its task is built (and dropped), the column
counts are compared. A file whose check ends within :data:`CHECK_BUDGET` seconds (a few hundred
thousand lines) is checked in full before anything runs, so a bad line stops the run before any
task starts. The check of a bigger file goes on in a background thread while the first tasks
run, ahead of them; the iterator checks each line it hands out the same way (so a task never
starts from an unchecked line, and never waits for the background check), and a bad line the
background check finds later stops the run: the iterator raises it, so no new task starts (see
the README's "Arguments mode").

The returned :class:`ArgumentTasks` knows the count and re-reads the file lazily on each
iteration, so a file of millions of lines is never held in memory.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs

from parallelr.command import CommandTemplate, check_argv
from parallelr.errors import CommandError, ParallelrError, SourceError
from parallelr.hookspecs import hookimpl
from parallelr.model import Task

logger = logging.getLogger("parallelr.sources")


def _split_on(character: str) -> Callable[[str], List[str]]:
    def split(line: str) -> List[str]:
        return [field.strip() for field in line.split(character)]

    return split


_SPACES = re.compile(" +")
_TABS = re.compile("\t+")

SEPARATORS: Dict[str, Callable[[str], List[str]]] = {
    "space": _SPACES.split,
    "whitespace": str.split,
    "tab": _TABS.split,
    "comma": _split_on(","),
    "semicolon": _split_on(";"),
    "pipe": _split_on("|"),
    "colon": _split_on(":"),
}


def split_columns(line: str, separator: Optional[str]) -> List[str]:
    """The arguments of one (already stripped) line; no separator: the whole line is one."""
    if separator is None:
        return [line]
    return SEPARATORS[separator](line)


CHECK_BUDGET = 0.5  # seconds of line checks (with the count) before the first task may start
BLOCK = 1 << 18  # bytes read at a time: big enough for C-speed scans, small enough to stay flat
COUNT_NOTICE_BYTES = 256 << 20  # a file this big takes a second or more just to count: say so
_DEADLINE_EVERY = 256  # lines between two looks at the clock (the check before the first task)


def _line_blocks(handle: IO[bytes]) -> Iterator[List[bytes]]:
    """The lines of a binary file without their ends (``\n``, ``\r\n`` or a lone ``\r``), a
    block's worth at a time.

    Read in blocks and split at C speed; a file of CR-only lines (``a\rb\rc\r``) splits the
    same way instead of becoming one huge line.
    """
    carry = b""
    while True:
        block = handle.read(BLOCK)
        if not block:
            break
        data = carry + block
        held = b""
        if b"\r" in data:
            if data.endswith(b"\r"):  # maybe the first half of a \r\n that the next block completes
                data, held = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        carry = lines.pop() + held
        yield lines
    if carry:  # the last line, without an end, or ended by a lone \r
        yield [carry[:-1] if carry.endswith(b"\r") else carry]


def argument_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, stripped line)`` of every argument line; comments and blank lines skipped.

    Bytes that are not UTF-8 survive as surrogates and become the same bytes again in argv.
    """
    number = 0
    with open(path, "rb") as handle:
        for lines in _line_blocks(handle):
            for raw in lines:
                number += 1
                line = raw.decode("utf-8", "surrogateescape")
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]  # a UTF-8 byte order mark is not part of the first argument
                line = line.strip()
                if line and not line.startswith("#"):
                    yield number, line


# What str.strip() strips (the characters for which str.isspace() is true), in UTF-8, without
# \n and \r (line ends); a test checks the list against str.isspace.
WHITESPACE = (
    "\t\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same characters as bytes, grouped by their first byte (a class of single bytes first: one
# alternation per character would make the scan several times slower); a test checks it.
_SPACE = (
    b"(?:[\t\x0b\x0c\x1c-\x1f ]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f"
    b"|\xe3\x80\x80)"
)
# A line that argument_lines skips: only whitespace, or a comment after it. Matched at the \n
# before it; the lookahead leaves the \n that ends it for the next line's match.
_SKIPPED_LINE = re.compile(b"\n" + _SPACE + b"*(?=[#\n])")
_BOM = b"\xef\xbb\xbf"


def count_argument_lines(path: str) -> int:
    """How many lines :func:`argument_lines` yields, found at C speed (newlines counted in big
    blocks, skipped lines found by one regular expression per block) instead of line by line."""
    count = 0
    carry = b""
    first = True
    with open(path, "rb") as handle:
        while True:
            block = handle.read(BLOCK)
            if not block:
                break
            data = carry + block
            if first and data.startswith(_BOM[: len(data)]) and len(data) < len(_BOM):
                carry = data  # too short to tell whether it is a byte order mark
                continue
            if first:
                first = False
                if data.startswith(_BOM):
                    data = data[len(_BOM):]
            held = b""
            if b"\r" in data:
                if data.endswith(b"\r"):
                    data, held = data[:-1], b"\r"
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            cut = data.rfind(b"\n") + 1
            carry = data[cut:] + held
            if cut:
                count += _count_complete(data[:cut])
    if first and carry.startswith(_BOM):
        carry = carry[len(_BOM):]
    if carry.endswith(b"\r"):
        carry = carry[:-1]
    if carry:
        count += _count_complete(carry.replace(b"\r", b"\n") + b"\n")
    return count


def _count_complete(lines: bytes) -> int:
    """The argument lines among ``lines`` (every one of them ended by \n)."""
    return lines.count(b"\n") - len(_SKIPPED_LINE.findall(b"\n" + lines))


@attrs.frozen
class ArgumentsPlan:
    """Everything needed to turn one argument line into a Task."""

    path: str  # the arguments file, absolute
    template: CommandTemplate
    template_path: Optional[str]  # the -T template file, absolute, or None
    separator: Optional[str]
    env_names: Tuple[str, ...]
    max_argument_length: int

    def build_task(self, number: int, line: str) -> Task:
        """The task of argument line ``number``; raises for anything that would make it unsafe."""
        columns, env, argv = self.check_line(number, line)
        return Task(
            argv=argv,
            source=self.template_path or f"{self.path}:{number}",
            env=env,
            arguments=columns,
            line_number=number,
            shell=self.template.shell,
        )

    def check_line(self, number: int, line: str) -> Tuple[List[str], Dict[str, str], Tuple[str, ...]]:
        """The columns, -E environment and argv of a line, after every check."""
        where = f"line {number} of {self.path}"
        if "\0" in line:
            raise CommandError(
                f"validation failed: {where} contains a null byte (NUL), which no command argument can "
                "hold: remove it"
            )
        columns = split_columns(line, self.separator)
        if len(self.env_names) > len(columns):
            raise SourceError(
                f"mismatch: -E names {_variables(self.env_names)} but "
                f"{where} has {len(columns)} columns; give one column per variable or fewer -E names"
            )
        if self.template.max_arg_index > len(columns):
            raise CommandError(
                f"line {number} has {len(columns)} arguments but the command uses "
                f"@ARG_{self.template.max_arg_index}@: placeholder beyond the columns (in {self.path})"
            )
        env = dict(zip(self.env_names, columns))
        argv = self.template.render(self.template_path, columns, env)
        try:
            check_argv(argv, self.max_argument_length)
        except CommandError as error:
            raise CommandError(f"{where}: {error}") from None
        return columns, env, argv


class ArgumentTasks:
    """The tasks of an arguments file: ``len()`` is known, iteration re-reads the file lazily.

    With ``checks`` (a big file whose check goes on while tasks run) every line handed out is
    checked here as the background check would (its own checks, and its column count against the
    file's: ``width``), without waiting for that check, and the first bad line the background
    check finds ahead ends every iteration.
    """

    def __init__(self, plan: ArgumentsPlan, count: int, checks: Optional[BackgroundChecks] = None,
                 width: Optional[int] = None) -> None:
        self.plan = plan
        self._count = count
        self.checks = checks
        self.width = width

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Task]:
        produced = 0
        checks = self.checks
        plan = self.plan
        width = self.width if plan.separator is not None else None
        for number, line in argument_lines(plan.path):
            if produced == self._count:
                raise _changed(plan.path, f"line {number} is new")
            if checks is not None:
                if produced == 0:
                    checks.ensure_running()
                if checks.error is not None:  # a bad line further on: the run stops here
                    raise checks.error
                if width is not None:
                    found = len(split_columns(line, plan.separator))
                    if found != width:
                        raise SourceError(
                            f"Inconsistent argument counts in {plan.path}: {width} argument(s) before line"
                            f" {number}; {found} argument(s): line {number} (every line must split into the"
                            " same number of columns)"
                        )
            # Built again from the file as it is now: a line edited since the check is re-checked.
            yield plan.build_task(number, line)
            produced += 1
        if produced != self._count:
            raise _changed(self.plan.path, f"it has {produced} argument lines instead of {self._count}")

    def __repr__(self) -> str:
        return f"<ArgumentTasks {self.plan.path}: {self._count} tasks>"


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
            _variables(self.plan.env_names),
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
                        _variables(plan.env_names), number, plan.path, columns,
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
from parallelr.plugins.sources.arguments_file import check_in_child
check_in_child()
"""


def check_in_child() -> None:
    """The body of the child process of :class:`BackgroundChecks` (see there)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl+C is for the run; this ends with its parent
    parent = os.getppid()
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


def _variables(names: Tuple[str, ...]) -> str:
    return f"{len(names)} variable{'' if len(names) == 1 else 's'} ({','.join(names)})"


def _changed(path: str, detail: str) -> SourceError:
    return SourceError(
        f"the arguments file changed while the run was reading it: {path} ({detail}); run again"
    )


@hookimpl
def parallelr_collect_tasks(config: Any) -> Optional[ArgumentTasks]:
    request = config.request
    if not request.arguments_file:
        return None
    path = _checked_arguments_file(request.arguments_file)
    template_path = _checked_template(request.task_paths, config.settings.advanced.max_file_size)
    env_names = request.env_names
    template = CommandTemplate.parse(request.command, env_names, shell=request.shell)
    _check_template_use(template, template_path, env_names, path)
    plan = ArgumentsPlan(
        path=path,
        template=template,
        template_path=template_path,
        separator=request.separator,
        env_names=env_names,
        max_argument_length=config.settings.security.max_argument_length,
    )
    return check_arguments(plan)


def check_arguments(plan: ArgumentsPlan, budget: float = CHECK_BUDGET) -> ArgumentTasks:
    """Count the lines, then check them until ``budget`` seconds have passed since the start
    (at least a fifth of it for the check itself); a file not done by then goes on being
    checked in the background while its first tasks run."""
    started = time.monotonic()
    try:
        size = os.path.getsize(plan.path)
        if size >= COUNT_NOTICE_BYTES:  # honest about the wait: counting alone takes a while
            logger.info("Counting the lines of %s (%d MB) before the first task starts", plan.path,
                        size >> 20)
        count = count_argument_lines(plan.path)
    except OSError as error:
        raise SourceError(f"cannot read arguments file {plan.path}: {error.strerror}") from None
    if count == 0:
        raise SourceError(
            f"arguments file is empty (no arguments, only comments or blank lines): {plan.path}"
        )
    checks = LineChecks(plan)
    checks.run(deadline=max(started + budget, time.monotonic() + budget / 5))
    error = checks.error()
    if error is not None:
        raise error
    if checks.finished:  # the whole file was checked before anything runs
        if checks.count != count:  # it changed between the count and the check
            raise _changed(plan.path, f"it has {checks.count} argument lines instead of {count}")
        checks.warn_wider(complete=True)
        return ArgumentTasks(plan, checks.count)
    checks.warn_wider(complete=False)
    width = next(iter(checks.widths)) if checks.widths else None  # one column count so far
    return ArgumentTasks(plan, count, BackgroundChecks(checks), width)


def _check_all_lines(plan: ArgumentsPlan) -> int:
    """Check every line (no time budget) and return the number of argument lines: the check a
    small file gets before anything runs (bench/bench_big_input.py times it)."""
    checks = LineChecks(plan)
    checks.run()
    error = checks.error()
    if error is not None:
        raise error
    return checks.count


def _checked_arguments_file(arguments_file: str) -> str:
    path = os.path.abspath(arguments_file)
    if not os.path.exists(path):
        raise SourceError(f"arguments file does not exist: {arguments_file}")
    if os.path.isdir(path):
        raise SourceError(f"arguments file is a directory, not a file: {arguments_file}")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise SourceError(f"cannot read arguments file {arguments_file}: {error.strerror}") from None
    return path


def _checked_template(entries: Sequence[str], max_file_size: int) -> Optional[str]:
    if not entries:
        return None
    if len(entries) > 1:
        raise SourceError(
            f"with -A, -T must be a single template file, not {len(entries)} paths: {' '.join(entries)}"
        )
    entry = entries[0]
    if not os.path.exists(entry):
        raise SourceError(f"template file does not exist: {entry}")
    if os.path.isdir(entry):
        raise SourceError(f"with -A, -T must be a single template file, not a directory: {entry}")
    if not os.path.isfile(entry):
        raise SourceError(f"with -A, -T must be a single template file; this is not a regular file: {entry}")
    size = os.stat(entry).st_size
    if size > max_file_size:
        raise SourceError(
            f"template file is too large: {entry} is {size} bytes, the limit (advanced.max_file_size) is "
            f"{max_file_size} bytes"
        )
    return os.path.abspath(entry)


def _check_template_use(
    template: CommandTemplate, template_path: Optional[str], env_names: Tuple[str, ...], path: str
) -> None:
    uses_arguments = template.max_arg_index > 0 or bool(env_names)
    if template_path is None:
        if template.uses_task:
            raise SourceError(
                "the command uses @TASK@ but no template file was given: add -T TEMPLATE or remove @TASK@"
            )
        if not uses_arguments:
            raise SourceError(
                f"without -T, the command must use the arguments of {path} (@ARG@, @ARG_N@ or -E NAME); "
                "otherwise the arguments would be unused"
            )
        return
    if not template.uses_task:
        logger.warning(
            "the command has no @TASK@ placeholder: the template file %s is not used", template_path
        )
    if not uses_arguments:
        logger.warning(
            "the command uses no argument (@ARG@, @ARG_N@ or -E NAME): every task runs the same command"
        )


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
