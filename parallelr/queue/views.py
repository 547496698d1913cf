"""What the queue commands print: the status block, tables, one job in full, and JSON.

User data (commands, IDs, errors, output) goes through :func:`~parallelr.report.escape_line`
or a table cell, so nothing a job wrote can move the cursor or forge a line of ours.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Dict, Iterable, List, Optional, Sequence

from parallelr.jobs.records import QueueAttempt, QueueJob, WorkerRecord
from parallelr.queue.service import QueueStatus
from parallelr.report import escape_line
from parallelr.tables import iso_time, local_time, shorten, write_table

RULE = "=" * 50
THIN_RULE = "-" * 50
COMMAND_WIDTH = 50
ERROR_WIDTH = 60
# The status block's lines: the first queuectl README's labels, then the states it lacks.
STATUS_LINES = (
    ("Pending:", "pending"), ("Scheduled:", "scheduled"), ("Waiting:", "waiting"),
    ("Processing:", "processing"), ("Completed:", "completed"), ("Failed:", "failed"),
    ("Dead (DLQ):", "dead"), ("Cancelled:", "cancelled"),
)
_ALWAYS = ("pending", "processing", "completed", "failed", "dead")  # the README's lines, even at 0


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole if whole else 0.0:.1f}% ({part}/{whole})"


def write_status(out: IO[str], status: QueueStatus, now: Optional[float] = None) -> None:
    now = time.time() if now is None else now
    total = status.total
    lines = ["Job Queue Status", RULE, "", "Jobs by State:"]
    for label, state in STATUS_LINES:
        if state in _ALWAYS or status.count(state):
            lines.append(f"  {label:<12}{status.count(state):>7}")
    lines += [
        THIN_RULE, f"  {'Total:':<12}{total:>7}", "",
        "Completion Rate:", f"  {_percent(status.count('completed'), total)}", "",
        "Permanent Failures:", f"  {_percent(status.count('dead'), total)}", "",
        f"Active/Pending Work: {status.active} job(s)",
    ]
    if status.paused:
        paused = ", ".join("every queue" if name == "*" else name for name in status.paused)
        lines.append(f"Paused: {paused} (queuectl resume)")
    slots = sum(worker.slots for worker in status.workers)
    lines.append(f"Active Workers: {len(status.workers)} ({slots} slot(s))")
    for worker in status.workers:
        lines.append(f"  - PID {worker.pid} on {escape_line(worker.host)}: {worker.slots} slot(s), "
                     f"{len(worker.current)} running, {worker.jobs_done} done, "
                     f"heartbeat {_age(worker.heartbeat_at, now)}")
    lines.append(RULE)
    out.write("\n".join(lines) + "\n")


def status_dict(status: QueueStatus, now: Optional[float] = None) -> Dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "counts": {state: status.count(state) for _label, state in STATUS_LINES},
        "total": status.total,
        "active": status.active,
        "paused": list(status.paused),
        "workers": [worker_dict(worker, now) for worker in status.workers],
    }


def _age(epoch: float, now: float) -> str:
    seconds = max(0.0, now - epoch)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _attempts(job: QueueJob) -> str:
    return f"{job.attempts}/{max(1, job.max_retries)}"


def write_jobs(out: IO[str], jobs: Iterable[QueueJob]) -> int:
    rows = ((job.key, job.shown, _attempts(job), job.priority, job.queue, local_time(job.updated_at),
             shorten(job.command, COMMAND_WIDTH)) for job in jobs)
    return write_table(out, ("ID", "STATE", "ATTEMPTS", "PRIORITY", "QUEUE", "UPDATED", "COMMAND"), rows)


def write_dead(out: IO[str], jobs: Iterable[QueueJob]) -> int:
    rows = ((job.key, _attempts(job), job.exit_code, local_time(job.updated_at),
             shorten(job.last_error or job.last_status, ERROR_WIDTH), shorten(job.command, COMMAND_WIDTH))
            for job in jobs)
    return write_table(out, ("ID", "ATTEMPTS", "EXIT", "DIED", "LAST ERROR", "COMMAND"), rows)


def write_workers(out: IO[str], workers: Sequence[WorkerRecord], now: Optional[float] = None) -> int:
    now = time.time() if now is None else now
    rows = ((worker.pid, worker.host, worker.slots, ", ".join(worker.queues) or "*", worker.jobs_done,
             ", ".join(worker.current) or "-", _age(worker.heartbeat_at, now),
             "stopping" if worker.stop_requested else "running") for worker in workers)
    return write_table(out, ("PID", "HOST", "SLOTS", "QUEUES", "DONE", "CURRENT", "HEARTBEAT", "STATE"), rows)


def job_dict(job: QueueJob, dependencies: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "id": job.key, "command": job.command, "state": job.shown, "attempts": job.attempts,
        "max_retries": job.max_retries, "priority": job.priority, "queue": job.queue,
        "created_at": iso_time(job.created_at), "updated_at": iso_time(job.updated_at),
        "run_at": iso_time(job.next_attempt_at) if job.shown in ("scheduled", "failed") else None,
        "timeout": job.timeout, "cwd": job.cwd, "env": dict(job.env), "exit_code": job.exit_code,
        "last_error": job.last_error, "worker": job.lease_owner if job.shown == "processing" else None,
    }
    if dependencies is not None:
        data["depends_on"] = [{"id": key, "state": state} for key, state in dependencies]
    return data


def attempt_dict(attempt: QueueAttempt) -> Dict[str, Any]:
    return {
        "attempt": attempt.attempt, "status": attempt.status, "exit_code": attempt.exit_code,
        "pid": attempt.pid, "worker": attempt.worker, "slot": attempt.slot,
        "started_at": iso_time(attempt.started_at),
        "ended_at": iso_time(attempt.ended_at), "duration": attempt.duration, "memory_mb": attempt.memory_mb,
        "cpu_percent": attempt.cpu_percent, "error": attempt.error, "stdout": attempt.stdout,
        "stderr": attempt.stderr,
    }


def worker_dict(worker: WorkerRecord, now: float) -> Dict[str, Any]:
    return {
        "id": worker.id, "pid": worker.pid, "host": worker.host, "slots": worker.slots,
        "queues": list(worker.queues), "started_at": iso_time(worker.started_at),
        "heartbeat_at": iso_time(worker.heartbeat_at),
        "heartbeat_age": round(max(0.0, now - worker.heartbeat_at), 3),
        "jobs_done": worker.jobs_done, "current": list(worker.current),
        "stop_requested": worker.stop_requested,
    }


def write_json_array(out: IO[str], items: Iterable[Dict[str, Any]]) -> int:
    """A JSON array written item by item (a long list is never built in memory)."""
    count = 0
    out.write("[")
    for item in items:
        out.write(("," if count else "") + "\n  " + json.dumps(item, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_job(out: IO[str], job: QueueJob, attempts: Sequence[QueueAttempt],
              dependencies: Sequence[Any], default_timeout: float) -> None:
    timeout = job.timeout if job.timeout is not None else default_timeout
    lines = [
        f"Job {escape_line(job.key)}",
        f"  State:      {job.shown}",
        f"  Command:    {escape_line(job.command)}",
        f"  Queue:      {escape_line(job.queue)}",
        f"  Priority:   {job.priority}",
        f"  Attempts:   {job.attempts} of {max(1, job.max_retries)}",
        f"  Created:    {local_time(job.created_at)}",
        f"  Updated:    {local_time(job.updated_at)}",
    ]
    if job.shown in ("scheduled", "failed"):
        lines.append(f"  Due:        {local_time(job.next_attempt_at)}")
    if dependencies:
        shown = (f"{escape_line(key)} ({state})" for key, state in dependencies)
        lines.append("  Depends on: " + ", ".join(shown))
    lines.append(f"  Timeout:    {f'{timeout:g}s' if timeout else 'none'}"
                 + ("" if job.timeout is not None else " (job-timeout)"))
    if job.cwd:
        lines.append(f"  Directory:  {escape_line(job.cwd)}")
    for name, value in job.env:
        lines.append(f"  Env:        {escape_line(name)}={escape_line(value)}")
    if job.shown == "processing" and job.lease_owner:
        lines.append(f"  Worker:     {escape_line(job.lease_owner)}")
    if job.last_error:
        lines.append(f"  Last error: {escape_line(job.last_error)}")
    lines.append(f"Attempts ({len(attempts)}):" if attempts else "Attempts: none yet")
    for attempt in attempts:
        lines.extend(_attempt_lines(attempt))
    out.write("\n".join(lines) + "\n")


def _attempt_lines(attempt: QueueAttempt) -> List[str]:
    exit_part = f", exit code {attempt.exit_code}" if attempt.exit_code is not None else ""
    duration = f" ({attempt.duration:.2f}s)" if attempt.duration is not None else ""
    figures = ""
    if attempt.memory_mb:
        figures = f", {attempt.memory_mb:.1f} MB, {attempt.cpu_percent or 0:.0f}% CPU"
    lines = [
        f"  #{attempt.attempt} {attempt.status}{exit_part}: {local_time(attempt.started_at)} -> "
        f"{local_time(attempt.ended_at)}{duration}{figures}",
        f"     worker {escape_line(attempt.worker or '-')} slot {attempt.slot or '-'}, "
        f"PID {attempt.pid or '-'}",
    ]
    if attempt.error:
        lines.append(f"     error: {escape_line(attempt.error)}")
    for name, text in (("stdout", attempt.stdout), ("stderr", attempt.stderr)):
        if text:
            lines.append(f"     {name} (tail):")
            lines.extend(f"       {escape_line(line)}" for line in text.splitlines())
    return lines
