"""Built-in plugins, installed as ``parallelr.plugins`` (never as a top-level ``plugins``)."""
