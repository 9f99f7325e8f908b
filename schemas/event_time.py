"""Event time in the contract: an int count of microseconds since the Unix epoch (UTC).

``US_PER_S`` is the one definition of that unit; ``to_datetime``/``to_microseconds`` convert to
and from the ``timestamptz`` values PostgreSQL and the API show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

US_PER_S: Final = 1_000_000
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(microseconds: int) -> datetime:
    """Event time (int microseconds since the epoch) as a ``timestamptz`` column holds it."""
    return EPOCH + timedelta(microseconds=microseconds)


def to_microseconds(moment: datetime) -> int:
    """A ``timestamptz`` value as event time (int microseconds since the epoch)."""
    return (moment - EPOCH) // timedelta(microseconds=1)
