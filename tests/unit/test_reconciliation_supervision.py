"""`streamledger run --reconcilers N` plans the reconciliation matchers (issue 20): after the
notifiers, each with its own instance id and metrics port, needing Kafka, heartbeat-checked."""

from __future__ import annotations

from pathlib import Path

from pipeline.local_prometheus import scrape_targets
from pipeline.supervisor import (
    RECONCILE_PROJECTION_ROLE,
    RECONCILE_ROLE,
    ROLE_DEPENDENCIES,
    ROLE_HEARTBEATS,
    RunSettings,
    plan_children,
)
from reconciliation.metrics import (
    HEARTBEAT_SERIES,
    PROJECTION_HEARTBEAT_SERIES,
    ReconcilerMetrics,
    ReconciliationProjectionMetrics,
)
from streamledger.settings import Settings


def test_reconcilers_take_the_ports_after_the_notifiers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, metrics_port=9500)
    specs = plan_children(
        settings, RunSettings(processors=1, projections=1, notifiers=1, reconcilers=2)
    )
    planned = [(spec.name, spec.role, spec.metrics_port) for spec in specs]
    assert planned[-4:] == [
        ("notify-0", "notify", 9503),  # 9502 is the supervisor's own
        ("reconcile-0", RECONCILE_ROLE, 9504),
        ("reconcile-1", RECONCILE_ROLE, 9505),
        ("reconcile-projection", RECONCILE_PROJECTION_ROLE, 9506),  # one, decision 0074
    ]
    assert "--instance-id=r1" in specs[-2].argv and "--metrics-port=9505" in specs[-2].argv
    assert specs[-1].argv[-3:] == ("reconcile", "project", "--metrics-port=9506")
    assert ROLE_DEPENDENCIES[RECONCILE_ROLE] == ("kafka",)
    assert ROLE_DEPENDENCIES[RECONCILE_PROJECTION_ROLE] == ("kafka", "postgresql")
    assert ROLE_HEARTBEATS[RECONCILE_ROLE] == HEARTBEAT_SERIES
    assert ROLE_HEARTBEATS[RECONCILE_PROJECTION_ROLE] == PROJECTION_HEARTBEAT_SERIES
    run = RunSettings(processors=1, projections=1, notifiers=1, reconcilers=2)
    scraped = scrape_targets(settings, run).by_job()["streamledger-reconcile"]
    assert scraped == (9504, 9505, 9506)  # the local Prometheus scrapes what was planned
    without = plan_children(settings, RunSettings(processors=1, projections=1))
    assert scrape_targets(settings, RunSettings(processors=1)).reconcilers == ()
    assert RECONCILE_PROJECTION_ROLE not in {spec.role for spec in without}


def test_the_projection_exports_its_heartbeat_and_rows() -> None:
    metrics = ReconciliationProjectionMetrics()
    metrics.heartbeat()
    metrics.committed({"statement_lines": 4, "reconciliation_results": 0})
    heartbeat = metrics.registry.get_sample_value(PROJECTION_HEARTBEAT_SERIES)
    assert heartbeat is not None and heartbeat > 0
    rows = "streamledger_reconciliation_projection_rows_total"
    assert metrics.registry.get_sample_value(rows, {"table": "statement_lines"}) == 4


def test_the_heartbeat_is_exported() -> None:
    metrics = ReconcilerMetrics()
    metrics.heartbeat()
    value = metrics.registry.get_sample_value(HEARTBEAT_SERIES)
    assert value is not None and value > 0
    assert metrics.is_ready is False
