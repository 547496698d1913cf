"""Text as the store's TEXT columns take it, and back.

A path or argument with undecodable bytes (a lone surrogate from ``surrogateescape``) cannot be
UTF-8 encoded, so it is stored as its raw bytes instead (SQLite keeps them; PostgreSQL's
connection turns them into U+FFFD, see :mod:`.postgres`); reading turns such bytes back into the
same str.
"""

from __future__ import annotations

from typing import Optional, Union


def to_sql_text(value: Optional[str]) -> Union[str, bytes, None]:
    """A str for a TEXT column, or its bytes when it cannot be UTF-8 encoded."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def from_sql_text(value: Union[str, bytes, None]) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
