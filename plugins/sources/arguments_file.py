"""The arguments file (-A): one task per argument line, all checked first, then streamed.

A first pass reads the whole file and builds (then drops) every task, so that a bad line stops
the run before anything runs. The returned :class:`ArgumentTasks` knows the count and re-reads
the file lazily on each iteration, so a file of millions of lines is never held in memory.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

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


def argument_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, stripped line)`` of every argument line; comments and blank lines skipped.

    Bytes that are not UTF-8 survive as surrogates and become the same bytes again in argv.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.decode("utf-8", "surrogateescape")
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]  # a UTF-8 byte order mark is not part of the first argument
            line = line.strip()
            if line and not line.startswith("#"):
                yield number, line


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
    """The tasks of an arguments file: ``len()`` is known, iteration re-reads the file lazily."""

    def __init__(self, plan: ArgumentsPlan, count: int) -> None:
        self.plan = plan
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Task]:
        produced = 0
        for number, line in argument_lines(self.plan.path):
            if produced == self._count:
                raise _changed(self.plan.path, f"line {number} is new")
            # Built again from the file as it is now: a line edited since the check is re-checked.
            yield self.plan.build_task(number, line)
            produced += 1
        if produced != self._count:
            raise _changed(self.plan.path, f"it has {produced} argument lines instead of {self._count}")

    def __repr__(self) -> str:
        return f"<ArgumentTasks {self.plan.path}: {self._count} tasks>"


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
    return ArgumentTasks(plan, _check_all_lines(plan))


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


def _check_all_lines(plan: ArgumentsPlan) -> int:
    """Build every task once (and drop it) so a bad line stops the run before anything runs."""
    count = 0
    wider_lines = 0  # lines with more columns than -E names: one warning for the whole file
    first_wider: Tuple[int, int] = (0, 0)
    lines_by_width: Dict[int, List[int]] = {}
    first_error: Optional[ParallelrError] = None
    try:
        for number, line in argument_lines(plan.path):
            count += 1
            if plan.separator is not None:
                lines_by_width.setdefault(len(split_columns(line, plan.separator)), []).append(number)
            if first_error is not None:
                continue  # only the widths still matter: they decide which error is reported
            try:
                columns = plan.check_line(number, line)[0]
            except ParallelrError as error:
                first_error = error
                continue
            if plan.env_names and len(columns) > len(plan.env_names):
                wider_lines += 1
                if wider_lines == 1:
                    first_wider = (number, len(columns))
    except OSError as error:
        raise SourceError(f"cannot read arguments file {plan.path}: {error.strerror}") from None
    if len(lines_by_width) > 1:
        raise SourceError(_inconsistent_counts(plan.path, lines_by_width))
    if first_error is not None:
        raise first_error
    if count == 0:
        raise SourceError(
            f"arguments file is empty (no arguments, only comments or blank lines): {plan.path}"
        )
    if wider_lines:
        number, columns = first_wider
        logger.warning(
            "mismatch: -E names %s but %d lines of %s have more columns (first: line %d with %d); "
            "the extra columns are not set as variables",
            _variables(plan.env_names),
            wider_lines,
            plan.path,
            number,
            columns,
        )
    return count


_LISTED_LINES = 10  # line numbers named per column count; a huge file must still give one line


def _inconsistent_counts(path: str, lines_by_width: Dict[int, List[int]]) -> str:
    """``Inconsistent argument counts in F: 3 argument(s): lines 1, 3; 2 argument(s): lines 2``."""
    groups = []
    for width, numbers in sorted(lines_by_width.items(), key=lambda item: (item[1][0], item[0])):
        listed = ", ".join(str(number) for number in numbers[:_LISTED_LINES])
        more = f" and {len(numbers) - _LISTED_LINES} more" if len(numbers) > _LISTED_LINES else ""
        groups.append(f"{width} argument(s): lines {listed}{more}")
    return (
        f"Inconsistent argument counts in {path}: {'; '.join(groups)} "
        "(every line must split into the same number of columns)"
    )
