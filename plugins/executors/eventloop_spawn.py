"""Spawning for the event-loop executor: glibc's ``posix_spawn`` with a working directory.

``os.posix_spawn`` cannot change the child's working directory (there is no chdir file action
in Python), and every task runs in one (the workspace or its slot's folder). glibc has one since
2.29, ``posix_spawn_file_actions_addchdir_np``, and "close every descriptor from 3 on" since 2.34,
``posix_spawn_file_actions_addclosefrom_np``; with both, a glibc ``posix_spawn`` called through
ctypes does what ``subprocess.Popen(cwd=..., close_fds=True, start_new_session=...)`` does, at
vfork speed on every Python (3.9's ``Popen`` forks the whole runner) and without ``Popen``'s Python
overhead on any.

Anything this spawner cannot do exactly as ``Popen`` would goes to
:func:`parallelr.process.spawn_with_popen` instead: a task whose program is looked up in a PATH
of its own or is not found in ours, an argument or variable with a NUL byte or a variable name
with ``=``, a C library without the two file actions. A spawn that fails is tried again with
``Popen`` too, so that the error message is the one the thread executor gives (posix_spawn
reports one errno for a working directory and a program that are both missing).
"""

from __future__ import annotations

import os
import signal
from typing import Any, List, Optional, Sequence, Tuple, Union

from parallelr import process
from parallelr.model import TaskResult
from parallelr.supervise import SpawnedTask

# glibc's <spawn.h> flag values (stable ABI): POSIX_SPAWN_SETSIGDEF and POSIX_SPAWN_SETSID.
_SETSIGDEF = 0x04
_SETSID = 0x80
# Opaque glibc objects: posix_spawn_file_actions_t is 80 bytes and posix_spawnattr_t 336 on
# 64-bit Linux; a generous buffer leaves room for any architecture's layout.
_OPAQUE_SIZE = 1024
_MIN_GLIBC = (2, 34)  # addclosefrom_np; addchdir_np came with 2.29


class _Libc:
    """The C library's posix_spawn functions and two ready attribute objects (with and without
    a session of its own): built once, read-only afterwards, so threads may share them."""

    def __init__(self, ctypes: Any, libc: Any) -> None:
        self.ctypes = ctypes
        self.libc = libc
        self.spawn = libc.posix_spawn
        self.actions_init = libc.posix_spawn_file_actions_init
        self.actions_destroy = libc.posix_spawn_file_actions_destroy
        self.add_dup2 = libc.posix_spawn_file_actions_adddup2
        self.add_chdir = libc.posix_spawn_file_actions_addchdir_np
        self.add_closefrom = libc.posix_spawn_file_actions_addclosefrom_np
        self.environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
        self.attributes = {True: self._attributes(_SETSID | _SETSIGDEF), False: self._attributes(_SETSIGDEF)}

    def _attributes(self, flags: int) -> Any:
        """An attribute object that resets the signals Python ignores (SIGPIPE, SIGXFSZ) to their
        defaults in the child, as ``Popen(restore_signals=True)`` does, and with ``_SETSID`` a
        new session, as ``Popen(start_new_session=True)``."""
        ctypes, libc = self.ctypes, self.libc
        attributes = ctypes.create_string_buffer(_OPAQUE_SIZE)
        # sigset_t is an array of unsigned longs, bit (n - 1) for signal n. Set by hand: glibc's
        # sigaddset refuses its internal signals (32 and 33, below SIGRTMIN), and its
        # posix_spawn sets those to SIG_IGN in the child unless they are in this set, so a
        # task would start with them ignored where Popen's child has them at their default.
        word_bits = 8 * ctypes.sizeof(ctypes.c_ulong)
        signals = (ctypes.c_ulong * (_OPAQUE_SIZE // ctypes.sizeof(ctypes.c_ulong)))()
        internal = range(32, int(getattr(signal, "SIGRTMIN", 32)))
        for signum in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None), *internal):
            if signum is not None:
                signals[(int(signum) - 1) // word_bits] |= 1 << ((int(signum) - 1) % word_bits)
        if (
            libc.posix_spawnattr_init(attributes)
            or libc.posix_spawnattr_setsigdefault(attributes, signals)
            or libc.posix_spawnattr_setflags(attributes, ctypes.c_short(flags))
        ):
            raise OSError("posix_spawnattr setup failed")
        return attributes


_libc: Optional[_Libc] = None
_checked = False


def _load() -> Optional[_Libc]:
    """The C library's spawn functions, or None where they are missing (not glibc >= 2.34)."""
    global _libc, _checked
    if not _checked:
        _checked = True
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            version = libc.gnu_get_libc_version
            version.restype = ctypes.c_char_p
            major, minor = (int(part) for part in version().decode().split(".")[:2])
            if (major, minor) >= _MIN_GLIBC:
                _libc = _Libc(ctypes, libc)
        except (OSError, AttributeError, ValueError):
            _libc = None
    return _libc


def available() -> bool:
    """True when tasks can be spawned here with posix_spawn (else every spawn uses Popen)."""
    return _load() is not None


def _program(launch: process.Launch) -> Optional[str]:
    """The path to execute, as ``Popen`` would: our PATH's match for a bare name, the name
    itself when it has a slash (relative to the working directory, which is set first). None:
    only ``Popen`` can do it exactly (a PATH of the task's own, a name not in our PATH)."""
    found = process.executable_path(launch.task)
    if found is not None:
        return found
    program = launch.task.argv[0]
    if os.sep in program and not any(name == "PATH" for name, _ in launch.task.env):
        return program
    return None


def _encoded(values: Sequence[str]) -> Optional[List[bytes]]:
    encoded = [os.fsencode(value) for value in values]
    return None if any(b"\0" in value for value in encoded) else encoded


def _environment_block(environment: Optional[dict]) -> Union[bool, List[bytes], None]:
    """``NAME=value`` lines, None to inherit ours, False for a variable Popen would refuse."""
    if environment is None:
        return None
    lines = []
    for name, value in environment.items():
        name_bytes, value_bytes = os.fsencode(name), os.fsencode(value)
        if b"=" in name_bytes or b"\0" in name_bytes or b"\0" in value_bytes:
            return False
        lines.append(name_bytes + b"=" + value_bytes)
    return lines


def spawn(launch: process.Launch) -> Union[SpawnedTask, TaskResult]:
    """Spawn the launch's task as :func:`parallelr.process.spawn_with_popen` would (own session,
    stdin /dev/null, two output pipes, every other descriptor closed, the working directory),
    with posix_spawn where it can do that exactly. The ERROR result when it cannot start."""
    libc = _load()
    program = _program(launch) if libc is not None else None
    argv = _encoded(launch.task.argv) if program is not None else None
    if libc is None or program is None or argv is None:
        return process.spawn_with_popen(launch)
    environment = _environment_block(process.task_environment(launch.task, launch.limits))
    if environment is False:
        return process.spawn_with_popen(launch)
    rss_floor_kib = process.reset_own_peak_rss()
    spawned = _posix_spawn(libc, launch, os.fsencode(program), argv, environment)
    if spawned is None:
        return process.spawn_with_popen(launch)  # the same spawn again, for Popen's exact error
    pid, stdout_fd, stderr_fd = spawned
    return SpawnedTask(pid, stdout_fd, stderr_fd, rss_floor_kib)


def _posix_spawn(
    libc: _Libc, launch: process.Launch, program: bytes, argv: List[bytes], environment: Optional[List[bytes]]
) -> Optional[Tuple[int, int, int]]:
    """``(pid, stdout_read, stderr_read)`` of the spawned task, or None when posix_spawn failed."""
    ctypes = libc.ctypes
    try:
        out_read, out_write, err_read, err_write = process.output_pipes()
    except OSError:
        return None
    actions = ctypes.create_string_buffer(_OPAQUE_SIZE)
    libc.actions_init(actions)
    try:
        failed = (
            libc.add_dup2(actions, process.devnull_fd(), 0)
            or libc.add_dup2(actions, out_write, 1)
            or libc.add_dup2(actions, err_write, 2)
            or libc.add_chdir(actions, os.fsencode(launch.cwd))
            or libc.add_closefrom(actions, 3)
        )
        pid = ctypes.c_int()
        if not failed:
            c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            c_env = libc.environ if environment is None else (ctypes.c_char_p * (len(environment) + 1))(
                *environment, None
            )
            attributes = libc.attributes[launch.limits.use_process_groups]
            failed = libc.spawn(ctypes.byref(pid), program, actions, attributes, c_argv, c_env)
    finally:
        libc.actions_destroy(actions)
        os.close(out_write)
        os.close(err_write)
    if failed:
        os.close(out_read)
        os.close(err_read)
        return None
    return (pid.value, out_read, err_read)
