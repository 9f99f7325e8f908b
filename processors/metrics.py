"""The processor's Prometheus metrics and its small HTTP endpoint.

Names follow Prometheus conventions: the ``streamledger_processor_`` prefix, base units
(seconds, records), ``_total`` on counters. Each ``ProcessorMetrics`` owns its own registry so
two processors in one Python process (benchmarks, tests) never collide.

The endpoint serves ``/metrics``, ``/healthz`` (the loop is alive) and ``/readyz`` (partitions
are assigned and restored).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "streamledger_processor_"
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000)
COMMIT_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HTTP_THREAD_JOIN_S = 5.0


class ProcessorMetrics:
    """All metrics of one processor instance, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands_consumed = Counter(
            PREFIX + "commands_consumed", "Command records consumed", registry=r
        )
        self.events_produced = Counter(
            PREFIX + "events_produced", "Events produced, by type", ["type"], registry=r
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
        self.dlq_records = Counter(
            PREFIX + "dlq_records", "Records sent to the DLQ, by error kind", ["kind"], registry=r
        )
        self.tombstones = Counter(
            PREFIX + "outcome_tombstones", "Expired idempotency keys tombstoned", registry=r
        )
        self.batch_size = Histogram(
            PREFIX + "batch_size_records",
            "Command records per transaction",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            PREFIX + "transaction_commit_latency_seconds",
            "From send_offsets_to_transaction to the end of commit_transaction",
            buckets=COMMIT_LATENCY_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(PREFIX + "transactions_committed", "Commits", registry=r)
        self.aborts = Counter(
            PREFIX + "transaction_aborts", "Aborted transactions, by cause", ["cause"], registry=r
        )
        self.producer_rebuilds = Counter(
            PREFIX + "producer_rebuilds", "Fatal producer errors (fenced) rebuilt", registry=r
        )
        self.restore_duration = Histogram(
            PREFIX + "restore_duration_seconds",
            "Time to rebuild one partition's state on assignment",
            buckets=RESTORE_BUCKETS,
            registry=r,
        )
        self.restore_records = Counter(
            PREFIX + "restore_records_read", "Records read while restoring state", registry=r
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
        self.ready = False  # assigned and restored; read by /readyz

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on 127.0.0.1:port, in a daemon thread."""

    def __init__(self, metrics: ProcessorMetrics, port: int, host: str = "127.0.0.1") -> None:
        handler = _handler_for(metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=HTTP_THREAD_JOIN_S)


def _handler_for(metrics: ProcessorMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ready = metrics.ready
                body = b"ready\n" if ready else b"not ready\n"
                self._reply(200 if ready else 503, body, "text/plain")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return Handler
