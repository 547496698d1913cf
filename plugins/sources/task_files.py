"""Task files named by -T: directories (their regular files), files and glob patterns.

Applies when -A is not given. The list is sorted, so it is built in full; each task runs the
command template with ``@TASK@`` set to the file's absolute path.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, Iterable, List, Optional, Set

from parallelr.command import CommandTemplate, check_argv
from parallelr.errors import NoTasksError, SourceError, UsageError
from parallelr.hookspecs import hookimpl
from parallelr.model import Task

logger = logging.getLogger("parallelr.sources")

_GLOB_CHARACTERS = frozenset("*?[")


@hookimpl
def parallelr_collect_tasks(config: Any) -> Optional[List[Task]]:
    request = config.request
    if request.arguments_file or not request.task_paths:
        return None
    shell = request.shell
    template = CommandTemplate.parse(request.command, (), shell=shell)
    if not template.uses_task:
        logger.warning("the command has no @TASK@ placeholder: every task runs the same command")
    paths = find_task_files(request.task_paths, request.file_extension)
    max_argument_length = config.settings.security.max_argument_length
    tasks = []
    for path in paths:
        argv = template.render(path, (), {})
        check_argv(argv, max_argument_length)
        # Its size (advanced.max_file_size) is checked when it is about to run: a file that is
        # too large fails as that task, the others run (the old tool's behaviour).
        tasks.append(Task(argv=argv, source=path, shell=shell, task_file=path))
    return tasks


def find_task_files(entries: Iterable[str], file_extension: Optional[str]) -> List[str]:
    """The absolute, de-duplicated, sorted task files of the -T entries, after the extension filter."""
    suffixes = parse_extensions(file_extension)
    entries = list(entries)
    found: Set[str] = set()
    for entry in entries:
        matches = [path for path in _entry_files(entry) if _has_suffix(path, suffixes)]
        if not matches and len(entries) > 1:  # with a single entry, NoTasksError says it all
            logger.warning("-T %s yields no task files%s", entry, _filter_note(file_extension))
        found.update(matches)
    if not found:
        raise NoTasksError(f"-T {' '.join(entries)}", extensions=file_extension)
    return sorted(found)


def parse_extensions(file_extension: Optional[str]) -> Optional[Set[str]]:
    """``"csv,tsv,.TXT"`` → ``{".csv", ".tsv", ".txt"}``; None when there is no filter."""
    if file_extension is None:
        return None
    suffixes = {"." + part.strip().lstrip(".").lower() for part in file_extension.split(",")}
    suffixes.discard(".")
    if not suffixes:  # a bad command-line value: a usage error (exit 2), like any other
        raise UsageError(f"--file-extension names no extension: {file_extension!r} (e.g. txt or csv,tsv)")
    return suffixes


def _has_suffix(path: str, suffixes: Optional[Set[str]]) -> bool:
    if suffixes is None:
        return True
    name = os.path.basename(path).lower()
    return any(name.endswith(suffix) for suffix in suffixes)


def _filter_note(file_extension: Optional[str]) -> str:
    return f" with --file-extension {file_extension}" if file_extension is not None else ""


def _entry_files(entry: str) -> List[str]:
    if os.path.isdir(entry):
        return _directory_files(entry)
    if os.path.isfile(entry):
        return [os.path.abspath(entry)]
    if os.path.exists(entry):  # a device, FIFO or socket: no task, as in a directory
        logger.warning("-T %s is not a regular file or a directory: skipped", entry)
        return []
    if _GLOB_CHARACTERS.intersection(entry):
        return [os.path.abspath(path) for path in glob.glob(entry) if os.path.isfile(path)]
    if os.path.islink(entry):
        raise SourceError(f"task path does not exist (broken symbolic link): {entry}")
    raise SourceError(f"task path does not exist: {entry}")


def _directory_files(directory: str) -> List[str]:
    absolute = os.path.abspath(directory)
    try:
        with os.scandir(absolute) as listing:
            return [path for path in (_regular_file(absolute, item) for item in listing) if path]
    except OSError as error:
        raise SourceError(f"cannot read task directory {directory}: {error.strerror}") from None


def _regular_file(directory: str, item: os.DirEntry) -> Optional[str]:
    """The entry's path if it is a task file. is_file() follows symlinks, so a link to a regular
    file is a task file; an entry that cannot be followed (a symlink loop, a dangling link into
    an unreadable place) is skipped with a warning, like any other unusable entry."""
    try:
        return os.path.join(directory, item.name) if item.is_file() else None
    except OSError as error:
        logger.warning("skipping %s: %s", os.path.join(directory, item.name), error.strerror)
        return None
