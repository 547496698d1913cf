"""The job queue: ``parallelr queue ...`` and ``queuectl ...`` (the same commands).

* :mod:`.settings`: the queue's stored settings (``max-retries``, ``backoff-base``, ...);
* :mod:`.spec`: a job as users write it (JSON) checked into a :class:`~parallelr.jobs.records.NewJob`;
* :mod:`.service`: what users do (enqueue, cancel, retry, purge, pause), for the CLI and the dashboard;
* :mod:`.wake`: waking idle workers when work arrives, without polling;
* :mod:`.worker`: the worker: claims due jobs and feeds them to the scheduler and an executor,
  which run them with :func:`parallelr.process.run_task` like any batch task;
* :mod:`.cli` and :mod:`.plugin`: the commands (through ``parallelr_commands``) and ``--enqueue``.

It works on the store's interface (:class:`~parallelr.jobs.store.QueueStore`), not on SQL.
"""

# Here, not in .service and .spec, so that the batch runner's --enqueue help (which every run
# builds) names them without importing those modules: the environment variable naming the
# queue's store, and the queue a job goes to when none is named.
DB_VARIABLE = "QUEUECTL_DB_PATH"
DEFAULT_QUEUE = "default"
