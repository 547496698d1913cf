"""Who may use the dashboard and how: the token, CSRF, the Host header and the response headers.

- Bound to a loopback address, the dashboard answers only requests whose ``Host`` is that
  address (a page of another site that rebinds its DNS name to 127.0.0.1 gets 400).
- Bound to any other address it needs a token (``--token``, or one is generated): every request
  without it gets 401. The token comes as ``Authorization: Bearer TOKEN``, a cookie, or once as
  ``?token=`` in the URL the dashboard printed (which then sets the cookie and drops it from the URL).
- Every POST carries the CSRF token of this server process (a form field or ``X-CSRF-Token``);
  a script that sends the bearer token needs none. ``--read-only`` refuses every POST.
- Every response forbids inline scripts and framing (Content-Security-Policy): even a bug in
  escaping could not run a script.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Any, FrozenSet, Optional, Tuple

import attrs

COOKIE = "parallelr_dashboard_token"  # + "_PORT": browsers send a host's cookies to all its ports
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_BODY = 64 * 1024  # bytes of a request body: a job is a command line, not a file
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Access:
    """The rules of one dashboard process."""

    token: Optional[str]
    csrf: str
    read_only: bool
    hosts: FrozenSet[str]  # the Host headers a loopback dashboard accepts; empty: any
    cookie: str = COOKIE  # the token cookie's name

    @classmethod
    def for_bind(cls, host: str, port: int, token: Optional[str], read_only: bool) -> Access:
        """The rules for listening on ``host:port``: beyond loopback a token is a must."""
        loopback = is_loopback(host)
        if token is None and not loopback:
            token = secrets.token_urlsafe(24)
        hosts: FrozenSet[str] = frozenset()
        if loopback:
            names = {host, "127.0.0.1", "localhost", "[::1]"}
            hosts = frozenset(f"{name}:{port}" for name in names) | frozenset(names)
        return cls(token=token, csrf=secrets.token_urlsafe(24), read_only=read_only, hosts=hosts,
                   cookie=f"{COOKIE}_{port}")

    def host_allowed(self, host: str) -> bool:
        return not self.hosts or host.lower() in self.hosts

    def token_of(self, request: Any) -> Tuple[Optional[str], str]:
        """``(token given, how)``: how is ``"query"``, ``"bearer"``, ``"cookie"`` or ``""``. The URL's
        token comes first: the printed URL must work in a browser that keeps an older cookie."""
        if "token" in request.args:
            return request.args["token"], "query"
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer "):].strip(), "bearer"
        if self.cookie in request.cookies:
            return request.cookies[self.cookie], "cookie"
        return None, ""

    def token_ok(self, given: Optional[str]) -> bool:
        return self.token is None or (given is not None and _same(given, self.token))

    def csrf_ok(self, request: Any) -> bool:
        given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
        return _same(given, self.csrf)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes text beyond ASCII (compare_digest's str refuses it)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))
