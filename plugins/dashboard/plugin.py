"""``parallelr dashboard`` (also ``parallelr queue dashboard`` and ``queuectl dashboard``)."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from parallelr.commands import Command
from parallelr.errors import ParallelrError
from parallelr.hookspecs import hookimpl

HELP = "the live web dashboard of the queue and the batch runs (also: queuectl dashboard)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
EXTRA_MISSING = 'the dashboard needs Flask, which is not installed: pip install "parallelr[dashboard]"'


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535; 0: any free port)")
    return value


def add_arguments(parser: Any) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"the address to listen on (default {DEFAULT_HOST}; any other needs the token)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"the port (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--db", metavar="PATH",
                        help="the store's database file "
                             "(default: $QUEUECTL_DB_PATH, else ~/parallelr/state.db)")
    parser.add_argument("--read-only", action="store_true",
                        help="show everything, change nothing: no enqueue, retry or cancel")
    parser.add_argument("--token", metavar="TOKEN",
                        help="require this token on every request (generated when binding beyond 127.0.0.1)")


def run(config: Any) -> int:
    try:
        import flask  # noqa: F401
    except ImportError:
        raise ParallelrError(EXTRA_MISSING) from None
    from parallelr.plugins.dashboard.server import serve

    return serve(config)


@hookimpl
def parallelr_commands() -> Dict[str, Command]:
    return {"dashboard": Command("dashboard", HELP, add_arguments, run, parent="queue")}
