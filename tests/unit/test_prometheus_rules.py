"""The Prometheus files in ``infra/prometheus`` checked by the real promtool: the configs load,
the rules parse, every alert fires and stays silent on the synthetic series of
``infra/prometheus/tests/alerts_test.yml`` (a 1-minute step) and ``alerts_days_test.yml`` (the
cases that last days, on a 10-minute step), and every alert has a runbook section."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from infra import prometheus_server
from streamledger.settings import Settings
from tests.unit.prometheus_names import (
    PROMETHEUS_DIRECTORY,
    REPO_ROOT,
    RULE_FILES,
    exported_series,
    promtool,
    recorded_series,
    streamledger_names,
)

ALERTS_FILE = PROMETHEUS_DIRECTORY / "rules" / "alerts.yml"
ALERT_TESTS_FILES = (
    PROMETHEUS_DIRECTORY / "tests" / "alerts_test.yml",
    PROMETHEUS_DIRECTORY / "tests" / "alerts_days_test.yml",
)
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
ALERT_LINE = re.compile(r"^\s*- alert:\s*(\S+)\s*$", re.MULTILINE)
EXPR_BLOCK = re.compile(
    r"^\s*expr:\s*(?:>-\n)?(.*?)(?=^\s*(?:for|labels|- record|- alert):)", re.M | re.S
)
ALERT_CASE = re.compile(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:(?P<empty>\s*\[\])?")


def alert_names() -> list[str]:
    return ALERT_LINE.findall(ALERTS_FILE.read_text())


def test_the_compose_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIRECTORY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_config_is_valid_with_the_compose_targets(tmp_path: Path) -> None:
    """What the compose Prometheus sees: infra/prometheus with targets-compose/ over targets/."""
    mounted = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIRECTORY, mounted, ignore=shutil.ignore_patterns("targets*"))
    shutil.copytree(PROMETHEUS_DIRECTORY / "targets-compose", mounted / "targets")
    result = promtool("check", "config", str(mounted / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_targets_are_the_compose_services_for_every_job() -> None:
    host = sorted(path.name for path in (PROMETHEUS_DIRECTORY / "targets").glob("*.json"))
    compose_directory = PROMETHEUS_DIRECTORY / "targets-compose"
    assert sorted(path.name for path in compose_directory.glob("*.json")) == host
    expected = {
        "streamledger-api.json": ["api:8080"],
        "streamledger-processor.json": ["processor:9400"],
        "streamledger-projection.json": ["projection:9400"],
        "streamledger-verify.json": ["verifier:9400"],
        "streamledger-supervisor.json": [],  # compose restarts containers; no supervisor
    }
    for name, targets in expected.items():
        groups = json.loads((compose_directory / name).read_text())
        assert [target for group in groups for target in group["targets"]] == targets, name


def test_the_local_config_is_valid(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    targets = prometheus_server.port_plan(settings, processors=2, projections=1, verifiers=1)
    prometheus_server.write_targets(settings, targets)
    config = prometheus_server.PrometheusPaths.of(settings).config
    config.write_text(prometheus_server.render_config(settings))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_the_port_plan_is_run_s_processors_then_projections_then_the_verifier() -> None:
    targets = prometheus_server.port_plan(
        Settings(home=Path("/nonexistent"), metrics_port=9400),
        processors=2,
        projections=1,
        verifiers=1,
    )
    assert targets == prometheus_server.ScrapeTargets((9400, 9401), (9402,), (9403,))


def test_the_rules_parse() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_in_promtool_unit_tests() -> None:
    result = promtool("test", "rules", *map(str, ALERT_TESTS_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    firing, silent = set(), set()
    for path in ALERT_TESTS_FILES:
        for case in ALERT_CASE.finditer(path.read_text()):
            (silent if case.group("empty") else firing).add(case.group(1))
    names = set(alert_names())
    assert len(names) >= 8
    assert names - firing == set(), "alerts without a firing case"
    assert names - silent == set(), "alerts without a silent case"


def test_every_alert_has_a_summary_and_a_runbook_section() -> None:
    text = ALERTS_FILE.read_text()
    runbook = RUNBOOK.read_text()
    headings = set(re.findall(r"^## (\S+)\s*$", runbook, re.MULTILINE))
    for name in alert_names():
        block = text.split(f"- alert: {name}\n", 1)[1].split("- alert:", 1)[0]
        assert "summary:" in block, name
        assert f"runbook: docs/runbook.md#{name.lower()}" in block, name
        assert name in headings, f"docs/runbook.md has no '## {name}' section"


def test_the_rules_refer_only_to_series_the_services_export() -> None:
    known = exported_series() | recorded_series()
    for path in RULE_FILES:
        expressions = EXPR_BLOCK.findall(path.read_text())
        assert expressions, path
        for expression in expressions:
            unknown = streamledger_names(expression) - known
            assert not unknown, f"{path.name}: {unknown} in {expression.strip()}"
