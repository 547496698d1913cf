"""The queue's statements for :class:`~parallelr.jobs.sql_store.SqlJobStore` (a mixin of it).

A queue job is a ``jobs`` row with ``queue`` set and ``run_id`` NULL; its user-visible ID is the
``name`` column (unique across queues). A claim is one ``UPDATE ... RETURNING`` of the rows its
SELECT picks: in SQLite inside ``BEGIN IMMEDIATE`` (the one write lock), in PostgreSQL with
``FOR UPDATE SKIP LOCKED`` (a row another claimer holds is skipped), so two workers never claim one
job. Every method that writes runs inside the caller's transaction, or in one of its own.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from parallelr.jobs.errors import DuplicateJob, LeaseLost, UnknownDependency
from parallelr.jobs.records import AttemptOutcome, NewJob, QueueAttempt, QueueJob
from parallelr.jobs.sql_dialect import Dialect
from parallelr.jobs.sql_text import from_sql_text as text_of
from parallelr.jobs.sql_text import to_sql_text
from parallelr.jobs.states import JobState, retry_state
from parallelr.model import TaskResult, TaskStatus

_S = JobState
CLAIMABLE = (_S.PENDING.value, _S.FAILED.value, _S.TIMEOUT.value)
FINISHED = (_S.SUCCEEDED.value, _S.DEAD.value, _S.CANCELLED.value)
LOST = "LOST"  # the attempt's worker vanished: its lease expired
INTERRUPTED = "INTERRUPTED"  # a worker's shutdown stopped it; not counted as an attempt
LEASE_EXPIRED = "its worker stopped renewing the lease (killed or cut off); the job was claimed again"
LOST_LAST = "its worker was lost (lease expired) during its last attempt"
PAUSED_ALL = "*"
PAUSE_PREFIX = "paused:"
_CHUNK = 500
_INSERT_CHUNK = 1000

# The name users see, from the stored state (``?`` is the time now).
SHOWN_SQL = (
    "CASE WHEN state = 'pending' AND waiting_on > 0 THEN 'waiting'"
    " WHEN state = 'pending' AND next_attempt_at > ? THEN 'scheduled'"
    " WHEN state = 'pending' THEN 'pending'"
    " WHEN state = 'running' THEN 'processing'"
    " WHEN state = 'succeeded' THEN 'completed'"
    " WHEN state IN ('failed', 'timeout') THEN 'failed'"
    " ELSE state END"
)
# stored state -> shown name, for every state but pending (which SHOWN_SQL splits three ways)
_STORED_SHOWN = {"running": "processing", "succeeded": "completed", "failed": "failed", "timeout": "failed"}
# shown name -> (condition, whether it takes the time now)
_SHOWN_WHERE: Dict[str, Tuple[str, bool]] = {
    "waiting": ("state = 'pending' AND waiting_on > 0", False),
    "scheduled": ("state = 'pending' AND waiting_on = 0 AND next_attempt_at > ?", True),
    "pending": ("state = 'pending' AND waiting_on = 0 AND next_attempt_at <= ?", True),
    "processing": ("state = 'running'", False),
    "completed": ("state = 'succeeded'", False),
    "failed": ("state IN ('failed', 'timeout')", False),
    "dead": ("state = 'dead'", False),
    "cancelled": ("state = 'cancelled'", False),
}
_QUEUE_JOB_COLUMNS = (
    f"id, name, queue, argv, shell, env, cwd, timeout, priority, state, {SHOWN_SQL}, attempts, max_attempts,"
    " tries, next_attempt_at, waiting_on, lease_owner, lease_expires_at, exit_code, last_error,"
    " last_status, started_at, ended_at, created_at, updated_at"
)
_INSERT_SQL = (
    "INSERT INTO jobs (queue, name, source, argv, env, arguments, shell, state, max_attempts,"
    " next_attempt_at, priority, timeout, cwd, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, '[]', ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
)
# One statement: the due jobs, best first, become the claimer's. A paused queue (or "*") is skipped.
_CLAIM_SQL = (
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, tries = tries + 1, lease_owner = ?,"
    " lease_expires_at = ?, started_at = ?, ended_at = NULL, updated_at = ?"
    " WHERE id IN (SELECT id FROM jobs{index} WHERE queue IS NOT NULL AND {scope}"
    f" AND state IN {CLAIMABLE!r} AND next_attempt_at <= ? AND waiting_on = 0"
    f" AND NOT EXISTS (SELECT 1 FROM settings WHERE key = '{PAUSE_PREFIX}*'"
    f" OR key = '{PAUSE_PREFIX}' || jobs.queue)"
    " ORDER BY priority DESC, next_attempt_at, id LIMIT ?{lock})"
    f" RETURNING {_QUEUE_JOB_COLUMNS}"
)
_COMPLETED_SQL = (
    "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0,"
    " pid = ?, worker_id = ?, exit_code = ?, started_at = ?, ended_at = ?, duration = ?,"
    " memory_mb = ?, cpu_percent = ?, last_error = NULL, last_status = 'SUCCESS', updated_at = ?"
    " WHERE id = ? AND state = 'running' AND lease_owner = ? AND tries = ?"
    " RETURNING name, tries, EXISTS (SELECT 1 FROM job_deps WHERE depends_on = jobs.id)"
)
_ATTEMPT_COLUMNS = ("job_id", "attempt", "status", "exit_code", "pid", "worker_id", "worker", "started_at",
                    "ended_at", "duration", "memory_mb", "cpu_percent", "error", "stdout", "stderr")


def upsert_attempt(columns: str, rows: str) -> str:
    """An INSERT of history rows (``rows``: ``VALUES (...)`` or a SELECT) that replaces the row of
    the same attempt: its ``columns`` from the new row, every other column NULL (as SQLite's
    ``INSERT OR REPLACE`` would, in SQL that PostgreSQL shares)."""
    given = [name.strip() for name in columns.split(",")]
    values = ", ".join(
        f"{name} = excluded.{name}" if name in given else f"{name} = NULL"
        for name in _ATTEMPT_COLUMNS if name not in ("job_id", "attempt")
    )
    return (f"INSERT INTO attempts ({', '.join(given)}) {rows}"
            f" ON CONFLICT (job_id, attempt) DO UPDATE SET {values}")


_HISTORY_SQL = upsert_attempt(", ".join(_ATTEMPT_COLUMNS),
                              f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})")


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps builds one per call


def _argv_json(job: NewJob) -> str:
    if job.shell and len(job.argv) == 3:  # the common case, a shell command line: one string to encode
        return f'["{job.argv[0]}","{job.argv[1]}",{_ENCODE(job.argv[2])}]'
    return _ENCODE(list(job.argv))


def to_json(value: Any) -> str:
    return _ENCODE(value)


def queue_job_from_row(row: Sequence[Any]) -> QueueJob:
    (row_id, key, queue, argv, shell, env, cwd, timeout, priority, state, shown, attempts, max_attempts,
     tries, next_attempt_at, waiting_on, lease_owner, lease_expires_at, exit_code, last_error, last_status,
     started_at, ended_at, created_at, updated_at) = row
    return QueueJob(
        row=row_id, key=text_of(key) or "", queue=queue, argv=tuple(json.loads(argv)), shell=bool(shell),
        env=tuple((str(k), str(v)) for k, v in json.loads(env)), cwd=text_of(cwd), timeout=timeout,
        priority=priority, state=state, shown=shown, attempts=attempts, max_retries=max_attempts, tries=tries,
        next_attempt_at=next_attempt_at, waiting_on=waiting_on, lease_owner=lease_owner,
        lease_expires_at=lease_expires_at, exit_code=exit_code, last_error=text_of(last_error),
        last_status=last_status, started_at=started_at, ended_at=ended_at, created_at=created_at,
        updated_at=updated_at,
    )


class SqlQueueMixin:
    """The :class:`~parallelr.jobs.store.QueueStore` methods. The host class provides
    ``connection``, ``_reading()`` and ``_writing()``."""

    connection: Any
    dialect: Dialect
    integrity_error: Tuple[type, ...]  # what the connection raises for a broken UNIQUE constraint

    def _reading(self) -> Any: ...  # provided by the store class

    def _writing(self) -> Any: ...  # provided by the store class

    # -- enqueue ---------------------------------------------------------------------------------
    def enqueue_jobs(self, jobs: Iterable[NewJob], now: float) -> int:
        """Store ``jobs`` as pending (waiting for their dependencies, or scheduled), all or none.

        Raises:
            DuplicateJob: an ID exists already or comes twice.
            UnknownDependency: ``depends_on`` names a job that is neither stored nor among ``jobs``.
        """
        count = 0
        with_dependencies: List[NewJob] = []
        with self._writing():
            batch: List[NewJob] = []
            for job in jobs:
                batch.append(job)
                if job.depends_on:
                    with_dependencies.append(job)
                if len(batch) >= _INSERT_CHUNK:
                    count += self._insert(batch, now)
                    batch = []
            if batch:
                count += self._insert(batch, now)
            if with_dependencies:
                self._link(with_dependencies, now)
        return count

    def _insert(self, batch: Sequence[NewJob], now: float) -> int:
        rows = [
            (job.queue, job.key, "", _argv_json(job),
             to_json([list(pair) for pair in job.env]) if job.env else "[]",
             int(job.shell), job.max_retries, now if job.due_at is None else job.due_at, job.priority,
             job.timeout, to_sql_text(job.cwd), now, now)
            for job in batch
        ]
        # A savepoint per chunk: on a duplicate, the chunk's rows before it are undone first, so the
        # look-up that names the duplicate does not find those.
        self.connection.execute("SAVEPOINT enqueue_chunk")
        try:
            self.connection.executemany(_INSERT_SQL, rows)
        except self.integrity_error:
            self.connection.execute("ROLLBACK TO enqueue_chunk")
            self.connection.execute("RELEASE enqueue_chunk")
            raise DuplicateJob(self._duplicate_in(batch)) from None
        self.connection.execute("RELEASE enqueue_chunk")
        return len(rows)

    def _duplicate_in(self, batch: Sequence[NewJob]) -> str:
        seen = set()
        for job in batch:
            if job.key in seen:
                return job.key
            seen.add(job.key)
        found = self._rows_by_key([job.key for job in batch])
        return next((job.key for job in batch if job.key in found), batch[0].key)

    def _rows_by_key(self, keys: Sequence[str], lock: str = "") -> Dict[str, Tuple[int, str]]:
        """``{key: (row, state)}`` of the stored queue jobs among ``keys`` (``lock``: a row lock)."""
        found: Dict[str, Tuple[int, str]] = {}
        for group in _chunks(list(dict.fromkeys(keys)), _CHUNK):
            rows = self.connection.execute(
                "SELECT name, id, state FROM jobs WHERE queue IS NOT NULL"
                f" AND name IN ({_marks(len(group))}){lock}",
                tuple(group),
            )
            found.update((text_of(name) or "", (row, state)) for name, row, state in rows)
        return found

    def _link(self, jobs: Sequence[NewJob], now: float) -> None:
        keys = [job.key for job in jobs] + [key for job in jobs for key in job.depends_on]
        # Locked until this transaction ends: a dependency that ends meanwhile waits for it, then
        # sees these edges (PostgreSQL; in SQLite nobody else writes meanwhile).
        rows = self._rows_by_key(keys, self.dialect.share_lock)
        edges: List[Tuple[int, int]] = []
        doomed: List[Tuple[int, str]] = []
        for job in jobs:
            job_row = rows[job.key][0]
            open_count = 0
            dead: Optional[str] = None
            for dependency in dict.fromkeys(job.depends_on):
                if dependency not in rows:
                    raise UnknownDependency(job.key, dependency)
                dependency_row, state = rows[dependency]
                edges.append((job_row, dependency_row))
                if state != _S.SUCCEEDED.value:
                    open_count += 1
                if state in (_S.DEAD.value, _S.CANCELLED.value) and dead is None:
                    dead = _dependency_error(dependency, state)
            self.connection.execute("UPDATE jobs SET waiting_on = ? WHERE id = ?", (open_count, job_row))
            if dead is not None:
                doomed.append((job_row, dead))
        self.connection.executemany(
            "INSERT INTO job_deps (job_id, depends_on) VALUES (?, ?) ON CONFLICT DO NOTHING", edges
        )
        if doomed:  # after the edges: the jobs of this batch that wait for a doomed one die too
            self._kill_dependents_of([], now, doomed)

    # -- claiming --------------------------------------------------------------------------------
    def claim_queue_jobs(
        self, owner: str, now: float, queues: Sequence[str], limit: int, lease_seconds: float,
        reclaim: bool = True,
    ) -> List[QueueJob]:
        """Claim up to ``limit`` due jobs of ``queues`` (empty: every queue) for ``owner``: by
        priority (higher first), then due time, then enqueue order, in one ``UPDATE ... RETURNING``.
        With ``reclaim``, jobs whose lease expired are taken back first (their attempt counts, as
        ``LOST``); a worker that claims often may do that less often than it claims."""
        scope, params = _scope(queues)
        with self._writing():
            if reclaim:
                self._reclaim_expired(now, scope, params)
            # SQLite's planner would take jobs_due and sort every due job; these indexes are in claim order.
            index = self.dialect.indexed_by("jobs_queue_due" if len(queues) == 1 else "jobs_claim")
            sql = _CLAIM_SQL.format(scope=scope, index=index, lock=self.dialect.claim_lock)
            rows = self.connection.execute(sql, (
                owner, now + lease_seconds, now, now, *params, now, limit, now,
            )).fetchall()
        jobs = [queue_job_from_row(row) for row in rows]
        jobs.sort(key=lambda job: (-job.priority, job.next_attempt_at, job.row))  # RETURNING has no order
        return jobs

    def _reclaim_expired(self, now: float, scope: str, params: Tuple[Any, ...]) -> None:
        expired = self.connection.execute(
            f"SELECT id, name, attempts, max_attempts, tries, lease_owner, worker_id, started_at FROM jobs"
            f" WHERE {scope} AND state = 'running' AND lease_expires_at <= ?{self.dialect.claim_lock}",
            (*params, now),
        ).fetchall()
        dead: List[Tuple[int, str]] = []
        for row, key, attempts, max_attempts, tries, lease_owner, slot, started_at in expired:
            last = attempts >= max(1, max_attempts)
            self.connection.execute(
                _HISTORY_SQL,
                (row, tries, LOST, None, None, slot, lease_owner, started_at, now, None, None, None,
                 LEASE_EXPIRED, "", ""),
            )
            self.connection.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL,"
                " last_error = ?, last_status = ?, ended_at = ?, updated_at = ? WHERE id = ?",
                (_S.DEAD.value if last else _S.PENDING.value, now, LOST_LAST if last else LEASE_EXPIRED, LOST,
                 now, now, row),
            )
            if last:
                dead.append((row, _dependency_error(text_of(key) or "", _S.DEAD.value)))
        if dead:
            self._kill_dependents_of(dead, now)

    def _paused(self) -> List[str]:
        rows = self.connection.execute(
            "SELECT key FROM settings WHERE key LIKE ? ORDER BY key", (PAUSE_PREFIX + "%",)
        ).fetchall()
        return [key[len(PAUSE_PREFIX):] for (key,) in rows]

    def next_due_at(self, queues: Sequence[str], now: float) -> Optional[float]:
        """When the next job of ``queues`` may be claimed (a due time or a lease expiry; it may be
        in the past), or None when there is none (or the queues are paused)."""
        scope, params = _scope(queues)
        with self._reading():
            paused = self._paused()
            if PAUSED_ALL in paused:
                return None
            extra, extra_params = "", ()
            if paused:
                extra = f" AND queue NOT IN ({_marks(len(paused))})"
                extra_params = tuple(paused)
            due = self.connection.execute(
                f"SELECT MIN(next_attempt_at) FROM jobs WHERE {scope} AND state IN {CLAIMABLE!r}"
                f" AND waiting_on = 0{extra}",
                (*params, *extra_params),
            ).fetchone()[0]
            expiry = self.connection.execute(
                f"SELECT MIN(lease_expires_at) FROM jobs WHERE {scope} AND state = 'running'{extra}",
                (*params, *extra_params),
            ).fetchone()[0]
        times = [value for value in (due, expiry) if value is not None]
        return min(times) if times else None

    # -- an attempt's end ------------------------------------------------------------------------
    def finish_queue_attempt(
        self, owner: str, result: TaskResult, now: float, backoff_base: float, backoff_max: float,
    ) -> AttemptOutcome:
        """Record the end of the attempt ``owner`` ran of job row ``result.task.index``.

        Success completes it (and counts it off its dependents' waits). A cancel the user asked for
        (``queuectl cancel``) makes any other ending ``cancelled``. Otherwise a failure makes it wait
        ``min(backoff_max, backoff_base ** attempts)`` seconds while attempts remain, else it is
        dead, and CANCELLED (a worker's shutdown stopped it) makes it pending again, the attempt
        not counted (INTERRUPTED).

        Raises:
            LeaseLost: ``owner`` no longer holds the job (its lease expired and it was taken back).
        """
        row = result.task.index
        if result.status is TaskStatus.SUCCESS:  # the common case, in two statements
            return self._completed(owner, result, now)
        with self._writing():
            found = self.connection.execute(
                "SELECT name, state, lease_owner, attempts, max_attempts, tries, cancel_requested FROM jobs"
                f" WHERE id = ?{self.dialect.update_lock}", (row,),
            ).fetchone()
            if found is None or found[1] != _S.RUNNING.value or found[2] != owner:
                raise LeaseLost(f"job {text_of(found[0]) if found else row}", owner)
            key, _state, _owner, attempts, max_attempts, tries, cancel_requested = found
            key = text_of(key) or ""
            status = result.status
            due: Optional[float] = None
            history_status = status.value
            counted = attempts
            if cancel_requested:  # the user's cancel wins over how the attempt happened to end
                state = _S.CANCELLED
            elif status is TaskStatus.CANCELLED:  # a worker's shutdown (or a lost lease) stopped it
                state, counted, history_status = _S.PENDING, attempts - 1, INTERRUPTED
                due = now
            elif attempts < max(1, max_attempts):
                state = retry_state(status)
                due = now + min(backoff_max, backoff_base ** attempts)
            else:
                state = _S.DEAD
            error = to_sql_text(result.error_message or None)
            self.connection.execute(
                "UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                " lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0, pid = ?, worker_id = ?,"
                " exit_code = ?, started_at = ?, ended_at = ?, duration = ?, memory_mb = ?, cpu_percent = ?,"
                " last_error = ?, last_status = ?, updated_at = ? WHERE id = ?",
                (state.value, counted, due, result.pid, result.worker_id, result.exit_code, result.start_time,
                 result.end_time, result.duration, result.memory_mb, result.cpu_percent, error,
                 history_status, now, row),
            )
            self.connection.execute(
                _HISTORY_SQL, _history_row(row, tries, history_status, owner, result, error)
            )
            if state in (_S.DEAD, _S.CANCELLED):
                self._kill_dependents_of([(row, _dependency_error(key, state.value))], now)
        return AttemptOutcome(key=key, state=state, due_at=due if state is not _S.PENDING else None,
                              interrupted=state is _S.PENDING)

    def _completed(self, owner: str, result: TaskResult, now: float) -> AttemptOutcome:
        """A successful attempt: the job is completed and counted off its dependents' waits (the
        completing statement says whether it has any, so most completions are two statements)."""
        row = result.task.index
        with self._writing():
            found = self.connection.execute(_COMPLETED_SQL, (
                result.pid, result.worker_id, result.exit_code, result.start_time, result.end_time,
                result.duration, result.memory_mb, result.cpu_percent, now, row, owner, result.attempt,
            )).fetchone()
            if found is None:
                raise LeaseLost(f"job {row}", owner)
            self.connection.execute(
                _HISTORY_SQL, _history_row(row, found[1], TaskStatus.SUCCESS.value, owner, result, None)
            )
            # With writers side by side, the EXISTS above saw the edges committed when the statement
            # began; this statement of its own also sees one an enqueue committed while it waited.
            if found[2] or self.dialect.concurrent_writers:
                self.connection.execute(
                    "UPDATE jobs SET waiting_on = waiting_on - 1, updated_at = ?"
                    " WHERE id IN (SELECT job_id FROM job_deps WHERE depends_on = ?) AND state = 'pending'"
                    " AND waiting_on > 0",
                    (now, row),
                )
        return AttemptOutcome(key=text_of(found[0]) or "", state=_S.SUCCEEDED)

    def _kill_dependents_of(
        self, ended: List[Tuple[int, str]], now: float, direct: Iterable[Tuple[int, str]] = (),
    ) -> int:
        """Jobs waiting for a job that ended without completing are dead, and so on down the line.

        Args:
            ended: ``(row, why)`` of jobs that died or were cancelled; their pending dependents die.
            direct: ``(row, why)`` of pending jobs to make dead themselves.
        """
        killed = 0
        todo: List[Tuple[int, str]] = list(direct)
        for row, why in ended:
            todo.extend((dependent, why) for (dependent,) in self.connection.execute(
                "SELECT job_id FROM job_deps WHERE depends_on = ?", (row,)
            ).fetchall())
        while todo:
            row, why = todo.pop()
            cursor = self.connection.execute(
                "UPDATE jobs SET state = 'dead', last_error = ?, last_status = 'DEPENDENCY', updated_at = ?,"
                " ended_at = ? WHERE id = ? AND state = 'pending' RETURNING name",
                (why, now, now, row),
            )
            found = cursor.fetchone()
            if found is None:
                continue
            killed += 1
            because = _dependency_error(text_of(found[0]) or "", _S.DEAD.value)
            todo.extend((dependent, because) for (dependent,) in self.connection.execute(
                "SELECT job_id FROM job_deps WHERE depends_on = ?", (row,)
            ).fetchall())
        return killed

    def renew_queue_leases(self, owner: str, rows: Sequence[int], expires_at: float) -> List[int]:
        """Extend ``owner``'s leases on these running jobs. Returns the rows still ``owner``'s."""
        held: List[int] = []
        with self._writing():
            for group in _chunks(list(rows), _CHUNK):
                held.extend(row for (row,) in self.connection.execute(
                    f"UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ? AND state = 'running'"
                    f" AND id IN ({_marks(len(group))}) RETURNING id",
                    (expires_at, owner, *group),
                ).fetchall())
        return held

    def release_queue_jobs(self, owner: str, rows: Sequence[int], now: float) -> int:
        """Jobs ``owner`` claimed but never started go back as they were (pending, the claim not
        counted, no history row)."""
        released = 0
        with self._writing():
            for group in _chunks(list(rows), _CHUNK):
                released += self.connection.execute(
                    "UPDATE jobs SET state = 'pending', attempts = attempts - 1, tries = tries - 1,"
                    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                    f" WHERE lease_owner = ? AND state = 'running' AND id IN ({_marks(len(group))})",
                    (now, owner, *group),
                ).rowcount
        return released

    def worker_stop_requested(self, owner: str) -> bool:
        with self._reading():
            found = self.connection.execute(
                "SELECT stop_requested FROM workers WHERE id = ?", (owner,)
            ).fetchone()
        return found is None or bool(found[0])

    def cancel_requested(self, owner: str) -> List[int]:
        """Rows of ``owner``'s running jobs that a user asked to cancel."""
        with self._reading():
            return [row for (row,) in self.connection.execute(
                "SELECT id FROM jobs WHERE lease_owner = ? AND state = 'running' AND cancel_requested = 1",
                (owner,),
            ).fetchall()]

    # -- reading ---------------------------------------------------------------------------------
    def _queue_jobs_where(self, where: str, params: Tuple[Any, ...], now: float,
                          order: str = "id", limit: Optional[int] = None) -> List[QueueJob]:
        rows = self.connection.execute(
            f"SELECT {_QUEUE_JOB_COLUMNS} FROM jobs WHERE queue IS NOT NULL AND {where} ORDER BY {order}"
            " LIMIT ?",
            (now, *params, self.dialect.no_limit if limit is None else limit),
        ).fetchall()
        return [queue_job_from_row(row) for row in rows]

    def get_queue_job(self, key: str, now: float) -> Optional[QueueJob]:
        with self._reading():
            found = self._queue_jobs_where("name = ?", (key,), now)
        return found[0] if found else None

    def iter_queue_jobs(
        self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
        limit: Optional[int] = None, order: str = "created",
    ) -> Iterator[QueueJob]:
        """Queue jobs (of the shown ``states`` and ``queue`` if given), oldest first (``order``
        ``"updated"``: by last change), a page at a time; at most ``limit``."""
        conditions, params = _filters(now, states, queue, None)
        key = "updated_at" if order == "updated" else "id"
        remaining = -1 if limit is None else limit
        after: Tuple[Any, ...] = ()
        while remaining != 0:
            page = _CHUNK if remaining < 0 else min(_CHUNK, remaining)
            where = " AND ".join(conditions + ([f"({key}, id) > (?, ?)"] if after else [])) or "1 = 1"
            with self._reading():
                jobs = self._queue_jobs_where(where, (*params, *after), now, order=f"{key}, id", limit=page)
            yield from jobs
            if len(jobs) < page:
                return
            if remaining > 0:
                remaining -= len(jobs)
            last = jobs[-1]
            after = (last.updated_at if key == "updated_at" else last.row, last.row)

    def find_queue_jobs(
        self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
        text: Optional[str] = None, before: Optional[int] = None, limit: int = 50,
    ) -> List[QueueJob]:
        """One page of queue jobs, newest first: of the shown ``states`` and ``queue`` if given,
        whose ID or command contains ``text``, with a row below ``before`` (the last page's last)."""
        conditions, params = _filters(now, states, queue, text)
        if before is not None:
            conditions.append("id < ?")
            params.append(before)
        with self._reading():
            return self._queue_jobs_where(" AND ".join(conditions) or "1 = 1", tuple(params), now,
                                          order="id DESC", limit=limit)

    def count_queue_jobs(self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
                         text: Optional[str] = None) -> int:
        """How many jobs :meth:`find_queue_jobs` pages through."""
        conditions, params = _filters(now, states, queue, text)
        where = " AND ".join(["queue IS NOT NULL", *conditions])
        # A text search reads every row anyway: straight through the table, not through an index
        # and then each row by its rowid.
        source = "jobs" + (self.dialect.not_indexed() if text and not states else "")
        with self._reading():
            (count,) = self.connection.execute(
                f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()
        return int(count)

    def queue_finishes(self, since: float, bucket: float) -> Dict[int, int]:
        """``{bucket number: attempts of queue jobs that ended in it}``, bucket 0 starting at
        ``since``, each ``bucket`` seconds long (the jobs/s figure)."""
        with self._reading():
            rows = self.connection.execute(
                f"SELECT {self.dialect.floor_int('(ended_at - ?) / ?')}, COUNT(*) FROM attempts"
                " WHERE ended_at >= ? AND worker IS NOT NULL GROUP BY 1",
                (since, bucket, since),
            ).fetchall()
        return {int(number): count for number, count in rows}

    def queue_counts(self, now: float, queue: Optional[str] = None) -> Dict[str, int]:
        """``{shown state: count}`` of the queue jobs (of ``queue`` if given); absent: none.

        Both statements read the index ``jobs_queue_state`` alone, in its order (no sort)."""
        where, params = ("queue = ?", (queue,)) if queue is not None else ("queue IS NOT NULL", ())
        counts: Dict[str, int] = {}
        with self._reading():
            for state, count in self.connection.execute(
                f"SELECT state, COUNT(*) FROM jobs WHERE {where} GROUP BY state", params
            ).fetchall():
                if state != _S.PENDING.value:
                    shown = _STORED_SHOWN.get(state, state)
                    counts[shown] = counts.get(shown, 0) + count
            pending, waiting, scheduled = self.connection.execute(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN waiting_on > 0 THEN 1 ELSE 0 END), 0),"
                " COALESCE(SUM(CASE WHEN waiting_on = 0 AND next_attempt_at > ? THEN 1 ELSE 0 END), 0)"
                f" FROM jobs WHERE {where} AND state = 'pending'", (now, *params),
            ).fetchone()
        for shown, count in (("pending", pending - waiting - scheduled), ("waiting", waiting),
                             ("scheduled", scheduled)):
            if count:
                counts[shown] = int(count)
        return counts

    def queue_names(self) -> List[str]:
        """The queues that hold jobs. Grouped in the order of ``jobs_queue_state`` (by state, then
        queue): reading that index is cheaper than sorting every job's queue name."""
        with self._reading():
            rows = self.connection.execute(
                "SELECT queue FROM jobs WHERE queue IS NOT NULL GROUP BY state, queue"
            ).fetchall()
        return sorted({name for (name,) in rows})

    def queue_attempts(self, row: int) -> List[QueueAttempt]:
        with self._reading():
            rows = self.connection.execute(
                "SELECT attempt, status, exit_code, pid, worker, worker_id, started_at, ended_at, duration,"
                " memory_mb, cpu_percent, error, stdout, stderr FROM attempts WHERE job_id = ?"
                " ORDER BY attempt",
                (row,),
            ).fetchall()
        return [
            QueueAttempt(*values[:11], text_of(values[11]), text_of(values[12]) or "",
                         text_of(values[13]) or "")
            for values in rows
        ]

    def dependencies_of(self, row: int, now: float) -> List[Tuple[str, str]]:
        """``(key, shown state)`` of the jobs job ``row`` depends on."""
        with self._reading():
            return [(text_of(name) or "", state) for name, state in self.connection.execute(
                f"SELECT jobs.name, {SHOWN_SQL} FROM job_deps JOIN jobs ON jobs.id = job_deps.depends_on"
                " WHERE job_deps.job_id = ? ORDER BY jobs.id", (now, row),
            ).fetchall()]

    # -- what users do ---------------------------------------------------------------------------
    def cancel_queue_job(self, key: str, now: float) -> Optional[str]:
        """Cancel a job: one not running is cancelled at once (its dependents die); a running
        one is marked for its worker to stop. Returns the job's state before, or None if unknown."""
        with self._writing():
            found = self.connection.execute(
                f"SELECT id, state FROM jobs WHERE queue IS NOT NULL AND name = ?{self.dialect.update_lock}",
                (key,),
            ).fetchone()
            if found is None:
                return None
            row, state = found
            if state == _S.RUNNING.value:
                self.connection.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, row)
                )
            elif state in CLAIMABLE:
                self.connection.execute(
                    "UPDATE jobs SET state = 'cancelled', last_error = 'cancelled by the user',"
                    " last_status = 'CANCELLED', ended_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row),
                )
                self._kill_dependents_of([(row, _dependency_error(key, _S.CANCELLED.value))], now)
            return state

    def retry_dead_jobs(self, keys: Optional[Sequence[str]], now: float) -> int:
        """Dead jobs (``keys``, or all of them) back to pending with attempts 0, due now; one
        waiting for dependencies waits again for those not completed. The caller checked that
        every key is dead."""
        with self._writing():
            if keys is None:
                rows = [row for (row,) in self.connection.execute(
                    "SELECT id FROM jobs WHERE queue IS NOT NULL AND state = 'dead'"
                ).fetchall()]
            else:
                rows = [row for row, state in self._rows_by_key(keys).values() if state == _S.DEAD.value]
            for group in _chunks(rows, _CHUNK):
                where = f"id IN ({_marks(len(group))})"
                self.connection.execute(
                    "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                    " cancel_requested = 0, waiting_on = (SELECT COUNT(*) FROM job_deps"
                    " JOIN jobs AS dependency ON dependency.id = job_deps.depends_on"
                    " WHERE job_deps.job_id = jobs.id AND dependency.state != 'succeeded'),"
                    f" updated_at = ? WHERE {where} AND state = 'dead'",
                    (now, now, *group),
                )
        return len(rows)

    def purge_queue_jobs(self, states: Sequence[str], older_than: Optional[float]) -> int:
        """Delete finished jobs (stored ``states`` among succeeded, dead, cancelled) last
        changed before ``older_than`` (None: any time), with their history."""
        wanted = [state for state in states if state in FINISHED]
        if not wanted:
            return 0
        where = f"queue IS NOT NULL AND state IN ({_marks(len(wanted))})"
        params: Tuple[Any, ...] = tuple(wanted)
        if older_than is not None:
            where += " AND updated_at < ?"
            params += (older_than,)
        with self._writing():
            return self.connection.execute(f"DELETE FROM jobs WHERE {where}", params).rowcount


def _history_row(row: int, tries: int, status: str, owner: str, result: TaskResult,
                 error: Any) -> Tuple[Any, ...]:
    """The parameters of :data:`_HISTORY_SQL` for an attempt that ran."""
    return (row, tries, status, result.exit_code, result.pid, result.worker_id, owner, result.start_time,
            result.end_time, result.duration, result.memory_mb, result.cpu_percent, error,
            to_sql_text(result.stdout), to_sql_text(result.stderr))


def _scope(queues: Sequence[str]) -> Tuple[str, Tuple[Any, ...]]:
    if not queues:
        return "queue IS NOT NULL", ()
    return f"queue IN ({_marks(len(queues))})", tuple(queues)


def _filters(now: float, states: Sequence[str], queue: Optional[str],
             text: Optional[str]) -> Tuple[List[str], List[Any]]:
    """WHERE conditions (and their parameters) for jobs in the shown ``states``, of ``queue``,
    whose ID or command holds ``text``."""
    conditions: List[str] = []
    params: List[Any] = []
    if states:
        parts = []
        for shown in states:
            condition, takes_now = _SHOWN_WHERE[shown]
            parts.append(f"({condition})")
            if takes_now:
                params.append(now)
        conditions.append("(" + " OR ".join(parts) + ")")
    if queue is not None:
        conditions.append("queue = ?")
        params.append(queue)
    if text:
        # argv is stored as JSON, so the text is looked for as JSON spells it (quotes, backslashes,
        # non-ASCII escaped). A shell job's command is what follows its '"-c",' (not /bin/sh -c
        # itself); cutting there is much cheaper than json_extract on every row.
        # The first instr() on the whole argv is a cheap pre-filter: most rows stop there.
        needle = _ENCODE(text)[1:-1]
        conditions.append("(instr(name, ?) > 0 OR (instr(argv, ?) > 0 AND instr(CASE WHEN shell <> 0"
                          " THEN substr(argv, instr(argv, '\",\"-c\",') + 7) ELSE argv END, ?) > 0))")
        params.extend((text, needle, needle))
    return conditions, params


def _dependency_error(key: str, state: str) -> str:
    what = "was cancelled" if state == _S.CANCELLED.value else "is dead"
    return f"its dependency {key} {what}"
