"""The matcher's open-item gauges (decision 0076): counts and the date of the oldest open item
per side, on mirror accounts only; 0 when a side has none."""

from __future__ import annotations

from reconciliation.matching import MICROSECONDS_PER_DAY, MatchingRules, Reconciler
from reconciliation.metrics import SECONDS_PER_DAY, ReconcilerMetrics
from tests.unit.test_reconciliation_matching import AT, DAY, line, movement, statement


def gauge(metrics: ReconcilerMetrics, name: str, side: str) -> float | None:
    return metrics.registry.get_sample_value(f"streamledger_reconciliation_{name}", {"side": side})


def test_open_items_and_the_oldest_date_per_side() -> None:
    reconciler = Reconciler(MatchingRules(date_window_days=2))
    metrics = ReconcilerMetrics()
    metrics.observe([reconciler])
    assert gauge(metrics, "open_items", "line") == 0
    assert gauge(metrics, "oldest_open_item_date_timestamp_seconds", "line") == 0
    assert gauge(metrics, "oldest_open_item_date_timestamp_seconds", "movement") == 0
    assert reconciler.add_movement(movement("e:1#0", 500, day=DAY - 1), 0, AT) == []
    metrics.observe([reconciler])  # not a mirror account yet: not counted
    assert gauge(metrics, "open_items", "movement") == 0
    assert reconciler.add_statement(statement(DAY - 5), AT) == []
    assert reconciler.add_line(line("l1", 100, day=DAY), 1, AT) == []
    assert reconciler.add_line(line("l2", 200, day=DAY - 3), 2, AT) == []
    metrics.observe([reconciler])
    assert gauge(metrics, "open_items", "line") == 2
    assert gauge(metrics, "open_items", "movement") == 1
    oldest_line = gauge(metrics, "oldest_open_item_date_timestamp_seconds", "line")
    oldest_movement = gauge(metrics, "oldest_open_item_date_timestamp_seconds", "movement")
    assert oldest_line == (DAY - 3) * SECONDS_PER_DAY
    assert oldest_movement == (DAY - 1) * SECONDS_PER_DAY
    assert SECONDS_PER_DAY * 1_000_000 == MICROSECONDS_PER_DAY
