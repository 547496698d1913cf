"""The ``dask`` executor plugin: ``--executor dask`` runs each task on a worker of a Dask cluster.

This module is what the plugin manager imports at every start, so it never imports
``distributed`` (0.3 s): it declares the option, the config section and the executor's name, and
checks the choice before anything runs. The executor itself is in :mod:`.dask_executor`, what
runs on the workers in :mod:`.dask_worker`, connecting (or starting a local cluster) in
:mod:`.dask_cluster`.

* ``--dask-scheduler tcp://HOST:8786`` (or ``dask.scheduler`` in the config files): use that
  cluster. Without an address a local cluster is started on this machine, sized to ``-m``.
* Without ``distributed`` installed, ``--executor dask -r`` is a one-line usage error that says
  how to get it (``pip install "parallelr[dask]"``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple, Type

import attrs

from parallelr.config import Between, setting
from parallelr.errors import ParallelrError, UsageError
from parallelr.hookspecs import hookimpl

NAME = "dask"
OPTION = "dask_scheduler"  # the argparse dest of --dask-scheduler
EXTRA_MISSING = 'the dask executor needs distributed, which is not installed: pip install "parallelr[dask]"'
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
# [scheme://]host:port, the host a name, an IPv4 address or a bracketed IPv6 one
_ADDRESS = re.compile(r"(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")


@attrs.frozen
class DaskSection:
    """``dask:`` in the config files. ``scheduler``: the address of the cluster's scheduler
    (``tcp://HOST:8786``; empty: start a local cluster); ``connect_timeout``: seconds to reach it
    before the run gives up with an error."""

    scheduler: str = setting("")
    connect_timeout: float = setting(10.0, rule=Between(0.1, 600))


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    parser.getgroup("dask executor").add_argument(
        "--dask-scheduler", dest=OPTION, metavar="ADDRESS",
        help="with --executor dask: the cluster's scheduler, e.g. tcp://HOST:8786 "
             "(config dask.scheduler; default: a local cluster sized to -m)",
    )


@hookimpl
def parallelr_restored_options() -> Tuple[str, ...]:
    """``--resume`` of a Dask run runs on the cluster it ran on, unless told otherwise."""
    return (OPTION,)


@hookimpl
def parallelr_settings_sections() -> Dict[str, type]:
    return {NAME: DaskSection}


@hookimpl
def parallelr_configure(config: Any) -> None:
    """Refuse what cannot work before anything runs: the address is checked by its form here (a
    scheduler that does not answer is reported when the run connects), distributed by importing
    it, which a real run needs anyway."""
    request = config.request
    address: Optional[str] = request.option(OPTION)
    if request.executor != NAME:
        if address is not None:
            raise UsageError("--dask-scheduler needs --executor dask")
        return
    if address is not None:
        check_address(address, "--dask-scheduler")
    if request.execute:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError(EXTRA_MISSING) from None


def check_address(address: str, origin: str, error: Type[ParallelrError] = UsageError) -> str:
    """``address`` as Dask takes it (``tcp://`` added when no scheme is given); else ``error``
    naming ``origin`` (the flag, or the config key with a ConfigError) and the expected form."""
    match = _ADDRESS.fullmatch(address.strip())
    scheme = (match.group("scheme") or "tcp") if match else ""
    if match is None or scheme not in SCHEMES or not 0 < int(match.group("port")) < 65536:
        raise error(
            f"{origin}: {address!r} is not a Dask scheduler address; give SCHEME://HOST:PORT, "
            f"e.g. tcp://10.0.0.5:8786 (schemes: {', '.join(SCHEMES)})"
        )
    return f"{scheme}://{match.group('host')}:{int(match.group('port'))}"


def _build(context: Any) -> Any:
    from parallelr.plugins.executors.dask_executor import DaskExecutor

    return DaskExecutor(context)


@hookimpl
def parallelr_executors() -> Dict[str, Any]:
    return {NAME: _build}
