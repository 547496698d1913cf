"""What the dashboard's buttons and forms do: each is one call of :mod:`parallelr.queue.service`,
with the same checks and one-line errors as the ``queuectl`` command it stands for."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

from parallelr.errors import UsageError
from parallelr.queue import service
from parallelr.queue.spec import JobReader, checked_object

# The add-job form's fields, as the job object's fields (the rest of a job's fields come by JSON).
FORM_FIELDS = ("id", "command", "queue", "priority", "delay", "max_retries", "timeout")
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_NUMERIC = {"priority": _INTEGER, "max_retries": _INTEGER, "delay": _NUMBER, "timeout": _NUMBER}


def job_from_form(form: Mapping[str, str]) -> Dict[str, Any]:
    """The job object a filled-in form stands for: empty fields are left out, numbers become
    numbers (anything else is passed on as text, for the job check to name)."""
    data: Dict[str, Any] = {}
    for name in FORM_FIELDS:
        value = (form.get(name) or "").strip() if name != "command" else form.get(name) or ""
        if value == "" or (name == "command" and not value.strip()):
            continue
        pattern = _NUMERIC.get(name)
        if pattern is not None and pattern.match(value):
            data[name] = int(value) if pattern is _INTEGER else float(value)
        else:
            data[name] = value
    if "command" not in data:
        raise UsageError("a job needs a command: the shell command line to run")
    return data


def enqueue(store: Any, jobs: List[Mapping[str, Any]]) -> List[str]:
    """Enqueue job objects as ``queuectl enqueue`` does (all or none). Returns their IDs."""
    if not jobs:
        raise UsageError("no job given: send a job object or a list of them")
    reader = JobReader(service.queue_settings(store).max_retries, store.now())
    checked = []
    for number, data in enumerate(jobs, 1):
        where = f"job {number}: " if len(jobs) > 1 else ""
        checked.append(reader.job(checked_object(data, where), where))
    return service.enqueue(store, checked)


def retry(store: Any, keys: Optional[List[str]]) -> int:
    """``queuectl dlq retry ID...`` (None: ``--all``)."""
    return service.retry_dead(store, keys)


def cancel(store: Any, key: str) -> str:
    return service.cancel(store, key)
