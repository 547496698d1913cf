"""A real Dask cluster for the ``dask`` executor's tests: one scheduler and two workers, each a
process of its own started as a user would (``dask scheduler``, ``dask worker``), shared by the
whole session because starting one costs seconds.

The workers have one thread each, so ``-m 2`` puts exactly one task on each, and a nanny each
(the default), so a worker process killed by a test comes back: :meth:`DaskCluster.wait_for_workers`
waits for that. Everything listens on 127.0.0.1. Only the processes started here are stopped at
the end (and what they started), by PID, identity-checked through psutil.

Import the fixture into a test module: ``from dask_support import dask_cluster  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import psutil
import pytest

WORKERS = 2
START_TIMEOUT = 60.0
LOCAL = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL, 0))
        return probe.getsockname()[1]


class DaskCluster:
    """The running cluster: its address, and a client of it for the tests' own questions."""

    def __init__(self, address: str, client: Any, logs: Path) -> None:
        self.address = address
        self.client = client
        self.logs = logs

    def worker_pids(self) -> Dict[str, int]:
        """``{worker address: pid of its worker process}`` (the process that runs the tasks)."""
        return dict(self.client.run(os.getpid))

    def wait_for_workers(self, count: int = WORKERS) -> None:
        """Until ``count`` workers are connected (a nanny restarts a killed one in a few seconds)."""
        self.client.wait_for_workers(count, timeout=START_TIMEOUT)
        self.client.run(os.getpid)  # and each answers


def _start(argv: List[str], log: Path, env: Dict[str, str]) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _stop(procs: List[subprocess.Popen]) -> None:
    """SIGTERM (the dask commands close cleanly), SIGKILL what is left, with every descendant."""
    tree: List[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(proc.pid)
            tree.extend([parent, *parent.children(recursive=True)])
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    _gone, alive = psutil.wait_procs(tree, timeout=10)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()  # psutil checks the process is still the one we started
    psutil.wait_procs(alive, timeout=5)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class _Shared:
    """One cluster for the session even when several test modules import the fixture (each
    import makes a fixture of its own): the first starts it, the last one to end stops it."""

    cluster: Optional[DaskCluster] = None
    users = 0
    stop: Optional[Callable[[], None]] = None


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    if _Shared.cluster is None:
        _Shared.cluster, _Shared.stop = _start_cluster(tmp_path_factory)
    _Shared.users += 1
    try:
        yield _Shared.cluster
    finally:
        _Shared.users -= 1
        if _Shared.users == 0 and _Shared.stop is not None:
            stop, _Shared.stop, _Shared.cluster = _Shared.stop, None, None
            stop()


def _start_cluster(tmp_path_factory: pytest.TempPathFactory) -> Tuple[DaskCluster, Callable[[], None]]:
    distributed = pytest.importorskip("distributed")
    root = tmp_path_factory.mktemp("dask-cluster")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(root)  # the workers' (and so their tasks') own home, not a test's
    port = free_port()
    address = f"tcp://{LOCAL}:{port}"
    http = ["--dashboard-address", f"{LOCAL}:0"]  # no dashboard; its HTTP server on 127.0.0.1 only
    procs = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", LOCAL,
                     "--port", str(port), "--no-dashboard", *http], root / "scheduler.log", env)]

    def stop() -> None:
        if client is not None:
            client.close()
        _stop(procs[1:])  # the workers first: without a scheduler they would wait to reconnect
        _stop(procs[:1])

    client = None
    try:
        for number in range(1, WORKERS + 1):
            procs.append(_start(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", LOCAL,
                 "--nthreads", "1", "--no-dashboard", *http, "--name", f"worker{number}",
                 "--memory-limit", "0"],
                root / f"worker{number}.log", env))
        client = distributed.Client(address, timeout=START_TIMEOUT, set_as_default=False)
        cluster = DaskCluster(address, client, root)
        cluster.wait_for_workers()
    except BaseException:
        stop()
        raise
    return cluster, stop
