"""The queue's inputs, in-process: a job object checked into a NewJob (every field, every bad
value and its message), dependency cycles, the queue settings and the wake-up sockets."""

from __future__ import annotations

import datetime
import re
import select
from pathlib import Path
from typing import Any, Dict

import pytest

from parallelr.errors import UsageError
from parallelr.jobs.records import NewJob
from parallelr.queue import wake
from parallelr.queue.settings import QueueSettings, checked_value, find_key, settings_from
from parallelr.queue.spec import (
    DEFAULT_QUEUE,
    MAX_ID_LENGTH,
    JobError,
    JobReader,
    check_cycles,
    parse_json,
    read_lines,
)

NOW = 1_800_000_000.0
RETRIES = '"max_retries" must be a whole number from 0 to 1000000;'
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
def reader(tmp_path: Path) -> JobReader:
    return JobReader(max_retries=4, now=NOW, cwd=str(tmp_path))


def read(reader: JobReader, **fields: Any) -> NewJob:
    return reader.job({"command": "echo hi", **fields})


def refused(reader: JobReader, data: Dict[str, Any], where: str = "") -> str:
    with pytest.raises(JobError) as caught:
        reader.job(data, where)
    return str(caught.value)


# -- what a job may say -------------------------------------------------------------------------
def test_a_bare_command_gets_the_defaults(reader: JobReader, tmp_path: Path) -> None:
    job = reader.job({"command": "echo hi"})
    assert UUID4.fullmatch(job.key)
    assert (job.queue, job.argv, job.shell, job.env, job.cwd, job.timeout, job.priority, job.max_retries,
            job.due_at, job.depends_on) == (
        DEFAULT_QUEUE, ("/bin/sh", "-c", "echo hi"), True, (), str(tmp_path), None, 0, 4, None, ())
    assert reader.job({"command": "x"}).key != reader.job({"command": "x"}).key
    assert JobReader(3, NOW, queue="batch").job({"command": "x"}).queue == "batch"


def test_every_field_is_read(reader: JobReader, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    job = reader.job({
        "id": "job-1", "command": "make  all", "max_retries": 0, "priority": 7, "delay": 90,
        "timeout": 12, "depends_on": ["a", "b", "a"], "queue": "build.x:1", "env": {"A": "1", "_b2": ""},
        "cwd": "sub",
    })
    assert (job.key, job.argv, job.max_retries, job.priority, job.due_at, job.timeout, job.depends_on,
            job.queue, job.env, job.cwd) == (
        "job-1", ("/bin/sh", "-c", "make  all"), 0, 7, NOW + 90, 12.0, ("a", "b"), "build.x:1",
        (("A", "1"), ("_b2", "")), str(tmp_path / "sub"))
    assert isinstance(job.timeout, float)


@pytest.mark.parametrize(("given", "priority"), [
    ("high", 10), ("medium", 0), ("low", -10), (" HIGH ", 10), ("Low", -10), (5, 5), (-3, -3),
    (1_000_000_000, 1_000_000_000), (-1_000_000_000, -1_000_000_000),
])
def test_priorities_are_numbers_or_words(reader: JobReader, given: Any, priority: int) -> None:
    assert read(reader, priority=given).priority == priority


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-02T15:30:00Z", datetime.datetime(2026, 12, 2, 15, 30, tzinfo=datetime.timezone.utc)),
    ("2026-12-02T15:30:00z", datetime.datetime(2026, 12, 2, 15, 30, tzinfo=datetime.timezone.utc)),
    ("2026-12-02T15:30:00+01:00", datetime.datetime(2026, 12, 2, 14, 30, tzinfo=datetime.timezone.utc)),
    ("2026-12-02T15:30:00.250-05:30",
     datetime.datetime(2026, 12, 2, 21, 0, 0, 250000, tzinfo=datetime.timezone.utc)),
    (" 2026-12-02T15:30:00 ", datetime.datetime(2026, 12, 2, 15, 30)),  # no offset: local time
    ("2026-12-02", datetime.datetime(2026, 12, 2)),
])
def test_run_at_is_an_iso_time(reader: JobReader, text: str, expected: datetime.datetime) -> None:
    assert read(reader, run_at=text).due_at == expected.timestamp()


def test_delay_is_seconds_from_now(reader: JobReader) -> None:
    assert read(reader, delay=0).due_at == NOW
    assert read(reader, delay=1.5).due_at == NOW + 1.5
    assert read(reader, timeout=0.25).timeout == 0.25


def test_depends_on_takes_one_id_as_a_string(reader: JobReader) -> None:
    assert read(reader, depends_on="parent").depends_on == ("parent",)
    assert read(reader, depends_on=[]).depends_on == ()


def test_field_names_take_hyphens(reader: JobReader) -> None:
    job = reader.job({"command": "x", "max-retries": 9, "run-at": "2026-12-02T15:30:00Z",
                      "depends-on": ["p"]})
    assert (job.max_retries, job.depends_on) == (9, ("p",))
    assert job.due_at == datetime.datetime(2026, 12, 2, 15, 30, tzinfo=datetime.timezone.utc).timestamp()


def test_cwd_is_relative_to_the_readers_directory(reader: JobReader, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert read(reader, cwd="a/b").cwd == str(tmp_path / "a" / "b")
    assert read(reader, cwd="./a/../a/b/").cwd == str(tmp_path / "a" / "b")
    assert read(reader, cwd=str(tmp_path / "a")).cwd == str(tmp_path / "a")
    assert read(reader, cwd=".").cwd == str(tmp_path)


# -- what a job may not say ---------------------------------------------------------------------
def test_an_unknown_field_names_the_one_meant(reader: JobReader) -> None:
    assert refused(reader, {"command": "x", "comand": "y"}) == (
        'unknown field "comand"; did you mean "command"?')
    assert refused(reader, {"command": "x", "max-retry": 1}) == (
        'unknown field "max-retry"; did you mean "max_retries"?')
    message = refused(reader, {"command": "x", "zzzzzz": 1})
    assert message.startswith('unknown field "zzzzzz" (known fields: id, command, max_retries')
    assert refused(reader, {"command": "x", "max-retries": 1, "max_retries": 2}) == (
        'field "max_retries" is given twice')


@pytest.mark.parametrize(("data", "message"), [
    ({}, 'a job needs a "command" (a shell command line)'),
    ({"id": "a"}, 'a job needs a "command" (a shell command line)'),
    ({"command": 5}, '"command" must be a string; got 5'),
    ({"command": None}, '"command" must be a string; got null'),
    ({"command": ["echo", "hi"]}, '"command" must be a string; got ["echo", "hi"]'),
    ({"command": ""}, '"command" is empty: give the shell command line to run'),
    ({"command": " \t\n"}, '"command" is empty: give the shell command line to run'),
    ({"command": "echo a\0b"}, '"command" contains a NUL character, which no command can take'),
    ({"command": "x", "id": 5}, '"id" must be a string; got 5'),
    ({"command": "x", "id": ""}, f"bad \"id\" '': 1 to {MAX_ID_LENGTH} printable characters"),
    ({"command": "x", "id": "  "}, f"bad \"id\" '  ': 1 to {MAX_ID_LENGTH} printable characters"),
    ({"command": "x", "id": "a\nb"}, f"bad \"id\" 'a\\nb': 1 to {MAX_ID_LENGTH} printable characters"),
    ({"command": "x", "id": "i" * (MAX_ID_LENGTH + 1)}, f"1 to {MAX_ID_LENGTH} printable characters"),
    ({"command": "x", "id": "a\x7fb"}, f"bad \"id\" 'a\\x7fb': 1 to {MAX_ID_LENGTH} printable characters"),
    ({"command": "x", "max_retries": -1}, f"{RETRIES} got -1"),
    ({"command": "x", "max_retries": 1.5}, f"{RETRIES} got 1.5"),
    ({"command": "x", "max_retries": True}, f"{RETRIES} got true"),
    ({"command": "x", "max_retries": "3"}, f'{RETRIES} got "3"'),
    ({"command": "x", "max_retries": 1_000_001}, f"{RETRIES} got 1000001"),
    ({"command": "x", "priority": "urgent"},
     '"priority" must be a whole number from -1000000000 to 1000000000 (higher runs first)'
     ' or high, medium or low; got "urgent"'),
    ({"command": "x", "priority": 2.5}, '"priority" must be a whole number'),
    ({"command": "x", "priority": False}, '"priority" must be a whole number'),
    ({"command": "x", "priority": 1_000_000_001}, '"priority" must be a whole number'),
    ({"command": "x", "run_at": "2026-12-02T15:30:00", "delay": 5}, 'give "run_at" or "delay", not both'),
    ({"command": "x", "run-at": "2026-12-02T15:30:00", "delay": 5}, 'give "run_at" or "delay", not both'),
    ({"command": "x", "run_at": 5},
     '"run_at" must be an ISO 8601 time such as "2026-12-02T15:30:00", not a number'),
    ({"command": "x", "run_at": "tomorrow"}, "\"run_at\" 'tomorrow' is not an ISO 8601 time"),
    ({"command": "x", "run_at": "2026-13-02T15:30:00"}, "is not an ISO 8601 time"),
    ({"command": "x", "delay": -1}, '"delay" must be a number of seconds >= 0; got -1'),
    ({"command": "x", "delay": "5"}, '"delay" must be a number of seconds >= 0; got "5"'),
    ({"command": "x", "delay": True}, '"delay" must be a number of seconds >= 0; got true'),
    ({"command": "x", "delay": float("inf")}, '"delay" must be a number of seconds >= 0'),
    ({"command": "x", "delay": float("nan")}, '"delay" must be a number of seconds >= 0'),
    ({"command": "x", "timeout": 0}, '"timeout" must be a number of seconds > 0; got 0'),
    ({"command": "x", "timeout": -2.5}, '"timeout" must be a number of seconds > 0; got -2.5'),
    ({"command": "x", "timeout": "10"}, '"timeout" must be a number of seconds > 0; got "10"'),
    ({"command": "x", "depends_on": 5}, '"depends_on" must be a list of job IDs (strings); got 5'),
    ({"command": "x", "depends_on": [1]}, '"depends_on" must be a list of job IDs (strings); got [1]'),
    ({"command": "x", "depends_on": [""]}, '"depends_on" must be a list of job IDs (strings); got [""]'),
    ({"command": "x", "depends_on": {"a": 1}}, '"depends_on" must be a list of job IDs (strings)'),
    ({"command": "x", "id": "me", "depends_on": ["a", "me"]}, "job 'me' depends on itself"),
    ({"command": "x", "id": "me", "depends-on": "me"}, "job 'me' depends on itself"),
    ({"command": "x", "queue": "bad name"}, "bad \"queue\" 'bad name': a queue name is 1 to 100 letters"),
    ({"command": "x", "queue": ""}, "bad \"queue\" '': a queue name is 1 to 100 letters"),
    ({"command": "x", "queue": "-x"}, "bad \"queue\" '-x'"),
    ({"command": "x", "queue": "q" * 101}, "a queue name is 1 to 100 letters"),
    ({"command": "x", "queue": 3}, "bad \"queue\" 3"),
    ({"command": "x", "env": ["A=1"]},
     '"env" must be an object of variable names and string values; got ["A=1"]'),
    ({"command": "x", "env": {"1A": "x"}}, "bad variable name '1A' in \"env\": letters, digits and _"),
    ({"command": "x", "env": {"A-B": "x"}}, "bad variable name 'A-B' in \"env\""),
    ({"command": "x", "env": {"A": 1}}, '"env" value of A must be a string, not a number'),
    ({"command": "x", "env": {"A": None}}, '"env" value of A must be a string, not null'),
    ({"command": "x", "env": {"A": "a\0b"}}, '"env" value of A contains a NUL character'),
    ({"command": "x", "cwd": ""}, '"cwd" must be a directory path (a string); got ""'),
    ({"command": "x", "cwd": 5}, '"cwd" must be a directory path (a string); got 5'),
    ({"command": "x", "cwd": "missing"}, "\"cwd\" 'missing' is not an existing directory"),
])
def test_a_bad_job_is_refused_with_a_clear_message(reader: JobReader, data: Dict[str, Any],
                                                   message: str) -> None:
    assert message in refused(reader, data)


def test_a_cwd_that_is_a_file_is_refused(reader: JobReader, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert refused(reader, {"command": "x", "cwd": "file"}) == "\"cwd\" 'file' is not an existing directory"


def test_a_lone_surrogate_is_refused(reader: JobReader) -> None:
    for text in ('{"command": "echo \\ud800"}', '{"command": "x", "env": {"A": "\\udfff"}}',
                 '{"command": "x", "depends_on": ["\\ud800"]}'):
        assert "holds a lone surrogate" in refused(reader, parse_json(text))


def test_messages_start_with_where_the_job_came_from(reader: JobReader) -> None:
    message = refused(reader, {"command": ""}, "jobs.jsonl, line 3: ")
    assert message.startswith('jobs.jsonl, line 3: "command"')
    assert refused(reader, {"x": 1}, "here: ").startswith('here: unknown field "x"')


def test_parse_json_wants_one_object() -> None:
    assert parse_json('{"command": "x", "priority": "high"}') == {"command": "x", "priority": "high"}
    for text, message in (
        ("{nope", "line 1: invalid JSON: "),
        ("[1, 2]", "line 1: a job is a JSON object such as '{\"command\": \"echo hi\"}', not an array"),
        ('"echo hi"', "not a string"),
        ("5", "not a number"),
        ("null", "not null"),
        ("true", "not a boolean"),
        ("[" * 100_000 + "]" * 100_000, "line 1: invalid JSON: nested too deeply"),
    ):
        with pytest.raises(JobError) as caught:
            parse_json(text, "line 1: ")
        assert message in str(caught.value), text[:20]


def test_read_lines_skips_blank_lines_and_names_the_bad_line(reader: JobReader) -> None:
    lines = ['{"command": "a", "id": "one"}\n', "\n", "   \n", '{"command": "b", "id": "two"}\n',
             '{"command": ""}\n', '{"command": "never read"}\n']
    jobs = read_lines(lines, reader, "jobs.jsonl")
    assert [next(jobs).key, next(jobs).key] == ["one", "two"]
    with pytest.raises(JobError) as caught:
        next(jobs)
    assert str(caught.value) == 'jobs.jsonl, line 5: "command" is empty: give the shell command line to run'
    with pytest.raises(JobError) as caught:
        list(read_lines(["{bad"], reader, "stdin"))
    assert str(caught.value).startswith("stdin, line 1: invalid JSON")


# -- dependency cycles ----------------------------------------------------------------------------
@pytest.mark.parametrize(("edges", "cycle"), [
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
    ({"a": ["a"]}, "a -> a"),
    ({"x": ["a"], "a": ["b"], "b": ["a"]}, "a -> b -> a"),
    ({"x": ["stored"], "y": ["x", "z"], "z": ["w"], "w": ["y"]}, "y -> z -> w -> y"),
])
def test_a_cycle_is_found_and_named(edges: Dict[str, Any], cycle: str) -> None:
    with pytest.raises(JobError) as caught:
        check_cycles(edges)
    assert str(caught.value) == f"depends_on forms a cycle: {cycle}"


def test_dags_pass() -> None:
    check_cycles({})
    check_cycles({"d": ["b", "c"], "b": ["a"], "c": ["a"], "e": ["d", "a", "stored"]})  # a diamond
    check_cycles({"b": ["a"], "c": ["a", "b"], "d": ["c", "b", "a"]})


def test_a_chain_of_ten_thousand_needs_no_recursion() -> None:
    chain: Dict[str, Any] = {f"j{n}": [f"j{n - 1}"] for n in range(9999, 0, -1)}  # the deepest first
    check_cycles(chain)
    closed = {"j0": ["j9999"], **chain}
    with pytest.raises(JobError) as caught:
        check_cycles(closed)
    message = str(caught.value)
    assert message.startswith("depends_on forms a cycle: j0 -> j9999 -> j9998 -> ")
    assert message.endswith(" -> j1 -> j0")
    assert message.count(" -> ") == 10_000


# -- settings -------------------------------------------------------------------------------------
def test_find_key_takes_both_spellings() -> None:
    assert find_key("max-retries").name == "max-retries"
    assert find_key("max_retries").name == "max-retries"
    assert find_key(" Backoff_Base ").field == "backoff_base"
    assert find_key("heartbeat_seconds").name == "heartbeat-seconds"


def test_an_unknown_key_names_the_closest() -> None:
    with pytest.raises(UsageError) as caught:
        find_key("max_retry")
    assert str(caught.value).startswith(
        "unknown config key 'max_retry'; did you mean 'max-retries'? (known keys: ")
    with pytest.raises(UsageError) as caught:
        find_key("zzzz")
    assert str(caught.value).startswith("unknown config key 'zzzz' (known keys: max-retries, backoff-base")


@pytest.mark.parametrize(("key", "text", "stored"), [
    ("max-retries", "0", "0"), ("max-retries", " 7 ", "7"), ("backoff-base", "1", "1"),
    ("backoff-base", "2.5", "2.5"), ("backoff-max", "0", "0"), ("job-timeout", "0", "0"),
    ("lease-seconds", "60", "60"), ("heartbeat-seconds", "29.5", "29.5"),
])
def test_a_good_value_is_stored_as_its_text(key: str, text: str, stored: str) -> None:
    assert checked_value(find_key(key), text, QueueSettings(), {}) == stored


@pytest.mark.parametrize(("key", "text", "message"), [
    ("backoff-base", "0.5", "bad value '0.5' for backoff-base: it needs a number >= 1"),
    ("backoff-base", "two", "bad value 'two' for backoff-base: it needs a number >= 1"),
    ("backoff-max", "-1", "bad value '-1' for backoff-max: it needs a number >= 0"),
    ("backoff-max", "inf", "it needs a number >= 0"),
    ("backoff-max", "nan", "it needs a number >= 0"),
    ("max-retries", "-1", "bad value '-1' for max-retries: it needs a whole number >= 0"),
    ("max-retries", "1.5", "bad value '1.5' for max-retries: it needs a whole number >= 0"),
    ("max-retries", "", "it needs a whole number >= 0"),
    ("lease-seconds", "0.5", "it needs a number >= 1"),
    ("heartbeat-seconds", "0", "bad value '0' for heartbeat-seconds: it needs a number > 0"),
    ("heartbeat-seconds", "30", "heartbeat-seconds (30) must be less than lease-seconds (30)"),
    ("heartbeat-seconds", "45", "heartbeat-seconds (45) must be less than lease-seconds (30)"),
])
def test_a_bad_value_is_refused(key: str, text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        checked_value(find_key(key), text, QueueSettings(), {})
    assert message in str(caught.value)


def test_a_lease_shorter_than_a_set_heartbeat_is_refused() -> None:
    stored = {"queue.heartbeat-seconds": "10"}
    current = settings_from(stored)
    with pytest.raises(UsageError) as caught:
        checked_value(find_key("lease-seconds"), "10", current, stored)
    assert "heartbeat-seconds (10) must be less than lease-seconds (10)" in str(caught.value)
    assert checked_value(find_key("lease-seconds"), "11", current, stored) == "11"
    # a heartbeat left at its default follows a shorter lease (a third of it)
    assert checked_value(find_key("lease-seconds"), "5", QueueSettings(), {}) == "5"
    assert settings_from({"queue.lease-seconds": "6"}).heartbeat_seconds == 2.0


def test_settings_from_keeps_the_default_of_a_value_that_does_not_parse() -> None:
    defaults = QueueSettings()
    settings = settings_from({
        "queue.max-retries": "many", "queue.backoff-base": "3", "queue.backoff-max": "-5",
        "queue.lease-seconds": "0.1", "queue.job-timeout": "12.5", "queue.unknown": "1", "max-retries": "9",
    })
    assert settings == QueueSettings(max_retries=defaults.max_retries, backoff_base=3.0,
                                     backoff_max=defaults.backoff_max, job_timeout=12.5,
                                     lease_seconds=defaults.lease_seconds,
                                     heartbeat_seconds=defaults.heartbeat_seconds)
    assert settings_from({}) == defaults


# -- wake-ups -------------------------------------------------------------------------------------
def test_a_wake_socket_receives_a_wake_up() -> None:
    sock = wake.WakeSocket()
    try:
        assert sock.drain() == 0
        assert wake.send([sock.address]) == 1
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable == [sock]
        assert sock.drain() == 1
        assert select.select([sock], [], [], 0)[0] == []
        assert wake.send([None, "", sock.address, sock.address], b"x") == 2
        assert sock.drain() == 2
    finally:
        sock.close()


def test_a_wake_up_to_a_closed_or_unknown_address_is_skipped(tmp_path: Path) -> None:
    gone = wake.WakeSocket()
    address = gone.address
    gone.close()
    live = wake.WakeSocket()
    try:
        assert wake.send([address]) == 0
        assert wake.send(["@parallelr-wake-never-bound-0", str(tmp_path / "no-socket"), address,
                          live.address]) == 1
        assert live.drain() == 1
        assert wake.send([]) == 0
        assert wake.send([None]) == 0
    finally:
        live.close()
