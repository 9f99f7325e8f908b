"""``NotifySettings``: the dispatcher's limits, each declared once on its field (decision 0035).

``streamledger.settings.Settings`` holds the addresses (Kafka, PostgreSQL, topic prefix, metrics
port); this adds what only ``streamledger notify`` needs. Every queue and wait is finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from streamledger.setting_fields import build_declared, check_declared, limit, text_setting
from streamledger.settings import Settings

CONSUMER_GROUP_LENGTH_MAX = 200


def parse_consumer_group(text: str) -> str:
    if not 1 <= len(text) <= CONSUMER_GROUP_LENGTH_MAX:
        raise ValueError(f"must be 1..{CONSUMER_GROUP_LENGTH_MAX} characters")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifySettings:
    """Limits of ``streamledger notify``; units are in the names."""

    consumer_group: str = field(
        default="streamledger-notify",
        metadata=text_setting(
            parse_consumer_group, "the consumer group (default: the topic prefix + this)"
        ),
    )
    batch_records_max: int = field(
        default=1_000, metadata=limit(1, 100_000, "records", "events taken from one poll")
    )
    poll_timeout_ms: int = field(
        default=100, metadata=limit(1, 10_000, "ms", "one poll of ledger.events when idle")
    )
    queue_deliveries_max: int = field(
        default=1_000,
        metadata=limit(
            1, 100_000, "deliveries", "in memory per endpoint; beyond, spilled to PostgreSQL"
        ),
    )
    endpoints_max: int = field(
        default=10_000, metadata=limit(1, 1_000_000, "endpoints", "endpoints served at once")
    )
    endpoints_refresh_ms: int = field(
        default=1_000,
        metadata=limit(50, 600_000, "ms", "how often the endpoint list is read again"),
    )
    delivery_timeout_ms: int = field(
        default=5_000,
        metadata=limit(100, 120_000, "ms", "one POST to a receiver, then it counts as failed"),
    )
    connect_timeout_ms: int = field(
        default=2_000, metadata=limit(100, 60_000, "ms", "connecting to a receiver")
    )
    endpoint_failures_max: int = field(
        default=8,
        metadata=limit(
            1, 1_000, "attempts", "consecutive failed attempts, then the endpoint is disabled"
        ),
    )
    backoff_base_ms: int = field(
        default=500, metadata=limit(1, 60_000, "ms", "the wait after a first failed attempt")
    )
    backoff_max_ms: int = field(
        default=60_000,
        metadata=limit(1, 3_600_000, "ms", "the longest wait between two attempts"),
    )
    commit_interval_ms: int = field(
        default=1_000,
        metadata=limit(10, 60_000, "ms", "how often delivered positions are committed"),
    )
    stored_page_max: int = field(
        default=100,
        metadata=limit(1, 10_000, "deliveries", "spilled deliveries read back at a time"),
    )
    record_batch_rows_max: int = field(
        default=1_000,
        metadata=limit(
            1, 100_000, "rows", "delivered rows waiting for their batch's transaction at most"
        ),
    )
    record_linger_ms: int = field(
        default=20,
        metadata=limit(
            0, 1_000, "ms", "a batch of delivered rows gathers this long after its first row"
        ),
    )
    pool_size_max: int = field(
        default=8, metadata=limit(1, 64, "connections", "connections to PostgreSQL")
    )
    session_timeout_ms: int = field(
        default=10_000,
        metadata=limit(6_000, 300_000, "ms", "a killed dispatcher's partitions move after this"),
    )

    def __post_init__(self) -> None:
        check_declared(self)

    @property
    def record_linger_s(self) -> float:
        return self.record_linger_ms / 1000

    @property
    def delivery_timeout_s(self) -> float:
        return self.delivery_timeout_ms / 1000

    @property
    def connect_timeout_s(self) -> float:
        return self.connect_timeout_ms / 1000


def build_notify_settings(
    settings: Settings, given: Mapping[str, object | None] | None = None
) -> NotifySettings:
    """The dispatcher's settings from flags (``None`` = the default); the consumer group
    carries the topic prefix so two stacks on one broker never share a group."""
    values = dict(given or {})
    if values.get("consumer_group") is None:
        values["consumer_group"] = f"{settings.topic_prefix}{NotifySettings().consumer_group}"
    return build_declared(NotifySettings, values)
