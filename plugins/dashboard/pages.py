"""The pages. Each renders values from :mod:`.reading`; the part of a page inside its ``live``
block is also served alone (header ``X-Live: 1``), which the page's script fetches to update
itself when the store changes, without a reload."""

from __future__ import annotations

import urllib.parse
from typing import Any, Dict

from flask import Blueprint, flash, redirect, render_template, request, url_for

from parallelr.errors import ParallelrError
from parallelr.plugins.dashboard import actions, reading
from parallelr.plugins.dashboard.rendering import current_dashboard, render_page
from parallelr.plugins.dashboard.stores import StoreMissing

blueprint = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/static")


@blueprint.get("/")
def overview() -> Any:
    return render_page("overview.html", **_overview_values(), form={}, page="overview")


def _overview_values() -> Dict[str, Any]:
    """The overview's data; with no store yet, zeros and a note (the add-job form creates it)."""
    try:
        with current_dashboard().stores.reading() as store:
            return {"data": reading.overview(store)}
    except StoreMissing as exc:
        return {"data": reading.empty_overview(), "notice": str(exc)}


@blueprint.get("/jobs")
def jobs() -> Any:
    wanted = reading.JobFilter.parse(request.args)
    with current_dashboard().stores.reading() as store:
        data = reading.jobs_page(store, wanted)
        queues = store.queue_names()
    return render_page("jobs.html", data=data, wanted=wanted, queues=queues, page="jobs",
                 next_query=wanted.query(data["next_before"]) if data["next_before"] else None,
                 first_query=wanted.query(None) if wanted.before else None)


@blueprint.get("/job")
def job() -> Any:
    """A job's page: ``/job?id=ID`` (a query, so that an ID such as ``../dead`` stays itself)."""
    return _job_page(request.args.get("id", ""))


@blueprint.get("/jobs/<path:key>")
def job_at(key: str) -> Any:
    return _job_page(key)


def _job_page(key: str) -> Any:
    with current_dashboard().stores.reading() as store:
        data = reading.job_detail(store, key)
    return render_page("job.html", job=data, page="jobs")


@blueprint.get("/dead")
def dead() -> Any:
    wanted = reading.JobFilter.parse(request.args, states=("dead",))
    with current_dashboard().stores.reading() as store:
        data = reading.jobs_page(store, wanted)
    return render_page("dead.html", data=data, wanted=wanted, page="dead",
                 next_query=wanted.query(data["next_before"]) if data["next_before"] else None)


@blueprint.get("/runs")
def runs() -> Any:
    with current_dashboard().stores.reading() as store:
        data = reading.runs(store)
    return render_page("runs.html", runs=data, page="runs")


@blueprint.get("/runs/<run_id>")
def run(run_id: str) -> Any:
    after = reading.whole(request.args.get("after"), "after", 0, reading.MAX_ROW)
    with current_dashboard().stores.reading() as store:
        data, drawn = reading.run_detail(store, run_id, after=-1 if after is None else after)
    return render_page("run.html", run=data, timeline=drawn, page="runs")


# -- actions (POST, CSRF-checked by the app) ---------------------------------------------------
@blueprint.post("/actions/enqueue")
def add_job() -> Any:
    form = {name: request.form.get(name, "") for name in actions.FORM_FIELDS}
    try:
        data = actions.job_from_form(request.form)
        with current_dashboard().stores.writing() as store:
            (key,) = actions.enqueue(store, [data])
    except ParallelrError as exc:
        # live updates of this page fetch the overview, not this POST's address
        return render_template("overview.html", **_overview_values(), form=form, error=str(exc),
                               page="overview", live_source=url_for("pages.overview")), 400
    flash(f"Enqueued job {key}")
    return redirect(url_for("pages.job", id=key), 303)


@blueprint.post("/actions/retry")
def retry() -> Any:
    keys = None if request.form.get("all") == "1" else request.form.getlist("id")
    if keys is not None and not keys:
        raise ParallelrError("say which dead job to retry (or retry all)")
    with current_dashboard().stores.writing() as store:
        count = actions.retry(store, keys)
    flash(f"{count} dead job(s) back to pending")
    return redirect(_back("pages.dead"), 303)


@blueprint.post("/actions/cancel")
def cancel() -> Any:
    key = request.form.get("id", "")
    with current_dashboard().stores.writing() as store:
        outcome = actions.cancel(store, key)
    flash(f"Job {key}: {'stopping (its worker stops it)' if outcome == 'stopping' else 'cancelled'}")
    return redirect(url_for("pages.job", id=key), 303)


def _back(default: str) -> str:
    """Where a button's form says to go back to: a path of this site only (no scheme, no host,
    nothing a browser would read as another site: ``//host``, ``/\\host``, controls, spaces)."""
    target = request.form.get("next", "")
    parts = urllib.parse.urlsplit(target)
    if (target.startswith("/") and not parts.scheme and not parts.netloc and target.isprintable()
            and not any(char.isspace() or char == "\\" for char in target) and not target.startswith("//")):
        return target
    return url_for(default)
