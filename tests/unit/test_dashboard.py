"""The Grafana dashboard: every panel query parses (promtool, as a recording rule) and reads
only series the services export or the recording rules produce; the SRE questions each have a
panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.prometheus_names import (
    PROMETHEUS_SERIES,
    REPO_ROOT,
    exported_series,
    promtool,
    recorded_series,
    streamledger_names,
)

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "streamledger.json"
# Each question on the dashboard and a series its panel must read.
REQUIRED_SERIES = {
    "throughput": "streamledger:commands_consumed:rate1m",
    "freshness": "streamledger:freshness_seconds:p99_5m",
    "lag": "streamledger_processor_consumer_lag_records",
    "projection lag": "streamledger_projection_lag_seconds",
    "rejections": "streamledger:rejections:rate5m",
    "dead letters": "streamledger:dlq_records:increase5m",
    "aborts": "streamledger_processor_transaction_aborts_total",
    "restore time": "streamledger_processor_restore_duration_seconds_bucket",
    "tenant volume": "streamledger_processor_partition_commands_consumed_total",
}


def panel_queries() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        queries += [(panel["title"], target["expr"]) for target in panel["targets"]]
    return queries


def test_every_panel_query_parses_with_promtool(tmp_path: Path) -> None:
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for index, (_, expression) in enumerate(panel_queries()):
        lines += [
            f"      - record: dashboard:query_{index}",
            f"        expr: {json.dumps(expression)}",
        ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text("\n".join(lines) + "\n")
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(panel_queries())} rules found" in result.stdout


def test_every_panel_reads_series_that_exist() -> None:
    known = exported_series() | recorded_series()
    for title, expression in panel_queries():
        names = streamledger_names(expression)
        assert names or set(expression.split("{")[0:1]) & PROMETHEUS_SERIES, (
            f"{title!r}: {expression} reads no StreamLedger series"
        )
        assert names <= known, f"{title!r}: {names - known} are exported by no service"


def test_the_dashboard_answers_the_sre_questions() -> None:
    read = set().union(*(streamledger_names(expression) for _, expression in panel_queries()))
    missing = {question: name for question, name in REQUIRED_SERIES.items() if name not in read}
    assert not missing
