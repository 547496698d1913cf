"""The ``process`` executor: a pool of worker processes, each running one task at a time.

The pool uses the ``forkserver`` start method on Linux: forking straight from the runner, which
has threads, is unsafe.

A :class:`~parallelr.cancel.CancelToken` cannot cross into a worker, so cancellation crosses as
a few numbers in shared memory (:class:`_Shared`) and one signal that says "look at them":

* Every task gets a *ticket*, a slot in the shared arrays that is its own while it is in the
  pool. Cancelling the caller's token for that task writes "cancel" (or "kill") into the
  ticket's flag and sends SIGUSR1 to the worker that runs it: the worker writes its pid into the
  ticket when it takes the task. Before that, every worker of this executor gets the signal,
  and the one that takes the task later reads the flag when it starts.
* The executor's own token stands for all of its tasks: cancelling it (``shutdown``) or killing
  it (``kill``) writes the executor-wide state and signals the executor's workers. Each worker
  registered its pid in the shared array when it started, so the executor signals exactly its
  own workers, known without looking into the pool's internals.
* In a worker, SIGUSR1 turns the shared numbers into tokens again: the executor-wide state into
  the worker's :data:`_worker_token` (the parent of every task token in that worker: it stays
  cancelled, so tasks the worker takes later end CANCELLED without starting), a ticket's flag
  into the current task's token. A flag is honoured only by the worker whose current task
  holds that ticket, so a late signal never stops the wrong task.
* SIGTERM means "cancel and exit": the task and its whole process group are stopped first, then
  the worker dies as SIGTERM would have killed it. ``ProcessPoolExecutor`` itself SIGTERMs its
  workers when the pool breaks and then joins them, so a worker must not survive SIGTERM; that is
  why the polite cancellation uses a signal of its own.
* SIGINT (a Ctrl-C that reached the whole terminal group) is left to the runner to decide.

Nothing of the pool outlives the runner, however it dies (``kill -9``, the OOM killer). The fork
server, the pool's workers and the resource tracker would otherwise stay: each worker holds the
fork server's "alive" pipe and the tracker's pipe, so neither ever sees its end of file. On Linux:

* The fork server gets a parent-death signal (``PR_SET_PDEATHSIG``, SIGKILL: it runs no task),
  set when it imports this module as a preload. The signal fires when the *thread* that started
  the process ends, so the server is started by :class:`_ForkServerKeeper`'s thread, which lives
  as long as the runner, never by the thread of one run (``run_batch`` in a thread).
* Each worker gets SIGTERM as its parent-death signal (its parent is the fork server): the
  SIGTERM handler above stops the running task's whole process group, then the worker dies.
* The resource tracker, which imports nothing of ours, ends by itself once the runner and the
  workers are gone and its pipe reaches end of file.
* The fork server, and through it the tracker and the workers, start with the run's
  ``PARALLELR_RUN_ID`` in their environment, as tasks do: what a dead run left anyway (a worker
  killed with SIGKILL leaves its task's group, or no parent-death signal was set) is found and
  stopped by ``--resume``. A process starts one fork server, with the ID of the run that needed
  it first; in the CLI that is the one run of the process.

Every future this executor returns resolves to a TaskResult: a pool that broke turns into
CANCELLED results during a shutdown and into ERROR results otherwise.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import attrs

from parallelr import process as task_process
from parallelr.cancel import CancelToken
from parallelr.executor import SHUTDOWN_REASON, ExecutorContext
from parallelr.futures import ResultFuture
from parallelr.hookspecs import hookimpl
from parallelr.model import RUN_ID_VARIABLE, ExecutionLimits, Task, TaskResult, TaskStatus

TERMINATED_REASON = "Cancelled: worker process received SIGTERM"
# What a worker calls a cancel asked for one task; the runner replaces it with the caller's
# reason, which cannot cross into the worker.
REQUESTED_REASON = "Cancelled by request"
CANCEL_SIGNAL = signal.SIGUSR1

# The values of the executor-wide state and of a ticket's flag.
ACTIVE, CANCEL, KILL = 0, 1, 2
NO_TICKET = -1

PR_SET_PDEATHSIG = 1  # linux/prctl.h
FORK_SERVER_DEATH_SIGNAL = signal.SIGKILL  # it runs no task: nothing to stop first
WORKER_DEATH_SIGNAL = signal.SIGTERM  # _on_sigterm stops the running task's group, then dies


def _set_parent_death_signal(signum: int) -> bool:
    """Have Linux send ``signum`` to this process when the thread that forked it ends (its
    parent's death). False where there is no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(int(signum)), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc with prctl (a static or exotic build)
        return False


def _imported_by_fork_server(module_frame: Any) -> bool:
    """True when the module whose frame is ``module_frame`` is being imported by the fork
    server's preload, i.e. directly by ``multiprocessing.forkserver.main``: only the import
    machinery lies between them. A worker forked from the server runs inside ``main`` too, but
    deeper (serving one request), and the runner never runs ``main`` at all."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    main = getattr(forkserver, "main", None)
    if main is None:
        return False
    frame = module_frame.f_back
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("importlib", "_frozen_importlib")
    ):
        frame = frame.f_back
    return frame is not None and frame.f_code is main.__code__


class _Shared:
    """The shared memory of one executor and its workers; lock-free to read on both sides.

    ``pids[i]``: the pid of the i-th worker that started (0: none yet). ``state``: ACTIVE,
    CANCEL or KILL for all tasks. ``flags[t]`` / ``ticket_pids[t]``: what was asked for the task
    holding ticket ``t``, and the worker that runs it (0: not started).
    """

    def __init__(self, context: Any, workers: int, tickets: int) -> None:
        self.pids = context.RawArray("i", workers)
        self.started = context.Value("i", 0)  # how many workers took a slot in pids (locked)
        self.state = context.RawValue("b", ACTIVE)
        self.flags = context.RawArray("b", tickets)
        self.ticket_pids = context.RawArray("i", tickets)

    def as_args(self) -> tuple:
        return (self.pids, self.started, self.state, self.flags, self.ticket_pids)


# -- inside a pool worker ---------------------------------------------------------------------
# The token of this worker process: the parent of every task token here, cancelled for good by
# the executor's shutdown or by SIGTERM. Process-wide by nature: this process is one worker.
_worker_token = CancelToken()
_task_token: Optional[CancelToken] = None  # the running task's token
_ticket = NO_TICKET  # the running task's ticket
_shared_in_worker: Optional[tuple] = None  # _Shared.as_args(), set by _init_worker
_busy = False  # a task is running in this worker
_exit_requested = False  # SIGTERM arrived while busy: die as soon as the task is stopped


def _honour_requests() -> None:
    """Turn what the runner wrote into shared memory into this worker's tokens. Signal-safe:
    it only reads shared memory and cancels tokens."""
    if _shared_in_worker is None:
        return
    _pids, _started, state, flags, _ticket_pids = _shared_in_worker
    if state.value == KILL:
        _worker_token.kill(SHUTDOWN_REASON)
    elif state.value == CANCEL:
        _worker_token.cancel(SHUTDOWN_REASON)
    token, ticket = _task_token, _ticket
    if token is not None and ticket != NO_TICKET:
        flag = flags[ticket]
        if flag == KILL:
            token.kill(REQUESTED_REASON)
        elif flag == CANCEL:
            token.cancel(REQUESTED_REASON)


def _on_cancel_signal(_signum: int, _frame: Any) -> None:
    _honour_requests()


def _on_sigterm(_signum: int, _frame: Any) -> None:
    global _exit_requested
    _worker_token.cancel(TERMINATED_REASON)
    if _busy:
        _exit_requested = True  # run_in_worker dies once run_task has killed the task's group
    else:
        _die_of_sigterm()


def _ignore_signal(_signum: int, _frame: Any) -> None:
    """A Python-level handler rather than SIG_IGN: exec resets it, so tasks still get SIGINT."""


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _init_worker(*shared: Any) -> None:
    global _shared_in_worker
    _shared_in_worker = shared
    signal.signal(CANCEL_SIGNAL, _on_cancel_signal)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _ignore_signal)
    # Set only now that the SIGTERM handler is in place, so the parent-death signal stops the
    # running task's group before the worker dies. A runner (and so its fork server) that died
    # before this line sends no signal any more: then die as the signal would have made us.
    if _set_parent_death_signal(WORKER_DEATH_SIGNAL) and not _runner_alive():
        _die_of_sigterm()
    # Registered only now that the handlers are in place: SIGUSR1's default action would end
    # the worker. The counter's lock is taken here only, never by the runner.
    pids, started = shared[0], shared[1]
    with started.get_lock():
        slot = started.value
        started.value += 1
    if slot < len(pids):
        pids[slot] = os.getpid()
    _honour_requests()  # a shutdown that came before this worker did


def _runner_alive() -> bool:
    """Whether the process that made this worker still runs (multiprocessing's parent
    sentinel: a pipe that the runner holds open until it ends)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _warm_up() -> None:
    """Submitted once per slot by the constructor, so the workers start before the first task."""


def run_in_worker(task: Task, worker_id: int, limits: ExecutionLimits, ticket: int = NO_TICKET) -> TaskResult:
    """What a pool worker runs for each task."""
    global _busy, _task_token, _ticket
    token = _worker_token.child()
    _busy = True
    _task_token = token
    _ticket = ticket  # the signal handler reads it: set after the token it refers to
    ticket_pids = _shared_in_worker[4] if _shared_in_worker is not None else None
    try:
        if ticket != NO_TICKET and ticket_pids is not None:
            ticket_pids[ticket] = os.getpid()
        _honour_requests()  # a cancel asked before this worker took the task
        return task_process.run_task_guarded(task, worker_id, limits, token)
    finally:
        _ticket = NO_TICKET
        _task_token = None
        if ticket != NO_TICKET and ticket_pids is not None:
            ticket_pids[ticket] = 0
        _busy = False
        if _exit_requested:
            _die_of_sigterm()


# -- in the runner ----------------------------------------------------------------------------
def _pool_context() -> Any:
    import multiprocessing  # only when this executor is chosen: it is heavy to import

    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    # The fork server imports these once; every worker forked from it starts with them loaded.
    # Only effective before the server starts; harmless afterwards.
    context.set_forkserver_preload(["__main__", __name__])
    return context


class _ForkServerKeeper:
    """Starts the fork server (and the resource tracker it needs) from one thread that lives as
    long as this process, with the run's marker in their environment.

    The fork server's parent-death signal follows the thread that started it: started by the
    thread of a run, it (and every worker of every run) would be killed when that thread ended.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Optional[queue.SimpleQueue] = None

    def ensure_running(self, run_id: Optional[str]) -> None:
        with self._lock:
            if self._requests is None:
                self._requests = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._requests,), daemon=True,
                                 name="parallelr-forkserver").start()
            requests = self._requests
        reply: queue.SimpleQueue = queue.SimpleQueue()
        requests.put((run_id, reply))
        error = reply.get()
        if error is not None:
            raise error

    @staticmethod
    def _serve(requests: queue.SimpleQueue) -> None:
        from multiprocessing import forkserver

        while True:  # never returns: the fork server's parent-death signal is this thread's end
            run_id, reply = requests.get()
            try:
                with _run_marker(run_id):
                    forkserver.ensure_running()  # starts the server only if it is not running
            except BaseException as exc:  # handed to the run that asked
                reply.put(exc)
            else:
                reply.put(None)


@contextlib.contextmanager
def _run_marker(run_id: Optional[str]) -> Iterator[None]:
    """``PARALLELR_RUN_ID`` in this process's environment while the fork server may start:
    multiprocessing starts it with our environment and offers no way to pass another. Only the
    keeper's thread sets it, briefly; a task started meanwhile is unaffected, as every task's
    environment names its own run (``parallelr.process``)."""
    if not run_id:
        yield
        return
    previous = os.environ.get(RUN_ID_VARIABLE)
    os.environ[RUN_ID_VARIABLE] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_VARIABLE, None)
        else:  # this runner is itself a task of another run: it keeps that run's marker
            os.environ[RUN_ID_VARIABLE] = previous


_keeper = _ForkServerKeeper()


def _new_keeper_in_child() -> None:
    """A forked child (the daemon's double fork) has no keeper thread, and the keeper's lock may
    have been held at the fork: it starts afresh."""
    global _keeper
    _keeper = _ForkServerKeeper()


os.register_at_fork(after_in_child=_new_keeper_in_child)


class _Tickets:
    """Which tickets are free. A ticket's generation changes whenever it is handed out again, so
    a cancel meant for its previous holder (which may already have finished) is dropped."""

    def __init__(self, count: int) -> None:
        self.free: List[int] = list(range(count - 1, -1, -1))
        self.generation: List[int] = [0] * count


class ProcessExecutor:
    """``submit(task, worker_id, cancel)`` runs the task in one of ``context.workers`` worker
    processes."""

    def __init__(self, context: ExecutorContext) -> None:
        self.limits = context.limits
        max_workers = context.workers
        mp_context = _pool_context()
        if mp_context.get_start_method() == "forkserver":
            _keeper.ensure_running(self.limits.run_id)  # before _Shared: it starts the tracker
        # The scheduler keeps at most `workers` tasks in the pool; the slack covers callers that
        # queue more. A task submitted when none is free can be stopped only by a shutdown.
        ticket_count = 4 * max_workers + 16
        self._shared = _Shared(mp_context, max_workers, ticket_count)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers, mp_context=mp_context, initializer=_init_worker, initargs=self._shared.as_args()
        )
        # reentrant: kill() and cancel listeners may run in a signal handler while this thread
        # holds the lock in submit()
        self._lock = threading.RLock()
        self._closing = False
        self._workers_gone = False  # the pool shut down or broke: its pids may be anyone's now
        self._tickets = _Tickets(ticket_count)
        self._in_pool: Set[concurrent.futures.Future] = set()
        # The parent of all this executor's tasks: shutdown cancels it, kill() kills it.
        self.token = CancelToken()
        self.token.subscribe(self._on_own_token)
        for _ in range(max_workers):
            self._pool.submit(_warm_up)

    def submit(
        self, task: Task, worker_id: int, cancel: Optional[CancelToken] = None
    ) -> concurrent.futures.Future:
        """A future of the task's TaskResult; it never raises. Cancelling ``cancel`` stops this
        task only (its worker is signalled); the executor's shutdown stops it too."""
        if cancel is not None and cancel.cancelled:
            reason = cancel.reason or REQUESTED_REASON
            return ResultFuture.finished(TaskResult.cancelled(task, reason, worker_id))
        future = ResultFuture()
        with self._lock:
            if self._closing:
                return ResultFuture.finished(TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id))
            ticket = self._take_ticket() if cancel is not None else NO_TICKET
            try:
                inner = self._pool.submit(run_in_worker, task, worker_id, self.limits, ticket)
            except (concurrent.futures.BrokenExecutor, RuntimeError) as exc:
                self._release(ticket)
                return ResultFuture.finished(self._failure(task, worker_id, exc))
            self._in_pool.add(inner)
        unsubscribe: Optional[Callable[[], None]] = None
        if cancel is not None and ticket != NO_TICKET:
            generation = self._tickets.generation[ticket]
            unsubscribe = cancel.subscribe(lambda: self._request(ticket, generation, cancel))
            if cancel.cancelled:  # cancelled while it was being submitted
                self._request(ticket, generation, cancel)
        inner.add_done_callback(lambda done: self._left_pool(done, ticket, unsubscribe))
        future.follow(
            inner,
            on_error=lambda error: self._failure(task, worker_id, error),
            on_result=lambda result: _with_reason(result, cancel),
        )
        return future

    # - tickets -
    def _take_ticket(self) -> int:
        tickets = self._tickets
        if not tickets.free:
            return NO_TICKET
        ticket = tickets.free.pop()
        # The generation first: a stale request that interrupts us here is dropped by it.
        tickets.generation[ticket] += 1
        self._shared.flags[ticket] = ACTIVE
        self._shared.ticket_pids[ticket] = 0
        return ticket

    def _release(self, ticket: int) -> None:
        if ticket != NO_TICKET:
            with self._lock:
                self._tickets.generation[ticket] += 1
                self._tickets.free.append(ticket)

    def _left_pool(
        self, inner: concurrent.futures.Future, ticket: int, unsubscribe: Optional[Callable[[], None]]
    ) -> None:
        if unsubscribe is not None:
            unsubscribe()
        self._in_pool.discard(inner)
        self._release(ticket)

    # - cancellation -
    def _request(self, ticket: int, generation: int, token: CancelToken) -> None:
        """The caller's token of the task holding ``ticket`` was cancelled or killed. A token
        listener: it may run in a signal handler."""
        flag = KILL if token.killed else CANCEL
        with self._lock:
            if self._tickets.generation[ticket] != generation:
                return  # that task has left the pool; the ticket is someone else's now
            flags = self._shared.flags
            if flags[ticket] < flag:
                flags[ticket] = flag
            pid = self._shared.ticket_pids[ticket]
        # Not started (pid 0): whichever worker takes it reads the flag when it starts, and a
        # worker that is just taking it reads it in the signal handler.
        self._signal_workers([pid] if pid > 0 else None)

    def _on_own_token(self) -> None:
        """This executor's token was cancelled or killed: all of its tasks stop. Signal-safe."""
        state = KILL if self.token.killed else CANCEL
        if self._shared.state.value < state:
            self._shared.state.value = state
        self._signal_workers(None)

    def _signal_workers(self, pids: Optional[List[int]]) -> None:
        """Send CANCEL_SIGNAL to ``pids``, or to every worker of this executor (None)."""
        if self._workers_gone:
            return
        own = os.getpid()
        for pid in self._shared.pids[:] if pids is None else pids:
            if pid > 0 and pid != own:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, CANCEL_SIGNAL)

    def _failure(self, task: Task, worker_id: int, error: BaseException) -> TaskResult:
        """A pool that broke: expected during a shutdown, a real error otherwise."""
        if isinstance(error, concurrent.futures.BrokenExecutor):
            self._workers_gone = True  # the pool has terminated and reaped its workers
        if self._closing:
            return TaskResult.cancelled(task, SHUTDOWN_REASON, worker_id)
        message = " ".join(str(error).split()) or type(error).__name__
        return TaskResult(
            task=task,
            status=TaskStatus.ERROR,
            worker_id=worker_id,
            error_message=f"executor failed: {message}",
        )

    def shutdown(self, cancel: bool) -> None:
        """Wait until the pool is done. With ``cancel``: queued tasks are cancelled (their futures
        report ``cancelled()``) and running ones are stopped with their whole process group and
        end as CANCELLED. Only this executor's workers are signalled."""
        with self._lock:
            self._closing = True
            in_pool = list(self._in_pool)
        if cancel:
            for inner in in_pool:
                inner.cancel()
            self.token.cancel(SHUTDOWN_REASON)
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._workers_gone = True

    def kill(self) -> None:
        """Stop at once: every worker SIGKILLs its running task's group now (a second Ctrl+C)."""
        with self._lock:
            self._closing = True
        self.token.kill(SHUTDOWN_REASON)


def _with_reason(result: TaskResult, cancel: Optional[CancelToken]) -> TaskResult:
    """A task cancelled through its own token ends with that token's reason."""
    requested = result.status is TaskStatus.CANCELLED and result.error_message == REQUESTED_REASON
    if requested and cancel is not None:
        return attrs.evolve(result, error_message=cancel.reason or REQUESTED_REASON)
    return result


@hookimpl
def parallelr_executors() -> Dict[str, Any]:
    return {"process": ProcessExecutor}


# In the fork server, as it preloads this module: die with the runner (see the module docstring).
# Its own "alive" pipe covers a runner that died before this line: the server then sees its end
# of file at once, as no worker holds the pipe yet.
if _imported_by_fork_server(sys._getframe()):
    _set_parent_death_signal(FORK_SERVER_DEATH_SIGNAL)
