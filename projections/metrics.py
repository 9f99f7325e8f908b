"""Prometheus metrics of the projection and of the verifier, each on a registry of its own.

Names follow ``docs/metrics.md`` (``streamledger_`` prefix, base units, ``_total`` counters,
millisecond-fit buckets). The ``schema`` label is the projection generation being written (the
live schema, or one rebuild generation at a time): bounded.

Freshness is the end-to-end SLI: for every event a live projection commits, the time from the
command's submission to the PostgreSQL commit that made the event readable. "Submitted" is the
command record's Kafka timestamp (the producer stamps it when the SDK sends), which the processor
copies into every event as ``effective_at_us``; see ``docs/decisions/0012-metrics.md``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.event_time import US_PER_S
from streamledger import __version__

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
TRANSACTION_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# 5 ms .. 5 min; 1 s is a bucket boundary because it is the SLO (p99 <= 1 s).
FRESHNESS_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class BatchHistogram(Collector):
    """A label-less histogram fed a whole batch of values at once.

    ``prometheus_client.Histogram.observe`` costs ~2.5 us per call; a live projection observes
    one freshness value per event (10 000 per batch), so the batch is bucketed locally and added
    under one lock. Exposed as an ordinary Prometheus histogram (``_bucket``/``_sum``/``_count``).
    """

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry
    ) -> None:
        assert list(buckets) == sorted(set(buckets)), "buckets must rise strictly"
        self.name = name
        self.documentation = documentation
        self.bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self._counts)
        total = 0.0
        bounds = self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # le is inclusive: value == bound counts
            total += value
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=cumulative, sum_value=total
        )

    def describe(self) -> Iterator[Metric]:
        return self.collect()


@dataclass(slots=True)
class ProjectionMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    events_applied: Counter = field(init=False)
    batch_size: Histogram = field(init=False)
    transaction_seconds: Histogram = field(init=False)
    freshness_seconds: BatchHistogram = field(init=False)
    lag_records: Gauge = field(init=False)
    lag_seconds: Gauge = field(init=False)
    position_resets: Counter = field(init=False)
    rebuild_progress: Gauge = field(init=False)
    assigned_partitions: Gauge = field(init=False)
    ready_gauge: Gauge = field(init=False)
    loop_heartbeat_timestamp: Gauge = field(init=False)
    quarantined_tenants: Gauge = field(init=False)
    quarantines: Counter = field(init=False)
    held_events: Counter = field(init=False)
    excluded_events: Counter = field(init=False)
    ready: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        r = self.registry
        labels = ("schema",)
        self.add_quarantine_metrics()
        ProcessCollector(registry=r)
        Info("streamledger_build", "StreamLedger version", registry=r).info(
            {"version": __version__, "service": "projection"}
        )
        self.events_applied = Counter(
            "streamledger_projection_events_applied",
            "Ledger events written to PostgreSQL",
            labels,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamledger_projection_batch_size_events",
            "Events per database transaction",
            labels,
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "streamledger_projection_batch_duration_seconds",
            "Duration of one batch's database transaction (write rows and offsets, commit)",
            labels,
            buckets=TRANSACTION_SECONDS_BUCKETS,
            registry=r,
        )
        self.freshness_seconds = BatchHistogram(
            "streamledger_projection_freshness_seconds",
            "Per event: command record timestamp (submitted) to the live projection's commit",
            FRESHNESS_SECONDS_BUCKETS,
            r,
        )
        self.add_position_metrics()

    def add_position_metrics(self) -> None:
        """Where the projection stands: lag, seeks, rebuilds, assignment, liveness, readiness."""
        r, labels = self.registry, ("schema",)
        self.lag_records = Gauge(
            "streamledger_projection_consumer_lag_records",
            "Records in ledger.events after the projected position",
            ("schema", "partition"),
            registry=r,
        )
        self.lag_seconds = Gauge(
            "streamledger_projection_lag_seconds",
            "At the last commit: now minus the effective time of the newest applied event",
            labels,
            registry=r,
        )
        self.position_resets = Counter(
            "streamledger_projection_position_resets",
            "Times the stored offsets moved under this process and it re-seeked",
            labels,
            registry=r,
        )
        self.rebuild_progress = Gauge(
            "streamledger_projection_rebuild_progress_ratio",
            "Fraction of the log a rebuild has replayed (1 = swapped in)",
            labels,
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "streamledger_projection_assigned_partitions",
            "ledger.events partitions assigned and seeked to the offsets stored in PostgreSQL",
            registry=r,
        )
        self.loop_heartbeat_timestamp = Gauge(
            "streamledger_projection_loop_heartbeat_timestamp_seconds",
            "Unix time the projection loop last started a pass (liveness)",
            registry=r,
        )
        self.ready_gauge = Gauge(
            "streamledger_projection_ready",
            "1 when partitions are assigned and seeked to the stored offsets",
            registry=r,
        )

    def add_quarantine_metrics(self) -> None:
        """Tenants whose chain broke (decision 0019). A count, never a tenant label (docs/metrics.md
        cardinality rule): which tenants is in ``quarantined_tenants`` and the log."""
        r, labels = self.registry, ("schema",)
        self.quarantined_tenants = Gauge(
            "streamledger_projection_quarantined_tenants",
            "Tenants quarantined in this schema: their events are held back (table"
            " quarantined_tenants)",
            labels,
            registry=r,
        )
        self.quarantines = Counter(
            "streamledger_projection_quarantines",
            "Tenants this process quarantined (a record that does not continue its chain)",
            labels,
            registry=r,
        )
        self.held_events = Counter(
            "streamledger_projection_held_events",
            "Events read and not projected because their tenant is quarantined",
            labels,
            registry=r,
        )
        self.excluded_events = Counter(
            "streamledger_projection_excluded_events",
            "Events skipped by an operator's release (on a partition that is not their tenant's)",
            labels,
            registry=r,
        )

    def loop_heartbeat(self) -> None:
        """The loop is alive: called at the start of every pass (each pass is bounded by the
        batch interval when idle). ``streamledger run`` restarts a projection whose heartbeat
        stops moving for its ``stall_timeout_s`` (decision 0023)."""
        self.loop_heartbeat_timestamp.set_to_current_time()

    def set_assigned(self, partitions: int) -> None:
        """Called after every assignment change: ready = at least one partition to project."""
        self.assigned_partitions.set(partitions)
        self.ready = partitions > 0
        self.ready_gauge.set(1 if self.ready else 0)

    def observe_freshness(self, effective_at_us: Iterable[int], committed_at_s: float) -> None:
        """One observation per event the live projection just committed (its effective time)."""
        committed_at_us = committed_at_s * US_PER_S
        self.freshness_seconds.observe_many(
            max(committed_at_us - effective, 0.0) / US_PER_S for effective in effective_at_us
        )


VERIFY_DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
VERIFY_RESULTS = ("ok", "differences", "error")


@dataclass(slots=True)
class VerifyMetrics:
    """The result of ``streamledger verify`` runs, served by ``verify --every-s``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    runs: Counter = field(init=False)
    duration_seconds: Histogram = field(init=False)
    last_run_timestamp: Gauge = field(init=False)
    last_success_timestamp: Gauge = field(init=False)
    last_differences: Gauge = field(init=False)
    ready: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        Info("streamledger_build", "StreamLedger version", registry=r).info(
            {"version": __version__, "service": "verify"}
        )
        self.runs = Counter(
            "streamledger_verify_runs", "Verify runs, by result", ("result",), registry=r
        )
        for result in VERIFY_RESULTS:
            self.runs.labels(result)
        self.duration_seconds = Histogram(
            "streamledger_verify_duration_seconds",
            "Duration of one verify run",
            buckets=VERIFY_DURATION_BUCKETS,
            registry=r,
        )
        self.last_run_timestamp = Gauge(
            "streamledger_verify_last_run_timestamp_seconds",
            "When the last verify run finished (any result)",
            registry=r,
        )
        self.last_success_timestamp = Gauge(
            "streamledger_verify_last_success_timestamp_seconds",
            "When the last verify run that found no difference finished (0 = never)",
            registry=r,
        )
        self.last_differences = Gauge(
            "streamledger_verify_failures",
            "Differences (problems) the last finished verify run found; 0 = log and DB agree",
            registry=r,
        )

    def record(self, *, result: str, differences: int, duration_s: float, now_s: float) -> None:
        assert result in VERIFY_RESULTS, result
        self.runs.labels(result).inc()
        self.duration_seconds.observe(duration_s)
        self.last_run_timestamp.set(now_s)
        if result != "error":
            self.last_differences.set(differences)
        if result == "ok":
            self.last_success_timestamp.set(now_s)
        self.ready = True
