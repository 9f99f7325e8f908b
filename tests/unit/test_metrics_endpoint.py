"""The services' HTTP endpoint and the metrics that are more than a counter increment:
readiness, the batch-fed freshness histogram and the verifier's result gauges."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from processors.metrics import MetricsServer, ProcessorMetrics
from projections.metrics import ProjectionMetrics, VerifyMetrics

US = 1_000_000


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def processor_endpoint() -> Iterator[tuple[ProcessorMetrics, int]]:
    metrics = ProcessorMetrics()
    server = MetricsServer(metrics, 0)
    server.start()
    yield metrics, server.port
    server.stop()


def test_healthz_is_live_and_readyz_follows_readiness(
    processor_endpoint: tuple[ProcessorMetrics, int],
) -> None:
    metrics, port = processor_endpoint
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/readyz") == (503, "not ready\n")
    metrics.ready = True
    assert get(port, "/readyz") == (200, "ready\n")
    status, body = get(port, "/metrics")
    assert status == 200
    assert "streamledger_processor_ready 1.0" in body
    assert get(port, "/nothing")[0] == 404


def test_known_label_values_exist_at_zero_before_anything_happens() -> None:
    found = samples(ProcessorMetrics().registry)
    assert found[("streamledger_processor_dlq_records_total", (("kind", "truncated"),))] == 0
    assert found[("streamledger_processor_transaction_aborts_total", (("cause", "fenced"),))] == 0
    reason = (("reason", "insufficient_funds"),)
    assert found[("streamledger_processor_rejections_total", reason)] == 0


def test_freshness_is_one_observation_per_event_with_inclusive_bucket_bounds() -> None:
    metrics = ProjectionMetrics()
    committed_at_s = 1_700_000_010.0
    ages_s = (0.0, 0.5, 1.0, 1.2, 400.0)
    effective_at_us = [int((committed_at_s - a) * US) for a in ages_s]
    metrics.observe_freshness(effective_at_us, committed_at_s)
    found = samples(metrics.registry)
    name = "streamledger_projection_freshness_seconds"

    def bucket(le: str) -> float:
        return found[(name + "_bucket", (("le", le),))]

    assert (bucket("0.5"), bucket("1.0"), bucket("2.5"), bucket("300.0")) == (2, 3, 4, 4)
    assert bucket("+Inf") == found[(name + "_count", ())] == 5
    assert found[(name + "_sum", ())] == pytest.approx(sum(ages_s))


def test_the_projection_is_ready_while_it_holds_partitions() -> None:
    metrics = ProjectionMetrics()
    assert not metrics.ready
    metrics.set_assigned(3)
    assert metrics.ready
    assert samples(metrics.registry)[("streamledger_projection_ready", ())] == 1
    metrics.set_assigned(0)
    assert not metrics.ready


def test_verify_metrics_keep_the_last_success_through_failures() -> None:
    metrics = VerifyMetrics()
    metrics.record(result="ok", differences=0, duration_s=1.0, now_s=100.0)
    metrics.record(result="differences", differences=3, duration_s=1.0, now_s=200.0)
    metrics.record(result="error", differences=0, duration_s=1.0, now_s=300.0)
    found = samples(metrics.registry)
    assert found[("streamledger_verify_last_success_timestamp_seconds", ())] == 100.0
    assert found[("streamledger_verify_last_run_timestamp_seconds", ())] == 300.0
    assert found[("streamledger_verify_failures", ())] == 3  # an error run proves nothing
    assert found[("streamledger_verify_runs_total", (("result", "error"),))] == 1
    assert metrics.ready
