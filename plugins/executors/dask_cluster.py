"""The ``dask`` executor's cluster: a client of the scheduler it is given, or of a local cluster
it starts for the run and stops at the end.

A local cluster has ``min(-m, CPUs)`` worker processes with enough threads each that together
they have at least ``-m`` (``ceil(-m / processes)``). A thread is enough per slot: each task is
a process of its own, so a worker thread only waits on its pipes. Processes rather than threads
in the runner: the Python side of tasks (reading output, accounting) spreads over the CPUs, a
worker that dies takes only its own tasks with it, and the cluster is a real one, so what runs
on it runs the same on a remote cluster. It listens on 127.0.0.1 only, without dashboards, and
its logs are quiet (errors only).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import Any, Optional

import attrs
from distributed import Client, LocalCluster

from parallelr.errors import ParallelrError
from parallelr.plugins.executors import dask_worker

log = logging.getLogger("parallelr")

LOCAL_HOST = "127.0.0.1"
PLUGIN_NAME = dask_worker.StopReleased.name


@attrs.frozen
class LocalSize:
    """How a local cluster for ``slots`` tasks at once is made up."""

    processes: int
    threads: int

    @classmethod
    def for_slots(cls, slots: int, cpus: Optional[int] = None) -> LocalSize:
        processes = max(1, min(slots, cpus or os.cpu_count() or 1))
        return cls(processes, math.ceil(slots / processes))


class Cluster:
    """A connected client and, for a local cluster, the cluster it started (``local``)."""

    def __init__(self, client: Any, local: Any = None) -> None:
        self.client = client
        self.local = local
        self.address: str = client.scheduler.address if local is None else local.scheduler_address

    @classmethod
    def connect(cls, address: Optional[str], slots: int, timeout: float) -> Cluster:
        """A client of the scheduler at ``address``, or of a new local cluster (None). Raises a
        one-line ParallelrError when the scheduler does not answer within ``timeout`` seconds."""
        if address is None:
            return cls.start_local(slots, timeout)
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            # distributed says "Timed out trying to connect to ADDRESS after N s" for a scheduler
            # that refuses or does not answer: that much the message says anyway
            detail = "" if "timed out" in str(exc).lower() else f" ({_one_line(exc)})"
            raise ParallelrError(
                f"cannot reach the Dask scheduler at {address} within {timeout:g}s{detail}: is "
                "`dask scheduler` running there, and is the address right?"
            ) from None
        cluster = cls(client)
        cluster.install_plugin()
        return cluster

    @classmethod
    def start_local(cls, slots: int, timeout: float) -> Cluster:
        size = LocalSize.for_slots(slots)
        try:
            local = LocalCluster(
                n_workers=size.processes, threads_per_worker=size.threads, processes=True,
                host=LOCAL_HOST, dashboard_address=None, silence_logs=logging.ERROR,
                # no dashboard; its HTTP server (health checks) on a free port of 127.0.0.1
                scheduler_kwargs={"dashboard_address": f"{LOCAL_HOST}:0"},
                memory_limit=0,  # tasks are processes of their own: Dask's memory policing would misjudge
                preload=[dask_worker.__name__],  # ignore the terminal's Ctrl+C: the runner decides
            )
            client = Client(local, timeout=timeout, set_as_default=False)
        except Exception as exc:  # whatever stops it, the run cannot start
            raise ParallelrError(f"cannot start a local Dask cluster: {_one_line(exc)}") from None
        cluster = cls(client, local)
        cluster.install_plugin()
        return cluster

    def install_plugin(self) -> None:
        """The worker plugin that stops attempts of a runner that vanished."""
        plugin = dask_worker.StopReleased()
        register = getattr(self.client, "register_plugin", None)  # distributed >= 2023.9.2
        if register is None:
            register = self.client.register_worker_plugin
        try:
            register(plugin, name=PLUGIN_NAME)
        except Exception as exc:  # a safety net only: the run works without it
            log.warning("the Dask workers did not take parallelr's worker plugin (%s): a task whose "
                        "runner is killed keeps running on its worker until its timeout", _one_line(exc))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a cluster already gone has nothing left to close
            self.client.close()
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.close()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
