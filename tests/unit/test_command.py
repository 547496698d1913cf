"""The command template: word splitting, placeholders, -E references, --shell quoting, checks."""

from __future__ import annotations

import subprocess

import pytest

from parallelr.command import CommandTemplate, check_argv, parse_env_names
from parallelr.errors import CommandError, UsageError

NASTY_VALUES = [
    "plain",
    "",
    "two words",
    "it's",
    'say "hi"',
    "back\\slash\\",
    "$HOME ${HOME} $(touch pwned) `touch pwned`",
    "; rm -rf ~ | tee x && echo y > z",
    "line one\nline two\n",
    "*.txt ? [a-z] ~ {a,b}",
    "'\"'\"\\'$`",
    "tab\there",
    "-n",
    "# not a comment",
    "EOF",
    "ünïcödé ✓",
]


def render(text: str, arguments=(), task=None, env=None, env_names=(), shell=False):
    return CommandTemplate.parse(text, env_names, shell=shell).render(task, list(arguments), env or {})


# --- the tokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, argv",
    [
        ("echo a  b\tc\nd", ("echo", "a", "b", "c", "d")),
        ("echo 'a b' \"c d\"", ("echo", "a b", "c d")),
        ("echo 'a'\"b\"c", ("echo", "abc")),
        ("echo '' \"\"", ("echo", "", "")),
        ("echo a\\ b", ("echo", "a b")),
        ("echo \\'x\\\"", ("echo", "'x\"")),
        ("echo '\\n' \"\\n\"", ("echo", "\\n", "\\n")),
        ('echo "\\" \\\\ \\$ \\` \\a"', ("echo", '" \\ $ ` \\a')),
        ("echo a\\\nb", ("echo", "ab")),
        ("echo a \\\n b", ("echo", "a", "b")),
        ('echo "a\\\nb"', ("echo", "ab")),
        ("echo 'a\\\nb'", ("echo", "a\\\nb")),
        ("echo \\$HOME '$HOME' \"$HOME\"", ("echo", "$HOME", "$HOME", "$HOME")),
        ("echo # not a comment", ("echo", "#", "not", "a", "comment")),
    ],
)
def test_words_follow_posix_shell_rules(text, argv):
    assert render(text) == argv


@pytest.mark.parametrize("text", ["echo 'abc", 'echo "abc', "echo 'a' \"b", 'echo "a\\"'])
def test_unbalanced_quote_is_an_error(text):
    with pytest.raises(CommandError, match=r"^unbalanced quote in command: "):
        CommandTemplate.parse(text)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\\\n"])
def test_empty_command_is_an_error(text):
    with pytest.raises(CommandError, match=r"empty command"):
        CommandTemplate.parse(text)


def test_trailing_lone_backslash_is_an_error():
    with pytest.raises(CommandError, match=r"lone backslash"):
        CommandTemplate.parse("echo a\\")


def test_unbalanced_quote_in_shell_mode_is_an_error():
    with pytest.raises(CommandError, match=r"^unbalanced quote in command: "):
        CommandTemplate.parse("echo 'abc", shell=True)


# --- placeholders --------------------------------------------------------------------------


def test_task_placeholder_in_every_context():
    argv = render("cat @TASK@ '@TASK@' \"@TASK@\" x@TASK@y --in=@TASK@", task="/t/a b.txt")
    assert argv == ("cat", "/t/a b.txt", "/t/a b.txt", "/t/a b.txt", "x/t/a b.txty", "--in=/t/a b.txt")


def test_arg_is_arg_1_and_indexes_are_one_based():
    argv = render("p @ARG@ @ARG_1@ @ARG_2@ @ARG_10@", arguments=[str(n) for n in range(1, 11)])
    assert argv == ("p", "1", "1", "2", "10")


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_a_value_is_always_exactly_one_word(value):
    assert render("prog @ARG@", [value]) == ("prog", value)
    assert render("prog '@ARG@'", [value]) == ("prog", value)
    assert render('prog "[@ARG@]"', [value]) == ("prog", f"[{value}]")
    assert render("prog --x=@ARG@ @ARG_2@", [value, value]) == ("prog", f"--x={value}", value)


@pytest.mark.parametrize(
    "text, uses_task, max_arg_index",
    [
        ("echo hi", False, 0),
        ("bash @TASK@", True, 0),
        ("echo @ARG@", False, 1),
        ("echo @ARG_3@ @ARG@", False, 3),
        ("echo '@ARG_12@' @TASK@", True, 12),
        ("echo @ARG_@ @ARGS@ @task@", False, 0),
    ],
)
def test_uses_task_and_max_arg_index(text, uses_task, max_arg_index):
    for shell in (False, True):
        template = CommandTemplate.parse(text, shell=shell)
        assert template.uses_task is uses_task
        assert template.max_arg_index == max_arg_index


def test_unknown_placeholder_lookalikes_stay_literal():
    assert render("echo @ARG_@ @ARGS@ @task@ a@b", ["x"]) == ("echo", "@ARG_@", "@ARGS@", "@task@", "a@b")


def test_escaped_at_sign_is_not_a_placeholder():
    assert render("echo \\@ARG@", ["x"]) == ("echo", "@ARG@")


def test_arg_0_is_rejected():
    with pytest.raises(CommandError, match=r"@ARG_0@ is not a valid placeholder"):
        CommandTemplate.parse("echo @ARG_0@")


def test_render_beyond_the_arguments_names_the_placeholder():
    template = CommandTemplate.parse("echo @ARG_3@")
    with pytest.raises(CommandError, match=r"has 2 arguments but the command uses @ARG_3@: placeholder"):
        template.render(None, ["a", "b"], {})


def test_render_task_without_task_path():
    with pytest.raises(CommandError, match=r"@TASK@"):
        CommandTemplate.parse("bash @TASK@").render(None, [], {})


def test_template_is_a_reusable_value():
    template = CommandTemplate.parse("echo @ARG@")
    assert template == CommandTemplate.parse("echo @ARG@")
    assert template.render(None, ["a"], {}) == ("echo", "a")
    assert template.render(None, ["b"], {}) == ("echo", "b")


# --- $NAME of -E variables -----------------------------------------------------------------


def test_env_names_expand_where_a_shell_would():
    argv = render(
        'ssh $HOST "${HOST}:$PORT" \'$HOST\' \\$HOST "\\$HOST" x${HOST}y',
        env={"HOST": "h 1", "PORT": "22"},
        env_names=("HOST", "PORT"),
    )
    assert argv == ("ssh", "h 1", "h 1:22", "$HOST", "$HOST", "$HOST", "xh 1y")


def test_spec_example_ssh_hostname_uptime():
    argv = render("ssh $HOSTNAME uptime", env={"HOSTNAME": "server1"}, env_names=("HOSTNAME",))
    assert argv == ("ssh", "server1", "uptime")


def test_unknown_and_partial_names_stay_literal():
    argv = render(
        "echo $OTHER ${OTHER} $HOSTX ${HOST $ $1 ${HOST:-x}",
        env={"HOST": "h"},
        env_names=("HOST",),
    )
    assert argv == ("echo", "$OTHER", "${OTHER}", "$HOSTX", "${HOST", "$", "$1", "${HOST:-x}")


def test_env_value_never_splits_or_expands():
    value = "a b $(touch pwned) `x` *"
    assert render("echo $V", env={"V": value}, env_names=("V",)) == ("echo", value)


def test_env_reference_without_value_stays_literal():
    assert render("echo $V", env={}, env_names=("V",)) == ("echo", "$V")


# --- operator warnings ---------------------------------------------------------------------


def test_operator_warnings_for_unquoted_shell_syntax():
    template = CommandTemplate.parse("mysqldump -h $DB x | gzip > out.gz 2>&1 ; echo $(date) `id` a&&b")
    warnings = template.operator_warnings()
    assert warnings == [
        f"the command contains '{word}' which is passed to the program as a plain argument (no shell); "
        "add --shell to run it through /bin/sh"
        for word in ["|", ">", "2>&1", ";", "$(date)", "`id`", "a&&b"]
    ]


def test_no_operator_warnings_for_quoted_syntax_or_shell_mode():
    assert CommandTemplate.parse("echo '|' \"a > b\" \\; x\\&\\&y").operator_warnings() == []
    assert CommandTemplate.parse("echo a | tee b", shell=True).operator_warnings() == []


def test_repeated_operator_warns_once():
    assert len(CommandTemplate.parse("a | b | c").operator_warnings()) == 1


# --- shell=True ----------------------------------------------------------------------------


def run_sh(argv) -> str:
    assert argv[:2] == ("/bin/sh", "-c")
    done = subprocess.run(argv, capture_output=True, check=True, timeout=10)
    return done.stdout.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_shell_quoting_round_trips_through_sh(value, tmp_path):
    text = (
        "cd " + str(tmp_path) + " && printf '%s\\n' @ARG@ \"@ARG@\" '@ARG@' x@ARG@y \"[\\@ARG@]\" "
        '"$(printf \'%s\' @ARG@)" "$(printf \'%s\' "@ARG@")" $@ARG@ "$@ARG@"'
    )
    argv = render(text, [value], shell=True)
    # $(...) drops trailing newlines, exactly as it would for any data.
    substituted = value.rstrip("\n")
    expected = [value, value, value, f"x{value}y", f"[\\{value}]", substituted, substituted]
    expected += [f"${value}", f"${value}"]
    assert run_sh(argv) == "".join(item + "\n" for item in expected)
    assert list(tmp_path.iterdir()) == []


def test_shell_mode_keeps_pipes_and_env_for_the_shell(tmp_path):
    argv = render("printf '%s\\n' @ARG@ $HOME | tr a-z A-Z", ["a b"], env_names=("HOME",), shell=True)
    assert argv == ("/bin/sh", "-c", "printf '%s\\n' 'a b' $HOME | tr a-z A-Z")


def test_shell_mode_task_command_shows_the_script():
    argv = render("bash @TASK@ >> log", task="/t/it's.sh", shell=True)
    assert argv[2] == "bash '/t/it'\"'\"'s.sh' >> log"


def test_shell_mode_leaves_placeholders_in_comments_alone():
    argv = render("echo @ARG@ # was @ARG@", ["x\ntouch pwned"], shell=True)
    assert argv[2] == "echo 'x\ntouch pwned' # was @ARG@"


@pytest.mark.parametrize(
    "text, where",
    [
        ("echo `echo @ARG@`", "`...`"),
        ("echo ${X:-@ARG@}", "${...}"),
        ('echo "${@ARG@}"', "${...}"),
        ("echo $((@ARG@ + 1))", "$((...))"),
        ("(( @ARG@ > 1 ))", "((...))"),
        ("echo $'@ARG@'", "$'...'"),
        ("cat <<EOF\n@ARG@\nEOF", "here-document"),
        ("cat <<'EOF'\n@ARG@\nEOF", "here-document"),
        ("cat <<@ARG@\nx\n", "here-document delimiter"),
    ],
)
def test_shell_mode_refuses_contexts_without_safe_quoting(text, where):
    with pytest.raises(CommandError, match=r"cannot be quoted safely with --shell") as caught:
        CommandTemplate.parse(text, shell=True)
    assert where in str(caught.value)


def test_shell_mode_placeholder_after_a_here_document_is_quoted():
    argv = render("cat <<EOF\nbody $x\nEOF\nprintf '%s\\n' @ARG@", ["a; touch pwned"], shell=True)
    assert argv[2] == "cat <<EOF\nbody $x\nEOF\nprintf '%s\\n' 'a; touch pwned'"


def test_shell_mode_case_inside_substitution_stops_placeholders():
    with pytest.raises(CommandError, match=r"case statement"):
        CommandTemplate.parse('echo "$(case a in a) echo x;; esac) @ARG@"', shell=True)


def test_shell_mode_nested_substitution_contexts(tmp_path):
    value = "a; touch pwned \" ' $(touch pwned2)"
    argv = render(
        "cd " + str(tmp_path) + " && printf '%s\\n' \"$(printf '%s' \"$(printf '%s' @ARG@)\")\"",
        [value],
        shell=True,
    )
    assert run_sh(argv) == value + "\n"
    assert list(tmp_path.iterdir()) == []


# --- check_argv ----------------------------------------------------------------------------


def test_check_argv_accepts_the_limit_exactly():
    check_argv(("echo", "x" * 1000), 1000)


def test_check_argv_names_the_long_argument_and_the_limit():
    with pytest.raises(CommandError) as caught:
        check_argv(("echo", "ok", "y" * 1001), 1000)
    message = str(caught.value)
    assert "argument 2" in message
    assert "'" + "y" * 40 + "'" in message
    assert "y" * 41 not in message
    assert "exceeds max_argument_length 1000" in message


def test_check_argv_refuses_nul_bytes():
    with pytest.raises(CommandError, match=r"argument 1 of the command contains a NUL byte"):
        check_argv(("echo", "a\0b"), 1000)


# --- parse_env_names -----------------------------------------------------------------------


def test_parse_env_names_splits_commas_and_repeats():
    assert parse_env_names(["HOST", " PORT , ENV", "_x1"]) == ("HOST", "PORT", "ENV", "_x1")
    assert parse_env_names([]) == ()


@pytest.mark.parametrize("value", ["A,,B", "A,", ",A", "", " "])
def test_parse_env_names_empty_entry(value):
    with pytest.raises(UsageError, match=r"empty") as caught:
        parse_env_names([value])
    assert repr(value) in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", ["1A", "A-B", "A B", "$A", "Ä"])
def test_parse_env_names_invalid_name(name):
    with pytest.raises(UsageError, match=r"not valid"):
        parse_env_names([name])


def test_parse_env_names_duplicate():
    with pytest.raises(UsageError, match=r"twice"):
        parse_env_names(["A,B", "A"])


def test_relative_program_path_is_resolved_where_parallelr_starts(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = CommandTemplate.parse("./process.sh @TASK@").render("/t/a.txt", (), {})
    assert argv == (str(tmp_path / "process.sh"), "/t/a.txt")
    assert CommandTemplate.parse("bash @TASK@").render("/t/a.txt", (), {}) == ("bash", "/t/a.txt")
    assert CommandTemplate.parse("bin/tool x").render(None, (), {}) == (str(tmp_path / "bin" / "tool"), "x")
