"""What a preset is: a named bundle of defaults with its own config files and home folder."""

from __future__ import annotations

from typing import Tuple

import attrs


@attrs.frozen
class Preset:
    """Returned by ``parallelr_presets()``.

    ``app_name`` names the preset's config files (``cfg/<app_name>.yaml``,
    ``~/<app_name>/cfg/<app_name>.yaml``, each falling back to parallelr's) and its home folder
    ``~/<app_name>/`` (logs, workspace, pids). ``claims`` are short flags the preset redefines
    (ptasker's ``-p`` means ``--project``, so plugins are loaded with ``--plugin`` there).
    """

    name: str
    app_name: str
    description: str
    claims: Tuple[str, ...] = attrs.field(default=(), converter=tuple)
