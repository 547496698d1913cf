"""Configuration through the real CLI: the two-tier merge, caps, ignored sections, bad files, and the
info commands (--show-config, --validate-config, --check-dependencies, --version).

Spec: parallelr-README.md "Configuration" (merge example, validation output); COMPAT.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

BUILTIN_PLUGINS = (
    "task_files", "arguments_file", "thread", "process", "console", "main_log", "csv_summary", "output_log",
    "ptasker",
)
SPEC_USER_CONFIG = 'limits:\n  max_workers: 50\nlogging:\n  level: "DEBUG"\n'


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name in ("a.sh", "b.sh"):
        (directory / name).write_text("echo ok\n", encoding="utf-8")
    return directory


def effective_config(stdout: str) -> Dict[str, Any]:
    """The YAML part of --show-config: from ``limits:`` up to the ``Plugins:`` list."""
    lines = stdout.splitlines()
    start = lines.index("limits:")
    end = lines.index("Plugins:")
    return yaml.safe_load("\n".join(lines[start:end]))


def stderr_lines(result) -> List[str]:
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()


def warning_lines(result) -> List[str]:
    """Warnings are console-log WARNING lines on stdout (as the old tool's); stderr stays empty."""
    assert "Traceback" not in result.output
    assert result.stderr == ""
    return result.warnings


# -- merging -------------------------------------------------------------------------------------


def test_spec_merge_example_user_values_override_only_what_they_name(run_cli, user_config, home):
    path = user_config(SPEC_USER_CONFIG)

    result = run_cli(["--show-config"])

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    effective = effective_config(result.stdout)
    assert effective["limits"]["max_workers"] == 50  # from the user config
    assert effective["limits"]["timeout_seconds"] == 600  # from the script config
    assert effective["limits"]["max_allowed_workers"] == 100  # the system limit
    assert effective["logging"]["level"] == "DEBUG"  # from the user config
    assert effective["logging"]["max_log_size_mb"] == 10
    assert f"✓ User config: {path}" in result.stdout.splitlines()


def test_command_line_overrides_the_user_config(run_cli, user_config):
    user_config(SPEC_USER_CONFIG)

    result = run_cli(["--show-config", "-m", "7", "-t", "30", "-s", "0.5", "-d", "--enable-stop-limits"])

    assert result.returncode == 0, result.stderr
    effective = effective_config(result.stdout)
    limits = effective["limits"]
    assert (limits["max_workers"], limits["timeout_seconds"], limits["task_start_delay"]) == (7, 30, 0.5)
    assert limits["stop_limits_enabled"] is True
    assert effective["logging"]["level"] == "DEBUG"


def test_show_config_lists_the_loaded_plugins(run_cli):
    result = run_cli(["--show-config"])

    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Plugins:\n", 1)[1]
    for name in BUILTIN_PLUGINS:
        assert re.search(rf"^- {name}-\S+ \(built-in\)$", listed, re.M), name


def test_user_values_are_converted_when_obvious(run_cli, user_config):
    user_config(
        'limits:\n  max_workers: "7"\n  task_start_delay: 1\nexecution:\n  workspace_isolation: "yes"\n'
    )

    result = run_cli(["--show-config"])

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    effective = effective_config(result.stdout)
    assert (effective["limits"]["max_workers"], effective["limits"]["task_start_delay"]) == (7, 1.0)
    assert effective["execution"]["workspace_isolation"] is True


def test_unknown_user_key_is_a_warning_with_a_suggestion(run_cli, user_config):
    user_config("limits:\n  max_worker: 5\n")

    result = run_cli(["--show-config"])

    assert result.returncode == 0
    (warning,) = warning_lines(result)
    assert "did you mean limits.max_workers?" in warning
    assert effective_config(result.stdout)["limits"]["max_workers"] == 20


def test_user_max_workers_is_used_by_a_run(run_cli, run_files, summary, user_config, tasks):
    user_config(SPEC_USER_CONFIG)

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 0, result.output
    assert summary(result.stdout, "- Workers:") == "50"
    assert len(run_files().rows) == 2


def test_user_security_section_is_ignored_with_a_warning(run_cli, user_config):
    path = user_config("security:\n  max_argument_length: 5000\n")

    result = run_cli(["--show-config"])

    assert result.returncode == 0
    assert effective_config(result.stdout)["security"]["max_argument_length"] == 1000
    (warning,) = warning_lines(result)
    assert "security" in warning and str(path) in warning


@pytest.mark.parametrize("where", ["command line", "user config"])
def test_workers_above_the_maximum_are_capped_with_a_warning(
    run_cli, run_files, summary, user_config, tasks, where
):
    flags = ["-m", "500"] if where == "command line" else []
    if where == "user config":
        user_config("limits:\n  max_workers: 500\n")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", *flags])

    assert result.returncode == 0, result.output
    (warning,) = warning_lines(result)
    assert "capped" in warning and "500" in warning and "100" in warning
    assert summary(result.stdout, "- Workers:") == "100"
    assert [row["status"] for row in run_files().rows] == ["SUCCESS", "SUCCESS"]


def test_timeout_above_the_maximum_is_capped_with_a_warning(run_cli):
    result = run_cli(["--show-config", "-t", "5000"])

    assert result.returncode == 0
    (warning,) = warning_lines(result)
    assert "capped" in warning and "5000" in warning and "3600" in warning
    assert effective_config(result.stdout)["limits"]["timeout_seconds"] == 3600


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("limits:\n  max_workers: 5\n timeout_seconds: 3\n", 3),
        ("limits:\n\tmax_workers: 3\n", 2),
    ],
)
@pytest.mark.parametrize("command", [["-T", "tasks", "-C", "bash @TASK@", "-r"], ["--validate-config"]])
def test_bad_yaml_in_the_user_config_is_one_error_line_naming_file_and_line(
    run_cli, user_config, tasks, home, text, line, command
):
    path = user_config(text)

    result = run_cli(command)

    assert result.returncode == 1
    (error,) = stderr_lines(result)
    assert str(path) in error
    assert re.search(rf"\bline {line}\b", error), error
    assert not (home / "parallelr" / "logs").exists()


# -- --validate-config ---------------------------------------------------------------------------


def test_validate_config_without_user_config(run_cli, home):
    result = run_cli(["--validate-config"])

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "✓ Configuration is valid"
    script_line = [line for line in lines if line.startswith("✓ Script config: ")]
    assert len(script_line) == 1
    assert re.fullmatch(r"✓ Script config: (/.*/parallelr\.yaml)", script_line[0])
    assert Path(script_line[0].split(": ", 1)[1]).is_file()
    assert lines[2:] == [
        "  User config: Not found (using defaults)",
        f"✓ Working dir: {home / 'parallelr' / 'workspace'}",
        f"✓ Log dir: {home / 'parallelr' / 'logs'}",
        "✓ Workspace mode: Shared",
        "✓ Workers: 20 (max allowed: 100)",
        "✓ Timeout: 600s (max allowed: 3600s)",
    ]
    assert list(home.rglob("*")) == []  # validating creates nothing


def test_validate_config_with_user_config(run_cli, user_config, home):
    path = user_config("limits:\n  max_workers: 50\nexecution:\n  workspace_isolation: true\n")

    result = run_cli(["--validate-config"])

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "✓ Configuration is valid"
    assert f"✓ User config: {path}" in lines
    assert "✓ Workspace mode: Isolated" in lines
    assert "✓ Workers: 50 (max allowed: 100)" in lines


def test_validate_config_reports_problems_and_exits_1(run_cli, user_config):
    user_config("limits:\n  max_workers: many\n")

    result = run_cli(["--validate-config"])

    assert result.returncode == 1
    assert "✓ Configuration is valid" not in result.stdout
    assert "limits.max_workers" in result.stdout
    assert "✓ Workers: 20 (max allowed: 100)" in result.stdout.splitlines()


def test_ptasker_validate_config_falls_back_to_the_parallelr_user_config(run_cli, user_config, home):
    path = user_config("limits:\n  max_workers: 30\n")

    result = run_cli(["--validate-config"], prog="ptasker")

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "✓ Configuration is valid"
    assert f"✓ User config: {path} (fallback from ptasker.yaml)" in lines
    assert f"✓ Working dir: {home / 'ptasker' / 'workspace'}" in lines
    assert f"✓ Log dir: {home / 'ptasker' / 'logs'}" in lines
    assert "✓ Workers: 30 (max allowed: 100)" in lines


def test_ptasker_prefers_its_own_user_config(run_cli, user_config):
    user_config("limits:\n  max_workers: 30\n")
    own = user_config("limits:\n  max_workers: 7\n", app="ptasker")

    result = run_cli(["--validate-config"], prog="ptasker")

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert f"✓ User config: {own}" in lines
    assert "✓ Workers: 7 (max allowed: 100)" in lines


# -- --check-dependencies, --version -------------------------------------------------------------


def test_check_dependencies_lists_the_four_modules_and_the_extras(run_cli):
    result = run_cli(["--check-dependencies"])

    assert result.returncode == 0, result.output
    for module in ("PyYAML", "psutil", "pluggy", "attrs"):
        assert [line for line in result.stdout.splitlines() if line.startswith(f"✓ {module} ")], module
    # the test extra installs every extra
    for module, purpose in (("Flask", "the dashboard"), ("distributed", "--executor dask"),
                            ("psycopg", "a PostgreSQL store (--db postgresql://...)")):
        assert [line for line in result.stdout.splitlines()
                if re.fullmatch(rf"✓ {module} \S+ - {re.escape(purpose)} \(optional\)", line)], result.stdout


def test_version_lists_the_builtin_plugins(run_cli):
    result = run_cli(["--version"])

    assert result.returncode == 0, result.output
    assert re.match(r"parallelr \d+\.\d+", result.stdout)
    for name in BUILTIN_PLUGINS:
        assert re.search(rf"\b{name}-\S+ \(built-in\)", result.stdout), name
