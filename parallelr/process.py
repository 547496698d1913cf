"""Run ONE task: spawn it in its own process group, wait for it event-driven, enforce the timeout,
keep a bounded tail of its output, take its resource figures from the kernel, and leave nothing
it started running.

:func:`run_task` is a plain module-level function so that every executor (a thread, a pool
process, a remote worker) runs a task the same way. It is stopped early through the
:class:`parallelr.cancel.CancelToken` it is given: no state of a run lives in this module, so one
process can run many batches and cancel one task of many.

Why the waiting looks the way it does:

* One ``selectors`` loop per task watches the two output pipes, a pidfd of the leader (readable
  when it exits, before it is reaped) and the pipe of its cancel token's watch (readable when
  the token or an ancestor is cancelled or killed). The loop's timeout is the next deadline, so
  nothing polls.
* The leader is reaped with ``os.wait4`` only after it has exited, so its rusage (peak RSS, CPU
  time) comes from the kernel for free. ``subprocess.Popen`` only spawns; it never waits.
* Signals go to the task's process group while the leader is still unreaped: its zombie keeps
  the group id from being reused, so the signal cannot reach a stranger. (A zombie leader still
  counts as a member for ``killpg(pgid, 0)``, so "are members left?" is asked after the reap,
  and then only live, non-zombie members count: orphans may stay zombies if init does not reap.)
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set

import attrs

if TYPE_CHECKING:
    import psutil

from parallelr.cancel import CancelToken, TokenWatch
from parallelr.model import (
    RUN_ID_VARIABLE,
    TASK_INDEX_VARIABLE,
    ExecutionLimits,
    Task,
    TaskResult,
    TaskStatus,
)

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

# The kernel's ru_maxrss of a spawned task also counts the memory of the process it was spawned
# from as it was at exec time (with vfork: that process's lifetime *peak*). Resetting our own
# peak to our current RSS just before each spawn keeps that floor at the runner's current size
# instead of the largest it ever was. Writing "5" to clear_refs does exactly that (Linux >= 4.0).
def _open_clear_refs() -> int:
    try:
        return os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return -1


_clear_refs_fd = _open_clear_refs()


def _reset_own_peak_rss() -> int:
    """Reset our peak RSS to our current RSS and return it in KiB: the floor under the next
    task's kernel figure. A kernel figure not clearly above it measured us, not the task."""
    if _clear_refs_fd >= 0:
        with contextlib.suppress(OSError):
            os.write(_clear_refs_fd, b"5")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# Other threads may allocate between reading the floor and the child's exec.
_FLOOR_MARGIN_KIB = 2048


def _reinit_after_fork() -> None:
    """/proc/self named the parent when the descriptor was opened: a forked child (a pool
    worker) opens its own."""
    global _clear_refs_fd
    if _clear_refs_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(_clear_refs_fd)
    _clear_refs_fd = _open_clear_refs()


os.register_at_fork(after_in_child=_reinit_after_fork)


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


def _spawn_error_message(exc: BaseException, argv0: str, cwd: str) -> str:
    if isinstance(exc, OSError):
        target = exc.filename if exc.filename is not None else argv0
        if isinstance(exc, FileNotFoundError):
            if target == cwd:
                return f"working directory not found: {cwd}"
            if os.sep in argv0 and os.path.isfile(os.path.join(cwd, argv0)):
                return f"bad interpreter: the #! line of {argv0} names a program that does not exist"
            return f"command not found: {argv0}"
        if isinstance(exc, PermissionError):
            return f"permission denied: {target}"
        if isinstance(exc, NotADirectoryError):
            return f"not a directory: {target}"
        return f"cannot start {argv0}: {exc.strerror or exc}"
    return f"cannot start {argv0}: {exc}"  # ValueError: a NUL byte in argv or env


def _killpg(pgid: int, sig: int) -> None:
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


# pidfd (Linux >= 5.3) makes the leader's exit a selectable event; without it a helper thread
# blocks in waitid(WNOWAIT), which does not reap, and reports through a pipe.
_pidfd_supported = hasattr(os, "pidfd_open")


def _exit_notifier(pid: int) -> int:
    """A file descriptor that becomes readable when ``pid`` exits (it is not reaped)."""
    global _pidfd_supported
    if _pidfd_supported:
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            if not isinstance(exc, ProcessLookupError):
                _pidfd_supported = False
    read_end, write_end = os.pipe()

    def wait_for_exit() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        finally:
            with contextlib.suppress(OSError):  # the supervisor may have given up on this task
                os.write(write_end, b"x")
            os.close(write_end)

    threading.Thread(target=wait_for_exit, name=f"exit-watch-{pid}", daemon=True).start()
    return read_end


# -- the supervision of one running task ------------------------------------------------------
_EXIT = "exit"
_CANCEL = "cancel"


class _Supervisor:
    """Watches one spawned task until it and everything it started are gone."""

    def __init__(
        self,
        popen: subprocess.Popen,
        limits: ExecutionLimits,
        started: float,
        rss_floor_kib: int = 0,
        cancel: Optional[CancelToken] = None,
    ) -> None:
        self.rss_floor_kib = rss_floor_kib
        self.popen = popen
        self.pid: int = popen.pid
        self.limits = limits
        self.use_groups = limits.use_process_groups
        self.started = started
        self.stdout = OutputTail(limits.max_output_capture)
        self.stderr = OutputTail(limits.max_output_capture)
        # poll(2) needs no kernel object per task, unlike epoll: cheaper for four descriptors.
        self.selector = selectors.PollSelector()
        self.open_pipes = 0
        for stream, tail in ((popen.stdout, self.stdout), (popen.stderr, self.stderr)):
            if stream is not None:
                self.selector.register(stream, selectors.EVENT_READ, tail)
                self.open_pipes += 1
        self.exit_fd = _exit_notifier(self.pid)
        self.selector.register(self.exit_fd, selectors.EVENT_READ, _EXIT)
        # Last, so that nothing can fail after it is open; _close() releases it.
        self.watch: Optional[TokenWatch] = None
        if cancel is not None:
            try:
                self.watch = cancel.watch()
            except BaseException:  # out of descriptors: run_task kills the child; free ours
                os.close(self.exit_fd)
                raise
            self.selector.register(self.watch.fd, selectors.EVENT_READ, _CANCEL)
        self.settled = False  # after the reap: nothing of the group is left alive
        self.outcome: Optional[TaskStatus] = None  # TIMEOUT or CANCELLED once we stop it
        self.cancel_reason = ""
        self.kill_at: Optional[float] = None  # when SIGTERM's grace runs out
        self.killed = False
        self.escaped: List[psutil.Process] = []  # descendants that left the group
        self.peak_rss = 0
        self.sampled: Optional[psutil.Process] = None
        self.status: Optional[int] = None
        self.rusage = None
        self.reaped = False

    # - events -
    def _read(self, key: selectors.SelectorKey) -> None:
        try:
            data = os.read(key.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            key.data.append(data)
        else:
            self.selector.unregister(key.fileobj)
            self.open_pipes -= 1

    def _select(self, timeout: Optional[float]) -> bool:
        """One wait; returns True when the leader's exit was reported."""
        ready = self.selector.select(None if timeout is None else max(0.0, timeout))
        exited = any(key.data is _EXIT for key, _events in ready)
        if exited:
            self.selector.unregister(self.exit_fd)  # it stays readable: seen once is enough
        for key, _events in ready:
            if isinstance(key.data, OutputTail):
                self._read(key)
            elif key.data is _CANCEL:
                self._on_cancel(exited)
        return exited

    def _on_cancel(self, exited: bool) -> None:
        """The token (or an ancestor) was cancelled or killed; the token says which."""
        watch = self.watch
        assert watch is not None
        watch.drain()  # ours alone: emptied, it wakes us again for a kill after a cancel
        token = watch.token
        if token.killed:
            self.selector.unregister(watch.fd)  # nothing more can happen to the token
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
            _killpg(self.pid, sig)
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
    def run(self) -> None:
        try:
            self._wait_for_leader()
            self._reap()
            self._settle_group_and_drain()
        finally:
            self._close()

    def _wait_for_leader(self) -> None:
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
            timeout = min(timers) - time.monotonic() if timers else None
            if self._select(timeout):
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
            _killpg(self.pid, signal.SIGTERM)
            group_signalled_at = time.monotonic()
        else:
            group_signalled_at = None
        try:
            _pid, self.status, self.rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self.status = None  # someone else reaped it; the status is lost
        self.reaped = True
        self.popen.returncode = 0 if self.status is None else os.waitstatus_to_exitcode(self.status)
        if group_signalled_at is not None and self.kill_at is None:
            self.kill_at = group_signalled_at + self.limits.kill_grace

    def _group_settled(self) -> bool:
        """True when nothing of the task is left alive (zombies do not count)."""
        if self.use_groups and _group_exists(self.pid) and _live_group_members(self.pid):
            return False
        return not any(is_running(proc) for proc in self.escaped)

    def _settle_group_and_drain(self) -> None:
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
                self._select(drain_until - now)
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
            wake_at = min(t for t in (next_check, self.kill_at, give_up_at) if t is not None)
            self._select(wake_at - now)
        self.kill_at = None

    def _close(self) -> None:
        if not self.reaped:  # an unexpected error: never leave the task behind or unreaped
            self._send(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(self.pid, 0)
            self.reaped = True
            self.popen.returncode = -signal.SIGKILL
        self.selector.close()
        os.close(self.exit_fd)
        if self.watch is not None:
            self.watch.close()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()

    # - the result -
    def result(self, task: Task, worker_id: int, start_time: float) -> TaskResult:
        duration = time.monotonic() - self.started
        memory_mb = self.peak_rss / (1024 * 1024)
        cpu_percent = 0.0
        if self.rusage is not None:
            # ru_maxrss also counts the runner's own size at spawn time (the child starts as a
            # vfork of it); below that floor the kernel figure says nothing about the task, and
            # only a live sample (tasks running over sample_interval) does.
            if self.rusage.ru_maxrss > self.rss_floor_kib + _FLOOR_MARGIN_KIB:
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


_base_environment: Optional[dict] = None
# Per-task costs that need not be paid per task (each saves system calls on the hot path):
_ready_dirs: Set[str] = set()  # working directories known to exist
_executables: Dict[str, str] = {}  # program name -> its path in our PATH (found ones only)
_devnull_fd = -1


def _devnull() -> int:
    """One /dev/null for every task's stdin, instead of an open and close per task."""
    global _devnull_fd
    if _devnull_fd < 0:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


def _executable(task: Task) -> Optional[str]:
    """The path of a bare program name, looked up in PATH once per run instead of once per
    task (argv[0] is unchanged). None: let the spawn search (a path, or the task sets PATH)."""
    program = task.argv[0]
    if os.sep in program or any(name == "PATH" for name, _ in task.env):
        return None
    path = _executables.get(program)
    if path is None:
        path = shutil.which(program)
        # not found (yet): the spawn reports it and the next task looks again; a relative PATH
        # entry would resolve against our directory, not the task's: leave that to the spawn
        if path is None or not os.path.isabs(path):
            return None
        _executables[program] = path
    return path


def _environment(task: Task, limits: ExecutionLimits) -> Optional[dict]:
    """The child's environment: ours, the task's variables and the run markers. None (inherit,
    nothing to copy) when there is nothing to add."""
    global _base_environment
    if not task.env and limits.run_id is None:
        return None
    if _base_environment is None:  # os.environ decodes on every read: copy it once
        _base_environment = dict(os.environ)
    env = dict(_base_environment)
    env.update(task.env)
    if limits.run_id is not None:
        env[RUN_ID_VARIABLE] = limits.run_id
        env[TASK_INDEX_VARIABLE] = str(task.index)
    return env


def _task_file_refusal(path: str, max_file_size: int) -> Optional[str]:
    """Why the task file must not run (too large, unreadable), or None when it may."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return f"cannot read task file {path}: {exc.strerror}"
    if size > max_file_size:
        return (
            f"task file is too large: {path} is {size} bytes, the limit (advanced.max_file_size) is "
            f"{max_file_size} bytes"
        )
    return None


# -- the entry point --------------------------------------------------------------------------
def run_task(
    task: Task, worker_id: int, limits: ExecutionLimits, cancel: Optional[CancelToken] = None
) -> TaskResult:
    """Run ``task`` in worker slot ``worker_id`` under ``limits`` and say what happened.

    Args:
        task: what to run.
        worker_id: the worker slot (1..workers); it names the isolated working directory.
        limits: timeout, workspace, output cap, process-group and kill-grace settings.
        cancel: stops the task when it or an ancestor is cancelled (SIGTERM to the task's
            process group, SIGKILL after ``limits.kill_grace``) or killed (SIGKILL at once);
            the result is then CANCELLED with the token's reason. Already cancelled: the
            result is CANCELLED and no process is started. None: only the timeout stops it.

    Returns:
        The TaskResult. Never raises for anything the task does: a command that cannot start
        is an ERROR result.
    """
    if cancel is not None and cancel.cancelled:
        return TaskResult.cancelled(task, cancel.reason or "cancelled", worker_id)
    if task.timeout is not None:
        limits = attrs.evolve(limits, timeout=task.timeout)
    cwd = task.cwd or limits.workdir(worker_id)
    start_time = time.time()
    started = time.monotonic()
    if task.task_file is not None and limits.max_file_size is not None:
        refusal = _task_file_refusal(task.task_file, limits.max_file_size)
        if refusal is not None:
            return _error(task, worker_id, start_time, refusal)
    if task.cwd is None and cwd not in _ready_dirs:  # a job's own directory must exist already
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError as exc:
            message = f"cannot create working directory {cwd}: {exc.strerror}"
            return _error(task, worker_id, start_time, message)
        _ready_dirs.add(cwd)
    rss_floor_kib = _reset_own_peak_rss()
    try:
        popen = subprocess.Popen(
            task.argv,
            executable=_executable(task),
            stdin=_devnull(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=_environment(task, limits),
            close_fds=True,
            bufsize=0,
            start_new_session=limits.use_process_groups,
        )
    except (OSError, ValueError) as exc:
        _ready_dirs.discard(cwd)  # it may be the working directory that vanished
        return _error(task, worker_id, start_time, _spawn_error_message(exc, task.argv[0], cwd))
    try:
        supervisor = _Supervisor(popen, limits, started, rss_floor_kib, cancel)
    except BaseException:  # e.g. out of file descriptors: do not leave the child behind
        if limits.use_process_groups:
            _killpg(popen.pid, signal.SIGKILL)
        popen.kill()
        with contextlib.suppress(ChildProcessError):
            os.wait4(popen.pid, 0)
        popen.returncode = -signal.SIGKILL
        for stream in (popen.stdout, popen.stderr):
            if stream is not None:
                stream.close()
        raise
    supervisor.run()
    return supervisor.result(task, worker_id, start_time)


def run_task_guarded(
    task: Task, worker_id: int, limits: ExecutionLimits, cancel: Optional[CancelToken] = None
) -> TaskResult:
    """:func:`run_task`, with a bug in parallelr itself turned into an ERROR result: executors
    call this so that the scheduler gets a TaskResult for every task, never an exception."""
    try:
        return run_task(task, worker_id, limits, cancel)
    except Exception as exc:
        return internal_error(task, worker_id, exc)


def internal_error(task: Task, worker_id: int, error: BaseException) -> TaskResult:
    """The ERROR result for a task that parallelr itself failed to run (a bug, a broken pool)."""
    message = " ".join(str(error).split()) or type(error).__name__
    return _error(task, worker_id, None, f"internal error: {type(error).__name__}: {message}")


def _error(task: Task, worker_id: int, start_time: Optional[float], message: str) -> TaskResult:
    return TaskResult(
        task=task,
        status=TaskStatus.ERROR,
        worker_id=worker_id,
        start_time=start_time,
        end_time=time.time() if start_time is not None else None,
        error_message=message,
    )
