"""The ``config`` object handed to ``parallelr_configure`` and ``parallelr_collect_tasks``.

Unlike the frozen values in model.py this one is mutable on purpose, like pytest's config: during
``parallelr_configure`` a preset may still change ``app_name`` and ``options``. After that the
core loads ``settings`` from the YAML files and treats the whole object as read-only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import pluggy


class Config:
    def __init__(
        self,
        options: argparse.Namespace,
        pluginmanager: pluggy.PluginManager,
        preset: Optional[str] = None,
        app_name: str = "parallelr",
    ) -> None:
        self.options = options
        self.pluginmanager = pluginmanager
        self.preset = preset
        self.app_name = app_name
        self.settings: Any = None  # parallelr.config.Settings, set after parallelr_configure

    @property
    def hook(self) -> Any:
        return self.pluginmanager.hook

    @property
    def home(self) -> Path:
        """``~/<app_name>``: where this app keeps its logs, workspace, pids and user config."""
        return Path.home() / self.app_name
