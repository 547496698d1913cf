"""The supervision of ONE spawned task as a state machine that any wait loop can drive: the
thread executor's one-task poll loop (:func:`parallelr.process.run_task`) and the event-loop
executor's one loop over every running task run the very same code, so a task is stopped, reaped,
measured and reported identically whoever waits for it.

How a driver uses a :class:`TaskSupervisor`:

* The supervisor registers its descriptors (the two output pipes, the leader's exit notifier, its
  cancel token's watch) with the driver's :class:`Poller` and unregisters them when it is done
  with them.
* ``start()`` and ``resume()`` run it until it has to wait; they return the monotonic time of its
  next timer (timeout, SIGKILL after the grace, the next resource sample, a group check, the end
  of the pipe drain), or None when only its descriptors can move it on. The driver waits until
  one of them is ready or the time comes, hands the ready ones to ``dispatch`` and calls
  ``resume`` again. ``done`` is True once the task and everything it started are gone.
* ``result()`` then makes the TaskResult; ``abandon()`` (on an error in the driver) kills what is
  left and releases every descriptor.

Why the waiting looks the way it does (as the thread executor always did it):

* The leader is reaped with ``os.wait4`` only after it has exited (its exit notifier is readable),
  so its rusage (peak RSS, CPU time) comes from the kernel for free.
* Signals go to the task's process group while the leader is still unreaped: its zombie keeps
  the group id from being reused, so the signal cannot reach a stranger. (A zombie leader still
  counts as a member for ``killpg(pgid, 0)``, so "are members left?" is asked after the reap,
  and then only live, non-zombie members count: orphans may stay zombies if init does not reap.)
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Generator, List, Optional, Sequence, Set, Tuple

import attrs

if TYPE_CHECKING:
    import psutil

    from parallelr.cancel import CancelToken, Watch

from parallelr.model import ExecutionLimits, Task, TaskResult, TaskStatus

READ_CHUNK = 64 * 1024
_psutil_module: Any = None


def _psutil() -> Any:
    """psutil, imported on first use: only tasks that outlive a sample interval or have to be
    stopped need it, and importing it costs every run's start-up."""
    global _psutil_module
    if _psutil_module is None:
        import psutil

        _psutil_module = psutil
    return _psutil_module


# When members of a finished task's group must be waited for, the kernel offers no "group is
# empty" event, so that rare path re-checks with a backoff between these bounds.
_GROUP_POLL_MIN = 0.005
_GROUP_POLL_MAX = 0.1
# Other threads may allocate between reading the RSS floor and the child's exec.
_FLOOR_MARGIN_KIB = 2048


# -- output tail ------------------------------------------------------------------------------
class OutputTail:
    """The last bytes of a stream, bounded to enough bytes for ``max_chars`` characters.

    UTF-8 needs at most 4 bytes a character (an undecodable byte becomes one U+FFFD), so
    ``4 * max_chars`` bytes plus a partial character of slack always hold the last
    ``max_chars`` characters, however much the task prints.
    """

    __slots__ = ("_cap", "_chunks", "_max_chars", "_size")

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max(0, int(max_chars))
        self._cap = 4 * self._max_chars + 4 if self._max_chars else 0
        self._chunks: Deque[bytes] = collections.deque()
        self._size = 0

    def append(self, data: bytes) -> None:
        cap = self._cap
        if len(data) >= cap:
            self._chunks.clear()
            if cap:
                self._chunks.append(data[-cap:])
            self._size = cap
            return
        self._chunks.append(data)
        self._size += len(data)
        while self._size > cap:
            excess = self._size - cap
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.popleft()
                self._size -= len(first)
            else:
                self._chunks[0] = first[excess:]
                self._size -= excess

    def text(self) -> str:
        if not self._max_chars:
            return ""
        return b"".join(self._chunks).decode("utf-8", "replace")[-self._max_chars :]


# -- small helpers ----------------------------------------------------------------------------
def format_timeout(seconds: float) -> str:
    """``45`` → ``"45"``, ``0.5`` → ``"0.5"``: the number as the spec's "Timeout after 45s"."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def killpg_quietly(pgid: int, sig: int) -> None:
    """``killpg`` that ignores a group that is gone (or not ours to signal)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_group_members(pgid: int) -> List[int]:
    """PIDs in process group ``pgid`` that are not zombies. Scans /proc: rare path only."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def _pgid_of(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def is_running(proc: psutil.Process) -> bool:
    """True while ``proc`` runs; a zombie (it runs nothing) and a vanished process do not."""
    try:
        return proc.is_running() and proc.status() != _psutil().STATUS_ZOMBIE
    except _psutil().Error:
        return False


# -- what a driver provides and what a spawner hands over ---------------------------------------
class Poller:
    """Where a supervisor registers the descriptors it waits on (readable events only). The
    driver calls :meth:`TaskSupervisor.dispatch` with ``(fd, data)`` of the ready ones."""

    def register(self, fd: int, supervisor: TaskSupervisor, data: object) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def watch(self, token: CancelToken, supervisor: TaskSupervisor) -> Watch:
        """How ``supervisor`` learns that ``token`` was cancelled or killed. By default the
        token's pipe (:meth:`CancelToken.watch`), which the supervisor registers among its
        descriptors. A driver of many supervisors may instead return a watch whose ``fd`` is
        -1 and call ``dispatch(..., cancelled=True)`` itself when the token changes (one pipe
        of its own for all of them instead of one per task)."""
        return token.watch()


@attrs.frozen
class SpawnedTask:
    """A task's leader process as a spawner hands it over: its pid, the read ends of its output
    pipes (blocking; the supervisor reads only when they are readable and closes them), and
    ``on_reaped(exit_code)``, called once the leader is reaped (a ``Popen`` records its
    returncode there, so that it never waits for a pid that may have been reused)."""

    pid: int
    stdout_fd: int
    stderr_fd: int
    rss_floor_kib: int = 0  # the runner's own RSS at the spawn, see TaskSupervisor.result
    on_reaped: Optional[Callable[[int], None]] = None


_EXIT = "exit"
_CANCEL = "cancel"
Wake = Optional[float]  # the monotonic time of a supervisor's next timer, None: no timer


# -- the supervision of one running task ------------------------------------------------------
class TaskSupervisor:
    """Watches one spawned task until it and everything it started are gone."""

    def __init__(
        self,
        spawned: SpawnedTask,
        exit_fd: int,
        limits: ExecutionLimits,
        started: float,
        poller: Poller,
        cancel: Optional[CancelToken] = None,
    ) -> None:
        """``exit_fd`` becomes readable when the leader exits (it is not reaped); the supervisor
        owns it and closes it. On an error (no descriptor left for the token's watch) it closes
        what it opened and raises; the caller then kills and reaps the leader."""
        self.spawned = spawned
        self.pid: int = spawned.pid
        self.limits = limits
        self.use_groups = limits.use_process_groups
        self.started = started
        self.poller = poller
        self.stdout = OutputTail(limits.max_output_capture)
        self.stderr = OutputTail(limits.max_output_capture)
        self.exit_fd = exit_fd
        self._registered: Set[int] = set()
        self._pipes: List[int] = [spawned.stdout_fd, spawned.stderr_fd]
        self.open_pipes = 0
        try:
            for fd, tail in ((spawned.stdout_fd, self.stdout), (spawned.stderr_fd, self.stderr)):
                self._register(fd, tail)
                self.open_pipes += 1
            self._register(exit_fd, _EXIT)
            # Last, so that nothing can fail after it is open; _close() releases it.
            self.watch: Optional[Watch] = poller.watch(cancel, self) if cancel is not None else None
            if self.watch is not None and self.watch.fd >= 0:
                self._register(self.watch.fd, _CANCEL)
        except BaseException:
            self.watch = None
            self._release()
            raise
        self.settled = False  # after the reap: nothing of the group is left alive
        self.outcome: Optional[TaskStatus] = None  # TIMEOUT or CANCELLED once we stop it
        self.cancel_reason = ""
        self.kill_at: Optional[float] = None  # when SIGTERM's grace runs out
        self.killed = False
        self.escaped: List[psutil.Process] = []  # descendants that left the group
        self.peak_rss = 0
        self.sampled: Optional[psutil.Process] = None
        self.status: Optional[int] = None
        self.rusage: Any = None
        self.reaped = False
        self.exit_seen = False  # the exit notifier was readable
        self.done = False
        self._steps: Generator[Wake, None, None] = self._phases()

    # - driving -
    def start(self) -> Wake:
        """Run until the first wait; the time of the next timer (None: only descriptors)."""
        return self.resume()

    def resume(self) -> Wake:
        """Go on after a dispatch or a timer; the time of the next timer. Sets ``done`` instead
        when nothing of the task is left to wait for."""
        try:
            return next(self._steps)
        except StopIteration:
            self.done = True
            return None

    def abandon(self) -> None:
        """Stop supervising early (a bug in the driver): SIGKILL and reap what is left, release
        every descriptor. A no-op once done."""
        if not self.done:
            self.done = True
            self._steps.close()  # runs _phases' finally: _close()

    def dispatch(self, ready: Sequence[Tuple[int, object]], cancelled: bool = False) -> None:
        """Handle this supervisor's descriptors that one wait found readable: ``(fd, data)``
        as registered, and with ``cancelled`` a change of its token that the driver watches
        itself (see :meth:`Poller.watch`). The exit is seen before a cancel of the same wait: a
        leader that has already exited finished on its own."""
        exited = any(data is _EXIT for _fd, data in ready)
        if exited:
            self._unregister(self.exit_fd)  # it stays readable: seen once is enough
            self.exit_seen = True
        for fd, data in ready:
            if fd not in self._registered:  # handled already in this batch (an EOF, a kill)
                continue
            if isinstance(data, OutputTail):
                self._read(fd, data)
            elif data is _CANCEL:
                self._on_cancel(exited)
        if cancelled and self.watch is not None and not self.done:
            self._on_cancel(exited)

    # - descriptors -
    def descriptors(self) -> List[int]:
        """The descriptors it is registered for now (with its poller)."""
        return list(self._registered)

    def _register(self, fd: int, data: object) -> None:
        self.poller.register(fd, self, data)
        self._registered.add(fd)

    def _unregister(self, fd: int) -> None:
        if fd in self._registered:
            self._registered.discard(fd)
            self.poller.unregister(fd)

    def _read(self, fd: int, tail: OutputTail) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            tail.append(data)
        else:
            self._unregister(fd)
            self.open_pipes -= 1

    def _release(self) -> None:
        """Unregister and close every descriptor the supervisor owns (safe to call twice)."""
        for fd in list(self._registered):
            self._unregister(fd)
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        if self.watch is not None:
            self.watch.close()
        for fd in self._pipes:
            os.close(fd)
        self._pipes = []

    # - events -
    def _on_cancel(self, exited: bool) -> None:
        """The token (or an ancestor) was cancelled or killed; the token says which."""
        watch = self.watch
        assert watch is not None
        watch.drain()  # ours alone: emptied, it wakes us again for a kill after a cancel
        token = watch.token
        if token.killed:
            if watch.fd >= 0:
                self._unregister(watch.fd)  # nothing more can happen to the token
            self._kill_at_once(exited)
        # A leader that already exited finished on its own: its own status stands.
        elif not self.reaped and not exited and self.outcome is None:
            self.outcome = TaskStatus.CANCELLED
            self.cancel_reason = token.reason or "cancelled"
            self._terminate()

    def _kill_at_once(self, exited: bool) -> None:
        if self.killed or self.settled:
            return
        if not self.reaped and not exited and self.outcome is None:
            self.outcome = TaskStatus.CANCELLED
            self.cancel_reason = (self.watch.token.reason if self.watch else None) or "cancelled"
        if not self.reaped and self.kill_at is None:
            self._terminate()  # collects the descendants that left the group
        self._kill_now()

    # - signals -
    def _terminate(self) -> None:
        """SIGTERM the task (its group and escaped descendants); SIGKILL follows after grace."""
        if self.use_groups:
            try:
                leader = _psutil().Process(self.pid)
                self.escaped = [
                    child for child in leader.children(recursive=True) if _pgid_of(child.pid) != self.pid
                ]
            except _psutil().Error:
                self.escaped = []
        self._send(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.limits.kill_grace

    def _send(self, sig: int) -> None:
        if self.use_groups:
            killpg_quietly(self.pid, sig)
        elif not self.reaped:
            # Safe: the leader is not reaped yet, so its pid is still ours.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
        for proc in self.escaped:
            with contextlib.suppress(_psutil().Error):  # psutil checks the pid was not reused
                proc.send_signal(sig)

    def _kill_now(self) -> None:
        self._send(signal.SIGKILL)
        self.killed = True
        self.kill_at = None

    def _sample(self) -> None:
        try:
            if self.sampled is None:
                self.sampled = _psutil().Process(self.pid)
            rss = self.sampled.memory_info().rss
            for child in self.sampled.children(recursive=True):
                with contextlib.suppress(_psutil().Error):
                    rss += child.memory_info().rss
        except _psutil().Error:
            return
        self.peak_rss = max(self.peak_rss, rss)

    # - phases -
    def _phases(self) -> Generator[Wake, None, None]:
        try:
            yield from self._wait_for_leader()
            self._reap()
            yield from self._settle_group_and_drain()
        finally:
            self._close()

    def _wait_for_leader(self) -> Generator[Wake, None, None]:
        limits = self.limits
        deadline = self.started + limits.timeout if limits.timeout and limits.timeout > 0 else None
        interval = limits.sample_interval
        next_sample = self.started + interval if interval and interval > 0 else None
        while True:
            timers = [
                t
                for t in (deadline if self.outcome is None else None, self.kill_at, next_sample)
                if t is not None
            ]
            yield min(timers) if timers else None
            if self.exit_seen:
                return
            now = time.monotonic()
            if deadline is not None and self.outcome is None and now >= deadline:
                self.outcome = TaskStatus.TIMEOUT
                self._terminate()
            if self.kill_at is not None and now >= self.kill_at:
                self._kill_now()
            if next_sample is not None and now >= next_sample:
                self._sample()
                next_sample = time.monotonic() + interval

    def _reap(self) -> None:
        # Still unreaped: the zombie leader pins the group id, so this SIGTERM reaches only our
        # group. It is a no-op when the leader was alone (the common case).
        if self.use_groups and not self.killed and self.kill_at is None:
            killpg_quietly(self.pid, signal.SIGTERM)
            group_signalled_at: Optional[float] = time.monotonic()
        else:
            group_signalled_at = None
        try:
            _pid, self.status, self.rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self.status = None  # someone else reaped it; the status is lost
        self.reaped = True
        self._tell_reaped(0 if self.status is None else os.waitstatus_to_exitcode(self.status))
        if group_signalled_at is not None and self.kill_at is None:
            self.kill_at = group_signalled_at + self.limits.kill_grace

    def _tell_reaped(self, exit_code: int) -> None:
        if self.spawned.on_reaped is not None:
            self.spawned.on_reaped(exit_code)

    def _group_settled(self) -> bool:
        """True when nothing of the task is left alive (zombies do not count)."""
        if self.use_groups and _group_exists(self.pid) and _live_group_members(self.pid):
            return False
        return not any(is_running(proc) for proc in self.escaped)

    def _settle_group_and_drain(self) -> Generator[Wake, None, None]:
        """Members of the group still running after the leader exited are ours: they had their
        SIGTERM; SIGKILL them when the grace runs out and wait until the kernel has finished
        them. Then read the pipes to EOF, bounded, because a process that escaped the group may
        hold them open for ever."""
        grace = self.limits.kill_grace
        settled = self.settled = self._group_settled()
        poll = _GROUP_POLL_MIN
        next_check = time.monotonic() + poll
        drain_until: Optional[float] = None
        give_up_at: Optional[float] = None  # after SIGKILL; only a process stuck in the kernel lasts
        while self.open_pipes or not settled:
            now = time.monotonic()
            if settled:
                if drain_until is None:
                    drain_until = now + grace
                if now >= drain_until:
                    return
                yield drain_until
                continue
            if not self.killed and now >= (self.kill_at if self.kill_at is not None else now):
                self._kill_now()
            if self.killed and give_up_at is None:
                give_up_at = now + max(grace, 1.0)
            if give_up_at is not None and now >= give_up_at:
                settled = self.settled = True
                continue
            if now >= next_check:
                settled = self.settled = self._group_settled()
                poll = min(poll * 2, _GROUP_POLL_MAX)
                next_check = now + poll
                continue
            yield min(t for t in (next_check, self.kill_at, give_up_at) if t is not None)
        self.kill_at = None

    def _close(self) -> None:
        if not self.reaped:  # an unexpected error: never leave the task behind or unreaped
            self._send(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(self.pid, 0)
            self.reaped = True
            self._tell_reaped(-signal.SIGKILL)
        self._release()

    # - the result -
    def result(self, task: Task, worker_id: int, start_time: float) -> TaskResult:
        duration = time.monotonic() - self.started
        memory_mb = self.peak_rss / (1024 * 1024)
        cpu_percent = 0.0
        if self.rusage is not None:
            # ru_maxrss also counts the runner's own size at spawn time (the child starts as a
            # vfork of it); below that floor the kernel figure says nothing about the task, and
            # only a live sample (tasks running over sample_interval) does.
            if self.rusage.ru_maxrss > self.spawned.rss_floor_kib + _FLOOR_MARGIN_KIB:
                memory_mb = max(memory_mb, self.rusage.ru_maxrss / 1024)
            if duration > 0:
                cpu_percent = (self.rusage.ru_utime + self.rusage.ru_stime) / duration * 100
        exit_code: Optional[int] = None
        if self.outcome is TaskStatus.TIMEOUT:
            status, message = TaskStatus.TIMEOUT, f"Timeout after {format_timeout(self.limits.timeout)}s"
        elif self.outcome is TaskStatus.CANCELLED:
            status, message = TaskStatus.CANCELLED, self.cancel_reason
        elif self.status is None:
            status, message = TaskStatus.ERROR, "exit status lost: the process was reaped elsewhere"
        else:
            exit_code = os.waitstatus_to_exitcode(self.status)
            if exit_code == 0:
                status, message = TaskStatus.SUCCESS, ""
            elif exit_code > 0:
                status, message = TaskStatus.FAILED, f"Exit code {exit_code}"
            else:
                status, message = TaskStatus.FAILED, f"Killed by signal {_signal_name(-exit_code)}"
        return TaskResult(
            task=task,
            status=status,
            worker_id=worker_id,
            pid=self.pid,
            exit_code=exit_code,
            start_time=start_time,
            end_time=time.time(),
            duration=duration,
            memory_mb=memory_mb,
            cpu_percent=cpu_percent,
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            error_message=message,
        )
