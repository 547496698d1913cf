"""The Flask application: the rules of :mod:`.guard` around every request, the pages
(:mod:`.pages`) and the JSON API (:mod:`.api`), and one error page for what can go wrong."""

from __future__ import annotations

import secrets
from typing import Any, Tuple
from urllib.parse import quote, urlencode

import attrs
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from parallelr import __version__
from parallelr.errors import ParallelrError
from parallelr.jobs.errors import StoreUnavailable
from parallelr.plugins.dashboard import guard
from parallelr.plugins.dashboard.guard import Access
from parallelr.plugins.dashboard.reading import NotFound
from parallelr.plugins.dashboard.rendering import render_page
from parallelr.plugins.dashboard.stores import ChangeFeed, StoreMissing, Stores
from parallelr.queue.service import JobNotFound
from parallelr.report import escape_controls


@attrs.frozen
class Dashboard:
    """What every request needs: where the store is, the access rules and the change feed."""

    stores: Stores
    access: Access
    feed: ChangeFeed


def create_app(dashboard: Dashboard) -> Flask:
    from parallelr.plugins.dashboard import api, pages

    app = Flask("parallelr.plugins.dashboard")
    app.config.update(MAX_CONTENT_LENGTH=guard.MAX_BODY, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME=dashboard.access.cookie.replace("token", "session"))
    app.secret_key = secrets.token_bytes(32)  # signs the flash messages' cookie; new per process
    app.json.sort_keys = False
    # Every value a template writes is user data: control characters (NUL, ESC ...) are shown as
    # visible escapes, as on the command line, before the autoescape turns markup into text.
    app.jinja_env.finalize = lambda value: escape_controls(value) if isinstance(value, str) else value
    app.extensions["parallelr_dashboard"] = dashboard
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint, url_prefix="/api")

    @app.before_request
    def check_access() -> Any:
        access = dashboard.access
        if not access.host_allowed(request.host):
            return _bare(400, f"this dashboard answers to {sorted(access.hosts)[0]}, not {request.host!r}")
        given, how = access.token_of(request)
        if not access.token_ok(given):
            return _bare(401, "this dashboard needs its token: open the URL it printed, or send "
                              "'Authorization: Bearer TOKEN'")
        if how == "query" and request.method == "GET" and not _is_api():
            # the token leaves the address bar (and the history) for a cookie
            args = [(key, value) for key, value in request.args.items(multi=True) if key != "token"]
            response = redirect(quote(request.path) + ("?" + urlencode(args) if args else ""), 303)
            response.set_cookie(access.cookie, given or "", httponly=True, samesite="Strict")
            return response
        if request.method not in ("GET", "HEAD"):
            if access.read_only:
                return _refusal(403, "this dashboard is read-only (--read-only): it changes nothing")
            if how != "bearer" and not access.csrf_ok(request):
                return _refusal(403, "the request lacks the CSRF token of this page: reload it and try again")
        return None

    @app.after_request
    def harden(response: Response) -> Response:
        for name, value in guard.HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(ParallelrError)
    def user_error(exc: ParallelrError) -> Any:
        return _refusal(_status_of(exc), str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _refusal(exc.code or 500, f"{exc.name}: {exc.description}")

    @app.context_processor
    def page_values() -> Any:
        return {"csrf_token": dashboard.access.csrf, "read_only": dashboard.access.read_only,
                "store_location": dashboard.stores.location, "version": __version__}

    return app


def _status_of(exc: ParallelrError) -> int:
    if isinstance(exc, (StoreUnavailable, StoreMissing)):
        return 503
    if isinstance(exc, (NotFound, JobNotFound)):
        return 404
    return 400


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _bare(status: int, message: str) -> Tuple[Any, int]:
    """A refusal before access is granted: JSON, no page (a page carries the CSRF token)."""
    return jsonify({"error": message, "status": status}), status


def _refusal(status: int, message: str) -> Tuple[Any, int]:
    """One line, as JSON for the API and scripts, else as a page (which still has the menu)."""
    if _is_api() or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": message, "status": status}), status
    return render_page("error.html", status=status, message=message), status
