"""``parallelr queue ...`` / ``queuectl ...``: the queue's command line.

The commands and their words are the queuectl READMEs' (``enqueue``, ``worker start --count``,
``status``, ``list --state``, ``dlq list|retry``, ``config set|get|list``) plus ``show``,
``logs``, ``cancel``, ``purge``, ``pause``/``resume`` and ``worker stop|list``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import os
import re
import sys
import time
from typing import IO, Any, Callable, Dict, Iterator, Optional

from parallelr.errors import UsageError
from parallelr.jobs.states import SHOWN_STATES
from parallelr.queue import service, views
from parallelr.queue import settings as queue_config
from parallelr.queue.plugin import HELP  # the command's one line, where the command is named
from parallelr.queue.spec import JobReader, parse_json, queue_name, read_lines

log = logging.getLogger("parallelr.queue")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s`` or seconds, for ``--older-than``."""
    match = _DURATION.match(text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 7d, 12h, 30m or 45s")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _queue(text: str) -> str:
    try:
        return queue_name(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1, not {value}")
    return value


def add_arguments(parser: Any) -> None:
    db_help = f"the store's database file (default: ${service.DB_VARIABLE}, else ~/parallelr/state.db)"
    parser.add_argument("--db", metavar="PATH", help=db_help)
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=db_help)
    commands = parser.add_subparsers(dest="queue_command", metavar="COMMAND", parser_class=type(parser))
    commands.required = True

    def command(name: str, help_text: str, *parents: Any) -> Any:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[shared, *parents])

    enqueue = command("enqueue", "add jobs: a JSON object, or --file of JSON lines (- for stdin)")
    enqueue.add_argument("job", nargs="?", metavar="JSON", help="""'{"command": "echo hi"}'""")
    enqueue.add_argument("--file", "-f", metavar="FILE", help="one JSON object per line, in one transaction")
    enqueue.add_argument("--queue", type=_queue, metavar="NAME",
                         help="the queue of jobs that do not name one")

    worker = command("worker", "start, stop or list workers")
    actions = worker.add_subparsers(dest="worker_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    start = actions.add_parser("start", help="run N worker slots in the foreground", parents=[shared])
    start.add_argument("--count", "-c", type=_count, default=1, metavar="N", help="worker slots (default 1)")
    start.add_argument("--queue", type=_queue, nargs="+", action="extend", default=[], dest="queues",
                       metavar="NAME", help="take jobs of these queues only (default: every queue)")
    start.add_argument("--daemon", "-D", action="store_true", help="detach; log to ~/parallelr/logs/")
    start.add_argument("--executor", metavar="NAME", default="thread",
                       help="executor plugin (default thread)")
    actions.add_parser("stop", help="ask every worker to stop once its running jobs finish", parents=[shared])
    listing = actions.add_parser("list", help="the live workers", parents=[shared])
    listing.add_argument("--json", action="store_true")

    status = command("status", "jobs by state, rates and the active workers")
    status.add_argument("--queue", type=_queue, metavar="NAME")
    status.add_argument("--json", action="store_true")

    jobs = command("list", "list jobs")
    jobs.add_argument("--state", choices=SHOWN_STATES, action="append", metavar="STATE",
                      help=f"only jobs in this state (repeatable): {', '.join(SHOWN_STATES)}")
    jobs.add_argument("--queue", type=_queue, metavar="NAME")
    jobs.add_argument("--limit", type=_count, metavar="N")
    jobs.add_argument("--json", action="store_true", help="a JSON array of job objects")

    show = command("show", "one job and every attempt: times, exit code, worker, output tail")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true")
    logs = command("logs", "the output of a job's last attempt (stdout, then stderr on stderr)")
    logs.add_argument("id", metavar="ID")
    cancel = command("cancel", "cancel a job (a running one is stopped by its worker)")
    cancel.add_argument("id", metavar="ID")

    dlq = command("dlq", "the dead letter queue: jobs whose last attempt failed")
    dlq_actions = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", parser_class=type(parser))
    dlq_actions.required = True
    dead = dlq_actions.add_parser("list", help="the dead jobs with their last error", parents=[shared])
    dead.add_argument("--queue", type=_queue, metavar="NAME")
    dead.add_argument("--json", action="store_true")
    retry = dlq_actions.add_parser("retry", help="dead jobs back to pending, attempts 0", parents=[shared])
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead job")

    purge = command("purge", "delete finished jobs and their history")
    purge.add_argument("--state", required=True, choices=sorted(service.PURGEABLE), action="append",
                       help="completed, dead or cancelled (repeatable)")
    purge.add_argument("--older-than", type=duration, metavar="AGE", help="last changed before: 7d, 12h, 30m")

    config = command("config", "the queue's settings, kept in the store")
    config_actions = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=type(parser))
    config_actions.required = True
    setter = config_actions.add_parser("set", help="set KEY to VALUE", parents=[shared])
    setter.add_argument("key", metavar="KEY")
    setter.add_argument("value", metavar="VALUE")
    getter = config_actions.add_parser("get", help="print the value of KEY", parents=[shared])
    getter.add_argument("key", metavar="KEY")
    config_actions.add_parser("list", help="every key, its value and whether it is the default",
                              parents=[shared])

    for name, help_text in (("pause", "workers finish what runs and claim nothing new"),
                            ("resume", "workers claim jobs again")):
        paused = command(name, help_text)
        paused.add_argument("--queue", type=_queue, metavar="NAME",
                            help="only this queue (default: every queue)")


def run(config: Any) -> int:
    options = config.options
    location = service.store_location(config.settings, config.home, getattr(options, "db", None))
    handler = _HANDLERS[options.queue_command]
    if options.queue_command == "worker" and options.worker_command == "start":
        return _worker_start(config, location)
    with _opened(location) as store:
        return handler(store, options, sys.stdout)


@contextlib.contextmanager
def _opened(location: str) -> Iterator[Any]:
    from parallelr.jobs.opening import open_store

    store = open_store(location)
    try:
        yield store
    finally:
        store.close()


# -- the commands --------------------------------------------------------------------------------
def _enqueue(store: Any, options: Any, out: IO[str]) -> int:
    if (options.job is None) == (options.file is None):
        raise UsageError("give one job as JSON, or --file FILE (one JSON object per line; - for stdin)")
    reader = JobReader(service.queue_settings(store).max_retries, store.now(), queue=options.queue)
    if options.job is not None:
        keys = service.enqueue(store, [reader.job(parse_json(options.job))])
    else:
        path = options.file
        if path != "-" and not os.path.exists(path):
            raise UsageError(f"job file not found: {path}")
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory: --file takes a file of JSON lines")
        with _lines(path) as lines:
            keys = service.enqueue(store, read_lines(lines, reader, "stdin" if path == "-" else path))
    for key in keys:
        out.write(key + "\n")
    if options.file is not None:
        print(f"Enqueued {len(keys)} job(s)", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _lines(path: str) -> Iterator[Any]:
    if path == "-":  # strictly UTF-8, like a file (the console's own decoding would let bytes through)
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
        try:
            yield stream
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"stdin is not UTF-8 text (byte {exc.start}): a job file holds JSON lines"
            ) from None
        finally:
            stream.detach()
    else:
        try:
            handle = open(path, encoding="utf-8", errors="strict", newline=None)
        except OSError as exc:
            raise UsageError(f"cannot read the job file {path}: {exc.strerror}") from None
        with handle:
            try:
                yield handle
            except UnicodeDecodeError as exc:
                raise UsageError(
                    f"{path} is not UTF-8 text (byte {exc.start}): a job file holds JSON lines"
                ) from None


def _status(store: Any, options: Any, out: IO[str]) -> int:
    status = service.status(store, options.queue)
    if options.json:
        out.write(_json(views.status_dict(status)))
    else:
        views.write_status(out, status)
    return 0


def _list(store: Any, options: Any, out: IO[str]) -> int:
    jobs = store.iter_queue_jobs(store.now(), states=options.state or (), queue=options.queue,
                                 limit=options.limit)
    if options.json:
        views.write_json_array(out, (views.job_dict(job) for job in jobs))
        return 0
    jobs = _unless_empty(jobs)
    if jobs is None:
        out.write("No jobs" + (f" in state {', '.join(options.state)}" if options.state else "") + "\n")
    else:
        views.write_jobs(out, jobs)
    return 0


def _unless_empty(items: Iterator[Any]) -> Optional[Iterator[Any]]:
    """``items`` again, or None when there is none (a table then prints a line, not a bare header)."""
    first = next(items, None)
    return None if first is None else itertools.chain((first,), items)


def _show(store: Any, options: Any, out: IO[str]) -> int:
    job = service.find_job(store, options.id)
    attempts = store.queue_attempts(job.row)
    dependencies = store.dependencies_of(job.row, store.now())
    if options.json:
        data = views.job_dict(job, dependencies)
        data["attempts_detail"] = [views.attempt_dict(attempt) for attempt in attempts]
        out.write(_json(data))
    else:
        views.write_job(out, job, attempts, dependencies, service.queue_settings(store).job_timeout)
    return 0


def _logs(store: Any, options: Any, out: IO[str]) -> int:
    job = service.find_job(store, options.id)
    attempts = store.queue_attempts(job.row)
    if not attempts:
        raise service.WrongState(f"job {options.id!r} has not run yet ({job.shown}): no output")
    last = attempts[-1]
    out.write(last.stdout)
    out.flush()
    sys.stderr.write(last.stderr)
    return 0


def _cancel(store: Any, options: Any, out: IO[str]) -> int:
    result = service.cancel(store, options.id)
    if result == "stopping":
        out.write(f"Job {options.id} is running: its worker stops it and records it cancelled\n")
    else:
        out.write(f"Cancelled job {options.id}\n")
    return 0


def _dlq(store: Any, options: Any, out: IO[str]) -> int:
    if options.dlq_command == "list":
        jobs = store.iter_queue_jobs(store.now(), states=("dead",), queue=options.queue, order="updated")
        if options.json:
            views.write_json_array(out, (views.job_dict(job) for job in jobs))
            return 0
        dead = _unless_empty(jobs)
        if dead is None:
            out.write("The dead letter queue is empty\n")
        else:
            views.write_dead(out, dead)
        return 0
    if options.all == bool(options.ids):
        raise UsageError("give the IDs of dead jobs to retry, or --all")
    count = service.retry_dead(store, None if options.all else options.ids)
    out.write(f"Retrying {count} job(s): pending again with attempts 0\n")
    return 0


def _purge(store: Any, options: Any, out: IO[str]) -> int:
    count = service.purge(store, options.state, options.older_than)
    age = f" older than {_age_text(options.older_than)}" if options.older_than is not None else ""
    out.write(f"Purged {count} {'/'.join(options.state)} job(s){age}\n")
    return 0


def _age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _config(store: Any, options: Any, out: IO[str]) -> int:
    stored = store.get_settings(queue_config.STORE_PREFIX)
    current = queue_config.settings_from(stored)
    if options.config_command == "list":
        for name, value, default in queue_config.listing(current, stored):
            out.write(f"{name} = {value}{' (default)' if default else ''}\n")
        return 0
    key = queue_config.find_key(options.key)
    if options.config_command == "get":
        out.write(queue_config.value_text(current, key) + "\n")
        return 0
    text = queue_config.checked_value(key, options.value, current, stored)
    store.set_setting(queue_config.stored_key(key), text)
    out.write(f"{key.name} = {text}\n")
    service.wake_workers(store)
    return 0


def _pause(store: Any, options: Any, out: IO[str]) -> int:
    paused = options.queue_command == "pause"
    service.pause(store, options.queue, paused)
    what = f"queue {options.queue}" if options.queue else "every queue"
    out.write(f"{'Paused' if paused else 'Resumed'} {what}\n")
    return 0


def _worker(store: Any, options: Any, out: IO[str]) -> int:
    if options.worker_command == "stop":
        workers = service.stop_workers(store)
        out.write(f"Asked {len(workers)} worker(s) to stop once their running jobs finish\n")
        return 0
    status = service.status(store)
    if options.json:
        now = store.now()
        out.write(_json([views.worker_dict(worker, now) for worker in status.workers]))
    elif status.workers:
        views.write_workers(out, status.workers)
    else:
        out.write("No running workers\n")
    return 0


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


_HANDLERS: Dict[str, Callable[[Any, Any, IO[str]], int]] = {
    "enqueue": _enqueue, "status": _status, "list": _list, "show": _show, "logs": _logs, "cancel": _cancel,
    "dlq": _dlq, "purge": _purge, "config": _config, "pause": _pause, "resume": _pause, "worker": _worker,
}


# -- the worker ----------------------------------------------------------------------------------
def _worker_start(config: Any, location: str) -> int:
    from parallelr import daemon
    from parallelr.api import executor_factories
    from parallelr.jobs.opening import open_store, shown_location
    from parallelr.model import ExecutionLimits
    from parallelr.paths import AppPaths
    from parallelr.queue.worker import QueueWorker, StopOnSignals

    options = config.options
    factories = executor_factories(config.pluginmanager)
    if options.executor not in factories:
        known = ", ".join(sorted(factories))
        raise UsageError(f"unknown executor {options.executor!r}; loaded executors: {known}")
    settings = config.settings
    paths = AppPaths.of(config.app_name, config.home)
    open_store(location).close()  # a store that cannot be opened is reported before detaching
    announcer = daemon.Announcer(None)
    log_path: Optional[str] = None
    if options.daemon:
        print("Starting queue worker as daemon...")
        sys.stdout.flush()
        announcer = daemon.Announcer(daemon.daemonize())
        log_path = _daemon_log(paths.log_dir, settings)
    try:
        limits = ExecutionLimits(
            timeout=0, workspace=paths.workspace, runner_pid=os.getpid(),
            max_output_capture=settings.limits.max_output_capture,
            use_process_groups=settings.execution.use_process_groups,
            kill_grace=settings.execution.kill_grace_seconds,
        )
        worker = QueueWorker(
            lambda: open_store(location), slots=options.count, queues=options.queues,
            make_executor=factories[options.executor], limits=limits, settings_of=service.queue_settings,
            run_settings=settings,
        )
        with StopOnSignals(worker, ignore_hangup=options.daemon):
            announcer.started(
                f"Started queue worker with PID {os.getpid()} ({options.count} slot(s),"
                f" store {shown_location(location)})\n"
                + (f"- Log: {log_path}\n" if log_path else "")
                + "Stop it with 'queuectl worker stop'.\n"
            )
            return worker.run()
    except BaseException as exc:
        announcer.failed(str(exc) or type(exc).__name__)
        raise


def _daemon_log(log_dir: str, settings: Any) -> str:
    """After the fork: the daemon's own log file, in the console's format."""
    os.makedirs(log_dir, exist_ok=True)
    stamp = time.strftime(settings.logging.custom_date_format)
    path = os.path.join(log_dir, f"queue-worker_{os.getpid()}_{stamp}.log")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(settings.logging.console_format))
    logging.getLogger("parallelr").addHandler(handler)
    return path


__all__ = ["HELP", "add_arguments", "duration", "run"]
