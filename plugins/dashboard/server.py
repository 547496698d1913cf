"""Serving the dashboard: bind, print the URL, serve until Ctrl+C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from parallelr.errors import ParallelrError
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
    try:
        server = make_server(options.host, options.port, None, threaded=True)  # type: ignore[arg-type]
    except OSError as exc:
        reason = exc.strerror or exc
        raise ParallelrError(f"cannot listen on {options.host}:{options.port}: {reason}") from None
    except (ValueError, UnicodeError) as exc:
        raise ParallelrError(f"cannot listen on {options.host!r}: {exc}") from None
    port = server.server_port
    access = Access.for_bind(options.host, port, options.token, options.read_only)
    server.app = create_app(Dashboard(stores=stores, access=access, feed=feed))
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown_host}:{port}/" + (f"?token={access.token}" if access.token else "")
    mode = " (read-only)" if access.read_only else ""
    print(f"Dashboard{mode}: {url}  store {location}  (Ctrl+C stops it)", flush=True)
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
