"""Packaging: the core `parallelr`, built-in plugins from plugins/ as `parallelr.plugins`, and the
shipped script config from cfg/ as package data `parallelr/cfg/*.yaml`."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "parallelr" / "__init__.py").read_text(encoding="utf-8"), re.M
).group(1)

DASHBOARD = ["Flask>=2.2"]
DASK = ["distributed>=2022.2"]  # dask.distributed: the dask executor
POSTGRES = ["psycopg[binary]>=3.2"]  # psycopg 3: the PostgreSQL store
PLUGIN_PACKAGES = ["sources", "executors", "reporters", "presets", "journal", "dashboard"]

setup(
    name="parallelr",
    version=VERSION,
    description="Run many shell tasks in parallel, reliably, and report exactly what happened",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # plugins/ must never install as a top-level package named "plugins": map it under parallelr.
    packages=["parallelr", "parallelr.jobs", "parallelr.queue", "parallelr.plugins", "parallelr.cfg"]
    + [f"parallelr.plugins.{name}" for name in PLUGIN_PACKAGES],
    package_dir={
        "parallelr": "parallelr",
        "parallelr.plugins": "plugins",
        "parallelr.cfg": "cfg",
        **{f"parallelr.plugins.{name}": f"plugins/{name}" for name in PLUGIN_PACKAGES},
    },
    package_data={
        "parallelr.cfg": ["*.yaml"],
        "parallelr": ["templates/*"],  # the HTML report's template, styles and script
        "parallelr.plugins.dashboard": ["templates/*.html", "static/*"],
    },
    # tqdm: the progress line on a terminal; Jinja2: the HTML report's template
    install_requires=["attrs>=21.3", "pluggy>=1.0", "PyYAML>=5.4", "psutil>=5.8", "tqdm>=4.62",
                      "Jinja2>=3.0"],
    # setuptools and wheel: the example-plugin tests build a package offline, without isolation
    # dashboard: Flask (its Jinja2 renders the pages). test: the suite, the dashboard's included,
    # driven in a real browser by Playwright pointed at the system's Chromium (never a download).
    extras_require={
        "dashboard": DASHBOARD,
        "dask": DASK,
        "postgres": POSTGRES,
        "test": ["pytest>=7", "ruff>=0.4", "setuptools>=61", "wheel", "junitparser>=3", "pexpect>=4.8",
                 *DASHBOARD,
                 "playwright>=1.40", *DASK, *POSTGRES],
    },
    entry_points={
        "console_scripts": [
            "parallelr = parallelr.cli:main",
            "ptasker = parallelr.cli:main_ptasker",
            "queuectl = parallelr.cli:main_queuectl",
            "psr = parallelr.cli:main_psr",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Environment :: Console",
    ],
)
