"""The queue as a built-in plugin: the ``queue`` command (``queuectl``) and the batch runner's
``--enqueue``, which puts a batch's tasks into the queue instead of running them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Optional

from parallelr.commands import Command, imported_later
from parallelr.errors import UsageError
from parallelr.hookspecs import hookimpl
from parallelr.model import Task
from parallelr.paths import AppPaths, create_directory, user_home
from parallelr.queue import DB_VARIABLE, DEFAULT_QUEUE

if TYPE_CHECKING:
    from parallelr.jobs.records import NewJob

# The queue's command line (.cli), service (.service) and job checks (.spec) are imported when
# the queue command, --queue or --enqueue is used, not with this plugin: every run registers the
# plugin, few use the queue.
HELP = "the job queue: enqueue shell commands, run workers, watch and retry (also: queuectl)"


@hookimpl
def parallelr_commands() -> Dict[str, Command]:
    cli = "parallelr.queue.cli"
    return {"queue": Command("queue", HELP, imported_later(cli, "add_arguments"), imported_later(cli, "run"),
                             program="queuectl")}


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    group = parser.getgroup("job queue")
    group.add_argument("--enqueue", action="store_true",
                       help="put every task into the job queue as a pending job instead of running it")
    group.add_argument("--queue", dest="enqueue_queue", metavar="NAME",
                       help=f"the queue --enqueue fills (default {DEFAULT_QUEUE})")
    group.add_argument("--db", dest="enqueue_db", metavar="PATH",
                       help=f"the queue's store for --enqueue (default ${DB_VARIABLE}, "
                            "else ~/parallelr/state.db)")


@hookimpl
def parallelr_configure(config: Any) -> None:
    request = config.request
    if request is None:
        return
    enqueue = request.option("enqueue")
    if not enqueue and (request.option("enqueue_queue") or request.option("enqueue_db")):
        raise UsageError("--queue and --db choose where --enqueue puts the tasks: add --enqueue")
    if enqueue and request.daemon:
        raise UsageError("--enqueue runs nothing here (workers run the jobs): drop -D")
    if enqueue and request.option("enqueue_queue"):
        from parallelr.queue.spec import queue_name

        queue_name(request.option("enqueue_queue"), "--queue")


@hookimpl
def parallelr_dispatch(config: Any, tasks: Iterable[Task]) -> Optional[int]:
    request = config.request
    if not request.option("enqueue"):
        return None
    from parallelr.jobs.opening import open_store, shown_location
    from parallelr.queue import service

    settings = config.settings
    # queuectl's store, also for a preset (ptasker's own files live in ~/ptasker, its queue does not)
    location = service.store_location(settings, user_home() / "parallelr", request.option("enqueue_db"))
    queue = request.option("enqueue_queue") or DEFAULT_QUEUE
    workspace = AppPaths.of(config.app_name, config.home).workspace
    create_directory(workspace)
    store = open_store(location)
    try:
        defaults = service.queue_settings(store)
        retries = settings.advanced.retries
        max_retries = retries + 1 if retries else defaults.max_retries
        jobs = _jobs(tasks, queue, workspace, float(settings.limits.timeout_seconds), max_retries)
        keys = service.enqueue(store, jobs, store.now())
    finally:
        store.close()
    print(f"Enqueued {len(keys)} task(s) as jobs in queue {queue} (store {shown_location(location)}); "
          f"run them with 'queuectl worker start'")
    return 0


def _jobs(
    tasks: Iterable[Task], queue: str, workspace: str, timeout: float, max_retries: int
) -> Iterator[NewJob]:
    """Each task as a job: the same argv (a shell only where the task had one), env and timeout,
    run in the shared workspace as the batch would."""
    from parallelr.jobs.records import NewJob
    from parallelr.queue.spec import new_id

    for task in tasks:
        yield NewJob(
            key=new_id(), queue=queue, argv=task.argv, shell=task.shell, env=task.env, cwd=workspace,
            timeout=timeout or None, max_retries=max_retries,
        )
