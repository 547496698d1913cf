"""parallelr-jsonl-reporter: an example third-party reporter plugin for parallelr."""

from setuptools import setup

setup(
    name="parallelr-jsonl-reporter",
    version="0.1.0",
    description="parallelr reporter: one JSON line per finished task",
    py_modules=["parallelr_jsonl"],
    python_requires=">=3.9",
    install_requires=["parallelr"],
    # The group "parallelr" is where parallelr looks for plugins; "jsonl" is the plugin's name,
    # the one that `parallelr --version` lists and `-p no:jsonl` blocks.
    entry_points={"parallelr": ["jsonl = parallelr_jsonl"]},
)
