"""Daemon mode (-D): the classic double fork, with the daemon's PID reported back to the caller.

The command returns as soon as the daemon has set itself up and announced its PID and log
paths through a pipe; everything after that goes to the log files only.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional


def _read_all(fd: int) -> bytes:
    chunks: List[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def daemonize() -> int:
    """Detach. Returns, in the daemon only, the fd on which to announce itself (see Announcer).

    The calling process waits for the announcement, prints it and exits (0 when the daemon
    announced success, 1 when it reported an error or died first).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        message = _read_all(read_end).decode("utf-8", "replace")
        os.waitpid(first, 0)
        if message.startswith("OK\n"):
            sys.stdout.write(message[3:])
            sys.stdout.flush()
            os._exit(0)
        detail = message[len("ERROR\n"):] if message.startswith("ERROR\n") else "it exited before starting"
        sys.stderr.write(f"parallelr: error: the daemon could not start: {detail.strip()}\n")
        sys.stderr.flush()
        os._exit(1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return write_end


class Announcer:
    """The daemon's one message to the caller waiting in :func:`daemonize`: sent once, then the
    pipe is closed (a second call does nothing, so an error after the start cannot reuse it)."""

    def __init__(self, fd: Optional[int]) -> None:
        self._fd = fd

    @property
    def pending(self) -> bool:
        return self._fd is not None

    def started(self, text: str) -> None:
        self._send("OK\n" + text)

    def failed(self, text: str) -> None:
        self._send("ERROR\n" + text)

    def _send(self, payload: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, payload.encode("utf-8", "replace"))
        finally:
            os.close(fd)
