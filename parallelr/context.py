"""The ``config`` object handed to ``parallelr_configure`` and ``parallelr_collect_tasks``.

Unlike the frozen values in model.py this one is mutable on purpose, like pytest's config: during
``parallelr_configure`` a preset may still change ``app_name`` and the request. After that the
core loads ``settings`` from the YAML files and treats the whole object as read-only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import pluggy

from parallelr.options import BY_DEST
from parallelr.request import RunRequest


class OptionsView:
    """``config.options`` of a batch run: the request's options by their argparse names.

    For plugins written against an argparse namespace: reading ``config.options.max`` reads the
    request, and setting an option (during ``parallelr_configure``) replaces ``config.request``
    with a copy that has it, so the request stays the one source of truth.
    """

    def __init__(self, config: Config) -> None:
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name: str) -> Any:
        request: RunRequest = object.__getattribute__(self, "_config").request
        if name in BY_DEST or name in request.plugin_options:
            return request.option(name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        config = object.__getattribute__(self, "_config")
        config.request = config.request.with_options(**{name: value})


class Config:
    """One invocation: the request (a batch run) or a subcommand's parsed ``options``, the plugin
    manager with this invocation's plugins, the preset and app name, and the loaded settings."""

    def __init__(
        self,
        request: Optional[RunRequest],
        pluginmanager: pluggy.PluginManager,
        preset: Optional[str] = None,
        app_name: str = "parallelr",
        options: Optional[argparse.Namespace] = None,
    ) -> None:
        self.request = request if request is not None else RunRequest()
        self._command_options = options  # a subcommand's own arguments
        self.pluginmanager = pluginmanager
        self.preset = preset
        self.app_name = app_name
        self.settings: Any = None  # parallelr.config.Settings, set after parallelr_configure

    @property
    def options(self) -> Any:
        """A subcommand's parsed arguments, or the batch request's options (:class:`OptionsView`)."""
        if self._command_options is not None:
            return self._command_options
        return OptionsView(self)

    @property
    def hook(self) -> Any:
        return self.pluginmanager.hook

    @property
    def home(self) -> Path:
        """``~/<app_name>``: where this app keeps its logs, workspace, pids and user config."""
        from parallelr.paths import user_home  # the one source of "the user's home"

        return user_home() / self.app_name
