"""The shipped script configuration (``parallelr.yaml``, ``ptasker.yaml``), installed as package data."""
