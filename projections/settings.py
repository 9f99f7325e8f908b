"""The projection's limits: one frozen object, built once at start-up, passed down explicitly.

``streamledger.settings.Settings`` holds the addresses (Kafka, PostgreSQL, topic prefix); this
module adds what only the projection needs. Every limit is finite and checked here, so a bad
value stops the process at start-up with ``SettingError`` naming it, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamledger.errors import SettingError
from streamledger.settings import Settings

PROJECTION_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

BATCH_RECORDS_RANGE = (1, 100_000)
BATCH_INTERVAL_MS_RANGE = (1, 60_000)
POOL_SIZE_RANGE = (1, 64)
STATEMENT_TIMEOUT_MS_RANGE = (100, 3_600_000)
POLL_TIMEOUT_MS_RANGE = (1, 10_000)
REBUILD_IDLE_MS_RANGE = (100, 600_000)
SESSION_TIMEOUT_MS_RANGE = (6_000, 300_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectionSettings:
    """Limits of ``streamledger project``, ``verify`` and the read API.

    ``batch_records_max`` bounds one database transaction; ``batch_interval_ms`` bounds how long a
    partial batch waits for more records before it is written anyway.
    """

    projection_name: str = "ledger"
    consumer_group: str = "streamledger-projection"
    batch_records_max: int = 10_000
    batch_interval_ms: int = 20  # also the floor between database transactions (decision 0017)
    poll_timeout_ms: int = 100
    pool_size_max: int = 8
    statement_timeout_ms: int = 30_000
    session_timeout_ms: int = 10_000  # a killed instance's partitions move on after this
    rebuild_idle_ms_max: int = 10_000  # rebuild gives up when the log stops moving this long

    def __post_init__(self) -> None:
        check_range("batch_records_max", self.batch_records_max, BATCH_RECORDS_RANGE)
        check_range("batch_interval_ms", self.batch_interval_ms, BATCH_INTERVAL_MS_RANGE)
        check_range("poll_timeout_ms", self.poll_timeout_ms, POLL_TIMEOUT_MS_RANGE)
        check_range("pool_size_max", self.pool_size_max, POOL_SIZE_RANGE)
        check_range("statement_timeout_ms", self.statement_timeout_ms, STATEMENT_TIMEOUT_MS_RANGE)
        check_range("session_timeout_ms", self.session_timeout_ms, SESSION_TIMEOUT_MS_RANGE)
        check_range("rebuild_idle_ms_max", self.rebuild_idle_ms_max, REBUILD_IDLE_MS_RANGE)
        if not PROJECTION_NAME_PATTERN.match(self.projection_name):
            raise SettingError(
                f"projection_name {self.projection_name!r}: use a-z, 0-9 and _ (max 41)"
            )
        if not self.consumer_group or len(self.consumer_group) > 200:
            raise SettingError("consumer_group: must be 1..200 characters")


def check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    minimum, maximum = bounds
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingError(f"{name}: expected a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise SettingError(f"{name}: {value} is outside {minimum}..{maximum}")


def build_projection_settings(
    settings: Settings,
    *,
    batch_records_max: int | None = None,
    batch_interval_ms: int | None = None,
    pool_size_max: int | None = None,
    consumer_group: str | None = None,
) -> ProjectionSettings:
    """The projection settings from the shared settings and command flags (``None`` = default).

    The consumer group carries the topic prefix so two stacks on one broker never share a group.
    """
    defaults = ProjectionSettings()
    group = consumer_group or f"{settings.topic_prefix}{defaults.consumer_group}"
    return ProjectionSettings(
        consumer_group=group,
        batch_records_max=defaults.batch_records_max
        if batch_records_max is None
        else batch_records_max,
        batch_interval_ms=defaults.batch_interval_ms
        if batch_interval_ms is None
        else batch_interval_ms,
        pool_size_max=defaults.pool_size_max if pool_size_max is None else pool_size_max,
    )
