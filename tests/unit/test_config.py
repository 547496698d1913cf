"""Configuration: defaults, the script/user/CLI layers, caps, type rules, fallbacks and file errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Optional

import attrs
import pytest
import yaml

from parallelr.config import (
    AdvancedSection,
    Between,
    ConfigFile,
    ExecutionSection,
    LimitsSection,
    LoadedSettings,
    LoggingSection,
    SecuritySection,
    Settings,
    load_settings,
    script_config_dir,
    setting,
    settings_as_dict,
)
from parallelr.errors import ConfigError, UsageError


@pytest.fixture
def script_dir(tmp_path: Path) -> Path:
    path = tmp_path / "script_cfg"
    path.mkdir()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def user_file(home: Path, app: str = "parallelr") -> Path:
    return home / app / "cfg" / f"{app}.yaml"


def load(
    script_dir: Path, home: Path, app: str = "parallelr", overrides: Optional[Mapping[str, Any]] = None
) -> LoadedSettings:
    return load_settings(app, home=home, overrides=overrides, script_dir=script_dir)


# --- defaults and layering ---------------------------------------------------------------------


def test_defaults_without_any_file(script_dir: Path, home: Path) -> None:
    loaded = load(script_dir, home)
    assert loaded.settings == Settings()
    assert loaded.warnings == ()
    assert loaded.files == (
        ConfigFile(role="script", wanted=script_dir / "parallelr.yaml", loaded=None, fallback=False),
        ConfigFile(role="user", wanted=user_file(home), loaded=None, fallback=False),
    )
    limits = loaded.settings.limits
    assert (limits.max_workers, limits.timeout_seconds, limits.wait_time) == (20, 600, 0.1)
    assert (limits.max_allowed_workers, limits.max_allowed_timeout, limits.max_allowed_output) == (
        100,
        3600,
        10000,
    )
    assert (limits.max_consecutive_failures, limits.max_failure_rate, limits.min_tasks_for_rate_check) == (
        5,
        0.5,
        10,
    )
    assert limits.stop_limits_enabled is False
    assert loaded.settings.security.max_argument_length == 1000
    assert loaded.settings.execution == ExecutionSection(False, True, 5.0)
    assert loaded.settings.logging.level == "INFO"
    assert loaded.settings.logging.custom_date_format == "%d%b%y_%H%M%S"
    assert loaded.settings.advanced == AdvancedSection(1048576, None, False)


def test_script_config_overrides_defaults(script_dir: Path, home: Path) -> None:
    write(
        script_dir / "parallelr.yaml",
        """
        limits:
          max_workers: 8
          max_allowed_workers: 50
        security:
          max_argument_length: 4000
        execution:
          workspace_isolation: true
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.warnings == ()
    assert loaded.files[0] == ConfigFile(
        "script", script_dir / "parallelr.yaml", script_dir / "parallelr.yaml", False
    )
    assert loaded.settings.limits == LimitsSection(max_workers=8, max_allowed_workers=50)
    assert loaded.settings.security == SecuritySection(max_argument_length=4000)
    assert loaded.settings.execution == ExecutionSection(workspace_isolation=True)
    assert loaded.settings.logging == LoggingSection()


def test_user_config_overrides_only_the_keys_it_names(script_dir: Path, home: Path) -> None:
    # The spec's "Example Merge".
    write(
        script_dir / "parallelr.yaml",
        """
        limits:
          max_workers: 20
          timeout_seconds: 600
          max_allowed_workers: 100
        logging:
          level: "INFO"
        """,
    )
    write(
        user_file(home),
        """
        limits:
          max_workers: 50
        logging:
          level: "DEBUG"
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.warnings == ()
    assert loaded.files[1] == ConfigFile("user", user_file(home), user_file(home), False)
    settings = loaded.settings
    assert settings.limits.max_workers == 50
    assert settings.limits.timeout_seconds == 600
    assert settings.limits.max_allowed_workers == 100
    assert settings.logging.level == "DEBUG"
    assert settings.logging.max_log_size_mb == 10


def test_user_value_overrides_script_value_not_just_default(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  timeout_seconds: 900\n  max_workers: 7\n")
    write(user_file(home), "limits:\n  timeout_seconds: 1200\n")
    settings = load(script_dir, home).settings
    assert (settings.limits.timeout_seconds, settings.limits.max_workers) == (1200, 7)


def test_overrides_win_over_both_files_and_none_is_ignored(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  max_workers: 7\n")
    write(user_file(home), "limits:\n  max_workers: 9\n  timeout_seconds: 100\n")
    overrides = {
        "limits.max_workers": 5,
        "limits.timeout_seconds": None,
        "limits.task_start_delay": 2.0,
        "limits.stop_limits_enabled": True,
        "logging.level": "DEBUG",
    }
    loaded = load(script_dir, home, overrides=overrides)
    assert loaded.warnings == ()
    limits = loaded.settings.limits
    assert (limits.max_workers, limits.timeout_seconds, limits.task_start_delay) == (5, 100, 2.0)
    assert limits.stop_limits_enabled is True
    assert loaded.settings.logging.level == "DEBUG"


# --- script-only keys and caps -----------------------------------------------------------------


def test_security_section_in_user_config_is_ignored_with_warning(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "security:\n  max_argument_length: 2000\n")
    path = write(user_file(home), "security:\n  max_argument_length: 999999\n")
    loaded = load(script_dir, home)
    assert loaded.settings.security.max_argument_length == 2000
    assert loaded.warnings == (f"{path}: the security section can only be set in the script config; ignored",)


def test_max_allowed_keys_in_user_config_are_ignored_with_warning(script_dir: Path, home: Path) -> None:
    path = write(
        user_file(home),
        """
        limits:
          max_allowed_workers: 1000
          max_allowed_timeout: 99999
          max_workers: 30
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.settings.limits.max_allowed_workers == 100
    assert loaded.settings.limits.max_allowed_timeout == 3600
    assert loaded.settings.limits.max_workers == 30
    assert loaded.warnings == (
        f"{path}: limits.max_allowed_workers can only be set in the script config; ignored",
        f"{path}: limits.max_allowed_timeout can only be set in the script config; ignored",
    )


def test_values_above_max_allowed_from_user_config_are_capped(script_dir: Path, home: Path) -> None:
    path = write(
        user_file(home),
        """
        limits:
          max_workers: 500
          timeout_seconds: 7200
          max_output_capture: 20000
        """,
    )
    loaded = load(script_dir, home)
    limits = loaded.settings.limits
    assert (limits.max_workers, limits.timeout_seconds, limits.max_output_capture) == (100, 3600, 10000)
    assert loaded.warnings == (
        f"max_workers 500 from {path} capped at max_allowed_workers 100",
        f"timeout_seconds 7200 from {path} capped at max_allowed_timeout 3600",
        f"max_output_capture 20000 from {path} capped at max_allowed_output 10000",
    )


def test_values_above_max_allowed_from_command_line_are_capped(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  max_allowed_workers: 40\n")
    loaded = load(script_dir, home, overrides={"limits.max_workers": 500, "limits.timeout_seconds": 3600})
    assert loaded.settings.limits.max_workers == 40
    assert loaded.settings.limits.timeout_seconds == 3600
    assert loaded.warnings == ("max_workers 500 from command line capped at max_allowed_workers 40",)


def test_default_above_a_lowered_script_limit_is_capped(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  max_allowed_workers: 10\n")
    loaded = load(script_dir, home)
    assert loaded.settings.limits.max_workers == 10
    assert loaded.warnings == ("max_workers 20 from defaults capped at max_allowed_workers 10",)


def test_script_only_keys_cannot_come_from_the_command_line(script_dir: Path, home: Path) -> None:
    with pytest.raises(UsageError) as info:
        load(script_dir, home, overrides={"limits.max_allowed_workers": 500})
    assert str(info.value) == (
        "limits.max_allowed_workers can only be set in the script config, not on the command line"
    )
    with pytest.raises(UsageError, match=r"^security\.max_argument_length can only be set in the script"):
        load(script_dir, home, overrides={"security.max_argument_length": 5})


# --- types and ranges --------------------------------------------------------------------------


def test_lossless_type_conversions_are_applied_silently(script_dir: Path, home: Path) -> None:
    write(
        user_file(home),
        """
        limits:
          max_workers: "20"
          timeout_seconds: 90.0
          wait_time: 1
          task_start_delay: "0.5"
          stop_limits_enabled: "true"
        execution:
          workspace_isolation: "yes"
          use_process_groups: "False"
        logging:
          level: debug
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.warnings == ()
    limits = loaded.settings.limits
    assert limits.max_workers == 20 and type(limits.max_workers) is int
    assert limits.timeout_seconds == 90 and type(limits.timeout_seconds) is int
    assert limits.wait_time == 1.0 and type(limits.wait_time) is float
    assert limits.task_start_delay == 0.5
    assert limits.stop_limits_enabled is True
    assert loaded.settings.execution.workspace_isolation is True
    assert loaded.settings.execution.use_process_groups is False
    assert loaded.settings.logging.level == "DEBUG"


def test_wrong_type_in_user_config_warns_and_falls_back_to_script_value(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  max_workers: 12\n")
    path = write(
        user_file(home),
        """
        limits:
          max_workers: "twenty"
          timeout_seconds: 1.5
          wait_time: [1, 2]
          max_failure_rate: 0.25
        logging:
          level: 3
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.settings.limits.max_workers == 12
    assert loaded.settings.limits.timeout_seconds == 600
    assert loaded.settings.limits.wait_time == 0.1
    assert loaded.settings.limits.max_failure_rate == 0.25
    assert loaded.settings.logging.level == "INFO"
    assert loaded.warnings == (
        f"{path}: limits.max_workers = 'twenty' is not valid (expected an integer); using 12",
        f"{path}: limits.timeout_seconds = 1.5 is not valid (expected an integer); using 600",
        f"{path}: limits.wait_time = a list is not valid (expected a number); using 0.1",
        f"{path}: logging.level = 3 is not valid (expected a string); using 'INFO'",
    )


def test_out_of_range_in_user_config_warns_and_falls_back(script_dir: Path, home: Path) -> None:
    path = write(
        user_file(home),
        """
        limits:
          max_workers: 0
          wait_time: 50
          task_start_delay: -1
          max_failure_rate: 1.5
        logging:
          level: verbose
        advanced:
          max_file_size: 10
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.settings == Settings()
    assert loaded.warnings == (
        f"{path}: limits.max_workers = 0 is not valid (must be at least 1); using 20",
        f"{path}: limits.wait_time = 50 is not valid (must be between 0.01 and 10); using 0.1",
        f"{path}: limits.task_start_delay = -1 is not valid (must be between 0 and 60); using 0",
        f"{path}: limits.max_failure_rate = 1.5 is not valid (must be between 0 and 1); using 0.5",
        f"{path}: logging.level = 'verbose' is not valid "
        "(must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL); using 'INFO'",
        f"{path}: advanced.max_file_size = 10 is not valid (must be between 1024 and 104857600); "
        "using 1048576",
    )


def test_bad_value_in_script_config_is_an_error(script_dir: Path, home: Path) -> None:
    path = write(script_dir / "parallelr.yaml", "limits:\n  max_workers: many\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == (
        f"invalid script config {path}: limits.max_workers = 'many' is not valid (expected an integer); "
        "fix or reinstall it"
    )


def test_bools_and_ints_do_not_mix(script_dir: Path, home: Path) -> None:
    path = write(
        user_file(home),
        """
        limits:
          max_workers: true
          stop_limits_enabled: 1
          max_failure_rate: false
        execution:
          workspace_isolation: "1"
          use_process_groups: no
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.settings.limits.max_workers == 20
    assert loaded.settings.limits.stop_limits_enabled is False
    assert loaded.settings.limits.max_failure_rate == 0.5
    assert loaded.settings.execution.workspace_isolation is False
    assert loaded.settings.execution.use_process_groups is False  # YAML's own "no" is a bool
    assert loaded.warnings == (
        f"{path}: limits.max_workers = true is not valid (expected an integer); using 20",
        f"{path}: limits.stop_limits_enabled = 1 is not valid (expected true or false); using false",
        f"{path}: limits.max_failure_rate = false is not valid (expected a number); using 0.5",
        f"{path}: execution.workspace_isolation = '1' is not valid (expected true or false); using false",
    )


def test_memory_limit_accepts_null_or_a_positive_integer(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "advanced:\n  memory_limit_mb: 512\n")
    path = write(user_file(home), "advanced:\n  memory_limit_mb: null\n")
    loaded = load(script_dir, home)
    assert loaded.warnings == ()
    assert loaded.settings.advanced.memory_limit_mb is None

    write(path, "advanced:\n  memory_limit_mb: lots\n")
    loaded = load(script_dir, home)
    assert loaded.settings.advanced.memory_limit_mb == 512
    assert loaded.warnings == (
        f"{path}: advanced.memory_limit_mb = 'lots' is not valid (expected an integer or null); using 512",
    )


def test_retry_failed_tasks_is_forced_false_with_warning(script_dir: Path, home: Path) -> None:
    path = write(user_file(home), "advanced:\n  retry_failed_tasks: true\n")
    loaded = load(script_dir, home)
    assert loaded.settings.advanced.retry_failed_tasks is False
    assert loaded.warnings == (f"{path}: advanced.retry_failed_tasks is not implemented yet; using false",)


def test_sections_built_in_code_obey_the_same_rules() -> None:
    with pytest.raises(ValueError, match=r"^max_workers = 0 must be at least 1$"):
        LimitsSection(max_workers=0)
    with pytest.raises(ValueError, match=r"^level = 'LOUD' must be one of DEBUG"):
        LoggingSection(level="LOUD")
    with pytest.raises(ValueError, match=r"^retry_failed_tasks = true is not implemented yet"):
        AdvancedSection(retry_failed_tasks=True)
    assert attrs.evolve(Settings().limits, max_workers=3).max_workers == 3


# --- command-line overrides --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("limits.max_workers", 0, "invalid value for -m/--max: 0 (must be at least 1)"),
        ("limits.timeout_seconds", -5, "invalid value for -t/--timeout: -5 (must be at least 1)"),
        ("limits.task_start_delay", 61, "invalid value for -s/--sleep: 61 (must be between 0 and 60)"),
        ("limits.task_start_delay", "soon", "invalid value for -s/--sleep: 'soon' (expected a number)"),
        ("limits.max_workers", True, "invalid value for -m/--max: true (expected an integer)"),
        (
            "limits.wait_time",
            0.001,
            "invalid value for limits.wait_time: 0.001 (must be between 0.01 and 10)",
        ),
    ],
)
def test_bad_command_line_override_is_a_usage_error(
    script_dir: Path, home: Path, key: str, value: Any, message: str
) -> None:
    with pytest.raises(UsageError) as info:
        load(script_dir, home, overrides={key: value})
    assert str(info.value) == message
    assert info.value.exit_code == 2


def test_unknown_command_line_key_is_a_usage_error(script_dir: Path, home: Path) -> None:
    with pytest.raises(UsageError) as info:
        load(script_dir, home, overrides={"limits.max_worker": 3})
    assert str(info.value) == "unknown setting limits.max_worker (did you mean limits.max_workers?)"


# --- unknown names -----------------------------------------------------------------------------


def test_unknown_keys_and_sections_in_user_config_warn_with_suggestions(script_dir: Path, home: Path) -> None:
    path = write(
        user_file(home),
        """
        limits:
          max_worker: 50
          level: DEBUG
          colour: blue
        limitz:
          max_workers: 3
        """,
    )
    loaded = load(script_dir, home)
    assert loaded.settings == Settings()
    assert loaded.warnings == (
        f"{path}: unknown setting limits.max_worker (did you mean limits.max_workers?); ignored",
        f"{path}: unknown setting limits.level (did you mean logging.level?); ignored",
        f"{path}: unknown setting limits.colour; ignored",
        f"{path}: unknown section 'limitz' (did you mean limits?); ignored",
    )


def test_unknown_key_in_script_config_is_an_error(script_dir: Path, home: Path) -> None:
    path = write(script_dir / "parallelr.yaml", "logging:\n  levle: INFO\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == (
        f"invalid script config {path}: unknown setting logging.levle (did you mean logging.level?); "
        "fix or reinstall it"
    )


# --- file shapes and file errors ---------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(script_dir: Path, home: Path) -> None:
    path = write(user_file(home), "limits:\n  max_workers: 5\n  timeout_seconds: 10: 20\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == f"invalid YAML in {path} at line 3: mapping values are not allowed here"

    script = write(script_dir / "parallelr.yaml", "limits: [1,\n")
    with pytest.raises(ConfigError, match=rf"^invalid YAML in {script} at line 2: "):
        load(script_dir, home)


def test_empty_files_are_empty_configs(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "")
    write(user_file(home), "# only a comment\n")
    loaded = load(script_dir, home)
    assert loaded.settings == Settings()
    assert loaded.warnings == ()
    assert loaded.files[0].loaded == script_dir / "parallelr.yaml"
    assert loaded.files[1].loaded == user_file(home)


def test_top_level_list_is_an_error(script_dir: Path, home: Path) -> None:
    path = write(user_file(home), "- limits\n- logging\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == (
        f"invalid config file {path}: the top level must be a mapping of sections (such as 'limits:'), "
        "not a list"
    )


def test_section_that_is_not_a_mapping_is_an_error(script_dir: Path, home: Path) -> None:
    path = write(user_file(home), "limits: 5\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == (
        f"invalid config file {path}: section 'limits' must be a mapping of settings "
        "(key: value lines indented under it), not 5"
    )


def test_section_with_every_key_commented_out_is_empty(script_dir: Path, home: Path) -> None:
    write(user_file(home), "limits:\n#  max_workers: 5\nlogging:\n  level: ERROR\n")
    loaded = load(script_dir, home)
    assert loaded.warnings == ()
    assert loaded.settings.limits == LimitsSection()
    assert loaded.settings.logging.level == "ERROR"


def test_directory_in_place_of_config_file_is_an_error(script_dir: Path, home: Path) -> None:
    user_file(home).mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == f"cannot read config file {user_file(home)}: it is a directory, not a YAML file"


def test_broken_symlink_config_is_an_error(script_dir: Path, home: Path) -> None:
    (script_dir / "parallelr.yaml").symlink_to(script_dir / "missing.yaml")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == (
        f"cannot read config file {script_dir / 'parallelr.yaml'}: it is a broken symbolic link"
    )


def test_non_utf8_config_is_an_error(script_dir: Path, home: Path) -> None:
    path = user_file(home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"limits:\n  max_workers: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == f"cannot read config file {path}: it is not UTF-8 text"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_config_is_an_error(script_dir: Path, home: Path) -> None:
    path = write(user_file(home), "limits:\n  max_workers: 5\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            load(script_dir, home)
    finally:
        path.chmod(0o600)
    assert str(info.value) == f"cannot read config file {path}: Permission denied"


def test_unicode_and_spaces_in_home_path(tmp_path: Path, script_dir: Path) -> None:
    home = tmp_path / "Jürgen Müller 家"
    path = write(user_file(home), "limits:\n  max_workers: 3\n  max_workers_typo: 1\n")
    loaded = load(script_dir, home)
    assert loaded.settings.limits.max_workers == 3
    assert loaded.files[1].loaded == path
    assert loaded.warnings == (
        f"{path}: unknown setting limits.max_workers_typo (did you mean limits.max_workers?); ignored",
    )


def test_home_defaults_to_the_home_environment_variable(
    monkeypatch: pytest.MonkeyPatch, script_dir: Path, home: Path
) -> None:
    monkeypatch.setenv("HOME", str(home))
    write(user_file(home), "limits:\n  max_workers: 4\n")
    loaded = load_settings(script_dir=script_dir)
    assert loaded.files[1].loaded == user_file(home)
    assert loaded.settings.limits.max_workers == 4


# --- ptasker fallback --------------------------------------------------------------------------


def test_ptasker_falls_back_to_parallelr_files(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  timeout_seconds: 300\n")
    write(user_file(home), "limits:\n  max_workers: 6\n")
    loaded = load(script_dir, home, app="ptasker")
    assert loaded.files == (
        ConfigFile("script", script_dir / "ptasker.yaml", script_dir / "parallelr.yaml", True),
        ConfigFile("user", user_file(home, "ptasker"), user_file(home), True),
    )
    assert (loaded.settings.limits.timeout_seconds, loaded.settings.limits.max_workers) == (300, 6)


def test_ptasker_uses_its_own_files_when_present(script_dir: Path, home: Path) -> None:
    write(script_dir / "parallelr.yaml", "limits:\n  timeout_seconds: 300\n")
    write(script_dir / "ptasker.yaml", "limits:\n  timeout_seconds: 1800\n")
    write(user_file(home), "limits:\n  max_workers: 6\n")
    write(user_file(home, "ptasker"), "logging:\n  level: WARNING\n")
    loaded = load(script_dir, home, app="ptasker")
    assert loaded.files == (
        ConfigFile("script", script_dir / "ptasker.yaml", script_dir / "ptasker.yaml", False),
        ConfigFile("user", user_file(home, "ptasker"), user_file(home, "ptasker"), False),
    )
    # Own files replace parallelr's files; they are not merged with them.
    assert loaded.settings.limits.timeout_seconds == 1800
    assert loaded.settings.limits.max_workers == 20
    assert loaded.settings.logging.level == "WARNING"


def test_ptasker_without_any_file_reports_its_own_wanted_paths(script_dir: Path, home: Path) -> None:
    loaded = load(script_dir, home, app="ptasker")
    assert loaded.files == (
        ConfigFile("script", script_dir / "ptasker.yaml", None, False),
        ConfigFile("user", user_file(home, "ptasker"), None, False),
    )


# --- the shipped files -------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["parallelr", "ptasker"])
def test_shipped_script_config_loads_cleanly_and_equals_defaults(home: Path, app: str) -> None:
    loaded = load_settings(app, home=home)
    shipped = script_config_dir() / f"{app}.yaml"
    assert loaded.files[0] == ConfigFile("script", shipped, shipped, False)
    assert loaded.warnings == ()
    assert loaded.settings == Settings()


@pytest.mark.parametrize("name", ["parallelr.yaml", "ptasker.yaml"])
def test_shipped_script_config_names_every_key(name: str) -> None:
    data = yaml.safe_load((script_config_dir() / name).read_text(encoding="utf-8"))
    assert data == settings_as_dict(Settings())


def test_settings_as_dict_is_plain_nested_dicts() -> None:
    settings = Settings(limits=LimitsSection(max_workers=3))
    as_dict = settings_as_dict(settings)
    assert list(as_dict) == ["limits", "security", "execution", "logging", "advanced", "journal"]
    assert as_dict["limits"]["max_workers"] == 3
    assert as_dict["advanced"] == {
        "max_file_size": 1048576,
        "memory_limit_mb": None,
        "retry_failed_tasks": False,
        "retries": 0,
        "retry_delay": 1.0,
        "retry_backoff": 2.0,
        "retry_max_delay": 300.0,
    }
    assert as_dict["journal"] == {"enabled": True, "path": ""}
    assert as_dict["execution"]["kill_grace_seconds"] == 5.0


def test_fifo_in_place_of_config_file_is_an_error_not_a_hang(script_dir: Path, home: Path) -> None:
    os.mkfifo(script_dir / "parallelr.yaml")
    with pytest.raises(ConfigError) as info:
        load(script_dir, home)
    assert str(info.value) == f"cannot read config file {script_dir / 'parallelr.yaml'}: not a regular file"


# --- sections that plugins declare (parallelr_settings_sections) --------------------------------
@attrs.frozen
class DemoSection:
    """A plugin's own section: same rules as the core's."""

    address: str = setting("tcp://127.0.0.1:8786")
    workers: int = setting(2, rule=Between(1, 64))


def test_a_plugin_section_is_read_with_the_core_rules(script_dir, home):
    write(script_dir / "parallelr.yaml", "demo:\n  workers: 4\n")
    write(user_file(home), "demo:\n  addres: tcp://10.0.0.1:1\n  workers: 500\n")

    loaded = load_settings(home=home, script_dir=script_dir, extra_sections={"demo": DemoSection})

    assert loaded.settings.demo == DemoSection(address="tcp://127.0.0.1:8786", workers=4)
    assert isinstance(loaded.settings, Settings) and loaded.settings.limits == LimitsSection()
    assert len(loaded.warnings) == 2
    assert "unknown setting demo.addres (did you mean demo.address?)" in loaded.warnings[0]
    assert "demo.workers = 500 is not valid" in loaded.warnings[1]


def test_without_the_plugin_its_section_is_an_unknown_one(script_dir, home):
    write(user_file(home), "demo:\n  workers: 4\n")
    (warning,) = load_settings(home=home, script_dir=script_dir).warnings
    assert "unknown section 'demo'" in warning


def test_a_plugin_cannot_declare_a_core_section(script_dir, home):
    with pytest.raises(ConfigError, match="the settings section 'limits', which the core has"):
        load_settings(home=home, script_dir=script_dir, extra_sections={"limits": DemoSection})
