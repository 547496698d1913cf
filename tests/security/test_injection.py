"""Values from arguments files and file names are data: never split, never run, never globbed.

Every payload that would have a side effect if a shell interpreted it only creates files (touch,
tee, redirections), and the tasks run with HOME and the working directory in tmp_path, so a
failure shows up as an unexpected file instead of damage. ``rm -rf ~`` is checked at render
level only.
"""

from __future__ import annotations

import os
import subprocess
import types
from pathlib import Path

import pytest

from parallelr import process
from parallelr.command import CommandTemplate
from parallelr.errors import CommandError, SourceError
from parallelr.model import ExecutionLimits, TaskStatus
from parallelr.plugins.sources import arguments_file, task_files
from parallelr.request import RunRequest

try:
    from parallelr.config import Settings
except ImportError:  # pragma: no cover - config is written by another engineer
    Settings = None

RUNNABLE_PAYLOADS = [
    "; touch pwned_semicolon",
    "$(touch pwned_dollar)",
    "`touch pwned_backtick`",
    "x | tee pwned_tee",
    "x > pwned_redirect",
    "x && touch pwned_and",
    "' ; touch pwned_single '",
    '" ; touch pwned_double "',
    "\\'; touch pwned_backslash; '",
    "* ? [a-z] {a,b} ~",
    "${IFS}touch${IFS}pwned_ifs",
    "$HOME",
]
# Only at render level: never executed, even in a sandbox.
RENDER_ONLY_PAYLOADS = ["; rm -rf ~", "$(rm -rf ~)", "`rm -rf ~`", "| rm -rf ~", "&& rm -rf ~ #"]
# Newlines cannot be part of an arguments-file line, but they can be part of a file name.
FILE_NAME_PAYLOADS = [*RUNNABLE_PAYLOADS, "a\ntouch pwned_newline", "a\n$(touch pwned_newline2)"]


def settings():
    if Settings is not None:
        return Settings()
    return types.SimpleNamespace(  # pragma: no cover
        security=types.SimpleNamespace(max_argument_length=1000),
        advanced=types.SimpleNamespace(max_file_size=1048576),
    )


def make_config(**options):
    defaults = dict(TasksDir=[], Command="", arguments_file=None, separator=None, env_var=())
    defaults.update(file_extension=None, shell=False)
    defaults.update(options)
    return types.SimpleNamespace(request=RunRequest.from_options(defaults), settings=settings())


@pytest.fixture
def sandbox(tmp_path):
    """A working directory and a HOME that must stay empty, plus a way to run an argv there."""
    work = tmp_path / "work"
    home = tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C"}

    def run(task) -> bytes:
        done = subprocess.run(
            task.argv, cwd=work, env=task.environ(env), capture_output=True, timeout=10, check=True
        )
        return done.stdout

    run.work = work
    run.home = home
    return run


def assert_no_side_effects(sandbox) -> None:
    assert sorted(os.listdir(sandbox.work)) == []
    assert sorted(os.listdir(sandbox.home)) == []


def write_lines(path: Path, lines) -> Path:
    path.write_bytes(b"".join(os.fsencode(line) + b"\n" for line in lines))
    return path


@pytest.mark.parametrize("payload", RUNNABLE_PAYLOADS + RENDER_ONLY_PAYLOADS + FILE_NAME_PAYLOADS)
def test_payload_renders_as_one_literal_word(payload):
    template = CommandTemplate.parse("printf '%s\\n' @ARG@ x@ARG_2@y \"@ARG_1@\"")
    assert template.render(None, [payload, payload], {}) == (
        "printf",
        "%s\\n",
        payload,
        f"x{payload}y",
        payload,
    )
    env_template = CommandTemplate.parse("printf '%s\\n' $V \"${V}\"", env_names=("V",))
    assert env_template.render(None, [], {"V": payload}) == ("printf", "%s\\n", payload, payload)


def test_arguments_file_payloads_run_as_data(tmp_path, sandbox):
    args = write_lines(tmp_path / "args.txt", RUNNABLE_PAYLOADS)
    config = make_config(arguments_file=str(args), Command="printf '%s\\n' @ARG@ $V", env_var=("V",))
    tasks = list(arguments_file.parallelr_collect_tasks(config))
    assert len(tasks) == len(RUNNABLE_PAYLOADS)
    for task, payload in zip(tasks, RUNNABLE_PAYLOADS):
        assert task.argv == ("printf", "%s\\n", payload, payload)
        assert sandbox(task) == os.fsencode(payload + "\n" + payload + "\n")
    assert_no_side_effects(sandbox)


def test_arguments_file_payloads_in_shell_mode_stay_data(tmp_path, sandbox):
    args = write_lines(tmp_path / "args.txt", RUNNABLE_PAYLOADS)
    command = "printf '%s\\n' @ARG@ \"@ARG@\" '@ARG@' \"$(printf '%s' @ARG@)\" | cat"
    config = make_config(arguments_file=str(args), Command=command, shell=True)
    tasks = list(arguments_file.parallelr_collect_tasks(config))
    for task, payload in zip(tasks, RUNNABLE_PAYLOADS):
        assert task.shell is True and task.argv[:2] == ("/bin/sh", "-c")
        assert sandbox(task) == os.fsencode((payload + "\n") * 4)
    assert_no_side_effects(sandbox)


def test_file_name_payloads_run_as_data(tmp_path, sandbox):
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name in FILE_NAME_PAYLOADS:
        (directory / name.replace("/", "_")).write_text("", encoding="utf-8")
    for shell in (False, True):
        config = make_config(TasksDir=[str(directory)], Command="printf '%s\\n' @TASK@", shell=shell)
        tasks = task_files.parallelr_collect_tasks(config)
        assert len(tasks) == len(FILE_NAME_PAYLOADS)
        for task in tasks:
            if not shell:
                assert task.argv == ("printf", "%s\\n", task.source)
            assert sandbox(task) == os.fsencode(task.source + "\n")
    assert_no_side_effects(sandbox)


def test_glob_characters_in_a_value_are_not_expanded(tmp_path, sandbox):
    (sandbox.work / "matchme").write_text("", encoding="utf-8")
    args = write_lines(tmp_path / "args.txt", ["*", "match*", "[m]atchme"])
    for shell in (False, True):
        config = make_config(arguments_file=str(args), Command="printf '%s\\n' @ARG@", shell=shell)
        outputs = [sandbox(task) for task in arguments_file.parallelr_collect_tasks(config)]
        assert outputs == [b"*\n", b"match*\n", b"[m]atchme\n"]


def test_argument_length_limit(tmp_path):
    limit = settings().security.max_argument_length
    ok = write_lines(tmp_path / "ok.txt", ["x" * limit])
    config = make_config(arguments_file=str(ok), Command="echo @ARG@")
    (task,) = arguments_file.parallelr_collect_tasks(config)
    assert task.argv == ("echo", "x" * limit)
    too_long = write_lines(tmp_path / "long.txt", ["x" * (limit + 1)])
    config = make_config(arguments_file=str(too_long), Command="echo @ARG@")
    with pytest.raises(CommandError, match=f"exceeds max_argument_length {limit}"):
        arguments_file.parallelr_collect_tasks(config)


def test_max_file_size_for_task_files_and_templates(tmp_path):
    limit = settings().advanced.max_file_size
    big = tmp_path / "big.sh"
    big.write_bytes(b"#" * (limit + 1))
    marker = tmp_path / "ran"
    big.write_bytes(b"touch " + str(marker).encode() + b"\n" + b"#" * limit)
    (task,) = task_files.parallelr_collect_tasks(make_config(TasksDir=[str(big)], Command="bash @TASK@"))
    limits = ExecutionLimits(timeout=10, workspace=str(tmp_path / "ws"), runner_pid=os.getpid(),
                             max_file_size=limit)
    result = process.run_task(task, 1, limits)  # refused as the task is about to start: it never runs
    assert result.status is TaskStatus.ERROR
    assert f"{big} is {big.stat().st_size} bytes, the limit (advanced.max_file_size) is {limit} bytes" in (
        result.error_message
    )
    assert not marker.exists()
    args = write_lines(tmp_path / "args.txt", ["a"])
    config = make_config(TasksDir=[str(big)], arguments_file=str(args), Command="bash @TASK@ @ARG@")
    with pytest.raises(SourceError, match=r"template file is too large"):
        arguments_file.parallelr_collect_tasks(config)


def test_nul_byte_never_reaches_a_process(tmp_path):
    args = tmp_path / "args.txt"
    args.write_bytes(b"ok\n$(touch pwned)\x00\n")
    with pytest.raises(CommandError, match=r"^validation failed: line 2 .* null byte"):
        arguments_file.parallelr_collect_tasks(make_config(arguments_file=str(args), Command="echo @ARG@"))


def test_shell_mode_refuses_a_placeholder_inside_backquotes(tmp_path):
    args = write_lines(tmp_path / "args.txt", ["`touch pwned`"])
    config = make_config(arguments_file=str(args), Command="echo `echo @ARG@`", shell=True)
    with pytest.raises(CommandError, match=r"cannot be quoted safely"):
        arguments_file.parallelr_collect_tasks(config)
