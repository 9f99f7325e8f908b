"""The processor's Prometheus metrics, on a registry of its own, and its HTTP endpoint.

Names follow ``docs/metrics.md``: the ``streamledger_processor_`` prefix, base units (seconds,
records), ``_total`` on counters (prometheus_client appends it), histograms with buckets fit for
millisecond latencies. Every label has a bounded set of values (event type, reject reason, DLQ
kind, abort cause, outcome status, partition number); no account label, ever, and one tenant
label, on the rate-limited counter only, bounded by ``rate_limited_tenant_labels_max`` (the
first N tenants seen get a series, later ones count under ``_other``, decision 0083).
Each ``ProcessorMetrics`` owns its registry so two processors in one Python process (benchmarks,
tests) never collide. Known label values are created up front so every series exists at 0 from
the first scrape (``increase()`` then sees the very first DLQ record or abort).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from processors import dead_letters
from schemas import codec
from schemas.model import EVENT_TYPES, NOTIFICATION_TYPES, OutcomeStatus, RejectReason
from streamledger import __version__
from streamledger.metrics_endpoint import LISTEN_HOST, MetricsEndpoint

PREFIX = "streamledger_processor_"
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000)
# 1 ms .. 10 s: a local commit is a few ms; seconds mean a struggling broker.
COMMIT_DURATION_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
# 1 (a transfer-shaped transaction) .. 64 (schemas.limits.POSTINGS_MAX): fee splits are 2-4,
# payouts tens; the top bucket is the limit, so nothing lands in +Inf.
LEDGER_TRANSACTION_POSTINGS_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 64)
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ABORT_CAUSES = ("abortable_error", "fenced")
# The tenant label of rate-limited commands beyond the bounded set: no tenant id starts with
# "_" (schemas.limits.TENANT_ID_PATTERN), so it never collides with a tenant's own series.
RATE_LIMITED_OTHER_TENANTS = "_other"
DLQ_KINDS = (
    dead_letters.KIND_MISSING_VALUE,
    codec.DecodeError.kind,
    codec.WrongMarkerError.kind,
    codec.TruncatedError.kind,
    codec.UnknownFingerprintError.kind,
    codec.UnexpectedRecordError.kind,
    codec.BodyInvalidError.kind,
)


class ProcessorMetrics:
    """All metrics of one processor instance, in their own registry.

    ``ready`` (assigned and restored) is both the ``/readyz`` answer and the ``_ready`` gauge.
    """

    def __init__(self, *, rate_limited_tenant_labels_max: int = 50) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rate_limited_tenant_labels_max = rate_limited_tenant_labels_max
        self._rate_limited_tenants: set[str] = set()
        ProcessCollector(registry=r)  # process_start_time_seconds, CPU, memory, open fds
        Info("streamledger_build", "StreamLedger version", registry=r).info(
            {"version": __version__, "service": "processor"}
        )
        # 0 while the codec runs on fastavro's fast internals (decision 0034)
        Gauge(
            "streamledger_codec_fastavro_fallbacks",
            "fastavro internals the codec fell back from to the public (slower) API",
            registry=r,
        ).set_function(lambda: float(codec.fastavro_fallback_total()))
        self._declare_decision_metrics(r)
        self._declare_transaction_metrics(r)
        self._declare_state_metrics(r)
        self._is_ready = False
        self._ready.set(0)
        self._create_known_series()

    def _declare_decision_metrics(self, r: CollectorRegistry) -> None:
        """What the loop read and decided, and what it wrote."""
        self.commands_consumed = Counter(
            PREFIX + "commands_consumed", "Command records consumed", registry=r
        )
        # Tenant volume without a tenant label: a tenant's commands all land on one partition
        # (murmur2 of the tenant id), so a busy tenant is a busy partition; ``partition`` is
        # bounded by the topic's partition count (docs/metrics.md, decision 0069).
        self.partition_commands_consumed = Counter(
            PREFIX + "partition_commands_consumed",
            "Command records consumed, by ledger.commands partition (each tenant lives on one)",
            ["partition"],
            registry=r,
        )
        self.events_produced = Counter(
            PREFIX + "events_produced", "Events produced, by type", ["type"], registry=r
        )
        self.notifications_produced = Counter(
            PREFIX + "notifications_produced",
            "Balance monitor notifications produced, by kind",
            ["kind"],
            registry=r,
        )
        self.outcomes_produced = Counter(
            PREFIX + "outcomes_produced", "Outcomes produced, by status", ["status"], registry=r
        )
        self.rejections = Counter(
            PREFIX + "rejections", "Rejected commands, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            PREFIX + "duplicates", "Commands answered with their original outcome", registry=r
        )
        self.key_reuse_conflicts = Counter(
            PREFIX + "key_reuse_conflicts",
            "Commands rejected because their idempotency key was used with another payload",
            registry=r,
        )
        self.rate_limited = Counter(
            PREFIX + "rate_limited_commands",
            "Commands rejected rate_limited (a reply only), per tenant (bounded; then 'other')",
            ["tenant"],
            registry=r,
        )
        self.dlq_records = Counter(
            PREFIX + "dlq_records", "Records sent to the DLQ, by error kind", ["kind"], registry=r
        )
        self.tombstones = Counter(
            PREFIX + "outcome_tombstones", "Expired idempotency keys tombstoned", registry=r
        )
        self.ticks = Counter(
            PREFIX + "tick_records",
            "Tick records appended to ledger.commands so pending transfers expire on time",
            registry=r,
        )
        # "ledger transaction": a PostTransaction (issue 16), not the Kafka transaction below
        self.ledger_transaction_postings = Histogram(
            PREFIX + "ledger_transaction_postings",
            "Postings per accepted multi-leg transaction (PostTransaction command)",
            buckets=LEDGER_TRANSACTION_POSTINGS_BUCKETS,
            registry=r,
        )

    def _declare_transaction_metrics(self, r: CollectorRegistry) -> None:
        """Transactions: their size, commit latency, aborts and fencing."""
        self.batch_size = Histogram(
            PREFIX + "batch_size_records",
            "Command records per transaction",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            PREFIX + "transaction_commit_duration_seconds",
            "From send_offsets_to_transaction to the end of commit_transaction",
            buckets=COMMIT_DURATION_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(
            PREFIX + "transaction_commits", "Committed transactions (one per batch)", registry=r
        )
        self.aborts = Counter(
            PREFIX + "transaction_aborts", "Aborted transactions, by cause", ["cause"], registry=r
        )
        self.producer_rebuilds = Counter(
            PREFIX + "producer_rebuilds", "Fatal producer errors (fenced) rebuilt", registry=r
        )

    def _declare_state_metrics(self, r: CollectorRegistry) -> None:
        """The partitions' state: restores, assignment, lag, liveness and readiness."""
        self.restore_duration = Histogram(
            PREFIX + "restore_duration_seconds",
            "Time to rebuild one partition's state on assignment",
            buckets=RESTORE_BUCKETS,
            registry=r,
        )
        self.restore_records = Counter(
            PREFIX + "restore_records", "Records read while restoring state", registry=r
        )
        self.assigned_partitions = Gauge(
            PREFIX + "assigned_partitions", "Partitions owned and restored", registry=r
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag_records",
            "Records between the partition's end and the processor's position",
            ["partition"],
            registry=r,
        )
        self.live_idempotency_keys = Gauge(
            PREFIX + "live_idempotency_keys", "Outcomes held in state", registry=r
        )
        self._ready = Gauge(
            PREFIX + "ready", "1 when partitions are assigned and restored", registry=r
        )
        self.loop_heartbeat_timestamp = Gauge(
            PREFIX + "loop_heartbeat_timestamp_seconds",
            "Unix time the loop last started an iteration or restored a partition (liveness)",
            registry=r,
        )

    def _create_known_series(self) -> None:
        for event_type in EVENT_TYPES:
            self.events_produced.labels(event_type.__name__)
        for notification_type in NOTIFICATION_TYPES:
            self.notifications_produced.labels(notification_type.__name__)
        for reason in RejectReason:
            self.rejections.labels(reason.value)
        for status in OutcomeStatus:
            self.outcomes_produced.labels(status.value)
        for kind in DLQ_KINDS:
            self.dlq_records.labels(kind)
        for cause in ABORT_CAUSES:
            self.aborts.labels(cause)

    def count_rate_limited(self, tenant_id: str, count: int) -> None:
        """``count`` more rate-limited commands of ``tenant_id``: its own series while fewer
        than ``rate_limited_tenant_labels_max`` tenants have one, else ``other``."""
        tenants = self._rate_limited_tenants
        if tenant_id not in tenants:
            if len(tenants) >= self.rate_limited_tenant_labels_max:
                self.rate_limited.labels(RATE_LIMITED_OTHER_TENANTS).inc(count)
                return
            tenants.add(tenant_id)
        self.rate_limited.labels(tenant_id).inc(count)

    def loop_heartbeat(self) -> None:
        """The loop is alive: called at least every ``batch_interval_ms`` and per restored
        partition. ``streamledger run`` restarts a processor whose heartbeat stops moving for
        its ``stall_timeout_s`` (decision 0023)."""
        self.loop_heartbeat_timestamp.set_to_current_time()

    @property
    def ready(self) -> bool:
        """Assigned and restored: read by ``/readyz``, exported as ``_ready``."""
        return self._is_ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._is_ready = value
        self._ready.set(1 if value else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer(MetricsEndpoint):
    """The processor's ``/metrics``, ``/healthz``, ``/readyz`` on host:port (default loopback)."""

    def __init__(self, metrics: ProcessorMetrics, port: int, host: str = LISTEN_HOST) -> None:
        super().__init__(metrics.registry, lambda: metrics.ready, port, host=host)
