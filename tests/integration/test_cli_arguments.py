"""Arguments mode (-A, -S, -E) through the real CLI, with fake programs that record their argv and env.

Every example of the spec's "Arguments Mode" section (parallelr-README.md) runs here with a fake
``ssh``/``curl``/``ping``/``python``/``mysqldump``; the messages users grep for are COMPAT.md's.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Dict, List

import pytest

HOSTS = ["server1.example.com", "server2.example.com", "server3.example.com"]
SERVERS = [
    ("server1.example.com", "8080", "prod"),
    ("server2.example.com", "8081", "dev"),
    ("server3.example.com", "8082", "staging"),
]
# The spec's "Arguments File Format" example: comments and blank lines are skipped.
COMMENTED_HOSTS = """\
# Comments start with #
server1.example.com
server2.example.com
# Empty lines are skipped

server3.example.com
server4.example.com
"""
TEMPLATE = 'exec tmpl "$@"\n'  # a template script that hands over to the fake program "tmpl"


@pytest.fixture
def files(tmp_path: Path) -> Dict[str, Path]:
    made = {
        "hostnames.txt": "\n".join(HOSTS) + "\n",
        "servers.txt": "\n".join(",".join(columns) for columns in SERVERS) + "\n",
        "template.sh": TEMPLATE,
        "deploy.sh": TEMPLATE,
        "process.py": "print('a template that the fake python never runs')\n",
    }
    for name, text in made.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return {name: tmp_path / name for name in made}


@pytest.fixture
def fakes(fake_programs):
    fake_programs.add("tmpl", "python", "ping", "ssh", "curl", "mysqldump", "recorder")
    return fake_programs


def argvs(calls: List[dict]) -> List[List[str]]:
    return sorted(call["argv"] for call in calls)


def env_values(calls: List[dict], *names: str) -> List[tuple]:
    return sorted(tuple(call["env"].get(name) for name in names) for call in calls)


def created_line(stdout: str) -> List[str]:
    return [line for line in stdout.splitlines() if line.startswith("Created ")]


def dry_run_commands(stdout: str) -> List[str]:
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if "DRY RUN MODE" in line)
    return [line for line in lines[start + 1:] if line and not line.endswith("would run.")]


def assert_nothing_ran(fakes, home: Path) -> None:
    assert fakes.calls() == []
    assert not (home / "parallelr" / "logs").exists()
    assert not (home / "parallelr" / "workspace").exists()


# -- the spec's examples -------------------------------------------------------------------------


def test_environment_variable_mode(run_cli, run_files, fakes, files, home):
    argv = ["-T", "template.sh", "-A", "hostnames.txt", "-E", "HOSTNAME", "-C", "bash @TASK@"]

    dry = run_cli(argv, env=fakes.env)
    assert dry.returncode == 0, dry.stderr
    assert created_line(dry.stdout) == ["Created 3 tasks"]
    template = files["template.sh"]
    assert dry_run_commands(dry.stdout) == [f"HOSTNAME={host} bash {template}" for host in HOSTS]
    assert_nothing_ran(fakes, home)

    real = run_cli([*argv, "-r"], env=fakes.env)
    assert real.returncode == 0, real.output
    assert created_line(real.stdout) == ["Created 3 tasks"]
    calls = fakes.calls("tmpl")
    assert argvs(calls) == [[], [], []]
    assert env_values(calls, "HOSTNAME") == [(host,) for host in HOSTS]
    rows = run_files().rows
    assert [row["task_file"] for row in rows] == [str(template)] * 3
    assert sorted(row["command"] for row in rows) == [f"HOSTNAME={host} bash {template}" for host in HOSTS]


def test_command_argument_mode(run_cli, fakes, files):
    result = run_cli(
        ["-T", "process.py", "-A", "hostnames.txt", "-C", "python @TASK@ --host @ARG@", "-r"], env=fakes.env
    )

    assert result.returncode == 0, result.output
    assert argvs(fakes.calls("python")) == [[str(files["process.py"]), "--host", host] for host in HOSTS]


def test_combined_mode(run_cli, fakes, files):
    result = run_cli(
        ["-T", "template.sh", "-A", "hostnames.txt", "-E", "HOSTNAME", "-C", "bash @TASK@ @ARG@", "-r"],
        env=fakes.env,
    )

    assert result.returncode == 0, result.output
    calls = fakes.calls("tmpl")
    assert sorted((call["env"]["HOSTNAME"], *call["argv"]) for call in calls) == [(h, h) for h in HOSTS]


def test_multi_argument_mode_with_indexed_placeholders(run_cli, fakes, files):
    command = "bash @TASK@ --host @ARG_1@ --port @ARG_2@ --env @ARG_3@"

    argv = ["-T", "deploy.sh", "-A", "servers.txt", "-S", "comma", "-C", command, "-r"]

    result = run_cli(argv, env=fakes.env)

    assert result.returncode == 0, result.output
    assert argvs(fakes.calls("tmpl")) == [["--host", h, "--port", p, "--env", e] for h, p, e in SERVERS]


def test_multi_argument_mode_with_several_environment_variables(run_cli, fakes, files, home):
    argv = ["-T", "deploy.sh", "-A", "servers.txt", "-S", "comma", "-E", "HOSTNAME,PORT,ENV"]
    argv += ["-C", "bash @TASK@"]

    dry = run_cli(argv, env=fakes.env)
    assert dry.returncode == 0, dry.stderr
    deploy = files["deploy.sh"]
    expected = [f"HOSTNAME={h} PORT={p} ENV={e} bash {deploy}" for h, p, e in SERVERS]
    assert dry_run_commands(dry.stdout) == expected

    real = run_cli([*argv, "-r"], env=fakes.env)
    assert real.returncode == 0, real.output
    assert env_values(fakes.calls("tmpl"), "HOSTNAME", "PORT", "ENV") == sorted(SERVERS)


def test_arguments_only_ping_with_comments_and_blank_lines(run_cli, run_files, fakes, tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(COMMENTED_HOSTS, encoding="utf-8")

    result = run_cli(["-A", "hosts.txt", "-C", "ping -c 1 @ARG@", "-r"], env=fakes.env)

    assert result.returncode == 0, result.output
    assert created_line(result.stdout) == ["Created 4 tasks"]
    expected_hosts = [f"server{n}.example.com" for n in (1, 2, 3, 4)]
    assert argvs(fakes.calls("ping")) == [["-c", "1", host] for host in expected_hosts]
    rows = run_files().rows
    assert sorted(row["task_file"] for row in rows) == [f"{hosts}:{line}" for line in (2, 3, 6, 7)]
    assert {row["status"] for row in rows} == {"SUCCESS"}


def test_arguments_only_ssh_gets_the_host_name_from_the_environment_variable(
    run_cli, run_files, fakes, files
):
    argv = ["-A", "hostnames.txt", "-E", "HOSTNAME", "-C", "ssh $HOSTNAME uptime", "-r"]

    result = run_cli(argv, env=fakes.env)

    assert result.returncode == 0, result.output
    calls = fakes.calls("ssh")
    assert argvs(calls) == [[host, "uptime"] for host in HOSTS]
    assert sorted((call["env"]["HOSTNAME"], call["argv"][0]) for call in calls) == [(h, h) for h in HOSTS]
    commands = sorted(row["command"] for row in run_files().rows)
    assert commands == [f"HOSTNAME={host} ssh {host} uptime" for host in HOSTS]


@pytest.mark.parametrize(
    ("env_names", "command"),
    [((), "curl http://@ARG_1@:@ARG_2@/health"), (("-E", "HOST,PORT,ENV"), "curl http://$HOST:$PORT/health")],
)
def test_arguments_only_curl_with_several_columns(run_cli, fakes, files, env_names, command):
    result = run_cli(["-A", "servers.txt", "-S", "comma", *env_names, "-C", command, "-r"], env=fakes.env)

    assert result.returncode == 0, result.output
    calls = fakes.calls("curl")
    assert argvs(calls) == [[f"http://{h}:{p}/health"] for h, p, _ in SERVERS]
    if env_names:
        assert env_values(calls, "HOST", "PORT", "ENV") == sorted(SERVERS)


@pytest.mark.parametrize(
    ("separator", "line", "columns"),
    [
        ("space", "alpha  beta\tgamma delta", ["alpha", "beta\tgamma", "delta"]),
        ("whitespace", "alpha \t beta\tgamma", ["alpha", "beta", "gamma"]),
        ("tab", "alpha\t\tbeta gamma\tdelta", ["alpha", "beta gamma", "delta"]),
        ("comma", "alpha,beta gamma,delta", ["alpha", "beta gamma", "delta"]),
        ("semicolon", "alpha;beta;gamma", ["alpha", "beta", "gamma"]),
        ("pipe", "alpha|beta|gamma", ["alpha", "beta", "gamma"]),
        ("colon", "root:x:0", ["root", "x", "0"]),
    ],
)
def test_every_separator_splits_the_line_into_columns(run_cli, fakes, tmp_path, separator, line, columns):
    (tmp_path / "args.txt").write_text(f"# header comment\n{line}\n", encoding="utf-8")

    result = run_cli(
        ["-A", "args.txt", "-S", separator, "-C", "recorder @ARG_1@ @ARG_2@ @ARG_3@", "-r"], env=fakes.env
    )

    assert result.returncode == 0, result.output
    assert created_line(result.stdout) == ["Created 1 tasks"]
    assert argvs(fakes.calls("recorder")) == [columns]


# -- errors and warnings users grep for ----------------------------------------------------------


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_placeholder_beyond_the_columns_stops_before_anything_runs(run_cli, fakes, tmp_path, home):
    # Only the second line is short: the whole file is checked before the first task starts.
    (tmp_path / "args.txt").write_text("a,b,c\nd,e\n", encoding="utf-8")

    result = run_cli(["-A", "args.txt", "-S", "comma", "-C", "recorder @ARG_3@", "-r"], env=fakes.env)

    assert result.returncode == 1
    assert "placeholder" in one_error_line(result)
    assert_nothing_ran(fakes, home)


def test_separator_without_arguments_file_is_a_usage_error(run_cli, fakes, files, home):
    result = run_cli(["-T", "template.sh", "-S", "comma", "-C", "bash @TASK@", "-r"], env=fakes.env)

    assert result.returncode == 2
    assert "separator" in one_error_line(result)
    assert_nothing_ran(fakes, home)


def test_more_env_names_than_columns_is_a_mismatch_error(run_cli, fakes, files, home):
    result = run_cli(
        ["-A", "servers.txt", "-S", "comma", "-E", "A,B,C,D", "-C", "recorder $A", "-r"], env=fakes.env
    )

    assert result.returncode == 1
    assert "mismatch" in one_error_line(result)
    assert_nothing_ran(fakes, home)


def test_fewer_env_names_than_columns_warns_and_runs(run_cli, run_files, fakes, files):
    argv = ["-A", "servers.txt", "-S", "comma", "-E", "HOST", "-C", "recorder $HOST", "-r"]

    result = run_cli(argv, env=fakes.env)

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    (warning,) = result.warnings  # on stdout, in the console format, as the old tool wrote it
    assert "mismatch" in warning
    calls = fakes.calls("recorder")
    assert argvs(calls) == [[host] for host, _, _ in SERVERS]
    assert all(call["env"]["HOST"] == call["argv"][0] for call in calls)
    assert len(run_files().rows) == 3


def test_template_directory_with_arguments_file_is_an_error(run_cli, fakes, files, tmp_path, home):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.sh").write_text(TEMPLATE, encoding="utf-8")

    result = run_cli(["-T", "tasks", "-A", "hostnames.txt", "-C", "bash @TASK@", "-r"], env=fakes.env)

    assert result.returncode == 1
    line = one_error_line(result)
    assert "template" in line and "file" in line
    assert_nothing_ran(fakes, home)


def test_empty_env_var_entry_is_an_error(run_cli, fakes, files, home):
    result = run_cli(
        ["-A", "servers.txt", "-S", "comma", "-E", "A,,B", "-C", "recorder $A", "-r"], env=fakes.env
    )

    assert result.returncode == 2
    assert "empty" in one_error_line(result)
    assert_nothing_ran(fakes, home)


# -- pipes: --shell ------------------------------------------------------------------------------

DATABASES = ["db one", "db;two"]
MYSQLDUMP = 'mysqldump -h "$DB" -u backup mydb | gzip > "backup_$DB.sql.gz"'


@pytest.fixture
def databases(tmp_path: Path) -> Path:
    path = tmp_path / "databases.txt"
    path.write_text("\n".join(DATABASES) + "\n", encoding="utf-8")
    return path


def test_pipe_without_shell_warns_to_add_shell(run_cli, fakes, databases):
    result = run_cli(["-A", "databases.txt", "-E", "DB", "-C", MYSQLDUMP], env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [warning for warning in result.warnings if "add --shell" in warning] != []
    assert "Traceback" not in result.output


def test_pipe_with_shell_runs_and_values_stay_data(run_cli, fakes, databases, home):
    result = run_cli(["-A", "databases.txt", "-E", "DB", "--shell", "-C", MYSQLDUMP, "-r"], env=fakes.env)

    assert result.returncode == 0, result.output
    assert "add --shell" not in result.output
    workspace = home / "parallelr" / "workspace"
    for database in DATABASES:
        dumped = gzip.decompress((workspace / f"backup_{database}.sql.gz").read_bytes()).decode()
        assert dumped == f"-h {database} -u backup mydb\n"
    assert argvs(fakes.calls("mysqldump")) == [["-h", db, "-u", "backup", "mydb"] for db in sorted(DATABASES)]
    assert not (workspace / "two").exists() and not (workspace / "two.sql.gz").exists()


def test_placeholders_with_shell_are_quoted_as_single_words(run_cli, fakes, databases, home):
    command = "recorder @ARG@ | tr a-z A-Z > upper_@ARG@.txt"

    result = run_cli(["-A", "databases.txt", "--shell", "-C", command, "-r"], env=fakes.env)

    assert result.returncode == 0, result.output
    assert argvs(fakes.calls("recorder")) == [[db] for db in sorted(DATABASES)]
    workspace = home / "parallelr" / "workspace"
    for database in DATABASES:
        assert (workspace / f"upper_{database}.txt").read_text() == database.upper() + "\n"
