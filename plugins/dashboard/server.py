"""Serving the dashboard: bind, print the URL, serve until Ctrl+C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import Any

from parallelr.errors import ParallelrError
from parallelr.jobs.opening import shown_location
from parallelr.queue import service


def serve(config: Any) -> int:
    from werkzeug.serving import make_server

    from parallelr.plugins.dashboard.app import Dashboard, create_app
    from parallelr.plugins.dashboard.guard import Access
    from parallelr.plugins.dashboard.stores import ChangeFeed, Stores

    options = config.options
    location = service.store_location(config.settings, config.home, options.db)
    if options.token is not None and not options.token.strip():
        raise ParallelrError("--token is empty: give a token, or leave it out to have one generated")
    stores = Stores(location)
    feed = ChangeFeed(location)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the console
    # Bind here, not in make_server: Werkzeug prints a paragraph and exits when a port is taken.
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    try:
        listener = socket.create_server((options.host, options.port), family=family, backlog=128)
    except OSError as exc:
        reason = str(exc.strerror or exc).split(" (while attempting", 1)[0]  # Python's own suffix
        raise ParallelrError(f"cannot listen on {options.host}:{options.port}: {reason}") from None
    except (ValueError, UnicodeError) as exc:
        raise ParallelrError(f"cannot listen on {options.host!r}: {exc}") from None
    port = listener.getsockname()[1]
    with listener:  # the server listens on a duplicate of it (socket.fromfd)
        server = make_server(options.host, port, None, threaded=True, fd=listener.fileno())  # type: ignore[arg-type]
    access = Access.for_bind(options.host, port, options.token, options.read_only)
    server.app = create_app(Dashboard(stores=stores, access=access, feed=feed))
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown_host}:{port}/" + (f"?token={access.token}" if access.token else "")
    mode = " (read-only)" if access.read_only else ""
    print(f"Dashboard{mode}: {url}  store {shown_location(location)}  (Ctrl+C stops it)", flush=True)
    stopping = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever to return: never call it on serve_forever's thread
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    feed.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        feed.stop()
        server.server_close()
        stores.close()
    print("Dashboard stopped", file=sys.stderr, flush=True)
    return 0
