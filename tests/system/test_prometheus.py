"""A real Prometheus (``infra/prometheus_server.py``) scraping a real pipeline.

A processor and a projection run as child processes with metrics ports; the project's own
Prometheus scrapes them every second with the project's rule files. After a seeded workload
(with exact duplicates, key reuses and poison records) the counters Prometheus holds must equal
what was sent, freshness must have one observation per projected event, and the dead-letter alert
must fire.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import prometheus_server
from infra.prometheus_server import ScrapeTargets
from schemas.keys import command_key, partition_for
from schemas.model import Command
from streamledger.settings import Settings, child_environment, replace
from tests.system.free_ports import free_port_range
from tests.system.ledger_reference import ReferenceLedger
from tests.system.ledger_workload import workload
from tests.system.processor_harness import (
    ProcessorProcess,
    produce_commands,
    produce_raw,
    wait_until_consumed,
)
from workloads.processor_process import REPO_ROOT

pytestmark = pytest.mark.system
CONSUME_TIMEOUT_S = 60.0
PROMETHEUS_TIMEOUT_S = 60.0
POLL_S = 0.5
QUERY_TIMEOUT_S = 30.0  # one query of a loaded machine's Prometheus (a bound, not a pace)
RESENT_COMMANDS = 25  # sent a second time: each must count as a duplicate
POISON = (b"not avro at all", b"\xc3\x01 truncated")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def query(settings: Settings, expression: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expression}
    )
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def scalar(settings: Settings, expression: str) -> float | None:
    result = query(settings, expression)
    if not result:
        return None
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def wait_for_value(settings: Settings, expression: str, expected: float) -> None:
    deadline = time.monotonic() + PROMETHEUS_TIMEOUT_S
    seen = None
    while time.monotonic() < deadline:
        seen = scalar(settings, expression)
        if seen == expected:
            return
        time.sleep(POLL_S)
    raise AssertionError(f"{expression}: {seen} after {PROMETHEUS_TIMEOUT_S} s, want {expected}")


def expected_counts(commands: list[Command]) -> tuple[int, int]:
    """(duplicates, key reuses): a later command with an earlier key of its tenant is a
    duplicate when its payload (all but submitted_at_us) equals the first one's, else a reuse."""
    first: dict[tuple[str, str], Command] = {}
    duplicates = reuses = 0
    for command in commands:
        key = (command.tenant_id, command.idempotency_key)
        if key not in first:
            first[key] = command
        elif dataclasses.replace(first[key], submitted_at_us=0) == dataclasses.replace(
            command, submitted_at_us=0
        ):
            duplicates += 1
        else:
            reuses += 1
    return duplicates, reuses


@pytest.fixture
def observed(projection_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Settings]]:
    """(pipeline settings, Prometheus settings): Prometheus in its own home and on its own port."""
    prometheus_settings = replace(
        projection_settings, home=tmp_path / "home", prometheus_port=free_port()
    )
    yield projection_settings, prometheus_settings
    prometheus_server.stop_prometheus(prometheus_settings)


class ProjectionProcess:
    """``streamledger project`` as a child process with a metrics port."""

    def __init__(self, settings: Settings, metrics_port: int, log_path: Path) -> None:
        self.log_path = log_path
        environment = child_environment(settings)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamledger.cli", "project", "--batch-interval-ms=50",
                 f"--metrics-port={metrics_port}"],
                env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )  # fmt: skip

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


def test_prometheus_sees_what_the_pipeline_did(
    observed: tuple[Settings, Settings], tmp_path: Path
) -> None:
    settings, prometheus_settings = observed
    # Below the ephemeral range: Prometheus knocks on these ports before the children bind them,
    # and a connection to a port of that range may get that very port as its source and hold it
    # (see test_stack_lifecycle.py). Two distinct ports (two probes of port 0 may give one twice).
    processor_port = free_port_range(2)
    projection_port = processor_port + 1
    report = prometheus_server.start_prometheus(
        prometheus_settings,
        ScrapeTargets(processors=(processor_port,), projections=(projection_port,)),
        scrape_interval_s=1,
    )
    assert report.running, report
    commands = workload(seed=5, tenants=3, commands_per_tenant=60)
    sent = commands + commands[:RESENT_COMMANDS]
    duplicates, reuses = expected_counts(sent)
    events = len(ReferenceLedger().fold(sent).events)
    assert duplicates >= RESENT_COMMANDS and reuses > 0 and events > 0
    produce_commands(settings, sent)
    processor = ProcessorProcess(settings, "a", tmp_path, metrics_port=processor_port)
    projection = ProjectionProcess(settings, projection_port, tmp_path / "projection.log")
    try:
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
        wait_for_value(prometheus_settings, "sum(up)", 3)  # itself + the two services
        # Poison after Prometheus has seen the DLQ counter at 0: increase() needs two samples.
        key = command_key("poisoned")
        for value in POISON:
            produce_raw(settings, partition_for(key, settings.partitions), key, value)
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
        consumed = "sum(streamledger_processor_commands_consumed_total)"
        wait_for_value(prometheus_settings, consumed, len(sent) + len(POISON))
        wait_for_value(
            prometheus_settings, "sum(streamledger_projection_events_applied_total)", events
        )
        assert_counters(prometheus_settings, duplicates, reuses, events)
        assert_rules_evaluated(prometheus_settings)
    finally:
        assert processor.stop() == 0, processor.log()
        assert projection.stop() == 0, projection.log_path.read_text()[-3000:]


def assert_counters(settings: Settings, duplicates: int, reuses: int, events: int) -> None:
    values = {
        "sum(streamledger_processor_duplicates_total)": duplicates,
        "sum(streamledger_processor_key_reuse_conflicts_total)": reuses,
        'sum(streamledger_processor_rejections_total{reason="idempotency_key_reused"})': reuses,
        "sum(streamledger_processor_events_produced_total)": events,
        "sum(streamledger_processor_dlq_records_total)": len(POISON),
        "sum(streamledger_projection_freshness_seconds_count)": events,
        "sum(streamledger_processor_ready)": 1,
        "sum(streamledger_projection_ready)": 1,
    }
    for expression, expected in values.items():
        wait_for_value(settings, expression, expected)
    commits = scalar(settings, "sum(streamledger_processor_transaction_commits_total)")
    assert commits is not None and commits >= 1
    freshness_s = scalar(
        settings,
        "sum(streamledger_projection_freshness_seconds_sum)"
        " / sum(streamledger_projection_freshness_seconds_count)",
    )
    # the commands were sent before the processor started: seconds, not hours or negative
    assert freshness_s is not None and 0 < freshness_s < 120, freshness_s


def assert_rules_evaluated(settings: Settings) -> None:
    """The project's rule files are loaded: a recording rule has a value and the DLQ alert
    fired on the poison records."""
    deadline = time.monotonic() + PROMETHEUS_TIMEOUT_S
    firing: list[dict[str, object]] = []
    while time.monotonic() < deadline and not firing:
        firing = query(settings, 'ALERTS{alertname="StreamLedgerDeadLetters", alertstate="firing"}')
        time.sleep(POLL_S)
    assert firing, "StreamLedgerDeadLetters never fired"
    assert query(settings, "streamledger:commands_consumed:rate1m"), "no recorded series"
