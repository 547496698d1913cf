"""glibc's ``posix_spawn`` through ctypes, with a working directory and "close the rest".

``os.posix_spawn`` cannot change the child's working directory (Python has no chdir file
action), and every task runs in one (the workspace or its slot's folder). glibc has one since
2.29, ``posix_spawn_file_actions_addchdir_np``, and "close every descriptor from 3 on" since 2.34,
``posix_spawn_file_actions_addclosefrom_np``; with both, glibc's ``posix_spawn`` does what
``subprocess.Popen(cwd=..., close_fds=True, start_new_session=...)`` does, at vfork speed on every
Python (3.9's ``Popen`` forks the whole runner) and without ``Popen``'s Python overhead on any.
ctypes releases the GIL for the call, so other threads run while the child execs.

This module is only the binding: :mod:`parallelr.spawn` decides when it can be used and falls
back to ``Popen`` where it cannot do exactly what ``Popen`` would.
"""

from __future__ import annotations

import signal
from typing import Any, List, Optional, Tuple

# glibc's <spawn.h> flag values (stable ABI): POSIX_SPAWN_SETSIGDEF and POSIX_SPAWN_SETSID.
_SETSIGDEF = 0x04
_SETSID = 0x80
# Opaque glibc objects: posix_spawn_file_actions_t is 80 bytes and posix_spawnattr_t 336 on
# 64-bit Linux; a generous buffer leaves room for any architecture's layout.
_OPAQUE_SIZE = 1024
_MIN_GLIBC = (2, 34)  # addclosefrom_np; addchdir_np came with 2.29


class Libc:
    """The C library's posix_spawn functions and two ready attribute objects (with and without
    a session of its own): built once, read-only afterwards, so threads may share them."""

    def __init__(self, ctypes: Any, libc: Any) -> None:
        self.ctypes = ctypes
        self.libc = libc
        self._spawn = libc.posix_spawn
        self._actions_init = libc.posix_spawn_file_actions_init
        self._actions_destroy = libc.posix_spawn_file_actions_destroy
        self._add_dup2 = libc.posix_spawn_file_actions_adddup2
        self._add_chdir = libc.posix_spawn_file_actions_addchdir_np
        self._add_closefrom = libc.posix_spawn_file_actions_addclosefrom_np
        self.environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
        self._attributes = {
            True: self._make_attributes(_SETSID | _SETSIGDEF),
            False: self._make_attributes(_SETSIGDEF),
        }

    def _make_attributes(self, flags: int) -> Any:
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

    def spawn(
        self,
        program: bytes,
        argv: List[bytes],
        environment: Optional[List[bytes]],
        cwd: bytes,
        stdio: Tuple[int, int, int],
        new_session: bool,
    ) -> int:
        """Spawn ``program`` with ``argv``, ``environment`` (``NAME=value`` lines; None: ours),
        in ``cwd``, with ``stdio`` as its descriptors 0, 1 and 2 and every other one closed.
        Returns the pid, or 0 when the spawn failed (the caller asks Popen for the reason)."""
        ctypes = self.ctypes
        actions = ctypes.create_string_buffer(_OPAQUE_SIZE)
        self._actions_init(actions)
        try:
            stdin, stdout, stderr = stdio
            if (
                self._add_dup2(actions, stdin, 0)
                or self._add_dup2(actions, stdout, 1)
                or self._add_dup2(actions, stderr, 2)
                or self._add_chdir(actions, cwd)
                or self._add_closefrom(actions, 3)
            ):
                return 0
            pid = ctypes.c_int()
            c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            if environment is None:
                c_env = self.environ
            else:
                c_env = (ctypes.c_char_p * (len(environment) + 1))(*environment, None)
            if self._spawn(ctypes.byref(pid), program, actions, self._attributes[new_session], c_argv, c_env):
                return 0
            return pid.value
        finally:
            self._actions_destroy(actions)


_libc: Optional[Libc] = None
_checked = False


def load() -> Optional[Libc]:
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
                _libc = Libc(ctypes, libc)
        except (OSError, AttributeError, ValueError):
            _libc = None
    return _libc


def available() -> bool:
    """True when tasks can be spawned here with posix_spawn (else every spawn uses Popen)."""
    return load() is not None
