"""The store's typed errors: each carries the data a caller needs to react, not only a message."""

from __future__ import annotations

from parallelr.errors import ParallelrError


class StoreError(ParallelrError):
    """Base class of every error a :class:`~parallelr.jobs.store.JobStore` raises."""


class StoreUnavailable(StoreError):
    """The store cannot be opened, read or written (corrupt, locked, missing, no permission).

    ``location`` names the store (a file path for SQLite), ``reason`` says what is wrong in a few
    words (``database is locked``), so a caller can phrase its own message around them.
    ``transient`` says the same operation may succeed later unchanged (a lock held by another
    process, a full disk, an I/O error), so a writer keeps what it could not write and tries again;
    a corrupt file, a constraint or a bug are not transient: trying again changes nothing.
    """

    def __init__(self, location: str, reason: str, transient: bool = False) -> None:
        super().__init__(f"cannot use the job store {location}: {reason}")
        self.location = location
        self.reason = reason
        self.transient = transient


class NewerSchemaError(StoreError):
    """The store was written by a newer parallelr; reading it could misread it."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(f"schema version {version} is newer than this parallelr understands ({supported})")
        self.version = version
        self.supported = supported


class IllegalTransition(StoreError):
    """A job was asked to move between two states that :mod:`parallelr.jobs.states` does not link."""

    def __init__(self, job: str, from_state: str, to_state: str) -> None:
        super().__init__(f"{job} cannot move from {from_state} to {to_state}")
        self.job = job
        self.from_state = from_state
        self.to_state = to_state


class LeaseLost(StoreError):
    """The lease of ``what`` is no longer held by ``owner``: it expired and another holder took it
    (a resume of a run whose runner stopped renewing). The old holder must stop writing."""

    def __init__(self, what: str, owner: str) -> None:
        super().__init__(f"the lease of {what} is no longer held by {owner}")
        self.what = what
        self.owner = owner


class DuplicateJob(StoreError):
    """A queue job with this ID exists already (IDs are unique across every queue)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a job with ID {key!r} exists already: give another \"id\" or leave it out")
        self.key = key


class UnknownDependency(StoreError):
    """``depends_on`` of job ``key`` names a job that is neither stored nor enqueued with it."""

    def __init__(self, key: str, dependency: str) -> None:
        super().__init__(f"job {key!r} depends on {dependency!r}, which is not a known job")
        self.key = key
        self.dependency = dependency
