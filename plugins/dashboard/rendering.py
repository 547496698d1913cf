"""What every route needs: the running dashboard, and a page rendered whole or as its live block."""

from __future__ import annotations

from typing import Any, Dict

from flask import Response, current_app, make_response, render_template, request


def current_dashboard() -> Any:
    """The :class:`~parallelr.plugins.dashboard.app.Dashboard` this request is served by."""
    return current_app.extensions["parallelr_dashboard"]


def render_page(template: str, **values: Any) -> Response:
    """The whole page, or only its live block (marked ``X-Live-Block: 1``) when the page's script
    asks for an update (header ``X-Live: 1``)."""
    if request.headers.get("X-Live") != "1":
        return make_response(render_template(template, **values))
    page = current_app.jinja_env.get_template(template)
    context: Dict[str, Any] = {}
    current_app.update_template_context(context)
    context.update(values)
    response = make_response("".join(page.blocks["live"](page.new_context(context))))
    response.headers["X-Live-Block"] = "1"
    return response
