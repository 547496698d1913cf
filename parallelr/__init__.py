"""parallelr: run many shell tasks in parallel, reliably, and report exactly what happened."""

import os as _os

__version__ = "2.0.0"

# The built-in plugins live in the top-level plugins/ folder and install as parallelr.plugins.
# Run straight from a source checkout (python -m parallelr in the repo root), that mapping is
# not installed; let the package also look in the checkout root so parallelr.plugins resolves.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "plugins")) and all(
    _os.path.isfile(_os.path.join(_root, *parts)) for parts in (("plugins", "__init__.py"), ("setup.py",))
):
    __path__.append(_root)  # type: ignore[name-defined]

from typing import Any  # noqa: E402

from parallelr.hookspecs import hookimpl  # noqa: E402  (the decorator plugins use)

# The programmatic API, imported on first use: ``import parallelr`` (a plugin's hookimpl, the
# CLI's --help) stays as fast as it was.
_API = {"run_batch": "parallelr.api", "RunRequest": "parallelr.request", "RunControl": "parallelr.scheduler",
        "RunSummary": "parallelr.model"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'parallelr' has no attribute {name!r}")


__all__ = ["RunControl", "RunRequest", "RunSummary", "__version__", "hookimpl", "run_batch"]
