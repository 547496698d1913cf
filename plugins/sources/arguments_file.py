"""The arguments file (-A): one task per argument line, checked first, then streamed.

The argument lines are counted first, at C speed (:mod:`.argument_lines`), for ``Created N
tasks``. Then every line is checked (:mod:`.argument_checks`): its task is built (and dropped), the
column counts are compared. A file whose check ends within :data:`CHECK_BUDGET` seconds (a few
hundred thousand lines) is checked in full before anything runs, so a bad line stops the run
before any task starts. The check of a bigger file goes on in a child process while the first
tasks run, ahead of them; the iterator checks each line it hands out the same way (so a task never
starts from an unchecked line, and never waits for the background check), and a bad line the
background check finds later stops the run: the iterator raises it, so no new task starts (see
the README's "Arguments mode").

The returned :class:`ArgumentTasks` knows the count and re-reads the file lazily on each
iteration, so a file of millions of lines is never held in memory.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs

from parallelr.command import CommandTemplate, check_argv
from parallelr.errors import CommandError, SourceError
from parallelr.hookspecs import hookimpl
from parallelr.model import Task
from parallelr.plugins.sources.argument_checks import BackgroundChecks, LineChecks, variables_phrase
from parallelr.plugins.sources.argument_lines import (
    COUNT_NOTICE_BYTES,
    argument_lines,
    count_argument_lines,
    split_columns,
)

logger = logging.getLogger("parallelr.sources")
CHECK_BUDGET = 0.5  # seconds of line checks (with the count) before the first task may start


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
                f"mismatch: -E names {variables_phrase(self.env_names)} but "
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
