"""Waking idle workers when work arrives: one datagram socket per worker, no polling.

A worker binds a Unix datagram socket (in Linux's abstract namespace: no file to clean up after
a kill -9) and stores its address in its ``workers`` row; whoever changes the queue (an enqueue,
a retry, a resume, a stop request) sends one byte to every live worker. A datagram carries no
authority: a worker that receives one only looks at the store again (any local user can send
to an abstract socket), so a stray or forged wake-up costs one query and changes nothing.

A store that has notifications of its own (PostgreSQL's LISTEN/NOTIFY) can do without this.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from typing import Iterable, List, Optional

WORK = b"w"  # something may be due: look
_ABSTRACT = sys.platform.startswith("linux")


class WakeSocket:
    """The worker's end: ``fileno()`` becomes readable when someone sends a wake-up."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"parallelr-wake-{os.getpid()}-{os.urandom(6).hex()}"
        self._path: Optional[str] = None
        if _ABSTRACT:
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:  # macOS and friends: a socket file in the temp directory (short: sun_path is small)
            self._path = os.path.join(tempfile.gettempdir(), name[:40])
            self.sock.bind(self._path)
            self.address = self._path
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        """Read every pending wake-up; returns how many there were."""
        count = 0
        while True:
            try:
                self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError:
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)


def _socket_address(address: str) -> str:
    return "\0" + address[1:] if address.startswith("@") else address


def send(addresses: Iterable[Optional[str]], message: bytes = WORK) -> int:
    """Send ``message`` to each address; one that is gone is skipped. Returns how many were sent."""
    sent = 0
    targets: List[str] = [address for address in addresses if address]
    if not targets:
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for address in targets:
            try:
                sock.sendto(message, _socket_address(address))
                sent += 1
            except OSError:  # its worker is gone (or its buffer is full: it is awake anyway)
                continue
    return sent
