"""The journal plugin: records every real run in the job store so it can be resumed, retried and inspected.

* ``--no-journal`` (or ``journal.enabled: false``): the database is never opened or created.
* ``--resume RUN_ID|last``: run again what did not succeed (``-r``), or list it (dry run).
* ``parallelr runs list|show`` and ``parallelr dlq list|retry``: see :mod:`.commands`.

This module holds the hooks of the invocation (options, commands, configure); the hooks of a run
belong to a :class:`~.run.JournalRun` that :func:`parallelr_configure` registers for each run,
so that no module global holds the state of a run. The store itself is the core's
(:mod:`parallelr.jobs`).
"""

from __future__ import annotations

import argparse
from typing import Any, Dict

from parallelr.commands import Command, imported_later
from parallelr.errors import UsageError
from parallelr.hookspecs import hookimpl
from parallelr.paths import store_location as journal_location

# -- command line -----------------------------------------------------------------------------
# The commands' code (.commands, and the HTML report 'runs show --html' writes) is imported when
# one of them runs, not with this plugin: every run registers the plugin, and importing it all
# cost every run's start-up.
_COMMANDS_MODULE = "parallelr.plugins.journal.commands"

COMMANDS = {
    "runs": Command(
        name="runs", help="the runs recorded in the journal: runs list, runs show RUN_ID|last",
        add_arguments=imported_later(_COMMANDS_MODULE, "_add_runs_arguments"),
        run=imported_later(_COMMANDS_MODULE, "_runs"),
    ),
    "dlq": Command(
        name="dlq", help="dead tasks (their last attempt failed): dlq list, dlq retry JOB_ID...|--all",
        add_arguments=imported_later(_COMMANDS_MODULE, "_add_dlq_arguments"),
        run=imported_later(_COMMANDS_MODULE, "_dlq"),
    ),
}


@hookimpl
def parallelr_commands() -> Dict[str, Any]:
    return dict(COMMANDS)


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    group = parser.getgroup("journal (resume, dead letters)")
    group.add_argument(
        "--no-journal", action="store_true",
        help="do not record this run in the journal (~/<app>/state.db); it cannot be resumed",
    )
    group.add_argument(
        "--resume", metavar="RUN_ID|last",
        help="run again the tasks of a recorded run that did not succeed (with -r; without: list them)",
    )
    # Used by 'parallelr dlq retry': only these job IDs (or 'dead': every dead job) of the run.
    group.add_argument("--resume-only", metavar="IDS", help=argparse.SUPPRESS)


@hookimpl(tryfirst=True)  # before a preset fills in its default command: the stored one wins
def parallelr_configure(config: Any) -> None:
    # The store's code (sqlite3, the job records, the writer) is imported here, when a run is
    # configured, not with the plugin: --help and the other commands need none of it.
    from parallelr.plugins.journal.database import reading_journal
    from parallelr.plugins.journal.resume import (
        check_not_running,
        find_run,
        given_task_options,
        parse_only,
        restore_options,
    )
    from parallelr.plugins.journal.run import JournalRun, open_for_resume

    # The run's own journal: its hooks see this run only, whatever else the process runs.
    config.pluginmanager.register(JournalRun(config))
    request = config.request
    only = parse_only(request.option("resume_only"))
    if not request.option("resume"):
        if only is not None:
            raise UsageError("--resume-only needs --resume RUN_ID")
        return
    if request.option("no_journal"):
        raise UsageError("--resume reads the journal: it cannot be combined with --no-journal")
    given = given_task_options(request)
    if given:
        raise UsageError(f"--resume runs the tasks stored for the run; drop {', '.join(given)}")
    # The core reads the YAML files only after this hook; the journal's place is needed now.
    from parallelr.config import load_settings

    settings = load_settings(config.app_name).settings
    if not settings.journal.enabled:
        raise UsageError("--resume needs the journal, but journal.enabled is false in the config")
    path = journal_location(settings, config.home)
    store = open_for_resume(path)
    if store is None:
        raise UsageError(f"--resume: no run has been recorded yet (no journal at {path})")
    try:
        with reading_journal(store):  # a corrupt page: one line, as for a run
            run = find_run(store, request.option("resume"), config.app_name)
    finally:
        store.close()
    check_not_running(run)
    # "last" resolved once: the plan and the run use the same run
    plugin_dests = [dest for found in config.hook.parallelr_restored_options() for dest in (found or ())]
    config.request = restore_options(request.with_options(resume=run.id), run.options, plugin_dests)[0]
