"""The queue's settings, kept in the store (``queuectl config set|get|list``).

Each key has one canonical spelling (``max-retries``); the underscore spelling of the second
queuectl README (``max_retries``) names the same key. A value is checked before it is stored, so
a bad one is refused and the stored value stays as it was.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Tuple

import attrs

from parallelr.errors import UsageError

STORE_PREFIX = "queue."  # the settings table's keys: queue.max-retries, ...


@attrs.frozen
class QueueSettings:
    """The values workers and ``enqueue`` use.

    ``max_retries``: the most attempts of a job enqueued without ``max_retries``;
    ``backoff_base``/``backoff_max``: failed attempt k waits ``min(backoff_max, base ** k)`` s;
    ``job_timeout``: seconds before a job without ``timeout`` is killed (0: never);
    ``lease_seconds``/``heartbeat_seconds``: a worker renews its jobs' leases every heartbeat; a job
    whose lease ran out (its worker is gone) is claimed again.
    """

    max_retries: int = 3
    backoff_base: float = 2.0
    backoff_max: float = 3600.0
    job_timeout: float = 300.0
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0


def _integer(minimum: int) -> Callable[[str], Any]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"needs a whole number >= {minimum}") from None
        if value < minimum:
            raise ValueError(f"needs a whole number >= {minimum}")
        return value
    return parse


def _number(minimum: float, above: bool = False) -> Callable[[str], Any]:
    wanted = f"a number {'>' if above else '>='} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"needs {wanted}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise ValueError(f"needs {wanted}")
        return value
    return parse


@attrs.frozen
class Key:
    name: str  # canonical: max-retries
    field: str  # QueueSettings attribute
    parse: Callable[[str], Any]
    help: str


KEYS: Tuple[Key, ...] = (
    Key("max-retries", "max_retries", _integer(0), "most attempts of a job (0 and 1: one)"),
    Key("backoff-base", "backoff_base", _number(1.0), "failed attempt k waits backoff-base ** k seconds"),
    Key("backoff-max", "backoff_max", _number(0.0), "the longest wait between two attempts (s)"),
    Key("job-timeout", "job_timeout", _number(0.0), "seconds before a job is killed (0: never)"),
    Key("lease-seconds", "lease_seconds", _number(1.0),
        "a job whose worker is silent this long is taken back"),
    Key("heartbeat-seconds", "heartbeat_seconds", _number(0.0, above=True),
        "how often a worker renews its leases"),
)
_BY_NAME: Dict[str, Key] = {key.name: key for key in KEYS}


def find_key(name: str) -> Key:
    """The key named ``name`` in either spelling.

    Raises:
        UsageError: an unknown key (with the closest known one).
    """
    key = _BY_NAME.get(name.strip().lower().replace("_", "-"))
    if key is None:
        from difflib import get_close_matches

        close = get_close_matches(name.replace("_", "-"), list(_BY_NAME), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown config key {name!r}{hint} (known keys: {', '.join(_BY_NAME)})")
    return key


def settings_from(stored: Mapping[str, str]) -> QueueSettings:
    """The settings from the store's ``queue.*`` rows; a row that does not parse (written by hand)
    keeps the default."""
    values: Dict[str, Any] = {}
    for key in KEYS:
        text = stored.get(stored_key(key))
        if text is None:
            continue
        try:
            values[key.field] = key.parse(text)
        except ValueError:
            continue
    return _consistent(QueueSettings(**values))


def _consistent(settings: QueueSettings) -> QueueSettings:
    if settings.heartbeat_seconds >= settings.lease_seconds:  # a lease would run out between beats
        return attrs.evolve(settings, heartbeat_seconds=settings.lease_seconds / 3)
    return settings


def checked_value(key: Key, text: str, current: QueueSettings, stored: Mapping[str, str]) -> str:
    """The text to store for ``key``, after checking it alone and with the other settings (a
    heartbeat left at its default follows a shorter lease: a third of it).

    Raises:
        UsageError: a value that does not parse or does not fit the others.
    """
    try:
        value = key.parse(text)
    except ValueError as exc:
        raise UsageError(f"bad value {text!r} for {key.name}: it {exc}") from None
    changed = attrs.evolve(current, **{key.field: value})
    heartbeat_set = key.field == "heartbeat_seconds" or stored_key(_BY_NAME["heartbeat-seconds"]) in stored
    if heartbeat_set and changed.heartbeat_seconds >= changed.lease_seconds:
        raise UsageError(
            f"bad value {text!r} for {key.name}: heartbeat-seconds ({changed.heartbeat_seconds:g})"
            f" must be less than lease-seconds ({changed.lease_seconds:g}),"
            " or a lease runs out between two heartbeats"
        )
    return _shown(value)


def listing(settings: QueueSettings, stored: Mapping[str, str]) -> List[Tuple[str, str, bool]]:
    """``(key, value, is_default)`` for every key, in :data:`KEYS` order."""
    return [(key.name, value_text(settings, key), stored_key(key) not in stored) for key in KEYS]


def stored_key(key: Key) -> str:
    return STORE_PREFIX + key.name


def value_text(settings: QueueSettings, key: Key) -> str:
    return _shown(getattr(settings, key.field))


def _shown(value: Any) -> str:
    """A value as ``config get`` prints and the store keeps it: ``2``, not ``2.0``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["KEYS", "Key", "QueueSettings", "checked_value", "find_key", "listing", "settings_from",
           "stored_key", "value_text"]
