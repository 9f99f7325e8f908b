"""The dispatcher's Prometheus metrics (``streamledger_notify_*``, ``docs/metrics.md``).

Labels have bounded values only (an outcome, an attempt result): never a tenant, an endpoint or
a URL. Per-endpoint figures are aggregated: the total in-memory backlog and the largest one.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from streamledger import __version__

PREFIX = "streamledger_notify_"
DELIVERY_OUTCOMES = ("delivered", "dead_lettered", "spilled")
ATTEMPT_RESULTS = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection")
# 5 ms .. 5 min: a local receiver answers in milliseconds; minutes mean retries.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# 1 .. 5,000 rows: a batch is what completed while the previous one was written.
RECORD_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000)


class NotifyMetrics:
    """All metrics of one dispatcher, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        Info("streamledger_build", "StreamLedger version", registry=r).info(
            {"version": __version__, "service": "notify"}
        )
        self.deliveries = Counter(
            PREFIX + "deliveries",
            "Deliveries finished, by outcome: delivered (a 2xx), dead_lettered (the endpoint"
            " was or became disabled), spilled (stored in PostgreSQL: its queue was full)",
            ["outcome"],
            registry=r,
        )
        self.attempts = Counter(
            PREFIX + "attempts",
            "HTTP attempts by result (status class, timeout, connection failure)",
            ["result"],
            registry=r,
        )
        self.latency = Histogram(
            PREFIX + "delivery_latency_seconds",
            "From the event's commit to ledger.events (its record timestamp) to the 2xx",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.backlog = Gauge(
            PREFIX + "backlog_deliveries",
            "Deliveries in memory not yet answered 2xx, over all endpoints",
            registry=r,
        )
        self.backlog_largest = Gauge(
            PREFIX + "backlog_largest_deliveries",
            "The in-memory backlog of the endpoint with the most",
            registry=r,
        )
        self.endpoints = Gauge(PREFIX + "endpoints", "Endpoints served", registry=r)
        self.endpoints_disabled = Gauge(
            PREFIX + "endpoints_disabled",
            "Endpoints disabled after too many failures (their deliveries are dead letters)",
            registry=r,
        )
        self.record_batches = Counter(
            PREFIX + "record_batches",
            "Transactions that wrote delivered rows (one per batch, decision 0065)",
            registry=r,
        )
        self.record_batch_rows = Histogram(
            PREFIX + "record_batch_rows",
            "Delivered rows written per transaction",
            buckets=RECORD_BATCH_BUCKETS,
            registry=r,
        )
        self.record_waiting = Gauge(
            PREFIX + "record_waiting_rows",
            "Delivered rows answered 2xx and not yet committed to PostgreSQL",
            registry=r,
        )
        self.heartbeat = Gauge(
            PREFIX + "loop_heartbeat_timestamp_seconds",
            "Unix time of the consumer loop's last iteration (the supervisor's stall check)",
            registry=r,
        )
        self.ready = False
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)
        for result in ATTEMPT_RESULTS:
            self.attempts.labels(result)

    def loop_heartbeat(self) -> None:
        self.heartbeat.set(time.time())
