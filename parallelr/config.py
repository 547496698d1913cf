"""Settings: the YAML sections as attrs values, and the layered loading that builds them.

Layers, each overriding only the keys it names::

    built-in defaults → script config (cfg/<app>.yaml, ships with the tool)
                      → user config (~/<app>/cfg/<app>.yaml) → command-line overrides

Every key, its type, default, allowed range and special role (script-only, capped by a
``max_allowed_*`` key) is declared once, on an attrs field below. The loader derives the known
sections and keys from those declarations, so a new setting is one new field (plus a line in
cfg/parallelr.yaml, which a test checks).

A broken script config is an install error (:class:`ConfigError`); a problem in the user config
is a warning and the value falls back to the script/default one, as the old tool did. Warnings
are returned, not printed: the CLI decides where they go.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import time
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

import parallelr
from parallelr.errors import ConfigError, UsageError
from parallelr.options import FLAGS_BY_SETTING

DEFAULT_APP_NAME = "parallelr"
SOURCE_DEFAULTS = "defaults"
SOURCE_COMMAND_LINE = "command line"

# Field metadata keys (namespaced so that they cannot clash with other attrs users).
_RULE = "parallelr.rule"
_SCRIPT_ONLY = "parallelr.script_only"
_CAPPED_BY = "parallelr.capped_by"
_UNIMPLEMENTED = "parallelr.unimplemented"

# How command-line overrides are named in error messages: derived from the options' declarations.
CLI_FLAGS: Dict[str, str] = FLAGS_BY_SETTING


# ---------------------------------------------------------------------------------------------
# Rules: what a value must satisfy beyond its type.


@attrs.frozen
class Between:
    """Inclusive bounds; ``None`` leaves that side open. ``None`` values (nullable keys) pass."""

    low: Optional[float] = None
    high: Optional[float] = None

    def normalize(self, value: Any) -> Any:
        return value

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        too_low = self.low is not None and value < self.low
        too_high = self.high is not None and value > self.high
        if not (too_low or too_high):
            return None
        if self.high is None:
            return f"must be at least {_show(self.low)}"
        if self.low is None:
            return f"must be at most {_show(self.high)}"
        return f"must be between {_show(self.low)} and {_show(self.high)}"


@attrs.frozen
class OneOf:
    """One of a few words, matched case-insensitively and stored upper-case."""

    choices: Tuple[str, ...]

    def normalize(self, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    def problem(self, value: Any) -> Optional[str]:
        if value in self.choices:
            return None
        return "must be one of " + ", ".join(self.choices)


@attrs.frozen
class LogFormat:
    """A logging format string that formats a real record (no unknown fields, no bad syntax)."""

    def normalize(self, value: Any) -> Any:
        return value

    def problem(self, value: Any) -> Optional[str]:
        record = logging.LogRecord("parallelr", logging.INFO, __file__, 1, "message", None, None)
        try:
            logging.Formatter(value).format(record)
        except (ValueError, KeyError, TypeError) as exc:
            return f"is not a usable logging format ({type(exc).__name__}: {exc})"
        return None


@attrs.frozen
class FileNameTime:
    """A strftime format that yields a file-name part (it names the log files)."""

    def normalize(self, value: Any) -> Any:
        return value

    def problem(self, value: Any) -> Optional[str]:
        try:
            stamp = time.strftime(value)
        except ValueError as exc:
            return f"is not a usable time format ({exc})"
        if not stamp or "/" in stamp or "\0" in stamp:
            return "must give a non-empty file-name part without '/' (it names the log files)"
        return None


Rule = typing.Union[Between, OneOf, LogFormat, FileNameTime]


def _check_setting(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a Settings built in code obeys the same rules as one loaded from YAML."""
    rule = attribute.metadata.get(_RULE)
    reason = rule.problem(value) if rule is not None else None
    if reason is None and attribute.metadata.get(_UNIMPLEMENTED) and value != attribute.default:
        reason = f"is not implemented yet and must be {_show(attribute.default)}"
    if reason is not None:
        raise ValueError(f"{attribute.name} = {_show(value)} {reason}")


def setting(
    default: Any,
    *,
    rule: Optional[Rule] = None,
    capped_by: Optional[str] = None,
    script_only: bool = False,
    unimplemented: bool = False,
) -> Any:
    """Declare one configuration key.

    ``capped_by`` names the key in the same section that caps this one (values above it are
    lowered with a warning); ``script_only`` keys are ignored, with a warning, in the user
    config; ``unimplemented`` keys must keep their default (anything else warns and is reset).
    """
    metadata = {_RULE: rule, _CAPPED_BY: capped_by, _SCRIPT_ONLY: script_only, _UNIMPLEMENTED: unimplemented}
    return attrs.field(default=default, validator=_check_setting, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# The sections. Defaults are the spec's "Configuration Sections".


@attrs.frozen
class LimitsSection:
    """How many tasks run at once, for how long, how much output is kept, when to stop early."""

    max_workers: int = setting(20, rule=Between(1), capped_by="max_allowed_workers")
    timeout_seconds: int = setting(600, rule=Between(1), capped_by="max_allowed_timeout")
    wait_time: float = setting(0.1, rule=Between(0.01, 10))
    task_start_delay: float = setting(0.0, rule=Between(0, 60))
    max_output_capture: int = setting(1000, rule=Between(1), capped_by="max_allowed_output")
    max_allowed_workers: int = setting(100, rule=Between(1), script_only=True)
    max_allowed_timeout: int = setting(3600, rule=Between(1), script_only=True)
    max_allowed_output: int = setting(10000, rule=Between(1), script_only=True)
    stop_limits_enabled: bool = setting(False)
    max_consecutive_failures: int = setting(5, rule=Between(1))
    max_failure_rate: float = setting(0.5, rule=Between(0, 1))
    min_tasks_for_rate_check: int = setting(10, rule=Between(1))


@attrs.frozen
class SecuritySection:
    """Input limits; only the script config may set them."""

    max_argument_length: int = setting(1000, rule=Between(1))


@attrs.frozen
class ExecutionSection:
    """Where tasks run and how they are stopped."""

    workspace_isolation: bool = setting(False)
    use_process_groups: bool = setting(True)
    kill_grace_seconds: float = setting(5.0, rule=Between(0, 600))  # SIGTERM → SIGKILL


@attrs.frozen
class LoggingSection:
    """Log level, formats, the file-name timestamp and log rotation."""

    level: str = setting("INFO", rule=OneOf(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")))
    console_format: str = setting("%(asctime)s - %(levelname)s - %(message)s", rule=LogFormat())
    file_format: str = setting(
        "%(asctime)s - %(name)s - %(levelname)s - [%(threadName)s] - %(message)s", rule=LogFormat()
    )
    custom_date_format: str = setting("%d%b%y_%H%M%S", rule=FileNameTime())
    max_log_size_mb: int = setting(10, rule=Between(1))
    backup_count: int = setting(5, rule=Between(0))
    # Seconds between the plain progress lines in the main log when there is no terminal to draw
    # the progress line on (0: none).
    progress_interval: float = setting(30.0, rule=Between(0, 86400))


@attrs.frozen
class AdvancedSection:
    """Task file size limit and features reserved for later."""

    max_file_size: int = setting(1048576, rule=Between(1024, 104857600))
    memory_limit_mb: Optional[int] = setting(None, rule=Between(1))
    retry_failed_tasks: bool = setting(False, unimplemented=True)  # the old switch; see retries
    retries: int = setting(0, rule=Between(0, 100))  # extra attempts for a failed or timed-out task
    retry_delay: float = setting(1.0, rule=Between(0, 86400))  # seconds before the first retry
    retry_backoff: float = setting(2.0, rule=Between(1, 100))  # each further delay is this times longer
    retry_max_delay: float = setting(300.0, rule=Between(0, 86400))  # cap on one delay


@attrs.frozen
class JournalSection:
    """The SQLite journal that makes runs resumable (the journal plugin reads it)."""

    enabled: bool = setting(True)
    path: str = setting("")  # empty: ~/<app>/state.db (~/parallelr/state.db)


@attrs.frozen
class Settings:
    """The effective configuration of a run. A section marked script-only ignores the user config."""

    limits: LimitsSection = attrs.field(factory=LimitsSection)
    security: SecuritySection = attrs.field(factory=SecuritySection, metadata={_SCRIPT_ONLY: True})
    execution: ExecutionSection = attrs.field(factory=ExecutionSection)
    logging: LoggingSection = attrs.field(factory=LoggingSection)
    advanced: AdvancedSection = attrs.field(factory=AdvancedSection)
    journal: JournalSection = attrs.field(factory=JournalSection)


_settings_classes: Dict[Tuple[Tuple[str, type], ...], type] = {}


def settings_class(extra_sections: Optional[Mapping[str, type]] = None) -> type:
    """:class:`Settings`, or a subclass with the sections plugins declare
    (``parallelr_settings_sections``): each an attrs class of :func:`setting` fields, read from
    the same YAML files, with the same rules, caps and warnings as the core's sections."""
    if not extra_sections:
        return Settings
    key = tuple(sorted(extra_sections.items()))
    cached = _settings_classes.get(key)
    if cached is None:
        core = {field.name for field in attrs.fields(Settings)}
        clashes = sorted(core.intersection(extra_sections))
        if clashes:
            raise ConfigError(f"a plugin declares the settings section {clashes[0]!r}, which the core has")
        fields = {name: attrs.field(factory=section, type=section) for name, section in key}
        cached = attrs.make_class("Settings", fields, bases=(Settings,), frozen=True)
        _settings_classes[key] = cached
    return cached


def _sections(cls: type = Settings) -> Dict[str, attrs.Attribute]:
    """Section name → its field on Settings (field.type is the section class)."""
    return {field.name: field for field in attrs.fields(attrs.resolve_types(cls))}


def _keys(section_class: type) -> Dict[str, attrs.Attribute]:
    """Key name → its field (field.type resolved from the annotation)."""
    return {field.name: field for field in attrs.fields(attrs.resolve_types(section_class))}


def settings_as_dict(settings: Settings) -> Dict[str, Dict[str, Any]]:
    """The settings as plain nested dicts, in declaration order (for ``--show-config``)."""
    return attrs.asdict(settings, recurse=True)


# ---------------------------------------------------------------------------------------------
# Values: type conversion and display.


class _InvalidValue(Exception):
    """A value that cannot be used; the message says why (e.g. "expected an integer")."""


_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    # Only words: 1/0 for a switch is ambiguous enough in YAML to be a likely mistake.
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise _InvalidValue("expected true or false")


def _to_int(value: Any) -> int:
    # bool is a subclass of int: "max_workers: yes" must not become 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        try:
            return int(value.strip())
        except ValueError:  # more digits than Python converts
            pass
    raise _InvalidValue("expected an integer")


def _to_float(value: Any) -> float:
    number: Optional[float] = None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            number = float(value.strip())
    except OverflowError:
        number = None
    if number is None or not math.isfinite(number):
        raise _InvalidValue("expected a number")
    return number


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _InvalidValue("expected a string")


_CONVERTERS: Dict[type, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _convert(value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` when that is lossless and obvious, else _InvalidValue."""
    if typing.get_origin(kind) is typing.Union:
        members = typing.get_args(kind)
        nullable = type(None) in members
        if value is None and nullable:
            return None
        (inner,) = [member for member in members if member is not type(None)]
        try:
            return _convert(value, inner)
        except _InvalidValue as exc:
            raise _InvalidValue(f"{exc} or null" if nullable else str(exc)) from None
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise TypeError(f"setting type {kind!r} has no converter; add one to _CONVERTERS")
    return converter(value)


def _checked(field: attrs.Attribute, raw: Any) -> Any:
    """The value for ``field`` made from ``raw``: converted, normalized, checked against its rule."""
    value = _convert(raw, field.type)
    rule = field.metadata.get(_RULE)
    if rule is not None:
        value = rule.normalize(value)
        reason = rule.problem(value)
        if reason is not None:
            raise _InvalidValue(reason)
    return value


def _show(value: Any) -> str:
    """A value as a person would write it in YAML, short (never the repr of a big container)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "...'"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, candidates: List[str], prefix: str = "") -> str:
    import difflib  # only for a mistyped name: a run need not import it

    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _suggest_key(sections: Mapping[str, attrs.Attribute], section_name: str, key: str) -> str:
    """A hint for an unknown key: a close key of the same section, or the section that has it."""
    hint = _did_you_mean(key, list(_keys(sections[section_name].type)), prefix=f"{section_name}.")
    if hint:
        return hint
    for other_name, other in sections.items():
        if key in _keys(other.type):
            return f" (did you mean {other_name}.{key}?)"
    return ""


# ---------------------------------------------------------------------------------------------
# Files.


@attrs.frozen
class ConfigFile:
    """Which config file a layer wanted and which one it read.

    ``loaded`` is None when neither the wanted file nor its fallback exists (defaults are used);
    ``fallback`` is True when ``loaded`` is parallelr's file because ``wanted`` did not exist.
    """

    role: str  # "script" or "user"
    wanted: Path
    loaded: Optional[Path]
    fallback: bool


@attrs.frozen
class LoadedSettings:
    """The effective settings, the two files behind them, and the warnings the loading raised."""

    settings: Settings
    files: Tuple[ConfigFile, ConfigFile]  # (script, user)
    warnings: Tuple[str, ...]


def script_config_dir() -> Path:
    """The shipped ``cfg/`` folder: package data when installed, else the source checkout's."""
    package = Path(parallelr.__file__).parent
    candidates = (package / "cfg", package.parent / "cfg")
    for candidate in candidates:
        if (candidate / f"{DEFAULT_APP_NAME}.yaml").is_file():
            return candidate
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def _exists(path: Path) -> bool:
    """True when something (even a dangling symlink) is at ``path``; reading it names any problem."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise ConfigError(f"cannot check config file {path}: {exc.strerror or exc}") from None
    return True


def _locate(role: str, wanted: Path, fallback: Path) -> ConfigFile:
    if _exists(wanted):
        return ConfigFile(role=role, wanted=wanted, loaded=wanted, fallback=False)
    if fallback != wanted and _exists(fallback):
        return ConfigFile(role=role, wanted=wanted, loaded=fallback, fallback=True)
    return ConfigFile(role=role, wanted=wanted, loaded=None, fallback=False)


def _read_yaml(path: Path) -> Dict[Any, Any]:
    """The file's top-level mapping ({} for an empty file); ConfigError for anything unusable."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"cannot read config file {path}: it is a directory, not a YAML file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read config file {path}: not a regular file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        reason = "it is a broken symbolic link" if path.is_symlink() else "it no longer exists"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    import yaml  # PyYAML costs ~10 ms to import: only a run's settings need it, not --help

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        raise ConfigError(f"invalid YAML in {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid config file {path}: the top level must be a mapping of sections "
            f"(such as 'limits:'), not {_show(data)}"
        )
    return data


# ---------------------------------------------------------------------------------------------
# Merging.


@attrs.define
class _Merge:
    """The values being merged, where each came from, and the warnings so far."""

    values: Dict[str, Dict[str, Any]]
    sources: Dict[Tuple[str, str], str]
    warnings: List[str]
    sections: Dict[str, attrs.Attribute] = attrs.field(factory=_sections)

    def set(self, section_name: str, key: str, value: Any, source: str) -> None:
        self.values[section_name][key] = value
        self.sources[(section_name, key)] = source


def _apply_file(merge: _Merge, path: Path, data: Mapping[Any, Any], strict: bool) -> None:
    """Merge one file's values. ``strict`` (the script config): problems raise, nothing is ignored."""
    label = str(path)

    def reject(problem: str, consequence: str) -> None:
        if strict:
            raise ConfigError(f"invalid script config {path}: {problem}; fix or reinstall it")
        merge.warnings.append(f"{path}: {problem}; {consequence}")

    sections = merge.sections
    for raw_section, body in data.items():
        section_name = str(raw_section)
        section_field = sections.get(section_name)
        if section_field is None:
            hint = _did_you_mean(section_name, list(sections))
            reject(f"unknown section '{section_name}'{hint}", "ignored")
            continue
        if not strict and section_field.metadata.get(_SCRIPT_ONLY):
            merge.warnings.append(
                f"{path}: the {section_name} section can only be set in the script config; ignored"
            )
            continue
        if body is None:  # "limits:" with every key commented out
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                f"invalid config file {path}: section '{section_name}' must be a mapping of "
                f"settings (key: value lines indented under it), not {_show(body)}"
            )
        keys = _keys(section_field.type)
        for raw_key, raw in body.items():
            key = str(raw_key)
            dotted = f"{section_name}.{key}"
            field = keys.get(key)
            if field is None:
                reject(f"unknown setting {dotted}{_suggest_key(sections, section_name, key)}", "ignored")
                continue
            if not strict and field.metadata.get(_SCRIPT_ONLY):
                merge.warnings.append(f"{path}: {dotted} can only be set in the script config; ignored")
                continue
            current = merge.values[section_name][key]
            try:
                value = _checked(field, raw)
            except _InvalidValue as exc:
                reject(f"{dotted} = {_show(raw)} is not valid ({exc})", f"using {_show(current)}")
                continue
            value = _unimplemented_reset(merge, label, dotted, field, value)
            merge.set(section_name, key, value, label)


def _unimplemented_reset(merge: _Merge, source: str, dotted: str, field: attrs.Attribute, value: Any) -> Any:
    if field.metadata.get(_UNIMPLEMENTED) and value != field.default:
        merge.warnings.append(f"{source}: {dotted} is not implemented yet; using {_show(field.default)}")
        return field.default
    return value


def _apply_overrides(merge: _Merge, overrides: Mapping[str, Any]) -> None:
    """Merge command-line values (dotted keys). Bad values are usage errors: the user just typed them."""
    sections = merge.sections
    for dotted, raw in overrides.items():
        if raw is None:  # the flag was not given
            continue
        section_name, _, key = dotted.partition(".")
        section_field = sections.get(section_name)
        field = _keys(section_field.type).get(key) if section_field is not None else None
        if section_field is None or field is None:
            known = [f"{name}.{k}" for name, f in sections.items() for k in _keys(f.type)]
            raise UsageError(f"unknown setting {dotted}{_did_you_mean(dotted, known)}")
        if section_field.metadata.get(_SCRIPT_ONLY) or field.metadata.get(_SCRIPT_ONLY):
            raise UsageError(f"{dotted} can only be set in the script config, not on the command line")
        flag = CLI_FLAGS.get(dotted, dotted)
        try:
            value = _checked(field, raw)
        except _InvalidValue as exc:
            raise UsageError(f"invalid value for {flag}: {_show(raw)} ({exc})") from None
        value = _unimplemented_reset(merge, SOURCE_COMMAND_LINE, dotted, field, value)
        merge.set(section_name, key, value, SOURCE_COMMAND_LINE)


def _apply_caps(merge: _Merge) -> None:
    """Lower values above their ``max_allowed_*`` key, whichever layer set them."""
    for section_name, section_field in merge.sections.items():
        values = merge.values[section_name]
        for key, field in _keys(section_field.type).items():
            cap_key = field.metadata.get(_CAPPED_BY)
            if cap_key is None or values[key] is None or values[key] <= values[cap_key]:
                continue
            source = merge.sources.get((section_name, key), SOURCE_DEFAULTS)
            merge.warnings.append(
                f"{key} {_show(values[key])} from {source} capped at {cap_key} {_show(values[cap_key])}"
            )
            values[key] = values[cap_key]


def load_settings(
    app_name: str = DEFAULT_APP_NAME,
    home: Optional[Path] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    script_dir: Optional[Path] = None,
    extra_sections: Optional[Mapping[str, type]] = None,
) -> LoadedSettings:
    """Build the effective settings: defaults → script config → user config → ``overrides``.

    ``app_name`` names the files (``cfg/<app>.yaml``, ``~/<app>/cfg/<app>.yaml``), each falling
    back to parallelr's. ``overrides`` maps dotted keys (``"limits.max_workers"``) to command-line
    values; None values are skipped. ``script_dir`` replaces the shipped cfg/ folder (tests).
    ``extra_sections`` are the plugins' own sections (see :func:`settings_class`).
    """
    if not app_name or "/" in app_name or app_name in (".", ".."):
        raise ValueError(f"invalid app name {app_name!r}")
    from parallelr.paths import user_home  # the one source of "the user's home" (HOME checked)

    home = user_home() if home is None else Path(home)
    script_dir = script_config_dir() if script_dir is None else Path(script_dir)
    default_file = f"{DEFAULT_APP_NAME}.yaml"
    script_file = _locate("script", script_dir / f"{app_name}.yaml", script_dir / default_file)
    user_file = _locate(
        "user", home / app_name / "cfg" / f"{app_name}.yaml", home / DEFAULT_APP_NAME / "cfg" / default_file
    )

    cls = settings_class(extra_sections)
    sections = _sections(cls)
    merge = _Merge(values=settings_as_dict(cls()), sources={}, warnings=[], sections=sections)
    for config_file, strict in ((script_file, True), (user_file, False)):
        if config_file.loaded is not None:
            _apply_file(merge, config_file.loaded, _read_yaml(config_file.loaded), strict)
    _apply_overrides(merge, overrides or {})
    _apply_caps(merge)

    settings = cls(**{name: field.type(**merge.values[name]) for name, field in sections.items()})
    return LoadedSettings(settings=settings, files=(script_file, user_file), warnings=tuple(merge.warnings))
