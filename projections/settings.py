"""The projection's limits: one frozen object, built once at start-up, passed down explicitly.

``streamledger.settings.Settings`` holds the addresses (Kafka, PostgreSQL, topic prefix); this
module adds what only the projection needs. Every limit is finite and checked here, so a bad
value stops the process at start-up with ``SettingError`` naming it and its flag
(``setting NAME (--flag): VALUE is outside MIN..MAX``), before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamledger.setting_fields import (
    build_declared,
    check_declared,
    declaration_of,
    limit,
    text_setting,
)
from streamledger.settings import Settings

PROJECTION_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
CONSUMER_GROUP_LENGTH_MAX = 200


def parse_projection_name(text: str) -> str:
    if not PROJECTION_NAME_PATTERN.match(text):
        raise ValueError(f"{text!r}: use a-z, 0-9 and _ (max 41)")
    return text


def parse_consumer_group(text: str) -> str:
    if not 1 <= len(text) <= CONSUMER_GROUP_LENGTH_MAX:
        raise ValueError(f"must be 1..{CONSUMER_GROUP_LENGTH_MAX} characters")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectionSettings:
    """Limits of ``streamledger project``, ``verify`` and the read API, each declared once on
    its field: the flags of ``project``, their help and the check derive from it (decision
    0035); ``__post_init__`` checks every value, so an object built directly is checked too.

    ``batch_records_max`` bounds one database transaction; ``batch_interval_ms`` bounds how long an
    idle projection waits for the first event of a batch (a batch is every event already fetched,
    never held back to fill up: decision 0109).
    """

    projection_name: str = field(
        default="ledger",
        metadata=text_setting(parse_projection_name, "the projection's name: a-z 0-9 _"),
    )
    consumer_group: str = field(
        default="streamledger-projection",
        metadata=text_setting(
            parse_consumer_group, "the consumer group (default: the topic prefix + this)"
        ),
    )
    batch_records_max: int = field(
        default=10_000,
        metadata=limit(1, 100_000, "records", "events in one database transaction"),
    )
    # One write is in flight at a time (decision 0016): the events that became visible during it
    # are the next batch, so the write's own duration paces the database transactions
    # (decisions 0017, 0109).
    batch_interval_ms: int = field(
        default=20,
        metadata=limit(
            1, 60_000, "ms", "the longest an idle projection waits for the first event of a batch"
        ),
    )
    poll_timeout_ms: int = field(
        default=100, metadata=limit(1, 10_000, "ms", "one poll of ledger.events")
    )
    pool_size_max: int = field(
        default=8, metadata=limit(1, 64, "connections", "connections to PostgreSQL")
    )
    statement_timeout_ms: int = field(
        default=30_000,
        metadata=limit(100, 3_600_000, "ms", "one database statement, then it is cancelled"),
    )
    session_timeout_ms: int = field(
        default=10_000,
        metadata=limit(6_000, 300_000, "ms", "a killed instance's partitions move on after this"),
    )
    # Decision 0127: a batch of at most this many journal, chain, created-transfer and balance rows
    # goes to PostgreSQL in one COPY (5 round trips a transaction instead of 11) at ~0.5-1 ms more
    # of the server's CPU per transaction; worth it where a round trip costs more than that (a
    # database across a network), not on one machine, hence off by default.
    staged_rows_max: int = field(
        default=0,
        metadata=limit(
            0,
            100_000,
            "rows",
            "a batch of at most this many rows goes in one COPY (0: one COPY per table)",
        ),
    )
    rebuild_idle_ms_max: int = field(
        default=10_000,
        metadata=limit(
            100, 600_000, "ms", "a rebuild gives up when the log stops moving this long"
        ),
    )

    def __post_init__(self) -> None:
        check_declared(self)


def build_projection_settings(
    settings: Settings,
    *,
    batch_records_max: int | None = None,
    batch_interval_ms: int | None = None,
    pool_size_max: int | None = None,
    consumer_group: str | None = None,
    limits: Mapping[str, object | None] | None = None,
) -> ProjectionSettings:
    """The projection settings from the shared settings and command flags (``None`` = default;
    ``limits`` by setting name, e.g. from ``project``'s flags).

    The consumer group carries the topic prefix so two stacks on one broker never share a group.
    """
    default_group = declaration_of(ProjectionSettings, "consumer_group").default
    given: dict[str, object | None] = {
        "batch_records_max": batch_records_max,
        "batch_interval_ms": batch_interval_ms,
        "pool_size_max": pool_size_max,
        **(limits or {}),
    }
    return build_declared(
        ProjectionSettings,
        given,
        consumer_group=consumer_group or f"{settings.topic_prefix}{default_group}",
    )
