"""What the services export and what the Prometheus files refer to, for the rule and dashboard
tests. The exported names come from the services' own registries, built in-process."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from notifications.metrics import NotifyMetrics
from pipeline.supervisor_metrics import SupervisorMetrics
from processors.metrics import ProcessorMetrics
from projections.metrics import ProjectionMetrics, VerifyMetrics
from reconciliation.metrics import ReconcilerMetrics

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PROMETHEUS_DIRECTORY = REPO_ROOT / "infra" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIRECTORY / "rules").glob("*.yml"))
PROMTOOL_TIMEOUT_S = 120  # a bound for a hung promtool, not a pace: the alert tests take ~3 s
# Series Prometheus itself attaches to every scrape target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
SUFFIXES_BY_TYPE = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
}
# A StreamLedger series or recording-rule name inside a PromQL expression.
STREAMLEDGER_NAME = re.compile(r"\bstreamledger[a-z0-9_:]*")
STRING_LITERAL = re.compile(r'"[^"]*"')
RECORD_LINE = re.compile(r"^\s*- record:\s*(\S+)\s*$", re.MULTILINE)


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the real promtool (Debian's `prometheus` package). Missing is a failure, not a skip."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool not found: run `streamledger infra install`"
    return subprocess.run(
        [binary, *arguments],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
        cwd=REPO_ROOT,
    )


def registry_series(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for suffix in SUFFIXES_BY_TYPE.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def exported_series() -> set[str]:
    """Every series name processor, projection, verifier, dispatcher, matcher and supervisor
    can export."""
    registries = (
        ProcessorMetrics().registry,
        ProjectionMetrics().registry,
        NotifyMetrics().registry,
        ReconcilerMetrics().registry,
    )
    names = set().union(*(registry_series(r) for r in registries))
    names |= registry_series(SupervisorMetrics(["processor-0"]).registry)
    return names | registry_series(VerifyMetrics().registry)


def recorded_series() -> set[str]:
    return {name for path in RULE_FILES for name in RECORD_LINE.findall(path.read_text())}


def streamledger_names(expression: str) -> set[str]:
    """StreamLedger series names in a PromQL expression (label values and templates aside)."""
    code = STRING_LITERAL.sub('""', expression)
    return set(STREAMLEDGER_NAME.findall(code))
