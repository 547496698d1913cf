"""Injection and limits through the real CLI (COMPAT.md: "`; rm -rf ~` inside an argument is data,
never code"; spec "Security Considerations").

Each payload tries to create a file named ``pwned``; it must never appear in the directory
parallelr was started from, nor in the workspace the tasks run in.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

PAYLOADS = [
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "&& touch pwned",
    "x || touch pwned",
    "| touch pwned",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "${IFS}touch${IFS}pwned",
    "\\; touch pwned",
]


@pytest.fixture
def recorder(fake_programs):
    fake_programs.add("recorder")
    return fake_programs


def assert_not_pwned(tmp_path: Path, home: Path) -> None:
    found = sorted(str(path) for path in tmp_path.rglob("pwned"))
    assert found == [], found
    assert not (home / "parallelr" / "workspace" / "pwned").exists()


def write_arguments(path: Path, lines: List[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- arguments -----------------------------------------------------------------------------------


def test_arguments_reach_the_program_as_one_literal_word(run_cli, run_files, recorder, tmp_path, home):
    write_arguments(tmp_path / "args.txt", PAYLOADS)

    result = run_cli(["-A", "args.txt", "-C", "recorder --value @ARG@", "-r"], env=recorder.env)

    assert result.returncode == 0, result.output
    assert sorted(call["argv"] for call in recorder.calls()) == sorted(["--value", p] for p in PAYLOADS)
    assert len(run_files().rows) == len(PAYLOADS)
    assert_not_pwned(tmp_path, home)


def test_the_command_runs_without_a_shell(run_cli, summary, recorder, tmp_path, home):
    """``-C "echo @ARG@"`` is exec'd directly: the program's parent is parallelr itself, not a shell."""
    write_arguments(tmp_path / "args.txt", ["; touch pwned"])

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=recorder.env)

    assert result.returncode == 0, result.output
    (call,) = recorder.calls()
    assert call["argv"] == ["; touch pwned"]
    assert call["ppid"] == int(summary(result.stdout, "- Process ID:"))
    assert_not_pwned(tmp_path, home)


def test_real_echo_prints_the_payload_verbatim(run_cli, run_files, tmp_path, home):
    write_arguments(tmp_path / "args.txt", PAYLOADS)

    result = run_cli(["-A", "args.txt", "-C", "echo @ARG@", "-r"])

    assert result.returncode == 0, result.output
    output = run_files().output_log.read_text(encoding="utf-8")
    for payload in PAYLOADS:
        assert f"STDOUT:\n{payload}\n" in output
    assert_not_pwned(tmp_path, home)


@pytest.mark.parametrize(
    "command",
    [
        "recorder $VALUE",
        'recorder "$VALUE"',
        "recorder ${VALUE}",
        "recorder prefix-$VALUE",
    ],
)
def test_env_variable_expansion_without_shell_is_data(run_cli, recorder, tmp_path, home, command):
    write_arguments(tmp_path / "args.txt", PAYLOADS)

    result = run_cli(["-A", "args.txt", "-E", "VALUE", "-C", command, "-r"], env=recorder.env)

    assert result.returncode == 0, result.output
    prefix = "prefix-" if "prefix-" in command else ""
    calls = recorder.calls()
    assert sorted(call["argv"] for call in calls) == sorted([prefix + p] for p in PAYLOADS)
    assert all(call["env"]["VALUE"] == call["argv"][0][len(prefix):] for call in calls)
    assert_not_pwned(tmp_path, home)


@pytest.mark.parametrize(
    "command",
    [
        "recorder @ARG@ | cat",
        'recorder "@ARG@" > /dev/null',
        "recorder '@ARG@' && true",
        'recorder "$VALUE" | cat',
    ],
)
def test_shell_mode_keeps_arguments_as_data(run_cli, recorder, tmp_path, home, command):
    write_arguments(tmp_path / "args.txt", PAYLOADS)

    result = run_cli(["-A", "args.txt", "-E", "VALUE", "--shell", "-C", command, "-r"], env=recorder.env)

    assert result.returncode == 0, result.output
    assert sorted(call["argv"] for call in recorder.calls()) == sorted([p] for p in PAYLOADS)
    assert_not_pwned(tmp_path, home)


def test_template_mode_arguments_are_data(run_cli, recorder, tmp_path, home):
    (tmp_path / "template.sh").write_text('exec recorder "$@"\n', encoding="utf-8")
    write_arguments(tmp_path / "args.txt", PAYLOADS)

    argv = ["-T", "template.sh", "-A", "args.txt", "-C", "bash @TASK@ @ARG@", "-r"]

    result = run_cli(argv, env=recorder.env)

    assert result.returncode == 0, result.output
    assert sorted(call["argv"] for call in recorder.calls()) == sorted([p] for p in PAYLOADS)
    assert_not_pwned(tmp_path, home)


# -- file names ----------------------------------------------------------------------------------

FILE_NAMES = ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "x && touch pwned", "x | touch pwned"]


@pytest.mark.parametrize("shell", [False, True])
def test_file_names_are_data(run_cli, run_files, recorder, tmp_path, home, shell):
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name in FILE_NAMES:
        (directory / name).write_text("echo harmless\n", encoding="utf-8")
    flags = ["--shell"] if shell else []

    result = run_cli(["-T", str(directory), "-C", "recorder @TASK@", "-r", *flags], env=recorder.env)

    assert result.returncode == 0, result.output
    expected = sorted([str(directory / name)] for name in FILE_NAMES)
    assert sorted(call["argv"] for call in recorder.calls()) == expected
    assert len(run_files().rows) == len(FILE_NAMES)
    assert_not_pwned(tmp_path, home)


# -- max_argument_length -------------------------------------------------------------------------

LONG = "a" * 2000


@pytest.mark.parametrize("where", ["arguments file", "command"])
def test_an_argument_over_max_argument_length_is_refused_before_anything_runs(
    run_cli, recorder, tmp_path, home, where
):
    write_arguments(tmp_path / "args.txt", ["short", LONG])
    if where == "arguments file":
        argv = ["-A", "args.txt", "-C", "recorder @ARG@", "-r"]
    else:
        (tmp_path / "tasks").mkdir()
        (tmp_path / "tasks" / "a.sh").write_text("echo\n", encoding="utf-8")
        argv = ["-T", "tasks", "-C", f"recorder @TASK@ {LONG}", "-r"]

    result = run_cli(argv, env=recorder.env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "max_argument_length" in lines[0] and "2000" in lines[0]
    assert len(lines[0]) < 500  # names the problem, does not echo the whole argument
    assert recorder.calls() == []  # not even the short line ran
    assert not (home / "parallelr" / "logs").exists()


def test_user_config_cannot_raise_max_argument_length(run_cli, recorder, user_config, tmp_path, home):
    user_config("security:\n  max_argument_length: 5000\n")
    write_arguments(tmp_path / "args.txt", [LONG])

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=recorder.env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "max_argument_length 1000" in result.stderr
    assert "security" in result.stderr  # the warning that the user's security section is ignored
    assert recorder.calls() == []
