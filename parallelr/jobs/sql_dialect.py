"""Where SQLite and PostgreSQL differ in the store's statements, as values the statements use.

Everything else is written once, in the SQL both understand (``INSERT ... ON CONFLICT``,
``RETURNING``, row values). SQLite serializes every writer (``BEGIN IMMEDIATE``), so its locks
are empty strings; PostgreSQL runs writers at once, and the row locks below order the ones that
read a row before they change it.
"""

from __future__ import annotations

from typing import Optional

import attrs


@attrs.frozen
class Dialect:
    """Attributes:
        name: ``sqlite`` or ``postgresql``.
        no_limit: what ``LIMIT ?`` takes for "no limit".
        claim_lock: ends the SELECT of a claim: rows another claimer holds are skipped.
        update_lock: ends a SELECT whose rows the transaction changes next.
        share_lock: ends a SELECT of rows that must not change until the transaction ends.
        concurrent_writers: writers run at once (a statement does not see what one running
            beside it writes), so a check that must see every committed row is a statement of its own.
        planner_hints: SQLite's ``INDEXED BY`` / ``NOT INDEXED`` are used.
    """

    name: str
    no_limit: Optional[int]
    claim_lock: str = ""
    update_lock: str = ""
    share_lock: str = ""
    concurrent_writers: bool = False
    planner_hints: bool = False

    def floor_int(self, expression: str) -> str:
        """``expression`` (>= 0) rounded down to an integer: SQLite's CAST truncates, PostgreSQL's rounds."""
        if self.name == "sqlite":
            return f"CAST({expression} AS INTEGER)"
        return f"CAST(FLOOR({expression}) AS INTEGER)"

    def indexed_by(self, index: str) -> str:
        return f" INDEXED BY {index}" if self.planner_hints else ""

    def not_indexed(self) -> str:
        return " NOT INDEXED" if self.planner_hints else ""


SQLITE = Dialect(name="sqlite", no_limit=-1, planner_hints=True)
POSTGRESQL = Dialect(
    name="postgresql", no_limit=None, claim_lock=" FOR UPDATE SKIP LOCKED", update_lock=" FOR UPDATE",
    share_lock=" FOR SHARE", concurrent_writers=True,
)
