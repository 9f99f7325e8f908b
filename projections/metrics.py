"""Prometheus metrics of the projection, on a registry of its own (one per sink object)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
TRANSACTION_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(slots=True)
class ProjectionMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    events_applied: Counter = field(init=False)
    batch_size: Histogram = field(init=False)
    transaction_seconds: Histogram = field(init=False)
    lag_records: Gauge = field(init=False)
    lag_seconds: Gauge = field(init=False)
    position_resets: Counter = field(init=False)
    rebuild_progress: Gauge = field(init=False)

    def __post_init__(self) -> None:
        labels = ("schema",)
        self.events_applied = Counter(
            "streamledger_projection_events_applied",
            "Ledger events written to PostgreSQL",
            labels,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "streamledger_projection_batch_size_events",
            "Events per database transaction",
            labels,
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.transaction_seconds = Histogram(
            "streamledger_projection_transaction_seconds",
            "Duration of one batch's database transaction",
            labels,
            buckets=TRANSACTION_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.lag_records = Gauge(
            "streamledger_projection_lag_records",
            "Records in ledger.events after the projected position",
            ("schema", "partition"),
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "streamledger_projection_lag_seconds",
            "Now minus the effective time of the last applied event",
            labels,
            registry=self.registry,
        )
        self.position_resets = Counter(
            "streamledger_projection_position_resets",
            "Times the stored offsets moved under this process and it re-seeked",
            labels,
            registry=self.registry,
        )
        self.rebuild_progress = Gauge(
            "streamledger_projection_rebuild_progress_ratio",
            "Fraction of the log a rebuild has replayed (1 = swapped in)",
            labels,
            registry=self.registry,
        )
