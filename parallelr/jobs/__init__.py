"""The job store: the state of batch runs and (next) queues, as a core service.

* :mod:`.states`: :class:`~.states.JobState` and the transitions a job may make;
* :mod:`.store`: the :class:`~.store.JobStore` protocol every store implements;
* :mod:`.sqlite`: :class:`~.sqlite.SQLiteJobStore`, the default store (PostgreSQL beside it later);
* :mod:`.leases`: who holds a run or a job, and until when; :mod:`.liveness`: is that holder alive;
* :mod:`.records`: the values the store reads back; :mod:`.batch`: task events checked against
  the transitions before a store writes them; :mod:`.errors`: the typed errors.

The journal plugin, the queue and the dashboard use the store; the store knows none of them.
Nothing is imported here, so ``import parallelr.jobs.states`` stays cheap.
"""
