"""The process registry: concurrent runs lose no lines, and only verified live runs are reported."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List

import psutil
import pytest

from parallelr.errors import ParallelrError
from parallelr.registry import Registry, RegistryError, RunEntry, entry_for_current_process


def fake_entry(pid: int, create_time: float = 0.0, uid: int = 0) -> RunEntry:
    """An entry whose fields are enough for register/unregister (no process behind it)."""
    return RunEntry(
        pid=pid, create_time=create_time, uid=uid, app_name="parallelr", started_at=1000.0,
        main_log=f"/logs/parallelr_{pid}.log", summary_csv=f"/logs/parallelr_{pid}_summary.csv",
    )


def entry_for(proc: psutil.Process, create_time_shift: float = 0.0) -> RunEntry:
    """What a run started as ``proc`` would have registered (optionally with a wrong start time)."""
    return RunEntry(
        pid=proc.pid, create_time=proc.create_time() + create_time_shift, uid=os.getuid(),
        app_name="parallelr", started_at=proc.create_time(),
        main_log=f"/logs/parallelr_{proc.pid}.log", summary_csv=f"/logs/parallelr_{proc.pid}_summary.csv",
    )


def pid_lines(registry: Registry) -> List[str]:
    return registry.pid_file.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "parallelr" / "pids" / "parallelr.pids")


@pytest.fixture
def sleeper():
    """A ``sleep 60`` this test owns; it is killed and reaped at teardown."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


# -- the PID file --------------------------------------------------------------------------------
def test_register_writes_one_pid_per_line_and_an_entry(registry: Registry) -> None:
    registry.register(fake_entry(101))
    registry.register(fake_entry(202))
    assert registry.pid_file.read_text(encoding="utf-8") == "101\n202\n"
    stored = RunEntry.from_json((registry.directory / "202.json").read_text(encoding="utf-8"))
    assert stored == fake_entry(202)


def test_register_twice_keeps_one_line(registry: Registry) -> None:
    registry.register(fake_entry(101))
    registry.register(fake_entry(101))
    assert pid_lines(registry) == ["101"]


def test_unregister_removes_only_its_own_line_and_entry(registry: Registry) -> None:
    for pid in (101, 202, 303):
        registry.register(fake_entry(pid))
    registry.unregister(202)
    assert pid_lines(registry) == ["101", "303"]
    assert sorted(path.name for path in registry.directory.glob("*.json")) == ["101.json", "303.json"]


def test_unregister_of_an_unknown_pid_changes_nothing(registry: Registry) -> None:
    registry.register(fake_entry(101))
    registry.unregister(999)
    assert pid_lines(registry) == ["101"]
    assert (registry.directory / "101.json").is_file()


def test_no_temporary_files_are_left_behind(registry: Registry) -> None:
    for pid in (101, 202):
        registry.register(fake_entry(pid))
    registry.unregister(101)
    names = sorted(path.name for path in registry.directory.iterdir())
    assert names == ["202.json", "parallelr.pids", "parallelr.pids.lock"]


def test_entry_json_round_trip_ignores_unknown_keys() -> None:
    entry = fake_entry(4242, create_time=12.5, uid=7)
    text = entry.to_json().replace("{", '{"added_in_a_later_version": 1, ', 1)
    assert RunEntry.from_json(text) == entry


# -- concurrent runs ---------------------------------------------------------------------------
def test_threads_registering_at_once_lose_no_lines(registry: Registry) -> None:
    threads, per_thread = 8, 40
    start = threading.Barrier(threads)
    errors: List[BaseException] = []

    def hammer(base: int) -> None:
        try:
            start.wait()
            for offset in range(per_thread):
                registry.register(fake_entry(base + offset))
                if offset % 2:
                    registry.unregister(base + offset - 1)  # keep only the odd ones
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(1000 * (n + 1),)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    expected = sorted(1000 * (n + 1) + offset for n in range(threads) for offset in range(1, per_thread, 2))
    lines = pid_lines(registry)
    assert len(lines) == len(expected) == threads * per_thread // 2
    assert sorted(int(line) for line in lines) == expected
    assert sorted(int(path.stem) for path in registry.directory.glob("*.json")) == expected


HAMMER = """
import sys
from pathlib import Path
from parallelr.registry import Registry, RunEntry

registry = Registry(Path(sys.argv[1]))
base, count = int(sys.argv[2]), int(sys.argv[3])
Path(sys.argv[4]).touch()
while not Path(sys.argv[5]).exists():  # a start gate: every process hammers at the same time
    pass
for offset in range(count):
    registry.register(RunEntry(pid=base + offset, create_time=0.0, uid=0, app_name="parallelr",
                               started_at=0.0, main_log="m", summary_csv="s"))
    if offset % 2:
        registry.unregister(base + offset - 1)
"""


def test_processes_registering_at_once_lose_no_lines(
    registry: Registry, tmp_path: Path, wait_until: Callable[..., object]
) -> None:
    processes, per_process = 4, 60
    gate = tmp_path / "go"
    ready = [tmp_path / f"ready{n}" for n in range(processes)]
    procs = [
        subprocess.Popen([sys.executable, "-c", HAMMER, str(registry.pid_file), str(10000 * (n + 1)),
                          str(per_process), str(ready[n]), str(gate)])
        for n in range(processes)
    ]
    try:
        wait_until(lambda: all(path.exists() for path in ready), 30, "the hammer processes to start")
        gate.touch()
        codes = [proc.wait(timeout=60) for proc in procs]
    finally:
        gate.touch()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    assert codes == [0] * processes
    expected = sorted(
        10000 * (n + 1) + offset for n in range(processes) for offset in range(1, per_process, 2)
    )
    lines = pid_lines(registry)
    assert len(lines) == len(expected) == processes * per_process // 2
    assert sorted(int(line) for line in lines) == expected


# -- which entries are live -------------------------------------------------------------------
def test_the_current_process_is_a_live_run(registry: Registry) -> None:
    entry = entry_for_current_process(
        "parallelr", 1000.0, "/l/main.log", "/l/summary.csv", None, run_id="r1", daemon=True
    )
    assert (entry.pid, entry.uid, entry.run_id, entry.daemon) == (os.getpid(), os.getuid(), "r1", True)
    assert entry.create_time == psutil.Process().create_time()
    registry.register(entry)
    assert registry.live_runs() == [entry]
    assert registry.find(os.getpid()) == entry
    assert registry.find(os.getpid() + 1) is None


def test_an_entry_whose_process_is_gone_is_pruned(registry: Registry) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    entry = entry_for(psutil.Process(proc.pid))
    proc.kill()
    proc.wait(timeout=10)
    mine = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.register(entry)
    registry.register(mine)
    assert entry.is_alive() is False
    assert registry.live_runs() == [mine]
    assert pid_lines(registry) == [str(os.getpid())]
    assert not (registry.directory / f"{proc.pid}.json").exists()


def test_a_reused_pid_is_pruned_and_its_process_untouched(
    registry: Registry, sleeper: subprocess.Popen
) -> None:
    entry = entry_for(psutil.Process(sleeper.pid), create_time_shift=-100.0)
    registry.register(entry)
    assert entry.is_alive() is False
    assert registry.live_runs() == []
    assert registry.find(sleeper.pid) is None
    assert pid_lines(registry) == []
    assert not (registry.directory / f"{sleeper.pid}.json").exists()
    assert sleeper.poll() is None


def test_an_entry_of_another_user_is_not_live(registry: Registry, sleeper: subprocess.Popen) -> None:
    entry = entry_for(psutil.Process(sleeper.pid))
    entry = RunEntry.from_json(entry.to_json().replace(f'"uid": {os.getuid()}', f'"uid": {os.getuid() + 1}'))
    assert entry.uid == os.getuid() + 1
    registry.register(entry)
    assert registry.live_runs() == []
    assert pid_lines(registry) == []


def test_a_zombie_is_not_live(registry: Registry, wait_until: Callable[..., object]) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        entry = entry_for(psutil.Process(proc.pid))
        registry.register(entry)
        assert registry.live_runs() == [entry]
        os.kill(proc.pid, 9)  # our own child; it stays a zombie until we reap it below
        wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie")
        assert registry.live_runs() == []
        assert pid_lines(registry) == []
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_pid_line_without_an_entry_is_pruned(registry: Registry) -> None:
    registry.directory.mkdir(parents=True)
    registry.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")  # a live PID, but no proof
    assert registry.live_runs() == []
    assert pid_lines(registry) == []


def test_an_entry_filed_under_another_pid_is_not_trusted(registry: Registry) -> None:
    mine = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.directory.mkdir(parents=True)
    registry.pid_file.write_text("1\n", encoding="utf-8")
    (registry.directory / "1.json").write_text(mine.to_json(), encoding="utf-8")
    assert registry.live_runs() == []
    assert pid_lines(registry) == []
    assert not (registry.directory / "1.json").exists()


def test_a_corrupt_entry_is_pruned(registry: Registry) -> None:
    registry.register(entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None))
    (registry.directory / f"{os.getpid()}.json").write_text("{not json", encoding="utf-8")
    assert registry.live_runs() == []
    assert pid_lines(registry) == []


def test_garbage_lines_are_ignored(registry: Registry) -> None:
    entry = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.register(entry)
    with registry.pid_file.open("a", encoding="utf-8") as handle:
        handle.write("not-a-pid\n\n-5\n")
    assert registry.live_runs() == [entry]


# -- a PID file the user broke (issue "Faults and hostile input") -------------------------------
def warnings_of(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "parallelr" and record.levelno == logging.WARNING]


def test_binary_junk_and_text_lines_are_pruned_with_a_warning(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    entry = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.register(entry)
    with registry.pid_file.open("ab") as handle:
        handle.write(b"\xff\xfe\x00\n12x\n\xd9\xa1\xd9\xa2\n99999999999\n0\n")  # "١٢" is str.isdigit()

    assert registry.live_runs() == [entry]
    assert pid_lines(registry) == [str(os.getpid())]
    assert warnings_of(caplog) == [
        f"Pruned 5 unreadable entries from the PID file {registry.pid_file}: "
        r"'\xff\xfe\x00', '12x', '\xd9\xa1\xd9\xa2', '99999999999', '0'"
    ]
    caplog.clear()
    assert registry.live_runs() == [entry]  # pruned once: no warning the next time
    assert warnings_of(caplog) == []


def test_register_prunes_junk_with_a_warning(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    registry.directory.mkdir(parents=True)
    registry.pid_file.write_bytes(b"\x80junk\n101\n")
    registry.register(fake_entry(202))
    assert pid_lines(registry) == ["101", "202"]
    assert warnings_of(caplog) == [
        f"Pruned 1 unreadable entry from the PID file {registry.pid_file}: '\\x80junk'"
    ]


@pytest.mark.parametrize(
    "text", ["[1, 2]", '"a string"', "null", '{"pid": "me"}', "CREATE_TIME_AS_TEXT", "\udcff"],
    ids=["list", "string", "null", "pid-text", "create-time-text", "not-utf8"],
)
def test_an_entry_of_the_wrong_shape_is_pruned_with_a_warning(
    registry: Registry, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    entry = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.register(entry)
    path = registry.directory / f"{os.getpid()}.json"
    if text == "CREATE_TIME_AS_TEXT":
        text = entry.to_json().replace(f'"create_time": {entry.create_time}', '"create_time": "soon"')
        assert "soon" in text
    path.write_bytes(text.encode("utf-8", "surrogateescape"))

    assert registry.live_runs() == []
    assert pid_lines(registry) == []
    assert not path.exists()
    assert warnings_of(caplog) == [
        f"Pruned PID {os.getpid()} of the PID file {registry.pid_file}: its entry {path} cannot be read"
    ]


def test_a_directory_in_place_of_the_pid_file_is_one_error_for_readers_and_writers(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.pid_file.mkdir(parents=True)
    message = (f"cannot read the PID file {registry.pid_file}: Is a directory "
               "(remove or rename what is in its place)")
    with pytest.raises(RegistryError) as listed:
        registry.live_runs()
    assert str(listed.value) == message
    assert isinstance(listed.value, ParallelrError) and listed.value.exit_code == 1
    with pytest.raises(RegistryError) as registered:
        registry.register(fake_entry(101))
    assert str(registered.value) == message
    assert list(registry.directory.glob("*.json")) == []  # nothing half-registered
    registry.unregister(101)  # a run that ends never fails for its entry: a warning
    assert warnings_of(caplog) == [f"Could not remove PID 101 from the PID file: {message}"]


def test_a_file_in_place_of_the_pid_directory_is_one_error(registry: Registry) -> None:
    registry.directory.parent.mkdir(parents=True)
    registry.directory.write_text("not a directory\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"^cannot read the PID file .*: Not a directory \(remove"):
        registry.live_runs()
    with pytest.raises(RegistryError, match=r"^cannot create the PID file's directory .*: File exists"):
        registry.register(fake_entry(101))


def test_listing_creates_nothing(registry: Registry) -> None:
    assert registry.live_runs() == []
    assert not registry.directory.exists()


def test_without_the_lock_a_reader_lists_but_does_not_prune(
    registry: Registry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = entry_for_current_process("parallelr", 1000.0, "/l/m.log", "/l/s.csv", None)
    registry.register(mine)
    registry.register(fake_entry(1))  # no such run: pruned when the file can be written
    with registry.pid_file.open("ab") as handle:
        handle.write(b"junk\n")
    before = registry.pid_file.read_bytes()

    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(registry, "_open_lock", read_only)
    assert registry.live_runs() == [mine]
    assert registry.pid_file.read_bytes() == before
    assert warnings_of(caplog) == [
        f"Ignored 1 unreadable entry of the PID file {registry.pid_file} (it cannot be rewritten): 'junk'"
    ]
    with pytest.raises(RegistryError, match=r"^cannot write the PID file's lock .*: Read-only file system"):
        registry.register(fake_entry(2))
