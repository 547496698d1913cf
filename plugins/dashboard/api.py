"""``/api/``: everything the pages show, as JSON, and the live event stream.

GET never changes anything. POST takes JSON and needs the CSRF token (``X-CSRF-Token``, from
``GET /api/session``) or the bearer token. Errors are ``{"error": "one line", "status": N}``.
"""

from __future__ import annotations

from typing import Any, Iterator

from flask import Blueprint, Response, jsonify, request, stream_with_context

from parallelr.errors import UsageError
from parallelr.plugins.dashboard import actions, reading
from parallelr.plugins.dashboard.rendering import current_dashboard
from parallelr.queue.spec import checked_object, parse_json_value

blueprint = Blueprint("api", __name__)
KEEPALIVE = 15.0  # seconds between comments on a quiet stream (finds closed connections)


@blueprint.get("/session")
def session() -> Any:
    access = current_dashboard().access
    return jsonify({"csrf_token": access.csrf, "read_only": access.read_only,
                    "store": current_dashboard().stores.location})


@blueprint.get("/status")
def status() -> Any:
    with current_dashboard().stores.reading() as store:
        return jsonify(reading.overview(store))


@blueprint.get("/jobs")
def jobs() -> Any:
    wanted = reading.JobFilter.parse(request.args)
    with current_dashboard().stores.reading() as store:
        return jsonify(reading.jobs_page(store, wanted))


@blueprint.get("/job")
def job() -> Any:
    """``/api/job?id=ID``: for any ID (``/api/jobs/ID`` is the same for IDs without dot segments)."""
    return job_at(request.args.get("id", ""))


@blueprint.get("/jobs/<path:key>")
def job_at(key: str) -> Any:
    with current_dashboard().stores.reading() as store:
        return jsonify(reading.job_detail(store, key))


@blueprint.get("/dead")
def dead() -> Any:
    wanted = reading.JobFilter.parse(request.args, states=("dead",))
    with current_dashboard().stores.reading() as store:
        return jsonify(reading.jobs_page(store, wanted))


@blueprint.get("/runs")
def runs() -> Any:
    with current_dashboard().stores.reading() as store:
        return jsonify({"runs": reading.runs(store)})


@blueprint.get("/runs/<run_id>")
def run(run_id: str) -> Any:
    after = reading.whole(request.args.get("after"), "after", 0, reading.MAX_ROW)
    with current_dashboard().stores.reading() as store:
        data, _drawn = reading.run_detail(store, run_id, after=-1 if after is None else after)
    return jsonify(data)


@blueprint.get("/events")
def events() -> Any:
    """Server-sent events: ``change`` (data: a counter) whenever the store changed."""
    feed = current_dashboard().feed

    def stream() -> Iterator[str]:
        seen = feed.version
        yield f"retry: 1000\nevent: hello\ndata: {seen}\n\n"
        while not feed.stopped:
            version = feed.wait(seen, KEEPALIVE)
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            seen = version
            yield f"event: change\ndata: {version}\n\n"

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- actions -------------------------------------------------------------------------------------
def _body() -> Any:
    if not request.is_json:
        raise UsageError("the request body must be JSON (Content-Type: application/json)")
    return parse_json_value(request.get_data(as_text=True))


@blueprint.post("/jobs")
def enqueue() -> Any:
    """A job object, or a list of them (one transaction): as ``queuectl enqueue``."""
    data = _body()
    jobs = data if isinstance(data, list) else [checked_object(data)]
    with current_dashboard().stores.writing() as store:
        keys = actions.enqueue(store, jobs)
    return jsonify({"ids": keys}), 201


@blueprint.post("/retry")
def retry() -> Any:
    """``{"ids": [...]}`` or ``{"all": true}``: as ``queuectl dlq retry``."""
    data = _body()
    if not isinstance(data, dict):
        raise UsageError('send {"ids": ["ID", ...]} or {"all": true}')
    keys = None if data.get("all") is True else data.get("ids")
    if keys is not None and (not isinstance(keys, list) or not keys
                             or not all(isinstance(key, str) for key in keys)):
        raise UsageError('"ids" must be a non-empty list of job IDs (strings), or send {"all": true}')
    with current_dashboard().stores.writing() as store:
        return jsonify({"retried": actions.retry(store, keys)})


@blueprint.post("/cancel")
def cancel() -> Any:
    """``{"id": "..."}``: as ``queuectl cancel``."""
    data = _body()
    key = data.get("id") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise UsageError('send {"id": "JOB ID"}')
    with current_dashboard().stores.writing() as store:
        return jsonify({"id": key, "outcome": actions.cancel(store, key)})
