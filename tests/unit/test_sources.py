"""The built-in task sources: -T task files and the -A arguments file."""

from __future__ import annotations

import logging
import os
import shlex
import types
from pathlib import Path

import pluggy
import pytest

from parallelr import hookspecs
from parallelr.errors import CommandError, NoTasksError, SourceError, UsageError
from parallelr.model import Task
from parallelr.plugins.sources import argument_lines, arguments_file, task_files
from parallelr.request import RunRequest


def make_config(
    tasks_dir=(),
    command="bash @TASK@",
    args_file=None,
    separator=None,
    env_var=(),
    file_extension=None,
    shell=False,
    max_argument_length=1000,
    max_file_size=1048576,
):
    request = RunRequest(
        task_paths=[str(path) for path in tasks_dir],
        command=command,
        arguments_file=None if args_file is None else str(args_file),
        separator=separator,
        env_names=tuple(env_var),
        file_extension=file_extension,
        shell=shell,
    )
    settings = types.SimpleNamespace(
        security=types.SimpleNamespace(max_argument_length=max_argument_length),
        advanced=types.SimpleNamespace(max_file_size=max_file_size),
    )
    return types.SimpleNamespace(request=request, settings=settings)


def files(directory: Path, *names: str, content: str = "echo hi\n") -> list:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / name
        path.write_text(content, encoding="utf-8")
        paths.append(str(path))
    return paths


def collect_files(**kwargs) -> list:
    return task_files.parallelr_collect_tasks(make_config(**kwargs))


def collect_arguments(**kwargs):
    return arguments_file.parallelr_collect_tasks(make_config(**kwargs))


def write_args(tmp_path: Path, text: str, name: str = "args.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- -T task files -------------------------------------------------------------------------


def test_directory_yields_its_regular_files_sorted(tmp_path):
    d = tmp_path / "tasks"
    expected = files(d, "b.sh", "a.sh", ".hidden", "c.txt")
    (d / "sub").mkdir()
    files(d / "sub", "nested.sh")
    tasks = collect_files(tasks_dir=[d])
    assert [t.source for t in tasks] == sorted(expected)
    assert [t.argv for t in tasks] == [("bash", path) for path in sorted(expected)]
    assert all(isinstance(t, Task) and t.env == () and t.shell is False and t.index == 0 for t in tasks)


def test_symlink_to_a_file_counts_and_keeps_its_own_path(tmp_path):
    target = files(tmp_path / "real", "target.sh")[0]
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "link.sh").symlink_to(target)
    (d / "dangling.sh").symlink_to(tmp_path / "missing")
    (d / "dirlink").symlink_to(tmp_path / "real")
    assert [t.source for t in collect_files(tasks_dir=[d])] == [str(d / "link.sh")]


def test_explicit_files_and_relative_paths_become_absolute(tmp_path, monkeypatch):
    files(tmp_path, "one.py", "two.py")
    monkeypatch.chdir(tmp_path)
    tasks = collect_files(tasks_dir=["two.py", "./one.py"], command="python3 @TASK@ --verbose")
    assert [t.argv for t in tasks] == [
        ("python3", str(tmp_path / "one.py"), "--verbose"),
        ("python3", str(tmp_path / "two.py"), "--verbose"),
    ]


def test_quoted_glob_pattern_is_expanded(tmp_path):
    d = tmp_path / "tasks"
    expected = files(d, "a.txt", "b.txt")
    files(d, "c.log")
    (d / "dir.txt").mkdir()
    assert [t.source for t in collect_files(tasks_dir=[str(d / "*.txt")])] == expected


def test_repeated_entries_are_deduplicated_and_sorted(tmp_path):
    d1 = tmp_path / "d1"
    d2 = tmp_path / "d2"
    a = files(d1, "z.sh", "a.sh")
    b = files(d2, "m.sh")
    tasks = collect_files(tasks_dir=[d2, d1, a[0], str(d1 / "*.sh"), b[0]])
    assert [t.source for t in tasks] == sorted(a + b)


@pytest.mark.parametrize(
    "extension, kept",
    [
        ("txt", ["a.txt", "d.TXT"]),
        (".txt", ["a.txt", "d.TXT"]),
        ("TXT", ["a.txt", "d.TXT"]),
        ("csv,tsv,.txt", ["a.txt", "b.csv", "c.tsv", "d.TXT"]),
        (" csv , log ", ["b.csv", "e.log"]),
    ],
)
def test_file_extension_filter(tmp_path, extension, kept):
    d = tmp_path / "d"
    files(d, "a.txt", "b.csv", "c.tsv", "d.TXT", "e.log", "ftxt", "g.txt.bak")
    tasks = collect_files(tasks_dir=[d], file_extension=extension)
    assert [os.path.basename(t.source) for t in tasks] == kept


def test_file_extension_filter_applies_to_explicit_files(tmp_path):
    paths = files(tmp_path, "a.txt", "b.log")
    tasks = collect_files(tasks_dir=paths, file_extension="txt")
    assert [t.source for t in tasks] == [paths[0]]


def test_filter_that_keeps_nothing_is_no_tasks(tmp_path):
    d = tmp_path / "d"
    files(d, "a.txt")
    with pytest.raises(NoTasksError) as caught:
        collect_files(tasks_dir=[d], file_extension="csv")
    assert str(caught.value) == f"No task files found in specified paths matching extensions: csv (-T {d})"


def test_empty_file_extension_is_an_error(tmp_path):
    files(tmp_path / "d", "a.txt")
    with pytest.raises(UsageError, match=r"--file-extension names no extension"):
        collect_files(tasks_dir=[tmp_path / "d"], file_extension=" , ")


def test_missing_path_is_an_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SourceError, match=r"^task path does not exist: ") as caught:
        collect_files(tasks_dir=[missing])
    assert str(missing) in str(caught.value)


def test_pattern_matching_nothing_next_to_other_entries_warns(tmp_path, caplog):
    paths = files(tmp_path, "a.sh")
    with caplog.at_level(logging.WARNING, logger="parallelr.sources"):
        tasks = collect_files(tasks_dir=[paths[0], str(tmp_path / "*.none")])
    assert [t.source for t in tasks] == paths
    assert [r.getMessage() for r in caplog.records] == [f"-T {tmp_path / '*.none'} yields no task files"]


def test_empty_directory_is_no_tasks(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoTasksError, match=r"^No task files found"):
        collect_files(tasks_dir=[tmp_path / "empty"])


def test_file_over_max_file_size_is_a_task_whose_size_is_checked_when_it_runs(tmp_path):
    small = files(tmp_path, "small.sh", content="x" * 2048)[0]
    big = files(tmp_path, "big.sh", content="x" * 2049)[0]
    tasks = collect_files(tasks_dir=[small, big], max_file_size=2048)
    assert [(t.source, t.task_file) for t in tasks] == [(big, big), (small, small)]


def test_device_given_with_t_contributes_no_task(tmp_path, caplog):
    paths = files(tmp_path, "a.sh")
    with caplog.at_level(logging.WARNING, logger="parallelr.sources"):
        tasks = collect_files(tasks_dir=[os.devnull, paths[0]])
    assert [t.source for t in tasks] == paths
    assert f"-T {os.devnull} is not a regular file or a directory: skipped" in [
        r.getMessage() for r in caplog.records
    ]
    with pytest.raises(NoTasksError) as caught:
        collect_files(tasks_dir=[os.devnull])
    assert str(caught.value) == f"No task files found in specified paths (-T {os.devnull})"


def test_unreadable_directory_is_an_error(tmp_path, monkeypatch):
    d = tmp_path / "locked"
    files(d, "a.sh")

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    # chmod 0 does not stop root, so the refusal is simulated where the directory is listed.
    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(SourceError) as caught:
        collect_files(tasks_dir=[d])
    assert str(caught.value) == f"cannot read task directory {d}: Permission denied"


def test_unicode_and_spaces_in_paths_stay_one_word(tmp_path):
    d = tmp_path / "dir with spaces ü"
    paths = files(d, "tâche 1.sh", "naïve file's.sh")
    tasks = collect_files(tasks_dir=[d], command="bash '@TASK@' --log=\"@TASK@.log\"")
    assert [t.argv for t in tasks] == [("bash", p, f"--log={p}.log") for p in sorted(paths)]


def test_command_without_task_placeholder_warns_once(tmp_path, caplog):
    d = tmp_path / "d"
    files(d, "a", "b", "c")
    with caplog.at_level(logging.WARNING, logger="parallelr.sources"):
        tasks = collect_files(tasks_dir=[d], command="date")
    assert [t.argv for t in tasks] == [("date",)] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "the command has no @TASK@ placeholder: every task runs the same command"
    ]


def test_task_path_longer_than_max_argument_length_is_an_error(tmp_path):
    path = files(tmp_path, "a" * 60)[0]
    with pytest.raises(CommandError, match=r"exceeds max_argument_length 50"):
        collect_files(tasks_dir=[path], max_argument_length=50)


def test_shell_mode_tasks(tmp_path):
    path = files(tmp_path, "it's.sh")[0]
    (task,) = collect_files(tasks_dir=[path], command="bash @TASK@ | tee out", shell=True)
    assert task.shell is True
    assert task.argv == ("/bin/sh", "-c", f"bash {shlex.quote(path)} | tee out")
    assert "'\"'\"'s.sh'" in task.argv[2]


def test_task_files_is_not_for_arguments_mode(tmp_path):
    path = files(tmp_path, "t.sh")[0]
    args = write_args(tmp_path, "a\n")
    assert task_files.parallelr_collect_tasks(make_config(tasks_dir=[path], args_file=args)) is None
    assert task_files.parallelr_collect_tasks(make_config(tasks_dir=[])) is None


# --- -A arguments file: reading and splitting ----------------------------------------------


@pytest.mark.parametrize(
    "separator, line, columns",
    [
        (None, "  a b,c\td  ", ("a b,c\td",)),
        ("space", "a  b   c", ("a", "b", "c")),
        ("space", "a\tb c", ("a\tb", "c")),
        ("whitespace", "a \t b\t\tc", ("a", "b", "c")),
        ("tab", "a b\t\tc d\te", ("a b", "c d", "e")),
        ("comma", "a, b ,,c", ("a", "b", "", "c")),
        ("semicolon", "a; b;;c", ("a", "b", "", "c")),
        ("pipe", "a| b||c", ("a", "b", "", "c")),
        ("colon", "root:x:0:0::/root:/bin/sh", ("root", "x", "0", "0", "", "/root", "/bin/sh")),
    ],
)
def test_separators(tmp_path, separator, line, columns):
    args = write_args(tmp_path, line + "\n")
    (task,) = list(collect_arguments(args_file=args, separator=separator, command="p @ARG@"))
    assert task.arguments == columns
    assert task.argv == ("p", columns[0])


def test_comments_and_blank_lines_are_skipped_with_true_line_numbers(tmp_path):
    args = write_args(tmp_path, "# hosts\n\nserver1\n   \n  # indented comment\n  server2  \r\nserver3")
    tasks = list(collect_arguments(args_file=args, command="ping -c 1 @ARG@"))
    assert [(t.argv, t.line_number, t.source) for t in tasks] == [
        (("ping", "-c", "1", "server1"), 3, f"{args}:3"),
        (("ping", "-c", "1", "server2"), 6, f"{args}:6"),
        (("ping", "-c", "1", "server3"), 7, f"{args}:7"),
    ]


def test_byte_order_mark_is_not_part_of_the_first_argument(tmp_path):
    args = tmp_path / "bom.txt"
    args.write_bytes(b"\xef\xbb\xbfhost1\nhost2\n")
    assert [t.arguments for t in collect_arguments(args_file=args, command="p @ARG@")] == [
        ("host1",),
        ("host2",),
    ]


@pytest.mark.parametrize("text", ["", "\n\n   \n", "# only\n  # comments\n\n"])
def test_empty_arguments_file_is_an_error(tmp_path, text):
    args = write_args(tmp_path, text)
    with pytest.raises(SourceError) as caught:
        collect_arguments(args_file=args, command="p @ARG@")
    assert str(caught.value) == (
        f"arguments file is empty (no arguments, only comments or blank lines): {args}"
    )


def test_missing_arguments_file(tmp_path):
    with pytest.raises(SourceError) as caught:
        collect_arguments(args_file=tmp_path / "nope.txt", command="p @ARG@")
    assert str(caught.value) == f"arguments file does not exist: {tmp_path / 'nope.txt'}"


def test_directory_as_arguments_file(tmp_path):
    with pytest.raises(SourceError, match=r"arguments file is a directory"):
        collect_arguments(args_file=tmp_path, command="p @ARG@")


def test_arguments_source_is_not_for_task_files_mode(tmp_path):
    assert arguments_file.parallelr_collect_tasks(make_config(tasks_dir=[tmp_path])) is None


# --- -A with or without a -T template ------------------------------------------------------


def test_template_file_is_task_and_source(tmp_path, monkeypatch):
    files(tmp_path, "deploy.sh")
    write_args(tmp_path, "s1,8080\ns2,8081\n")
    monkeypatch.chdir(tmp_path)
    tasks = list(
        collect_arguments(
            tasks_dir=["deploy.sh"],
            args_file="args.txt",
            separator="comma",
            command="bash @TASK@ --host @ARG_1@ --port @ARG_2@",
        )
    )
    template = str(tmp_path / "deploy.sh")
    assert [(t.argv, t.source, t.line_number) for t in tasks] == [
        (("bash", template, "--host", "s1", "--port", "8080"), template, 1),
        (("bash", template, "--host", "s2", "--port", "8081"), template, 2),
    ]


def test_template_directory_is_an_error(tmp_path):
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError) as caught:
        collect_arguments(tasks_dir=[tmp_path], args_file=args)
    message = str(caught.value)
    assert "template" in message and "file" in message and "directory" in message
    assert message.endswith(str(tmp_path))


def test_several_templates_are_an_error(tmp_path):
    paths = files(tmp_path, "a.sh", "b.sh")
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError, match=r"-T must be a single template file, not 2 paths"):
        collect_arguments(tasks_dir=paths, args_file=args)


def test_missing_template_is_an_error(tmp_path):
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError, match=r"^template file does not exist: "):
        collect_arguments(tasks_dir=[tmp_path / "nope.sh"], args_file=args)


def test_template_over_max_file_size_is_an_error(tmp_path):
    template = files(tmp_path, "t.sh", content="x" * 1025)[0]
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError, match=r"template file is too large: .* 1025 bytes.* 1024 bytes"):
        collect_arguments(tasks_dir=[template], args_file=args, max_file_size=1024)


def test_task_placeholder_without_template_is_an_error(tmp_path):
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError, match=r"uses @TASK@ but no template file"):
        collect_arguments(args_file=args, command="bash @TASK@ @ARG@")


def test_arguments_unused_without_template_is_an_error(tmp_path):
    args = write_args(tmp_path, "a\n")
    with pytest.raises(SourceError, match=r"arguments would be unused"):
        collect_arguments(args_file=args, command="uptime")


def test_env_only_without_template_is_fine(tmp_path):
    args = write_args(tmp_path, "server1\nserver2\n")
    tasks = list(collect_arguments(args_file=args, env_var=["HOSTNAME"], command="ssh $HOSTNAME uptime"))
    assert [(t.argv, t.env, t.command) for t in tasks] == [
        (("ssh", "server1", "uptime"), (("HOSTNAME", "server1"),), "HOSTNAME=server1 ssh server1 uptime"),
        (("ssh", "server2", "uptime"), (("HOSTNAME", "server2"),), "HOSTNAME=server2 ssh server2 uptime"),
    ]


def test_several_env_names_take_the_columns(tmp_path):
    template = files(tmp_path, "deploy.sh")[0]
    args = write_args(tmp_path, "s1,8080,prod\n")
    (task,) = collect_arguments(
        tasks_dir=[template], args_file=args, separator="comma", env_var=["HOSTNAME", "PORT", "ENV"]
    )
    assert task.env == (("HOSTNAME", "s1"), ("PORT", "8080"), ("ENV", "prod"))
    assert task.command == f"HOSTNAME=s1 PORT=8080 ENV=prod bash {template}"


# --- -A checks done before anything runs ---------------------------------------------------


def test_more_env_names_than_columns_is_a_mismatch_error(tmp_path):
    args = write_args(tmp_path, "a\nc\n")
    with pytest.raises(SourceError, match=r"^mismatch") as caught:
        collect_arguments(args_file=args, separator="comma", env_var=["X", "Y"], command="p $X")
    assert f"line 1 of {args} has 1 columns" in str(caught.value)


def test_fewer_env_names_than_columns_warns_once(tmp_path, caplog):
    args = write_args(tmp_path, "a,b\nc,d\n\ng,h\n")
    with caplog.at_level(logging.WARNING, logger="parallelr.sources"):
        tasks = collect_arguments(args_file=args, separator="comma", env_var=["X"], command="p $X")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "mismatch" in messages[0]
    assert "3 lines" in messages[0] and "line 1" in messages[0]
    assert [t.env for t in tasks] == [(("X", "a"),), (("X", "c"),), (("X", "g"),)]


def test_lines_with_different_column_counts_are_refused_with_their_line_numbers(tmp_path):
    args = write_args(tmp_path, "a,b,c\nd,e\n# note\nf,g,h\n")
    with pytest.raises(SourceError) as caught:
        # the count check comes first, before the -E and placeholder checks of each line
        collect_arguments(args_file=args, separator="comma", env_var=["X", "Y", "Z"], command="p $X")
    assert str(caught.value) == (
        f"Inconsistent argument counts in {args}: 3 argument(s): lines 1, 4; 2 argument(s): lines 2 "
        "(every line must split into the same number of columns)"
    )


def test_inconsistent_counts_of_a_huge_file_stay_one_short_line(tmp_path):
    args = write_args(tmp_path, "a,b\n" + "c\n" * 5000)
    with pytest.raises(SourceError) as caught:
        collect_arguments(args_file=args, separator="comma", command="p @ARG@")
    assert str(caught.value).startswith(
        f"Inconsistent argument counts in {args}: 2 argument(s): lines 1; "
        "1 argument(s): lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 4990 more "
    )


def test_placeholder_beyond_the_columns_names_the_line(tmp_path):
    args = write_args(tmp_path, "# note\na,b\nd,e\n")
    with pytest.raises(CommandError) as caught:
        collect_arguments(args_file=args, separator="comma", command="p @ARG_1@ @ARG_3@")
    assert str(caught.value).startswith(
        "line 2 has 2 arguments but the command uses @ARG_3@: placeholder beyond the columns"
    )


def test_nul_byte_is_a_clear_error(tmp_path):
    args = tmp_path / "args.txt"
    args.write_bytes(b"fine\nbad\x00value\n")
    with pytest.raises(CommandError) as caught:
        collect_arguments(args_file=args, command="p @ARG@")
    assert str(caught.value).startswith(f"validation failed: line 2 of {args} contains a null byte")


def test_argument_over_max_argument_length_names_the_line(tmp_path):
    args = write_args(tmp_path, "short\n" + "x" * 51 + "\n")
    with pytest.raises(CommandError, match=rf"^line 2 of {args}: argument 1 .* max_argument_length 50"):
        collect_arguments(args_file=args, command="p @ARG@", max_argument_length=50)


def test_invalid_utf8_bytes_are_preserved(tmp_path):
    raw = b"caf\xe9 \xff\xfe"
    args = tmp_path / "args.txt"
    args.write_bytes(raw + b"\n")
    (task,) = collect_arguments(args_file=args, command="p @ARG@")
    assert os.fsencode(task.argv[1]) == raw
    assert os.fsencode(task.arguments[0]) == raw


# --- -A streams lazily ---------------------------------------------------------------------


def test_tasks_are_sized_and_reiterable(tmp_path):
    args = write_args(tmp_path, "".join(f"host{n}\n" for n in range(50)))
    tasks = collect_arguments(args_file=args, command="p @ARG@")
    assert not isinstance(tasks, (list, tuple))
    assert len(tasks) == 50
    iterator = iter(tasks)
    assert next(iterator).argv == ("p", "host0")
    first = list(tasks)
    assert first == list(tasks)
    assert [t.line_number for t in first] == list(range(1, 51))


def test_a_bad_line_added_after_the_check_raises_while_streaming(tmp_path):
    args = write_args(tmp_path, "a,b\nc,d\n")
    tasks = collect_arguments(args_file=args, separator="comma", command="p @ARG_2@")
    args.write_text("a,b\nc\n", encoding="utf-8")
    iterator = iter(tasks)
    assert next(iterator).argv == ("p", "b")
    with pytest.raises(CommandError, match=r"line 2 has 1 arguments .*placeholder"):
        next(iterator)


def test_extra_lines_added_after_the_check_are_refused(tmp_path):
    args = write_args(tmp_path, "a\n")
    tasks = collect_arguments(args_file=args, command="p @ARG@")
    args.write_text("a\nb\n", encoding="utf-8")
    iterator = iter(tasks)
    assert next(iterator).argv == ("p", "a")
    with pytest.raises(SourceError, match=r"changed while the run was reading it.*line 2 is new"):
        next(iterator)


# --- both sources behind pluggy ------------------------------------------------------------


def test_exactly_one_source_answers_through_pluggy(tmp_path):
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(task_files)
    manager.register(arguments_file)
    d = tmp_path / "d"
    files(d, "a.sh")
    answers = manager.hook.parallelr_collect_tasks(config=make_config(tasks_dir=[d]))
    assert [[t.source for t in answer] for answer in answers] == [[str(d / "a.sh")]]
    args = write_args(tmp_path, "x\n")
    answers = manager.hook.parallelr_collect_tasks(config=make_config(args_file=args, command="p @ARG@"))
    assert [[t.argv for t in answer] for answer in answers] == [[("p", "x")]]


# --- -A line ends, the fast count, and the check of a big file --------------------------------


def test_cr_only_line_ends_are_line_ends(tmp_path):
    args = tmp_path / "mac.txt"
    args.write_bytes(b"a\rb\rc\r")
    tasks = collect_arguments(args_file=args, command="p @ARG@")
    assert len(tasks) == 3
    assert [(t.arguments, t.line_number) for t in tasks] == [(("a",), 1), (("b",), 2), (("c",), 3)]


def test_crlf_and_mixed_line_ends(tmp_path):
    args = tmp_path / "mixed.txt"
    args.write_bytes(b"a\r\nb\r\n\r\n# c\rd\r\re\nf")
    tasks = collect_arguments(args_file=args, command="p @ARG@")
    found = [(t.arguments[0], t.line_number) for t in tasks]
    assert found == [("a", 1), ("b", 2), ("d", 5), ("e", 7), ("f", 8)]


def test_a_cr_split_across_read_blocks_is_one_line_end(tmp_path, monkeypatch):
    monkeypatch.setattr(argument_lines, "BLOCK", 2)  # every \r\n falls on a block boundary somewhere
    args = tmp_path / "crlf.txt"
    args.write_bytes(b"a\r\nbb\r\nccc\r\n\r\nd\r")
    expected = [(1, "a"), (2, "bb"), (3, "ccc"), (5, "d")]
    assert list(argument_lines.argument_lines(str(args))) == expected
    assert argument_lines.count_argument_lines(str(args)) == 4


def test_the_whitespace_the_count_skips_is_what_strip_strips():
    everything = "".join(chr(code) for code in range(0x110000) if chr(code).isspace())
    assert everything.replace("\n", "").replace("\r", "") == argument_lines.WHITESPACE
    pattern = argument_lines._SPACE
    import re

    assert all(re.fullmatch(pattern, char.encode("utf-8")) for char in argument_lines.WHITESPACE)
    assert not re.fullmatch(pattern, "\u200b".encode("utf-8"))  # zero width space: not stripped


def test_the_fast_count_is_the_number_of_argument_lines(tmp_path, monkeypatch):
    """Random files of the awkward pieces (comments, blanks, Unicode spaces, BOMs, every line
    end, invalid UTF-8): the C-speed count is exactly what the line reader yields."""
    import random

    pieces = [b"a", b"#", b" ", b"\t", b"\n", b"\r", b"\r\n", b"\xc2\xa0", b"\xe2\x80\x80", b"\xef\xbb\xbf",
              b"\xc2", b"\x00", b"\x0b", b"\x1c", b"\xe3\x80\x80", b"\xe2\x80\xa8", b"\xff", b"\xe2\x80\x8b"]
    chooser = random.Random(20261123)
    path = tmp_path / "random.txt"
    for block in (3, 7, 1 << 18):
        monkeypatch.setattr(argument_lines, "BLOCK", block)
        for _ in range(400):
            data = b"".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 40)))
            if chooser.random() < 0.2:
                data = b"\xef\xbb\xbf" + data
            path.write_bytes(data)
            expected = len(list(argument_lines.argument_lines(str(path))))
            assert argument_lines.count_argument_lines(str(path)) == expected, (data, block)


def _plan(args: Path, separator=None, command="p @ARG@"):
    from parallelr.command import CommandTemplate

    return arguments_file.ArgumentsPlan(
        path=str(args), template=CommandTemplate.parse(command, ()), template_path=None, separator=separator,
        env_names=(), max_argument_length=1000,
    )


def test_a_small_file_is_checked_in_full_before_anything_runs(tmp_path):
    args = write_args(tmp_path, "".join(f"h{n}\n" for n in range(1000)))
    tasks = arguments_file.check_arguments(_plan(args))
    assert tasks.checks is None and len(tasks) == 1000


def test_a_big_file_is_checked_while_it_runs_and_a_bad_line_stops_it(tmp_path):
    args = tmp_path / "big.txt"
    args.write_bytes(b"".join(b"h%d\n" % n for n in range(5000)) + b"bad\x00line\n" + b"h\n" * 10)
    tasks = arguments_file.check_arguments(_plan(args), budget=0.0)  # no time to check before the run
    assert tasks.checks is not None and len(tasks) == 5011
    tasks.checks.join(10)
    iterator = iter(tasks)
    with pytest.raises(CommandError, match=r"validation failed: line 5001 of .* null byte"):
        next(iterator)  # found later: not even the first line is handed out any more


def test_a_big_file_with_inconsistent_counts_is_stopped_too(tmp_path):
    args = tmp_path / "big.txt"
    args.write_bytes(b"a,b\n" * 5000 + b"c\n")
    tasks = arguments_file.check_arguments(_plan(args, "comma"), budget=0.0)
    assert tasks.checks is not None
    tasks.checks.join(10)
    with pytest.raises(SourceError, match=r"Inconsistent argument counts .* 1 argument\(s\): lines 5001"):
        list(tasks)


def test_a_big_good_file_runs_every_line(tmp_path):
    args = tmp_path / "big.txt"
    args.write_bytes(b"".join(b"h%d\n" % n for n in range(5000)))
    tasks = arguments_file.check_arguments(_plan(args), budget=0.0)
    assert tasks.checks is not None
    assert [task.line_number for task in tasks] == list(range(1, 5001))
    assert tasks.checks.error is None


def test_a_line_the_background_check_has_not_reached_is_checked_when_it_is_handed_out(tmp_path):
    args = write_args(tmp_path, "a,b\nc,d\ne\nf,g\n")
    idle = types.SimpleNamespace(error=None, ensure_running=lambda: None)  # a check still far behind
    plan = _plan(args, "comma", "p @ARG_1@")
    tasks = arguments_file.ArgumentTasks(plan, 4, idle, width=2)  # type: ignore[arg-type]
    iterator = iter(tasks)
    assert [next(iterator).arguments for _ in range(2)] == [("a", "b"), ("c", "d")]
    with pytest.raises(SourceError, match=r"Inconsistent argument counts in .*: 2 argument\(s\) before line"):
        next(iterator)
